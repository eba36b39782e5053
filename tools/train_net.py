#!/usr/bin/env python
"""Train or evaluate a detection config on Detectron2 or, without it, on torchvision.

    python tools/train_net.py --config configs/quickstart.yaml
    python tools/train_net.py --config configs/faster_rcnn_R101_coco.yaml --num-gpus 8
    python tools/train_net.py --config FILE --eval-only MODEL.WEIGHTS output/model_final.pth

``--engine auto`` (default: the config's ENGINE, itself "auto") uses Detectron2 when it imports;
the first log line names the engine. Both engines write the same run directory (DESIGN.md).
"""

from resdet.cli import default_argument_parser, run_main

ENGINES = ("auto", "detectron2", "torchvision")


def main() -> None:
    parser = default_argument_parser(__doc__.strip().splitlines()[0])
    parser.add_argument("--engine", choices=ENGINES, default=None,
                        help="detection engine (default: the config's ENGINE, 'auto')")
    args = parser.parse_args()
    # Heavy imports (torch, Detectron2) only after the command line is parsed: --help is fast.
    from resdet.train_detection import check_run, resolve_engine

    engine = resolve_engine(args.engine, args.config_file, args.opts)
    check_run(engine, eval_only=args.eval_only)
    args.engine_line = engine.line  # each engine's setup logs it first (console and log.txt)
    engine.launch()(engine.main(), args.num_gpus, num_machines=args.num_machines,
                    machine_rank=args.machine_rank, dist_url=args.dist_url,
                    args=(args, engine.cfg))


if __name__ == "__main__":
    run_main(main)
