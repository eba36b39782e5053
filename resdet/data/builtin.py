"""Every builtin dataset name, registered in one place (as Detectron2's
``detectron2/data/datasets/builtin.py``).

Detection, under ``$DETECTRON2_DATASETS`` (read at each use): ``coco_2017_{train,val}``,
``voc_{2007,2012}_{trainval,train,val,test}`` and ``shapes_{train,val}`` (generated on first use).
Classification: ``imagenet_{train,val}``, ``cifar10_{train,test}`` and ``synthetic_imagenet{,_val}``
are registered by :mod:`resdet.data.classification`, imported at the end of this module.
"""

from __future__ import annotations

import os
from typing import Any, Dict, List, Optional

from resdet.data.catalog import (
    COCO_CATEGORIES,
    dataset_root,
    missing_dataset_error,
    register,
)
from resdet.data.coco import load_coco_json
from resdet.data.problems import ProblemLog
from resdet.data.shapes import SHAPES_CLASSES, ensure_shapes, shapes_paths
from resdet.data.voc import VOC_CLASSES, load_voc_instances

COCO_SPLITS = {
    "coco_2017_train": ("coco/train2017", "coco/annotations/instances_train2017.json"),
    "coco_2017_val": ("coco/val2017", "coco/annotations/instances_val2017.json"),
}
VOC_SPLITS = [
    (f"voc_{year}_{split}", f"VOC{year}", split, year)
    for year in (2007, 2012) for split in ("trainval", "train", "val", "test")
]
SHAPES_SPLITS = ("shapes_train", "shapes_val")


def _require(name: str, *paths: str) -> None:
    for path in paths:
        if not os.path.exists(path):
            raise missing_dataset_error(name, path)


def coco_metadata(name: str) -> Dict[str, Any]:
    """Metadata of a builtin COCO split: class names, id map, evaluator type and its files
    under the dataset root.
    """
    image_dir, json_rel = COCO_SPLITS[name]
    root = dataset_root()
    return {
        "name": name,
        "thing_classes": [n for _, n in COCO_CATEGORIES],
        "thing_dataset_id_to_contiguous_id": {i: k for k, (i, _) in enumerate(COCO_CATEGORIES)},
        "evaluator_type": "coco",
        "json_file": os.path.join(root, json_rel),
        "image_root": os.path.join(root, image_dir),
    }


def load_coco(name: str, strict: bool = False,
              problems: Optional[ProblemLog] = None) -> List[dict]:
    """Load a builtin COCO split as dataset dicts.

    Raises:
        UserError: the split's annotation file or image folder is missing.
    """
    meta = coco_metadata(name)
    _require(name, meta["json_file"], meta["image_root"])
    dicts, _ = load_coco_json(meta["json_file"], meta["image_root"],
                              id_map=meta["thing_dataset_id_to_contiguous_id"], strict=strict,
                              problems=problems)
    return dicts


def voc_metadata(name: str, dirname: str, split: str, year: int) -> Dict[str, Any]:
    """Metadata of a builtin VOC split: the 20 class names, evaluator type, folder, year, split."""
    return {
        "name": name,
        "thing_classes": list(VOC_CLASSES),
        "evaluator_type": "pascal_voc",
        "dirname": os.path.join(dataset_root(), dirname),
        "year": year,
        "split": split,
    }


def voc_has_labels(year: int, split: str) -> bool:
    """False for VOC2012 test, whose labels are not public (evaluation writes submission files)."""
    return not (year == 2012 and split == "test")


def load_voc(name: str, dirname: str, split: str, year: int, strict: bool = False,
             problems: Optional[ProblemLog] = None) -> List[dict]:
    """Load a builtin VOC split as dataset dicts.

    Raises:
        UserError: the split's folder or its ``ImageSets/Main/<split>.txt`` is missing.
    """
    meta = voc_metadata(name, dirname, split, year)
    _require(name, meta["dirname"],
             os.path.join(meta["dirname"], "ImageSets", "Main", split + ".txt"))
    return load_voc_instances(meta["dirname"], split, meta["thing_classes"],
                              labels_required=voc_has_labels(year, split), strict=strict,
                              problems=problems)


def shapes_metadata(name: str) -> Dict[str, Any]:
    """Metadata of a builtin synthetic-shapes split (COCO layout, evaluated as COCO)."""
    image_root, json_file = shapes_paths(dataset_root(), name.split("_", 1)[1])
    return {
        "name": name,
        "thing_classes": list(SHAPES_CLASSES),
        "thing_dataset_id_to_contiguous_id": {k + 1: k for k in range(len(SHAPES_CLASSES))},
        "evaluator_type": "coco",
        "json_file": json_file,
        "image_root": image_root,
    }


def _make_shapes() -> None:
    ensure_shapes(dataset_root())


def load_shapes(name: str, strict: bool = False,
                problems: Optional[ProblemLog] = None) -> List[dict]:
    """Load a synthetic-shapes split as dataset dicts (the images are made first if needed)."""
    _make_shapes()
    meta = shapes_metadata(name)
    dicts, _ = load_coco_json(meta["json_file"], meta["image_root"],
                              id_map=meta["thing_dataset_id_to_contiguous_id"], strict=strict,
                              problems=problems)
    return dicts


def register_detection_builtins() -> None:
    """Register the builtin COCO, VOC and synthetic-shapes splits in resdet's catalog."""
    for name in COCO_SPLITS:
        register(name, lambda strict=False, problems=None, n=name: load_coco(n, strict, problems),
                 lambda n=name: coco_metadata(n))
    for name, dirname, split, year in VOC_SPLITS:
        a = (name, dirname, split, year)
        register(name,
                 lambda strict=False, problems=None, a=a: load_voc(*a, strict, problems),
                 lambda a=a: voc_metadata(*a))
    for name in SHAPES_SPLITS:
        register(name, lambda strict=False, problems=None, n=name: load_shapes(n, strict, problems),
                 lambda n=name: shapes_metadata(n), prepare=_make_shapes)


register_detection_builtins()

# Registers imagenet_{train,val}, cifar10_{train,test}, synthetic_imagenet{,_val}.
from resdet.data import classification as _classification  # noqa: E402,F401
from resdet.data.catalog import add_fallback  # noqa: E402
from resdet.data.custom import detectron2_entry  # noqa: E402

add_fallback(detectron2_entry)  # names a user registered in Detectron2's own DatasetCatalog
