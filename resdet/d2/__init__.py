"""resdet as a Detectron2 plugin: backbones, RoI heads, datasets, checkpoints and the trainer.

Importing this package imports Detectron2 (it raises ImportError where Detectron2 is absent) and
registers into Detectron2's registries:

- BACKBONE_REGISTRY: ``build_resdet_resnet_backbone`` (C4), ``build_resdet_resnet_fpn_backbone``,
  ``build_resdet_vgg_backbone``;
- ROI_HEADS_REGISTRY: ``ResdetRes5ROIHeads``; ROI_BOX_HEAD_REGISTRY: ``ResdetVGGBoxHead``;
- DatasetCatalog / MetadataCatalog: resdet's builtin detection datasets that Detectron2 lacks
  (see :func:`register_resdet_datasets`).

Detectron2's own defaults are never changed; resdet's keys come from
:func:`resdet.config.add_resdet_config`.
"""

import detectron2  # noqa: F401  (fail here, with ImportError, when Detectron2 is not installed)

from resdet.config import add_resdet_config
from resdet.d2.backbone import (
    ResdetBackbone,
    build_resdet_resnet_backbone,
    build_resdet_resnet_fpn_backbone,
    build_resdet_vgg_backbone,
)
from resdet.d2.checkpoint import ResdetCheckpointer
from resdet.d2.datasets import register_resdet_datasets
from resdet.d2.roi_heads import ResdetRes5ROIHeads, ResdetVGGBoxHead

register_resdet_datasets()

__all__ = [
    "ResdetBackbone",
    "ResdetCheckpointer",
    "ResdetRes5ROIHeads",
    "ResdetVGGBoxHead",
    "add_resdet_config",
    "build_resdet_resnet_backbone",
    "build_resdet_resnet_fpn_backbone",
    "build_resdet_vgg_backbone",
    "register_resdet_datasets",
]
