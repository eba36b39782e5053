"""What a detection run's ``MODEL.WEIGHTS`` file is: one answer for both engine adapters.

The file is resolved (``torchvision://`` names and URLs), read once with resdet's safe readers and
sorted into a kind; each adapter then only translates that kind into its own loading:

=========================  ==================================================================
kind                       what it is
=========================  ==================================================================
``detectron2_detector``    a whole Detectron2 GeneralizedRCNN (``model_final.pth`` of the
                           Detectron2 engine; Detectron2 model-zoo detectors)
``torchvision_detector``   a whole detector of the torchvision engine (``model_final.pth``)
``detectron2_model_zoo``   a Detectron2 model-zoo ``.pkl`` of Detectron2 names that is not a
                           whole detector
``caffe2``                 MSRA/Caffe2 blobs (``conv1_w``, ``res2_0_branch2a_w``), the
                           paper's ImageNet models
``backbone``               anything else: a classifier or backbone in any layout
                           :func:`resdet.checkpoint.convert_to_resdet` reads (resdet, torchvision,
                           timm, other trainers' checkpoints)
=========================  ==================================================================
"""

from __future__ import annotations

import dataclasses
import os
import re
from dataclasses import dataclass, field
from typing import Any, Dict, Optional

import torch

from resdet.checkpoint import (
    ConvertedWeights,
    convert_to_resdet,
    read_weights_file,
    resolve_weights,
)
from resdet.checkpoint.formats import to_tensor
from resdet.detection.detector_names import (
    detectron2_to_tvdet,
    is_detectron2_detector,
    tvdet_to_detectron2,
)
from resdet.errors import UserError

DETECTOR_KINDS = ("detectron2_detector", "torchvision_detector")

# Evaluating backbone-only weights is allowed (a user may check a dataset or a pipeline), but the
# numbers measure random heads, and the log says so, on both engines (issue 15).
RANDOM_HEADS = ("%s holds %s backbone weights, not a trained detector: the RPN and box heads "
                "are random, so these results measure nothing; pass a model_final.pth written "
                "by tools/train_net.py (either engine) to evaluate a detector.")


# A VGG-16 classifier's fc6/fc7, or a Detectron2 VGG detector's roi_heads.box_head.fc6/fc7.
_FC6_FC7 = re.compile(r"^(?:.*\.)?((?:fc6|fc7)\.(?:weight|bias))$")


def fc6_fc7_weights(converted: ConvertedWeights) -> ConvertedWeights:
    """The file's fc6/fc7 weights under the names of the VGG-16 box head, for both engines.

    Args:
        converted: backbone or classifier weights in resdet's names
            (:meth:`WeightsFile.converted`).

    Returns:
        The ``fc6.weight``, ``fc6.bias``, ``fc7.weight`` and ``fc7.bias`` the file holds (a
        VGG-16 classifier's, or a Detectron2 VGG detector's ``roi_heads.box_head.fc6/fc7``),
        with each one's name in the file kept for messages; no tensors when it holds none.
    """
    tensors, names = {}, {}
    for key, value in converted.tensors.items():
        m = _FC6_FC7.match(key)
        if m:
            tensors[m.group(1)] = value
            names[m.group(1)] = converted.source_names.get(key, key)
    return dataclasses.replace(converted, tensors=tensors, source_names=names)


def backbone_weights(converted: ConvertedWeights, network: torch.nn.Module) -> ConvertedWeights:
    """The part of a backbone or classifier file that the detector's backbone network takes, for
    both engines.

    Args:
        converted: the file in resdet's names (:meth:`WeightsFile.converted`).
        network: the backbone network (its children named ``stem``, ``res2`` ...).

    Returns:
        All of ``converted`` when ``network`` has ``res5`` (FPN); otherwise (C4, VGG-16) all but
        ``res5.*``, ``fc6.*`` and ``fc7.*``, which belong to the RoI box head.
    """
    if "res5" in dict(network.named_children()):
        return converted
    return converted.subset(lambda k: not k.startswith(("res5.", "fc6.", "fc7.")))


def _strip_module(sd: Dict[Any, Any]) -> Dict[Any, Any]:
    return {k[len("module."):] if isinstance(k, str) and k.startswith("module.") else k: v
            for k, v in sd.items()}


def _is_tvdet_detector(sd: Dict[Any, Any]) -> bool:
    return any(str(k).startswith("rpn.head.") for k in sd) and any(
        str(k).startswith("roi_heads.box_predictor.") for k in sd)


def _is_caffe2(data: Dict[Any, Any]) -> bool:
    blobs = data.get("blobs", data)
    return isinstance(blobs, dict) and any(
        isinstance(k, str) and k.endswith("_w") and "." not in k for k in blobs)


@dataclass
class WeightsFile:
    """A weights file, read once, and what it is.

    Attributes:
        name: the name the user gave (for messages).
        path: the local file it resolved to.
        kind: one of the module docstring's kinds.
        data: the file's content as read (a dict).
    """

    name: str
    path: str
    kind: str
    data: Dict[Any, Any]
    _converted: Optional[ConvertedWeights] = field(default=None, repr=False)

    @property
    def is_detector(self) -> bool:
        """True for a whole detector of either engine."""
        return self.kind in DETECTOR_KINDS

    @property
    def source_format(self) -> str:
        """A human-readable label of the layout (for messages and input-settings advice)."""
        if self.kind == "backbone":
            return self.converted().source_format
        return {"detectron2_detector": "Detectron2 detector",
                "torchvision_detector": "torchvision-engine detector",
                "detectron2_model_zoo": "Detectron2 model zoo",
                "caffe2": "MSRA/Caffe2 blobs"}[self.kind]

    def model_state(self) -> Dict[str, Any]:
        """The state dict of a whole detector, in its own engine's names (``module.`` removed)."""
        sd = self.data.get("model", self.data)
        return _strip_module(sd)

    def detectron2_state(self, *, fpn: bool) -> Dict[str, torch.Tensor]:
        """A whole detector's tensors in Detectron2's names (``fpn``: its backbone is under
        ``backbone.bottom_up``)."""
        sd = self._tensors(self.model_state())
        if self.kind == "torchvision_detector":
            return tvdet_to_detectron2(sd, fpn=fpn)
        if self.kind == "detectron2_detector":
            return sd
        raise ValueError(f"{self.name} is not a whole detector ({self.kind})")

    def torchvision_state(self) -> Dict[str, torch.Tensor]:
        """A whole detector's tensors in the torchvision engine's names."""
        sd = self._tensors(self.model_state())
        if self.kind == "detectron2_detector":
            return detectron2_to_tvdet(sd)
        if self.kind == "torchvision_detector":
            return sd
        raise ValueError(f"{self.name} is not a whole detector ({self.kind})")

    def converted(self) -> ConvertedWeights:
        """Backbone/classifier weights renamed to resdet's names (computed once)."""
        if self._converted is None:
            self._converted = convert_to_resdet(self.data, self.name)
        return self._converted

    @staticmethod
    def _tensors(sd: Dict[Any, Any]) -> Dict[str, torch.Tensor]:
        out = {}
        for k, v in sd.items():
            t = to_tensor(v)
            if t is not None:
                out[k] = t
        return out


def read_detection_weights(weights: str) -> WeightsFile:
    """Resolve, read and classify ``MODEL.WEIGHTS`` (see the module docstring).

    Args:
        weights: a file, a URL or a ``torchvision://`` name.

    Raises:
        UserError: the file does not exist, cannot be read, or holds no dict of weights.
    """
    if not str(weights).startswith(("torchvision://", "http://", "https://")) and \
            not os.path.isfile(str(weights)):
        raise UserError(f"MODEL.WEIGHTS file {weights} does not exist; give an existing file or "
                        "a name such as torchvision://resnet101.")
    path = resolve_weights(weights)
    data = read_weights_file(path)
    if not isinstance(data, dict):
        raise UserError(f"{weights} holds a {type(data).__name__}, not a dict of weights; "
                        "pass a checkpoint or state-dict file.")
    model = data.get("model") if isinstance(data.get("model"), dict) else data
    sd = _strip_module(model)
    if _is_tvdet_detector(sd):
        kind = "torchvision_detector"
    elif is_detectron2_detector(sd):
        kind = "detectron2_detector"
    elif str(path).endswith(".pkl") and "model" in data and "__author__" in data:
        kind = "detectron2_model_zoo"
    elif str(path).endswith(".pkl") and _is_caffe2(data):
        kind = "caffe2"
    else:
        kind = "backbone"
    return WeightsFile(name=str(weights), path=str(path), kind=kind, data=data)
