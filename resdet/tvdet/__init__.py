"""The torchvision detection engine: resdet's configs on ``torchvision.models.detection``.

Detectron2 is not on the package registry; with this engine every detection config still trains
and evaluates (``tools/train_net.py --engine torchvision``, chosen by ``--engine auto`` when
Detectron2 does not import). The config becomes a torchvision ``FasterRCNN`` with a resdet
backbone (C4, FPN or VGG-16), reading the same keys as Detectron2 (:mod:`resdet.tvdet.build`);
training runs on :mod:`resdet.engine` (:mod:`resdet.tvdet.train`) and writes the same run
directory as the Detectron2 engine.

    from resdet.config import load_config
    from resdet.tvdet import build_model
    model = build_model(load_config("configs/quickstart.yaml")).eval()
    detections = model([image_chw_uint8])  # [{"boxes", "scores", "labels"}]
"""

from resdet.tvdet.build import SUPPORTED_KEYS, build_model, check_config
from resdet.tvdet.model import ResdetFasterRCNN
from resdet.tvdet.weights import backbone_state_dict, load_detector_weights

__all__ = [
    "SUPPORTED_KEYS",
    "ResdetFasterRCNN",
    "backbone_state_dict",
    "build_model",
    "check_config",
    "load_detector_weights",
]
