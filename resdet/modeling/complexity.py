"""Parameter and FLOP counts as the paper reports them (Table 1: multiply-adds of conv and fc)."""

from __future__ import annotations

import logging
import warnings
from typing import Dict, Tuple

import torch
from torch import nn

# The paper's FLOPs are the multiply-adds of the convolutions and the fc layer (Table 1); BN,
# ReLU and pooling are not counted (they are <1% of the total). fvcore counts one multiply-add per
# MAC, so only these operators are kept.
COUNTED_OPS = ("conv", "linear")


def count_parameters(model: nn.Module) -> int:
    """Elements of every parameter of ``model`` (trainable or frozen; buffers not counted)."""
    return sum(p.numel() for p in model.parameters())


def count_flops(model: nn.Module, input_size: int = 224,
                in_channels: int = 3) -> Tuple[float, Dict[str, float]]:
    """Multiply-adds of one forward pass on one ``input_size`` x ``input_size`` image.

    Counted as the paper's Table 1 counts FLOPs: convolutions and fc layers only (fvcore's
    count, one per multiply-add). The model is traced in ``eval()`` mode and put back as it was.

    Args:
        model: a classifier or backbone taking (1, ``in_channels``, H, W).
        input_size: image side in pixels (224 for Table 1).
        in_channels: image channels.

    Returns:
        The total, and the count of each top-level child module (stem, res2.., fc; VGG layers).
    """
    from fvcore.nn import FlopCountAnalysis

    was_training = model.training
    model.eval()
    inputs = torch.zeros(1, in_channels, input_size, input_size)
    analysis = FlopCountAnalysis(model, inputs)
    analysis.unsupported_ops_warnings(False)
    analysis.uncalled_modules_warnings(False)
    logger = logging.getLogger("fvcore.nn.jit_analysis")
    previous = logger.level
    logger.setLevel(logging.ERROR)  # fvcore warns about every skipped op (relu, add, ...)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)  # torch.jit deprecation, inside fvcore
            by_module = analysis.by_module_and_operator()
    finally:
        logger.setLevel(previous)
        model.train(was_training)

    def counted(module_name: str) -> float:
        ops = by_module.get(module_name, {})
        return float(sum(ops.get(op, 0) for op in COUNTED_OPS))

    return counted(""), {name: counted(name) for name, _ in model.named_children()}
