"""``synthetic_imagenet``: a small class-folder dataset generated on first use, deterministically.

Ten classes, each a shape (disc, square, triangle, ring, plus, stripes, ...) drawn at a random
place, size and rotation-free pose over a noisy random background. The foreground hue leans
towards a class-specific value but overlaps its neighbours, so colour alone is not enough and a
network has to learn shapes; still, a small net learns it far above chance in a few CPU minutes.
It is written as JPEG files in ImageNet's class-folder layout, so it runs through exactly the code
path of ``imagenet_{train,val}``.
"""

from __future__ import annotations

import logging
import os
import shutil
import uuid

import numpy as np

SYNTHETIC_DIR = "synthetic_imagenet"
SHAPES = ("disc", "square", "triangle", "ring", "plus", "hstripes", "vstripes", "checker",
          "cross", "diamond")
IMAGE_SIZE = 64
# images per class
SPLIT_SIZES = {"train": 260, "val": 40}
_SEED = 20151210  # the paper's arXiv date
_DONE = "COMPLETE"
logger = logging.getLogger(__name__)


def _draw(shape: str, rng: np.random.Generator, size: int, hue: float) -> np.ndarray:
    import cv2

    bg = rng.integers(0, 256, 3)
    img = np.clip(bg + rng.normal(0, 25, (size, size, 3)), 0, 255).astype(np.uint8)
    hsv = np.uint8([[[int(hue) % 180, int(rng.integers(150, 256)), int(rng.integers(150, 256))]]])
    fg = tuple(int(v) for v in cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)[0, 0])
    r = int(rng.integers(size // 5, size // 3))
    cx, cy = (int(v) for v in rng.integers(r, size - r, 2))
    yy, xx = np.mgrid[0:size, 0:size]
    inside = (np.abs(xx - cx) <= r) & (np.abs(yy - cy) <= r)
    period = max(3, r // 2)
    if shape == "disc":
        cv2.circle(img, (cx, cy), r, fg, -1)
    elif shape == "square":
        cv2.rectangle(img, (cx - r, cy - r), (cx + r, cy + r), fg, -1)
    elif shape == "triangle":
        pts = np.array([[cx, cy - r], [cx - r, cy + r], [cx + r, cy + r]], np.int32)
        cv2.fillPoly(img, [pts], fg)
    elif shape == "ring":
        cv2.circle(img, (cx, cy), r, fg, max(2, r // 3))
    elif shape == "plus":
        t = max(2, r // 3)
        cv2.rectangle(img, (cx - r, cy - t), (cx + r, cy + t), fg, -1)
        cv2.rectangle(img, (cx - t, cy - r), (cx + t, cy + r), fg, -1)
    elif shape == "cross":
        t = max(2, r // 3)
        cv2.line(img, (cx - r, cy - r), (cx + r, cy + r), fg, t)
        cv2.line(img, (cx - r, cy + r), (cx + r, cy - r), fg, t)
    elif shape == "diamond":
        pts = np.array([[cx, cy - r], [cx + r, cy], [cx, cy + r], [cx - r, cy]], np.int32)
        cv2.fillPoly(img, [pts], fg)
    else:
        if shape == "hstripes":
            mask = inside & ((yy // period) % 2 == 0)
        elif shape == "vstripes":
            mask = inside & ((xx // period) % 2 == 0)
        else:  # checker
            mask = inside & (((xx // period) + (yy // period)) % 2 == 0)
        img[mask] = fg
    return img


def generate_synthetic_imagenet(root: str) -> str:
    """Create ``root/synthetic_imagenet/{train,val}/<class>/*.JPEG`` unless it is complete.

    Generation happens in a temporary folder renamed into place, so concurrent processes (several
    ranks, or two runs) never see a half-written dataset.

    Args:
        root: the datasets folder.

    Returns:
        The dataset folder.
    """
    import cv2

    final = os.path.join(root, SYNTHETIC_DIR)
    if os.path.isfile(os.path.join(final, _DONE)):
        return final
    os.makedirs(root, exist_ok=True)
    logger.info("Generating the synthetic_imagenet dataset (%d classes, %s images per class) "
                "into %s (once; set $DETECTRON2_DATASETS to put it elsewhere).", len(SHAPES),
                "/".join(f"{n} {split}" for split, n in SPLIT_SIZES.items()), final)
    tmp = os.path.join(root, f".{SYNTHETIC_DIR}.tmp.{uuid.uuid4().hex[:8]}")
    for split_id, (split, per_class) in enumerate(SPLIT_SIZES.items()):
        for k, shape in enumerate(SHAPES):
            folder = os.path.join(tmp, split, f"n{k:08d}_{shape}")
            os.makedirs(folder)
            for i in range(per_class):
                rng = np.random.default_rng([_SEED, split_id, k, i])
                hue = 18 * k + rng.normal(0, 8)
                img = _draw(shape, rng, IMAGE_SIZE, hue)
                cv2.imwrite(os.path.join(folder, f"{split}_{k}_{i:05d}.JPEG"),
                            cv2.cvtColor(img, cv2.COLOR_RGB2BGR),
                            [cv2.IMWRITE_JPEG_QUALITY, 92])
    open(os.path.join(tmp, _DONE), "w").close()
    try:
        os.rename(tmp, final)
    except OSError:
        # Another process finished first (or a partial folder without the marker is there).
        if os.path.isfile(os.path.join(final, _DONE)):
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            shutil.rmtree(final, ignore_errors=True)
            os.rename(tmp, final)
    return final
