"""--eval-only labels a val set in the model's class order by WordNet id (issue 17, case b23):
torchvision/timm ImageNet-1k weights mean the 1000 sorted WordNet ids, resdet checkpoints carry
their classes; top-1/top-5 over all outputs, or over the set's own with --class-subset."""

import argparse
import json
import os

import numpy as np
import pytest
import torch

from resdet.config import load_config
from resdet.data.classification import align_labels, imagenet1k_wnids
from resdet.errors import UserError
from resdet.evaluation.classification import ClassificationEvaluator, weights_output_classes
from resdet.pretrain.train import main, run

CONFIGS = os.path.join(os.path.dirname(__file__), "..", "..", "configs", "pretrain")
EVAL = argparse.Namespace(eval_only=True, resume=False)
# ImageNet-1k indices of the val classes below, in the sorted-wnid order
VAL_WNIDS = {"n01440764": 0, "n02102040": 217, "n03000684": 491}


@pytest.fixture
def root(tmp_path, monkeypatch):
    monkeypatch.setenv("DETECTRON2_DATASETS", str(tmp_path / "datasets"))
    monkeypatch.setenv("RESDET_PROGRESS", "0")
    return tmp_path


def _val_folder(root, wnids=tuple(VAL_WNIDS), per_class=2):
    from PIL import Image

    for c in wnids:
        d = os.path.join(str(root), "datasets", "imagenet", "val", c)
        os.makedirs(d, exist_ok=True)
        for i in range(per_class):
            Image.fromarray(np.full((40, 48, 3), 100 + i, np.uint8)).save(
                os.path.join(d, f"{c}_{i}.JPEG"))


def _torchvision_weights(path, bias):
    """torchvision ResNet-18 whose logits are ``bias`` for every image (fc weights zero)."""
    import torchvision

    m = torchvision.models.resnet18()
    torch.nn.init.zeros_(m.fc.weight)
    with torch.no_grad():
        m.fc.bias.copy_(bias)
    torch.save(m.state_dict(), path)
    return str(path)


def _cfg(root, weights, name="out"):
    return load_config(os.path.join(CONFIGS, "Base-ImageNet.yaml"), [
        "MODEL.DEVICE", "cpu", "MODEL.RESDET.ARCH", "resnet18", "MODEL.RESDET.NUM_CLASSES", "1000",
        "DATALOADER.NUM_WORKERS", "0", "SOLVER.AMP.ENABLED", "False", "PRETRAIN.CROP_SIZE", "32",
        "PRETRAIN.TEST_RESIZE", "36", "PRETRAIN.TEST_BATCH_SIZE", "6", "MODEL.WEIGHTS", weights,
        "OUTPUT_DIR", str(root / name)])


def test_imagenet1k_wnids_shipped():
    ids = imagenet1k_wnids()
    assert len(ids) == 1000 and list(ids) == sorted(set(ids))
    assert {w: ids.index(w) for w in VAL_WNIDS} == VAL_WNIDS
    assert (ids[0], ids[-1]) == ("n01440764", "n15075141")


def test_b23_torchvision_weights_subset_val(root):
    """Case b23: the model always answers 217 (n02102040); 2 of the 6 val images are that."""
    _val_folder(root)
    bias = torch.zeros(1000)
    bias[217] = 10.0
    weights = _torchvision_weights(root / "always217.pth", bias)
    res = run(_cfg(root, weights), EVAL)["eval_results"]["imagenet_val"]
    assert res["num_images"] == 6
    assert round(res["top1_err"], 2) == 66.67
    assert res["top1_err"] == pytest.approx(100 * 4 / 6)


def test_subset_val_with_1000_class_weights_hand_computed(root, caplog):
    """Logits rank 5 > 491 > 217 > 7 > 8 > the rest (by index) for every image; the val set has
    2 images each of ImageNet-1k classes 0, 217, 491.

    Over all 1000 outputs: top-1 is class 5 (no val class): 6 of 6 wrong; top-5 is
    {5, 491, 217, 7, 8}: the 2 images of class 0 wrong. With --class-subset (outputs 0, 217, 491
    only): top-1 is 491: 4 of 6 wrong; top-5 covers all three: none wrong. Labelled by the set's
    own order (0, 1, 2) instead, as before, top-1 and top-5 would both be 100."""
    _val_folder(root)
    bias = -torch.arange(1000, dtype=torch.float32) / 1000  # the rest: by index, no ties
    for rank, k in enumerate([5, 491, 217, 7, 8]):
        bias[k] = 10.0 - rank
    weights = _torchvision_weights(root / "ranked.pth", bias)
    caplog.set_level("INFO", logger="resdet.pretrain")
    res = run(_cfg(root, weights), EVAL)["eval_results"]["imagenet_val"]
    assert (res["top1_err"], res["top5_err"]) == (100.0, pytest.approx(100 * 2 / 6))
    assert (f"imagenet_val: its 3 classes are labelled as the 1000 ImageNet-1k classes of "
            f"{weights} (torchvision ResNet (or timm) weights: sorted WordNet ids) (matched by "
            "name); top-1/top-5 over all 1000 outputs of the model (--class-subset: over the "
            "set's classes only).") in caplog.messages

    caplog.clear()
    cfg_path = root / "eval.yaml"
    with open(cfg_path, "w") as f:
        _cfg(root, weights, "subset").dump(stream=f)
    main(["--config", str(cfg_path), "--eval-only", "--class-subset"])
    with open(root / "subset" / "eval_results.json") as f:
        res = json.load(f)["imagenet_val"]
    assert (res["top1_err"], res["top5_err"]) == (pytest.approx(100 * 4 / 6), 0.0)
    assert any(m.endswith("top-1/top-5 over the set's 3 outputs only (--class-subset).")
               for m in caplog.messages)


def test_val_class_the_weights_cannot_name(root):
    _val_folder(root, wnids=("n01440764", "n99999999"), per_class=1)
    weights = _torchvision_weights(root / "tv.pth", torch.zeros(1000))
    with pytest.raises(UserError) as e:
        run(_cfg(root, weights), EVAL)
    assert str(e.value) == (
        "Dataset imagenet_val has images of 1 classes that the 1000 ImageNet-1k classes of "
        f"{weights} (torchvision ResNet (or timm) weights: sorted WordNet ids) does not have "
        "(n99999999), so the model cannot name them; evaluate on classes among the model's "
        "(matched by class folder name, e.g. WordNet id).")


def test_weights_without_classes_and_no_train_set(root):
    """Weights in resdet's names record no classes: a 3-class val set for a 1000-output model
    cannot be labelled, and is refused rather than scored as outputs 0, 1, 2."""
    from resdet.modeling import build_classifier

    _val_folder(root)
    path = str(root / "bare.pth")
    torch.save(build_classifier("resnet18", num_classes=1000).state_dict(), path)
    assert weights_output_classes(torch.load(path), path) == (None, "")
    with pytest.raises(UserError, match=r"^Dataset imagenet_val holds 3 classes but the model has "
                       r"1000 outputs, and nothing says which outputs they are: imagenet_train "):
        run(_cfg(root, path), EVAL)


def test_weights_output_classes_by_layout():
    import torchvision

    tv = torchvision.models.resnet18().state_dict()
    classes, _ = weights_output_classes(tv, "tv.pth")
    assert classes == list(imagenet1k_wnids())
    # a timm train.py checkpoint wraps the same names in state_dict
    assert weights_output_classes({"state_dict": tv, "epoch": 3}, "t.pth")[0] == classes
    # torchvision VGG-16: classifier.6 is the output layer
    with torch.device("meta"):  # shapes only: no 138M parameters to initialise
        vgg = torchvision.models.vgg16().state_dict()
    assert weights_output_classes(vgg, "vgg.pth")[0] == classes
    # a 10-class head is not ImageNet-1k
    tv10 = torchvision.models.resnet18(num_classes=10).state_dict()
    assert weights_output_classes(tv10, "tv10.pth") == (None, "")
    # resdet checkpoints carry their classes
    assert weights_output_classes({"model": {}, "classes": ["b", "a"]}, "r.pth") == (
        ["b", "a"], "the classes recorded in r.pth")


def test_evaluator_class_subset_by_hand():
    """Labels are model outputs; the subset scores over outputs 2 and 4 only."""
    scores = torch.tensor([[0.0, 9.0, 1.0, 0.0, 2.0],   # label 4: all-outputs top-1 is 1 (miss)
                           [0.0, 9.0, 3.0, 0.0, 2.0]])  # label 4: subset top-1 is 2 (miss)
    labels = torch.tensor([4, 4])
    full, subset = ClassificationEvaluator(ks=(1, 2)), ClassificationEvaluator(
        ks=(1, 2), class_subset=[2, 4])
    for ev in (full, subset):
        ev.process(scores, labels)
    assert full.evaluate() == {"top1_err": 100.0, "top2_err": 50.0, "num_images": 2}
    assert subset.evaluate() == {"top1_err": 50.0, "top2_err": 0.0, "num_images": 2}
    # aligned labels of a 2-class val set: its classes are outputs 217 and 0 of ImageNet-1k
    recs = align_labels([{"label": 0}, {"label": 1}], ["n02102040", "n01440764"],
                        imagenet1k_wnids(), "v", "ImageNet-1k")
    assert [r["label"] for r in recs] == [217, 0]
