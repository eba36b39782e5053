"""A run's ``model_final.pth`` as a module with plain tensor inputs and outputs, ready to export.

Two kinds of runs are understood: pretraining (a classifier; the checkpoint carries its arch,
config and input normaliser) and the torchvision detection engine (``"engine": "torchvision"``).
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from typing import Any, List, Optional, Tuple

import numpy as np
import torch
from torch import Tensor, nn

from resdet.errors import UserError


class ClassifierForExport(nn.Module):
    """Normalisation plus classifier: ``[N, 3, H, W]`` RGB floats in 0-255 -> class logits
    ``[N, num_classes]``.

    Args:
        model: the classifier.
        mean: the training set's mean, ``[3, 1, 1]`` (per channel) or ``[3, H, W]`` (the paper's
            per-pixel mean, Sec. 3.4; inputs must then be ``H x W``).
        std: per-channel std, ``[3]``.
    """

    def __init__(self, model: nn.Module, mean: Tensor, std: Tensor):
        super().__init__()
        self.model = model
        self.register_buffer("mean", mean.float().clone())
        self.register_buffer("std", std.float().view(3, 1, 1).clone())

    def forward(self, images: Tensor) -> Tensor:
        """``[N, 3, H, W]`` RGB in 0-255 -> logits ``[N, num_classes]``."""
        return self.model((images - self.mean) / self.std)


class DetectorForExport(nn.Module):
    """A torchvision-engine detector on one image: ``[3, H, W]`` float in 0-255 (the config's
    INPUT.FORMAT channel order) -> ``(boxes [K, 4] XYXY input pixels, scores [K], labels [K])``
    with 0-based class ids."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, image: Tensor) -> Tuple[Tensor, Tensor, Tensor]:
        """``[3, H, W]`` in 0-255 -> ``(boxes [K, 4], scores [K], labels [K])``."""
        det = self.model([image])[0]
        return det["boxes"], det["scores"], det["labels"]


@dataclass
class Exportable:
    """What :func:`load_exportable` returns."""

    kind: str  # "classifier" or "detector"
    module: nn.Module  # in eval mode, on the CPU
    sample: Tuple[Tensor, ...]  # the positional inputs of one forward call
    sample_source: str  # the image file the sample was made from
    input_names: List[str]
    output_names: List[str]


def _read(path: str) -> dict:
    if not os.path.isfile(path):
        raise UserError(f"--weights {path} does not exist; give a model_final.pth of a "
                        "pretraining or torchvision-engine run.")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - any unreadable file gets the same sentence
        raise UserError(f"{path} cannot be read as a resdet checkpoint ({e.__class__.__name__});"
                        " give a model_final.pth of a pretraining or torchvision-engine run.") \
            from None
    if not isinstance(ckpt, dict) or "model" not in ckpt or not ckpt.get("cfg"):
        raise UserError(f"{path} is not a resdet training checkpoint (it has no 'model' and "
                        "'cfg'); give a model_final.pth of a pretraining or torchvision-engine "
                        "run.")
    return ckpt


def _config(ckpt: dict, config_file: Optional[str], opts: List[str]) -> Any:
    from resdet.config import load_config

    if config_file:
        return load_config(config_file, opts)
    with tempfile.TemporaryDirectory(prefix="resdet_export_") as tmp:
        path = os.path.join(tmp, "config.yaml")
        with open(path, "w", encoding="utf-8") as f:
            f.write(ckpt["cfg"])
        return load_config(path, opts)


def _first_test_image(cfg: Any) -> Optional[str]:
    from resdet.data import get_dataset_dicts

    for name in list(cfg.DATASETS.TEST) + list(cfg.DATASETS.TRAIN):
        try:
            records = get_dataset_dicts(name)
        except UserError:
            continue
        if records:
            return records[0]["file_name"]
    return None


def load_exportable(weights: str, *, config_file: Optional[str] = None,
                    opts: Optional[List[str]] = None,
                    sample_image: Optional[str] = None) -> Exportable:
    """Load ``weights`` (a run's ``model_final.pth``) as an exportable module and a sample input.

    Args:
        weights: the checkpoint; its stored config is used unless ``config_file`` is given.
        config_file, opts: a config (and ``KEY VALUE`` overrides) to use instead.
        sample_image: the image to check the export on; default the first image of the
            config's DATASETS.TEST (else DATASETS.TRAIN).

    Returns:
        An :class:`Exportable`.

    Raises:
        UserError: the file is not a pretraining or torchvision-engine checkpoint, or no sample
            image can be found.
    """
    from resdet.data.image_io import read_image

    ckpt = _read(weights)
    cfg = _config(ckpt, config_file, list(opts or []))
    image_path = sample_image or _first_test_image(cfg)
    if image_path is None:
        raise UserError("No sample image: the config's datasets are not on disk; pass "
                        "--sample-image PATH.")
    if ckpt.get("engine") == "torchvision":
        from resdet.tvdet.build import build_model

        cfg.defrost()
        cfg.MODEL.WEIGHTS = weights
        cfg.MODEL.DEVICE = "cpu"
        cfg.freeze()
        model = build_model(cfg).eval()
        image = read_image(image_path, format=cfg.INPUT.FORMAT)
        sample = torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1).float()
        return Exportable("detector", DetectorForExport(model).eval(), (sample,), image_path,
                          ["image"], ["boxes", "scores", "labels"])
    if "arch" not in ckpt:
        raise UserError(f"{weights} is neither a pretraining checkpoint (no 'arch') nor a "
                        "torchvision-engine detector (Detectron2 runs export with Detectron2's "
                        "tools/deploy/export_model.py).")
    import cv2

    from resdet.pretrain.train import build_pretrain_model

    task = ckpt.get("task") if isinstance(ckpt.get("task"), dict) else {}
    norm = ckpt.get("normalizer") or task.get("normalizer")
    if not norm:
        raise UserError(f"{weights} has no input normaliser (mean/std); export a "
                        "model_final.pth written by tools/pretrain_imagenet.py.")
    model = build_pretrain_model(cfg)
    model.load_state_dict(ckpt["model"])
    module = ClassifierForExport(model, norm["mean"], norm["std"]).eval()
    crop = int(cfg.PRETRAIN.CROP_SIZE)
    image = read_image(image_path, format="RGB")
    image = cv2.resize(image, (crop, crop), interpolation=cv2.INTER_AREA)
    sample = torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1).float()[None]
    return Exportable("classifier", module, (sample,), image_path, ["images"], ["logits"])
