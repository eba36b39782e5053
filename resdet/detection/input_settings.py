"""Advice about the input settings that torchvision's ImageNet weights expect.

The weights layer (:mod:`resdet.checkpoint`) says what a file is; whether the config feeds that
file's backbone the inputs it was trained on is a question about the config, so it is asked here,
above both engine adapters.
"""

from __future__ import annotations

from typing import Any

from resdet.checkpoint.formats import TORCHVISION_INPUT, strides_in_3x3
from resdet.config import lookup
from resdet.detection.options import network_options


def torchvision_settings_advice(cfg: Any, source_format: str, weights: str) -> str:
    """One sentence naming the config settings torchvision weights need that ``cfg`` lacks.

    torchvision's models were trained on RGB images normalised by ImageNet's mean and std, and its
    ResNet-50/101/152 put the stride in the 3x3 conv; the paper's (MSRA) settings load the same
    tensors without complaint but feed the backbone inputs it never saw.

    Args:
        cfg: a detection config (Detectron2 keys).
        source_format: :attr:`resdet.checkpoint.ConvertedWeights.source_format` of the weights.
        weights: the file or name, for the message.

    Returns:
        ``""`` when the weights are not torchvision's or the config already matches.
    """
    if not source_format.startswith("torchvision"):
        return ""
    wanted = []
    for key, want in TORCHVISION_INPUT.items():
        have = lookup(cfg, key)
        same = (have == want if isinstance(want, str) else
                len(have) == 3 and all(abs(float(a) - b) < 1e-2 for a, b in zip(have, want)))
        if not same:
            wanted.append(f"{key} {want!r}" if isinstance(want, str) else f"{key} {want}")
    # The network the builders make (resdet's ARCH, or Detectron2's resnet{DEPTH}), asked once.
    arch = network_options(cfg, heads=False).backbone.arch
    if cfg.MODEL.RESNETS.STRIDE_IN_1X1 and strides_in_3x3(source_format, arch):
        wanted.append("MODEL.RESNETS.STRIDE_IN_1X1 False")
    if not wanted:
        return ""
    return (f"{weights} holds torchvision weights, trained on RGB images normalised by ImageNet's "
            f"mean and std: set {', '.join(wanted)} (Detectron2's settings for torchvision "
            "backbones), or the backbone starts from inputs it was never trained on")
