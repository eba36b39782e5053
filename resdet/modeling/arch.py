"""The architecture table: each network name maps to an :class:`ArchSpec` that carries behaviour.

A spec says what a network is made of (block class, stage depths and widths, stem), its paper
defaults (shortcut option, norm, input size, number of classes) and the options its builder
accepts. Each family of networks has one builder, registered with :func:`register_family` (as
timm's ``@register_model``); :func:`register_arch` adds a name. Callers ask the spec (its
``block``, ``stage_shapes()``, ``supports(option)``) instead of switching on a family string, so
a new network is one spec (and, for a new kind of network, one builder), not an edit in every
caller.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Dict, List, Optional, Tuple

from torch import nn

from resdet.errors import UserError
from resdet.modeling.layers import ShapeSpec

# name -> spec, in registration order (the order the tests and error messages list).
ARCHITECTURES: Dict[str, "ArchSpec"] = {}
# family -> builder(spec, *, num_classes, out_features, **options) -> nn.Module
FAMILIES: Dict[str, Callable[..., nn.Module]] = {}


@dataclass(frozen=True)
class ArchSpec:
    """What one named network is, and how it is built.

    Attributes:
        name: the network's name (``"resnet50"``), as ``build_classifier`` takes it.
        family: the registered builder that makes it (:func:`register_family`); it is the key of
            the builder, not something for callers to switch on.
        depth: weighted layers, the number in the name (``MODEL.RESNETS.DEPTH`` for the ImageNet
            ResNets): 50 for ResNet-50, 20 for the 6n+2 CIFAR net with n = 3, 16 for VGG-16.
        stage_names: feature names of the stages, shallow to deep (``res2``.., ``conv5_3``).
        stage_blocks: blocks (or convs, for VGG) per stage.
        stage_channels: output channels of each stage.
        stage_strides: stride of each stage's first block relative to its input; default 1 for
            the first stage, 2 for the others (Table 1 and Sec. 4.2).
        block: the block class every stage is made of (``BasicBlock``, ``BottleneckBlock`` or a
            user's class taking the same arguments); None for VGG.
        stem: the stem class (attributes ``out_channels`` and ``stride``); None when the stages
            start from the image.
        residual: False for the plain counterpart (no shortcuts, Sec. 4.1).
        default_shortcut: the paper's shortcut option for this net ("B" ImageNet, "A" CIFAR;
            Sec. 3.3, 4.2), used when none is given; None when shortcuts do not apply.
        default_norm: the norm used when none is given ("BN" after every conv, Sec. 3.4;
            None for VGG-16, which has no norm layers).
        input_size: the side, in pixels, of the square training crop (224 ImageNet, 32 CIFAR).
        num_classes: classes of the dataset the paper trains it on (1000 or 10).
        options: the keyword options its builder accepts; any other is an error naming it.
        classifier: the attribute of the built classifier that is its last layer, the one with
            ``num_classes`` outputs (``"fc"``; ``"fc8"`` for VGG-16); ``<classifier>.weight`` is
            the key of the classification head in a weights file of this network.
    """

    name: str
    family: str
    depth: int
    stage_names: Tuple[str, ...]
    stage_blocks: Tuple[int, ...]
    stage_channels: Tuple[int, ...]
    stage_strides: Optional[Tuple[int, ...]] = None
    block: Optional[type] = None
    stem: Optional[type] = None
    residual: bool = True
    default_shortcut: Optional[str] = None
    default_norm: Optional[str] = "BN"
    input_size: int = 224
    num_classes: int = 1000
    options: Tuple[str, ...] = ("norm", "freeze_at")
    classifier: str = "fc"

    def __post_init__(self) -> None:
        count = len(self.stage_names)
        if not (len(self.stage_blocks) == len(self.stage_channels) == count):
            raise ValueError(f"ArchSpec {self.name!r}: stage_names, stage_blocks and "
                             "stage_channels must have one entry per stage.")
        if self.stage_strides is None:
            object.__setattr__(self, "stage_strides", (1,) + (2,) * (count - 1))
        elif len(self.stage_strides) != count:
            raise ValueError(f"ArchSpec {self.name!r}: stage_strides needs {count} entries.")

    def supports(self, option: str) -> bool:
        """Whether the builder of this network accepts the keyword option ``option``."""
        return option in self.options

    def block_supports(self, option: str) -> bool:
        """Whether the blocks of this network use the keyword option ``option``.

        ``supports`` answers for the whole network, ``block_supports`` for its block class: every
        ImageNet ResNet takes ``stride_in_1x1``, but only a bottleneck block has a 1x1 conv to put
        the stride in (Table 1), so the option changes nothing in ResNet-18/34. False for a
        network without blocks (VGG-16).
        """
        return self.block is not None and option in getattr(self.block, "options", ())

    def stage_shapes(self) -> Dict[str, ShapeSpec]:
        """Channels and stride (pixels of input per feature pixel) of every feature map.

        Returns:
            ``{"stem": ..., "res2": ..., ...}`` in forward order (``stem`` only when the net has
            one), the same values ``output_shape()`` of the built backbone reports.
        """
        shapes: Dict[str, ShapeSpec] = {}
        stride = 1
        if self.stem is not None:
            stride = self.stem.stride
            shapes["stem"] = ShapeSpec(self.stem.out_channels, stride)
        for name, channels, stage_stride in zip(self.stage_names, self.stage_channels,
                                                self.stage_strides):
            stride *= stage_stride
            shapes[name] = ShapeSpec(channels, stride)
        return shapes

    def feature_names(self) -> Tuple[str, ...]:
        """Every feature a backbone of this network can return (``stem`` first when it has one)."""
        return tuple(self.stage_shapes())


def register_family(family: str) -> Callable[[Callable[..., nn.Module]], Callable[..., nn.Module]]:
    """Decorator: register ``builder(spec, *, num_classes, out_features, **options)`` as ``family``.

    The builder gets only options the spec lists in ``options`` (others are refused before it
    is called) and returns a module whose forward gives logits when ``num_classes`` is an int,
    else ``{feature: (N, C, H, W) tensor}`` for ``out_features``, with an ``output_shape()``.

    Raises:
        ValueError: ``family`` is already registered.
    """
    def decorator(builder: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        if family in FAMILIES:
            raise ValueError(f"Network family {family!r} is already registered.")
        FAMILIES[family] = builder
        return builder

    return decorator


def register_arch(spec: ArchSpec) -> ArchSpec:
    """Add ``spec`` to the table under ``spec.name``; ``build_classifier(spec.name)`` then works.

    Raises:
        ValueError: the name is taken, or no builder is registered for ``spec.family``.
    """
    if spec.name in ARCHITECTURES:
        raise ValueError(f"Architecture {spec.name!r} is already registered.")
    if spec.family not in FAMILIES:
        raise ValueError(f"Architecture {spec.name!r} names family {spec.family!r}, which has "
                         f"no builder; register one with @register_family({spec.family!r}).")
    ARCHITECTURES[spec.name] = spec
    return spec


def unregister_arch(name: str) -> ArchSpec:
    """Remove ``name`` from the table (for tests that register a network of their own)."""
    return ARCHITECTURES.pop(name)


def get_arch(name: str) -> ArchSpec:
    """The spec of the network ``name``.

    Raises:
        UserError: ``name`` is not registered; the message lists every valid name.
    """
    try:
        return ARCHITECTURES[name]
    except (KeyError, TypeError):
        raise UserError(
            f"Unknown architecture {name!r}; valid names are: {', '.join(ARCHITECTURES)}."
        ) from None


def list_architectures() -> List[str]:
    """Every network name that ``build_classifier`` and ``build_backbone`` accept."""
    return list(ARCHITECTURES)
