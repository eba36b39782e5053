#!/usr/bin/env python
"""Draw a trained detector's boxes, class names and scores into PNG files.

    python tools/predict.py --config configs/quickstart.yaml \
        --weights output/quickstart/model_final.pth --input datasets/shapes/val --output preds/

Runs on the torchvision engine, so it works without Detectron2; ``--weights`` is a
``model_final.pth`` written by ``tools/train_net.py`` on either engine (Detectron2's names are
converted, see resdet/detection/detector_names.py).
"""

import argparse

from resdet.cli import run_main


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
    parser.add_argument("--config", "--config-file", dest="config_file", required=True,
                        metavar="FILE", help="the config the model was trained with")
    parser.add_argument("--weights", required=True, metavar="FILE",
                        help="detector checkpoint (model_final.pth)")
    parser.add_argument("--input", nargs="+", required=True, metavar="IMG_OR_DIR",
                        help="image files and/or folders of images")
    parser.add_argument("--output", required=True, metavar="DIR", help="where PNGs are written")
    parser.add_argument("--score-thresh", type=float, default=0.5,
                        help="draw detections scoring at least this (default 0.5)")
    parser.add_argument("--debug", action="store_true", help="show full tracebacks")
    parser.add_argument("opts", nargs=argparse.REMAINDER, help="config overrides KEY VALUE ...")
    return parser


def main() -> None:
    args = build_parser().parse_args()
    from resdet.tvdet.predict import run_predict

    run_predict(args.config_file, args.weights, args.input, args.output, args.score_thresh,
                args.opts)


if __name__ == "__main__":
    run_main(main)
