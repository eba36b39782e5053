"""Classification datasets: official layouts, class order, CIFAR pickles, bad input messages."""

import os
import pickle

import numpy as np
import pytest

from resdet.data import get_dataset_dicts, get_metadata
from resdet.data.classification import align_labels, held_out_split
from resdet.data.cls_cifar import read_cifar_batch
from resdet.errors import UserError
from tests.pretrain.tiny_cls_data import (
    make_cifar_batches,
    make_flat_imagenet_val,
    make_imagenet_folders,
)


@pytest.fixture
def root(tmp_path, monkeypatch):
    monkeypatch.setenv("DETECTRON2_DATASETS", str(tmp_path))
    return tmp_path


def test_imagenet_folders_sorted_class_index(root):
    make_imagenet_folders(str(root), classes=3, per_class=2, val_per_class=1)
    recs = get_dataset_dicts("imagenet_train")
    assert len(recs) == 6
    assert [r["label"] for r in recs] == [0, 0, 1, 1, 2, 2]
    # class index = sorted wnid order
    assert os.path.basename(os.path.dirname(recs[0]["file_name"])) == "n01440764"
    assert get_metadata("imagenet_val")["classes"] == ["n01440764", "n01440765", "n01440766"]
    assert len(get_dataset_dicts("imagenet_val")) == 3


def test_cifar_batches_read_as_published(root):
    folder = make_cifar_batches(str(root), per_batch=4, test=5)
    train = get_dataset_dicts("cifar10_train")
    test = get_dataset_dicts("cifar10_test")
    assert len(train) == 20 and len(test) == 5
    assert train[0]["image"].shape == (32, 32, 3) and train[0]["image"].dtype == np.uint8
    # the published layout: 1024 R, then G, then B values per row
    with open(os.path.join(folder, "data_batch_1"), "rb") as f:
        raw = pickle.load(f, encoding="bytes")
    np.testing.assert_array_equal(raw[b"data"][0][:1024].reshape(32, 32), train[0]["image"][..., 0])
    assert [r["label"] for r in train[:4]] == raw[b"labels"]


def test_missing_dataset_folder_names_path(root):
    with pytest.raises(UserError) as e:
        get_dataset_dicts("imagenet_train")
    msg = str(e.value)
    assert os.path.join(str(root), "imagenet", "train") in msg and msg.count(".") <= 3
    with pytest.raises(UserError, match="cifar-10-batches-py"):
        get_dataset_dicts("cifar10_train")


@pytest.mark.parametrize("content", [b"not a pickle at all", "list", "evil", "badshape"])
def test_non_cifar_file_names_path(tmp_path, content):
    path = tmp_path / "data_batch_1"
    marker = tmp_path / "pwned"
    if content == "list":
        path.write_bytes(pickle.dumps([1, 2, 3], protocol=2))
    elif content == "evil":
        class Evil:
            def __reduce__(self):
                return (os.system, (f"touch {marker}",))
        path.write_bytes(pickle.dumps({b"data": Evil()}, protocol=2))
    elif content == "badshape":
        path.write_bytes(pickle.dumps({b"data": np.zeros((2, 5), np.uint8), b"labels": [0, 1]}))
    else:
        path.write_bytes(content)
    with pytest.raises(UserError) as e:
        read_cifar_batch(str(path))
    assert str(path) in str(e.value) and "not a CIFAR-10 python batch" in str(e.value)
    assert not marker.exists()  # the restricted unpickler ran nothing


def test_held_out_split_is_fixed_and_disjoint():
    recs = [{"label": i % 10, "image_id": i} for i in range(100)]
    tr, va = held_out_split(recs, 10)
    tr2, va2 = held_out_split(recs, 10)
    assert len(tr) == 90 and len(va) == 10
    assert [r["image_id"] for r in va] == [r["image_id"] for r in va2]
    assert not {r["image_id"] for r in tr} & {r["image_id"] for r in va}
    with pytest.raises(UserError, match="PRETRAIN.VAL_SPLIT"):
        held_out_split(recs, 100)


def test_synthetic_imagenet_generated_deterministically(root):
    from resdet.data.cls_synthetic import SPLIT_SIZES

    recs = get_dataset_dicts("synthetic_imagenet")
    assert len(recs) == 10 * SPLIT_SIZES["train"]
    assert len(get_dataset_dicts("synthetic_imagenet_val")) == 10 * SPLIT_SIZES["val"]
    assert sorted({r["label"] for r in recs}) == list(range(10))
    # the generator is a pure function of (class, index): same pixels on every machine
    from resdet.data.cls_synthetic import _draw

    a = _draw("ring", np.random.default_rng([1, 2, 3]), 64, 40.0)
    b = _draw("ring", np.random.default_rng([1, 2, 3]), 64, 40.0)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, _draw("disc", np.random.default_rng([1, 2, 3]), 64, 40.0))


@pytest.mark.parametrize("labels", ["csv", "devkit", "devkit_tar"])
def test_flat_official_val_labelled_by_sorted_wnid(root, labels):
    wnids = ["n01440766", "n01440764", "n01440765", "n01440764", "n01440766"]
    make_flat_imagenet_val(str(root), wnids, labels=labels)
    recs = get_dataset_dicts("imagenet_val")
    assert [os.path.basename(r["file_name"]) for r in recs] == [
        f"ILSVRC2012_val_{i:08d}.JPEG" for i in range(1, 6)]
    assert [r["label"] for r in recs] == [2, 0, 1, 0, 2]
    assert get_metadata("imagenet_val")["classes"] == ["n01440764", "n01440765", "n01440766"]


def test_flat_val_problems_name_the_file(root):
    stems = make_flat_imagenet_val(str(root), ["n01440764", "n01440765"], labels="csv")
    val = os.path.join(str(root), "imagenet", "val")
    csv = os.path.join(str(root), "imagenet", "LOC_val_solution.csv")
    with open(os.path.join(val, "ILSVRC2012_val_00000009.JPEG"), "wb") as f:
        f.write(open(os.path.join(val, stems[0] + ".JPEG"), "rb").read())
    with pytest.raises(UserError, match="ILSVRC2012_val_00000009.JPEG has no label"):
        get_dataset_dicts("imagenet_val")
    os.remove(os.path.join(val, "ILSVRC2012_val_00000009.JPEG"))
    with open(csv, "w") as f:
        f.write("id,label\nILSVRC2012_val_00000001,n01440764\n")
    with pytest.raises(UserError, match="LOC_val_solution.csv is not Kaggle's"):
        get_dataset_dicts("imagenet_val")
    os.remove(csv)
    with pytest.raises(UserError, match="holds ImageNet's flat val images but no labels: put "
                       "LOC_val_solution.csv"):
        get_dataset_dicts("imagenet_val")
    tar = os.path.join(str(root), "imagenet", "ILSVRC2012_devkit_t12.tar.gz")
    with open(tar, "wb") as f:
        f.write(b"\x1f\x8b not really gzip")
    with pytest.raises(UserError, match="Cannot read .*ILSVRC2012_devkit_t12.tar.gz"):
        get_dataset_dicts("imagenet_val")


def test_test_set_matched_to_training_classes_by_name(root):
    import shutil

    make_imagenet_folders(str(root), classes=3, per_class=1, val_per_class=2)
    shutil.rmtree(os.path.join(str(root), "imagenet", "val", "n01440764"))
    train_classes = get_metadata("imagenet_train")["classes"]
    val = get_dataset_dicts("imagenet_val")
    assert [r["label"] for r in val] == [0, 0, 1, 1]  # indexes val's own two folders
    aligned = align_labels(val, get_metadata("imagenet_val")["classes"], train_classes,
                           "imagenet_val", "imagenet_train")
    assert [r["label"] for r in aligned] == [1, 1, 2, 2]
    assert [r["file_name"] for r in aligned] == [r["file_name"] for r in val]
    with pytest.raises(UserError, match=r"imagenet_val has images of 1 classes that "
                       r"imagenet_train does not have \(n01440765\)"):
        align_labels(val, ["n01440765", "n01440766"], ["n01440764", "n01440766"],
                     "imagenet_val", "imagenet_train")


def test_images_outside_class_folders_are_reported(root, caplog):
    make_imagenet_folders(str(root), classes=2, per_class=1, val_per_class=2)
    val = os.path.join(str(root), "imagenet", "val")
    first = os.path.join(val, "n01440764", "n01440764_0000.JPEG")
    os.rename(first, os.path.join(val, "ILSVRC2012_val_00000001.JPEG"))  # not yet sorted
    assert len(get_dataset_dicts("imagenet_val")) == 3
    assert "holds 1 images outside its class folders (a half-sorted val set?)" in caplog.text


@pytest.mark.parametrize("torchvision_layout", [False, True])
def test_cifar10_found_in_either_layout(root, torchvision_layout):
    """resdet's cifar10/cifar-10-batches-py/ or torchvision's cifar-10-batches-py/ (issue 12)."""
    folder = make_cifar_batches(str(root), per_batch=4, test=5,
                                torchvision_layout=torchvision_layout)
    expected = os.path.join(str(root), *([] if torchvision_layout else ["cifar10"]),
                            "cifar-10-batches-py")
    assert folder == expected
    assert get_metadata("cifar10_train")["root"] == expected
    train, test = get_dataset_dicts("cifar10_train"), get_dataset_dicts("cifar10_test")
    assert (len(train), len(test)) == (20, 5)
    images, labels = read_cifar_batch(os.path.join(expected, "test_batch"))
    np.testing.assert_array_equal(np.stack([r["image"] for r in test]), images)
    assert [r["label"] for r in test] == labels


def test_cifar10_missing_names_both_layouts(root):
    with pytest.raises(UserError) as e:
        get_dataset_dicts("cifar10_test")
    assert str(e.value) == (
        f"Dataset cifar10 is not on disk: neither {root}/cifar10/cifar-10-batches-py nor "
        f"{root}/cifar-10-batches-py exists; extract cifar-10-python.tar.gz into one of them "
        "(see datasets/README.md) or set $DETECTRON2_DATASETS to the folder that holds it.")
