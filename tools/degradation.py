#!/usr/bin/env python
r"""The paper's Fig. 6: plain vs residual nets at 20 and 56 layers, trained and plotted.

    python tools/degradation.py --dataset cifar10_train --iters 64000 --out-dir output/fig6
    python tools/degradation.py --dataset synthetic_imagenet --iters 2000 --out-dir output/fig6s \
        MODEL.DEVICE cuda
"""

import argparse

from resdet.cli import run_main
from resdet.pretrain.degradation import ARCHS, run_degradation


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", default="cifar10_train", help="training set name")
    parser.add_argument("--test-dataset", default=None, help="validation set (default: derived)")
    parser.add_argument("--iters", type=int, default=64000, help="iterations per network")
    parser.add_argument("--out-dir", default="output/degradation", metavar="DIR",
                        help="one run folder per network, and degradation.png (default "
                        "output/degradation)")
    parser.add_argument("--config", default=None, help="base config (default by dataset)")
    parser.add_argument("--batch", type=int, default=None, help="SOLVER.IMS_PER_BATCH")
    parser.add_argument("--archs", nargs="*", default=list(ARCHS), metavar="ARCH",
                        help=f"networks to train and plot (default: {' '.join(ARCHS)})")
    parser.add_argument("--debug", action="store_true", help="show tracebacks")
    parser.add_argument("opts", nargs=argparse.REMAINDER,
                        help="config overrides KEY VALUE ... (e.g. MODEL.DEVICE cuda)")
    args = parser.parse_args()
    summary = run_degradation(args.dataset, args.iters, args.out_dir,
                              test_dataset=args.test_dataset, config=args.config,
                              batch=args.batch, archs=args.archs, opts=args.opts)
    print(f"{'network':16s} {'train err %':>12s} {'val err %':>10s}")
    for arch, r in summary.items():
        print(f"{arch:16s} {r['train_err']:12.2f} {r['val_err']:10.2f}")
    print(f"plot: {args.out_dir}/degradation.png")


if __name__ == "__main__":
    run_main(main)
