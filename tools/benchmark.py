#!/usr/bin/env python
"""Speed and memory of resdet against its references, measured side by side in one process.

    python tools/benchmark.py --task train --arch resnet50 --reference torchvision [--stride-in-3x3]
    python tools/benchmark.py --task inference --arch resnet101 --batch 8 --reference torchvision
    python tools/benchmark.py --task train --config CONFIG.yaml --engine torchvision \
        --reference torchvision
    python tools/benchmark.py --task data --config CONFIG.yaml      # loader vs training step
    python tools/benchmark.py --task eval --reference pycocotools   # tools/evaluate.py, whole run
    python tools/benchmark.py --task data-scale [--scale 0.01]     # ImageNet/COCO-train-sized
        # records: per-worker memory, records' memory, annotation load time (vs Detectron2)

Each timed round runs resdet's step and the reference's step once, the order flipping every
round; the ratio is the median of the per-round ratios ours/reference (< 1: resdet is faster).
``--json`` ends the output with one JSON line holding ``ours``, ``reference``, ``ratio``,
``task``, ``device`` and ``settings``.
"""

from __future__ import annotations

import argparse
import json
import logging


from resdet.cli import run_main  # noqa: E402
from resdet.config.choices import ENGINES


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--task", required=True,
                   choices=("train", "inference", "data", "eval", "data-scale"),
                   help="what to measure: a training step, inference, the data loader against "
                   "the training step, COCO evaluation, or memory and start-up time at "
                   "ImageNet/COCO-train size (data-scale)")
    what = p.add_mutually_exclusive_group()
    what.add_argument("--config", default=None, help="detection config (YAML)")
    what.add_argument("--arch", default=None, help="backbone classifier, e.g. resnet50, vgg16")
    p.add_argument("--engine", choices=ENGINES, default="auto",
                   help="detection engine for --config (auto: Detectron2 when it imports)")
    p.add_argument("--device", choices=("cpu", "cuda"), default="cpu",
                   help="where the models run (default cpu)")
    p.add_argument("--batch", type=int, default=2, help="images per iteration")
    p.add_argument("--input-size", type=int, default=None,
                   help="square input side for --arch (default 224; 32 for CIFAR nets)")
    p.add_argument("--iters", type=int, default=10, help="timed rounds (eval: runs of each)")
    p.add_argument("--warmup", type=int, default=2, help="untimed steps of each before timing")
    p.add_argument("--amp", action="store_true", help="bfloat16 autocast (CUDA only)")
    p.add_argument("--channels-last", action="store_true", help="NHWC memory format")
    p.add_argument("--compile", action="store_true", help="torch.compile the models (CUDA only)")
    p.add_argument("--stride-in-3x3", action="store_true",
                   help="resdet ResNet with torchvision's stride placement (v1.5)")
    p.add_argument("--reference", choices=("torchvision", "detectron2", "pycocotools"),
                   default=None, help="also measure this reference and report the ratio")
    p.add_argument("--num-workers", type=int, default=2,
                   help="--task data: DATALOADER.NUM_WORKERS; --task data-scale: loader "
                   "workers whose memory is measured (default 2)")
    p.add_argument("--eval-images", type=int, default=5000,
                   help="--task eval: images in the synthetic COCO val set (val2017 has 5000)")
    p.add_argument("--scale", type=float, default=1.0,
                   help="--task data-scale: dataset size as a fraction of ImageNet train "
                   "(1,281,167 records) and COCO train2017 (118,287 images, 862,789 "
                   "annotations); default 1")
    p.add_argument("--parts", nargs="+", choices=("load", "records", "workers"),
                   default=["load", "records", "workers"],
                   help="--task data-scale: which measurements (default all): COCO annotation "
                   "load, main-process memory of the records, per-worker memory growth")
    p.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (CPU)")
    p.add_argument("--json", action="store_true", help="end with one JSON line")
    p.add_argument("--debug", action="store_true", help="show tracebacks")
    p.add_argument("opts", nargs=argparse.REMAINDER, default=[],
                   help="KEY VALUE config overrides for --config")
    return p


def parse_args(argv=None) -> argparse.Namespace:
    return build_parser().parse_args(argv)


def main(argv=None) -> dict:
    args = parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    import torch

    from resdet.benchmark import BenchSettings, format_report, run_benchmark

    if args.threads:
        torch.set_num_threads(args.threads)
    s = BenchSettings(task=args.task, arch=args.arch, config=args.config, opts=tuple(args.opts),
                      engine=args.engine, device=args.device, batch=args.batch,
                      input_size=args.input_size, iters=args.iters, warmup=args.warmup,
                      amp=args.amp, channels_last=args.channels_last, compile=args.compile,
                      stride_in_3x3=args.stride_in_3x3, reference=args.reference,
                      num_workers=args.num_workers, eval_images=args.eval_images,
                      scale=args.scale, parts=tuple(args.parts))
    result = run_benchmark(s)
    print(format_report(result))
    if args.json:
        print(json.dumps(result, default=str))
    return result


if __name__ == "__main__":
    run_main(main)
