"""Load a COCO-format instances file into Detectron2's standard dataset dicts.

Follows ``detectron2/data/datasets/coco.py:load_coco_json`` (images sorted by id, ``bbox_mode``
XYWH_ABS, category ids mapped to contiguous 0-based ids) but parses with :mod:`json` alone (no
pycocotools needed) and checks every record: a bad annotation is skipped with a warning naming the
file and annotation id (see :class:`~resdet.data.problems.ProblemLog`), where Detectron2
would stop with an assertion or carry the bad box into training. Image files are not opened here;
the data loader reads them lazily and ``datasets/check.py`` checks them eagerly.
"""

from __future__ import annotations

import json
import logging
import os
from typing import Any, Dict, List, Optional, Sequence, Tuple

from resdet.data.annotations import XYWH_ABS, XYXY_ABS, box_problem, clip_box, crosses_border
from resdet.data.cache import cache_coco_json
from resdet.data.coco_format import normalize_coco_gt
from resdet.data.problems import ProblemLog
from resdet.errors import UserError

logger = logging.getLogger("resdet.data")

__all__ = ["XYWH_ABS", "XYXY_ABS", "coco_categories", "load_coco_json", "read_json"]


def read_json(path: str, *, skip_keys: Sequence[str] = ()) -> Any:
    """Parse a JSON file; a syntax error becomes a :class:`UserError` naming the file and line.

    ``skip_keys`` are dropped from every object as soon as it is parsed, so e.g. COCO-train's
    polygons (``"segmentation"``: most of its 470 MB, unused by the box records) never all sit in
    memory at once: the parse's peak memory falls to about a quarter.
    """
    hook = None
    if skip_keys:
        def hook(obj: dict) -> dict:
            for k in skip_keys:
                obj.pop(k, None)
            return obj
    try:
        with open(path, "rb") as f:
            return json.loads(f.read(), object_hook=hook)
    except FileNotFoundError:
        raise UserError(f"{path} does not exist; see datasets/README.md for the expected layout.") \
            from None
    except json.JSONDecodeError as e:
        raise UserError(
            f"{path} is not valid JSON (line {e.lineno}, column {e.colno}: {e.msg}); "
            "re-download or regenerate it."
        ) from None
    except UnicodeDecodeError:
        raise UserError(f"{path} is not valid JSON (not UTF-8 text); re-download it.") from None


def coco_categories(data: dict, json_file: str) -> List[dict]:
    """The ``categories`` of a parsed COCO file, sorted by id, checked for ``id`` and ``name``."""
    cats = data.get("categories")
    if not isinstance(cats, list) or not cats:
        raise UserError(f"{json_file} has no 'categories' list; a COCO instances file needs one.")
    for i, c in enumerate(cats):
        if not isinstance(c, dict) or not isinstance(c.get("id"), int) or "name" not in c:
            raise UserError(f"{json_file}: categories[{i}] needs an integer 'id' and a 'name'.")
    return sorted(cats, key=lambda c: c["id"])


@cache_coco_json  # parsed once per machine while the file is unchanged (resdet.data.cache)
def load_coco_json(
    json_file: str,
    image_root: str,
    *,
    id_map: Optional[Dict[int, int]] = None,
    strict: bool = False,
    problems: Optional[ProblemLog] = None,
) -> Tuple[List[dict], List[dict]]:
    """Load a COCO instances file as Detectron2 dataset dicts.

    Args:
        json_file: the annotation file (``instances_*.json``).
        image_root: folder that the images' ``file_name`` are relative to.
        id_map: dataset category id -> contiguous id; default: the file's categories sorted by id
            (Detectron2's ``thing_dataset_id_to_contiguous_id``).
        strict: raise :class:`UserError` at the first bad record instead of skipping it.
        problems: collects the problems (``datasets/check.py`` passes one); made if not given.

    Returns:
        ``(dataset_dicts, categories)``; every image listed is kept, also those without boxes
        (evaluation needs them; training filters them out).
    """
    log = problems if problems is not None else ProblemLog(json_file, strict=strict)
    data = read_json(json_file, skip_keys=("segmentation",))  # polygons: unused, large
    if not isinstance(data, dict):
        raise UserError(f"{json_file} is not a COCO instances file (top level is not an object).")
    for key in ("images", "annotations"):
        if not isinstance(data.get(key), list):
            raise UserError(f"{json_file} has no '{key}' list; a COCO instances file needs one.")
    # Missing area/iscrowd filled in as every consumer sees them (issue 12).
    data = normalize_coco_gt(data, json_file, for_coco_api=False)
    cats = coco_categories(data, json_file)
    if id_map is None:
        id_map = {c["id"]: i for i, c in enumerate(cats)}

    images: Dict[Any, dict] = {}
    for i, img in enumerate(data["images"]):
        if not isinstance(img, dict):
            log.add(f"{json_file}: images[{i}] is not an object")
            continue
        img_id = img.get("id")
        if not isinstance(img_id, (int, str)):
            img_id = None
        missing = [k for k in ("id", "file_name", "height", "width") if k not in img]
        if missing:
            log.add(f"{json_file}: image {img_id if img_id is not None else f'[{i}]'} lacks "
                    f"{', '.join(missing)}")
            continue
        if img_id is None:
            log.add(f"{json_file}: images[{i}] has an 'id' that is not an integer")
            continue
        h, w = img["height"], img["width"]
        if not (isinstance(h, int) and isinstance(w, int) and h > 0 and w > 0):
            log.add(f"{json_file}: image {img_id} ({img['file_name']}) has invalid size "
                    f"{w}x{h}")
            continue
        if img_id in images:
            log.add(f"{json_file}: image id {img_id} is listed twice ({img['file_name']})")
            continue
        images[img_id] = {
            "file_name": os.path.join(image_root, img["file_name"]),
            "height": h,
            "width": w,
            "image_id": img_id,
            "annotations": [],
        }

    seen_ann_ids = set()
    for i, ann in enumerate(data["annotations"]):
        if not isinstance(ann, dict):
            log.add(f"{json_file}: annotations[{i}] is not an object")
            continue
        ann_id = ann.get("id", f"[{i}]")
        if not isinstance(ann_id, (int, str)):
            ann_id = f"[{i}]"
        where = f"{json_file}: annotation id {ann_id}"
        if ann_id in seen_ann_ids:
            log.add(f"{where} is not unique")
            continue
        seen_ann_ids.add(ann_id)
        ann_img = ann.get("image_id")
        record = images.get(ann_img) if isinstance(ann_img, (int, str)) else None
        if record is None:
            log.add(f"{where} refers to image id {ann.get('image_id')!r}, which is not in 'images'")
            continue
        cat = ann.get("category_id")
        if not isinstance(cat, int) or cat not in id_map:
            log.add(f"{where} (image {record['file_name']}) has unknown category_id {cat!r}")
            continue
        bbox = ann.get("bbox")
        if not isinstance(bbox, list) or len(bbox) != 4:
            log.add(f"{where} (image {record['file_name']}) has no valid 'bbox' [x, y, w, h]")
            continue
        try:
            x, y, w, h = map(float, bbox)
        except (TypeError, ValueError):
            log.add(f"{where} (image {record['file_name']}) has non-numeric bbox {bbox}")
            continue
        x1, y1 = x + w, y + h
        # The common box, inside the image with a positive size, needs neither box_problem nor
        # clipping (COCO-train has 860k boxes; NaN and inf fail these comparisons).
        inside = (x1 - x > 0 and y1 - y > 0 and x >= 0 and y >= 0 and x1 <= record["width"]
                  and y1 <= record["height"])
        why = "" if inside else box_problem((x, y, x1, y1), record["width"], record["height"])
        if why:
            log.add(f"{where} (image {record['file_name']}) {why}")
            continue
        if not inside and crosses_border((x, y, x + w, y + h), record["width"],
                                         record["height"]):
            x0, y0, x1, y1 = clip_box((x, y, x + w, y + h), record["width"], record["height"])
            log.clip(f"{where} (image {record['file_name']}) has a box {[x, y, w, h]} (XYWH) "
                     f"crossing the {record['width']}x{record['height']} image's border; "
                     f"clipped to {[x0, y0, x1 - x0, y1 - y0]}")
            x, y, w, h = x0, y0, x1 - x0, y1 - y0
        iscrowd = ann.get("iscrowd", 0)
        if iscrowd not in (0, 1):
            log.add(f"{where} (image {record['file_name']}) has iscrowd {iscrowd!r}, not 0 or 1")
            continue
        record["annotations"].append({
            "iscrowd": int(iscrowd),
            "bbox": [x, y, w, h],
            "bbox_mode": XYWH_ABS,
            "category_id": id_map[cat],
        })

    # Sorted by image id for reproducible order, as Detectron2 does.
    try:
        dicts = [images[k] for k in sorted(images)]
    except TypeError:  # mixed id types: keep file order
        dicts = list(images.values())
    for d in dicts:
        if not d["annotations"]:
            log.note(f"{d['file_name']}: image has no annotations; kept for evaluation, "
                     "skipped for training")
    if problems is None:
        log.summarize()
    return dicts, cats
