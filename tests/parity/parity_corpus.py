"""A corpus of tricky detection inputs in the official layouts, and the visualize tool's runs on it.

COCO (``coco_2017_train``, every image 48x64 as its record says unless noted):

================================  ===============================================================
rgb8.png / rgb16.png              the same picture at 8 and 16 bits (16-bit = 8-bit * 257)
grey8.png / grey16.png            grey, 8 and 16 bits
cmyk.jpg                          a CMYK JPEG
rgba.png                          RGB + alpha (the RGB of rgb8.png)
exif_labels_rotated.jpg           stored 64x48, EXIF orientation 6; record and box in the
                                  displayed (rotated) 48x64 frame
exif_labels_stored.jpg            stored 48x64, EXIF orientation 6; record and box in the stored
                                  frame
truncated.jpg                     half a JPEG: skipped by both engines with a warning
border.png                        a box on the whole image, one crossing the bottom-right border
zero.png                          a zero-width box and a normal one
empty.png                         no boxes
crowd.png                         a crowd box and a normal one
mismatch.png                      stored 40x64, record says 48x64: skipped with a warning
================================  ===============================================================

VOC (``voc_2007_trainval``): XML as annotation tools export it (float coordinates, no <pose>,
<truncated> or <difficult>), two 48x64 JPEGs.

Needs no Detectron2.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from typing import Dict, List

import cv2
import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
H, W = 48, 64


def _noise(seed: int, shape=(H, W, 3)) -> np.ndarray:
    # Smooth enough that JPEG and resizing keep structure; exact values do not matter.
    small = np.random.default_rng(seed).integers(0, 256, (shape[0] // 4, shape[1] // 4)
                                                 + shape[2:], dtype=np.uint8)
    return cv2.resize(small, (shape[1], shape[0]), interpolation=cv2.INTER_LINEAR)


def _exif_jpeg(path: str, rgb: np.ndarray, orientation: int) -> None:
    from PIL import Image

    im = Image.fromarray(rgb)
    exif = im.getexif()
    exif[0x0112] = orientation
    im.save(path, quality=95, exif=exif)


def write_coco_corpus(root: str) -> Dict[str, dict]:
    """Write the COCO corpus; returns ``{file name: image entry with its annotations}``."""
    from PIL import Image

    img_dir = os.path.join(root, "coco", "train2017")
    os.makedirs(img_dir, exist_ok=True)
    os.makedirs(os.path.join(root, "coco", "annotations"), exist_ok=True)
    rgb8 = _noise(0)
    cv2.imwrite(os.path.join(img_dir, "rgb8.png"), rgb8)
    cv2.imwrite(os.path.join(img_dir, "rgb16.png"), rgb8.astype(np.uint16) * 257)
    grey = _noise(1, (H, W))
    cv2.imwrite(os.path.join(img_dir, "grey8.png"), grey)
    cv2.imwrite(os.path.join(img_dir, "grey16.png"), grey.astype(np.uint16) * 257)
    Image.fromarray(_noise(2)).convert("CMYK").save(os.path.join(img_dir, "cmyk.jpg"),
                                                    quality=95)
    rgba = np.concatenate([rgb8[:, :, ::-1], np.full((H, W, 1), 128, np.uint8)], axis=2)
    Image.fromarray(rgba, "RGBA").save(os.path.join(img_dir, "rgba.png"))
    _exif_jpeg(os.path.join(img_dir, "exif_labels_rotated.jpg"), _noise(3, (W, H, 3)), 6)
    _exif_jpeg(os.path.join(img_dir, "exif_labels_stored.jpg"), _noise(4), 6)
    cv2.imwrite(os.path.join(img_dir, "full.jpg"), _noise(5))
    data = open(os.path.join(img_dir, "full.jpg"), "rb").read()
    os.remove(os.path.join(img_dir, "full.jpg"))
    with open(os.path.join(img_dir, "truncated.jpg"), "wb") as f:
        f.write(data[: len(data) // 2])
    for name, seed in (("border.png", 6), ("zero.png", 7), ("empty.png", 8), ("crowd.png", 9)):
        cv2.imwrite(os.path.join(img_dir, name), _noise(seed))
    cv2.imwrite(os.path.join(img_dir, "mismatch.png"), _noise(10, (40, W, 3)))

    # (file, [(bbox XYWH, category id, iscrowd)])
    spec = [
        ("rgb8.png", [([4, 4, 26, 16], 1, 0)]),
        ("rgb16.png", [([4, 4, 26, 16], 1, 0)]),
        ("grey8.png", [([10, 8, 20, 30], 3, 0)]),
        ("grey16.png", [([10, 8, 20, 30], 3, 0)]),
        ("cmyk.jpg", [([20, 5, 30, 30], 18, 0)]),
        ("rgba.png", [([4, 4, 26, 16], 1, 0)]),
        ("exif_labels_rotated.jpg", [([30, 6, 30, 20], 1, 0)]),
        ("exif_labels_stored.jpg", [([2, 20, 12, 20], 3, 0)]),
        ("truncated.jpg", [([4, 4, 10, 10], 1, 0)]),
        ("border.png", [([0, 0, 64, 48], 1, 0), ([50, 30, 30, 30], 18, 0)]),
        ("zero.png", [([10, 10, 0, 5], 1, 0), ([5, 5, 10, 10], 3, 0)]),
        ("empty.png", []),
        ("crowd.png", [([0, 0, 20, 20], 1, 1), ([30, 10, 20, 20], 18, 0)]),
        ("mismatch.png", [([4, 4, 10, 10], 1, 0)]),
    ]
    images, anns = [], []
    for k, (file_name, objects) in enumerate(spec):
        images.append({"id": k + 1, "file_name": file_name, "height": H, "width": W})
        for bbox, cat, crowd in objects:
            anns.append({"id": 100 + len(anns), "image_id": k + 1, "category_id": cat,
                         "bbox": bbox, "area": bbox[2] * bbox[3], "iscrowd": crowd})
    cats = [{"id": 1, "name": "person"}, {"id": 3, "name": "car"}, {"id": 18, "name": "dog"}]
    with open(os.path.join(root, "coco", "annotations", "instances_train2017.json"), "w") as f:
        json.dump({"images": images, "annotations": anns, "categories": cats}, f)
    return {im["file_name"]: im for im in images}


def write_voc_corpus(root: str) -> None:
    """VOC2007 trainval: two JPEGs whose XML has float coordinates and no optional tags."""
    base = os.path.join(root, "VOC2007")
    for sub in ("Annotations", "JPEGImages", os.path.join("ImageSets", "Main")):
        os.makedirs(os.path.join(base, sub), exist_ok=True)
    objects = {"000001": [("dog", (10.5, 5.25, 40.75, 30.5))],
               "000002": [("cat", (1, 1, 64, 48)), ("person", (30.2, 20.9, 70.1, 47.6))]}
    for k, (stem, objs) in enumerate(objects.items()):
        cv2.imwrite(os.path.join(base, "JPEGImages", stem + ".jpg"), _noise(20 + k))
        body = "".join(
            f"<object><name>{n}</name><bndbox><xmin>{b[0]}</xmin><ymin>{b[1]}</ymin>"
            f"<xmax>{b[2]}</xmax><ymax>{b[3]}</ymax></bndbox></object>" for n, b in objs)
        with open(os.path.join(base, "Annotations", stem + ".xml"), "w") as f:
            f.write(f"<annotation><filename>{stem}.jpg</filename><size><width>{W}</width>"
                    f"<height>{H}</height><depth>3</depth></size>{body}</annotation>")
    with open(os.path.join(base, "ImageSets", "Main", "trainval.txt"), "w") as f:
        f.write("000001\n000002\n")


def visualize(root: str, out: str, engine: str, dataset: str, source: str = "dataloader",
              min_size: int = 48, extra: List[str] = ()) -> subprocess.CompletedProcess:
    """Run tools/visualize_data.py on ``dataset`` with flipping off; asserts it succeeded."""
    env = dict(os.environ, DETECTRON2_DATASETS=root, PYTHONPATH=REPO, OMP_NUM_THREADS="1")
    cmd = [sys.executable, os.path.join(REPO, "tools", "visualize_data.py"),
           "--config", os.path.join(REPO, "configs", "quickstart.yaml"), "--source", source,
           "--engine", engine, "--output-dir", out,
           "DATASETS.TRAIN", f"('{dataset}',)", "INPUT.MIN_SIZE_TRAIN", f"({min_size},)",
           "INPUT.MAX_SIZE_TRAIN", "1000", "INPUT.RANDOM_FLIP", "none",
           "DATALOADER.FILTER_EMPTY_ANNOTATIONS", "False", *extra]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr
    return proc


def skip_warnings(proc: subprocess.CompletedProcess) -> List[str]:
    """The tool's warnings about skipped images, in order."""
    return [line for line in proc.stderr.splitlines() if "Skipping" in line]


def records(out: str) -> dict:
    with open(os.path.join(out, "records.json"), encoding="utf-8") as f:
        return json.load(f)


def png(out: str, name: str) -> np.ndarray:
    img = cv2.imread(os.path.join(out, name), cv2.IMREAD_UNCHANGED)
    assert img is not None, name
    return img
