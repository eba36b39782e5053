"""Helpers of the d2 tests: tiny datasets in the official layouts (COCO 2017, VOC2007, VOC2012),
overrides that make any config tiny, and tame weights. A uniquely named module (not conftest),
so that it imports the same whichever test folders run together.

This file needs no Detectron2; the test modules skip themselves when it is absent.
"""

from __future__ import annotations

import json
import os
from typing import List, Tuple

import numpy as np

# (class index into the list of names, [x0, y0, x1, y1]) boxes per tiny image, 0-based pixels.
_TINY_OBJECTS = (
    [(0, [8, 10, 60, 70]), (2, [70, 20, 120, 80])],
    [(1, [20, 15, 90, 85])],
    [(2, [5, 5, 50, 50]), (0, [60, 40, 125, 92])],
)
_H, _W = 96, 128


def _image(rng: np.random.Generator, objects) -> np.ndarray:
    img = rng.integers(60, 120, size=(_H, _W, 3), dtype=np.uint8)
    for cls, (x0, y0, x1, y1) in objects:
        img[y0:y1 + 1, x0:x1 + 1] = (200, 40 + 80 * cls, 40)
    return img


def _write_jpg(path: str, img: np.ndarray) -> None:
    import cv2

    os.makedirs(os.path.dirname(path), exist_ok=True)
    assert cv2.imwrite(path, img)


def write_tiny_coco(root: str) -> None:
    """coco/{train2017,val2017}/ and coco/annotations/instances_{train,val}2017.json."""
    from resdet.data.catalog import COCO_CATEGORIES

    cat_ids = [1, 3, 18]  # person, car, dog
    rng = np.random.default_rng(0)
    for split in ("train2017", "val2017"):
        images, annotations = [], []
        for i, objects in enumerate(_TINY_OBJECTS):
            name = f"{i + 1:012d}.jpg"
            _write_jpg(os.path.join(root, "coco", split, name), _image(rng, objects))
            images.append({"id": i + 1, "file_name": name, "height": _H, "width": _W})
            for cls, (x0, y0, x1, y1) in objects:
                w, h = x1 - x0 + 1, y1 - y0 + 1
                annotations.append({"id": len(annotations) + 1, "image_id": i + 1,
                                    "category_id": cat_ids[cls], "bbox": [x0, y0, w, h],
                                    "area": w * h, "iscrowd": 0})
        categories = [{"id": i, "name": n, "supercategory": "thing"} for i, n in COCO_CATEGORIES]
        os.makedirs(os.path.join(root, "coco", "annotations"), exist_ok=True)
        with open(os.path.join(root, "coco", "annotations", f"instances_{split}.json"), "w") as f:
            json.dump({"images": images, "annotations": annotations,
                       "categories": categories}, f)


def _voc_xml(name: str, objects) -> str:
    from resdet.data.voc import VOC_CLASSES

    parts = [f"<annotation><filename>{name}.jpg</filename><size><width>{_W}</width>"
             f"<height>{_H}</height><depth>3</depth></size>"]
    for cls, (x0, y0, x1, y1) in objects:
        # VOC boxes are 1-based (Detectron2's loader subtracts 1 from xmin/ymin).
        parts.append(f"<object><name>{VOC_CLASSES[[14, 6, 11][cls]]}</name><pose>Unspecified"
                     f"</pose><truncated>0</truncated><difficult>0</difficult><bndbox>"
                     f"<xmin>{x0 + 1}</xmin><ymin>{y0 + 1}</ymin>"
                     f"<xmax>{x1 + 1}</xmax><ymax>{y1 + 1}</ymax></bndbox></object>")
    return "".join(parts) + "</annotation>"


def write_tiny_voc(root: str, year: int) -> None:
    """VOC{year}/{Annotations,ImageSets/Main,JPEGImages}; VOC2012's test split has no labels."""
    base = os.path.join(root, f"VOC{year}")
    rng = np.random.default_rng(year)
    names: List[Tuple[str, bool]] = []
    for i, objects in enumerate(_TINY_OBJECTS):
        name = f"{year}_{i:06d}"
        _write_jpg(os.path.join(base, "JPEGImages", name + ".jpg"), _image(rng, objects))
        os.makedirs(os.path.join(base, "Annotations"), exist_ok=True)
        with open(os.path.join(base, "Annotations", name + ".xml"), "w") as f:
            f.write(_voc_xml(name, objects))
        names.append(name)
    test_names = [f"{year}_test_{i}" for i in range(2)]
    for name in test_names:
        _write_jpg(os.path.join(base, "JPEGImages", name + ".jpg"), _image(rng, _TINY_OBJECTS[0]))
        if year == 2007:
            with open(os.path.join(base, "Annotations", name + ".xml"), "w") as f:
                f.write(_voc_xml(name, _TINY_OBJECTS[0]))
    main = os.path.join(base, "ImageSets", "Main")
    os.makedirs(main, exist_ok=True)
    splits = {"train": names[:2], "val": names[2:], "trainval": names, "test": test_names}
    for split, ids in splits.items():
        with open(os.path.join(main, f"{split}.txt"), "w") as f:
            f.write("".join(i + "\n" for i in ids))


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
