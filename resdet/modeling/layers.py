"""Building blocks shared by every network: a conv that carries its norm, frozen BN, norm choice."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn

from resdet.config.choices import NORMS
from resdet.errors import UserError

__all__ = ["NORMS", "Conv2d", "FrozenBatchNorm2d", "ShapeSpec", "conv_norm", "freeze_", "get_norm",
           "he_init", "zero_pad_shortcut"]


@dataclass(frozen=True)
class ShapeSpec:
    """Channels and stride of one feature map (the attributes of Detectron2's ShapeSpec)."""

    channels: int
    stride: int


class FrozenBatchNorm2d(nn.Module):
    """Batch norm with fixed statistics and affine parameters, stored as buffers.

    The paper fixes BN for detection (Appendix A); the buffers and ``eps`` follow Detectron2's
    ``FrozenBatchNorm2d`` so that checkpoints move between the two unchanged.
    """

    def __init__(self, num_features: int, eps: float = 1e-5):
        super().__init__()
        self.num_features = num_features
        self.eps = eps
        self.register_buffer("weight", torch.ones(num_features))
        self.register_buffer("bias", torch.zeros(num_features))
        self.register_buffer("running_mean", torch.zeros(num_features))
        self.register_buffer("running_var", torch.ones(num_features) - eps)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(x - running_mean) / sqrt(running_var + eps) * weight + bias`` per channel.

        Args:
            x: (N, num_features, H, W).

        Returns:
            A tensor of ``x``'s shape and dtype.
        """
        if not x.requires_grad:
            # One fused kernel, and the same rounding as Detectron2's layer in inference.
            return F.batch_norm(x, self.running_mean, self.running_var, self.weight, self.bias,
                                training=False, eps=self.eps)
        scale = self.weight * (self.running_var + self.eps).rsqrt()
        bias = self.bias - self.running_mean * scale
        return x * scale.view(1, -1, 1, 1).to(x.dtype) + bias.view(1, -1, 1, 1).to(x.dtype)

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        # BatchNorm2d checkpoints carry a counter that frozen BN has no use for.
        state_dict.pop(prefix + "num_batches_tracked", None)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def extra_repr(self) -> str:
        """``"<num_features>, eps=<eps>"`` for ``repr(module)``."""
        return f"{self.num_features}, eps={self.eps}"

    @classmethod
    def convert_frozen_batchnorm(cls, module: nn.Module) -> nn.Module:
        """Return ``module`` with every BatchNorm (and SyncBatchNorm) replaced by a frozen copy.

        The statistics and affine parameters are copied; a BatchNorm ``module`` itself is
        returned as a new FrozenBatchNorm2d, a container is changed in place and returned.
        """
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            frozen = cls(module.num_features, module.eps)
            if module.affine:
                frozen.weight.copy_(module.weight.detach())
                frozen.bias.copy_(module.bias.detach())
            if module.track_running_stats:
                frozen.running_mean.copy_(module.running_mean)
                frozen.running_var.copy_(module.running_var)
            return frozen
        for name, child in module.named_children():
            new_child = cls.convert_frozen_batchnorm(child)
            if new_child is not child:
                module.add_module(name, new_child)
        return module


def freeze_(module: nn.Module) -> nn.Module:
    """Stop gradients to ``module``'s parameters and fix its BN statistics (FrozenBN), in place."""
    for p in module.parameters():
        p.requires_grad_(False)
    return FrozenBatchNorm2d.convert_frozen_batchnorm(module)


def get_norm(norm: Optional[str], channels: int) -> Optional[nn.Module]:
    """The norm layer named ``norm`` for ``channels`` channels, or None when ``norm`` is empty.

    Args:
        norm: one of ``NORMS`` ("BN" after every conv is the paper's, Sec. 3.4; "FrozenBN" its
            detection setting, Appendix A; "GN" Wu & He 2018; "SyncBN"), or None / "".
        channels: channels of the conv output it normalises.

    Raises:
        UserError: ``norm`` is not one of ``NORMS``.
    """
    if not norm:
        return None
    if norm == "BN":
        return nn.BatchNorm2d(channels)
    if norm == "FrozenBN":
        return FrozenBatchNorm2d(channels)
    if norm == "SyncBN":
        return nn.SyncBatchNorm(channels)
    if norm == "GN":
        # 32 groups as in Wu & He (2018); narrow CIFAR stages (16 channels) use fewer.
        return nn.GroupNorm(math.gcd(32, channels), channels)
    raise UserError(f"Unknown norm {norm!r}; use one of {', '.join(NORMS)}.")


class Conv2d(nn.Conv2d):
    """A conv with an optional ``norm`` submodule applied after it (Detectron2's layout).

    Keeping the norm inside the conv gives state-dict names such as ``res2.0.conv1.norm.weight``,
    the same names Detectron2 uses, so resdet checkpoints load into Detectron2 unchanged.
    """

    def __init__(self, *args, norm: Optional[nn.Module] = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.norm = norm

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The conv, then ``norm`` when there is one: (N, C_in, H, W) -> (N, C_out, H', W')."""
        x = super().forward(x)
        if self.norm is not None:
            x = self.norm(x)
        return x


def conv_norm(
    in_channels: int,
    out_channels: int,
    kernel_size: int,
    stride: int = 1,
    norm: Optional[str] = "BN",
) -> Conv2d:
    """A ``kernel_size`` conv with "same" padding followed by ``norm`` (bias only without norm).

    Output side: input side / ``stride``, rounded up. Raises UserError for an unknown ``norm``.
    """
    return Conv2d(
        in_channels,
        out_channels,
        kernel_size,
        stride=stride,
        padding=kernel_size // 2,
        bias=not norm,
        norm=get_norm(norm, out_channels),
    )


def zero_pad_shortcut(x: torch.Tensor, out_channels: int, stride: int) -> torch.Tensor:
    """Option A shortcut (Sec. 3.3): identity, subsampled by ``stride``, channels zero-padded.

    Args:
        x: (N, C, H, W).
        out_channels: channels of the result (>= C).
        stride: spatial subsampling (every ``stride``-th pixel, as the paper's option A).

    Returns:
        (N, out_channels, ceil(H / stride), ceil(W / stride)); channels C.. are zeros.
    """
    if stride > 1:
        x = x[:, :, ::stride, ::stride]
    extra = out_channels - x.shape[1]
    if extra > 0:
        x = F.pad(x, (0, 0, 0, 0, 0, extra))
    return x


def he_init(module: nn.Module) -> None:
    """He et al. (2015) initialisation for convs (Sec. 3.4), unit-scale norms, zero biases."""
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, (nn.BatchNorm2d, nn.GroupNorm, nn.SyncBatchNorm)):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
