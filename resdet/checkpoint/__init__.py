"""Weight import and export: torchvision, timm, Detectron2 and MSRA/Caffe2 files, resdet's own.

``load_weights(model, path)`` finds the network in the file (training checkpoints of
torchvision's references, timm, Lightning, Detectron2, MMPretrain, MoCo, DINO...), detects its
layout (a :class:`WeightsKind`) and renames it to resdet's names (which are Detectron2's backbone
names). ``.pkl`` files are read with a restricted unpickler and ``.pth``
files with ``torch.load(weights_only=True)``, so a weight file cannot run code.
"""

from resdet.checkpoint.export import (
    resdet_to_msra_name,
    save_detectron2_pkl,
    save_resdet_weights,
    to_detectron2,
    to_msra,
)
from resdet.checkpoint.files import (
    TORCHVISION_ARCHS,
    check_sha256,
    file_sha256,
    read_weights_file,
    resolve_weights,
)
from resdet.checkpoint.formats import (
    ConvertedWeights,
    WeightsKind,
    caffe2_to_resdet_name,
    convert_to_resdet,
    torchvision_resnet_to_resdet_name,
)
from resdet.checkpoint.loader import (
    LoadReport,
    check_fit,
    is_class_count_mismatch,
    is_classifier_head,
    load_weights,
)
from resdet.checkpoint.safe_pickle import load_plain_pickle

__all__ = [
    "TORCHVISION_ARCHS",
    "ConvertedWeights",
    "LoadReport",
    "WeightsKind",
    "caffe2_to_resdet_name",
    "check_fit",
    "check_sha256",
    "convert_to_resdet",
    "file_sha256",
    "is_class_count_mismatch",
    "is_classifier_head",
    "load_plain_pickle",
    "load_weights",
    "read_weights_file",
    "resdet_to_msra_name",
    "resolve_weights",
    "save_detectron2_pkl",
    "save_resdet_weights",
    "to_detectron2",
    "to_msra",
    "torchvision_resnet_to_resdet_name",
]
