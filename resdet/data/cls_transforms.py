"""The paper's classification augmentation and test-time views, on ``H x W x 3`` uint8 RGB arrays.

Training (random draws come from a ``numpy.random.Generator`` seeded per sample by the caller):

- :func:`scale_augment_crop`: ImageNet, Sec. 3.4: "the image is resized with its shorter side
  randomly sampled in [256, 480] for scale augmentation; a 224x224 crop is randomly sampled from an
  image or its horizontal flip". Only the crop's source region is resized (same result, much less
  work than resizing the whole image first).
- :func:`lighting`: "the standard color augmentation in [21]" (AlexNet's PCA lighting), with
  ImageNet's RGB eigenvalues/eigenvectors as fb.resnet.torch uses them.
- :func:`pad_crop`: CIFAR, Sec. 4.2: "4 pixels are padded on each side, and a 32x32 crop is
  randomly sampled from the padded image or its horizontal flip".

Testing: :func:`resize_shorter`, :func:`center_crop` and :func:`ten_crop_views` (4 corners and
the centre, and their flips).
"""

from __future__ import annotations

import math
from typing import Sequence, Tuple

import numpy as np
import torch

# AlexNet PCA lighting on ImageNet RGB in [0, 1] (fb.resnet.torch datasets/imagenet.lua).
IMAGENET_EIGVAL = np.array([0.2175, 0.0188, 0.0045], dtype=np.float32)
IMAGENET_EIGVEC = np.array([[-0.5675, 0.7192, 0.4009],
                            [-0.5808, -0.0045, -0.8140],
                            [-0.5836, -0.6948, 0.4203]], dtype=np.float32)


def _resize(img: np.ndarray, w: int, h: int) -> np.ndarray:
    import cv2

    interp = cv2.INTER_AREA if w < img.shape[1] and h < img.shape[0] else cv2.INTER_LINEAR
    out = cv2.resize(img, (w, h), interpolation=interp)
    return out if out.ndim == 3 else out[:, :, None]


def resize_shorter(img: np.ndarray, size: int) -> np.ndarray:
    """Resize so that the shorter side is ``size`` (aspect ratio kept)."""
    h, w = img.shape[:2]
    if min(h, w) == size:
        return img
    s = size / min(h, w)
    return _resize(img, max(1, round(w * s)), max(1, round(h * s)))


def center_crop(img: np.ndarray, size: int) -> np.ndarray:
    """The central ``size x size`` window (the image must be at least that large)."""
    h, w = img.shape[:2]
    y, x = (h - size) // 2, (w - size) // 2
    return img[y:y + size, x:x + size]


def scale_augment_crop(img: np.ndarray, rng: np.random.Generator, size_range: Sequence[int],
                       crop: int) -> np.ndarray:
    """Shorter side resized to a random value in ``size_range`` (inclusive), random crop, flip."""
    h, w = img.shape[:2]
    side = int(rng.integers(int(size_range[0]), int(size_range[1]) + 1))
    s = side / min(h, w)
    rh, rw = max(crop, round(h * s)), max(crop, round(w * s))
    y = int(rng.integers(0, rh - crop + 1))
    x = int(rng.integers(0, rw - crop + 1))
    # Map the crop window back to the source image and resize only that region.
    sy, sx = h / rh, w / rw
    y0, y1 = int(math.floor(y * sy)), min(h, int(math.ceil((y + crop) * sy)))
    x0, x1 = int(math.floor(x * sx)), min(w, int(math.ceil((x + crop) * sx)))
    out = _resize(img[y0:max(y1, y0 + 1), x0:max(x1, x0 + 1)], crop, crop)
    if rng.random() < 0.5:
        out = out[:, ::-1]
    return out


def pad_crop(img: np.ndarray, rng: np.random.Generator, pad: int, crop: int) -> np.ndarray:
    """Zero-pad ``pad`` pixels per side, random ``crop x crop`` window, random horizontal flip.

    Works on uint8 or on mean-subtracted float images (zero padding then means "the mean").
    """
    padded = np.pad(img, ((pad, pad), (pad, pad), (0, 0)))
    y = int(rng.integers(0, padded.shape[0] - crop + 1))
    x = int(rng.integers(0, padded.shape[1] - crop + 1))
    out = padded[y:y + crop, x:x + crop]
    if rng.random() < 0.5:
        out = out[:, ::-1]
    return out


def lighting(img: np.ndarray, rng: np.random.Generator, std: float) -> np.ndarray:
    """AlexNet PCA lighting noise; ``img`` is float RGB in [0, 255], returned as float32."""
    if std <= 0:
        return img.astype(np.float32)
    alpha = rng.normal(0.0, std, 3).astype(np.float32)
    rgb = IMAGENET_EIGVEC @ (alpha * IMAGENET_EIGVAL) * 255.0
    return img.astype(np.float32) + rgb.reshape(1, 1, 3)


def to_chw_tensor(img: np.ndarray) -> torch.Tensor:
    """``H x W x 3`` array -> ``3 x H x W`` float32 tensor (values unchanged)."""
    return torch.from_numpy(np.ascontiguousarray(img.transpose(2, 0, 1), dtype=np.float32))


def ten_crop_views(img: torch.Tensor, size: int) -> torch.Tensor:
    """The standard 10 views: 4 corner crops and the centre crop, and their horizontal flips.

    Args:
        img: ``3 x H x W`` (already resized, e.g. shorter side 256).
        size: crop size (224).

    Returns:
        ``10 x 3 x size x size``.
    """
    _, h, w = img.shape
    cy, cx = (h - size) // 2, (w - size) // 2
    corners: Tuple[Tuple[int, int], ...] = ((0, 0), (0, w - size), (h - size, 0),
                                             (h - size, w - size), (cy, cx))
    views = [img[:, y:y + size, x:x + size] for y, x in corners]
    views += [v.flip(-1) for v in views]
    return torch.stack(views)
