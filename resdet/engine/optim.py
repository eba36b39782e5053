"""SGD with Detectron2's parameter groups: separate weight decay for norm layers and biases."""

from __future__ import annotations

from typing import Any, Dict, List

import torch
from torch import nn

_NORM_TYPES = (nn.modules.batchnorm._BatchNorm, nn.GroupNorm, nn.LayerNorm,
               nn.modules.instancenorm._InstanceNorm, nn.LocalResponseNorm)


def _is_norm(module: nn.Module) -> bool:
    # FrozenBatchNorm2d has no parameters, so only trainable norms matter here.
    return isinstance(module, _NORM_TYPES) or type(module).__name__ in ("FrozenBatchNorm2d",)


def param_groups(model: nn.Module, *, weight_decay: float, weight_decay_norm: float,
                 weight_decay_bias: float, bias_lr_factor: float = 1.0) -> List[Dict[str, Any]]:
    """One group per (weight decay, lr scale) pair, each parameter exactly once.

    Args:
        model: the network (unwrapped or DDP; duplicates are removed).
        weight_decay: decay of conv/linear weights (paper: 1e-4).
        weight_decay_norm: decay of normalisation weights and biases.
        weight_decay_bias: decay of the other biases.
        bias_lr_factor: lr multiplier of biases (Detectron2's SOLVER.BIAS_LR_FACTOR).

    Returns:
        Parameter groups for a torch optimizer; each carries ``lr_scale``.
    """
    groups: Dict[tuple, List[nn.Parameter]] = {}
    seen = set()
    for module in model.modules():
        for name, p in module.named_parameters(recurse=False):
            if not p.requires_grad or id(p) in seen:
                continue
            seen.add(id(p))
            if _is_norm(module):
                key = (weight_decay_norm, 1.0)
            elif name == "bias":
                key = (weight_decay_bias, bias_lr_factor)
            else:
                key = (weight_decay, 1.0)
            groups.setdefault(key, []).append(p)
    return [{"params": ps, "weight_decay": wd, "lr_scale": scale}
            for (wd, scale), ps in groups.items()]


def build_optimizer(cfg: Any, model: nn.Module) -> torch.optim.SGD:
    """SGD with momentum from ``SOLVER.*`` (paper Sec. 3.4: momentum 0.9, weight decay 1e-4).

    Args:
        cfg: a resdet config (SOLVER.BASE_LR, MOMENTUM, NESTEROV, WEIGHT_DECAY,
            WEIGHT_DECAY_NORM, WEIGHT_DECAY_BIAS, BIAS_LR_FACTOR).
        model: the network.

    Returns:
        The optimizer; each group's lr is ``BASE_LR * lr_scale``, set per iteration by the
        schedule.
    """
    s = cfg.SOLVER
    wd_bias = s.WEIGHT_DECAY if s.WEIGHT_DECAY_BIAS is None else s.WEIGHT_DECAY_BIAS
    groups = param_groups(model, weight_decay=s.WEIGHT_DECAY,
                          weight_decay_norm=s.WEIGHT_DECAY_NORM, weight_decay_bias=wd_bias,
                          bias_lr_factor=s.BIAS_LR_FACTOR)
    for g in groups:
        g["lr"] = s.BASE_LR
    return torch.optim.SGD(groups, lr=s.BASE_LR, momentum=s.MOMENTUM, nesterov=s.NESTEROV)
