#!/usr/bin/env python
"""Evaluate a COCO-format detection results file against a builtin dataset.

    python tools/evaluate.py --dataset coco_2017_val --pred coco_instances_results.json
    python tools/evaluate.py --dataset voc_2007_test --pred results.json            # VOC07 11-point
    python tools/evaluate.py --dataset voc_2007_test --pred results.json --metric coco

Results: a JSON list of ``{"image_id", "category_id", "bbox": [x, y, w, h], "score"}``. For COCO
data, ``category_id`` is the dataset's own id. For VOC data, ``image_id`` is the image name
("000001"), ``category_id`` is 1..20 in the standard class order, and boxes are 0-based as
Detectron2 loads VOC (the XML's xmin/ymin minus one). With ``--json`` the last line printed is
``{"bbox": {"AP": .., "AP50": .., "AP75": .., ...}}`` (percent).
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
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dataset", required=True, help="builtin dataset name, e.g. coco_2017_val")
    p.add_argument("--pred", required=True, help="COCO-format results JSON file")
    p.add_argument("--metric", choices=("coco", "voc07", "voc12"), default=None,
                   help="default: coco for COCO-layout data, the year's VOC metric for VOC data")
    p.add_argument("--backend", choices=("auto", "faster_coco_eval", "pycocotools"),
                   default="auto", help="COCO API implementation (same numbers)")
    p.add_argument("--output", default=None,
                   help="folder for VOC2012 test submission files (that split has no labels)")
    p.add_argument("--json", action="store_true", help="print the metrics as JSON on the last line")
    p.add_argument("--debug", action="store_true", help="show tracebacks")
    return p.parse_args(argv)


def _eval_coco_metric(args, meta: dict, results: list, summary: list) -> dict:
    from resdet.data import catalog
    from resdet.evaluation.coco_evaluation import (
        check_results,
        convert_to_coco_dict,
        evaluate_coco,
        load_coco_gt,
    )

    if meta.get("json_file"):
        catalog.ensure_generated(args.dataset)
        if not os.path.isfile(meta["json_file"]):
            catalog.get_dataset_dicts(args.dataset)  # raises the "not on disk" error
        gt = load_coco_gt(meta["json_file"], args.backend)
        check_results(results, gt.getImgIds(), args.pred, gt.getCatIds())
        return evaluate_coco(gt, results, backend=args.backend, summary=summary)
    if meta.get("year") == 2012 and meta.get("split") == "test":
        raise UserError(f"{args.dataset} has no public labels, so it cannot be scored here; "
                        "write the evaluation-server files with --metric voc12 --output DIR.")
    # VOC (or other non-COCO) data: the loader's records as COCO ground truth.
    dicts = catalog.get_dataset_dicts(args.dataset)
    coco = convert_to_coco_dict(dicts, meta["thing_classes"])
    id_map = {str(im["orig_image_id"]): im["id"] for im in coco["images"]}
    check_results(results, id_map, args.pred, range(1, len(meta["thing_classes"]) + 1))
    results = [dict(r, image_id=id_map[str(r["image_id"])]) for r in results]
    return evaluate_coco(coco, results, backend=args.backend, summary=summary)


def _eval_voc_metric(args, meta: dict, results: list) -> dict:
    from resdet.evaluation.coco_evaluation import check_results
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
        check_results([dict(r, image_id=str(r.get("image_id"))) if isinstance(r, dict) else r
                       for r in results], names, args.pred)
    else:
        check_results(results, {r.get("image_id") for r in results if isinstance(r, dict)},
                      args.pred)
    for i, r in enumerate(results):
        cat = r["category_id"]
        if not (isinstance(cat, int) and 1 <= cat <= num_classes):
            raise UserError(f"{args.pred}: entry {i} has category_id {cat!r}; VOC results use "
                            f"1..{num_classes} in the standard class order.")
        x, y, w, h = r["bbox"]
        evaluator.add_detections(str(r["image_id"]), [(x, y, x + w, y + h)], [r["score"]],
                                 [cat - 1])
    return evaluator.evaluate().get("bbox", {})


def main(argv=None) -> dict:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    from resdet.data import catalog
    from resdet.data.coco import read_json

    meta = catalog.get_metadata(args.dataset)
    metric = args.metric
    if metric is None:
        if meta.get("evaluator_type") == "pascal_voc":
            metric = "voc07" if meta.get("year") == 2007 else "voc12"
        else:
            metric = "coco"
    args.metric = metric
    results = read_json(args.pred)
    if not isinstance(results, list):
        raise UserError(f"{args.pred} must be a JSON list of detections (COCO results format).")
    summary: list = []
    if metric == "coco":
        res = _eval_coco_metric(args, meta, results, summary)
    else:
        res = _eval_voc_metric(args, meta, results)
    for text in summary:
        print(text)
    if res:
        print(f"{args.dataset} ({metric}): " + ", ".join(
            f"{k} {v:.3f}" for k, v in res.items() if not k.startswith("AP-")))
    if args.json:
        print(json.dumps({"bbox": res}))
    return res


if __name__ == "__main__":
    run_main(main)
