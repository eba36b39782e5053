"""The dataset checker behind ``datasets/check.py``: load a registered dataset through the
catalog's own loader, collecting every problem, then open every image.

Problems are records or annotations the loaders skip, and images the training mappers would skip
(missing, unreadable or truncated files; a decoded size that is not the annotation's); boxes
clipped to the image border are counted apart (:attr:`ProblemLog.clipped`). The loader helpers
live in :mod:`resdet.data.problems` and :mod:`resdet.data.annotations`; their old import path
here keeps working.
"""

from __future__ import annotations

import os
from typing import List

from resdet.data import catalog
from resdet.data.annotations import BOX_BORDER_SLACK, box_problem, filter_empty_annotations
from resdet.data.image_checks import check_record_image
from resdet.data.problems import ProblemLog
from resdet.errors import UserError

__all__ = [
    "BOX_BORDER_SLACK",
    "ProblemLog",
    "box_problem",
    "check_dataset",
    "check_images",
    "filter_empty_annotations",
]


def check_images(dataset_dicts: List[dict], log: ProblemLog, *, decode: bool = True,
                 workers: int = 0) -> None:
    """Open every image eagerly, as the training mappers will: missing, unreadable or truncated
    files, and sizes that differ from the annotation's (in both EXIF frames), are added to
    ``log``.

    Args:
        decode: decode the pixels (finds truncated files); ``False`` reads only the headers.
        workers: threads (0: one per CPU); OpenCV and PIL release the GIL while decoding.
    """
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=workers or os.cpu_count() or 1) as pool:
        for msg in pool.map(lambda d: check_record_image(d, decode=decode), dataset_dicts):
            if msg:
                log.add(msg)


def _source(meta: dict, name: str) -> str:
    return meta.get("json_file") or meta.get("dirname") or meta.get("root") or name


def check_dataset(name: str, *, decode: bool = True) -> ProblemLog:
    """Validate a registered dataset eagerly: annotations (or class labels) and every image.

    Returns:
        The :class:`ProblemLog` with every problem (``.problems``), boxes clipped to the image
        (``.clipped``), notes (``.notes``, e.g. images without boxes), and ``.num_images`` /
        ``.num_boxes`` of the usable records (classification sets: ``.num_classes`` too, and no
        boxes).

    Raises:
        UserError: the dataset is unknown, not on disk, or neither detection nor classification.
    """
    meta = catalog.get_metadata(name)
    kind = meta.get("evaluator_type")
    if kind not in ("coco", "pascal_voc", "classification"):
        raise UserError(f"{name} is not a detection or classification dataset (evaluator_type "
                        f"{kind!r}); datasets/check.py validates coco_*, voc_*, shapes_*, "
                        "imagenet_* and cifar10_* datasets.")
    catalog.ensure_generated(name)
    log = ProblemLog(_source(meta, name), max_warnings=0)
    # The catalog's loader finds the files (and names a missing one) exactly as training does.
    dicts = catalog.get_dataset_dicts(name, problems=log)
    if kind == "classification":
        from resdet.data.classification import folder_dataset_problems

        for problem in folder_dataset_problems(name):  # AppleDouble files, skipped in training
            log.add(problem)
        classes = catalog.get_metadata(name).get("classes") or []  # generated sets exist now
        used = {d["label"] for d in dicts}
        for i, cls in enumerate(classes):
            if i not in used:
                log.note(f"class {cls} has no images")
        log.num_classes = len(classes) or len(used)
        log.num_images = len(dicts)
        check_images([d for d in dicts if "file_name" in d], log, decode=decode)  # not CIFAR's
        log.num_boxes = 0
        return log
    check_images(dicts, log, decode=decode)
    log.num_images = len(dicts)
    log.num_boxes = sum(len(d["annotations"]) for d in dicts)
    return log
