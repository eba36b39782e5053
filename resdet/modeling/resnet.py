"""Residual and plain networks of the paper: ImageNet ResNets (Table 1) and CIFAR nets (Sec. 4.2).

Blocks, then the network, then the builders. A plain net is the same network with the shortcuts
removed (Sec. 4.1), so both share every line here.
"""

from __future__ import annotations

from typing import Dict, List, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import nn

from resdet.errors import UserError
from resdet.modeling.layers import (
    ShapeSpec,
    freeze_,
    conv_norm,
    he_init,
    zero_pad_shortcut,
)

SHORTCUTS = ("A", "B", "C")


class _ResidualBlock(nn.Module):
    """Shortcut handling shared by both block types.

    Option A: parameter-free identity, zero-padded when the shape changes. Option B: a 1x1
    projection only where the shape changes. Option C: projections on every shortcut (Sec. 3.3).
    ``residual=False`` gives the plain counterpart (no shortcut at all).
    """

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
        # In place, as torchvision and Detectron2 do: ``out`` is a fresh norm output that no
        # backward pass needs, and the saved allocation is measurable (docs/benchmarks.md).
        if not self.residual:
            return out
        if self.shortcut is not None:
            return out.add_(self.shortcut(x))
        return out.add_(zero_pad_shortcut(x, self.out_channels, self.stride))


class BasicBlock(_ResidualBlock):
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
        out = F.relu_(self.conv1(x))
        out = self.conv2(out)
        return F.relu_(self.add_shortcut(out, x))


class BottleneckBlock(_ResidualBlock):
    """1x1 reduce, 3x3, 1x1 restore (Fig. 5 right): ResNet-50/101/152.

    ``stride_in_1x1=True`` puts the stride in the first 1x1 conv, as the paper's released MSRA
    models and Detectron2 do; torchvision's "v1.5" puts it in the 3x3 (``stride_in_1x1=False``),
    which costs more FLOPs and is slightly more accurate.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        *,
        bottleneck_channels: int,
        stride: int = 1,
        residual: bool = True,
        shortcut: str = "B",
        norm: Optional[str] = "BN",
        stride_in_1x1: bool = True,
    ):
        super().__init__(in_channels, out_channels, stride, residual, shortcut, norm)
        stride_1x1, stride_3x3 = (stride, 1) if stride_in_1x1 else (1, stride)
        self.conv1 = conv_norm(in_channels, bottleneck_channels, 1, stride=stride_1x1, norm=norm)
        self.conv2 = conv_norm(bottleneck_channels, bottleneck_channels, 3, stride_3x3, norm=norm)
        self.conv3 = conv_norm(bottleneck_channels, out_channels, 1, norm=norm)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
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
        return {name: self._shapes[name] for name in self.out_features}

    @property
    def size_divisibility(self) -> int:
        return 0

    def freeze(self, freeze_at: int = 0) -> "ResNet":
        """Freeze the stem (``freeze_at >= 1``) and stages res2.. up to res``freeze_at``.

        Frozen parts get no gradient and their BN becomes FrozenBN, as Detectron2's FREEZE_AT.
        """
        frozen = (["stem"] if freeze_at >= 1 else []) + self.stage_names[: max(freeze_at - 1, 0)]
        for name in frozen:
            freeze_(getattr(self, name))
        return self

    def forward_features(self, x: torch.Tensor) -> Dict[str, torch.Tensor]:
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
        if self.num_classes is None:
            return self.forward_features(x)
        x = self.forward_features(x)[self.stage_names[-1]]
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))


# depth -> (block, blocks per stage): Table 1 for ImageNet; n blocks per stage for CIFAR 6n+2.
IMAGENET_DEPTHS = {
    18: ("basic", (2, 2, 2, 2)),
    34: ("basic", (3, 4, 6, 3)),
    50: ("bottleneck", (3, 4, 6, 3)),
    101: ("bottleneck", (3, 4, 23, 3)),
    152: ("bottleneck", (3, 8, 36, 3)),
}
IMAGENET_STAGES = ("res2", "res3", "res4", "res5")
CIFAR_STAGES = ("res2", "res3", "res4")


def make_stage(
    block: str,
    num_blocks: int,
    in_channels: int,
    out_channels: int,
    *,
    stride: int,
    residual: bool,
    shortcut: str,
    norm: Optional[str],
    stride_in_1x1: bool = True,
) -> nn.Sequential:
    """``num_blocks`` blocks; the first one changes the shape (stride and channels)."""
    blocks = []
    for i in range(num_blocks):
        kwargs = dict(stride=stride if i == 0 else 1, residual=residual, shortcut=shortcut,
                      norm=norm)
        if block == "bottleneck":
            kwargs.update(bottleneck_channels=out_channels // 4, stride_in_1x1=stride_in_1x1)
            blocks.append(BottleneckBlock(in_channels, out_channels, **kwargs))
        else:
            blocks.append(BasicBlock(in_channels, out_channels, **kwargs))
        in_channels = out_channels
    return nn.Sequential(*blocks)


def imagenet_stage_args(depth: int, stage: str) -> dict:
    """Block type, count, channels and stride of one ImageNet stage (Table 1)."""
    block, counts = IMAGENET_DEPTHS[depth]
    i = IMAGENET_STAGES.index(stage)
    expansion = 4 if block == "bottleneck" else 1
    out_channels = 64 * 2**i * expansion
    in_channels = 64 if i == 0 else out_channels // 2
    return dict(
        block=block,
        num_blocks=counts[i],
        in_channels=in_channels,
        out_channels=out_channels,
        stride=1 if i == 0 else 2,  # res2 follows the stem's max pool, so it keeps stride 1
    )


def build_imagenet_resnet(
    depth: int,
    *,
    residual: bool = True,
    shortcut: str = "B",
    stride_in_1x1: bool = True,
    norm: Optional[str] = "BN",
    freeze_at: int = 0,
    num_classes: Optional[int] = 1000,
    out_features: Optional[Sequence[str]] = None,
) -> ResNet:
    """ImageNet ResNet or plain net of ``depth`` layers (Table 1)."""
    needed = IMAGENET_STAGES if num_classes is not None else _stages_needed(
        IMAGENET_STAGES, out_features)
    stages = [
        (name, make_stage(**imagenet_stage_args(depth, name), residual=residual,
                          shortcut=shortcut, norm=norm, stride_in_1x1=stride_in_1x1))
        for name in needed
    ]
    return ResNet(ImageNetStem(norm), stages, num_classes=num_classes,
                  out_features=out_features, freeze_at=freeze_at)


def build_cifar_resnet(
    depth: int,
    *,
    residual: bool = True,
    shortcut: str = "A",
    norm: Optional[str] = "BN",
    freeze_at: int = 0,
    num_classes: Optional[int] = 10,
    out_features: Optional[Sequence[str]] = None,
    **_ignored,
) -> ResNet:
    """The CIFAR-10 nets of Sec. 4.2: 6n+2 layers on maps of 32, 16, 8 with 16, 32, 64 filters."""
    n = (depth - 2) // 6
    needed = CIFAR_STAGES if num_classes is not None else _stages_needed(CIFAR_STAGES,
                                                                          out_features)
    stages = []
    in_channels = 16
    for i, name in enumerate(needed):
        out_channels = 16 * 2**i
        stages.append((name, make_stage("basic", n, in_channels, out_channels,
                                        stride=1 if i == 0 else 2, residual=residual,
                                        shortcut=shortcut, norm=norm)))
        in_channels = out_channels
    return ResNet(CifarStem(norm), stages, num_classes=num_classes,
                  out_features=out_features, freeze_at=freeze_at)


def _stages_needed(all_stages: Sequence[str], out_features: Optional[Sequence[str]]) -> List[str]:
    """Stages up to the deepest requested feature; deeper ones are never built (as Detectron2)."""
    if not out_features:
        return list(all_stages)
    valid = ("stem",) + tuple(all_stages)
    for name in out_features:
        if name not in valid:
            raise UserError(
                f"Unknown output feature {name!r}; this network has {', '.join(valid)}."
            )
    last = max(valid.index(name) for name in out_features)
    return list(all_stages[:last])
