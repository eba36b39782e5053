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
get_dataset_dicts(name))`` plugs them into Detectron2 unchanged. Other modules add names with
:func:`register` (the classification datasets do).
"""

from __future__ import annotations

import copy
import difflib
import inspect
import os
from typing import Any, Callable, Dict, List

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

_COCO_SPLITS = {
    "coco_2017_train": ("coco/train2017", "coco/annotations/instances_train2017.json"),
    "coco_2017_val": ("coco/val2017", "coco/annotations/instances_val2017.json"),
}
_VOC_SPLITS = [
    (f"voc_{year}_{split}", f"VOC{year}", split, year)
    for year in (2007, 2012) for split in ("trainval", "train", "val", "test")
]


class _Entry:
    def __init__(self, loader: Callable[..., List[dict]], metadata: Callable[[], Dict[str, Any]]):
        self.loader = loader
        self.metadata = metadata


_REGISTRY: Dict[str, _Entry] = {}


def dataset_root() -> str:
    """The folder builtin datasets live in: ``$DETECTRON2_DATASETS``, else ``./datasets``."""
    return os.path.expanduser(os.environ.get("DETECTRON2_DATASETS", "datasets"))


def register(name: str, loader_fn: Callable[..., List[dict]],
             metadata: "Dict[str, Any] | Callable[[], Dict[str, Any]]") -> None:
    """Register a dataset name.

    Args:
        name: the dataset's name (must be new).
        loader_fn: returns the records; called with ``strict=`` if it takes that argument.
        metadata: a dict, or a function returning one (evaluated at each :func:`get_metadata`, so
            paths can follow ``$DETECTRON2_DATASETS``).
    """
    if name in _REGISTRY:
        raise ValueError(f"dataset {name!r} is already registered")
    meta_fn = metadata if callable(metadata) else (lambda m=dict(metadata): m)
    _REGISTRY[name] = _Entry(loader_fn, meta_fn)


def list_datasets() -> List[str]:
    """All registered dataset names, sorted."""
    return sorted(_REGISTRY)


def _entry(name: str) -> _Entry:
    try:
        return _REGISTRY[name]
    except KeyError:
        # A name a user registered in Detectron2's own DatasetCatalog (issue 12).
        from resdet.data.custom import detectron2_entry

        found = detectron2_entry(name)
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


def get_dataset_dicts(name: str, *, strict: bool = False) -> List[dict]:
    """Load a dataset's records (Detectron2 standard dataset dicts).

    Args:
        name: a registered name (see :func:`list_datasets`).
        strict: raise :class:`UserError` at the first bad image record or annotation instead of
            skipping it with a warning.

    Raises:
        UserError: unknown name, the dataset is not on disk (the message names the path
            expected), or (strict) a bad record.
    """
    loader = _entry(name).loader
    try:
        takes_strict = "strict" in inspect.signature(loader).parameters
    except (TypeError, ValueError):
        takes_strict = False
    return loader(strict=strict) if takes_strict else loader()


def missing_dataset_error(name: str, path: str) -> UserError:
    """The error for a dataset whose file or folder ``path`` is not on disk."""
    return UserError(
        f"Dataset {name} is not on disk: {path} does not exist; put it there in the official "
        f"layout (see {_README}) or set $DETECTRON2_DATASETS to the folder that holds it."
    )


# ---- builtin registrations -------------------------------------------------------------------

def _coco_metadata(name: str) -> Dict[str, Any]:
    image_dir, json_rel = _COCO_SPLITS[name]
    root = dataset_root()
    return {
        "name": name,
        "thing_classes": [n for _, n in COCO_CATEGORIES],
        "thing_dataset_id_to_contiguous_id": {i: k for k, (i, _) in enumerate(COCO_CATEGORIES)},
        "evaluator_type": "coco",
        "json_file": os.path.join(root, json_rel),
        "image_root": os.path.join(root, image_dir),
    }


def _load_coco(name: str, strict: bool = False) -> List[dict]:
    from resdet.data.coco import load_coco_json

    meta = _coco_metadata(name)
    for path in (meta["json_file"], meta["image_root"]):
        if not os.path.exists(path):
            raise missing_dataset_error(name, path)
    dicts, _ = load_coco_json(meta["json_file"], meta["image_root"],
                              id_map=meta["thing_dataset_id_to_contiguous_id"], strict=strict)
    return dicts


def _voc_metadata(name: str, dirname: str, split: str, year: int) -> Dict[str, Any]:
    from resdet.data.voc import VOC_CLASSES

    return {
        "name": name,
        "thing_classes": list(VOC_CLASSES),
        "evaluator_type": "pascal_voc",
        "dirname": os.path.join(dataset_root(), dirname),
        "year": year,
        "split": split,
    }


def _load_voc(name: str, dirname: str, split: str, year: int, strict: bool = False) -> List[dict]:
    from resdet.data.voc import load_voc_instances

    meta = _voc_metadata(name, dirname, split, year)
    for path in (meta["dirname"], os.path.join(meta["dirname"], "ImageSets", "Main",
                                               split + ".txt")):
        if not os.path.exists(path):
            raise missing_dataset_error(name, path)
    return load_voc_instances(meta["dirname"], split, meta["thing_classes"],
                              labels_required=not (year == 2012 and split == "test"),
                              strict=strict)


def _shapes_metadata(name: str) -> Dict[str, Any]:
    from resdet.data.shapes import SHAPES_CLASSES, shapes_paths

    image_root, json_file = shapes_paths(dataset_root(), name.split("_", 1)[1])
    return {
        "name": name,
        "thing_classes": list(SHAPES_CLASSES),
        "thing_dataset_id_to_contiguous_id": {k + 1: k for k in range(len(SHAPES_CLASSES))},
        "evaluator_type": "coco",
        "json_file": json_file,
        "image_root": image_root,
    }


def _load_shapes(name: str, strict: bool = False) -> List[dict]:
    from resdet.data.coco import load_coco_json
    from resdet.data.shapes import ensure_shapes

    ensure_shapes(dataset_root())
    meta = _shapes_metadata(name)
    dicts, _ = load_coco_json(meta["json_file"], meta["image_root"],
                              id_map=meta["thing_dataset_id_to_contiguous_id"], strict=strict)
    return dicts


def ensure_generated(name: str) -> None:
    """Generate a dataset that is made on first use (``shapes_*``); no-op for others."""
    if name.startswith("shapes_") and name in _REGISTRY:
        from resdet.data.shapes import ensure_shapes

        ensure_shapes(dataset_root())


def _register_builtins() -> None:
    for name in _COCO_SPLITS:
        register(name, lambda strict=False, n=name: _load_coco(n, strict),
                 lambda n=name: _coco_metadata(n))
    for name, dirname, split, year in _VOC_SPLITS:
        register(name,
                 lambda strict=False, a=(name, dirname, split, year): _load_voc(*a, strict=strict),
                 lambda a=(name, dirname, split, year): _voc_metadata(*a))
    for name in ("shapes_train", "shapes_val"):
        register(name, lambda strict=False, n=name: _load_shapes(n, strict),
                 lambda n=name: _shapes_metadata(n))


_register_builtins()
