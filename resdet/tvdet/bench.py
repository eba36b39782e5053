"""Speed of this engine's R50-FPN against torchvision's own ``fasterrcnn_resnet50_fpn``.

(torchvision's model is assembled as ``fasterrcnn_resnet50_fpn`` does with ImageNet backbone
weights, minus the download: ``resnet_fpn_backbone(FrozenBN, trainable_layers=3)`` +
``FasterRCNN``.)

Both models are built with the same sizes (torchvision's defaults: FrozenBN ResNet-50 with the
stride in the 3x3 conv, stem+res2 frozen, FPN 256 + max-pooled p6, 2000/2000 proposals before and
after NMS in training, 1000/1000 at test, 512 RoIs per image, RoIAlign 7x7 with sampling ratio 2,
a 1024-d two-layer head, 91 classes) and timed alternately in one process on the same inputs, so
that load and clock changes hit both alike::

    from resdet.tvdet.bench import benchmark
    print(benchmark("train", iters=10, batch_size=2, image_size=(800, 1088)))
    # {'resdet': 0.41, 'torchvision': 0.40, 'ratio': 1.02, ...}  (seconds per iteration)
"""

from __future__ import annotations

import os
import statistics
import time
from typing import Dict, List, Optional, Tuple

import torch
from torch import nn

# R50-FPN keys that make resdet's model match fasterrcnn_resnet50_fpn's sizes.
MATCH_TORCHVISION = [
    "MODEL.WEIGHTS", "", "MODEL.RESNETS.STRIDE_IN_1X1", "False",
    "MODEL.ROI_HEADS.NUM_CLASSES", "90", "MODEL.ROI_BOX_HEAD.POOLER_SAMPLING_RATIO", "2",
    "MODEL.RPN.PRE_NMS_TOPK_TRAIN", "2000", "MODEL.RPN.POST_NMS_TOPK_TRAIN", "2000",
    "MODEL.RPN.PRE_NMS_TOPK_TEST", "1000", "MODEL.RPN.POST_NMS_TOPK_TEST", "1000",
    "MODEL.ROI_HEADS.BATCH_SIZE_PER_IMAGE", "512", "MODEL.ROI_HEADS.POSITIVE_FRACTION", "0.25",
    "MODEL.PIXEL_MEAN", "[123.675, 116.28, 103.53]", "MODEL.PIXEL_STD", "[58.395, 57.12, 57.375]",
    "INPUT.FORMAT", "RGB",
]


def build_models(min_size: int = 800, max_size: int = 1333,
                 device: Optional[torch.device] = None,
                 config: str = "") -> Dict[str, nn.Module]:
    """``{"resdet": ours, "torchvision": fasterrcnn_resnet50_fpn}`` with the same sizes, random
    weights (no download), on ``device``.

    Args:
        min_size, max_size: test-time resize of both (training inputs are given at final size).
        device: default CUDA when available, else CPU.
        config: the R50-FPN config this engine builds from (default: the repository's
            configs/faster_rcnn_R50_FPN_coco.yaml).
    """
    from torchvision.models.detection import FasterRCNN
    from torchvision.models.detection.backbone_utils import resnet_fpn_backbone
    from torchvision.ops.misc import FrozenBatchNorm2d

    from resdet.config import load_config
    from resdet.tvdet.build import build_model

    device = device or torch.device("cuda" if torch.cuda.is_available() else "cpu")
    config = config or os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(
        os.path.abspath(__file__)))), "configs", "faster_rcnn_R50_FPN_coco.yaml")
    cfg = load_config(config, MATCH_TORCHVISION + [
        "INPUT.MIN_SIZE_TEST", str(min_size), "INPUT.MAX_SIZE_TEST", str(max_size)])
    ours = build_model(cfg)
    # fasterrcnn_resnet50_fpn's own construction with ImageNet weights (FrozenBN, 3 trainable
    # stages), without downloading them: with weights_backbone=None it would use plain BN.
    backbone = resnet_fpn_backbone(backbone_name="resnet50", weights=None,
                                   norm_layer=FrozenBatchNorm2d, trainable_layers=3)
    theirs = FasterRCNN(backbone, num_classes=91, min_size=min_size, max_size=max_size)
    # Training inputs arrive resized (as from resdet's loader); torchvision would interpolate
    # them to the same size again, which is not what is being compared.
    theirs.transform._skip_resize = True
    return {"resdet": ours.to(device), "torchvision": theirs.to(device)}


def make_inputs(batch_size: int, image_size: Tuple[int, int], device: torch.device,
                seed: int = 0) -> Tuple[List[torch.Tensor], List[Dict[str, torch.Tensor]]]:
    """Random 0-255 RGB images of ``image_size`` (h, w) and 1-5 boxes each (labels 0..79)."""
    g = torch.Generator().manual_seed(seed)
    h, w = image_size
    images, targets = [], []
    for _ in range(batch_size):
        images.append((torch.rand(3, h, w, generator=g) * 255).to(device))
        n = int(torch.randint(1, 6, (1,), generator=g))
        xy = torch.rand(n, 2, generator=g) * torch.tensor([w * 0.7, h * 0.7])
        wh = 16 + torch.rand(n, 2, generator=g) * torch.tensor([w * 0.3, h * 0.3])
        targets.append({"boxes": torch.cat([xy, xy + wh], 1).to(device),
                        "labels": torch.randint(0, 80, (n,), generator=g).to(device)})
    return images, targets


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def benchmark(kind: str = "train", *, iters: int = 10, warmup: int = 3, batch_size: int = 2,
              image_size: Tuple[int, int] = (800, 1088), device: Optional[torch.device] = None,
              models: Optional[Dict[str, nn.Module]] = None) -> Dict[str, float]:
    """Median seconds per iteration of both models, run alternately (ABAB...) in this process.

    Args:
        kind: "train" (forward, backward, SGD step) or "inference" (eval forward, no grad).
        iters, warmup: timed and untimed rounds (each round runs both models once).
        batch_size: images per iteration.
        image_size: (h, w) of the inputs; training uses them as given.
        device: default CUDA when available.
        models: from :func:`build_models` (built here when None).

    Returns:
        ``{"resdet": s, "torchvision": s, "ratio": resdet / torchvision, "kind", "device", ...}``.
    """
    if kind not in ("train", "inference"):
        raise ValueError("kind must be 'train' or 'inference'")
    device = device or torch.device("cuda" if torch.cuda.is_available() else "cpu")
    models = models or build_models(max(image_size), max(image_size) * 2, device)
    images, targets = make_inputs(batch_size, image_size, device)
    inputs = {"resdet": (images, [dict(t) for t in targets]),
              # torchvision: 0-1 images, background is label 0
              "torchvision": ([im / 255.0 for im in images],
                              [dict(t, labels=t["labels"] + 1) for t in targets])}
    optims = {n: torch.optim.SGD([p for p in m.parameters() if p.requires_grad], lr=1e-4,
                                 momentum=0.9) for n, m in models.items()}
    times: Dict[str, List[float]] = {n: [] for n in models}
    names = list(models)
    for r in range(warmup + iters):
        order = names if r % 2 == 0 else names[::-1]
        for name in order:
            model, (ims, tgts) = models[name], inputs[name]
            _sync(device)
            t0 = time.perf_counter()
            if kind == "train":
                model.train()
                loss = sum(model(ims, tgts).values())
                optims[name].zero_grad(set_to_none=True)
                loss.backward()
                optims[name].step()
            else:
                model.eval()
                with torch.no_grad():
                    model(ims)
            _sync(device)
            if r >= warmup:
                times[name].append(time.perf_counter() - t0)
    out: Dict[str, float] = {n: statistics.median(ts) for n, ts in times.items()}
    out["ratio"] = out["resdet"] / out["torchvision"]
    out.update(kind=kind, device=str(device), batch_size=batch_size, iters=iters,
               image_size=list(image_size))
    return out
