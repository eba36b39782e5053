"""Draw a detector's boxes, class names and scores into PNG files, the same on both engines.

``tools/predict.py`` and both engines' end-of-training examples call :func:`predict_images` with a
model behind torchvision's interface (a list of CHW tensors in, ``{"boxes", "scores", "labels"}``
per image out; the Detectron2 adapter wraps its model to that).

Pictures are made legible whatever the image size: images smaller than :data:`MIN_DRAW_SIDE`
pixels on their short side are upscaled first (by an integer factor, pixels kept square), label
text and line widths scale with the drawn image, and labels never overlap: each one takes the
first free place above, inside or below its box, and is left out (the box stays) when none is.
"""

from __future__ import annotations

import logging
import os
from typing import TYPE_CHECKING, List, Optional, Sequence, Tuple

import numpy as np

from resdet.data import get_dataset_dicts, get_metadata, read_image
from resdet.errors import UserError

if TYPE_CHECKING:
    from fvcore.common.config import CfgNode

logger = logging.getLogger(__name__)

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")

# Short side, in pixels, below which an image is upscaled before drawing.
MIN_DRAW_SIDE = 600
# Label text height as a fraction of the drawn image's short side (clamped to 12..40 pixels).
TEXT_FRACTION = 0.025


def list_images(inputs: Sequence[str]) -> List[str]:
    """Image files named by ``inputs`` (files, or folders whose images are taken in name order).

    Raises:
        UserError: an input does not exist, or no image is found.
    """
    files: List[str] = []
    for path in inputs:
        if os.path.isdir(path):
            files.extend(os.path.join(path, f) for f in sorted(os.listdir(path))
                         if f.lower().endswith(IMAGE_SUFFIXES))
        elif os.path.isfile(path):
            files.append(path)
        else:
            raise UserError(f"--input {path} does not exist; give image files or folders.")
    if not files:
        raise UserError(f"No images ({', '.join(IMAGE_SUFFIXES)}) found in {list(inputs)}.")
    return files


def class_names(cfg: CfgNode) -> List[str]:
    """``thing_classes`` of the config's first test (else training) dataset; numbers if none."""
    for name in list(cfg.DATASETS.TEST) + list(cfg.DATASETS.TRAIN):
        try:
            names = get_metadata(name).get("thing_classes")
        except UserError:
            continue
        if names:
            return list(names)
    return [str(i) for i in range(cfg.MODEL.ROI_HEADS.NUM_CLASSES)]


def _colour(label: int) -> Tuple[int, int, int]:
    rng = np.random.default_rng(label * 7 + 3)
    return tuple(int(c) for c in rng.integers(60, 256, size=3))


def upscale_factor(height: int, width: int, min_side: int = MIN_DRAW_SIDE) -> int:
    """The integer factor that brings the short side to at least ``min_side`` (1 if it is)."""
    short = max(1, min(height, width))
    return max(1, -(-min_side // short))


def _overlaps(a: Tuple[int, int, int, int], b: Tuple[int, int, int, int]) -> bool:
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


def _label_place(box: Tuple[int, int, int, int], size: Tuple[int, int], image_hw: Tuple[int, int],
                 taken: List[Tuple[int, int, int, int]]) -> Optional[Tuple[int, int, int, int]]:
    """The first free rectangle for a label of ``size`` (w, h): above the box, inside its top,
    below it, then further down inside the box; None when every place overlaps a label."""
    x0, y0, x1, y1 = box
    tw, th = size
    height, width = image_hw
    tx = max(0, min(x0, width - tw))
    candidates = [y0 - th, y0, y1]
    candidates += list(range(y0 + th, max(y0 + th, y1 - th) + 1, th))
    for ty in candidates:
        ty = max(0, min(ty, height - th))
        rect = (tx, ty, tx + tw, ty + th)
        if not any(_overlaps(rect, r) for r in taken):
            return rect
    return None


def draw_detections(image_bgr: np.ndarray, boxes: np.ndarray, scores: np.ndarray,
                    labels: np.ndarray, names: Sequence[str],
                    score_thresh: float = 0.5) -> np.ndarray:
    """A drawing of the detections scoring at least ``score_thresh``: boxes and ``"name 0.97"``
    labels, on the image upscaled by :func:`upscale_factor` (boxes scaled with it).

    Args:
        image_bgr: the image, HxWx3 uint8, BGR.
        boxes: [N, 4] XYXY in the image's pixels.
        scores: [N]. labels: [N] contiguous class indices into ``names``.
        names: class names.
        score_thresh: draw detections scoring at least this.

    Returns:
        A new BGR uint8 image (``factor * H`` x ``factor * W``).
    """
    import cv2

    h, w = image_bgr.shape[:2]
    factor = upscale_factor(h, w)
    out = np.ascontiguousarray(image_bgr)
    if factor > 1:
        out = cv2.resize(out, (w * factor, h * factor), interpolation=cv2.INTER_NEAREST)
    else:
        out = out.copy()
    height, width = out.shape[:2]
    text_h = int(min(40, max(12, round(TEXT_FRACTION * min(height, width)))))
    font = cv2.FONT_HERSHEY_SIMPLEX
    font_scale = cv2.getFontScaleFromHeight(font, text_h, 1)
    text_thick = max(1, text_h // 12)
    line = max(1, int(round(min(height, width) / 300)))
    keep = [i for i in np.argsort(-np.asarray(scores, dtype=np.float64), kind="stable")
            if scores[i] >= score_thresh]
    taken: List[Tuple[int, int, int, int]] = []
    rects = []
    for i in keep:  # boxes first, so no box line crosses a label drawn later
        x0, y0, x1, y1 = (int(round(float(v) * factor)) for v in boxes[i])
        colour = _colour(int(labels[i]))
        cv2.rectangle(out, (x0, y0), (x1, y1), colour, line)
        rects.append((x0, y0, x1, y1))
    for i, box in zip(keep, rects):  # labels by score: the most confident get the best places
        label = int(labels[i])
        name = names[label] if 0 <= label < len(names) else str(label)
        text = f"{name} {float(scores[i]):.2f}"
        (tw, th), base = cv2.getTextSize(text, font, font_scale, text_thick)
        pad = max(1, th // 5)
        rect = _label_place(box, (tw + 2 * pad, th + base + 2 * pad), (height, width), taken)
        if rect is None:
            continue
        taken.append(rect)
        cv2.rectangle(out, rect[:2], (rect[2] - 1, rect[3] - 1), _colour(label), -1)
        cv2.putText(out, text, (rect[0] + pad, rect[3] - pad - base), font, font_scale,
                    (0, 0, 0), text_thick, cv2.LINE_AA)
    return out


def output_path(output_dir: str, src: str, used: set) -> str:
    """``output_dir/<stem of src>.png``, made unique against ``used`` (which it updates)."""
    stem = os.path.splitext(os.path.basename(src))[0]
    name, k = stem, 1
    while name in used:  # same file name in two input folders
        k += 1
        name = f"{stem}_{k}"
    used.add(name)
    return os.path.join(output_dir, name + ".png")


def predict_images(cfg: CfgNode, model, files: Sequence[str], output_dir: str,
                   score_thresh: float = 0.5, device=None) -> List[str]:
    """Run ``model`` on ``files`` and write one PNG per image into ``output_dir``.

    Args:
        cfg: the detection config (INPUT.FORMAT, class names from its datasets).
        model: CHW uint8 tensors (in INPUT.FORMAT's channel order) in, a list of
            ``{"boxes", "scores", "labels"}`` out, boxes in the input's pixels.
        files: image files.
        output_dir: created if needed.
        score_thresh: draw detections scoring at least this.
        device: where the images go (default: the model's).

    Returns:
        The written paths.

    Raises:
        UserError: an image cannot be read or a PNG cannot be written.
    """
    import cv2
    import torch

    device = device or next(model.parameters()).device
    names = class_names(cfg)
    os.makedirs(output_dir, exist_ok=True)
    was_training = model.training
    model.eval()
    written, used = [], set()
    try:
        for path in files:
            img = read_image(path, format=cfg.INPUT.FORMAT)
            tensor = torch.from_numpy(np.ascontiguousarray(img.transpose(2, 0, 1))).to(device)
            with torch.no_grad():
                det = model([tensor])[0]
            bgr = img if cfg.INPUT.FORMAT == "BGR" else img[:, :, ::-1]
            drawn = draw_detections(bgr, det["boxes"].float().cpu().numpy(),
                                    det["scores"].float().cpu().numpy(),
                                    det["labels"].cpu().numpy(), names, score_thresh)
            out = output_path(output_dir, path, used)
            if not cv2.imwrite(out, drawn):
                raise UserError(f"Could not write {out}; check that --output is writable.")
            n = int((det["scores"] >= score_thresh).sum())
            logger.info("%s: %d detections >= %.2f -> %s", path, n, score_thresh, out)
            written.append(out)
    finally:
        model.train(was_training)
    return written


def draw_dataset_examples(cfg: CfgNode, model, dataset_name: str, output_dir: str, count: int = 4,
                          score_thresh: float = 0.5) -> List[str]:
    """Draw predictions on the first ``count`` images of a dataset (after training)."""
    files = [d["file_name"] for d in get_dataset_dicts(dataset_name)[:count]]
    return predict_images(cfg, model, files, output_dir, score_thresh)


def draw_examples_after_training(cfg: CfgNode, model, count: int = 4) -> List[str]:
    """Draw predictions on the first test dataset into OUTPUT_DIR/predictions, as both engines do
    after training. A courtesy: a failure only warns."""
    if not cfg.DATASETS.TEST:
        return []
    name = cfg.DATASETS.TEST[0]
    try:
        paths = draw_dataset_examples(cfg, model, name,
                                      os.path.join(cfg.OUTPUT_DIR, "predictions"), count=count)
    except UserError as e:
        logger.warning("Could not draw predictions: %s", e)
        return []
    if paths:
        logger.info("Drew predictions on %d %s images into %s", len(paths), name,
                    os.path.dirname(paths[0]))
    return paths
