"""The paper's networks in pure PyTorch (no Detectron2 import anywhere in this package).

Every network name maps to an :class:`ArchSpec` (``get_arch(name)``) that carries what callers
need to know; ``build_classifier``/``build_backbone``/``build_stage`` build from it. A new network
is a spec passed to :func:`register_arch` (and, for a new kind, a builder decorated with
:func:`register_family`).
"""

from resdet.modeling.arch import (
    ARCHITECTURES,
    ArchSpec,
    get_arch,
    list_architectures,
    register_arch,
    register_family,
    unregister_arch,
)
from resdet.modeling.build import (
    arch_info,
    build_backbone,
    build_classifier,
    build_stage,
    default_out_features,
    resolve_arch,
    resolve_options,
)
from resdet.modeling.layers import Conv2d, FrozenBatchNorm2d, ShapeSpec, get_norm
from resdet.modeling.resnet import (
    BasicBlock,
    BottleneckBlock,
    CifarStem,
    ImageNetStem,
    ResidualBlock,
    ResNet,
    make_stage,
)
from resdet.modeling.vgg import VGG

__all__ = [
    "ARCHITECTURES",
    "ArchSpec",
    "BasicBlock",
    "BottleneckBlock",
    "CifarStem",
    "Conv2d",
    "FrozenBatchNorm2d",
    "ImageNetStem",
    "ResNet",
    "ResidualBlock",
    "ShapeSpec",
    "VGG",
    "arch_info",
    "build_backbone",
    "build_classifier",
    "build_stage",
    "default_out_features",
    "get_arch",
    "get_norm",
    "list_architectures",
    "make_stage",
    "register_arch",
    "register_family",
    "resolve_arch",
    "resolve_options",
    "unregister_arch",
]
