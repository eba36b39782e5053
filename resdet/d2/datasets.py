"""Put resdet's builtin detection datasets into Detectron2's DatasetCatalog and MetadataCatalog.

Detectron2 registers COCO 2017 and most VOC splits itself (``detectron2/data/datasets/
builtin.py``); those registrations are reused, with Detectron2's own loaders. resdet adds what
Detectron2 lacks: ``voc_2012_test`` (no public labels) and ``shapes_{train,val}``, whose loaders are
resdet's (:mod:`resdet.data.catalog`).

Detectron2 reads ``$DETECTRON2_DATASETS`` once, when ``detectron2.data`` is imported; resdet reads
it at each use. When the two disagree (the variable was set after the import), Detectron2's
loaders are registered again under the current root, so both engines always read the same folder.
"""

from __future__ import annotations

import difflib
import logging
import os
from typing import List

from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.data.datasets import load_coco_json, load_voc_instances

from resdet.data import catalog
from resdet.errors import UserError

logger = logging.getLogger(__name__)

# Names resdet registered itself (so re-registration may replace them safely).
_OWN: set = set()


def _is_detection(meta: dict) -> bool:
    return meta.get("evaluator_type") in ("coco", "pascal_voc") and "thing_classes" in meta


def _d2_paths_match(name: str, meta: dict) -> bool:
    """Whether Detectron2's registration of ``name`` points where resdet's does now."""
    d2_meta = MetadataCatalog.get(name)
    if meta["evaluator_type"] == "coco":
        keys = ("json_file", "image_root")
    else:
        keys = ("dirname",)
    return all(
        os.path.abspath(str(getattr(d2_meta, k, ""))) == os.path.abspath(meta[k]) for k in keys
    )


def _reregister_d2(name: str, meta: dict) -> None:
    """Register ``name`` again with Detectron2's own loader, under resdet's current root."""
    d2_meta = MetadataCatalog.get(name).as_dict()
    DatasetCatalog.remove(name)
    MetadataCatalog.remove(name)
    d2_meta.pop("name", None)
    if meta["evaluator_type"] == "coco":
        json_file, image_root = meta["json_file"], meta["image_root"]
        d2_meta.update(json_file=json_file, image_root=image_root)
        DatasetCatalog.register(name, lambda: load_coco_json(json_file, image_root, name))
    else:
        dirname, split = meta["dirname"], meta["split"]
        classes = list(d2_meta["thing_classes"])
        d2_meta.update(dirname=dirname)
        DatasetCatalog.register(name, lambda: load_voc_instances(dirname, split, classes))
    MetadataCatalog.get(name).set(**d2_meta)


def _register_own(name: str, meta: dict) -> None:
    if name in DatasetCatalog.list():
        DatasetCatalog.remove(name)
        MetadataCatalog.remove(name)

    def load(n: str = name) -> List[dict]:
        return catalog.get_dataset_dicts(n)

    DatasetCatalog.register(name, load)
    # The evaluators and the visualiser read these; paths follow $DETECTRON2_DATASETS at
    # registration time (register_resdet_datasets runs again when it changes).
    MetadataCatalog.get(name).set(**{k: v for k, v in meta.items() if k != "name"})
    _OWN.add(name)


def register_resdet_datasets() -> List[str]:
    """Make every resdet builtin detection dataset known to Detectron2 (idempotent).

    Call it again after changing ``$DETECTRON2_DATASETS``; it then re-points the registrations.

    Returns:
        The names registered or re-registered by this call.
    """
    changed = []
    for name in catalog.list_datasets():
        meta = catalog.get_metadata(name)
        if not _is_detection(meta):
            continue
        if name in _OWN:
            if _d2_paths_match(name, meta):
                continue
            _register_own(name, meta)
        elif name in DatasetCatalog.list():
            if _d2_paths_match(name, meta):
                continue
            _reregister_d2(name, meta)
        else:
            _register_own(name, meta)
        changed.append(name)
    if changed:
        logger.info("Registered in Detectron2's DatasetCatalog: %s", ", ".join(changed))
    return changed


def prepare_datasets(names, key: str = "DATASETS") -> None:
    """Check that each dataset is known and on disk, generating ``shapes_*`` on first use.

    Args:
        names: dataset names from the config.
        key: the config key that named them, for messages.

    Raises:
        UserError: an unknown name, or a builtin dataset whose files are not where they belong
            (the message names the path expected).
    """
    known = set(DatasetCatalog.list())
    for name in names:
        if name not in known:
            near = difflib.get_close_matches(name, sorted(known), n=1)
            hint = f" (did you mean {near[0]!r}?)" if near else ""
            raise UserError(f"{key} names dataset {name!r}, which is not registered{hint}; use a "
                            "builtin name (see datasets/README.md) or register it first.")
        catalog.ensure_generated(name)
        if name not in catalog.list_datasets():
            continue
        meta = catalog.get_metadata(name)
        paths = [meta[k] for k in ("json_file", "image_root", "dirname") if meta.get(k)]
        for path in paths:
            if not os.path.exists(path):
                raise UserError(
                    f"Dataset {name} in {key} is not on disk: {path} does not exist; put it "
                    "there in the official layout (see datasets/README.md) or set "
                    "$DETECTRON2_DATASETS to the folder that holds it."
                )
