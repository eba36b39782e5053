"""Helpers of the d2 tests: tiny datasets in the official layouts (COCO 2017, VOC2007, VOC2012),
overrides that make any config tiny, and tame weights. A uniquely named module (not conftest),
so that it imports the same whichever test folders run together.

This file needs no Detectron2; the test modules skip themselves when it is absent.
"""

from __future__ import annotations

from typing import Any, Dict, List, Sequence, Tuple

import numpy as np

from tests.tiny_datasets import make_tiny_coco, make_tiny_voc
from resdet.data.voc import VOC_CLASSES

# (class index into the list of names, [x0, y0, x1, y1]) boxes per tiny image, 0-based pixels.
_TINY_OBJECTS = (
    [(0, [8, 10, 60, 70]), (2, [70, 20, 120, 80])],
    [(1, [20, 15, 90, 85])],
    [(2, [5, 5, 50, 50]), (0, [60, 40, 125, 92])],
)
_H, _W = 96, 128
_COCO_IDS = (1, 3, 18)  # person, car, dog
_VOC_NAMES = tuple(VOC_CLASSES[i] for i in (14, 6, 11))  # the same classes in VOC


def _color(cls: int) -> Tuple[int, int, int]:
    """The BGR colour of the boxes of a class."""
    return (200, 40 + 80 * cls, 40)


def write_tiny_coco(root: str) -> None:
    """coco/{train2017,val2017}/ and coco/annotations/instances_{train,val}2017.json."""
    images = [{"id": i + 1, "file_name": f"{i + 1:012d}.jpg",
               "objects": [{"category_id": _COCO_IDS[cls], "color": _color(cls),
                            "bbox": [x0, y0, x1 - x0 + 1, y1 - y0 + 1]}
                           for cls, (x0, y0, x1, y1) in objects]}
              for i, objects in enumerate(_TINY_OBJECTS)]
    rng = np.random.default_rng(0)  # val2017's pixels continue train2017's generator
    for split in ("train2017", "val2017"):
        make_tiny_coco(root, split, height=_H, width=_W, seed=rng, images=images)


def _voc_image(name: str, objects: Sequence[Tuple[int, List[int]]]) -> Dict[str, Any]:
    """A ``make_tiny_voc`` image of ``objects`` (as in ``_TINY_OBJECTS``).

    VOC boxes are 1-based (Detectron2's loader subtracts 1 from xmin/ymin).
    """
    return {"name": name,
            "objects": [{"name": _VOC_NAMES[cls], "color": _color(cls),
                         "bbox": (x0 + 1, y0 + 1, x1 + 1, y1 + 1)}
                        for cls, (x0, y0, x1, y1) in objects]}


def write_tiny_voc(root: str, year: int) -> None:
    """VOC{year}/{Annotations,ImageSets/Main,JPEGImages}; VOC2012's test split has no labels."""
    labelled = [_voc_image(f"{year}_{i:06d}", objects) for i, objects in enumerate(_TINY_OBJECTS)]
    test = [_voc_image(f"{year}_test_{i}", _TINY_OBJECTS[0]) for i in range(2)]
    # train + val make trainval
    make_tiny_voc(root, year, height=_H, width=_W, seed=year, with_test_labels=year == 2007,
                  images={"train": labelled[:2], "val": labelled[2:], "test": test})


# Overrides that make any detection config tiny: small images, few proposals, 2 iterations, CPU.
TINY_OPTS = [
    "MODEL.DEVICE", "cpu",
    "MODEL.WEIGHTS", "",
    "INPUT.MIN_SIZE_TRAIN", "(64,)",
    "INPUT.MAX_SIZE_TRAIN", "96",
    "INPUT.MIN_SIZE_TEST", "64",
    "INPUT.MAX_SIZE_TEST", "96",
    "SOLVER.MAX_ITER", "2",
    "SOLVER.IMS_PER_BATCH", "2",
    "SOLVER.REFERENCE_WORLD_SIZE", "0",
    "SOLVER.WARMUP_ITERS", "1",
    "SOLVER.CHECKPOINT_PERIOD", "100000",
    "DATALOADER.NUM_WORKERS", "0",
    "MODEL.RPN.PRE_NMS_TOPK_TRAIN", "200",
    "MODEL.RPN.POST_NMS_TOPK_TRAIN", "16",
    "MODEL.RPN.PRE_NMS_TOPK_TEST", "100",
    "MODEL.RPN.POST_NMS_TOPK_TEST", "8",
    "MODEL.ROI_HEADS.BATCH_SIZE_PER_IMAGE", "4",
    "TEST.DETECTIONS_PER_IMAGE", "10",
    "TEST.EVAL_PERIOD", "0",
]


def write_tame_weights(path: str, cfg_text: str) -> str:
    """A small partial resdet-format weight file that keeps a randomly initialised network tame.

    Real runs start from ImageNet weights; from He initialisation with frozen BN a 100-layer
    ResNet's activations explode and training diverges at once. Zero BN scale on each residual
    branch's last layer (and a small stem scale) makes every block start as the identity, as
    ImageNet weights roughly do. Only those norm tensors are written (a few KB); all else keeps
    its initialisation, which also exercises partial loading.
    """
    import torch
    import yaml

    from resdet.modeling import arch_info

    model_cfg = yaml.safe_load(cfg_text)["MODEL"]
    arch = model_cfg["RESDET"]["ARCH"]
    tensors = {}
    if arch_info(arch)["family"] == "vgg":
        from resdet.modeling import build_backbone

        w = build_backbone(arch, out_features=("conv5_3",)).conv1_1.weight.detach()
        tensors["conv1_1.weight"] = w * 0.02  # inputs are 0-255 pixels minus the mean
    else:
        from resdet.modeling import build_backbone

        net = build_backbone(arch, out_features=("res5",), norm="FrozenBN")
        last = "conv3" if arch_info(arch)["block"] == "bottleneck" else "conv2"
        for key, value in net.state_dict().items():
            if key == "stem.conv1.norm.weight":
                tensors[key] = torch.full_like(value, 0.05)
            elif key.endswith(f"{last}.norm.weight"):
                tensors[key] = torch.zeros_like(value)
    torch.save({"model": tensors, "arch": arch}, path)
    return path
