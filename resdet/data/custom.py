"""A user's own COCO- or PASCAL VOC-format datasets, by name, on both engines.

Three ways to name one (``datasets/README.md``, "Your own dataset"):

- the config, no Python: ``DATASETS.CUSTOM`` (registered by :func:`register_custom_datasets`,
  which the tools call once the config is loaded)::

      DATASETS:
        CUSTOM:
          my_train: {FORMAT: coco, JSON_FILE: /data/ann/train.json, IMAGE_ROOT: /data/images}
          my_val:   {FORMAT: voc, ROOT: /data/VOCstyle, SPLIT: val, CLASSES: [cat, dog]}
        TRAIN: ("my_train",)
        TEST: ("my_val",)

- Python, Detectron2's way: :func:`register_coco_instances` and :func:`register_pascal_voc` take
  Detectron2's arguments and register into resdet's catalog, which the Detectron2 engine copies
  into Detectron2's ``DatasetCatalog``;
- a name registered in Detectron2's own ``DatasetCatalog`` (e.g. with
  ``detectron2.data.datasets.register_coco_instances``) is found by resdet's catalog when
  Detectron2 is imported (:func:`detectron2_entry`), so the torchvision engine and resdet's
  evaluators accept it too.

COCO-format sets are read by resdet's loader (:func:`resdet.data.coco.load_coco_json`), classes
are the file's ``categories`` sorted by id, and they are scored with COCO AP; VOC-format sets are
read by :func:`resdet.data.voc.load_voc_instances` and scored with VOC AP (``YEAR`` 2007: the
11-point metric; otherwise the area metric of VOC2010 and later).
"""

from __future__ import annotations

import logging
import os
import sys
from typing import Any, Callable, Dict, List, NamedTuple, Optional, Sequence

from resdet.errors import UserError

logger = logging.getLogger("resdet.data")

FORMATS = {"coco": ("JSON_FILE", "IMAGE_ROOT"), "voc": ("ROOT", "SPLIT", "CLASSES")}
_OPTIONAL = {"coco": (), "voc": ("YEAR",)}

# name -> {"format": "coco"|"voc", ...}: what each custom name points at now.
_SPECS: Dict[str, Dict[str, Any]] = {}
# the same for names found in Detectron2's DatasetCatalog (not in resdet's registry)
_D2_SPECS: Dict[str, Dict[str, Any]] = {}
# (json_file, mtime, size) -> categories sorted by id
_CATEGORY_CACHE: Dict[tuple, List[dict]] = {}


class DatasetEntry(NamedTuple):
    """A catalog entry: ``loader(strict=False) -> records`` and ``metadata() -> dict``."""

    loader: Callable[..., List[dict]]
    metadata: Callable[[], Dict[str, Any]]


def _coco_categories(name: str, json_file: str) -> List[dict]:
    from resdet.data.coco import coco_categories, read_json

    if not os.path.isfile(json_file):
        raise _missing(name, json_file)
    st = os.stat(json_file)
    key = (os.path.abspath(json_file), st.st_mtime_ns, st.st_size)
    if key not in _CATEGORY_CACHE:
        data = read_json(json_file)
        if not isinstance(data, dict):
            raise UserError(f"{json_file} is not a COCO instances file (top level is not an "
                            "object).")
        _CATEGORY_CACHE[key] = coco_categories(data, json_file)
    return _CATEGORY_CACHE[key]


def _missing(name: str, path: str) -> UserError:
    return UserError(f"Dataset {name} is not on disk: {path} does not exist; fix the path it was "
                     "registered with (DATASETS.CUSTOM or register_*() call).")


def _spec(name: str) -> Dict[str, Any]:
    return _SPECS[name] if name in _SPECS else _D2_SPECS[name]


def _metadata(name: str) -> Dict[str, Any]:
    spec = _spec(name)
    if spec["format"] == "coco":
        cats = _coco_categories(name, spec["json_file"])
        meta = {"thing_classes": [c["name"] for c in cats],
                "thing_dataset_id_to_contiguous_id": {c["id"]: k for k, c in enumerate(cats)},
                **spec["extra"],
                "name": name, "evaluator_type": "coco", "json_file": spec["json_file"],
                "image_root": spec["image_root"]}
        return meta
    return {**spec["extra"], "name": name, "thing_classes": list(spec["classes"]),
            "evaluator_type": "pascal_voc", "dirname": spec["dirname"], "year": spec["year"],
            "split": spec["split"]}


def _load(name: str, strict: bool = False) -> List[dict]:
    spec = _spec(name)
    if spec["format"] == "coco":
        from resdet.data.coco import load_coco_json

        meta = _metadata(name)
        if not os.path.isdir(spec["image_root"]):
            raise _missing(name, spec["image_root"])
        dicts, _ = load_coco_json(spec["json_file"], spec["image_root"],
                                  id_map=meta["thing_dataset_id_to_contiguous_id"], strict=strict)
        return dicts
    from resdet.data.voc import load_voc_instances

    listing = os.path.join(spec["dirname"], "ImageSets", "Main", spec["split"] + ".txt")
    for path in (spec["dirname"], listing):
        if not os.path.exists(path):
            raise _missing(name, path)
    return load_voc_instances(spec["dirname"], spec["split"], spec["classes"], strict=strict)


def _register(name: str, spec: Dict[str, Any]) -> None:
    from resdet.data import catalog

    if not isinstance(name, str) or not name:
        raise UserError(f"A dataset name must be a non-empty string, got {name!r}.")
    if name not in _SPECS and name in catalog.list_datasets():
        raise UserError(f"Dataset name {name!r} is already a builtin dataset; give your dataset "
                        "another name.")
    if _SPECS.get(name) == spec:
        return
    first = name not in _SPECS
    _SPECS[name] = spec
    if first:
        catalog.register(name, lambda strict=False, n=name: _load(n, strict),
                         lambda n=name: _metadata(n))
    logger.info("Registered dataset %s (%s format: %s).", name, spec["format"],
                spec.get("json_file") or spec.get("dirname"))


def register_coco_instances(name: str, metadata: Optional[Dict[str, Any]], json_file: str,
                            image_root: str) -> None:
    """Register a COCO-format instances file as dataset ``name`` (Detectron2's signature).

    Registering a name again with other files re-points it (a notebook re-run).

    Args:
        name: the new dataset's name, used in ``DATASETS.TRAIN/TEST`` and the tools.
        metadata: extra metadata (usually ``{}``); ``thing_classes`` and the category id map
            come from the file's ``categories`` (sorted by id).
        json_file: the instances file (``images``, ``annotations``, ``categories``).
        image_root: the folder that the images' ``file_name`` are relative to.

    Raises:
        UserError: the name is a builtin dataset's.
    """
    _register(name, {"format": "coco", "json_file": os.path.expanduser(os.fspath(json_file)),
                     "image_root": os.path.expanduser(os.fspath(image_root)),
                     "extra": dict(metadata or {})})


def register_pascal_voc(name: str, dirname: str, split: str, year: int = 2012,
                        class_names: Optional[Sequence[str]] = None) -> None:
    """Register a PASCAL VOC-layout folder as dataset ``name`` (Detectron2's signature).

    Args:
        name: the new dataset's name.
        dirname: the folder holding ``Annotations/``, ``ImageSets/Main/<split>.txt`` and
            ``JPEGImages/``.
        split: the ``ImageSets/Main`` file's name without ``.txt``.
        year: 2007 scores with VOC2007's 11-point AP; any other year with the area AP of VOC2010
            and later.
        class_names: the ``<name>`` values of the objects, in label order (default: VOC's 20).

    Raises:
        UserError: the name is a builtin dataset's, or ``class_names`` is empty.
    """
    from resdet.data.voc import VOC_CLASSES

    classes = list(VOC_CLASSES if class_names is None else class_names)
    if not classes or not all(isinstance(c, str) and c for c in classes):
        raise UserError(f"Dataset {name}: the VOC class names must be a non-empty list of "
                        f"strings, got {class_names!r}.")
    # The VOC evaluator treats "2012 test" as the unlabelled server split; a user's set has labels.
    year = int(year)
    _register(name, {"format": "voc", "dirname": os.path.expanduser(os.fspath(dirname)),
                     "split": str(split), "year": 2007 if year == 2007 else 2012,
                     "classes": classes, "extra": {}})
    if year not in (2007, 2012):
        logger.info("Dataset %s: year %d is scored with the VOC2010+ area AP.", name, year)


def register_custom_datasets(cfg: Any) -> List[str]:
    """Register the datasets of the config's ``DATASETS.CUSTOM`` block (call it once the config
    is loaded, before the dataset names are used; calling it again is harmless).

    Args:
        cfg: a resdet/Detectron2 config; without ``DATASETS.CUSTOM`` nothing happens.

    Returns:
        The names declared.

    Raises:
        UserError: an entry with an unknown FORMAT, a missing or unknown key, or a builtin name;
            the message names the key.
    """
    block = cfg.DATASETS.get("CUSTOM", None) if "DATASETS" in cfg else None
    if not block:
        return []
    names = []
    for name, entry in block.items():
        key = f"DATASETS.CUSTOM.{name}"
        if not isinstance(entry, dict):
            raise UserError(f"{key} must be a mapping such as {{FORMAT: coco, JSON_FILE: ..., "
                            f"IMAGE_ROOT: ...}}, got {entry!r}.")
        fmt = str(entry.get("FORMAT", "")).lower()
        if fmt not in FORMATS:
            raise UserError(f"{key}.FORMAT must be 'coco' or 'voc', got {entry.get('FORMAT')!r}.")
        allowed = ("FORMAT",) + FORMATS[fmt] + _OPTIONAL[fmt]
        unknown = [k for k in entry if k not in allowed]
        if unknown:
            raise UserError(f"{key}.{unknown[0]} is not a key of a {fmt} dataset; its keys are "
                            f"{', '.join(allowed)}.")
        missing = [k for k in FORMATS[fmt] if entry.get(k) in (None, "")]
        if missing:
            raise UserError(f"{key} needs {', '.join(missing)} (FORMAT {fmt} takes "
                            f"{', '.join(FORMATS[fmt])}).")
        if fmt == "coco":
            register_coco_instances(name, {}, str(entry["JSON_FILE"]), str(entry["IMAGE_ROOT"]))
        else:
            classes = entry["CLASSES"]
            if isinstance(classes, str) or not isinstance(classes, (list, tuple)):
                raise UserError(f"{key}.CLASSES must be a list of class names, got {classes!r}.")
            register_pascal_voc(name, str(entry["ROOT"]), str(entry["SPLIT"]),
                                int(entry.get("YEAR", 2012)), classes)
        names.append(name)
    return names


def detectron2_entry(name: str) -> Optional[DatasetEntry]:
    """The catalog entry for a name a user registered in Detectron2's own ``DatasetCatalog``, or
    None (also when Detectron2 has not been imported: resdet never imports it for this).

    COCO- and VOC-format registrations (``register_coco_instances``, ``register_pascal_voc``) are
    read by resdet's loaders from the files they name; any other registration by its own loader
    function, with its ``MetadataCatalog`` entry as metadata.
    """
    if "detectron2.data" not in sys.modules:
        return None
    from detectron2.data import DatasetCatalog, MetadataCatalog

    if name not in DatasetCatalog.list():
        return None
    meta = MetadataCatalog.get(name).as_dict()
    if meta.get("evaluator_type") == "coco" and meta.get("json_file") and meta.get("image_root"):
        spec = {"format": "coco", "json_file": meta["json_file"],
                "image_root": meta["image_root"], "extra": {}}
    elif meta.get("evaluator_type") == "pascal_voc" and meta.get("dirname") \
            and meta.get("thing_classes"):
        spec = {"format": "voc", "dirname": meta["dirname"], "split": meta["split"],
                "year": 2007 if meta.get("year") == 2007 else 2012,
                "classes": list(meta["thing_classes"]), "extra": {}}
    else:
        def load_generic(strict: bool = False) -> List[dict]:
            return DatasetCatalog.get(name)

        def generic_metadata() -> Dict[str, Any]:
            return MetadataCatalog.get(name).as_dict()

        return DatasetEntry(load_generic, generic_metadata)
    _D2_SPECS[name] = spec  # read by _load/_metadata; not put in resdet's own registry

    def load(strict: bool = False) -> List[dict]:
        return _load(name, strict)

    return DatasetEntry(load, lambda: _metadata(name))
