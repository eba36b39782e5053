"""Parameters and FLOPs (multiply-adds, as the paper's Table 1 counts them) of a resdet network.

    python tools/analyze_model.py --arch resnet50 [--input-size 224] [--shortcut A|B|C]
        [--stride-in-3x3] [--num-classes 1000] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from resdet.cli import run_main  # noqa: E402
from resdet.modeling import arch_info, build_classifier  # noqa: E402
from resdet.modeling.complexity import count_flops, count_parameters  # noqa: E402


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arch", required=True,
                        help="network name, e.g. resnet50, cifar_resnet110")
    parser.add_argument("--input-size", type=int, default=None,
                        help="square input side (default 224; 32 for CIFAR nets)")
    parser.add_argument("--shortcut", choices=("A", "B", "C"), default=None)
    parser.add_argument("--stride-in-3x3", action="store_true",
                        help="torchvision's v1.5 stride placement instead of the paper's")
    parser.add_argument("--num-classes", type=int, default=None,
                        help="fc size (default 1000; 10 for CIFAR nets)")
    parser.add_argument("--json", action="store_true", help="end with one JSON line")
    parser.add_argument("--debug", action="store_true", help="show tracebacks")
    return parser.parse_args(argv)


def main(argv=None) -> dict:
    args = parse_args(argv)
    cifar = arch_info(args.arch)["family"] == "cifar"
    input_size = args.input_size or (32 if cifar else 224)
    num_classes = args.num_classes or (10 if cifar else 1000)
    model = build_classifier(args.arch, num_classes=num_classes, shortcut=args.shortcut,
                             stride_in_1x1=not args.stride_in_3x3)
    total, per_child = count_flops(model, input_size)
    params = count_parameters(model)
    print(f"{args.arch} at {input_size}x{input_size}"
          f"{' (stride in 3x3)' if args.stride_in_3x3 else ''}")
    print(f"{'module':<10} {'params':>14} {'GFLOPs':>10}")
    for name, child in model.named_children():
        print(f"{name:<10} {count_parameters(child):>14,} {per_child[name] / 1e9:>10.4f}")
    print(f"{'total':<10} {params:>14,} {total / 1e9:>10.4f}")
    result = {"arch": args.arch, "params": params, "flops": total}
    if args.json:
        print(json.dumps(result))
    return result


if __name__ == "__main__":
    run_main(main)
