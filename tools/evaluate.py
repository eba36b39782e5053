#!/usr/bin/env python
"""Evaluate a COCO-format detection results file against a dataset or a COCO ground-truth file.

    python tools/evaluate.py --dataset coco_2017_val --pred coco_instances_results.json
    python tools/evaluate.py --dataset voc_2007_test --pred results.json        # VOC07 11-point
    python tools/evaluate.py --dataset voc_2007_test --pred results.json --metric coco
    python tools/evaluate.py --gt annotations.json --pred results.json          # a bare COCO file
    python tools/evaluate.py --pred results.json --config my.yaml [KEY VALUE ...]

Datasets are builtin names, names a config declares in ``DATASETS.CUSTOM`` (``--config``, whose
``DATASETS.TEST`` names the dataset unless ``--dataset`` does; ``KEY VALUE`` overrides come
last), or names registered in Python (see datasets/README.md, "Your own dataset").

Results: a JSON list of ``{"image_id", "category_id", "bbox": [x, y, w, h], "score"}``. For COCO
data, ``image_id`` and ``category_id`` are the ground-truth file's own ids (integers or strings).
For VOC data, ``image_id`` is the image name ("000001"), ``category_id`` is 1..K in the dataset's
class order (1..20 for VOC's classes), and boxes are 0-based as Detectron2 loads VOC (the XML's
xmin/ymin minus one). A non-finite score or box is refused, naming the entry. With ``--json`` the
last line printed is ``{"bbox": {"AP": .., "AP50": .., "AP75": .., ...}}`` (percent; null where a
metric is undefined, e.g. APl without large objects).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys


from resdet.cli import run_main  # noqa: E402
from resdet.errors import UserError  # noqa: E402


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                epilog="examples:\n" + __doc__.split("\n\n")[1],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dataset", default=None,
                   help="dataset name (builtin, DATASETS.CUSTOM or registered), e.g. "
                   "coco_2017_val; a .json path is taken as --gt")
    p.add_argument("--gt", default=None, metavar="FILE.json",
                   help="COCO ground-truth file to score against (instead of --dataset)")
    p.add_argument("--config", default=None, metavar="FILE",
                   help="config whose DATASETS.CUSTOM/DATASETS.TEST name the dataset")
    p.add_argument("--pred", required=True, help="COCO-format results JSON file")
    p.add_argument("--metric", choices=("coco", "voc07", "voc12"), default=None,
                   help="default: coco for COCO-layout data, the year's VOC metric for VOC data")
    p.add_argument("--backend", choices=("auto", "faster_coco_eval", "pycocotools"),
                   default="auto", help="COCO API implementation (same numbers)")
    p.add_argument("--output", default=None,
                   help="folder for VOC2012 test submission files (that split has no labels)")
    p.add_argument("--json", action="store_true", help="print the metrics as JSON on the last line")
    p.add_argument("--debug", action="store_true", help="show tracebacks")
    p.add_argument("opts", nargs=argparse.REMAINDER, metavar="KEY VALUE",
                   help="config overrides (with --config), last on the line")
    args = p.parse_args(argv)
    if args.dataset and args.dataset.endswith(".json") and os.path.isfile(args.dataset) \
            and args.gt is None:
        args.gt, args.dataset = args.dataset, None
    if args.opts and not args.config:
        p.error(f"unrecognized arguments: {' '.join(args.opts)} (KEY VALUE overrides need "
                "--config)")
    if sum(x is not None for x in (args.dataset, args.gt)) > 1:
        p.error("give either --dataset or --gt, not both")
    if args.dataset is None and args.gt is None and args.config is None:
        p.error("say what to score against: --dataset NAME, --gt FILE.json or --config FILE")
    return args


def _dataset_from_config(args) -> str:
    """Register the config's DATASETS.CUSTOM names; the dataset is --dataset, else the one
    DATASETS.TEST name."""
    from resdet.config import load_config
    from resdet.data.custom import register_custom_datasets

    cfg = load_config(args.config, args.opts)
    register_custom_datasets(cfg)
    if args.dataset or args.gt:
        return args.dataset
    names = list(cfg.DATASETS.TEST)
    if len(names) != 1:
        raise UserError(f"{args.config}: DATASETS.TEST names {len(names)} datasets "
                        f"({', '.join(names) or 'none'}); choose one with --dataset NAME.")
    return names[0]


def _eval_coco_metric(args, meta: dict, results: list, summary: list) -> dict:
    from resdet.data import catalog
    from resdet.evaluation.coco_evaluation import convert_to_coco_dict, evaluate_coco

    if meta.get("json_file"):
        catalog.ensure_generated(args.dataset)
        if not os.path.isfile(meta["json_file"]):
            catalog.get_dataset_dicts(args.dataset)  # raises the "not on disk" error
        return evaluate_coco(meta["json_file"], results, backend=args.backend, summary=summary,
                             source=args.pred)
    if meta.get("year") == 2012 and meta.get("split") == "test":
        raise UserError(f"{args.dataset} has no public labels, so it cannot be scored here; "
                        "write the evaluation-server files with --metric voc12 --output DIR.")
    # VOC (or other non-COCO) data: the loader's records as COCO ground truth, whose image ids
    # are the image names (as strings).
    dicts = catalog.get_dataset_dicts(args.dataset)
    coco = convert_to_coco_dict(dicts, meta["thing_classes"])
    results = [dict(r, image_id=str(r["image_id"])) if isinstance(r, dict) and "image_id" in r
               else r for r in results]
    return evaluate_coco(coco, results, backend=args.backend, summary=summary, source=args.pred)


def _eval_voc_metric(args, meta: dict, results: list) -> dict:
    from resdet.data.coco_format import normalize_coco_results
    from resdet.evaluation.voc_evaluation import PascalVOCEvaluator

    if meta.get("evaluator_type") != "pascal_voc":
        raise UserError(f"--metric {args.metric} needs a PASCAL VOC dataset; {args.dataset} is "
                        "not one (use --metric coco).")
    evaluator = PascalVOCEvaluator(args.dataset, args.output,
                                   use_07_metric=args.metric == "voc07")
    num_classes = len(meta["thing_classes"])
    if evaluator._has_labels:
        from resdet.data import catalog

        names = {str(d["image_id"]) for d in catalog.get_dataset_dicts(args.dataset)}
        results = [dict(r, image_id=str(r["image_id"])) if isinstance(r, dict)
                   and "image_id" in r else r for r in results]
    else:
        names = {r.get("image_id") for r in results
                 if isinstance(r, dict) and isinstance(r.get("image_id"), (int, str))}
    results = normalize_coco_results(results, args.pred, names)
    for i, r in enumerate(results):
        cat = r["category_id"]
        if not (isinstance(cat, int) and 1 <= cat <= num_classes):
            raise UserError(f"{args.pred}: entry {i} has category_id {cat!r}; VOC results use "
                            f"1..{num_classes} in the dataset's class order.")
        x, y, w, h = r["bbox"]
        evaluator.add_detections(str(r["image_id"]), [(x, y, x + w, y + h)], [r["score"]],
                                 [cat - 1])
    return evaluator.evaluate().get("bbox", {})


def main(argv=None) -> dict:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    from resdet.data import catalog
    from resdet.data.coco import read_json
    from resdet.evaluation.coco_evaluation import null_nonfinite

    if args.config:
        args.dataset = _dataset_from_config(args)
    results = read_json(args.pred)
    if not isinstance(results, list):
        raise UserError(f"{args.pred} must be a JSON list of detections (COCO results format).")
    summary: list = []
    if args.gt:
        from resdet.evaluation.coco_evaluation import evaluate_coco

        if args.metric not in (None, "coco"):
            raise UserError(f"--metric {args.metric} needs a PASCAL VOC dataset (--dataset); a "
                            "COCO ground-truth file (--gt) is scored with --metric coco.")
        metric, name = "coco", args.gt
        res = evaluate_coco(args.gt, results, backend=args.backend, summary=summary,
                            source=args.pred)
    else:
        meta = catalog.get_metadata(args.dataset)
        metric, name = args.metric, args.dataset
        if metric is None:
            if meta.get("evaluator_type") == "pascal_voc":
                metric = "voc07" if meta.get("year") == 2007 else "voc12"
            else:
                metric = "coco"
        args.metric = metric
        if metric == "coco":
            res = _eval_coco_metric(args, meta, results, summary)
        else:
            res = _eval_voc_metric(args, meta, results)
    for text in summary:
        print(text)
    if res:
        print(f"{name} ({metric}): " + ", ".join(
            f"{k} {v:.3f}" for k, v in res.items() if not k.startswith("AP-")))
    if args.json:
        # JSON has no NaN: an undefined metric (no ground truth in its range) is null.
        print(json.dumps({"bbox": null_nonfinite(res)}, allow_nan=False))
    return res


if __name__ == "__main__":
    run_main(main)
