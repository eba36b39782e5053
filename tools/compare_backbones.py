#!/usr/bin/env python
"""Compare detection runs by backbone, in the shape of the paper's Tables 7 and 8.

    python tools/compare_backbones.py output/vgg16_voc output/r101_voc --out report/

Each RUN_DIR is a finished training run of either engine (config.yaml, metrics.json,
eval_results.json); the first is the baseline for the relative improvements. Writes
OUT/report.md and OUT/{ap_bars,loss_curves,seconds_per_iter}.png.
"""

from __future__ import annotations

import argparse


from resdet.cli import run_main  # noqa: E402


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("runs", nargs="+", metavar="RUN_DIR", help="training output directories")
    p.add_argument("--out", required=True, help="folder for report.md and the charts")
    p.add_argument("--debug", action="store_true", help="show tracebacks")
    return p.parse_args(argv)


def main(argv=None) -> dict:
    args = parse_args(argv)
    from resdet.reports import compare_backbones

    result = compare_backbones(args.runs, args.out)
    print(f"wrote {result['report']}")
    for c in result["charts"]:
        print(f"wrote {c}")
    return result


if __name__ == "__main__":
    run_main(main)
