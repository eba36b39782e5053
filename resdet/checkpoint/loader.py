"""``load_weights``: put weights from any supported layout into a resdet network."""

from __future__ import annotations

import logging
import re
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from resdet.checkpoint.files import read_weights_file, resolve_weights
from resdet.checkpoint.formats import convert_to_resdet
from resdet.errors import UserError

logger = logging.getLogger(__name__)

# classifier heads a backbone has no place for: torchvision/resdet "fc", MSRA "fc1000" (renamed
# to fc), VGG's fc6/fc7/fc8
_HEAD = re.compile(r"^(fc|fc1000|fc6|fc7|fc8)\.")


def is_classifier_head(name: str) -> bool:
    """True for classifier-head weights (``fc.*``, ``fc6/7/8.*``), which a backbone ignores."""
    return bool(_HEAD.match(name))


@dataclass
class LoadReport:
    """What :func:`load_weights` did.

    Attributes:
        matched: model keys that received a checkpoint tensor.
        missing: model keys the checkpoint lacks (left as initialised; ``num_batches_tracked``
            is not counted).
        unexpected: checkpoint keys (resdet names) the model has no place for.
        mismatched: keys skipped for a shape mismatch (only with ``strict_shapes=False``).
        filled: BatchNorm running stats set to mean 0 / var 1 because the checkpoint holds only
            the folded scale and bias (MSRA/Caffe2 files; Detectron2 does the same).
        source_format: the layout that was detected.
    """

    matched: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    mismatched: list[str] = field(default_factory=list)
    filled: list[str] = field(default_factory=list)
    source_format: str = ""


def group_names(names: Iterable[str]) -> str:
    """``a.b.weight, a.b.bias`` -> ``a.b.{bias,weight}``: keeps long key lists readable."""
    groups: dict[str, list[str]] = defaultdict(list)
    for n in names:
        head, _, tail = n.rpartition(".")
        groups[head].append(tail)
    parts = []
    for head, tails in groups.items():
        if not head:
            parts.extend(tails)
        elif len(tails) == 1:
            parts.append(f"{head}.{tails[0]}")
        else:
            parts.append(f"{head}.{{{','.join(sorted(tails))}}}")
    return ", ".join(parts)


def _shape(t: torch.Tensor) -> tuple:
    return tuple(t.shape)


def load_weights(
    model: nn.Module,
    weights: str | Path | dict[str, Any],
    *,
    arch: str | None = None,
    strict_shapes: bool = True,
    strict: bool = False,
    sha256: str | None = None,
    source_prefix: str = "",
    source: str | None = None,
) -> LoadReport:
    """Load weights of any supported layout into a resdet network.

    Layouts: torchvision/timm ResNet and torchvision VGG state dicts, Detectron2 checkpoints
    (``.pth`` and ``.pkl``, with ``backbone.``/``backbone.bottom_up.``/``roi_heads.res5.``
    prefixes), MSRA/Caffe2 ``.pkl`` blobs, and resdet checkpoints (``module.`` prefixes too).
    ``.pkl`` files go through the restricted unpickler, others through
    ``torch.load(weights_only=True)``. Classifier-head weights (``fc``, ``fc1000``, ``fc6-8``) that
    a backbone has no place for are reported as unexpected and otherwise ignored. BatchNorm layers
    given only scale and bias get running mean 0 and variance 1 (Detectron2's rule for MSRA files).

    Args:
        model: a network from :mod:`resdet.modeling` (classifier, backbone or stage).
        weights: a path, ``torchvision://NAME`` or URL (see :func:`resolve_weights`), or an
            already loaded state dict / checkpoint dict.
        arch: the architecture name the caller built, used in messages.
        strict_shapes: a shape mismatch is an error (True) or the key is skipped (False).
        strict: missing keys are an error instead of a warning.
        sha256: pin the file's sha256 (refused on mismatch).
        source_prefix: load only checkpoint keys under this resdet prefix, with it removed, e.g.
            ``"res5."`` for a res5 head built with ``build_stage``.
        source: how messages name already loaded ``weights`` (e.g. the file they came from).

    Returns:
        A :class:`LoadReport`.

    Raises:
        UserError: unreadable/unsafe file, a shape mismatch (names the key and both shapes),
            nothing matching at all, or (with ``strict``) missing keys.
    """
    if isinstance(weights, (str, Path)):
        source = source or str(weights)
        obj = read_weights_file(resolve_weights(weights, sha256=sha256))
    else:
        source, obj = source or "<state dict>", weights
    if isinstance(model, (nn.DataParallel, nn.parallel.DistributedDataParallel)):
        model = model.module
    converted = convert_to_resdet(obj, source)
    report = LoadReport(source_format=converted.source_format)
    what = f"{source} ({converted.source_format})"

    model_sd = model.state_dict()
    new_sd: dict[str, torch.Tensor] = {}
    outside = 0
    for name, tensor in converted.tensors.items():
        if source_prefix:
            if not name.startswith(source_prefix):
                outside += 1
                continue
            key = name[len(source_prefix):]
        else:
            key = name
        if key not in model_sd:
            report.unexpected.append(name)
            continue
        if _shape(model_sd[key]) != _shape(tensor):
            if strict_shapes:
                src = converted.source_names.get(name, name)
                alias = f" (resdet name '{key}')" if src != key else ""
                raise UserError(
                    f"{source}: weight '{src}'{alias} has shape {_shape(tensor)} but the model"
                    f"{' ' + arch if arch else ''} expects {_shape(model_sd[key])}; build the "
                    "architecture and options the weights were made for (or skip such keys with "
                    "strict_shapes=False)")
            report.mismatched.append(key)
            continue
        new_sd[key] = tensor
        report.matched.append(key)

    # Caffe2 folded BN into scale/bias: running stats become the identity (Detectron2's rule)
    for key in model_sd:
        for stat, fill in (("running_mean", 0.0), ("running_var", 1.0)):
            if key.endswith("." + stat) and key not in new_sd:
                owner = key[: -len(stat)]
                if owner + "weight" in new_sd:
                    new_sd[key] = torch.full_like(model_sd[key], fill)
                    report.filled.append(key)

    report.missing = [k for k in model_sd if k not in new_sd and k not in report.mismatched
                      and not k.endswith("num_batches_tracked")]
    if converted.tensors and not report.matched:
        sample_src = ", ".join(list(converted.tensors)[:3])
        sample_model = ", ".join(list(model_sd)[:3])
        raise UserError(f"no weight in {what} fits the model{' ' + arch if arch else ''} (its "
                        f"names, as resdet names: {sample_src}; the model's: {sample_model}); "
                        "check the architecture and the file")
    if strict and report.missing:
        raise UserError(f"{source} lacks {len(report.missing)} weights the model"
                        f"{' ' + arch if arch else ''} needs ({group_names(report.missing[:8])}"
                        f"{', ...' if len(report.missing) > 8 else ''}); check the architecture "
                        "name or pass complete weights")

    model.load_state_dict(new_sd, strict=False)
    _log_report(report, what, converted.ignored, outside, source_prefix)
    return report


def _log_report(report: LoadReport, what: str, ignored: list[str], outside: int,
                source_prefix: str) -> None:
    logger.info("Loaded weights from %s: %d matched, %d missing, %d unexpected", what,
                len(report.matched), len(report.missing), len(report.unexpected))
    logger.debug("Matched: %s", group_names(report.matched))
    if report.filled:
        logger.info("Set running_mean=0, running_var=1 for %d norm layers (the file holds folded "
                    "scale/bias only)", len(report.filled) // 2)
    if report.missing:
        logger.warning("Missing in the checkpoint (left as initialised): %s",
                       group_names(report.missing))
    heads = [n for n in report.unexpected if is_classifier_head(n)]
    others = [n for n in report.unexpected if not is_classifier_head(n)]
    if heads:
        logger.info("Unexpected classifier-head weights, ignored (the model has no such head): %s",
                    group_names(heads))
    if others:
        logger.warning("Unexpected weights not used by the model: %s", group_names(others))
    if report.mismatched:
        logger.warning("Skipped for shape mismatch: %s", group_names(report.mismatched))
    if outside:
        logger.info("%d weights outside '%s' not considered", outside, source_prefix)
    if ignored:
        logger.info("Ignored %d non-weight entries: %s", len(ignored), ", ".join(ignored[:10]))
