"""MODEL.WEIGHTS for Detectron2 models built from resdet parts, in every format resdet reads.

:class:`ResdetCheckpointer` is Detectron2's ``DetectionCheckpointer`` with three changes:

- Weight names: ``torchvision://resnet101`` and URLs are resolved by
  :func:`resdet.checkpoint.resolve_weights`.
- Files are read with resdet's safe readers (``.pkl`` through a restricted unpickler that runs no
  code, ``.pth`` with ``torch.load(weights_only=True)``), then sorted: Detectron2 model-zoo
  ``.pkl`` files and full Detectron2 checkpoints load as Detectron2 loads them; MSRA/Caffe2 blobs go
  through Detectron2's own Caffe2 renaming; anything else (resdet pretraining outputs, torchvision
  and timm files) is renamed by :func:`resdet.checkpoint.convert_to_resdet` and matched by
  name suffix, so ImageNet weights reach ``backbone.*``, ``roi_heads.res5.*`` and the VGG fc6/fc7.
  Weights that do not fit are refused as the torchvision engine refuses them, by the same shared
  checks (:func:`resdet.checkpoint.check_fit`, :meth:`resdet.checkpoint.LoadReport.check`).
- FrozenBN layers get running mean 0 and variance 1 when a file has only the affine part
  (MSRA's models), as Detectron2's FrozenBatchNorm2d does, so both give identical outputs.

Saved checkpoints also carry the config (``"cfg"``: YAML text), as DESIGN.md's outputs ask.
"""

from __future__ import annotations

import logging
import os
from typing import TYPE_CHECKING, Any, Dict, Optional

import torch
from detectron2.checkpoint import DetectionCheckpointer
from detectron2.checkpoint.c2_model_loading import align_and_update_state_dicts
from detectron2.layers import FrozenBatchNorm2d as D2FrozenBatchNorm2d

from resdet.checkpoint import LoadReport, check_fit, resolve_weights
from resdet.checkpoint.atomic import atomic_torch_save, atomic_write_bytes
from resdet.detection.input_settings import torchvision_settings_advice
from resdet.detection.weights_file import (
    RANDOM_HEADS,
    WeightsFile,
    backbone_weights,
    fc6_fc7_weights,
    read_detection_weights,
)
from resdet.errors import UserError
from resdet.modeling import FrozenBatchNorm2d, resolve_arch

if TYPE_CHECKING:
    from fvcore.common.config import CfgNode

logger = logging.getLogger(__name__)

class ResdetCheckpointer(DetectionCheckpointer):
    """Detectron2's checkpointer, reading resdet, torchvision, timm, MSRA and Detectron2 files.

    Args:
        model: the model (or DDP wrapper) to load into and save.
        save_dir: where checkpoints and ``last_checkpoint`` go.
        cfg: the config, saved as YAML text in every checkpoint (optional).
        purpose: ``"finetune"`` (training starts from the weights: a detector whose mismatches
            are not all a box predictor for another class count is an error) or ``"evaluate"``
            (``--eval-only``: weights that do not fill the whole detector are an error with
            matched/missing/mismatched counts, :meth:`resdet.checkpoint.LoadReport.check`).
            Backbone weights made for another network are an error either way, with the
            torchvision engine's sentence (:func:`resdet.checkpoint.check_fit`).
        **checkpointables: passed to Detectron2's checkpointer (``trainer=``, ``optimizer=``...).
    """

    def __init__(self, model, save_dir: str = "", *, cfg: Optional[CfgNode] = None,
                 purpose: str = "finetune", **checkpointables):
        super().__init__(model, save_dir, **checkpointables)
        self._cfg = cfg
        self._purpose = purpose
        self._source, self._is_detector = "MODEL.WEIGHTS", True
        self._given: Dict[str, str] = {}  # resolved local file -> the name the user gave
        self._cfg_text: Optional[str] = cfg.dump() if cfg is not None else None

    def load(self, path: str, *args, **kwargs):
        """Load ``path`` as Detectron2's checkpointer does; ``torchvision://NAME`` and URLs are
        resolved to a local file first.

        Raises:
            UserError: ``path`` is a local file that does not exist.
        """
        if path and path.startswith(("torchvision://", "http://", "https://")):
            given, path = path, resolve_weights(path)
            self._given[path] = given
        elif path and not os.path.isfile(path.split("?")[0]):
            raise UserError(f"MODEL.WEIGHTS file {path} does not exist; give an existing file or "
                            "a name such as torchvision://resnet101.")
        return super().load(path, *args, **kwargs)

    def save(self, name: str, **kwargs) -> None:
        """fvcore's save, but atomic: a temporary file renamed into place, then the pointer.

        A job killed mid-write leaves ``last_checkpoint`` naming the previous, complete file.
        """
        if not self.save_dir or not self.save_to_disk:
            return
        if self._cfg_text is not None:
            kwargs.setdefault("cfg", self._cfg_text)
        data = {"model": self.model.state_dict()}
        data.update({key: obj.state_dict() for key, obj in self.checkpointables.items()})
        data.update(kwargs)
        basename = f"{name}.pth"
        self.logger.info("Saving checkpoint to %s", os.path.join(self.save_dir, basename))
        atomic_torch_save(data, os.path.join(self.save_dir, basename))
        self.tag_last_checkpoint(basename)

    def tag_last_checkpoint(self, last_filename_basename: str) -> None:
        """Write ``last_checkpoint`` (the name of the newest checkpoint) atomically."""
        atomic_write_bytes(os.path.join(self.save_dir, "last_checkpoint"),
                           last_filename_basename.encode())

    def _load_file(self, filename: str) -> Dict[str, Any]:
        """Read ``filename`` once and hand Detectron2 what it is (see
        :mod:`resdet.detection.weights_file`): whole detectors of either engine by exact name,
        model-zoo and Caffe2 files as Detectron2 loads them, anything else by name suffix."""
        weights = read_detection_weights(filename)
        self._source, self._is_detector = self._given.get(filename, filename), weights.is_detector
        self._format = "" if weights.is_detector else weights.source_format
        if not weights.is_detector:
            self._check_backbone_fit(weights)
        if weights.kind == "detectron2_model_zoo":
            logger.info("Reading a file from '%s'", weights.data["__author__"])
            return weights.data
        if weights.kind == "caffe2":
            # MSRA/Caffe2 names (conv1_w, res2_0_branch2a_w): Detectron2's own renaming.
            blobs = weights.data.get("blobs", weights.data)
            blobs = {k: v for k, v in blobs.items() if not k.endswith("_momentum")}
            return {"model": blobs, "__author__": "Caffe2", "matching_heuristics": True}
        if weights.is_detector:
            fpn = any(k.startswith("backbone.bottom_up.") for k in self.model.state_dict())
            data = {k: v for k, v in weights.data.items() if k != "model"} \
                if "model" in weights.data else {}
            data["model"] = weights.detectron2_state(fpn=fpn)
            if weights.kind == "torchvision_detector":
                logger.info("Read %s as %s (renamed to Detectron2's names)", filename,
                            weights.source_format)
            return data
        converted = weights.converted()
        logger.info("Read %s as %s (%d tensors)", filename, converted.source_format,
                    len(converted.tensors))
        advice = (torchvision_settings_advice(self._cfg, converted.source_format, filename)
                  if self._cfg is not None else "")
        if advice:
            logger.warning("%s.", advice)
        tensors = {k: v for k, v in converted.tensors.items()
                   if not k.endswith("num_batches_tracked")}
        return {"model": tensors, "__author__": "resdet", "matching_heuristics": True}

    def _load_model(self, checkpoint: Dict[str, Any]):
        if checkpoint.get("matching_heuristics", False):
            self._convert_ndarray_to_tensor(checkpoint["model"])
            checkpoint["model"] = align_and_update_state_dicts(
                self.model.state_dict(),
                checkpoint["model"],
                c2_conversion=checkpoint.get("__author__", None) == "Caffe2",
            )
            checkpoint["matching_heuristics"] = False
            if not checkpoint["model"]:
                raise UserError("MODEL.WEIGHTS matched no weight of the model; check that the "
                                "file is for MODEL.RESDET.ARCH.")
        _fill_frozen_bn_stats(self.model, checkpoint["model"])
        # issue 15: as on the torchvision engine, a detector that does not fit is refused
        # (evaluating: anything missing or mismatched; fine-tuning: any mismatch but a box
        # predictor for another class count); backbone files were checked in _load_file.
        if self._is_detector:
            LoadReport.compare(self.model.state_dict(), checkpoint["model"]).check(
                self._purpose, source=self._source, model="the detector")
        elif self._purpose == "evaluate":
            logger.warning(RANDOM_HEADS, self._source, self._format)
        return super()._load_model(checkpoint)

    def _check_backbone_fit(self, weights: WeightsFile) -> None:
        """Refuse backbone weights made for another network, exactly as the torchvision engine
        does (:func:`resdet.tvdet.weights.load_detector_weights`): the shared
        :func:`resdet.checkpoint.check_fit` on the same parts in resdet's names, which this
        translates from Detectron2's modules: the backbone network (``backbone.bottom_up`` under
        FPN), the C4 head's ``roi_heads.res5`` and the VGG-16 ``roi_heads.box_head.fc6/fc7``.

        Raises:
            UserError: one sentence naming the file, the first weight of another shape and the
                network (:func:`resdet.checkpoint.check_fit`), or no weight fitting at all.
        """
        backbone = getattr(self.model, "backbone", None)
        net = getattr(backbone, "bottom_up", backbone)
        if net is None:
            return
        converted, source = weights.converted(), self._source
        cfg = self._cfg
        arch = resolve_arch(cfg) if cfg is not None and "RESDET" in cfg.MODEL else None
        check_fit(net.state_dict(), backbone_weights(converted, net), source=source, arch=arch)
        heads = getattr(self.model, "roi_heads", None)
        box_head = getattr(heads, "box_head", None)
        if isinstance(getattr(heads, "res5", None), torch.nn.Module):
            check_fit(heads.res5.state_dict(), converted, source=source, source_prefix="res5.",
                      arch="res5 box head")
        elif hasattr(box_head, "fc6"):
            fc = fc6_fc7_weights(converted)
            if fc.tensors:
                check_fit(box_head.state_dict(), fc, source=source, arch="fc6/fc7 box head")


def _fill_frozen_bn_stats(model: torch.nn.Module, state: Dict[str, Any]) -> None:
    """Running mean 0 / variance 1 for FrozenBN layers whose file has only weight and bias.

    Detectron2's FrozenBatchNorm2d does the same for files without running statistics (MSRA's
    models folded them into the affine part); resdet's layer does not, so it is done here.
    """
    for name, module in model.named_modules():
        if not isinstance(module, (FrozenBatchNorm2d, D2FrozenBatchNorm2d)):
            continue
        prefix = name + "."
        if prefix + "weight" not in state:
            continue
        if prefix + "running_mean" not in state:
            state[prefix + "running_mean"] = torch.zeros_like(module.running_mean)
        if prefix + "running_var" not in state:
            state[prefix + "running_var"] = torch.ones_like(module.running_var)
