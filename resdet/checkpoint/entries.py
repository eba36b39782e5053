"""Which entry of a checkpoint file holds the network: the containers other trainers write.

A weights file is either a bare state dict or a training checkpoint that keeps the network next
to the optimizer, the schedule and the trainer's options. Each trainer names the network's entry
its own way; this module knows them, picks the one the trainer itself evaluates, and says which:

================================  ==========================================  =================
trainer                           file                                        entry used
================================  ==========================================  =================
torchvision reference scripts     model, optimizer, lr_scheduler, epoch,      ``model_ema`` if
                                  args (argparse.Namespace), [model_ema]      present, else
                                                                              ``model``
timm ``train.py``                 state_dict, [state_dict_ema], optimizer,    ``state_dict_ema``
                                  arch, epoch, version, args, metric          if present
PyTorch Lightning                 state_dict (``<attribute>.`` prefixes),     ``state_dict``
                                  hyper_parameters, callbacks, loops, ...
Detectron2 training               model, optimizer, scheduler | trainer,      ``model``
                                  iteration
Detectron2 model zoo ``.pkl``     model, __author__, matching_heuristics      ``model``
MMPretrain / MMDetection          state_dict (``backbone.`` prefix), meta     ``state_dict``
MoCo v1/v2/v3, SwAV               state_dict (``module.encoder_q.``,          ``state_dict``
                                  ``module.base_encoder.``, ``module.``)
DINO                              teacher, student, args, dino_loss, ...      ``teacher``
Detectron (Caffe2) / MSRA         blobs                                       ``blobs``
resdet                            model, cfg, [optimizer, scheduler, ...]     ``model``
pycls                             model_state                                 ``model_state``
================================  ==========================================  =================

The exponential moving average (EMA) is preferred where a trainer keeps one, as timm's
``load_checkpoint(use_ema=True)`` and DINO's evaluation (``--checkpoint_key teacher``) do; the
other entry stays available (``tools/convert_weights.py --entry``). Which network inside the
entry is used (MoCo's query encoder, not its momentum copy) is decided by
:func:`resdet.checkpoint.formats.convert_to_resdet`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from resdet.errors import UserError


@dataclass
class Entry:
    """The part of a checkpoint file that holds the network.

    Attributes:
        weights: name -> value (tensors, numpy arrays, maybe other values).
        entry: the key of ``weights`` in the file (``"model"``, ``"state_dict_ema"``), or None
            when the file is the state dict itself.
        trainer: what the file is, in words (for the log): "a timm train.py checkpoint".
        note: why this entry was chosen over another one the file also holds ("" if none).
        others: the file's other top-level keys (optimizer, args, ...), not used.
    """

    weights: dict
    entry: str | None
    trainer: str
    note: str = ""
    others: list[str] = field(default_factory=list)


def _is_array(value: Any) -> bool:
    return isinstance(value, (torch.Tensor, np.ndarray))


def _count_arrays(value: Any) -> int:
    return sum(_is_array(v) for v in value.values()) if isinstance(value, dict) else 0


def _weights_dict(obj: dict, key: str) -> bool:
    return isinstance(obj.get(key), dict) and _count_arrays(obj[key]) > 0


def _describe(obj: dict) -> str:
    """``'net' (122 tensors), 'epoch'``: the keys of a file, with how many arrays each holds."""
    parts = []
    for k, v in list(obj.items())[:12]:
        n = _count_arrays(v)
        parts.append(f"'{k}' ({n} tensors)" if n else f"'{k}'")
    return ", ".join(parts) + (", ..." if len(obj) > 12 else "")


def _choose(obj: dict, key: str, trainer: str, note: str = "") -> Entry:
    return Entry(weights=obj[key], entry=key, trainer=trainer, note=note,
                 others=[str(k) for k in obj if k != key])


def _ema(obj: dict, main: str, ema: str, trainer: str) -> Entry:
    """The EMA entry when the file has a non-empty one, else ``main``."""
    if _weights_dict(obj, ema):
        return _choose(obj, ema, trainer, note=(
            f"the exponential moving average of the weights, which timm's load_checkpoint picks "
            f"by default; for '{main}' instead, convert the file with tools/convert_weights.py "
            f"--entry {main}"))
    return _choose(obj, main, trainer)


def select_entry(obj: Any, source: str, entry: str | None = None) -> Entry:
    """Find the network's weights in what was read from a weights file.

    Args:
        obj: the file's content (checkpoint dict or state dict).
        source: the file name, for messages.
        entry: use this top-level key (``"state_dict"``, ``"model_ema"``, ``"student"``...)
            instead of the trainer's default.

    Returns:
        The :class:`Entry` holding the network.

    Raises:
        UserError: ``obj`` is not a dict; ``entry`` is not in the file or holds no tensors; or
            the file is a container resdet does not know (the message names its keys and the
            way forward).
    """
    if not isinstance(obj, dict):
        raise UserError(f"{source} holds a {type(obj).__name__}, not a dict of weights; "
                        "pass a state dict or checkpoint file")
    if not obj:
        raise UserError(f"{source} holds no weights (an empty dict); pass the file the "
                        "training run wrote")
    if entry:
        if not _weights_dict(obj, entry):
            raise UserError(f"{source} has no entry '{entry}' holding weights (its entries: "
                            f"{_describe(obj)}); choose one that holds tensors")
        return _choose(obj, entry, "a checkpoint")
    if isinstance(obj.get("blobs"), dict):
        return _choose(obj, "blobs", "a Detectron (Caffe2) blobs file")
    if isinstance(obj.get("model"), dict):
        if "__author__" in obj:
            return _choose(obj, "model", f"a Detectron2 model-zoo .pkl (from {obj['__author__']})")
        if "cfg" in obj or "arch" in obj:
            return _choose(obj, "model", "a resdet checkpoint")
        if "args" in obj or "lr_scheduler" in obj or "model_ema" in obj:
            return _ema(obj, "model", "model_ema", "a torchvision reference-script checkpoint")
        if {"optimizer", "scheduler", "iteration", "trainer"} & set(obj):
            return _choose(obj, "model", "a Detectron2 training checkpoint")
        return _choose(obj, "model", "a checkpoint")
    if _weights_dict(obj, "teacher") and _weights_dict(obj, "student"):
        return _choose(obj, "teacher", "a DINO checkpoint", note=(
            "DINO's teacher network, which DINO's own evaluation uses (--checkpoint_key "
            "teacher); for the student, convert the file with tools/convert_weights.py "
            "--entry student"))
    if isinstance(obj.get("state_dict"), dict):
        if "pytorch-lightning_version" in obj or "hyper_parameters" in obj or "loops" in obj:
            return _choose(obj, "state_dict", "a PyTorch Lightning checkpoint")
        if "meta" in obj:
            return _choose(obj, "state_dict", "an MMPretrain/MMDetection (OpenMMLab) checkpoint")
        if "state_dict_ema" in obj or "version" in obj:
            return _ema(obj, "state_dict", "state_dict_ema", "a timm train.py checkpoint")
        return _choose(obj, "state_dict", "a training checkpoint (MoCo, SwAV and others)")
    if isinstance(obj.get("model_state"), dict):
        return _choose(obj, "model_state", "a pycls checkpoint")
    if any(_is_array(v) for v in obj.values()):
        return Entry(weights=obj, entry=None, trainer="a state dict")
    holding = [str(k) for k, v in obj.items() if _count_arrays(v)]
    hint = holding[0] if holding else "NAME"
    raise UserError(
        f"{source} is a checkpoint layout resdet does not know (its entries: {_describe(obj)}); "
        f"name the entry that holds the network's weights with tools/convert_weights.py --entry "
        f"{hint} and use the file it writes, or re-save that entry alone "
        f"(torch.save(checkpoint['{hint}'], 'weights.pth'))")
