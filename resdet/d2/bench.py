"""Time Detectron2's own R50/R101 C4 and FPN Faster R-CNN against resdet's registered equivalents.

Both models of a pair are built in one process with the same weights and timed alternately (A, B,
A, B, ...) on the same inputs, so machine load affects both alike; the ratio of medians is
reported (goal: resdet / Detectron2 <= 1.05)::

    PYTHONPATH=/path/to/detectron2 python -m resdet.d2.bench --depths 50 101 --kinds C4 FPN
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from typing import Dict, List, Sequence, Tuple

import torch
from detectron2.config import get_cfg as d2_get_cfg
from detectron2.modeling import build_model
from detectron2.structures import Boxes, Instances
from detectron2.utils.events import EventStorage
from torch import nn

import resdet.d2  # noqa: F401  (registers the resdet backbones and heads)
from resdet.config import add_resdet_config


def detector_cfg(kind: str, depth: int, resdet: bool, device: str = "cpu"):
    """Detectron2's default C4 or FPN Faster R-CNN config; ``resdet`` swaps in resdet's parts."""
    cfg = add_resdet_config(d2_get_cfg())
    cfg.MODEL.DEVICE = device
    cfg.MODEL.RESNETS.DEPTH = depth
    cfg.MODEL.RESDET.ARCH = f"resnet{depth}"
    if kind == "FPN":
        cfg.MODEL.BACKBONE.NAME = "build_resnet_fpn_backbone"
        cfg.MODEL.RESNETS.OUT_FEATURES = ["res2", "res3", "res4", "res5"]
        cfg.MODEL.FPN.IN_FEATURES = ["res2", "res3", "res4", "res5"]
        cfg.MODEL.ANCHOR_GENERATOR.SIZES = [[32], [64], [128], [256], [512]]
        cfg.MODEL.RPN.IN_FEATURES = ["p2", "p3", "p4", "p5", "p6"]
        cfg.MODEL.RPN.PRE_NMS_TOPK_TRAIN = 2000
        cfg.MODEL.RPN.PRE_NMS_TOPK_TEST = 1000
        cfg.MODEL.RPN.POST_NMS_TOPK_TRAIN = 1000
        cfg.MODEL.RPN.POST_NMS_TOPK_TEST = 1000
        cfg.MODEL.ROI_HEADS.NAME = "StandardROIHeads"
        cfg.MODEL.ROI_HEADS.IN_FEATURES = ["p2", "p3", "p4", "p5"]
        cfg.MODEL.ROI_BOX_HEAD.NAME = "FastRCNNConvFCHead"
        cfg.MODEL.ROI_BOX_HEAD.NUM_FC = 2
        cfg.MODEL.ROI_BOX_HEAD.POOLER_RESOLUTION = 7
        if resdet:
            cfg.MODEL.BACKBONE.NAME = "build_resdet_resnet_fpn_backbone"
    elif kind == "C4":
        if resdet:
            cfg.MODEL.BACKBONE.NAME = "build_resdet_resnet_backbone"
            cfg.MODEL.ROI_HEADS.NAME = "ResdetRes5ROIHeads"
    else:
        raise ValueError(f"kind must be C4 or FPN, got {kind!r}")
    return cfg


def build_pair(kind: str, depth: int, device: str = "cpu") -> Tuple[nn.Module, nn.Module]:
    """(Detectron2's model, resdet's model) with identical weights."""
    torch.manual_seed(0)
    theirs = build_model(detector_cfg(kind, depth, resdet=False, device=device))
    ours = build_model(detector_cfg(kind, depth, resdet=True, device=device))
    ours.load_state_dict(theirs.state_dict())
    return theirs, ours


def make_inputs(batch: int, height: int, width: int, device: str = "cpu",
                num_boxes: int = 4) -> List[dict]:
    """Random images with a few ground-truth boxes (used in training mode)."""
    g = torch.Generator().manual_seed(0)
    inputs = []
    for _ in range(batch):
        xy = torch.rand(num_boxes, 2, generator=g) * torch.tensor([width * 0.6, height * 0.6])
        wh = 32 + torch.rand(num_boxes, 2, generator=g) * torch.tensor([width * 0.3, height * 0.3])
        inst = Instances((height, width))
        inst.gt_boxes = Boxes(torch.cat([xy, xy + wh], dim=1))
        inst.gt_classes = torch.randint(0, 80, (num_boxes,), generator=g)
        inputs.append({"image": (torch.rand(3, height, width, generator=g) * 255).to(device),
                       "height": height, "width": width, "instances": inst.to(device)})
    return inputs


def _step(model: nn.Module, inputs: List[dict], train: bool) -> None:
    if train:
        with EventStorage(0):  # Detectron2's losses log into an event storage
            losses = model(inputs)
        sum(losses.values()).backward()
        model.zero_grad(set_to_none=True)
    else:
        with torch.no_grad():
            model(inputs)


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def time_alternating(models: Dict[str, nn.Module], inputs: List[dict], *, iters: int = 5,
                     warmup: int = 2, train: bool = False,
                     device: str = "cpu") -> Dict[str, List[float]]:
    """Seconds per step of each model, measured in turns (A, B, A, B, ...), after ``warmup``."""
    for model in models.values():
        model.train(train)
    times: Dict[str, List[float]] = {name: [] for name in models}
    names = list(models)
    for i in range(warmup + iters):
        # alternate which model goes first, so neither always follows the other
        order = names if i % 2 == 0 else names[::-1]
        for name in order:
            _sync(device)
            start = time.perf_counter()
            _step(models[name], inputs, train)
            _sync(device)
            if i >= warmup:
                times[name].append(time.perf_counter() - start)
    return times


def benchmark(depths: Sequence[int] = (50, 101), kinds: Sequence[str] = ("C4", "FPN"), *,
              modes: Sequence[str] = ("inference", "train"), batch: int = 1, height: int = 480,
              width: int = 640, iters: int = 5, warmup: int = 2,
              device: str = "cpu") -> List[dict]:
    """Rows ``{model, mode, detectron2_s, resdet_s, ratio}`` (median seconds per step)."""
    rows = []
    inputs = make_inputs(batch, height, width, device)
    for kind in kinds:
        for depth in depths:
            theirs, ours = build_pair(kind, depth, device)
            for mode in modes:
                times = time_alternating({"detectron2": theirs, "resdet": ours}, inputs,
                                         iters=iters, warmup=warmup, train=mode == "train",
                                         device=device)
                d2_s = statistics.median(times["detectron2"])
                rd_s = statistics.median(times["resdet"])
                rows.append({"model": f"R{depth}-{kind}", "mode": mode,
                             "detectron2_s": round(d2_s, 4), "resdet_s": round(rd_s, 4),
                             "ratio": round(rd_s / d2_s, 3)})
            del theirs, ours
    return rows


def main(argv: Sequence[str] = None) -> List[dict]:
    """Time Detectron2's Faster R-CNN models against resdet's; print and return the rows."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--depths", type=int, nargs="+", default=[50, 101])
    parser.add_argument("--kinds", nargs="+", default=["C4", "FPN"], choices=["C4", "FPN"])
    parser.add_argument("--modes", nargs="+", default=["inference", "train"],
                        choices=["inference", "train"])
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--size", type=int, nargs=2, default=[480, 640], metavar=("H", "W"))
    parser.add_argument("--iters", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: leave as is)")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    rows = benchmark(args.depths, args.kinds, modes=args.modes, batch=args.batch,
                     height=args.size[0], width=args.size[1], iters=args.iters,
                     warmup=args.warmup, device=args.device)
    for row in rows:
        print(f"{row['model']:>8} {row['mode']:>9}: detectron2 {row['detectron2_s']:.3f} s, "
              f"resdet {row['resdet_s']:.3f} s, ratio {row['ratio']:.3f}")
    print(json.dumps(rows))
    return rows


if __name__ == "__main__":
    main()
