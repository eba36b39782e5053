"""Helpers for the torchvision-engine tests: tiny COCO/VOC trees and tiny-run overrides."""

from __future__ import annotations

import os

from resdet.data.catalog import COCO_CATEGORIES
from tests.tiny_datasets import make_tiny_coco, make_tiny_voc
from resdet.data.voc import VOC_CLASSES

# (width, height) of the tiny images: landscape and portrait, for aspect-ratio grouping.
SIZES = ((80, 64), (64, 80), (72, 72))
_RED = (30, 30, 220)  # BGR colour of the object boxes


def write_tiny_coco(root: str) -> None:
    """coco/{train2017,val2017}/*.jpg and coco/annotations/instances_{train,val}2017.json."""
    images = [{"id": k + 1, "file_name": f"{k:012d}.jpg", "width": w, "height": h, "seed": k,
               "objects": [{"category_id": COCO_CATEGORIES[k][0], "bbox": [8 + k, 10, 32, 40],
                            "color": _RED}]}
              for k, (w, h) in enumerate(SIZES)]
    for split in ("train2017", "val2017"):
        make_tiny_coco(root, split, images=images)


def write_tiny_voc(root: str) -> None:
    """VOC2007 (trainval, test) and VOC2012 (trainval, test without labels) trees."""
    for year in (2007, 2012):
        images = {split: [{"name": f"{year}_{s}{k:05d}", "width": w, "height": h, "seed": k + s,
                           "objects": [{"name": VOC_CLASSES[k], "bbox": (6 + k, 8, 44, 52),
                                        "color": _RED}]}
                          for k, (w, h) in enumerate(SIZES)]
                  for s, split in enumerate(("trainval", "test"))}
        make_tiny_voc(root, year, with_test_labels=year == 2007, images=images)


def tiny_opts(output_dir: str, **extra) -> list:
    """Overrides that make any detection config train 2 iterations on tiny images on the CPU."""
    opts = {
        "MODEL.WEIGHTS": "", "MODEL.DEVICE": "cpu",
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
