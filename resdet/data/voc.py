"""Load PASCAL VOC detection annotations into Detectron2's standard dataset dicts.

Follows ``detectron2/data/datasets/pascal_voc.py:load_voc_instances``: boxes are XYXY_ABS with
xmin and ymin shifted by -1 (the XML's 1-based inclusive pixel indices become 0-based
coordinates, so (1, W) covers the whole image as (0, W)), and "difficult" objects are kept for
training as Detectron2 does ("they don't hurt accuracy"), with a ``difficult`` flag per annotation
so that evaluation can ignore them as the devkit does. Unlike Detectron2, a malformed XML file or
element is skipped with a warning naming the file and element (or raises with ``strict=True``).
"""

from __future__ import annotations

import os
import xml.etree.ElementTree as ET
from typing import List, Optional, Sequence

from resdet.data.annotations import XYXY_ABS, box_problem, clip_box, crosses_border
from resdet.data.problems import ProblemLog
from resdet.errors import UserError

__all__ = ["VOC_CLASSES", "XYXY_ABS", "load_voc_instances", "parse_voc_xml", "read_image_set"]

# The standard order (Detectron2's pascal_voc.py CLASS_NAMES; category_id 1..20 in results files).
VOC_CLASSES = (
    "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat",
    "chair", "cow", "diningtable", "dog", "horse", "motorbike", "person",
    "pottedplant", "sheep", "sofa", "train", "tvmonitor",
)


def read_image_set(dirname: str, split: str) -> List[str]:
    """The image ids listed in ``dirname/ImageSets/Main/<split>.txt``."""
    path = os.path.join(dirname, "ImageSets", "Main", split + ".txt")
    try:
        with open(path) as f:
            return [line.split()[0] for line in f if line.strip()]
    except FileNotFoundError:
        raise UserError(
            f"{path} does not exist; put PASCAL VOC in the official layout under "
            "$DETECTRON2_DATASETS (see datasets/README.md)."
        ) from None


def _text(elem: ET.Element, path: str) -> Optional[str]:
    child = elem.find(path)
    return None if child is None or child.text is None else child.text.strip()


def parse_voc_xml(
    anno_file: str, class_names: Sequence[str], log: ProblemLog
) -> Optional[dict]:
    """Parse one annotation file into ``{"height", "width", "annotations"}``.

    Returns ``None`` when the file itself is unusable (reported to ``log``); bad objects are
    reported and left out.
    """
    try:
        tree = ET.parse(anno_file)
    except FileNotFoundError:
        log.add(f"{anno_file} does not exist (its image id is in the split's ImageSets file)")
        return None
    except OSError as e:
        log.add(f"{anno_file} cannot be read ({e.strerror})")
        return None
    except ET.ParseError as e:
        line, col = e.position
        log.add(f"{anno_file} is not valid XML (line {line}, column {col}: "
                f"{str(e).split(':')[0]})")
        return None
    root = tree.getroot()
    try:
        height = int(float(_text(root, "size/height") or "nan"))
        width = int(float(_text(root, "size/width") or "nan"))
        if height <= 0 or width <= 0:
            raise ValueError
    except ValueError:
        log.add(f"{anno_file}: element <size> needs positive <width> and <height>")
        return None

    instances = []
    for k, obj in enumerate(root.findall("object")):
        where = f"{anno_file}: element <object> #{k + 1}"
        cls = _text(obj, "name")
        if cls not in class_names:
            log.add(f"{where} has unknown class <name> {cls!r}")
            continue
        bndbox = obj.find("bndbox")
        if bndbox is None:
            log.add(f"{where} ({cls}) has no <bndbox>")
            continue
        try:
            box = [float(_text(bndbox, t) or "") for t in ("xmin", "ymin", "xmax", "ymax")]
        except ValueError:
            log.add(f"{where} ({cls}): <bndbox> needs numeric <xmin> <ymin> <xmax> <ymax>")
            continue
        # Detectron2: 1-based inclusive pixel indices -> 0-based coordinates.
        box[0] -= 1.0
        box[1] -= 1.0
        why = box_problem(box, width, height)
        if why:
            log.add(f"{where} ({cls}) {why}")
            continue
        if crosses_border(box, width, height):
            clipped = clip_box(box, width, height)
            log.clip(f"{where} ({cls}) has a box {box} crossing the {width}x{height} image's "
                     f"border; clipped to {clipped}")
            box = clipped
        difficult = _text(obj, "difficult")
        instances.append({
            "category_id": class_names.index(cls),
            "bbox": box,
            "bbox_mode": XYXY_ABS,
            "iscrowd": 0,
            "difficult": int(difficult) if difficult and difficult.isdigit() else 0,
        })
    return {"height": height, "width": width, "annotations": instances}


def load_voc_instances(
    dirname: str,
    split: str,
    class_names: Sequence[str] = VOC_CLASSES,
    *,
    labels_required: bool = True,
    strict: bool = False,
    problems: Optional[ProblemLog] = None,
) -> List[dict]:
    """Load one VOC split as Detectron2 dataset dicts.

    Args:
        dirname: the year's folder, holding ``Annotations``, ``ImageSets``, ``JPEGImages``.
        split: ``train``, ``val``, ``trainval`` or ``test``.
        class_names: class order that ``category_id`` indexes.
        labels_required: ``False`` for the VOC2012 test split (no public labels): an image without
            its XML gets its size from the JPEG header and no annotations.
        strict: raise at the first problem instead of skipping.
        problems: collects the problems (``datasets/check.py`` passes one).

    Returns:
        One dict per image in the split (``image_id`` is the image name, e.g. ``"000001"``).
    """
    from resdet.data.image_io import image_size

    log = problems if problems is not None else ProblemLog(dirname, strict=strict)
    class_names = list(class_names)
    dicts = []
    for fileid in read_image_set(dirname, split):
        anno_file = os.path.join(dirname, "Annotations", fileid + ".xml")
        jpeg_file = os.path.join(dirname, "JPEGImages", fileid + ".jpg")
        if not labels_required and not os.path.exists(anno_file):
            try:
                height, width = image_size(jpeg_file)
            except UserError as e:
                log.add(str(e).rstrip("."))
                continue
            parsed = {"height": height, "width": width, "annotations": []}
        else:
            parsed = parse_voc_xml(anno_file, class_names, log)
            if parsed is None:
                continue
        dicts.append({"file_name": jpeg_file, "image_id": fileid, **parsed})
        if labels_required and not parsed["annotations"]:
            log.note(f"{anno_file}: image has no usable objects; kept for evaluation, "
                     "skipped for training")
    if problems is None:
        log.summarize()
    return dicts
