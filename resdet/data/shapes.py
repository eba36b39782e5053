"""``shapes_{train,val}``: a small synthetic detection dataset, generated on first use.

Circles, squares and triangles (three classes, each with its own colour family) on noisy
gradient backgrounds, written in the COCO layout so the same loader and evaluator as COCO run on
it::

    root/shapes/train/000000.jpg ...        root/shapes/annotations/instances_train.json
    root/shapes/val/000000.jpg ...          root/shapes/annotations/instances_val.json

It lets the main commands (training, evaluation, prediction) run on a fresh machine without any
download. Generation is deterministic (fixed seed; one random stream per image) and takes a few
seconds; objects are large and do not overlap, so a Faster R-CNN learns it within minutes on a CPU.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import uuid
from typing import List, Tuple

import numpy as np

from resdet.errors import UserError

SHAPES_CLASSES = ("circle", "square", "triangle")
# BGR colour centres, one family per class (jittered per object).
_COLOURS = ((40, 40, 220), (40, 200, 40), (220, 90, 30))
NUM_TRAIN = 600
NUM_VAL = 100
_SPLIT_SEED = {"train": 0, "val": 1}
logger = logging.getLogger(__name__)


def shapes_paths(root: str, split: str) -> Tuple[str, str]:
    """``(image_root, json_file)`` of a shapes split under the dataset root."""
    base = os.path.join(root, "shapes")
    return os.path.join(base, split), os.path.join(base, "annotations", f"instances_{split}.json")


def _place_boxes(rng: np.random.Generator, h: int, w: int, n: int) -> List[Tuple[int, ...]]:
    """Up to ``n`` non-overlapping square extents ``(x0, y0, side)`` (2 px apart) in the image."""
    boxes: List[Tuple[int, ...]] = []
    max_side = max(28, int(0.55 * min(h, w)))
    for _ in range(60):
        if len(boxes) == n:
            break
        side = int(rng.integers(28, max_side + 1))
        x0 = int(rng.integers(0, w - side + 1))
        y0 = int(rng.integers(0, h - side + 1))
        if all(x0 + side + 2 <= bx or bx + bs + 2 <= x0 or y0 + side + 2 <= by or by + bs + 2 <= y0
               for bx, by, bs in boxes):
            boxes.append((x0, y0, side))
    return boxes


def _make_image(rng: np.random.Generator) -> Tuple[np.ndarray, List[Tuple[int, List[float]]]]:
    """One image (BGR uint8) and its objects as ``(class_index, [x, y, w, h])``."""
    import cv2

    h, w = (int(v) for v in rng.integers(128, 257, size=2))
    # Background: a random low-saturation colour with a linear gradient and pixel noise.
    base = rng.uniform(70, 180, size=3)
    gy, gx = np.mgrid[0:h, 0:w].astype(np.float32)
    slope = rng.uniform(-0.25, 0.25, size=2)
    shade = (slope[0] * (gx - w / 2) + slope[1] * (gy - h / 2))[..., None]
    img = base[None, None, :] + shade + rng.normal(0, 12, size=(h, w, 3))
    img = np.clip(img, 0, 255).astype(np.uint8)

    objects = []
    for x0, y0, side in _place_boxes(rng, h, w, int(rng.integers(1, 5))):
        cls = int(rng.integers(0, len(SHAPES_CLASSES)))
        colour = tuple(int(c) for c in np.clip(np.array(_COLOURS[cls]) + rng.integers(-30, 31, 3),
                                               0, 255))
        x1, y1 = x0 + side - 1, y0 + side - 1  # inclusive last pixel
        if cls == 0:
            r = (side - 1) // 2
            cx, cy = x0 + r, y0 + r
            cv2.circle(img, (cx, cy), r, colour, thickness=-1, lineType=cv2.LINE_8)
            box = [float(cx - r), float(cy - r), float(2 * r + 1), float(2 * r + 1)]
        elif cls == 1:
            cv2.rectangle(img, (x0, y0), (x1, y1), colour, thickness=-1)
            box = [float(x0), float(y0), float(side), float(side)]
        else:
            pts = np.array([[x0, y1], [x1, y1], [(x0 + x1) // 2, y0]], dtype=np.int32)
            cv2.fillPoly(img, [pts], colour, lineType=cv2.LINE_8)
            box = [float(x0), float(y0), float(side), float(side)]
        objects.append((cls, box))
    return img, objects


def generate_shapes_split(out_dir: str, split: str, num_images: int, seed: int = 0) -> dict:
    """Write ``num_images`` images of one split to ``out_dir/<split>/`` and return its COCO dict."""
    import cv2

    image_dir = os.path.join(out_dir, split)
    os.makedirs(image_dir, exist_ok=True)
    images, annotations = [], []
    for i in range(num_images):
        rng = np.random.default_rng([seed, _SPLIT_SEED[split], i])
        img, objects = _make_image(rng)
        file_name = f"{i:06d}.jpg"
        ok, buf = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, 92])
        if not ok:
            raise RuntimeError(f"OpenCV could not encode {file_name}")
        with open(os.path.join(image_dir, file_name), "wb") as f:
            f.write(buf.tobytes())
        images.append({"id": i + 1, "file_name": file_name, "height": img.shape[0],
                       "width": img.shape[1]})
        for cls, box in objects:
            annotations.append({"id": len(annotations) + 1, "image_id": i + 1,
                                "category_id": cls + 1, "bbox": box, "area": box[2] * box[3],
                                "iscrowd": 0})
    categories = [{"id": k + 1, "name": n, "supercategory": "shape"}
                  for k, n in enumerate(SHAPES_CLASSES)]
    return {"info": {"description": f"resdet synthetic shapes ({split}, seed {seed})"},
            "images": images, "annotations": annotations, "categories": categories}


def ensure_shapes(root: str, num_train: int = NUM_TRAIN, num_val: int = NUM_VAL,
                  seed: int = 0) -> str:
    """Generate ``root/shapes`` unless it is already there, and return its path.

    Both splits are written to a private temporary folder and renamed into place in one step, so
    two processes starting together never see a half-written dataset (the slower one discards its
    copy).

    Args:
        root: the dataset root (``$DETECTRON2_DATASETS``).
        num_train, num_val: number of images per split (tests use a few).
        seed: random seed; the same seed gives the same bytes.

    Raises:
        UserError: ``root`` is not writable, or ``root/shapes`` exists but is incomplete.
    """
    target = os.path.join(root, "shapes")
    if os.path.isdir(target):
        for split in ("train", "val"):
            if not os.path.isfile(shapes_paths(root, split)[1]):
                raise UserError(f"{target} exists but lacks {shapes_paths(root, split)[1]}; "
                                "delete the folder and it will be generated again.")
        return target
    tmp = os.path.join(root, f".shapes.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}")
    try:
        os.makedirs(os.path.join(tmp, "annotations"))
    except OSError as e:
        raise UserError(f"Cannot create {tmp} to generate the shapes dataset ({e.strerror}); "
                        "set $DETECTRON2_DATASETS to a writable folder.") from None
    logger.info("Generating the synthetic shapes dataset (%d train, %d val images) into %s "
                "(once; set $DETECTRON2_DATASETS to put it elsewhere).", num_train, num_val, target)
    try:
        for split, n in (("train", num_train), ("val", num_val)):
            coco = generate_shapes_split(tmp, split, n, seed)
            with open(os.path.join(tmp, "annotations", f"instances_{split}.json"), "w") as f:
                json.dump(coco, f)
        try:
            os.rename(tmp, target)
        except OSError:
            if not os.path.isdir(target):  # not a lost race: a real failure
                raise
    finally:
        if os.path.isdir(tmp):
            shutil.rmtree(tmp, ignore_errors=True)
    return target
