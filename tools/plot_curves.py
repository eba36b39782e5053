#!/usr/bin/env python
r"""Plot training (thin) and validation (bold) error of pretraining runs, like the paper's Figs 4/6.

    python tools/plot_curves.py output/pretrain/cifar10_plain20 output/pretrain/cifar10_resnet20 \
        --out curves.png
"""

import argparse

from resdet.cli import run_main
from resdet.pretrain.curves import plot_runs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run_dirs", nargs="+", metavar="RUN_DIR", help="OUTPUT_DIR of a run")
    parser.add_argument("--out", required=True, metavar="FILE.png", help="image to write")
    parser.add_argument("--labels", nargs="*", help="legend names, one per RUN_DIR")
    parser.add_argument("--dataset", default=None, help="evaluation set (default: first found)")
    parser.add_argument("--title", default="", help="chart title (default: none)")
    parser.add_argument("--debug", action="store_true", help="show tracebacks")
    args = parser.parse_args()
    if args.labels and len(args.labels) != len(args.run_dirs):
        parser.error("--labels needs one name per RUN_DIR")
    print(plot_runs(args.run_dirs, args.out, labels=args.labels, dataset=args.dataset,
                    title=args.title))


if __name__ == "__main__":
    run_main(main)
