"""Put resdet's builtin detection datasets into Detectron2's DatasetCatalog and MetadataCatalog.

Detectron2 registers COCO 2017 and most VOC splits itself (``detectron2/data/datasets/
builtin.py``). Their names and metadata are kept, but the records come from resdet's loaders
(:mod:`resdet.data.catalog`), which read the same files into the same dicts and, unlike
Detectron2's, turn a malformed annotation file into one sentence naming it and skip impossible
boxes and unknown categories with a warning and a count (issue 7). resdet adds the names
Detectron2 lacks: ``voc_2012_test`` (no public labels) and ``shapes_{train,val}``.

Detectron2 reads ``$DETECTRON2_DATASETS`` once, when ``detectron2.data`` is imported; resdet reads
it at each use. The metadata's paths are refreshed whenever :func:`register_resdet_datasets` runs
again after the variable changed, so both engines always read the same folder.
"""

from __future__ import annotations

import difflib
import logging
import os
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
    """Register resdet's loader for ``name``, keeping Detectron2's metadata where it had some."""
    old_meta = {}
    if name in DatasetCatalog.list():
        old_meta = MetadataCatalog.get(name).as_dict()
        DatasetCatalog.remove(name)
        MetadataCatalog.remove(name)
    old_meta.pop("name", None)

    def load(n: str = name) -> List[dict]:
        return catalog.get_dataset_dicts(n)

    DatasetCatalog.register(name, load)
    # The evaluators and the visualiser read these; resdet's paths win (the current root).
    MetadataCatalog.get(name).set(**{**old_meta,
                                     **{k: v for k, v in meta.items() if k != "name"}})
    _OWN[name] = tuple(meta.get(k) for k in _PATH_KEYS)


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
