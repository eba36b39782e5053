"""Dataset names -> records and metadata, for builtin datasets in their official layouts.

Builtin detection datasets resolve under :func:`dataset_root` (``$DETECTRON2_DATASETS``, default
``./datasets``) exactly where Detectron2's ``detectron2/data/datasets/builtin.py`` looks for them,
so one folder serves both engines:

=====================  ====================================================================
name                   files
=====================  ====================================================================
coco_2017_train        coco/train2017/, coco/annotations/instances_train2017.json
coco_2017_val          coco/val2017/, coco/annotations/instances_val2017.json
voc_2007_{split}       VOC2007/{Annotations,ImageSets/Main/{split}.txt,JPEGImages}
voc_2012_{split}       VOC2012/... (``test``: no public labels; evaluation writes submission files)
shapes_{train,val}     shapes/ (generated on first use, see :mod:`resdet.data.shapes`)
=====================  ====================================================================

Records are Detectron2's standard dataset dicts, so ``DatasetCatalog.register(name, lambda:
get_dataset_dicts(name))`` plugs them into Detectron2 unchanged. This module is the registry only;
the builtin names are registered in one place, :mod:`resdet.data.builtin` (imported by
``resdet.data``).
"""

from __future__ import annotations

import copy
import difflib
import inspect
import os
from typing import Any, Callable, Dict, List, Optional

from resdet.errors import UserError

_README = "datasets/README.md"

# COCO's 80 thing categories: (dataset id, name), from Detectron2's builtin_meta.py.
COCO_CATEGORIES = (
    (1, "person"), (2, "bicycle"), (3, "car"), (4, "motorcycle"), (5, "airplane"), (6, "bus"),
    (7, "train"), (8, "truck"), (9, "boat"), (10, "traffic light"), (11, "fire hydrant"),
    (13, "stop sign"), (14, "parking meter"), (15, "bench"), (16, "bird"), (17, "cat"),
    (18, "dog"), (19, "horse"), (20, "sheep"), (21, "cow"), (22, "elephant"), (23, "bear"),
    (24, "zebra"), (25, "giraffe"), (27, "backpack"), (28, "umbrella"), (31, "handbag"),
    (32, "tie"), (33, "suitcase"), (34, "frisbee"), (35, "skis"), (36, "snowboard"),
    (37, "sports ball"), (38, "kite"), (39, "baseball bat"), (40, "baseball glove"),
    (41, "skateboard"), (42, "surfboard"), (43, "tennis racket"), (44, "bottle"),
    (46, "wine glass"), (47, "cup"), (48, "fork"), (49, "knife"), (50, "spoon"), (51, "bowl"),
    (52, "banana"), (53, "apple"), (54, "sandwich"), (55, "orange"), (56, "broccoli"),
    (57, "carrot"), (58, "hot dog"), (59, "pizza"), (60, "donut"), (61, "cake"), (62, "chair"),
    (63, "couch"), (64, "potted plant"), (65, "bed"), (67, "dining table"), (70, "toilet"),
    (72, "tv"), (73, "laptop"), (74, "mouse"), (75, "remote"), (76, "keyboard"),
    (77, "cell phone"), (78, "microwave"), (79, "oven"), (80, "toaster"), (81, "sink"),
    (82, "refrigerator"), (84, "book"), (85, "clock"), (86, "vase"), (87, "scissors"),
    (88, "teddy bear"), (89, "hair drier"), (90, "toothbrush"),
)



class _Entry:
    def __init__(self, loader: Callable[..., List[dict]], metadata: Callable[[], Dict[str, Any]],
                 prepare: Optional[Callable[[], None]] = None):
        self.loader = loader
        self.metadata = metadata
        self.prepare = prepare


_REGISTRY: Dict[str, _Entry] = {}


def dataset_root() -> str:
    """The folder builtin datasets live in: ``$DETECTRON2_DATASETS``, else ``./datasets``."""
    return os.path.expanduser(os.environ.get("DETECTRON2_DATASETS", "datasets"))


def register(name: str, loader_fn: Callable[..., List[dict]],
             metadata: "Dict[str, Any] | Callable[[], Dict[str, Any]]",
             prepare: Optional[Callable[[], None]] = None) -> None:
    """Register a dataset name.

    Args:
        name: the dataset's name (must be new).
        loader_fn: returns the records; called with ``strict=`` and ``problems=`` (a
            :class:`~resdet.data.problems.ProblemLog`) if it takes those arguments.
        metadata: a dict, or a function returning one (evaluated at each :func:`get_metadata`, so
            paths can follow ``$DETECTRON2_DATASETS``).
        prepare: makes the dataset's files if they are generated on first use (``shapes_*``).
    """
    if name in _REGISTRY:
        raise ValueError(f"dataset {name!r} is already registered")
    meta_fn = metadata if callable(metadata) else (lambda m=dict(metadata): m)
    _REGISTRY[name] = _Entry(loader_fn, meta_fn, prepare)


def list_datasets() -> List[str]:
    """All registered dataset names, sorted."""
    return sorted(_REGISTRY)


# Lookups tried for a name that is not registered here, in order: each returns an entry or
# None. resdet.data.builtin adds the one for names a user registered in Detectron2's own
# DatasetCatalog (resdet.data.custom.detectron2_entry), so the catalog imports no loader.
_FALLBACKS: List[Callable[[str], Optional[_Entry]]] = []


def add_fallback(lookup: Callable[[str], Optional[_Entry]]) -> None:
    """Consult ``lookup(name)`` for names that are not registered (after the earlier ones)."""
    if lookup not in _FALLBACKS:
        _FALLBACKS.append(lookup)


def _entry(name: str) -> _Entry:
    try:
        return _REGISTRY[name]
    except KeyError:
        for lookup in _FALLBACKS:
            found = lookup(name)
            if found is not None:
                return found
        near = difflib.get_close_matches(str(name), list(_REGISTRY), n=1)
        hint = f"did you mean {near[0]!r}? " if near else ""
        raise UserError(f"Unknown dataset {name!r}; {hint}valid names: "
                        f"{', '.join(list_datasets())}.") from None


def get_metadata(name: str) -> Dict[str, Any]:
    """Metadata of a dataset: ``thing_classes``, ``evaluator_type`` and where it lives.

    Detection datasets have ``evaluator_type`` ``"coco"`` (with ``json_file``, ``image_root``,
    ``thing_dataset_id_to_contiguous_id``) or ``"pascal_voc"`` (with ``dirname``, ``year``,
    ``split``). Returns a copy.
    """
    return copy.deepcopy(_entry(name).metadata())


def _takes(fn: Callable, arg: str) -> bool:
    try:
        return arg in inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return False


def get_dataset_dicts(name: str, *, strict: bool = False, problems: Any = None) -> List[dict]:
    """Load a dataset's records (Detectron2 standard dataset dicts).

    Args:
        name: a registered name (see :func:`list_datasets`).
        strict: raise :class:`UserError` at the first bad image record or annotation instead of
            skipping it with a warning.
        problems: a :class:`~resdet.data.problems.ProblemLog` that collects every problem and
            clipped box (``datasets/check.py`` passes one), for loaders that take it.

    Raises:
        UserError: unknown name, the dataset is not on disk (the message names the path
            expected), or (strict) a bad record.
    """
    loader = _entry(name).loader
    kwargs: Dict[str, Any] = {}
    if _takes(loader, "strict"):
        kwargs["strict"] = strict
    if problems is not None and _takes(loader, "problems"):
        kwargs["problems"] = problems
    return loader(**kwargs)


def ensure_generated(name: str) -> None:
    """Generate a dataset that is made on first use (``shapes_*``); no-op for others."""
    entry = _REGISTRY.get(name)
    if entry is not None and entry.prepare is not None:
        entry.prepare()


# Metadata keys that name a dataset's files and folders (COCO, VOC, class folders, CIFAR).
PATH_KEYS = ("json_file", "image_root", "root", "dirname")


def missing_path(name: str) -> Optional[str]:
    """The first file or folder that ``name``'s metadata names and that is not on disk (None
    when all are there), without reading the dataset.

    Raises:
        UserError: an unknown name.
    """
    meta = get_metadata(name)
    for key in PATH_KEYS:
        path = meta.get(key)
        if isinstance(path, str) and path and not os.path.exists(path):
            return path
    return None


def missing_dataset_error(name: str, path: str) -> UserError:
    """The error for a dataset whose file or folder ``path`` is not on disk."""
    return UserError(
        f"Dataset {name} is not on disk: {path} does not exist; put it there in the official "
        f"layout (see {_README}) or set $DETECTRON2_DATASETS to the folder that holds it."
    )
