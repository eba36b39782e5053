"""VGG-16 (configuration D of Simonyan & Zisserman), the paper's detection baseline (Sec. 4.3)."""

from __future__ import annotations

from typing import Dict, List, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import nn

from resdet.errors import UserError
from resdet.modeling.arch import ArchSpec, register_arch, register_family
from resdet.modeling.layers import ShapeSpec, conv_norm, freeze_

# (number of 3x3 convs, channels) of each block of configuration D.
VGG16_LAYOUT = ((2, 64), (2, 128), (3, 256), (3, 512), (3, 512))


class VGG(nn.Module):
    """VGG-16 with Caffe-style layer names (``conv1_1`` .. ``conv5_3``, ``fc6``..``fc8``).

    With ``num_classes`` the forward returns logits, through the same 7x7 adaptive pool, fc6/fc7
    (4096) with dropout 0.5 and fc8 as torchvision's ``vgg16``; without it, it returns the block
    outputs named in ``out_features`` (before their max pool; ``conv5_3`` has stride 16).

    Args:
        num_classes: size of fc8; None builds the conv layers only (a backbone).
        out_features: block outputs a backbone returns (``conv1_2``..``conv5_3``).
        norm: a norm after every conv (None: none, as configuration D).
        freeze_at: conv blocks 1..``freeze_at`` get no gradient.
        fc_dim: width of fc6 and fc7.
        layout: ``(convs, channels)`` per block; default configuration D (VGG-16).

    Raises:
        UserError: an output feature the network does not have.
    """

    def __init__(
        self,
        *,
        num_classes: Optional[int] = 1000,
        out_features: Optional[Sequence[str]] = None,
        norm: Optional[str] = None,
        freeze_at: int = 0,
        fc_dim: int = 4096,
        layout: Sequence[Tuple[int, int]] = VGG16_LAYOUT,
    ):
        super().__init__()
        self.num_classes = num_classes
        self._shapes: Dict[str, ShapeSpec] = {}
        self.block_layers: List[List[str]] = []
        in_channels = 3
        for block, (count, channels) in enumerate(layout, start=1):
            names = [f"conv{block}_{i + 1}" for i in range(count)]
            for name in names:
                self.add_module(name, conv_norm(in_channels, channels, 3, norm=norm))
                in_channels = channels
            self.block_layers.append(names)
            self._shapes[names[-1]] = ShapeSpec(channels, 2 ** (block - 1))
        if num_classes is not None:
            self.fc6 = nn.Linear(in_channels * 7 * 7, fc_dim)
            self.fc7 = nn.Linear(fc_dim, fc_dim)
            self.fc8 = nn.Linear(fc_dim, num_classes)
            self.out_features = ["conv5_3"]
        else:
            self.out_features = list(out_features or ["conv5_3"])
            for name in self.out_features:
                if name not in self._shapes:
                    raise UserError(f"Unknown VGG-16 output feature {name!r}; use one of "
                                    f"{', '.join(self._shapes)}.")
        self._init_weights()
        self.freeze(freeze_at)

    def _init_weights(self) -> None:
        # torchvision's vgg16 initialisation, so that both start from the same distribution.
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, 0, 0.01)
                nn.init.zeros_(m.bias)

    def output_shape(self) -> Dict[str, ShapeSpec]:
        """``{name: ShapeSpec(channels, stride)}`` per out feature (conv5_3: 512, 16)."""
        return {name: self._shapes[name] for name in self.out_features}

    @property
    def size_divisibility(self) -> int:
        """0: any input size works (Detectron2's Backbone attribute)."""
        return 0

    def freeze(self, freeze_at: int = 0) -> "VGG":
        """Freeze conv blocks 1..``freeze_at`` (Faster R-CNN keeps conv1 and conv2 fixed)."""
        for names in self.block_layers[:freeze_at]:
            for name in names:
                freeze_(getattr(self, name))
        return self

    def forward_features(self, x: torch.Tensor) -> Dict[str, torch.Tensor]:
        """The block outputs named in ``out_features``.

        Args:
            x: images, (N, 3, H, W).

        Returns:
            ``{name: (N, C, H / stride, W / stride)}`` (sides rounded down by each max pool).
        """
        outputs = {}
        last = max(i for i, names in enumerate(self.block_layers)
                   if names[-1] in self.out_features)
        for i, names in enumerate(self.block_layers[: last + 1]):
            if i > 0:
                x = F.max_pool2d(x, kernel_size=2, stride=2)
            for name in names:
                x = F.relu_(getattr(self, name)(x))
            if names[-1] in self.out_features:
                outputs[names[-1]] = x
        return outputs

    def forward(self, x: torch.Tensor):
        """Logits (N, num_classes) when built with ``num_classes``, else ``forward_features(x)``.

        Args:
            x: images, (N, 3, H, W), at least 32x32; fc6 sees a 7x7 adaptive pool of conv5_3.
        """
        if self.num_classes is None:
            return self.forward_features(x)
        x = F.max_pool2d(self.forward_features(x)["conv5_3"], kernel_size=2, stride=2)
        x = torch.flatten(F.adaptive_avg_pool2d(x, (7, 7)), 1)
        x = F.dropout(F.relu_(self.fc6(x)), 0.5, self.training)
        x = F.dropout(F.relu_(self.fc7(x)), 0.5, self.training)
        return self.fc8(x)


@register_family("vgg")
def build_vgg(
    spec: ArchSpec,
    *,
    num_classes: Optional[int],
    out_features: Optional[Sequence[str]],
    norm: Optional[str],
    freeze_at: int = 0,
) -> VGG:
    """A :class:`VGG` with ``spec``'s blocks (``stage_blocks`` convs of ``stage_channels`` each).

    Args:
        spec: the network's blocks.
        num_classes: size of fc8; None builds a backbone.
        out_features: block outputs a backbone returns.
        norm: a norm name, or None (configuration D has none).
        freeze_at: conv blocks 1..``freeze_at`` are frozen.

    Returns:
        The network.
    """
    return VGG(num_classes=num_classes, out_features=out_features, norm=norm,
               freeze_at=freeze_at, layout=tuple(zip(spec.stage_blocks, spec.stage_channels)))


# VGG-16 has no BN (configuration D, as torchvision's vgg16) and no shortcuts.
register_arch(ArchSpec(
    name="vgg16", family="vgg", depth=16,
    stage_names=tuple(f"conv{b}_{count}" for b, (count, _) in enumerate(VGG16_LAYOUT, start=1)),
    stage_blocks=tuple(count for count, _ in VGG16_LAYOUT),
    stage_channels=tuple(channels for _, channels in VGG16_LAYOUT),
    residual=False, default_norm=None, input_size=224, num_classes=1000,
    options=("norm", "freeze_at"), classifier="fc8"))
