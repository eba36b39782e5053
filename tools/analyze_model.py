"""Parameters and FLOPs (multiply-adds, as the paper's Table 1 counts them) of a resdet network.

    python tools/analyze_model.py --arch resnet50 [--input-size 224] [--shortcut A|B|C]
        [--stride-in-3x3] [--num-classes 1000] [--json]
"""

from __future__ import annotations

import argparse
import json

from resdet.cli import run_main
from resdet.config.choices import SHORTCUTS
from resdet.errors import UserError
from resdet.modeling import build_classifier, get_arch
from resdet.modeling.complexity import count_flops, count_parameters


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arch", required=True,
                        help="network name, e.g. resnet50, cifar_resnet110")
    parser.add_argument("--input-size", type=int, default=None,
                        help="square input side in pixels (default: the net's, 224; CIFAR 32)")
    parser.add_argument("--shortcut", choices=SHORTCUTS, default=None,
                        help="shortcut option (Sec. 3.3; default: the net's paper default)")
    parser.add_argument("--stride-in-3x3", action="store_true",
                        help="torchvision's v1.5 stride placement instead of the paper's")
    parser.add_argument("--num-classes", type=int, default=None,
                        help="fc size (default: the net's, 1000; CIFAR 10)")
    parser.add_argument("--json", action="store_true", help="end with one JSON line")
    parser.add_argument("--debug", action="store_true", help="show tracebacks")
    return parser.parse_args(argv)


def main(argv=None) -> dict:
    """Print the parameters and GFLOPs of ``--arch`` per top-level module and in total.

    Returns:
        ``{"arch": name, "params": count, "flops": multiply-adds}``.

    Raises:
        UserError: unknown arch, or an option the network does not take.
    """
    args = parse_args(argv)
    spec = get_arch(args.arch)
    input_size = args.input_size or spec.input_size
    options = {"shortcut": args.shortcut}
    if args.stride_in_3x3:
        if not spec.supports("stride_in_1x1"):
            raise UserError(f"--stride-in-3x3 does not apply to {args.arch!r} (it takes "
                            f"{', '.join(spec.options)}); drop it.")
        options["stride_in_1x1"] = False
    model = build_classifier(args.arch, num_classes=args.num_classes, **options)
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
