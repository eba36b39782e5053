#!/usr/bin/env python
"""Export a trained classifier or torchvision-engine detector to TorchScript, ONNX and
torch.export, checking each export's outputs against the eager model on a sample image.

    python tools/export_model.py --weights output/pretrain/quickstart/model_final.pth \
        --output exported/classifier
    python tools/export_model.py --weights output/quickstart/model_final.pth \
        --output exported/detector --format torchscript onnx

The model's config is the one stored in the checkpoint (or --config). Classifiers take
[N, 3, H, W] RGB floats in 0-255 at the training crop size and return logits; detectors take one
[3, H, W] image in 0-255 (INPUT.FORMAT channel order) and return boxes, scores, labels. TorchScript
exports are traced, so a detector export is specialised to the sample image's size. ONNX needs
pip install 'resdet[export]'. Detectron2-engine runs: use Detectron2's tools/deploy/export_model.py.
"""

import argparse

from resdet.cli import run_main

FORMATS = ("torchscript", "onnx", "torch_export")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description=__doc__.strip().splitlines()[0],
        epilog="\n".join(__doc__.strip().splitlines()[2:]),
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--weights", required=True, metavar="FILE",
                        help="model_final.pth of a pretraining or torchvision-engine run")
    parser.add_argument("--output", required=True, metavar="DIR",
                        help="folder for model.ts, model.onnx, model.pt2")
    parser.add_argument("--format", nargs="+", choices=FORMATS, default=list(FORMATS),
                        help="formats to write (default: all; torch_export is skipped, with the "
                        "reason, where torch.export cannot follow the model)")
    parser.add_argument("--config", "--config-file", dest="config_file", default=None,
                        metavar="FILE", help="config to build the model from (default: the one "
                        "stored in the checkpoint)")
    parser.add_argument("--sample-image", default=None, metavar="IMG",
                        help="image to compare exported and eager outputs on (default: the first "
                        "image of the config's DATASETS.TEST)")
    parser.add_argument("--debug", action="store_true", help="show full tracebacks")
    parser.add_argument("opts", nargs=argparse.REMAINDER, help="config overrides KEY VALUE ...")
    return parser


def main() -> None:
    args = build_parser().parse_args()
    from resdet.engine.events import setup_logging
    from resdet.export import export_and_check, load_exportable

    setup_logging(None)
    exp = load_exportable(args.weights, config_file=args.config_file, opts=args.opts,
                          sample_image=args.sample_image)
    for result in export_and_check(exp, args.output, args.format):
        if result.skipped:
            print(result.skipped)
        else:
            print(f"{result.format}: {result.path} (outputs equal the eager model's on "
                  f"{exp.sample_source}; max |diff| {result.max_abs_diff:.3g})")


if __name__ == "__main__":
    run_main(main)
