"""Collect the problems a detection dataset has, so loaders can skip, count and name them.

Loaders report each bad record to a :class:`ProblemLog`: by default it is logged as a warning that
names the file (and annotation id or XML element) and then skipped; with ``strict=True`` the first
problem raises :class:`~resdet.errors.UserError`. ``datasets/check.py`` reads the whole list.
"""

from __future__ import annotations

import logging
import math
import os
from typing import List, Optional, Sequence

from resdet.errors import UserError

logger = logging.getLogger("resdet.data")

# Slack, in pixels, before a box counts as out of the image: COCO's float boxes from polygons
# often end a fraction of a pixel past the border, and VOC's 1-based xmax may equal the width.
BOX_BORDER_SLACK = 1.0


class ProblemLog:
    """Problems found while loading one dataset.

    Args:
        source: what is being loaded (a file or folder), used in the summary line.
        strict: raise :class:`UserError` at the first problem instead of skipping it.
        max_warnings: how many problems are logged one by one; the rest only count.
    """

    def __init__(self, source: str, *, strict: bool = False, max_warnings: int = 20):
        self.source = source
        self.strict = strict
        self.max_warnings = max_warnings
        self.problems: List[str] = []
        self.notes: List[str] = []

    def add(self, message: str) -> None:
        """Record one problem; ``message`` is a sentence naming the file and what is wrong."""
        if self.strict:
            raise UserError(message + "; fix or remove it (datasets/check.py lists every "
                            "problem), or set DATALOADER.SKIP_BAD_SAMPLES True to skip such "
                            "records with a warning")
        self.problems.append(message)
        if len(self.problems) <= self.max_warnings:
            logger.warning("%s; skipped.", message)

    def note(self, message: str) -> None:
        """Record something worth knowing that is not an error (e.g. an image without boxes)."""
        self.notes.append(message)

    def summarize(self) -> None:
        """Log one line with the count of skipped records, if any."""
        n = len(self.problems)
        if n:
            more = f" ({n - self.max_warnings} not shown)" if n > self.max_warnings else ""
            logger.warning("%s: %d problem(s) skipped%s; run datasets/check.py for the full list.",
                           self.source, n, more)


def box_problem(xyxy: Sequence[float], width: Optional[float], height: Optional[float]) -> str:
    """Why an absolute XYXY box is unusable, or ``""`` if it is fine.

    A box is unusable when a coordinate is not finite, its width or height is not positive, or it
    lies outside the image by more than :data:`BOX_BORDER_SLACK` pixels.
    """
    if len(xyxy) != 4:
        return f"has {len(xyxy)} box coordinates instead of 4"
    x0, y0, x1, y1 = xyxy
    if not all(isinstance(v, (int, float)) and math.isfinite(v) for v in (x0, y0, x1, y1)):
        return f"has a non-finite box {list(xyxy)}"
    if x1 - x0 <= 0 or y1 - y0 <= 0:
        return f"has a box of non-positive size {list(xyxy)} (width {x1 - x0:g}, " \
               f"height {y1 - y0:g})"
    s = BOX_BORDER_SLACK
    if width is not None and height is not None and (
        x0 < -s or y0 < -s or x1 > width + s or y1 > height + s
    ):
        return f"has a box {list(xyxy)} outside the {width}x{height} image"
    return ""


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


def check_images(dataset_dicts: List[dict], log: ProblemLog, *, decode: bool = True,
                 workers: int = 0, progress: bool = True) -> None:
    """Open every image eagerly: missing, unreadable or truncated files, and sizes that differ
    from the annotation's, are added to ``log``.

    Args:
        decode: decode the pixels (finds truncated files); ``False`` reads only the headers.
        workers: processes (0: one per CPU; see :mod:`resdet.data.parallel_checks`).
        progress: a progress bar with ETA on the terminal.
    """
    from resdet.data.parallel_checks import image_problems

    for msg in image_problems(dataset_dicts, decode=decode, workers=workers, progress=progress):
        if msg:
            log.add(msg)


def check_dataset(name: str, *, decode: bool = True, images: bool = True,
                  workers: int = 0) -> ProblemLog:
    """Validate a builtin dataset eagerly: annotations (or class labels) and every image.

    Args:
        name: a builtin or registered dataset name.
        decode: decode every image (else read headers only).
        images: open the images at all (False: the annotations or labels only, the fast part).
        workers: processes opening images (0: one per CPU).

    Returns:
        The :class:`ProblemLog` with every problem (``.problems``), notes (``.notes``, e.g.
        images without boxes), and ``.num_images`` / ``.num_boxes`` of the usable records
        (classification sets: ``.num_classes`` too, and no boxes).

    Raises:
        UserError: the dataset is unknown, not on disk, or neither detection nor classification.
    """
    from resdet.data import catalog
    from resdet.data.coco import load_coco_json
    from resdet.data.voc import load_voc_instances

    meta = catalog.get_metadata(name)
    kind = meta.get("evaluator_type")
    catalog.ensure_generated(name)
    if kind == "coco":
        for path in (meta["json_file"], meta["image_root"]):
            if not os.path.exists(path):
                raise catalog.missing_dataset_error(name, path)
        log = ProblemLog(meta["json_file"], max_warnings=0)
        dicts, _ = load_coco_json(meta["json_file"], meta["image_root"],
                                  id_map=meta.get("thing_dataset_id_to_contiguous_id"),
                                  problems=log)
    elif kind == "pascal_voc":
        if not os.path.isdir(meta["dirname"]):
            raise catalog.missing_dataset_error(name, meta["dirname"])
        log = ProblemLog(meta["dirname"], max_warnings=0)
        dicts = load_voc_instances(meta["dirname"], meta["split"], meta["thing_classes"],
                                   labels_required=not (meta["year"] == 2012
                                                        and meta["split"] == "test"),
                                   problems=log)
    elif kind == "classification":
        # Loading names a missing folder or label file; then every image is opened.
        log = ProblemLog(meta.get("root") or name, max_warnings=0)
        dicts = catalog.get_dataset_dicts(name)
        classes = catalog.get_metadata(name).get("classes") or []  # generated sets exist now
        used = {d["label"] for d in dicts}
        for i, cls in enumerate(classes):
            if i not in used:
                log.note(f"class {cls} has no images")
        log.num_classes = len(classes) or len(used)
        log.num_images = len(dicts)
        if images:  # not CIFAR's (in memory)
            check_images([d for d in dicts if "file_name" in d], log, decode=decode,
                         workers=workers)
        log.num_boxes = 0
        return log
    else:
        raise UserError(f"{name} is not a detection or classification dataset (evaluator_type "
                        f"{kind!r}); datasets/check.py validates coco_*, voc_*, shapes_*, "
                        "imagenet_* and cifar10_* datasets.")
    if images:
        check_images(dicts, log, decode=decode, workers=workers)
    log.num_images = len(dicts)
    log.num_boxes = sum(len(d["annotations"]) for d in dicts)
    return log
