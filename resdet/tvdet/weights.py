"""``MODEL.WEIGHTS`` for the torchvision engine: a whole detector of this engine or of
Detectron2, or backbone weights in any layout :func:`resdet.checkpoint.load_weights` reads
(what a file is: :mod:`resdet.detection.weights_file`, shared with the Detectron2 engine).

A detector trained here stores its backbone under ``backbone.body.`` (resdet's names) and the C4
res5 head under ``roi_heads.box_head.res5.``, so :func:`resdet.checkpoint.load_weights` finds
both in its ``model_final.pth`` and the Detectron2 engine can start from it (and vice versa).
"""

from __future__ import annotations

import logging
from typing import Any, Dict, Union

import torch
from torch import nn

from resdet.checkpoint import ConvertedWeights, LoadReport, load_weights
from resdet.checkpoint.loader import group_names
from resdet.detection.input_settings import torchvision_settings_advice
from resdet.detection.weights_file import (
    RANDOM_HEADS,
    WeightsFile,
    backbone_weights,
    fc6_fc7_weights,
    read_detection_weights,
)

logger = logging.getLogger(__name__)


def is_detector_checkpoint(weights: str) -> bool:
    """True when ``weights`` is a whole detector (``model_final.pth`` of this engine or of the
    Detectron2 engine)."""
    return read_detection_weights(weights).is_detector


def load_detector_weights(model: nn.Module, weights: Union[str, WeightsFile],
                          cfg: Any = None, purpose: str = "finetune") -> None:
    """Load ``weights`` into a :class:`~resdet.tvdet.model.ResdetFasterRCNN`.

    A whole detector (``model_final.pth`` of this engine, or of Detectron2 with the same
    layout) fills the whole detector. When fine-tuning, a box predictor for another
    ``NUM_CLASSES`` is skipped with a warning, as Detectron2 does; under ``purpose="evaluate"``
    (``--eval-only``, ``tools/predict.py``) weights that do not fill the whole detector are an
    error with matched/missing/mismatched counts (:meth:`resdet.checkpoint.LoadReport.check`).
    Anything else is backbone weights: they go to the backbone, the C4 res5 head (``res5.*``)
    and the VGG-16 fc6/fc7 head, renamed from their layout by :mod:`resdet.checkpoint` (under
    ``"evaluate"`` with a warning that the heads are random).

    Args:
        model: the detector.
        weights: a file or name, or a :class:`~resdet.detection.weights_file.WeightsFile` already
            read (so that nothing is read or converted twice).
        cfg: with it, backbone weights from torchvision whose input settings the config lacks get
            a warning naming the keys
            (:func:`resdet.detection.input_settings.torchvision_settings_advice`).
        purpose: ``"finetune"`` (training starts from them) or ``"evaluate"``.

    Raises:
        UserError: unreadable file, no weight fits (from :func:`load_weights`), or, under
            ``"evaluate"``, a detector checkpoint that does not fill the whole detector.
    """
    file = weights if isinstance(weights, WeightsFile) else read_detection_weights(weights)
    weights = file.name
    if file.is_detector:
        sd = file.torchvision_state()
        report = LoadReport.compare(model.state_dict(), sd)
        report.check(purpose, source=weights, model="the detector")
        report.warn_class_count(weights)
        if report.unexpected:
            logger.warning("Weights of %s the model has no place for: %s", weights,
                           group_names(report.unexpected))
        result = model.load_state_dict({k: sd[k] for k in report.matched}, strict=False)
        if result.missing_keys:
            logger.warning("Missing in %s (left as initialised): %s", weights,
                           group_names(result.missing_keys))
        logger.info("Loaded detector weights from %s (%d tensors).", weights, len(report.matched))
        return
    converted = file.converted()
    logger.info("Read %s", converted.describe(weights))
    # Each part gets the converted file itself (a subset), named as the user gave it, so every
    # message is the Detectron2 engine's (resdet.d2.checkpoint): the file's own key names, its
    # layout label, the file name. Advice waits until the file fits: a refused file is one
    # sentence, as there.
    body = backbone_weights(converted, model.backbone.body)
    from resdet.modeling import resolve_arch  # the message names the file, then the network

    load_weights(model.backbone.body, _placed_counters(body, model.backbone.body), source=weights,
                 arch=resolve_arch(cfg) if cfg else None)
    head = model.roi_heads.box_head
    if hasattr(head, "res5"):
        load_weights(head.res5, _placed_counters(converted, head.res5, "res5."), source=weights,
                     source_prefix="res5.", arch="res5 box head")
    elif hasattr(head, "fc6"):
        fc = fc6_fc7_weights(converted)
        if fc.tensors:
            load_weights(head, fc, source=weights, arch="fc6/fc7 box head")
        else:
            logger.warning("%s has no fc6/fc7 weights; the VGG-16 box head starts random.",
                           weights)
    if purpose == "evaluate":
        logger.warning(RANDOM_HEADS, weights, converted.source_format)
    advice = torchvision_settings_advice(cfg, converted.source_format, weights) if cfg else ""
    if advice:
        logger.warning("%s.", advice)


def _placed_counters(converted: ConvertedWeights, part: nn.Module,
                     prefix: str = "") -> ConvertedWeights:
    """``converted`` without the BatchNorm step counters (``num_batches_tracked``) under
    ``prefix`` that ``part`` has no place for (FrozenBN: the C4 detectors).

    A counter is no weight: Detectron2's adapter drops them before loading, so no "unexpected
    weights" warning for every torchvision or timm file. They never match, so whether the file
    fits, and the sentence when not, is what :func:`resdet.checkpoint.check_fit` decides on the
    whole file (as the Detectron2 engine checks it).
    """
    names = set(part.state_dict())
    return converted.subset(lambda k: not (k.endswith("num_batches_tracked")
                                           and k.startswith(prefix)
                                           and k[len(prefix):] not in names))


def backbone_state_dict(model: nn.Module) -> Dict[str, torch.Tensor]:
    """The detector's network weights under resdet's (= Detectron2's backbone) names.

    C4 detectors include their res5 head as ``res5.*`` and VGG-16 detectors their ``fc6``/``fc7``,
    so the result loads into ``resdet.modeling.build_backbone(..., out_features=("res5",))``
    (or the VGG-16 classifier without ``fc8``) with every key matched.
    """
    out = {k: v.detach().clone() for k, v in model.backbone.body.state_dict().items()}
    head = model.roi_heads.box_head
    if hasattr(head, "res5"):
        out.update({f"res5.{k}": v.detach().clone() for k, v in head.res5.state_dict().items()})
    elif hasattr(head, "fc6"):
        out.update({k: v.detach().clone() for k, v in head.state_dict().items()})
    return out
