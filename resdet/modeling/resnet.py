"""Residual and plain networks of the paper: ImageNet ResNets (Table 1) and CIFAR nets (Sec. 4.2).

Blocks, then the network, then the builder and the table of names. A plain net is the same
network with the shortcuts removed (Sec. 4.1), so both share every line here.
"""

from __future__ import annotations

from typing import Dict, List, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import nn

from resdet.errors import UserError
from resdet.modeling.arch import ArchSpec, register_arch, register_family
from resdet.modeling.layers import (
    ShapeSpec,
    conv_norm,
    freeze_,
    he_init,
    zero_pad_shortcut,
)


class ResidualBlock(nn.Module):
    """Base of every block: the shortcut, and the attributes a stage and ``ResNet`` read.

    Option A: parameter-free identity, zero-padded when the shape changes. Option B: a 1x1
    projection only where the shape changes. Option C: projections on every shortcut (Sec. 3.3).
    ``residual=False`` gives the plain counterpart (no shortcut at all, Sec. 4.1).

    A new block type subclasses this, takes ``(in_channels, out_channels, *, stride, residual,
    shortcut, norm)`` plus the keyword options it names in ``options``, and ends its forward with
    ``F.relu_(self.add_shortcut(out, x))``.

    Attributes:
        options: block-specific keyword options (beyond the common ones) a builder passes on.
        in_channels, out_channels, stride: the block's shape change; ``ResNet`` reads the first
            block's ``stride`` and the last block's ``out_channels`` of each stage.
    """

    options: Tuple[str, ...] = ()

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        stride: int,
        residual: bool,
        shortcut: str,
        norm: Optional[str],
    ):
        super().__init__()
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.stride = stride
        self.residual = residual
        self.shortcut_type = shortcut
        shape_changes = in_channels != out_channels or stride != 1
        if residual and (shortcut == "C" or (shortcut == "B" and shape_changes)):
            self.shortcut = conv_norm(in_channels, out_channels, 1, stride=stride, norm=norm)
        else:
            self.shortcut = None

    def add_shortcut(self, out: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """``out + shortcut(x)`` in place (``out`` unchanged for a plain block).

        Args:
            out: the residual branch's output, (N, out_channels, H / stride, W / stride).
            x: the block's input, (N, in_channels, H, W).

        Returns:
            ``out``, with the shortcut added.
        """
        # In place, as torchvision and Detectron2 do: ``out`` is a fresh norm output that no
        # backward pass needs, and the saved allocation is measurable (docs/benchmarks.md).
        if not self.residual:
            return out
        if self.shortcut is not None:
            return out.add_(self.shortcut(x))
        return out.add_(zero_pad_shortcut(x, self.out_channels, self.stride))


class BasicBlock(ResidualBlock):
    """Two 3x3 convs (Fig. 5 left): ResNet-18/34 and the CIFAR nets."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        *,
        stride: int = 1,
        residual: bool = True,
        shortcut: str = "B",
        norm: Optional[str] = "BN",
    ):
        super().__init__(in_channels, out_channels, stride, residual, shortcut, norm)
        self.conv1 = conv_norm(in_channels, out_channels, 3, stride=stride, norm=norm)
        self.conv2 = conv_norm(out_channels, out_channels, 3, norm=norm)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(N, in_channels, H, W) -> (N, out_channels, H / stride, W / stride)."""
        out = F.relu_(self.conv1(x))
        out = self.conv2(out)
        return F.relu_(self.add_shortcut(out, x))


class BottleneckBlock(ResidualBlock):
    """1x1 reduce, 3x3, 1x1 restore (Fig. 5 right): ResNet-50/101/152.

    ``stride_in_1x1=True`` puts the stride in the first 1x1 conv, as the paper's released MSRA
    models and Detectron2 do; torchvision's "v1.5" puts it in the 3x3 (``stride_in_1x1=False``),
    which costs more FLOPs and is slightly more accurate. The 3x3 works on
    ``out_channels / expansion`` channels (64 for a 256-channel res2 block, Table 1).
    """

    options = ("stride_in_1x1",)
    expansion = 4

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        *,
        bottleneck_channels: Optional[int] = None,
        stride: int = 1,
        residual: bool = True,
        shortcut: str = "B",
        norm: Optional[str] = "BN",
        stride_in_1x1: bool = True,
    ):
        super().__init__(in_channels, out_channels, stride, residual, shortcut, norm)
        if bottleneck_channels is None:
            bottleneck_channels = out_channels // self.expansion
        stride_1x1, stride_3x3 = (stride, 1) if stride_in_1x1 else (1, stride)
        self.conv1 = conv_norm(in_channels, bottleneck_channels, 1, stride=stride_1x1, norm=norm)
        self.conv2 = conv_norm(bottleneck_channels, bottleneck_channels, 3, stride_3x3, norm=norm)
        self.conv3 = conv_norm(bottleneck_channels, out_channels, 1, norm=norm)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(N, in_channels, H, W) -> (N, out_channels, H / stride, W / stride)."""
        out = F.relu_(self.conv1(x))
        out = F.relu_(self.conv2(out))
        out = self.conv3(out)
        return F.relu_(self.add_shortcut(out, x))


class ImageNetStem(nn.Module):
    """conv1: 7x7, 64, stride 2, then 3x3 max pool, stride 2 (Table 1)."""

    out_channels = 64
    stride = 4

    def __init__(self, norm: Optional[str] = "BN"):
        super().__init__()
        self.conv1 = conv_norm(3, 64, 7, stride=2, norm=norm)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(N, 3, H, W) -> (N, 64, H / 4, W / 4) (sides rounded up)."""
        x = F.relu_(self.conv1(x))
        return F.max_pool2d(x, kernel_size=3, stride=2, padding=1)


class CifarStem(nn.Module):
    """The CIFAR nets' first layer: a 3x3 conv with 16 filters (Sec. 4.2)."""

    out_channels = 16
    stride = 1

    def __init__(self, norm: Optional[str] = "BN"):
        super().__init__()
        self.conv1 = conv_norm(3, 16, 3, norm=norm)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(N, 3, H, W) -> (N, 16, H, W)."""
        return F.relu_(self.conv1(x))


class ResNet(nn.Module):
    """A stem, named stages of blocks, and optionally global average pooling with an fc layer.

    With ``num_classes`` the forward returns logits; without it, it returns
    ``{name: feature}`` for ``out_features``, and only the stages those features need are built.
    """

    def __init__(
        self,
        stem: nn.Module,
        stages: Sequence[Tuple[str, nn.Sequential]],
        *,
        num_classes: Optional[int] = None,
        out_features: Optional[Sequence[str]] = None,
        freeze_at: int = 0,
    ):
        super().__init__()
        self.stem = stem
        self.num_classes = num_classes
        self._shapes: Dict[str, ShapeSpec] = {"stem": ShapeSpec(stem.out_channels, stem.stride)}
        self.stage_names: List[str] = []
        stride = stem.stride
        for name, stage in stages:
            stride *= stage[0].stride
            self._shapes[name] = ShapeSpec(stage[-1].out_channels, stride)
            self.add_module(name, stage)
            self.stage_names.append(name)
        if num_classes is not None:
            self.fc = nn.Linear(self._shapes[self.stage_names[-1]].channels, num_classes)
            self.out_features = [self.stage_names[-1]]
        else:
            self.out_features = list(out_features or [self.stage_names[-1]])
        he_init(self)
        self.freeze(freeze_at)

    def output_shape(self) -> Dict[str, ShapeSpec]:
        """Channels and stride (input pixels per feature pixel) of each of ``out_features``.

        Returns:
            ``{name: ShapeSpec(channels, stride)}``, e.g. ``{"res4": ShapeSpec(1024, 16)}`` for a
            ResNet-50 C4 backbone.
        """
        return {name: self._shapes[name] for name in self.out_features}

    @property
    def size_divisibility(self) -> int:
        """0: any input size works (Detectron2's Backbone attribute; FPN wrappers set their own)."""
        return 0

    def freeze(self, freeze_at: int = 0) -> "ResNet":
        """Freeze the stem (``freeze_at >= 1``) and stages res2.. up to res``freeze_at``.

        Frozen parts get no gradient and their BN becomes FrozenBN, as Detectron2's FREEZE_AT
        (the paper fixes conv1 and res2 for detection, Appendix A).

        Returns:
            ``self``.
        """
        frozen = (["stem"] if freeze_at >= 1 else []) + self.stage_names[: max(freeze_at - 1, 0)]
        for name in frozen:
            freeze_(getattr(self, name))
        return self

    def forward_features(self, x: torch.Tensor) -> Dict[str, torch.Tensor]:
        """The feature maps named in ``out_features``.

        Args:
            x: images, (N, 3, H, W).

        Returns:
            ``{name: (N, C, H / stride, W / stride)}`` with C and stride as ``output_shape()``.
        """
        outputs = {}
        x = self.stem(x)
        if "stem" in self.out_features:
            outputs["stem"] = x
        for name in self.stage_names:
            x = getattr(self, name)(x)
            if name in self.out_features:
                outputs[name] = x
        return outputs

    def forward(self, x: torch.Tensor):
        """Logits (N, num_classes) when built with ``num_classes``, else ``forward_features(x)``.

        Args:
            x: images, (N, 3, H, W); any size, the classifier pools globally (Sec. 3.4).
        """
        if self.num_classes is None:
            return self.forward_features(x)
        x = self.forward_features(x)[self.stage_names[-1]]
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))


def make_stage(
    block_class: type,
    num_blocks: int,
    *,
    in_channels: int,
    out_channels: int,
    stride: int = 1,
    **kwargs,
) -> nn.Sequential:
    """``num_blocks`` blocks of ``block_class``; the first one changes the shape (as Detectron2's).

    Args:
        block_class: e.g. :class:`BasicBlock`, :class:`BottleneckBlock` or a subclass of
            :class:`ResidualBlock`.
        num_blocks: blocks in the stage.
        in_channels: channels of the stage's input.
        out_channels: channels of every block's output.
        stride: stride of the first block (the others have 1).
        **kwargs: passed to every block (``residual``, ``shortcut``, ``norm``, block options).

    Returns:
        The blocks as an ``nn.Sequential`` (state-dict names ``0.conv1...``, ``1.conv1...``).
    """
    blocks = []
    for i in range(num_blocks):
        blocks.append(block_class(in_channels, out_channels, stride=stride if i == 0 else 1,
                                  **kwargs))
        in_channels = out_channels
    return nn.Sequential(*blocks)


def build_resnet_stage(
    spec: ArchSpec,
    stage: str,
    *,
    shortcut: str,
    norm: Optional[str],
    **block_options,
) -> nn.Sequential:
    """The blocks of stage ``stage`` of the network ``spec`` describes (Table 1, Sec. 4.2).

    Args:
        spec: a network with a ``block`` class.
        stage: one of ``spec.stage_names``.
        shortcut: "A", "B" or "C" (Sec. 3.3).
        norm: a name of ``resdet.config.choices.NORMS``, or None for no norm.
        **block_options: options of the network (e.g. ``stride_in_1x1``); each is passed to the
            blocks when the block class lists it in ``options`` (a basic block has no 1x1 conv,
            so ``stride_in_1x1`` has nothing to move there, as in Detectron2).

    Returns:
        The stage's blocks.
    """
    i = spec.stage_names.index(stage)
    in_channels = spec.stage_channels[i - 1] if i > 0 else spec.stem.out_channels
    block_kwargs = {k: v for k, v in block_options.items() if k in spec.block.options}
    return make_stage(spec.block, spec.stage_blocks[i], in_channels=in_channels,
                      out_channels=spec.stage_channels[i], stride=spec.stage_strides[i],
                      residual=spec.residual, shortcut=shortcut, norm=norm, **block_kwargs)


@register_family("resnet")
@register_family("cifar")
def build_resnet(
    spec: ArchSpec,
    *,
    num_classes: Optional[int],
    out_features: Optional[Sequence[str]],
    shortcut: str,
    norm: Optional[str],
    freeze_at: int = 0,
    **block_options,
) -> ResNet:
    """A :class:`ResNet` (residual or plain) laid out as ``spec`` says.

    Args:
        spec: the network's stem, block class and stages.
        num_classes: size of the fc layer; None builds a backbone instead.
        out_features: features a backbone returns; stages deeper than the deepest are not built
            (as Detectron2). Ignored with ``num_classes``.
        shortcut: "A", "B" or "C" (Sec. 3.3).
        norm: a norm name, or None.
        freeze_at: 0 trains everything; k freezes the stem and the first k - 1 stages.
        **block_options: block options (``stride_in_1x1``), see :func:`build_resnet_stage`.

    Returns:
        The network.

    Raises:
        UserError: an out feature the network does not have.
    """
    needed = spec.stage_names if num_classes is not None else _stages_needed(spec, out_features)
    stages = [(name, build_resnet_stage(spec, name, shortcut=shortcut, norm=norm,
                                        **block_options))
              for name in needed]
    return ResNet(spec.stem(norm), stages, num_classes=num_classes,
                  out_features=out_features, freeze_at=freeze_at)


def _stages_needed(spec: ArchSpec, out_features: Optional[Sequence[str]]) -> List[str]:
    """Stages up to the deepest requested feature; deeper ones are never built (as Detectron2)."""
    if not out_features:
        return list(spec.stage_names)
    valid = ("stem",) + tuple(spec.stage_names)
    for name in out_features:
        if name not in valid:
            raise UserError(
                f"Unknown output feature {name!r}; this network has {', '.join(valid)}."
            )
    last = max(valid.index(name) for name in out_features)
    return list(spec.stage_names[:last])


# --------------------------------------------------------------------------------------------
# The table. ImageNet: Table 1 (blocks per stage; widths 64..512, x4 for bottleneck blocks).
# CIFAR-10: 6n+2 layers, n blocks per stage on maps of 32, 16, 8 with 16, 32, 64 filters
# (Sec. 4.2). Default shortcuts: B for ImageNet (Sec. 3.3, Table 3), A for CIFAR (Sec. 4.2).
# Stage strides default to 1, 2, 2, ...: res2 follows the stem's max pool, so it keeps stride 1.
# --------------------------------------------------------------------------------------------
IMAGENET_STAGES = ("res2", "res3", "res4", "res5")
CIFAR_STAGES = ("res2", "res3", "res4")
IMAGENET_DEPTHS = {
    18: (BasicBlock, (2, 2, 2, 2)),
    34: (BasicBlock, (3, 4, 6, 3)),
    50: (BottleneckBlock, (3, 4, 6, 3)),
    101: (BottleneckBlock, (3, 4, 23, 3)),
    152: (BottleneckBlock, (3, 8, 36, 3)),
}
# The paper trains plain CIFAR nets up to 110 layers and residual ones up to 1202 (Table 6).
CIFAR_DEPTHS = (20, 32, 44, 56, 110, 1202)
# stride_in_1x1 is accepted by every ImageNet net (it moves nothing in a basic block, as
# Detectron2's STRIDE_IN_1X1 for R18/R34); the CIFAR nets have basic blocks only and refuse it.
IMAGENET_OPTIONS = ("shortcut", "norm", "freeze_at", "stride_in_1x1")
CIFAR_OPTIONS = ("shortcut", "norm", "freeze_at")


def _register_paper_resnets() -> None:
    for depth, (block, counts) in IMAGENET_DEPTHS.items():
        widths = tuple(64 * 2**i * getattr(block, "expansion", 1) for i in range(4))
        for residual, prefix in ((True, "resnet"), (False, "plain")):
            register_arch(ArchSpec(
                name=f"{prefix}{depth}", family="resnet", depth=depth,
                stage_names=IMAGENET_STAGES, stage_blocks=counts, stage_channels=widths,
                block=block, stem=ImageNetStem, residual=residual, default_shortcut="B",
                input_size=224, num_classes=1000, options=IMAGENET_OPTIONS))
    for depth in CIFAR_DEPTHS:
        n = (depth - 2) // 6
        for residual, prefix in ((True, "cifar_resnet"), (False, "cifar_plain")):
            if not residual and depth == 1202:
                continue
            register_arch(ArchSpec(
                name=f"{prefix}{depth}", family="cifar", depth=depth,
                stage_names=CIFAR_STAGES, stage_blocks=(n, n, n), stage_channels=(16, 32, 64),
                block=BasicBlock, stem=CifarStem, residual=residual, default_shortcut="A",
                input_size=32, num_classes=10, options=CIFAR_OPTIONS))


_register_paper_resnets()
