#!/usr/bin/env python
"""Draw the ground truth of DATASETS.TRAIN as loaded, or as an engine's training loader feeds it.

    python tools/visualize_data.py --config configs/quickstart.yaml --source annotation \
        --output-dir vis/annotation
    python tools/visualize_data.py --config configs/quickstart.yaml --source dataloader \
        --engine torchvision --output-dir vis/tv --num 20 INPUT.RANDOM_FLIP none

As Detectron2's tool of that name: ``--source annotation`` draws each record as loaded;
``--source dataloader`` draws each image as the chosen engine's training loader hands it to the
network (resized and flipped, boxes clipped). One PNG per image, named after the image file's
stem, plus ``OUTPUT_DIR/records.json`` with each image's file, size as fed, boxes (XYXY, in the
PNG's pixels) and class names; images the loader skips are listed there and warned about. With
flipping off, both engines write the same files for the same data.
"""

import argparse
import logging

from resdet.cli import run_main

ENGINES = ("auto", "detectron2", "torchvision")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
    parser.add_argument("--config", "--config-file", dest="config_file", required=True,
                        metavar="FILE", help="the config whose DATASETS.TRAIN is drawn")
    parser.add_argument("--source", choices=("annotation", "dataloader"), required=True,
                        help="the records as loaded, or the training loader's output")
    parser.add_argument("--engine", choices=ENGINES, default="auto",
                        help="whose training loader (auto: detectron2 when it imports)")
    parser.add_argument("--output-dir", required=True, metavar="DIR",
                        help="where the PNGs and records.json are written")
    parser.add_argument("--num", type=int, default=0, metavar="N",
                        help="draw the first N images only (default: all)")
    parser.add_argument("--debug", action="store_true", help="show full tracebacks")
    parser.add_argument("opts", nargs=argparse.REMAINDER, help="config overrides KEY VALUE ...")
    return parser


def _engine(requested: str) -> str:
    import importlib.util

    from resdet.errors import UserError

    has_d2 = importlib.util.find_spec("detectron2") is not None
    if requested == "detectron2" and not has_d2:
        raise UserError("--engine detectron2: Detectron2 does not import; install it (see "
                        "README) or use --engine torchvision.")
    return "detectron2" if requested == "detectron2" or (requested == "auto" and has_d2) \
        else "torchvision"


def main() -> None:
    args = build_parser().parse_args()
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    from resdet.config import load_config
    from resdet.detection.visualize import class_names, visualize

    engine = _engine(args.engine)
    logging.getLogger("resdet").info("Engine: %s", engine)
    cfg = load_config(args.config_file, args.opts, engine=engine)
    from resdet.data.custom import register_custom_datasets

    register_custom_datasets(cfg)  # DATASETS.CUSTOM names, as every tool takes them
    if engine == "detectron2":
        from resdet.d2 import data as engine_data
    else:
        from resdet.tvdet import data as engine_data
    names = class_names(cfg.DATASETS.TRAIN, cfg.MODEL.ROI_HEADS.NUM_CLASSES)
    if args.source == "annotation":
        dicts = [d for name in cfg.DATASETS.TRAIN for d in engine_data.dataset_dicts(name)]
        visualize("annotation", dicts, names, args.output_dir, image_format=cfg.INPUT.FORMAT,
                  num=args.num)
    else:
        dicts = engine_data.training_dicts(cfg)
        visualize("dataloader", dicts, names, args.output_dir, image_format=cfg.INPUT.FORMAT,
                  num=args.num, loader_samples=engine_data.training_samples_once(cfg, dicts))


if __name__ == "__main__":
    run_main(main)
