"""Recognise a checkpoint's layout and rename its weights to resdet's (= Detectron2's) names.

Layouts: torchvision/timm ResNet (``conv1``, ``bn1``, ``layer1.0.downsample.0``, ``fc``),
torchvision VGG (``features.N``, ``classifier.N``), Detectron2 and resdet checkpoints (already
resdet names, behind prefixes such as ``module.``, ``backbone.``, ``backbone.bottom_up.``, with a
C4 head under ``roi_heads.res5.``), and MSRA/Caffe2 blobs (``conv1_w``, ``res_conv1_bn_s``,
``res2_0_branch2a_w``, ``fc1000_w``), renamed with the rules of Detectron2's
``convert_basic_c2_names`` (detectron2/checkpoint/c2_model_loading.py).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from resdet.errors import UserError

# VGG-16 configuration D: convolutions per block (paper's Table 1 of Simonyan & Zisserman)
VGG16_BLOCKS = (2, 2, 3, 3, 3)
# torchvision's vgg classifier: Linear at 0, 3, 6 (ReLU and Dropout between them)
_TV_VGG_CLASSIFIER = {"0": "fc6", "3": "fc7", "6": "fc8"}


@dataclass
class ConvertedWeights:
    """A checkpoint renamed to resdet's names.

    Attributes:
        tensors: resdet name -> tensor.
        source_names: resdet name -> the name in the file (for messages).
        source_format: a human-readable label of the detected layout.
        ignored: entries that are not arrays (e.g. a C2 ``lr`` scalar) or are optimizer state.
    """

    tensors: dict[str, torch.Tensor]
    source_names: dict[str, str]
    source_format: str
    ignored: list[str] = field(default_factory=list)


def to_tensor(value: Any) -> torch.Tensor | None:
    """A tensor for a tensor, numpy array or numpy/Python number; None for anything else."""
    if isinstance(value, torch.Tensor):
        return value.detach()
    if isinstance(value, (np.ndarray, np.generic)):
        arr = np.asarray(value)
        if arr.dtype.kind not in "biuf":
            return None
        # pickled buffers may be read-only or big-endian; torch needs native, writable memory
        return torch.from_numpy(np.array(arr, dtype=arr.dtype.newbyteorder("="), copy=True))
    return None


def _unwrap(obj: Any, source: str) -> tuple[dict[str, Any], str]:
    """The name -> value dict inside a checkpoint, and a label of the container."""
    if not isinstance(obj, dict):
        raise UserError(f"{source} holds a {type(obj).__name__}, not a dict of weights; "
                        "pass a state dict or checkpoint file")
    if isinstance(obj.get("blobs"), dict):
        return obj["blobs"], "Caffe2 blobs"
    if isinstance(obj.get("model"), dict):
        author = obj.get("__author__")
        if author is not None:
            return obj["model"], f"Detectron2 .pkl (from {author})"
        if "cfg" in obj or "arch" in obj:
            return obj["model"], "resdet checkpoint"
        return obj["model"], "Detectron2 checkpoint"
    for key in ("state_dict", "model_state"):  # Lightning/timm training files, pycls
        if isinstance(obj.get(key), dict):
            return obj[key], f"checkpoint['{key}']"
    return obj, "state dict"


def _is_caffe2(names: list[str]) -> bool:
    # Caffe2 blob names never contain dots and end in _w/_b/_s/...
    return bool(names) and all("." not in n for n in names) and any(
        n.endswith("_w") for n in names)


def caffe2_to_resdet_name(name: str) -> str:
    """Rename one Caffe2 blob as Detectron2's ``convert_basic_c2_names`` does (backbone part)."""
    m = re.match(r"^(conv\d_\d|fc[678])_([wb])$", name)  # Caffe2/Detectron VGG-16
    if m:
        return f"{m.group(1)}.{'weight' if m.group(2) == 'w' else 'bias'}"
    k = name.replace("_", ".")
    k = re.sub(r"\.b$", ".bias", k)
    k = re.sub(r"\.w$", ".weight", k)
    k = re.sub(r"bn\.s$", "norm.weight", k)
    k = re.sub(r"bn\.bias$", "norm.bias", k)
    k = re.sub(r"bn\.rm", "norm.running_mean", k)
    k = re.sub(r"bn\.running\.mean$", "norm.running_mean", k)
    k = re.sub(r"bn\.riv$", "norm.running_var", k)
    k = re.sub(r"bn\.running\.var$", "norm.running_var", k)
    k = re.sub(r"bn\.gamma$", "norm.weight", k)
    k = re.sub(r"bn\.beta$", "norm.bias", k)
    k = re.sub(r"gn\.s$", "norm.weight", k)
    k = re.sub(r"gn\.bias$", "norm.bias", k)
    k = re.sub(r"^res\.conv1\.norm\.", "conv1.norm.", k)
    k = re.sub(r"^conv1\.", "stem.conv1.", k)
    k = k.replace(".branch1.", ".shortcut.")
    k = k.replace(".branch2a.", ".conv1.")
    k = k.replace(".branch2b.", ".conv2.")
    k = k.replace(".branch2c.", ".conv3.")
    return re.sub(r"^fc1000\.", "fc.", k)


def torchvision_resnet_to_resdet_name(name: str) -> str:
    """Rename a torchvision/timm ResNet key (``layer1.0.bn2.*`` -> ``res2.0.conv2.norm.*``)."""
    m = re.match(r"^layer(\d)\.(\d+)\.(.*)$", name)
    if m:
        rest = m.group(3)
        rest = re.sub(r"^bn(\d)\.", r"conv\1.norm.", rest)
        rest = re.sub(r"^downsample\.0\.", "shortcut.", rest)
        rest = re.sub(r"^downsample\.1\.", "shortcut.norm.", rest)
        return f"res{int(m.group(1)) + 1}.{m.group(2)}.{rest}"
    if name.startswith("conv1."):
        return "stem." + name
    if name.startswith("bn1."):
        return "stem.conv1.norm." + name[len("bn1."):]
    return name


def _torchvision_vgg_names(names: list[str], tensors: dict[str, torch.Tensor]) -> dict[str, str]:
    """Map ``features.N.*`` / ``classifier.N.*`` to ``convB_I.*`` / ``fcK.*``.

    The convolutions are numbered in order of their index in ``features``, so vgg16_bn's extra
    BatchNorm layers (mapped to ``<conv>.norm.*``) do not shift the numbering.
    """
    conv_names = [f"conv{b + 1}_{i + 1}" for b, n in enumerate(VGG16_BLOCKS) for i in range(n)]
    indices = sorted({int(n.split(".")[1]) for n in names if re.match(r"^features\.\d+\.", n)})
    layer_of: dict[int, str] = {}
    conv_i = -1
    for idx in indices:
        w = tensors.get(f"features.{idx}.weight")
        if w is not None and w.dim() == 4:
            conv_i += 1
            layer_of[idx] = conv_names[conv_i] if conv_i < len(conv_names) else f"conv_{idx}"
        elif conv_i >= 0:
            layer_of[idx] = conv_names[conv_i] + ".norm"
    out = {}
    for n in names:
        m = re.match(r"^features\.(\d+)\.(.*)$", n)
        if m and int(m.group(1)) in layer_of:
            out[n] = f"{layer_of[int(m.group(1))]}.{m.group(2)}"
            continue
        m = re.match(r"^classifier\.(\d+)\.(.*)$", n)
        if m and m.group(1) in _TV_VGG_CLASSIFIER:
            out[n] = f"{_TV_VGG_CLASSIFIER[m.group(1)]}.{m.group(2)}"
            continue
        out[n] = n
    return out


# anchor key -> layout; a checkpoint's prefix is what precedes its anchor
_ANCHORS = (("stem.conv1.weight", "resdet"), ("conv1_1.weight", "resdet"),
            ("layer1.0.conv1.weight", "torchvision ResNet (or timm)"),
            ("features.0.weight", "torchvision VGG"))


def _find_layout(names: list[str]) -> tuple[str, str]:
    """(layout, prefix) from the shortest-prefixed anchor key; ("", "") when none is found."""
    best: tuple[str, str] | None = None
    for n in names:
        for anchor, layout in _ANCHORS:
            if n == anchor or n.endswith("." + anchor):
                prefix = n[: len(n) - len(anchor)]
                if best is None or len(prefix) < len(best[1]):
                    best = (layout, prefix)
    return best or ("", "")


def _strip_common(names: list[str], prefix: str) -> bool:
    return bool(names) and all(n.startswith(prefix) for n in names)


def convert_to_resdet(obj: Any, source: str = "<state dict>") -> ConvertedWeights:
    """Detect a checkpoint's layout and rename its weights to resdet's names.

    Args:
        obj: what was read from the file (checkpoint dict, state dict, Caffe2 blobs dict).
        source: the file name, for messages.

    Returns:
        The renamed weights with the layout's label. Names that belong to nothing resdet knows
        (detection heads, FPN) keep their (prefix-stripped) names, so they show up as unexpected.
    """
    raw, container = _unwrap(obj, source)
    tensors: dict[str, torch.Tensor] = {}
    ignored: list[str] = []
    for name, value in raw.items():
        t = to_tensor(value)
        # Detectron's C2 detection files carry SGD momentum blobs; Detectron2 drops them too
        if t is None or not isinstance(name, str) or str(name).endswith("_momentum"):
            ignored.append(str(name))
        else:
            tensors[name] = t
    names = list(tensors)

    if _is_caffe2(names):
        renamed = {n: caffe2_to_resdet_name(n) for n in names}
        layout = "MSRA/Caffe2 blobs"
    else:
        # DDP's "module." and torch.compile's "_orig_mod." wrap every key
        for wrapper in ("module.", "_orig_mod."):
            while _strip_common(names, wrapper):
                tensors = {n[len(wrapper):]: t for n, t in tensors.items()}
                names = list(tensors)
        layout, prefix = _find_layout(names)
        renamed = {}
        if layout == "torchvision VGG":
            inner = [n[len(prefix):] for n in names if n.startswith(prefix)]
            vgg = _torchvision_vgg_names(inner, {n[len(prefix):]: tensors[n] for n in names
                                                 if n.startswith(prefix)})
        for n in names:
            if not n.startswith(prefix):
                renamed[n] = n
            elif layout.startswith("torchvision ResNet"):
                renamed[n] = torchvision_resnet_to_resdet_name(n[len(prefix):])
            elif layout == "torchvision VGG":
                renamed[n] = vgg[n[len(prefix):]]
            else:
                # Detectron2's own torchvision conversion puts fc under the stem
                renamed[n] = re.sub(r"^stem\.fc\.", "fc.", n[len(prefix):])
        # Detectron2's C4 model keeps res5 in the box head (roi_heads.res5.*)
        if not any(r.startswith("res5.") for r in renamed.values()):
            heads = {m.group(1) for r in renamed.values()
                     for m in [re.match(r"^(.+\.)res5\.\d+\.", r)] if m}
            if len(heads) == 1:
                head = heads.pop()
                renamed = {n: ("res5." + r[len(head) + len("res5."):]
                               if r.startswith(head + "res5.") else r)
                           for n, r in renamed.items()}
        if not layout:
            layout = container
        elif layout == "resdet":
            layout = container if container != "state dict" else "resdet/Detectron2 names"
        if prefix:
            layout += f", prefix '{prefix}'"

    if len(set(renamed.values())) != len(renamed):
        seen: dict[str, str] = {}
        for n, r in renamed.items():
            if r in seen:
                raise UserError(f"{source}: weights '{seen[r]}' and '{n}' both map to resdet "
                                f"name '{r}'; the file mixes two models, pass a single model")
            seen[r] = n
    out = {renamed[n]: tensors[n] for n in names}
    source_names = {renamed[n]: n for n in names}
    if layout.startswith("torchvision VGG"):
        _fold_conv_bias_into_bn(out, source_names)
    return ConvertedWeights(tensors=out, source_names=source_names, source_format=layout,
                            ignored=ignored)


def _fold_conv_bias_into_bn(tensors: dict[str, torch.Tensor], source_names: dict[str, str]
                            ) -> None:
    """vgg16_bn has a conv bias before each BN; resdet's conv-with-norm has none.

    BN subtracts its mean, so ``BN(conv(x) + b)`` equals ``BN'(conv(x))`` with running mean
    ``mean - b`` (and in training the bias cancels out anyway).
    """
    for name in [n for n in tensors if n.endswith(".bias") and not n.endswith(".norm.bias")]:
        mean_key = name[: -len("bias")] + "norm.running_mean"
        if mean_key in tensors and tensors[mean_key].shape == tensors[name].shape:
            tensors[mean_key] = tensors[mean_key] - tensors.pop(name)
            source_names.pop(name)


# How torchvision's (and timm's) ImageNet models take their input, in Detectron2's 0..255 units.
TORCHVISION_INPUT = {"MODEL.PIXEL_MEAN": [123.675, 116.28, 103.53],
                     "MODEL.PIXEL_STD": [58.395, 57.12, 57.375], "INPUT.FORMAT": "RGB"}


def strides_in_3x3(source_format: str, arch: str) -> bool:
    """Whether weights of this layout put ``arch``'s bottleneck stride in the 3x3 conv:
    torchvision's (and timm's) ResNet-50/101/152 do; MSRA's and Detectron2's use the 1x1."""
    from resdet.modeling import arch_info

    return (source_format.startswith("torchvision ResNet")
            and arch_info(arch)["block"] == "bottleneck")
