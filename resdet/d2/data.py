"""The Detectron2 engine's data: resdet's records and resdet's mapper, in Detectron2's loaders.

Translation only: :class:`resdet.detection.mapper.DetectionMapper` reads, checks, resizes and
flips (the same pixels and boxes as on the torchvision engine, by construction), and this module
puts its output in Detectron2's types (``image`` CHW tensor, ``instances`` with ``gt_boxes`` and
``gt_classes``). Records of resdet's dataset names come from resdet's catalog directly, so
Detectron2's own registrations of ``coco_2017_*`` and ``voc_*`` stay untouched
(:mod:`resdet.d2.datasets`); other names (registered by the user in Detectron2's
``DatasetCatalog``) come from there.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Dict, Iterator, List, Optional

import numpy as np
import torch
from detectron2.data import (
    DatasetCatalog,
    build_detection_test_loader,
    build_detection_train_loader,
)
from detectron2.data.common import DatasetFromList, ToIterableDataset
from detectron2.structures import Boxes, Instances

from resdet.data import catalog
from resdet.detection.mapper import training_dicts as _training_dicts
from resdet.detection.mapper import DetectionMapper, MappedImage

if TYPE_CHECKING:
    from fvcore.common.config import CfgNode

__all__ = [
    "SkippingDatasetMapper",
    "build_test_loader",
    "build_train_loader",
    "dataset_dicts",
    "training_dicts",
    "training_samples_once",
]


def dataset_dicts(name: str, *, strict: bool = False) -> List[dict]:
    """Records of ``name``: resdet's loader for resdet's names, else Detectron2's catalog."""
    if name in catalog.list_datasets():
        return catalog.get_dataset_dicts(name, strict=strict)
    if name in DatasetCatalog.list():
        return DatasetCatalog.get(name)
    return catalog.get_dataset_dicts(name)  # raises the "unknown dataset" sentence


def training_dicts(cfg: CfgNode) -> List[dict]:
    """Records of all ``DATASETS.TRAIN`` (:func:`resdet.detection.mapper.training_dicts`)."""
    return _training_dicts(cfg, dataset_dicts)


class SkippingDatasetMapper:
    """Detectron2's mapper interface over resdet's :class:`DetectionMapper`.

    Returns Detectron2's dict (the record's fields, ``image`` uint8 CHW tensor and, in training,
    ``instances`` with ``gt_boxes``/``gt_classes``), or None for a skipped image, which makes
    Detectron2's ``MapDataset`` draw another one, so training goes on.

    Args:
        cfg: the config (``INPUT.*``, ``DATALOADER.SKIP_BAD_SAMPLES``).
        is_train: training (augmentation, boxes) or test (resized image only).
        skip_bad: overrides ``DATALOADER.SKIP_BAD_SAMPLES`` when given.
    """

    def __init__(self, cfg: CfgNode, is_train: bool = True, *, skip_bad: Optional[bool] = None):
        self.mapper = DetectionMapper.from_config(cfg, is_train=is_train)
        if skip_bad is not None:
            self.mapper.skip_bad = bool(skip_bad)
        self.is_train = is_train

    @property
    def skipped(self) -> int:
        """How many samples the wrapped mapper has skipped (images that cannot be used)."""
        return self.mapper.skipped

    def __call__(self, dataset_dict: dict) -> Optional[Dict[str, Any]]:
        """A dataset dict -> Detectron2's input dict (``image`` uint8 [C, H, W], ``instances`` in
        training), or None for a skipped sample.
        """
        out = self.mapper(dataset_dict)
        if out is None:
            return None
        record = {k: v for k, v in dataset_dict.items() if k != "annotations"}
        h, w = out.image.shape[:2]
        record["image"] = torch.as_tensor(np.ascontiguousarray(out.image.transpose(2, 0, 1)))
        if self.is_train:
            instances = Instances((h, w))
            instances.gt_boxes = Boxes(torch.from_numpy(out.boxes))
            instances.gt_classes = torch.from_numpy(out.classes)
            record["instances"] = instances
        return record


def build_train_loader(cfg: CfgNode) -> Any:
    """Detectron2's training loader (its sampler, batching and aspect grouping from ``cfg``)
    over resdet's records and mapper."""
    mapper = SkippingDatasetMapper(cfg, is_train=True)
    return build_detection_train_loader(cfg, mapper=mapper, dataset=training_dicts(cfg))


def build_test_loader(cfg: CfgNode, dataset_name: str) -> Any:
    """Detectron2's inference loader over resdet's records of ``dataset_name``; every image is
    kept, an unreadable one is skipped with a warning (evaluation goes on)."""
    mapper = SkippingDatasetMapper(cfg, is_train=False, skip_bad=True)
    return build_detection_test_loader(dataset=dataset_dicts(dataset_name), mapper=mapper,
                                       num_workers=cfg.DATALOADER.NUM_WORKERS)


def as_mapped_image(sample: Dict[str, Any]) -> MappedImage:
    """A Detectron2 training sample back in engine-neutral terms (what the network is fed)."""
    inst = sample["instances"]
    record = {k: v for k, v in sample.items() if k not in ("image", "instances")}
    return MappedImage(record, sample["image"].numpy().transpose(1, 2, 0),
                       inst.gt_boxes.tensor.numpy().astype(np.float32),
                       inst.gt_classes.numpy().astype(np.int64))


def training_samples_once(cfg: CfgNode,
                          dicts: Optional[List[dict]] = None) -> Iterator[MappedImage]:
    """Each training record once, in dataset order, through this engine's training loader
    (Detectron2's ``build_detection_train_loader`` with a one-pass sequential sampler, one image
    per batch, no workers); skipped images are left out. For ``tools/visualize_data.py``;
    ``dicts``: :func:`training_dicts` if not given."""
    dicts = training_dicts(cfg) if dicts is None else dicts
    once = ToIterableDataset(DatasetFromList(dicts, copy=False),
                             torch.utils.data.SequentialSampler(range(len(dicts))))
    loader = build_detection_train_loader(dataset=once, mapper=SkippingDatasetMapper(cfg),
                                          total_batch_size=1, aspect_ratio_grouping=False,
                                          num_workers=0)
    for batch in loader:
        for sample in batch:
            yield as_mapped_image(sample)
