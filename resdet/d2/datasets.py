"""resdet's dataset names in Detectron2's DatasetCatalog and MetadataCatalog, leaving
Detectron2's own names as Detectron2 has them.

Detectron2 registers COCO 2017 and most VOC splits itself (``detectron2/data/datasets/
builtin.py``); a plugin leaves those registrations alone, so ``DatasetCatalog.get
("coco_2017_val")`` still gives Detectron2's records with every field (segmentation, keypoints)
after ``import resdet.d2``. resdet adds only the names Detectron2 lacks: ``voc_2012_test`` (no
public labels) and ``shapes_{train,val}``.

The Detectron2 engine's own runs do not go through Detectron2's catalog for resdet's names: its
loaders take resdet's records directly (:mod:`resdet.d2.data`), which turn a malformed annotation
file into one sentence naming it and apply resdet's box policy, exactly as on the torchvision
engine.

resdet reads ``$DETECTRON2_DATASETS`` at each use; the paths of the names resdet registered are
refreshed whenever :func:`register_resdet_datasets` runs again after the variable changed.
"""

from __future__ import annotations

import difflib
import logging
from typing import List

from detectron2.data import DatasetCatalog, MetadataCatalog

from resdet.data import catalog
from resdet.errors import UserError

logger = logging.getLogger(__name__)

# Names resdet registered, with the metadata paths they were registered with.
_OWN: dict = {}
_PATH_KEYS = ("json_file", "image_root", "dirname")


def _is_detection(meta: dict) -> bool:
    return meta.get("evaluator_type") in ("coco", "pascal_voc") and "thing_classes" in meta


def _register(name: str, meta: dict) -> None:
    """Register resdet's loader and metadata for a name resdet owns in Detectron2's catalog."""
    if name in _OWN:
        DatasetCatalog.remove(name)
        MetadataCatalog.remove(name)

    def load(n: str = name) -> List[dict]:
        return catalog.get_dataset_dicts(n)

    DatasetCatalog.register(name, load)
    MetadataCatalog.get(name).set(**{k: v for k, v in meta.items() if k != "name"})
    _OWN[name] = tuple(meta.get(k) for k in _PATH_KEYS)


def register_resdet_datasets() -> List[str]:
    """Make resdet's builtin detection datasets that Detectron2 lacks known to Detectron2
    (idempotent); names Detectron2 registered itself are never touched.

    Call it again after changing ``$DETECTRON2_DATASETS``; it then re-points resdet's names.

    Returns:
        The names registered or re-registered by this call.
    """
    changed = []
    for name in catalog.list_datasets():
        if name not in _OWN and name in DatasetCatalog.list():
            continue  # Detectron2's own (or the user's): left as it is
        meta = catalog.get_metadata(name)
        if not _is_detection(meta):
            continue
        if _OWN.get(name) == tuple(meta.get(k) for k in _PATH_KEYS):
            continue
        _register(name, meta)
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
    known = set(catalog.list_datasets()) | set(DatasetCatalog.list())
    for name in names:
        if name not in known:
            near = difflib.get_close_matches(name, sorted(known), n=1)
            hint = f" (did you mean {near[0]!r}?)" if near else ""
            raise UserError(f"{key} names dataset {name!r}, which is not registered{hint}; use a "
                            "builtin name (see datasets/README.md) or register it first.")
        catalog.ensure_generated(name)
        if name not in catalog.list_datasets():
            continue
        path = catalog.missing_path(name)
        if path is not None:
            raise UserError(
                f"Dataset {name} in {key} is not on disk: {path} does not exist; put it "
                "there in the official layout (see datasets/README.md) or set "
                "$DETECTRON2_DATASETS to the folder that holds it."
            )
