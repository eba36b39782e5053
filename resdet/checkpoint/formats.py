"""Recognise a checkpoint's layout and rename its weights to resdet's (= Detectron2's) names.

Layouts: torchvision/timm ResNet (``conv1``, ``bn1``, ``layer1.0.downsample.0``, ``fc``),
torchvision VGG (``features.N``, ``classifier.N``), Detectron2 and resdet checkpoints (already
resdet names, behind prefixes such as ``module.``, ``backbone.``, ``backbone.bottom_up.``, with a
C4 head under ``roi_heads.res5.``), and MSRA/Caffe2 blobs (``conv1_w``, ``res_conv1_bn_s``,
``res2_0_branch2a_w``, ``fc1000_w``), renamed with the rules of Detectron2's
``convert_basic_c2_names`` (detectron2/checkpoint/c2_model_loading.py). Which entry of a training
checkpoint holds the network is :mod:`resdet.checkpoint.entries`' question; which of several
networks in one entry (MoCo's query and momentum encoders) is answered here.
"""

from __future__ import annotations

import dataclasses
import enum
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from resdet.checkpoint.entries import select_entry
from resdet.errors import UserError

# VGG-16 configuration D: convolutions per block (paper's Table 1 of Simonyan & Zisserman)
VGG16_BLOCKS = (2, 2, 3, 3, 3)
# torchvision's vgg classifier: Linear at 0, 3, 6 (ReLU and Dropout between them)
_TV_VGG_CLASSIFIER = {"0": "fc6", "3": "fc7", "6": "fc8"}


class WeightsKind(enum.Enum):
    """What a weights file is: whose names its tensors carry, hence how resdet renames them
    and which input conventions the network was trained with.

    The value is the label that :attr:`ConvertedWeights.source_format` starts with.
    """

    TORCHVISION_RESNET = "torchvision ResNet (or timm)"
    TORCHVISION_VGG = "torchvision VGG"
    MSRA_CAFFE2 = "MSRA/Caffe2 blobs"
    DETECTRON2_PKL = "Detectron2 .pkl"
    DETECTRON2 = "Detectron2 checkpoint"
    RESDET = "resdet checkpoint"
    UNKNOWN = "unknown layout"

    @property
    def torchvision_conventions(self) -> bool:
        """Trained as torchvision's models are: RGB input normalised by ImageNet's mean and std,
        and (ResNet-50/101/152) the bottleneck stride in the 3x3 conv. timm, MMPretrain and
        the self-supervised ResNet-50s (MoCo, DINO, SwAV) use torchvision's network and names."""
        return self in (WeightsKind.TORCHVISION_RESNET, WeightsKind.TORCHVISION_VGG)

    @property
    def resdet_names(self) -> bool:
        """The tensors already carry resdet's (= Detectron2's backbone) names."""
        return self in (WeightsKind.DETECTRON2_PKL, WeightsKind.DETECTRON2, WeightsKind.RESDET)


@dataclass
class ConvertedWeights:
    """A checkpoint renamed to resdet's names.

    Attributes:
        tensors: resdet name -> tensor.
        source_names: resdet name -> the name in the file (for messages).
        source_format: a human-readable label of the detected layout (starts with
            ``kind.value``, or names the container when no layout was recognised).
        ignored: entries that are not arrays (e.g. a C2 ``lr`` scalar) or are optimizer state.
            The other network of a two-network file (MoCo's momentum encoder) is left out of
            ``tensors`` and named in ``notes``.
        kind: what the file is (:class:`WeightsKind`): decide on this, not on ``source_format``.
        entry: the file's entry that held the weights (``"model"``, ``"state_dict_ema"``,
            ``"teacher"``), None for a bare state dict.
        prefix: the prefix stripped from the names (``"module.encoder_q."``), "" for none.
        trainer: what the file is, in words ("a timm train.py checkpoint").
        notes: why this entry and prefix were chosen, for the log.
        other_entries: the file's other top-level entries (optimizer, args...), not used.
    """

    tensors: dict[str, torch.Tensor]
    source_names: dict[str, str]
    source_format: str
    ignored: list[str] = field(default_factory=list)
    kind: WeightsKind = WeightsKind.UNKNOWN
    entry: str | None = None
    prefix: str = ""
    trainer: str = ""
    notes: list[str] = field(default_factory=list)
    other_entries: list[str] = field(default_factory=list)

    def subset(self, keep: Callable[[str], bool]) -> ConvertedWeights:
        """The same weights restricted to the resdet names ``keep`` accepts (e.g. a detector's
        backbone part), to load into part of a model without converting the file again."""
        tensors = {k: v for k, v in self.tensors.items() if keep(k)}
        return dataclasses.replace(self, tensors=tensors, source_names={
            k: v for k, v in self.source_names.items() if k in tensors})

    def describe(self, source: str) -> str:
        """One log line: the file, what it is, the entry and prefix used, and why."""
        where = f"entry '{self.entry}'" if self.entry else "the whole file"
        if self.prefix:
            where += f", names under '{self.prefix}'"
        notes = "".join(f"; {n}" for n in self.notes)
        others = self.other_entries[:8] + (["..."] if len(self.other_entries) > 8 else [])
        unused = f"; not used: {', '.join(others)}" if others else ""
        return (f"{source}: {self.trainer or 'weights'} ({self.kind.value}); using {where} "
                f"({len(self.tensors)} tensors){notes}{unused}")


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


# anchor key -> kind; a checkpoint's prefix is what precedes its anchor
_ANCHORS = (("stem.conv1.weight", WeightsKind.RESDET), ("conv1_1.weight", WeightsKind.RESDET),
            ("layer1.0.conv1.weight", WeightsKind.TORCHVISION_RESNET),
            ("features.0.weight", WeightsKind.TORCHVISION_VGG))

# Self-supervised trainers keep two copies of the network in one state dict. The one used is the
# one each method's own transfer scripts take: MoCo v1/v2's query encoder (main_lincls.py,
# detection/convert-pretrain-to-detectron2.py), MoCo v3's base encoder (main_lincls.py), BYOL's
# online network, DINO's teacher (eval_linear.py --checkpoint_key teacher).
_USED_NETWORK = {"encoder_q": "MoCo v1/v2's query encoder", "base_encoder": "MoCo v3's base "
                 "encoder", "online_network": "BYOL's online network", "online_encoder": "BYOL's "
                 "online encoder", "teacher": "DINO's teacher"}
_OTHER_NETWORK = {"encoder_k", "momentum_encoder", "target_network", "target_encoder", "student",
                  "momentum_backbone", "target_backbone", "target_net", "ema_model"}


def _anchor_prefixes(names: list[str]) -> dict[str, WeightsKind]:
    """prefix -> kind for every anchor key found (a file may hold several networks)."""
    found: dict[str, WeightsKind] = {}
    for n in names:
        for anchor, kind in _ANCHORS:
            if n == anchor or n.endswith("." + anchor):
                found.setdefault(n[: len(n) - len(anchor)], kind)
    return found


def _components(prefix: str) -> list[str]:
    return prefix.rstrip(".").split(".")


def _choose_network(found: dict[str, WeightsKind], source: str, wanted: str | None
                    ) -> tuple[str, list[str], str]:
    """(prefix used, the other networks' prefixes, why) among the networks found."""
    if wanted is not None:
        if wanted not in found:
            listed = ", ".join(f"'{p}'" for p in found) or "none"
            raise UserError(f"{source} has no network under prefix '{wanted}' (networks found "
                            f"under: {listed}); pass one of those")
        return wanted, [p for p in found if p != wanted], "as requested"
    if len(found) <= 1:
        return next(iter(found), ""), [], ""
    candidates = [p for p in found if not _OTHER_NETWORK & set(_components(p))] or list(found)
    shortest = min(len(p) for p in candidates)
    best = [p for p in candidates if len(p) == shortest]
    if len(best) > 1:
        listed = ", ".join(f"'{p}'" for p in best)
        raise UserError(f"{source} holds several networks (under {listed}) and resdet does not "
                        "know which one to use; convert the one you want with "
                        f"tools/convert_weights.py --prefix {best[0]} and use the file it writes")
    why = next((_USED_NETWORK[c] for c in _components(best[0]) if c in _USED_NETWORK),
               "the outermost network")
    return best[0], [p for p in found if p != best[0]], why


def _strip_common(names: list[str], prefix: str) -> bool:
    return bool(names) and all(n.startswith(prefix) for n in names)


def convert_to_resdet(obj: Any, source: str = "<state dict>", *, entry: str | None = None,
                      prefix: str | None = None) -> ConvertedWeights:
    """Detect a checkpoint's layout and rename its weights to resdet's names.

    Args:
        obj: what was read from the file (checkpoint dict, state dict, Caffe2 blobs dict).
        source: the file name, for messages.
        entry: take the weights from this top-level entry instead of the trainer's default
            (see :mod:`resdet.checkpoint.entries`).
        prefix: take the network under this prefix (after ``module.`` is stripped), for files
            that hold several networks, instead of the default.

    Returns:
        The renamed weights with their :class:`WeightsKind`, the entry and prefix used. Names
        that belong to nothing resdet knows (detection heads, FPN) keep their (prefix-stripped)
        names, so they show up as unexpected.

    Raises:
        UserError: not a dict, an unknown container, an ambiguous choice of network (the
            message names the keys and how to proceed), or two names mapping to one.
    """
    chosen = select_entry(obj, source, entry)
    raw = chosen.weights
    tensors: dict[str, torch.Tensor] = {}
    ignored: list[str] = []
    for name, value in raw.items():
        t = to_tensor(value)
        # Detectron's C2 detection files carry SGD momentum blobs; Detectron2 drops them too.
        # torch.optim.swa_utils.AveragedModel (torchvision's model_ema) counts its updates.
        if (t is None or not isinstance(name, str) or str(name).endswith("_momentum")
                or name in ("n_averaged", "module.n_averaged")):
            ignored.append(str(name))
        else:
            tensors[name] = t
    names = list(tensors)
    notes = [f"{chosen.note}"] if chosen.note else []
    used_prefix = ""

    if _is_caffe2(names):
        renamed = {n: caffe2_to_resdet_name(n) for n in names}
        kind = WeightsKind.MSRA_CAFFE2
        layout = kind.value
    else:
        # DDP's "module." and torch.compile's "_orig_mod." wrap every key
        for wrapper in ("module.", "_orig_mod."):
            while _strip_common(names, wrapper):
                tensors = {n[len(wrapper):]: t for n, t in tensors.items()}
                names = list(tensors)
                used_prefix += wrapper
        found = _anchor_prefixes(names)
        if prefix is not None and used_prefix and prefix.startswith(used_prefix):
            prefix = prefix[len(used_prefix):]  # given as the file names it
        prefix, others, why = _choose_network(found, source, prefix)
        kind = found.get(prefix, WeightsKind.UNKNOWN)
        if others:
            notes.append(f"{why} (the file also holds "
                         + ", ".join(f"'{used_prefix}{p}'" for p in others) + ", not used)")
            # a key belongs to the network with the longest prefix it starts with
            other_keys = [n for n in names if max((p for p in found if n.startswith(p)),
                                                  key=len, default=prefix) != prefix]
            for n in other_keys:
                del tensors[n]
            names = list(tensors)
        used_prefix += prefix
        renamed = {}
        if kind is WeightsKind.TORCHVISION_VGG:
            inner = [n[len(prefix):] for n in names if n.startswith(prefix)]
            vgg = _torchvision_vgg_names(inner, {n[len(prefix):]: tensors[n] for n in names
                                                 if n.startswith(prefix)})
        for n in names:
            if not n.startswith(prefix):
                renamed[n] = n
            elif kind is WeightsKind.TORCHVISION_RESNET:
                renamed[n] = torchvision_resnet_to_resdet_name(n[len(prefix):])
            elif kind is WeightsKind.TORCHVISION_VGG:
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
        container = f"checkpoint['{chosen.entry}']" if chosen.entry else "state dict"
        if kind is WeightsKind.UNKNOWN:
            layout = container
        elif kind is WeightsKind.RESDET:
            # resdet's names are Detectron2's: who wrote the file tells them apart
            if chosen.trainer.startswith("a Detectron2 model-zoo .pkl"):
                kind = WeightsKind.DETECTRON2_PKL
                layout = f"Detectron2 .pkl (from {obj.get('__author__')})"
            elif chosen.trainer == "a resdet checkpoint":
                layout = kind.value
            elif chosen.entry is None:
                kind, layout = WeightsKind.DETECTRON2, "resdet/Detectron2 names"
            else:
                kind = WeightsKind.DETECTRON2
                layout = kind.value
        else:
            layout = kind.value
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
    if kind is WeightsKind.TORCHVISION_VGG:
        _fold_conv_bias_into_bn(out, source_names)
    return ConvertedWeights(tensors=out, source_names=source_names, source_format=layout,
                            ignored=ignored, kind=kind, entry=chosen.entry, prefix=used_prefix,
                            trainer=chosen.trainer, notes=notes, other_entries=chosen.others)


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


def strides_in_3x3(kind: WeightsKind | str, arch: str) -> bool:
    """Whether weights of this kind put ``arch``'s bottleneck stride in the 3x3 conv:
    torchvision's (and timm's) ResNet-50/101/152 do; MSRA's and Detectron2's use the 1x1.

    Args:
        kind: the weights' :class:`WeightsKind` (or, as before, their ``source_format``).
        arch: resdet architecture name.

    Raises:
        UserError: ``arch`` is not a registered network (the message lists the valid names).
    """
    from resdet.modeling import get_arch

    torchvision = (kind is WeightsKind.TORCHVISION_RESNET if isinstance(kind, WeightsKind)
                   else kind.startswith(WeightsKind.TORCHVISION_RESNET.value))
    # A block with a stride to place (a 1x1 before its 3x3: bottleneck blocks) takes the option.
    return torchvision and get_arch(arch).block_supports("stride_in_1x1")
