"""The box policy both engines train on, applied once where annotations are loaded.

As Detectron2's mapper (``transform_instance_annotations`` then ``filter_empty_instances``) and
torchvision's detection references do: a box that crosses the image border is clipped to the image
and kept (a labelling tool often lets a box run past the border; the object is still visible);
a box with no area left, or one that is not finite or has non-positive size, is dropped and
counted. Images without (non-crowd) boxes are kept for evaluation and removed for training
(``DATALOADER.FILTER_EMPTY_ANNOTATIONS``).
"""

from __future__ import annotations

import logging
import math
from typing import List, Optional, Sequence, Tuple

import numpy as np

logger = logging.getLogger("resdet.data")

XYXY_ABS = 0  # detectron2.structures.BoxMode.XYXY_ABS
XYWH_ABS = 1  # detectron2.structures.BoxMode.XYWH_ABS

# Slack, in pixels, before a box counts as crossing the border: COCO's float boxes from polygons
# often end a fraction of a pixel past it, and VOC's 1-based xmax may equal the width. Such boxes
# are clipped all the same, only not reported.
BOX_BORDER_SLACK = 1.0


def box_problem(xyxy: Sequence[float], width: Optional[float] = None,
                height: Optional[float] = None) -> str:
    """Why an absolute XYXY box is unusable, or ``""`` if it is fine (possibly after clipping).

    A box is unusable when it does not have 4 finite coordinates, its width or height is not
    positive, or (given the image size) nothing of it is left inside the image.
    """
    if len(xyxy) != 4:
        return f"has {len(xyxy)} box coordinates instead of 4"
    x0, y0, x1, y1 = xyxy
    if not all(isinstance(v, (int, float)) and math.isfinite(v) for v in (x0, y0, x1, y1)):
        return f"has a non-finite box {list(xyxy)}"
    if x1 - x0 <= 0 or y1 - y0 <= 0:
        return f"has a box of non-positive size {list(xyxy)} (width {x1 - x0:g}, " \
               f"height {y1 - y0:g})"
    if width is not None and height is not None:
        cx0, cy0, cx1, cy1 = clip_box(xyxy, width, height)
        if cx1 <= cx0 or cy1 <= cy0:
            return f"has a box {list(xyxy)} with no area inside the {width}x{height} image"
    return ""


def clip_box(xyxy: Sequence[float], width: float, height: float) -> List[float]:
    """``xyxy`` clipped to ``[0, width] x [0, height]`` (pixels)."""
    x0, y0, x1, y1 = (float(v) for v in xyxy)
    return [min(max(x0, 0.0), width), min(max(y0, 0.0), height),
            min(max(x1, 0.0), width), min(max(y1, 0.0), height)]


def crosses_border(xyxy: Sequence[float], width: float, height: float,
                   slack: float = BOX_BORDER_SLACK) -> bool:
    """True when the box runs past the image border by more than ``slack`` pixels."""
    x0, y0, x1, y1 = xyxy
    return x0 < -slack or y0 < -slack or x1 > width + slack or y1 > height + slack


def record_boxes(record: dict) -> Tuple[np.ndarray, np.ndarray]:
    """``(boxes XYXY float32 [N, 4], category ids int64 [N])`` of a record's non-crowd
    annotations, in the record's pixels (``bbox_mode`` XYWH_ABS or XYXY_ABS)."""
    boxes, labels = [], []
    for ann in record.get("annotations", ()):
        if ann.get("iscrowd", 0):
            continue
        x0, y0, a, b = (float(v) for v in ann["bbox"])
        if int(ann.get("bbox_mode", XYXY_ABS)) == XYWH_ABS:
            a, b = x0 + a, y0 + b
        boxes.append([x0, y0, a, b])
        labels.append(int(ann["category_id"]))
    return (np.asarray(boxes, dtype=np.float32).reshape(-1, 4),
            np.asarray(labels, dtype=np.int64))


def clip_and_filter(boxes: np.ndarray, labels: np.ndarray, width: int, height: int,
                    min_size: float = 1e-5) -> Tuple[np.ndarray, np.ndarray]:
    """Clip ``boxes`` (XYXY float32 [N, 4]) to a ``width`` x ``height`` image and drop those
    with a side of at most ``min_size`` pixels left (Detectron2's ``filter_empty_instances``
    threshold)."""
    boxes = np.clip(boxes, 0, np.array([width, height, width, height], dtype=np.float32))
    keep = (boxes[:, 2] > boxes[:, 0] + min_size) & (boxes[:, 3] > boxes[:, 1] + min_size)
    return boxes[keep].astype(np.float32), labels[keep]


def filter_empty_annotations(dataset_dicts: List[dict], name: str = "") -> List[dict]:
    """Drop images without (non-crowd) boxes for training, as Detectron2's
    ``DATALOADER.FILTER_EMPTY_ANNOTATIONS`` does; logs how many were dropped.

    Evaluation keeps them: they still count for false positives.
    """
    kept = [
        d for d in dataset_dicts
        if any(a.get("iscrowd", 0) == 0 for a in d.get("annotations", ()))
    ]
    n = len(dataset_dicts) - len(kept)
    if n:
        logger.info("%s: removed %d images without annotations for training; %d left.",
                    name or "dataset", n, len(kept))
    return kept
