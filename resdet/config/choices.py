"""The valid values of every option with a fixed set of values: one list each.

The config's checks (:data:`CHOICES`), the network builders (``resdet.modeling``) and the tools'
``argparse`` ``choices=`` all read these tuples, so a new value is added in one place. This module
imports nothing from resdet: it is the bottom of the config package.
"""

from __future__ import annotations

from typing import Dict, Tuple

# Shortcut options of Sec. 3.3: "A" zero-padded identity, "B" projection where the shape changes,
# "C" projection on every shortcut.
SHORTCUTS: Tuple[str, ...] = ("A", "B", "C")
# Normalisation layers a network can use (BN after every conv is the paper's, Sec. 3.4; FrozenBN
# is its detection setting, Appendix A).
NORMS: Tuple[str, ...] = ("BN", "FrozenBN", "GN", "SyncBN")
# Spellings of "no norm layer" where a config key takes a norm name (PRETRAIN.NORM): empty, as
# Detectron2's MODEL.RESNETS.NORM, or "none" ("None" as Python writes it).
NO_NORM: Tuple[str, ...] = ("", "none", "None")
# Which detection engine runs a config ("auto": Detectron2 when it imports).
ENGINES: Tuple[str, ...] = ("auto", "detectron2", "torchvision")
AMP_DTYPES: Tuple[str, ...] = ("bfloat16", "float16")

# Allowed values of resdet's string keys, checked whenever a file or override sets them
# (Detectron2's own keys are checked by the engines that read them). "" for SHORTCUT means the
# architecture's paper default (B for ImageNet nets, A for CIFAR nets; Sec. 3.3, 4.2).
CHOICES: Dict[str, Tuple[str, ...]] = {
    "MODEL.RESDET.SHORTCUT": ("",) + SHORTCUTS,
    "SOLVER.AMP.DTYPE": AMP_DTYPES,
    "ENGINE": ENGINES,
    "PRETRAIN.TEST_MODE": ("center", "10crop", "multiscale"),
    "PRETRAIN.LR_POLICY": ("step", "plateau"),
    "PRETRAIN.AUGMENTATION": ("scale", "pad_crop"),
    "PRETRAIN.MEAN": ("pixel", "channel"),
    "PRETRAIN.PLATEAU_METRIC": ("val", "train"),
    # The classifier's norm: BN after every conv is the paper's (Sec. 3.4); none for ablations.
    "PRETRAIN.NORM": NORMS + NO_NORM,
}
