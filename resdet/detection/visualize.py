"""What each engine trains on, drawn: the library of ``tools/visualize_data.py``.

Two sources, as Detectron2's tool of that name:

- ``annotation``: each record of ``DATASETS.TRAIN`` as loaded (boxes in the stored image's
  pixels, crowd boxes included and marked), on the image as
  :func:`resdet.data.image_checks.read_record_image` decodes it;
- ``dataloader``: each image as an engine's training loader hands it to the network (resized and
  flipped, boxes clipped, crowd and empty boxes gone), one pass in dataset order.

Output: one PNG per image, the picture at the size fed (no rescaling, so a box's coordinates are
its pixels in the PNG), named after the image file's stem; and ``records.json``::

    {"source": "dataloader",
     "images": [{"file_name": ..., "png": "000001.png", "image_size": [H, W],
                 "boxes": [[x0, y0, x1, y1], ...], "classes": ["dog", ...]}, ...],
     "skipped": [{"file_name": ...}, ...]}

Nothing in it names the engine: the same data gives the same files on both engines.
"""

from __future__ import annotations

import json
import logging
import os
from typing import Dict, Iterable, Iterator, List, Optional, Sequence, Tuple

import numpy as np

from resdet.data.image_checks import read_record_image
from resdet.detection.mapper import MappedImage
from resdet.errors import UserError

logger = logging.getLogger("resdet.detection")

SOURCES = ("annotation", "dataloader")
RECORDS_FILE = "records.json"


def _colour(label: int) -> Tuple[int, int, int]:
    rng = np.random.default_rng(label * 7 + 3)
    return tuple(int(c) for c in rng.integers(60, 256, size=3))


def draw_boxes(image_bgr: np.ndarray, boxes: np.ndarray, classes: Sequence[int],
               names: Sequence[str], crowd: Optional[Sequence[bool]] = None) -> np.ndarray:
    """Ground-truth boxes with their class names on a copy of the image, at its size.

    Args:
        image_bgr: ``H x W x 3`` uint8, BGR.
        boxes: ``[N, 4]`` XYXY in the image's pixels.
        classes: ``[N]`` contiguous class ids into ``names``.
        names: class names.
        crowd: ``[N]`` flags; crowd boxes are drawn dashed-thin and labelled "(crowd)".
    """
    import cv2

    out = np.ascontiguousarray(image_bgr).copy()
    h, w = out.shape[:2]
    thick = max(1, round(min(h, w) / 300))
    scale = max(0.3, min(h, w) / 800)
    for k, (box, cls) in enumerate(zip(np.asarray(boxes, np.float64).reshape(-1, 4), classes)):
        x0, y0, x1, y1 = (int(round(v)) for v in box)
        colour = _colour(int(cls))
        is_crowd = bool(crowd[k]) if crowd is not None else False
        cv2.rectangle(out, (x0, y0), (max(x0, x1 - 1), max(y0, y1 - 1)), colour,
                      1 if is_crowd else thick)
        text = names[int(cls)] if 0 <= int(cls) < len(names) else str(int(cls))
        if is_crowd:
            text += " (crowd)"
        cv2.putText(out, text, (x0, max(0, y0 - 2) if y0 > 10 else min(h - 1, y0 + 10)),
                    cv2.FONT_HERSHEY_SIMPLEX, scale, colour, 1, cv2.LINE_AA)
    return out


def _png_name(file_name: str, used: Dict[str, int]) -> str:
    stem = os.path.splitext(os.path.basename(file_name))[0]
    n = used.get(stem, 0)
    used[stem] = n + 1
    return f"{stem}.png" if n == 0 else f"{stem}_{n}.png"


def _to_bgr(image: np.ndarray, image_format: str) -> np.ndarray:
    return image if image_format == "BGR" else np.ascontiguousarray(image[:, :, ::-1])


def annotation_samples(dicts: Iterable[dict], image_format: str = "BGR"
                       ) -> Iterator[Tuple[dict, Optional[MappedImage], str]]:
    """``(record, image with all its boxes as loaded, or None, why skipped)`` per record."""
    from resdet.data.annotations import XYWH_ABS

    for record in dicts:
        try:
            image = read_record_image(record, image_format)
        except UserError as e:
            logger.warning("Skipping an image that cannot be drawn: %s", e)
            yield record, None, str(e)
            continue
        boxes, classes, crowd = [], [], []
        for ann in record.get("annotations", ()):
            x0, y0, a, b = (float(v) for v in ann["bbox"])
            if int(ann.get("bbox_mode", 0)) == XYWH_ABS:
                a, b = x0 + a, y0 + b
            boxes.append([x0, y0, a, b])
            classes.append(int(ann["category_id"]))
            crowd.append(bool(ann.get("iscrowd", 0)))
        yield record, MappedImage(record, image, np.asarray(boxes, np.float32).reshape(-1, 4),
                                  np.asarray(classes, np.int64), crowd=np.asarray(crowd, bool)), ""


def _loader_samples(dicts: Sequence[dict], samples: Iterable[MappedImage]
                    ) -> Iterator[Tuple[dict, Optional[MappedImage], str]]:
    """Pair a one-pass loader's output with the records it came from; records the loader left
    out (skipped images) come as ``(record, None, "")``."""
    i = 0
    for sample in samples:
        name = sample.record.get("file_name")
        while i < len(dicts) and dicts[i]["file_name"] != name:
            yield dicts[i], None, ""
            i += 1
        if i == len(dicts):
            raise RuntimeError(f"the loader gave {name}, which is not among the records in order")
        yield dicts[i], sample, ""
        i += 1
    for record in dicts[i:]:
        yield record, None, ""


def write_visualization(pairs: Iterable[Tuple[dict, Optional[MappedImage], str]],
                        output_dir: str, names: Sequence[str], *, source: str,
                        image_format: str = "BGR", num: int = 0) -> dict:
    """Write one PNG per image and ``records.json`` (see the module docstring).

    Args:
        pairs: ``(record, sample or None when skipped, why)`` in order.
        output_dir: created if needed.
        names: class names (``thing_classes``).
        source: "annotation" or "dataloader" (written into records.json).
        image_format: channel order of the samples' images (``INPUT.FORMAT``).
        num: stop after this many drawn images (0: all).

    Returns:
        The content of records.json.
    """
    import cv2

    os.makedirs(output_dir, exist_ok=True)
    used: Dict[str, int] = {}
    images: List[dict] = []
    skipped: List[dict] = []
    for record, sample, why in pairs:
        if num and len(images) >= num:
            break
        if sample is None:
            skipped.append({"file_name": record["file_name"], **({"why": why} if why else {})})
            continue
        png = _png_name(record["file_name"], used)
        crowd = sample.crowd
        drawing = draw_boxes(_to_bgr(sample.image, image_format), sample.boxes, sample.classes,
                             names, crowd)
        path = os.path.join(output_dir, png)
        if not cv2.imwrite(path, drawing):
            raise UserError(f"Cannot write {path}; check that --output-dir is writable.")
        entry = {"file_name": record["file_name"], "png": png,
                 "image_size": [int(sample.image.shape[0]), int(sample.image.shape[1])],
                 "boxes": [[float(v) for v in b] for b in sample.boxes.tolist()],
                 "classes": [names[int(c)] if 0 <= int(c) < len(names) else str(int(c))
                             for c in sample.classes.tolist()]}
        if crowd is not None:
            entry["iscrowd"] = [int(c) for c in crowd]
        images.append(entry)
    result = {"source": source, "images": images, "skipped": skipped}
    with open(os.path.join(output_dir, RECORDS_FILE), "w", encoding="utf-8") as f:
        json.dump(result, f, indent=1)
    logger.info("Drew %d image(s) into %s (%d skipped); records in %s", len(images), output_dir,
                len(skipped), RECORDS_FILE)
    return result


def visualize(source: str, dicts: Sequence[dict], names: Sequence[str], output_dir: str, *,
              image_format: str = "BGR", num: int = 0,
              loader_samples: Optional[Iterable[MappedImage]] = None) -> dict:
    """Draw ``dicts`` as loaded (``source="annotation"``), or an engine's one-pass training
    loader output over them (``"dataloader"``, ``loader_samples`` in the order of ``dicts``).

    Raises:
        UserError: an unknown source.
    """
    if source == "annotation":
        pairs = annotation_samples(dicts, image_format)
    elif source == "dataloader":
        if loader_samples is None:
            raise ValueError("source 'dataloader' needs loader_samples")
        pairs = _loader_samples(dicts, loader_samples)
    else:
        raise UserError(f"--source {source!r}: use one of {', '.join(SOURCES)}.")
    return write_visualization(pairs, output_dir, names, source=source,
                               image_format=image_format, num=num)


def class_names(dataset_names: Sequence[str], num_classes: int = 0) -> List[str]:
    """``thing_classes`` of the first dataset that has them (numbers if none does)."""
    from resdet.data import catalog

    for name in dataset_names:
        try:
            names = catalog.get_metadata(name).get("thing_classes")
        except UserError:
            continue
        if names:
            return list(names)
    return [str(i) for i in range(num_classes)]
