"""COCO ground truth and results files as other tools write them, normalised once at load.

Converters often leave out fields the COCO API reads (``area``, ``iscrowd``, annotation ``id``)
and exporters use file stems as image ids. The two COCO API implementations (pycocotools and
faster-coco-eval) react differently (a ``KeyError``; a medium box silently filed as small; a
``ValueError`` on string ids), so every consumer (the COCO loader, both evaluation backends,
``datasets/check.py`` through the loader) sees the file after :func:`normalize_coco_gt`:

- a missing ``area`` becomes the box area w * h and a missing ``iscrowd`` 0, what Detectron2's
  ``convert_to_coco_dict`` writes; one warning counts them;
- a missing annotation ``id`` is numbered after the largest one present;
- image ids that are not all integers in the COCO API's range (strings such as file stems, a mix of
  strings and integers, or integers past 2**31 - 1) become 1..N in the file's order, and each
  image keeps its original id as ``orig_image_id``; :func:`image_id_map` gives the mapping, which
  :func:`normalize_coco_results` applies to a results file so that its ids match.

Results files get one policy on every backend (:func:`normalize_coco_results`): an entry without
``image_id``/``category_id``/``bbox``/``score``, with a non-finite or negative-size box or a
non-finite score, or on an image the ground truth does not list is refused with one sentence naming
the file and the entry.
"""

from __future__ import annotations

import gc
import logging
import math
import numbers
from typing import Any, Dict, Iterable, List, Optional, Tuple

from resdet.errors import UserError

logger = logging.getLogger("resdet.data")

# The C++ COCO API (faster-coco-eval) keeps ids in 32-bit ints in places; larger ones are mapped.
_MAX_IMAGE_ID = 2**31 - 1


def _is_int(x: Any) -> bool:
    return isinstance(x, numbers.Integral) and not isinstance(x, bool)


def _is_number(x: Any) -> bool:
    return isinstance(x, numbers.Real) and not isinstance(x, bool)


def normalize_coco_gt(data: dict, source: str, *, for_coco_api: bool = True) -> dict:
    """COCO ground truth with the fields the COCO API needs filled in and integer image ids.

    Args:
        data: the parsed instances file (not modified; changed images and annotations are copies).
        source: the file's name, for messages.
        for_coco_api: also give what the COCO API needs for evaluation: integer image ids (ids
            that are not all integers become 1..N, see the module doc) and an ``id`` on every
            annotation. The training loader passes False: its records keep the file's own ids.

    Returns:
        A new dict with the same keys. Entries that are not objects, and images whose id is neither
        an integer nor a string, are left as they are for the caller's checks.
    """
    out = dict(data)
    anns = data.get("annotations")
    if isinstance(anns, list):
        new_anns: List[Any] = []
        no_area = no_crowd = no_id = 0
        next_id = 1 + max((a["id"] for a in anns if isinstance(a, dict) and _is_int(a.get("id"))),
                          default=0)
        for a in anns:
            if isinstance(a, dict) and ("area" not in a or "iscrowd" not in a
                                        or ("id" not in a and for_coco_api)):
                a = dict(a)
                if "area" not in a:
                    box = a.get("bbox")
                    if isinstance(box, list) and len(box) == 4 and all(map(_is_number, box)):
                        a["area"] = float(box[2]) * float(box[3])
                        no_area += 1
                if "iscrowd" not in a:
                    a["iscrowd"] = 0
                    no_crowd += 1
                if "id" not in a and for_coco_api:
                    a["id"] = next_id
                    next_id += 1
                    no_id += 1
            new_anns.append(a)
        out["annotations"] = new_anns
        filled = [f"{n} without '{k}' ({v})" for n, k, v in (
            (no_area, "area", "set to the box area w*h"), (no_crowd, "iscrowd", "set to 0"),
            (no_id, "id", "numbered")) if n]
        if filled:
            logger.warning("%s: annotations %s, as Detectron2 writes them.", source,
                           "; ".join(filled))
    images = data.get("images")
    if for_coco_api and isinstance(images, list):
        ids = [im.get("id") for im in images if isinstance(im, dict)]
        if any(isinstance(i, str) or (_is_int(i) and not 0 <= i <= _MAX_IMAGE_ID) for i in ids):
            out.update(_map_image_ids(out, source))
    return out


def _map_image_ids(data: dict, source: str) -> dict:
    mapping: Dict[Any, int] = {}
    images = []
    for im in data["images"]:
        if isinstance(im, dict) and (_is_int(im.get("id")) or isinstance(im.get("id"), str)):
            orig = im["id"]
            if orig in mapping:
                raise UserError(f"{source}: image id {orig!r} is listed twice; image ids must be "
                                "unique.")
            mapping[orig] = len(mapping) + 1
            im = dict(im, id=mapping[orig], orig_image_id=orig)
        images.append(im)
    anns = []
    for a in data.get("annotations", []):
        if isinstance(a, dict) and a.get("image_id") in mapping \
                and not isinstance(a.get("image_id"), bool):
            a = dict(a, image_id=mapping[a["image_id"]])
        anns.append(a)
    logger.info("%s: image ids are not all integers below 2**31; evaluating with ids 1..%d in the "
                "file's order (results files are mapped the same way).", source, len(mapping))
    return {"images": images, "annotations": anns}


def image_id_map(gt: dict) -> Optional[Dict[Any, int]]:
    """Original image id -> COCO API id of ground truth from :func:`normalize_coco_gt`, or None
    when the ids were kept."""
    images = gt.get("images") or []
    if not any(isinstance(im, dict) and "orig_image_id" in im for im in images):
        return None
    return {im.get("orig_image_id", im.get("id")): im["id"] for im in images
            if isinstance(im, dict)}


def check_coco_gt(gt: dict, source: str) -> None:
    """Refuse ground truth that the COCO API backends would crash on or score differently.

    Args:
        gt: from :func:`normalize_coco_gt`.
        source: the file's name, for messages.

    Raises:
        UserError: one sentence naming ``source`` and the first bad image, category or annotation.
    """
    if not isinstance(gt, dict) or not isinstance(gt.get("images"), list) \
            or not isinstance(gt.get("categories"), list):
        raise UserError(f"{source} is not a COCO ground-truth file (needs 'images' and "
                        "'categories' lists).")
    if not isinstance(gt.get("annotations", []), list):
        raise UserError(f"{source}: 'annotations' must be a list.")
    image_ids = set()
    for i, im in enumerate(gt["images"]):
        if not isinstance(im, dict) or not _is_int(im.get("id")):
            raise UserError(f"{source}: images[{i}] needs an integer or string 'id' (found "
                            f"{str(im)[:80]}).")
        if im["id"] in image_ids:
            raise UserError(f"{source}: image id {im.get('orig_image_id', im['id'])!r} is listed "
                            "twice; image ids must be unique.")
        image_ids.add(im["id"])
    cat_ids = set()
    for i, c in enumerate(gt["categories"]):
        if not isinstance(c, dict) or not _is_int(c.get("id")) or "name" not in c:
            raise UserError(f"{source}: categories[{i}] needs an integer 'id' and a 'name'.")
        cat_ids.add(c["id"])
    ann_ids: set = set()
    isfinite, fast = math.isfinite, (int, float)
    for i, a in enumerate(gt.get("annotations", [])):
        if type(a) is dict:  # the common case in one expression; else find the fault below
            aid, img, box, area = a.get("id"), a.get("image_id"), a.get("bbox"), a.get("area")
            if (type(aid) is int and aid not in ann_ids and type(img) is int and img in image_ids
                    and type(box) is list and len(box) == 4 and type(box[0]) in fast
                    and type(box[1]) in fast and type(box[2]) in fast and type(box[3]) in fast
                    and isfinite(box[0]) and isfinite(box[1]) and isfinite(box[2])
                    and isfinite(box[3]) and box[2] >= 0 and box[3] >= 0
                    and type(area) in fast and isfinite(area) and type(a.get("iscrowd")) is int
                    and a.get("iscrowd") in (0, 1) and type(a.get("category_id")) is int):
                ann_ids.add(aid)
                continue
        _check_annotation(a, i, source, ann_ids, image_ids)


def _check_annotation(a: Any, i: int, source: str, ann_ids: set, image_ids: set) -> None:
    """Raise the error for an annotation that failed the fast check in :func:`check_coco_gt`."""
    where = f"{source}: annotation {a.get('id', f'[{i}]') if isinstance(a, dict) else i}"
    if not isinstance(a, dict):
        raise UserError(f"{source}: annotations[{i}] is not an object.")
    if not _is_int(a.get("id")) or a["id"] in ann_ids:
        raise UserError(f"{where} needs a unique integer 'id'.")
    ann_ids.add(a["id"])
    if a.get("image_id") not in image_ids or isinstance(a.get("image_id"), bool):
        raise UserError(f"{where} refers to image id {a.get('image_id')!r}, which is not in "
                        "'images'.")
    box = a.get("bbox")
    if not (isinstance(box, list) and len(box) == 4 and all(map(_is_number, box))
            and all(map(math.isfinite, box)) and box[2] >= 0 and box[3] >= 0):
        raise UserError(f"{where} has no valid 'bbox' [x, y, w, h] (finite, w and h >= 0): "
                        f"{box!r}.")
    if not _is_number(a.get("area")) or not math.isfinite(a["area"]):
        raise UserError(f"{where} has a non-numeric 'area' {a.get('area')!r}.")
    if a.get("iscrowd") not in (0, 1) or isinstance(a.get("iscrowd"), float):
        raise UserError(f"{where} has iscrowd {a.get('iscrowd')!r}; it must be 0 or 1.")
    if not _is_int(a.get("category_id")):
        raise UserError(f"{where} has no integer 'category_id'.")


def _bad_entry(source: str, i: int, r: Any) -> UserError:
    return UserError(f"{source}: entry {i} is not a detection {{image_id, category_id, "
                     f"bbox: [x, y, w, h], score}} with numbers: {str(r)[:120]}")


def _check_detections(results: list, source: str, known: set,
                      id_map: Optional[Dict[Any, int]]) -> Tuple[List[dict], List[Any]]:
    out: List[dict] = []
    unknown: List[Any] = []
    isfinite, fast = math.isfinite, (int, float)
    for i, r in enumerate(results):
        try:
            image_id, cat, bbox, score = r["image_id"], r["category_id"], r["bbox"], r["score"]
            x, y, w, h = bbox
        except (KeyError, TypeError, ValueError):
            raise _bad_entry(source, i, r) from None
        # explicit type tests: the common case costs no generator (bool is not in ``fast``)
        if not (type(cat) is int and type(x) in fast and type(y) in fast and type(w) in fast
                and type(h) in fast and type(score) in fast and type(bbox) is list):
            if not (_is_int(cat) and isinstance(bbox, (list, tuple))
                    and all(map(_is_number, (x, y, w, h, score)))):
                raise _bad_entry(source, i, r)
        x, y, w, h, score = float(x), float(y), float(w), float(h), float(score)
        if not (isfinite(x) and isfinite(y) and isfinite(w) and isfinite(h)
                and isfinite(score)):
            raise UserError(f"{source}: entry {i} has a non-finite score or box (score {score}, "
                            f"bbox {[x, y, w, h]}); fix the model or the file, resdet does not "
                            "guess one.")
        if w < 0 or h < 0:
            raise UserError(f"{source}: entry {i} has a box with negative width or height "
                            f"{[x, y, w, h]}; boxes are [x, y, w, h].")
        try:
            if image_id not in known or type(image_id) is bool:
                unknown.append(image_id)
                continue
        except TypeError:
            raise UserError(f"{source}: entry {i} has image_id {image_id!r}; image ids are "
                            "integers or strings.") from None
        if id_map is not None:
            image_id = id_map[image_id]
        out.append({"image_id": image_id, "category_id": int(cat), "bbox": [x, y, w, h],
                    "score": score})
    return out, unknown


def normalize_coco_results(results: Any, source: str, gt_image_ids: Iterable[Any],
                           id_map: Optional[Dict[Any, int]] = None,
                           gt_cat_ids: Optional[Iterable[Any]] = None) -> List[dict]:
    """A results list checked and with its image ids mapped like the ground truth's.

    Args:
        results: the parsed results file (a list of ``{image_id, category_id, bbox, score}``).
        source: the file's name (or "the model's detections"), for messages.
        gt_image_ids: the ground truth's original image ids.
        id_map: :func:`image_id_map` of the ground truth (None: ids are used as they are).
        gt_cat_ids: the ground truth's category ids; others only get a warning (the COCO API
            ignores them).

    Returns:
        New dicts ``{image_id, category_id, bbox, score}`` (floats), ids mapped.

    Raises:
        UserError: one sentence naming ``source`` and the first bad entry.
    """
    if not isinstance(results, list):
        raise UserError(f"{source} must be a JSON list of detections "
                        "({image_id, category_id, bbox: [x, y, w, h], score}).")
    known = set(gt_image_ids)
    gc_was_enabled = gc.isenabled()
    gc.disable()  # a val2017 results file has ~10**6 entries; the collector would triple the time
    try:
        out, unknown = _check_detections(results, source, known, id_map)
    finally:
        if gc_was_enabled:
            gc.enable()
    if unknown:
        ids = sorted({str(u) for u in unknown})
        raise UserError(f"{source}: {len(ids)} image_id(s) are not in the ground truth (e.g. "
                        f"{', '.join(ids[:3])}); check that the file is for this dataset.")
    if gt_cat_ids is not None:
        cats = {r["category_id"] for r in out}.difference(gt_cat_ids)
        if cats:
            logger.warning("%s: category_id(s) %s are not in the ground truth; those detections "
                           "are ignored (COCO data uses the dataset's own category ids).",
                           source, sorted(cats)[:5])
    return out
