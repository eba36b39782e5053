#!/usr/bin/env python
"""Validate a dataset and name every problem in it.

    python datasets/check.py coco_2017_val
    python datasets/check.py voc_2007_trainval [--quick]
    python datasets/check.py imagenet_val
    python datasets/check.py --config my.yaml [my_val]   # DATASETS.CUSTOM names (all of
                                                         # DATASETS.TRAIN and TEST by default)

Reads every annotation and opens every image, in one process per CPU with a progress bar and ETA
(``--quick``: image headers only, which misses truncated files; ``--annotations-only``: no image
is opened, the fast part). Prints one line per problem, naming the file and the annotation id or XML
element, then a summary; exits with 1 if there is any problem, else prints
``ok: N images, M boxes`` (classification sets: ``ok: N images, K classes``) and exits with 0.
Boxes that cross the image border are clipped to it and kept for training, as both engines do:
each is listed as ``clipped: ...`` and counted in the summary, apart from the problems. Images
without boxes and classes without images are notes (``--notes`` lists them), not problems.
"""

from __future__ import annotations

import argparse
import sys

from resdet.cli import run_main


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("name", nargs="?", default=None,
                   help="dataset name, e.g. coco_2017_val, voc_2007_test, imagenet_val, or one "
                   "that --config declares")
    p.add_argument("--config", default=None,
                   help="a config whose DATASETS.CUSTOM names become checkable; without a name, "
                   "every dataset of its DATASETS.TRAIN and DATASETS.TEST is checked")
    p.add_argument("opts", nargs="*", default=[], help="KEY VALUE overrides for --config")
    p.add_argument("--quick", action="store_true", help="read image headers only")
    p.add_argument("--annotations-only", action="store_true",
                   help="check annotations or labels only; open no image (fast)")
    p.add_argument("--workers", type=int, default=0,
                   help="processes opening images (default: one per CPU)")
    p.add_argument("--notes", action="store_true", help="list images without boxes")
    p.add_argument("--debug", action="store_true", help="show tracebacks")
    args = p.parse_intermixed_args(argv)
    if args.config and args.name and len(args.opts) % 2:  # no name: KEY VALUE overrides only
        args.opts, args.name = [args.name, *args.opts], None
    names = [args.name] if args.name else []
    if args.config:
        from resdet.config import load_config
        from resdet.data.custom import register_custom_datasets

        cfg = load_config(args.config, args.opts)
        register_custom_datasets(cfg)
        names = names or list(dict.fromkeys([*cfg.DATASETS.TRAIN, *cfg.DATASETS.TEST]))
    elif args.opts:
        p.error(f"KEY VALUE overrides need --config (got {' '.join(args.opts)})")
    if not names:
        p.error("name a dataset, or give --config with DATASETS.TRAIN/TEST")
    return max(_check(name, args, several=len(names) > 1) for name in names)


def _check(name: str, args: argparse.Namespace, several: bool = False) -> int:
    from resdet.data.detection_checks import check_dataset

    log = check_dataset(name, decode=not args.quick, images=not args.annotations_only,
                        workers=args.workers)
    if args.notes:
        for n in log.notes:
            print(f"note: {n}")
    for clipped in log.clipped:
        print(f"clipped: {clipped}")
    for problem in log.problems:
        print(problem)
    classes = getattr(log, "num_classes", None)
    if classes is not None:
        counts = f"{log.num_images} images, {classes} classes"
        empty = f"; {len(log.notes)} class(es) without images" if log.notes else ""
    else:
        counts = f"{log.num_images} images, {log.num_boxes} boxes"
        empty = f"; {len(log.notes)} image(s) without boxes" if log.notes else ""
        if log.clipped:
            empty += f"; {len(log.clipped)} box(es) clipped to the image border"
    if log.problems:
        print(f"{name}: {len(log.problems)} problem(s) in {counts}{empty}")
        return 1
    print(f"{name}: ok: {counts}{empty}" if several else f"ok: {counts}{empty}")
    return 0


if __name__ == "__main__":
    run_main(lambda: sys.exit(main()))
