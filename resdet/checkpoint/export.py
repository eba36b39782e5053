"""Write resdet weights in other layouts: Detectron2 ``.pkl`` and MSRA/Caffe2 blobs."""

from __future__ import annotations

import math
import pickle
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Union

import numpy as np
import torch
from torch import nn

from resdet.checkpoint.atomic import atomic_torch_save, atomic_write
from resdet.errors import UserError

StateDictLike = Union[nn.Module, Mapping[str, torch.Tensor]]
_BLOCK_TO_C2 = {"conv1": "branch2a", "conv2": "branch2b", "conv3": "branch2c",
                "shortcut": "branch1"}
_NORM_TO_C2 = {"weight": "s", "bias": "b", "running_mean": "rm", "running_var": "riv"}


def _state_dict(sd: StateDictLike) -> dict[str, torch.Tensor]:
    sd = sd.state_dict() if isinstance(sd, nn.Module) else sd
    return {k: v for k, v in sd.items()
            if isinstance(v, torch.Tensor) and not k.endswith("num_batches_tracked")}


def _numpy(t: torch.Tensor) -> np.ndarray:
    return t.detach().cpu().numpy().copy()


def to_detectron2(sd: StateDictLike, *, c4_head: bool = False) -> dict:
    """A resdet state dict in Detectron2's ``.pkl`` model-zoo layout.

    resdet's names are Detectron2's backbone names, so by default they stay bare and the file says
    ``matching_heuristics: True``: Detectron2 then matches each name as a suffix of its model's
    keys (``stem.conv1.weight`` -> ``backbone.bottom_up.stem.conv1.weight``, ``res5.*`` ->
    ``roi_heads.res5.*``), exactly as for its own ImageNet ``R-50.pkl``. With ``c4_head=True`` the
    names are those of Detectron2's C4 Faster R-CNN (``backbone.res4...``,
    ``roi_heads.res5...``) and ``matching_heuristics`` is False (loaded by exact name).

    Args:
        sd: a resdet state dict or module.
        c4_head: name res5 as the C4 box head and prefix the rest with ``backbone.``.

    Returns:
        ``{"model": {name: numpy array}, "__author__": "resdet", "matching_heuristics": bool}``.
    """
    model = {}
    for k, v in _state_dict(sd).items():
        if c4_head:
            k = "roi_heads." + k if k.startswith("res5.") else "backbone." + k
        model[k] = _numpy(v)
    return {"model": model, "__author__": "resdet", "matching_heuristics": not c4_head}


def save_detectron2_pkl(sd: StateDictLike, path: str | Path, *, c4_head: bool = False
                        ) -> None:
    """Write :func:`to_detectron2` ``(sd)`` as a pickle Detectron2's checkpointer reads."""
    data = to_detectron2(sd, c4_head=c4_head)
    # protocol 4: no out-of-band buffers, readable by any Python 3 Detectron2
    atomic_write(path, lambda f: pickle.dump(data, f, protocol=4))


def save_resdet_weights(sd: StateDictLike, path: str | Path, **meta) -> None:
    """Write ``{"model": sd, **meta}`` with torch.save, atomically."""
    data = {"model": {k: v.detach().cpu() for k, v in _state_dict(sd).items()}, **meta}
    atomic_torch_save(data, path)


def resdet_to_msra_name(name: str) -> str:
    """``res2.0.conv1.norm.weight`` -> ``res2_0_branch2a_bn_s`` (inverse of Detectron2's rules)."""
    m = re.match(r"^(conv\d_\d|fc[678])\.(weight|bias)$", name)  # VGG-16
    if m:
        return f"{m.group(1)}_{'w' if m.group(2) == 'weight' else 'b'}"
    m = re.match(r"^fc\.(weight|bias)$", name)
    if m:
        return f"fc1000_{'w' if m.group(1) == 'weight' else 'b'}"
    m = re.match(r"^stem\.conv1\.(weight|norm\.(\w+))$", name)
    if m:
        return "conv1_w" if m.group(1) == "weight" else f"res_conv1_bn_{_NORM_TO_C2[m.group(2)]}"
    m = re.match(r"^(res\d)\.(\d+)\.(conv1|conv2|conv3|shortcut)\.(weight|norm\.(\w+))$", name)
    if m and (m.group(5) is None or m.group(5) in _NORM_TO_C2):
        base = f"{m.group(1)}_{m.group(2)}_{_BLOCK_TO_C2[m.group(3)]}"
        return base + ("_w" if m.group(4) == "weight" else f"_bn_{_NORM_TO_C2[m.group(5)]}")
    raise UserError(f"weight '{name}' has no name in the MSRA/Caffe2 layout; export a resdet "
                    "ResNet or VGG-16 state dict")


def to_msra(sd: StateDictLike, *, fold_bn: bool = True, eps: float = 1e-5) -> dict:
    """A resdet state dict in the original MSRA/Caffe2 ``.pkl`` layout (``{"blobs": {...}}``).

    Args:
        sd: a resdet state dict or module.
        fold_bn: fold running mean/var into scale ``_bn_s`` and bias ``_bn_b``, as the MSRA
            files do. The scale is set so that a loader using mean 0, var 1 and ``eps``
            (Detectron2's rule) computes the same function as the original BN.
        eps: the BN epsilon of the source network.

    Returns:
        ``{"blobs": {caffe2 name: numpy array}}``.
    """
    sd = _state_dict(sd)
    blobs = {}
    for k, v in sd.items():
        if fold_bn and k.endswith((".running_mean", ".running_var")):
            continue
        if fold_bn and re.search(r"\.norm\.(weight|bias)$", k):
            owner = k.rsplit(".", 1)[0]
            mean, var = sd.get(owner + ".running_mean"), sd.get(owner + ".running_var")
            if mean is not None and var is not None:
                w = sd[owner + ".weight"].double()
                scale = w / torch.sqrt(var.double() + eps)
                if k.endswith(".weight"):
                    v = scale * math.sqrt(1.0 + eps)
                else:
                    v = sd[owner + ".bias"].double() - mean.double() * scale
                v = v.to(sd[k].dtype)
        blobs[resdet_to_msra_name(k)] = _numpy(v)
    return {"blobs": blobs}
