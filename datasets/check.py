#!/usr/bin/env python
"""Validate a builtin dataset and name every problem in it.

    python datasets/check.py coco_2017_val
    python datasets/check.py voc_2007_trainval [--quick]
    python datasets/check.py imagenet_val

Reads every annotation and opens every image (``--quick``: image headers only, which misses
truncated files). Prints one line per problem, naming the file and the annotation id or XML
element, then a summary; exits with 1 if there is any problem, else prints
``ok: N images, M boxes`` (classification sets: ``ok: N images, K classes``) and exits with 0.
Boxes that cross the image border are clipped to it and kept for training, as both engines do:
each is listed as ``clipped: ...`` and counted in the summary, apart from the problems. Images
without boxes and classes without images are notes (``--notes`` lists them), not problems.
"""

from __future__ import annotations

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from resdet.cli import run_main  # noqa: E402


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("name", help="builtin dataset name, e.g. coco_2017_val, voc_2007_test, "
                   "imagenet_val")
    p.add_argument("--quick", action="store_true", help="read image headers only")
    p.add_argument("--notes", action="store_true", help="list images without boxes")
    p.add_argument("--debug", action="store_true", help="show tracebacks")
    args = p.parse_args(argv)
    from resdet.data.detection_checks import check_dataset

    log = check_dataset(args.name, decode=not args.quick)
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
        print(f"{args.name}: {len(log.problems)} problem(s) in {counts}{empty}")
        return 1
    print(f"ok: {counts}{empty}")
    return 0


if __name__ == "__main__":
    run_main(lambda: sys.exit(main()))
