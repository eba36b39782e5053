#!/usr/bin/env python
"""Check that this installation trains on its device, and how fast: one command.

    python tools/selfcheck.py --quick            # CPU-sized, under a minute (what CI runs)
    python tools/selfcheck.py                    # the smoke on the GPU(s) found, <= 3 minutes
    python tools/selfcheck.py --bench --json gpu.json   # the GPU rows of docs/benchmarks.md

First a table of the environment (Python, torch and its CUDA/cuDNN/NCCL, GPUs with their bf16
peak, Detectron2, the COCO scorers, $DETECTRON2_DATASETS and the builtin datasets on disk), each
problem with one sentence saying what to do. Then each smoke item: a few iterations on generated
data through tools/pretrain_imagenet.py or tools/train_net.py (pretraining with bf16 autocast and
channels_last, fp16 with loss scaling, torch.compile; SIGTERM, then --resume to the same losses;
detection on the torchvision engine and, where it imports, on Detectron2; --eval-only; two GPUs
over NCCL when there are two): passed, failed with the sentence, or skipped with why.
The exit status is 0 only when nothing failed.
"""

import argparse
import sys

from resdet.cli import run_main


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog=__doc__.split("\n\n", 1)[1])
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--quick", action="store_true",
                      help="small sizes, no slow items: a few seconds per item on a CPU")
    mode.add_argument("--bench", action="store_true",
                      help="measure the GPU rows of docs/benchmarks.md instead of the smoke")
    p.add_argument("--json", metavar="FILE", default=None, help="also write every result here")
    p.add_argument("--only", metavar="ITEM", nargs="+", default=None,
                   help="run only these smoke items (names as printed)")
    p.add_argument("--device", choices=("cuda", "cpu"), default=None,
                   help="device for the items (default: cuda when a GPU is visible)")
    p.add_argument("--work-dir", default=None,
                   help="keep the items' runs and logs here (default: a temporary folder, "
                   "removed when nothing failed)")
    p.add_argument("--timeout", type=float, default=600.0,
                   help="seconds one command may run before its item fails (default 600)")
    p.add_argument("--opts", nargs="+", default=[], metavar="KEY VALUE",
                   help="config overrides added to every training command")
    p.add_argument("--debug", action="store_true", help="show tracebacks")
    args = p.parse_args()

    from resdet.errors import UserError
    from resdet.selfcheck.run import run_selfcheck, split_opts

    try:
        opts = split_opts(args.opts)
        code = run_selfcheck("bench" if args.bench else "quick" if args.quick else "smoke",
                             json_path=args.json, only=args.only, extra_opts=opts,
                             work_dir=args.work_dir, device=args.device, timeout=args.timeout)
    except ValueError as e:
        raise UserError(str(e)) from None
    sys.exit(code)


if __name__ == "__main__":
    run_main(main)
