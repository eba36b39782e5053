"""``load_weights``: put weights from any supported layout into a resdet network."""

from __future__ import annotations

import logging
import re
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from resdet.checkpoint.files import read_weights_file, resolve_weights
from resdet.checkpoint.formats import ConvertedWeights, WeightsKind, convert_to_resdet
from resdet.errors import UserError

logger = logging.getLogger(__name__)

# classifier heads a backbone has no place for: torchvision/resdet "fc", MSRA "fc1000" (renamed
# to fc), VGG's fc6/fc7/fc8
_HEAD = re.compile(r"^(fc|fc1000|fc6|fc7|fc8)\.")


def is_classifier_head(name: str) -> bool:
    """True for classifier-head weights (``fc.*``, ``fc6/7/8.*``), which a backbone ignores."""
    return bool(_HEAD.match(name))


# layers whose output size is the class count: a classifier (resdet/torchvision "fc", VGG "fc8",
# timm "head.fc") and a detector's box or mask predictor (Detectron2's and torchvision's names)
_CLASS_COUNT_LAYER = re.compile(
    r"(^|\.)(fc|fc8|fc1000|cls_score|bbox_pred|mask_fcn_logits|mask_head\.predictor)"
    r"\.(weight|bias)$")

PURPOSES = ("finetune", "evaluate")


def is_class_count_mismatch(name: str, file_shape: tuple, model_shape: tuple) -> bool:
    """True when ``name`` is a classifier or box/mask predictor layer whose shapes differ only
    in the first dimension: the same network trained for another number of classes."""
    return (bool(_CLASS_COUNT_LAYER.search(name)) and len(file_shape) == len(model_shape)
            and len(file_shape) > 0 and tuple(file_shape[1:]) == tuple(model_shape[1:])
            and file_shape[0] != model_shape[0])


def _first(names: list[str], n: int = 3) -> str:
    return ", ".join(f"'{k}'" for k in names[:n]) + (", ..." if len(names) > n else "")


@dataclass
class LoadReport:
    """What :func:`load_weights` (or a detection adapter's own matching) did.

    Attributes:
        matched: model keys that received a checkpoint tensor.
        missing: model keys the checkpoint lacks (left as initialised; ``num_batches_tracked``
            is not counted).
        unexpected: checkpoint keys (resdet names) the model has no place for.
        mismatched: model keys the file holds with another shape (not loaded).
        mismatched_shapes: for each mismatched key, (shape in the file, shape in the model).
        filled: BatchNorm running stats set to mean 0 / var 1 because the checkpoint holds only
            the folded scale and bias (MSRA/Caffe2 files; Detectron2 does the same).
        source_format: the layout that was detected (a label; decide on ``kind``).
        kind: what the file is (:class:`~resdet.checkpoint.formats.WeightsKind`), None when the
            report was built from two state dicts.
        entry: the file's entry that held the weights (None: the whole file).
    """

    matched: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    mismatched: list[str] = field(default_factory=list)
    filled: list[str] = field(default_factory=list)
    source_format: str = ""
    mismatched_shapes: dict[str, tuple[tuple, tuple]] = field(default_factory=dict)
    kind: WeightsKind | None = None
    entry: str | None = None

    @classmethod
    def compare(cls, model_state: Mapping[str, torch.Tensor],
                file_state: Mapping[str, Any]) -> LoadReport:
        """Match a file's state dict against a model's by exact name and shape.

        For callers that load whole models themselves (the detection adapters): the report's
        :meth:`check` then says whether the weights fit.

        Args:
            model_state: ``model.state_dict()``.
            file_state: name -> tensor (or array) from the file, in the model's names.
        """
        report = cls()
        for key, value in file_state.items():
            if key not in model_state:
                report.unexpected.append(key)
                continue
            have, want = tuple(getattr(value, "shape", ())), _shape(model_state[key])
            if have != want:
                report.mismatched.append(key)
                report.mismatched_shapes[key] = (have, want)
            else:
                report.matched.append(key)
        report.missing = [k for k in model_state if k not in file_state
                          and not k.endswith("num_batches_tracked")]
        return report

    def class_count_mismatches(self) -> list[str]:
        """Mismatched keys that are a classifier or box predictor for another class count."""
        return [k for k in self.mismatched
                if is_class_count_mismatch(k, *self.mismatched_shapes.get(k, ((), ())))]

    def _shapes(self, keys: list[str]) -> str:
        parts = []
        for k in keys[:3]:
            have, want = self.mismatched_shapes.get(k, ((), ()))
            parts.append(f"'{k}' {have} in the file, {want} in the model")
        return "; ".join(parts) + ("; ..." if len(keys) > 3 else "")

    def check(self, purpose: str, *, source: str = "the weights", model: str = "the model"
              ) -> None:
        """Refuse weights that do not fit, for what they are loaded for.

        - ``"evaluate"`` (``--eval-only``, ``tools/predict.py``): nothing will train the layers
          the file does not fill, so any missing or mismatched weight is an error.
        - ``"finetune"``: a classifier or box predictor for another class count is expected
          (a warning: those layers start from scratch); any other shape mismatch is an error;
          missing weights stay a warning (a new head on pretrained features).

        Args:
            purpose: ``"evaluate"`` or ``"finetune"``.
            source: how the message names the weights (the file).
            model: how the message names the model (``"the model resnet50"``).

        Raises:
            UserError: one sentence with the matched/missing/mismatched counts and the first
                keys of each, and what to do.
            ValueError: an unknown ``purpose``.
        """
        if purpose not in PURPOSES:
            raise ValueError(f"purpose must be one of {PURPOSES}, got {purpose!r}")
        counts = (f"{len(self.matched)} weights matched, {len(self.missing)} missing"
                  + (f" ({_first(self.missing)})" if self.missing else "")
                  + f", {len(self.mismatched)} with another shape"
                  + (f" ({self._shapes(self.mismatched)})" if self.mismatched else "")
                  + f", {len(self.unexpected)} in the file unused")
        if purpose == "evaluate":
            if self.missing or self.mismatched:
                raise UserError(
                    f"{source} does not fit {model}: {counts}; nothing trains the missing or "
                    "mismatched layers when evaluating, so the results would come from a partly "
                    "random network: pass the weights trained for this model (its run's "
                    "model_final.pth) with the config of that run")
            return
        others = [k for k in self.mismatched if k not in self.class_count_mismatches()]
        if others:
            raise UserError(
                f"{source} does not fit {model}: {counts}; {len(others)} of the mismatched "
                "weights are not a classifier or box predictor for another class count, so the "
                "file was made for another architecture: build the architecture and options the "
                "weights were made for")

    def warn_class_count(self, source: str) -> None:
        """Log a warning for class-count mismatches, which start from scratch."""
        heads = self.class_count_mismatches()
        if heads:
            sizes = sorted({(self.mismatched_shapes[k][0][0], self.mismatched_shapes[k][1][0])
                            for k in heads})
            logger.warning("Not loaded from %s, its class count differs (%s in the file, %s in "
                           "the model; these layers start from scratch): %s", source,
                           "/".join(str(a) for a, _ in sizes), "/".join(str(b) for _, b in sizes),
                           group_names(heads))


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


def check_fit(
    model_state: Mapping[str, torch.Tensor],
    converted: ConvertedWeights,
    *,
    source: str,
    arch: str | None = None,
    purpose: str = "finetune",
    strict_shapes: bool = True,
    strict: bool = False,
    source_prefix: str = "",
) -> LoadReport:
    """Decide whether converted weights fit a network, without loading them.

    What :func:`load_weights` decides before it loads, for callers that load the tensors their
    own way (the Detectron2 engine's checkpointer matches names by suffix), so that both detection
    engines accept and refuse the same files with the same sentence.

    Args:
        model_state: the network's ``state_dict()``, in resdet's names (a backbone, a res5
            stage, a VGG fc6/fc7 head).
        converted: the file's weights in resdet's names (:class:`ConvertedWeights`, e.g. a
            :meth:`~ConvertedWeights.subset` for one part of a detector).
        source: how messages name the weights (the file).
        arch, purpose, strict_shapes, strict, source_prefix: as for :func:`load_weights`.

    Returns:
        A :class:`LoadReport` (``filled``: the running statistics to set to mean 0 / var 1).

    Raises:
        UserError: nothing matching at all, weights that do not fit for ``purpose`` (counts and
            first keys), a shape mismatch outside a classifier for another class count (with
            ``strict_shapes``), or (with ``strict``) missing keys.
        ValueError: an unknown ``purpose``.
    """
    if purpose not in PURPOSES:
        raise ValueError(f"purpose must be one of {PURPOSES}, got {purpose!r}")
    what = f"{source} ({converted.source_format})"
    model_name = f"the model {arch}" if arch else "the model"
    # The file's tensors under source_prefix, in the model's names; the rest is outside.
    file_sd = {name[len(source_prefix):]: tensor for name, tensor in converted.tensors.items()
               if name.startswith(source_prefix)}
    report = LoadReport.compare(model_state, file_sd)
    report.source_format, report.kind, report.entry = (converted.source_format, converted.kind,
                                                       converted.entry)
    report.unexpected = [source_prefix + key for key in report.unexpected]  # the file's names
    matched = set(report.matched)

    # Caffe2 folded BN into scale/bias: running stats become the identity (Detectron2's rule)
    for key in model_state:
        for stat in ("running_mean", "running_var"):
            if key.endswith("." + stat) and key not in matched:
                owner = key[: -len(stat)]
                if owner + "weight" in matched:
                    report.filled.append(key)

    report.missing = [k for k in report.missing if k not in report.filled]
    if converted.tensors and not report.matched:
        sample_src = ", ".join(list(converted.tensors)[:3])
        sample_model = ", ".join(list(model_state)[:3])
        raise UserError(f"no weight in {what} fits the model{' ' + arch if arch else ''} (its "
                        f"names, as resdet names: {sample_src}; the model's: {sample_model}); "
                        "check the architecture and the file")
    if purpose == "evaluate":
        report.check("evaluate", source=source, model=model_name)
    elif strict_shapes:
        others = [k for k in report.mismatched if k not in report.class_count_mismatches()]
        if others:
            key = others[0]
            name = source_prefix + key
            src = converted.source_names.get(name, name)
            alias = f" (resdet name '{key}')" if src != key else ""
            have, want = report.mismatched_shapes[key]
            more = f" (and {len(others) - 1} more)" if len(others) > 1 else ""
            raise UserError(
                f"{source}: weight '{src}'{alias} has shape {have} but {model_name} expects "
                f"{want}{more}; build the architecture and options the weights were made for")
    if strict and report.missing:
        raise UserError(f"{source} lacks {len(report.missing)} weights {model_name} needs "
                        f"({group_names(report.missing[:8])}"
                        f"{', ...' if len(report.missing) > 8 else ''}); check the architecture "
                        "name or pass complete weights")
    return report


def load_weights(
    model: nn.Module,
    weights: str | Path | dict[str, Any] | ConvertedWeights,
    *,
    arch: str | None = None,
    purpose: str = "finetune",
    strict_shapes: bool = True,
    strict: bool = False,
    sha256: str | None = None,
    source_prefix: str = "",
    source: str | None = None,
    entry: str | None = None,
    prefix: str | None = None,
) -> LoadReport:
    """Load weights of any supported layout into a resdet network.

    Layouts: torchvision/timm ResNet and torchvision VGG state dicts, Detectron2 checkpoints
    (``.pth`` and ``.pkl``, with ``backbone.``/``backbone.bottom_up.``/``roi_heads.res5.``
    prefixes), MSRA/Caffe2 ``.pkl`` blobs, resdet checkpoints (``module.`` prefixes too), and the
    training checkpoints of torchvision's reference scripts, timm, Lightning, Detectron2,
    MMPretrain/MMDetection, MoCo, DINO and SwAV (:mod:`resdet.checkpoint.entries`).
    ``.pkl`` files go through the restricted unpickler, others through
    ``torch.load(weights_only=True)``. Classifier-head weights (``fc``, ``fc1000``, ``fc6-8``) that
    a backbone has no place for are reported as unexpected and otherwise ignored. BatchNorm layers
    given only scale and bias get running mean 0 and variance 1 (Detectron2's rule for MSRA files).

    Args:
        model: a network from :mod:`resdet.modeling` (classifier, backbone or stage).
        weights: a path, ``torchvision://NAME`` or URL (see :func:`resolve_weights`), an
            already loaded state dict / checkpoint dict, or :class:`ConvertedWeights` (used as
            they are: nothing is converted twice).
        arch: the architecture name the caller built, used in messages.
        purpose: ``"finetune"`` (training follows: a classifier for another class count is a
            warning and starts from scratch) or ``"evaluate"`` (nothing will train the model:
            any missing or mismatched weight is an error); see :meth:`LoadReport.check`.
        strict_shapes: with ``"finetune"``, a shape mismatch outside the classifier is an error
            (True) or the key is skipped with a warning (False).
        strict: missing keys are an error instead of a warning.
        sha256: pin the file's sha256 (refused on mismatch).
        source_prefix: load only checkpoint keys under this resdet prefix, with it removed, e.g.
            ``"res5."`` for a res5 head built with ``build_stage``.
        source: how messages name already loaded ``weights`` (e.g. the file they came from).
        entry: the file's entry holding the weights, instead of its trainer's default
            (``"model"``, ``"state_dict_ema"``, ``"student"``...).
        prefix: the network to take from a file holding several (``"encoder_k."``).

    Returns:
        A :class:`LoadReport`.

    Raises:
        UserError: unreadable/unsafe file, an unknown checkpoint layout, weights that do not fit
            for ``purpose`` (counts and first keys), nothing matching at all, or (with
            ``strict``) missing keys.
    """
    if purpose not in PURPOSES:
        raise ValueError(f"purpose must be one of {PURPOSES}, got {purpose!r}")
    if isinstance(weights, ConvertedWeights):
        # the caller converted (and described) the file once, maybe to load it in parts
        source, converted = source or "<converted weights>", weights
    else:
        if isinstance(weights, (str, Path)):
            source = source or str(weights)
            obj = read_weights_file(resolve_weights(weights, sha256=sha256))
        else:
            source, obj = source or "<state dict>", weights
        converted = convert_to_resdet(obj, source, entry=entry, prefix=prefix)
        logger.info("Read %s", converted.describe(source))
    if isinstance(model, (nn.DataParallel, nn.parallel.DistributedDataParallel)):
        model = model.module
    model_sd = model.state_dict()
    report = check_fit(model_sd, converted, source=source, arch=arch, purpose=purpose,
                       strict_shapes=strict_shapes, strict=strict, source_prefix=source_prefix)
    new_sd: dict[str, torch.Tensor] = {
        key: converted.tensors[source_prefix + key] for key in report.matched}
    for key in report.filled:  # Caffe2's folded BN: running stats become the identity
        new_sd[key] = torch.full_like(model_sd[key], 0.0 if key.endswith("mean") else 1.0)
    outside = sum(1 for name in converted.tensors if not name.startswith(source_prefix))
    what = f"{source} ({converted.source_format})"

    model.load_state_dict(new_sd, strict=False)
    _log_report(report, what, converted.ignored, outside, source_prefix)
    report.warn_class_count(source)
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
    others = [k for k in report.mismatched if k not in report.class_count_mismatches()]
    if others:
        logger.warning("Skipped for shape mismatch: %s", group_names(others))
    if outside:
        logger.info("%d weights outside '%s' not considered", outside, source_prefix)
    if ignored:
        logger.info("Ignored %d non-weight entries: %s", len(ignored), ", ".join(ignored[:10]))
