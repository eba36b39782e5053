"""The paper's networks in pure PyTorch (no Detectron2 import anywhere in this package)."""

from resdet.modeling.build import (
    ARCHITECTURES,
    arch_info,
    build_backbone,
    build_classifier,
    build_stage,
    list_architectures,
)
from resdet.modeling.layers import Conv2d, FrozenBatchNorm2d, ShapeSpec, get_norm
from resdet.modeling.resnet import BasicBlock, BottleneckBlock, ResNet
from resdet.modeling.vgg import VGG

__all__ = [
    "ARCHITECTURES",
    "BasicBlock",
    "BottleneckBlock",
    "Conv2d",
    "FrozenBatchNorm2d",
    "ResNet",
    "ShapeSpec",
    "VGG",
    "arch_info",
    "build_backbone",
    "build_classifier",
    "build_stage",
    "get_norm",
    "list_architectures",
]
