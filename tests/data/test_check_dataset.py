"""read_image's errors, and datasets/check.py listing every problem of a dataset."""

import json
import os
import subprocess
import sys

import cv2
import numpy as np
import pytest

from resdet.data import read_image
from tests.tiny_datasets import make_tiny_coco, make_tiny_voc
from resdet.errors import UserError

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _noise_jpeg(path, h=40, w=50):
    img = np.random.default_rng(0).integers(0, 255, (h, w, 3), dtype=np.uint8)
    cv2.imwrite(str(path), img)
    return img


def test_read_image_formats(tmp_path):
    _noise_jpeg(tmp_path / "a.jpg")
    bgr = read_image(str(tmp_path / "a.jpg"))
    assert bgr.shape == (40, 50, 3) and bgr.dtype == np.uint8
    np.testing.assert_array_equal(read_image(str(tmp_path / "a.jpg"), "RGB"), bgr[:, :, ::-1])
    cv2.imwrite(str(tmp_path / "g.png"), np.full((5, 6), 7, np.uint8))  # grey -> 3 channels
    assert read_image(str(tmp_path / "g.png")).shape == (5, 6, 3)
    # EXIF orientation 6 (rotate 90 degrees) is applied, as Detectron2's read_image does
    from PIL import Image

    from resdet.data.image_io import image_size

    im = Image.fromarray(np.zeros((20, 40, 3), np.uint8))
    exif = im.getexif()
    exif[0x0112] = 6
    im.save(tmp_path / "rot.jpg", exif=exif)
    assert read_image(str(tmp_path / "rot.jpg")).shape == (40, 20, 3)
    assert image_size(str(tmp_path / "rot.jpg")) == (40, 20)


def test_read_image_errors(tmp_path):
    _noise_jpeg(tmp_path / "a.jpg")
    data = (tmp_path / "a.jpg").read_bytes()
    (tmp_path / "trunc.jpg").write_bytes(data[: len(data) // 2])  # OpenCV decodes it silently
    with pytest.raises(UserError, match=r"trunc.jpg is a truncated JPEG; re-download"):
        read_image(str(tmp_path / "trunc.jpg"))
    (tmp_path / "tail.jpg").write_bytes(data + b"\0" * 200)  # data after the end: still fine
    assert read_image(str(tmp_path / "tail.jpg")).shape == (40, 50, 3)
    (tmp_path / "bad.jpg").write_bytes(b"not an image")
    with pytest.raises(UserError, match="bad.jpg is not a readable image"):
        read_image(str(tmp_path / "bad.jpg"))
    (tmp_path / "empty.png").write_bytes(b"")
    with pytest.raises(UserError, match="empty.png is empty"):
        read_image(str(tmp_path / "empty.png"))
    with pytest.raises(UserError, match="missing.jpg does not exist"):
        read_image(str(tmp_path / "missing.jpg"))


def _check(name, root):
    env = dict(os.environ, DETECTRON2_DATASETS=str(root))
    return subprocess.run([sys.executable, os.path.join(REPO, "datasets", "check.py"), name],
                          capture_output=True, text=True, env=env, timeout=60)


def test_check_lists_every_problem(tmp_path):
    make_tiny_coco(str(tmp_path), "val2017", num_images=4)
    out = _check("coco_2017_val", tmp_path)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().splitlines()[-1] == (
        "ok: 4 images, 4 boxes; 1 image(s) without boxes")

    path = tmp_path / "coco" / "annotations" / "instances_val2017.json"
    data = json.loads(path.read_text())
    data["annotations"][0]["bbox"][2] = -3
    data["annotations"][1]["category_id"] = 999
    path.write_text(json.dumps(data))
    img_dir = tmp_path / "coco" / "val2017"
    full = (img_dir / "000000000101.jpg").read_bytes()
    (img_dir / "000000000101.jpg").write_bytes(full[: len(full) // 2])
    os.remove(img_dir / "000000000102.jpg")
    out = _check("coco_2017_val", tmp_path)
    assert out.returncode == 1
    lines = out.stdout.strip().splitlines()
    assert "annotation id 1000" in lines[0] and "non-positive size" in lines[0]
    assert "annotation id 1001" in lines[1] and "unknown category_id 999" in lines[1]
    assert "000000000101.jpg is a truncated JPEG" in lines[2]
    assert "000000000102.jpg does not exist" in lines[3]
    assert lines[4].startswith("coco_2017_val: 4 problem(s)")


def test_check_voc_and_missing_dataset(tmp_path):
    make_tiny_voc(str(tmp_path), 2007)
    (tmp_path / "VOC2007" / "Annotations" / "000002.xml").write_text("<annotation>")
    out = _check("voc_2007_train", tmp_path)
    assert out.returncode == 1
    assert "000002.xml is not valid XML (line 1" in out.stdout
    out = _check("voc_2012_train", tmp_path)
    assert out.returncode == 2 and "voc_2012_train is not on disk" in out.stderr
    assert "Traceback" not in out.stderr


def test_check_imagenet_folders_and_flat_val(tmp_path):
    from tests.pretrain.tiny_cls_data import make_flat_imagenet_val, make_imagenet_folders

    make_imagenet_folders(str(tmp_path), classes=3, per_class=2, val_per_class=1)
    os.makedirs(tmp_path / "imagenet" / "train" / "n09999999")  # a class folder left empty
    bad = tmp_path / "imagenet" / "train" / "n01440765" / "n01440765_0001.JPEG"
    bad.write_bytes(bad.read_bytes()[:100])
    out = _check("imagenet_train", tmp_path)
    # an empty class folder is an error, as in torchvision's ImageFolder (issue 17)
    assert out.returncode == 2 and "1 class folder(s) hold no images: " in out.stderr
    assert "n09999999" in out.stderr
    os.rmdir(tmp_path / "imagenet" / "train" / "n09999999")
    out = _check("imagenet_train", tmp_path)
    assert out.returncode == 1, out.stderr
    lines = out.stdout.strip().splitlines()
    assert len(lines) == 2 and "n01440765_0001.JPEG is a truncated JPEG" in lines[0]
    assert lines[1] == "imagenet_train: 1 problem(s) in 6 images, 3 classes"

    import shutil

    shutil.rmtree(tmp_path / "imagenet" / "val")
    make_flat_imagenet_val(str(tmp_path), ["n01440765", "n01440764"], labels="devkit_tar")
    out = _check("imagenet_val", tmp_path)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().splitlines()[-1] == "ok: 2 images, 2 classes"
    os.remove(tmp_path / "imagenet" / "ILSVRC2012_devkit_t12.tar.gz")
    out = _check("imagenet_val", tmp_path)
    assert out.returncode == 2 and "no labels: put LOC_val_solution.csv" in out.stderr
    assert "Traceback" not in out.stderr


def _write_b13_coco(root):
    """Issue 12's case b13: a box run 14 px past the right border of a 96x72 image, one of zero
    width, one of zero height, one normal."""
    img_dir = root / "coco" / "train2017"
    os.makedirs(img_dir)
    os.makedirs(root / "coco" / "annotations")
    cv2.imwrite(str(img_dir / "000000000001.jpg"),
                np.random.default_rng(1).integers(0, 255, (72, 96, 3), dtype=np.uint8))
    boxes = {1: [60, 10, 50, 30], 2: [10, 10, 0, 20], 3: [10, 10, 20, 0], 4: [5, 40, 30, 25]}
    anns = [{"id": k, "image_id": 1, "category_id": 1, "bbox": b, "area": b[2] * b[3],
             "iscrowd": 0} for k, b in boxes.items()]
    (root / "coco" / "annotations" / "instances_train2017.json").write_text(json.dumps({
        "images": [{"id": 1, "file_name": "000000000001.jpg", "width": 96, "height": 72}],
        "annotations": anns, "categories": [{"id": 1, "name": "person"}]}))


def test_b13_box_past_border_is_clipped_kept_and_reported_apart(tmp_path, monkeypatch):
    _write_b13_coco(tmp_path)
    monkeypatch.setenv("DETECTRON2_DATASETS", str(tmp_path))
    from resdet.data import get_dataset_dicts

    (record,) = get_dataset_dicts("coco_2017_train")
    assert [a["bbox"] for a in record["annotations"]] == [[60.0, 10.0, 36.0, 30.0],
                                                          [5.0, 40.0, 30.0, 25.0]]
    out = _check("coco_2017_train", tmp_path)
    assert out.returncode == 1, out.stderr
    lines = out.stdout.strip().splitlines()
    assert lines[0] == (
        "clipped: " + str(tmp_path / "coco/annotations/instances_train2017.json")
        + ": annotation id 1 (image " + str(tmp_path / "coco/train2017/000000000001.jpg")
        + ") has a box [60.0, 10.0, 50.0, 30.0] (XYWH) crossing the 96x72 image's border; "
        "clipped to [60.0, 10.0, 36.0, 30.0]")
    assert "annotation id 2 " in lines[1] and "non-positive size" in lines[1]
    assert "annotation id 3 " in lines[2] and "non-positive size" in lines[2]
    assert lines[3] == ("coco_2017_train: 2 problem(s) in 1 images, 2 boxes; "
                        "1 box(es) clipped to the image border")
