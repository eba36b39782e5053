"""Helpers for the torchvision-engine tests: tiny COCO/VOC trees and tiny-run overrides."""

from __future__ import annotations

import json
import os
from typing import List, Tuple

import cv2
import numpy as np

from resdet.data.catalog import COCO_CATEGORIES
from resdet.data.voc import VOC_CLASSES

# (width, height) of the tiny images: landscape and portrait, for aspect-ratio grouping.
SIZES = ((80, 64), (64, 80), (72, 72))


def _image(path: str, w: int, h: int, boxes: List[Tuple[int, int, int, int]], seed: int) -> None:
    rng = np.random.default_rng(seed)
    img = rng.integers(60, 120, size=(h, w, 3), dtype=np.uint8)
    for x0, y0, x1, y1 in boxes:
        img[y0:y1, x0:x1] = (30, 30, 220)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    cv2.imwrite(path, img)


def write_tiny_coco(root: str) -> None:
    """coco/{train2017,val2017}/*.jpg and coco/annotations/instances_{train,val}2017.json."""
    cats = [{"id": i, "name": n} for i, n in COCO_CATEGORIES]
    for split in ("train2017", "val2017"):
        images, anns = [], []
        for k, (w, h) in enumerate(SIZES):
            box = (8 + k, 10, 40 + k, 50)
            name = f"{k:012d}.jpg"
            _image(os.path.join(root, "coco", split, name), w, h, [box], k)
            images.append({"id": k + 1, "file_name": name, "width": w, "height": h})
            anns.append({"id": k + 1, "image_id": k + 1, "category_id": COCO_CATEGORIES[k][0],
                         "bbox": [box[0], box[1], box[2] - box[0], box[3] - box[1]],
                         "area": float((box[2] - box[0]) * (box[3] - box[1])), "iscrowd": 0})
        os.makedirs(os.path.join(root, "coco", "annotations"), exist_ok=True)
        with open(os.path.join(root, "coco", "annotations", f"instances_{split}.json"), "w") as f:
            json.dump({"images": images, "annotations": anns, "categories": cats}, f)


def write_tiny_voc(root: str) -> None:
    """VOC2007 (trainval, test) and VOC2012 (trainval, test without labels) trees."""
    for year, splits in ((2007, ("trainval", "test")), (2012, ("trainval", "test"))):
        base = os.path.join(root, f"VOC{year}")
        os.makedirs(os.path.join(base, "ImageSets", "Main"), exist_ok=True)
        os.makedirs(os.path.join(base, "Annotations"), exist_ok=True)
        for s, split in enumerate(splits):
            ids = []
            for k, (w, h) in enumerate(SIZES):
                fid = f"{year}_{s}{k:05d}"
                ids.append(fid)
                box = (6 + k, 8, 44, 52)
                _image(os.path.join(base, "JPEGImages", fid + ".jpg"), w, h, [box], k + s)
                if year == 2012 and split == "test":
                    continue  # no public labels
                xml = (f"<annotation><filename>{fid}.jpg</filename><size><width>{w}</width>"
                       f"<height>{h}</height><depth>3</depth></size><object><name>"
                       f"{VOC_CLASSES[k]}</name><difficult>0</difficult><bndbox><xmin>{box[0]}"
                       f"</xmin><ymin>{box[1]}</ymin><xmax>{box[2]}</xmax><ymax>{box[3]}</ymax>"
                       "</bndbox></object></annotation>")
                with open(os.path.join(base, "Annotations", fid + ".xml"), "w") as f:
                    f.write(xml)
            with open(os.path.join(base, "ImageSets", "Main", split + ".txt"), "w") as f:
                f.write("\n".join(ids) + "\n")


def tiny_opts(output_dir: str, **extra) -> list:
    """Overrides that make any detection config train 2 iterations on tiny images on the CPU."""
    opts = {
        "MODEL.WEIGHTS": "", "MODEL.DEVICE": "cpu", "MODEL.RESDET.VGG_FC_DIM": "64",
        "INPUT.MIN_SIZE_TRAIN": "(64,)", "INPUT.MAX_SIZE_TRAIN": "96",
        "INPUT.MIN_SIZE_TEST": "64", "INPUT.MAX_SIZE_TEST": "96",
        "MODEL.RPN.PRE_NMS_TOPK_TRAIN": "200", "MODEL.RPN.POST_NMS_TOPK_TRAIN": "50",
        "MODEL.RPN.PRE_NMS_TOPK_TEST": "100", "MODEL.RPN.POST_NMS_TOPK_TEST": "20",
        "MODEL.ROI_HEADS.BATCH_SIZE_PER_IMAGE": "16",
        "SOLVER.MAX_ITER": "2", "SOLVER.IMS_PER_BATCH": "2", "SOLVER.STEPS": "(1,)",
        "SOLVER.WARMUP_ITERS": "0", "SOLVER.CHECKPOINT_PERIOD": "0",
        "DATALOADER.NUM_WORKERS": "0", "TEST.EVAL_PERIOD": "0", "SEED": "1",
        "OUTPUT_DIR": output_dir,
    }
    opts.update({k: str(v) for k, v in extra.items()})
    return [x for kv in opts.items() for x in kv]


def train_args(config_file: str, opts: list, **kw):
    """The parsed command line ``resdet.tvdet.train.main`` expects."""
    import argparse

    base = dict(config_file=config_file, opts=opts, eval_only=False, resume=False, num_gpus=1,
                num_machines=1, machine_rank=0, dist_url="auto", debug=False, engine=None)
    base.update(kw)
    return argparse.Namespace(**base)


REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def config_path(name: str) -> str:
    """Absolute path of ``configs/<name>`` (tests may run from any directory)."""
    return os.path.join(REPO, "configs", name)
