"""Write tiny COCO and PASCAL VOC datasets in their official layouts, for tests and smoke runs.

No dataset can be downloaded in tests, so they build these under a temporary
``$DETECTRON2_DATASETS``; the files have exactly the structure of the real ones (the same json
keys, XML elements and folders), only few images, so the real loaders, evaluators and trainers run
on them unchanged.
"""

from __future__ import annotations

import json
import os
from typing import Dict, List, Optional, Sequence

import numpy as np

from resdet.data.catalog import COCO_CATEGORIES
from resdet.data.voc import VOC_CLASSES


def _write_jpeg(path: str, rng: np.random.Generator, height: int, width: int,
                boxes: Sequence[Sequence[float]] = ()) -> None:
    import cv2

    img = rng.integers(60, 120, size=(height, width, 3), dtype=np.uint8)
    for x0, y0, x1, y1 in boxes:  # bright rectangles where the objects are
        img[int(y0):int(y1), int(x0):int(x1)] = (40, 200, 220)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    cv2.imwrite(path, img)


def make_tiny_coco(root: str, split: str = "val2017", num_images: int = 4, height: int = 64,
                   width: int = 80, seed: int = 0) -> str:
    """Write ``root/coco/{split}/*.jpg`` and ``root/coco/annotations/instances_{split}.json``.

    Each image has one or two boxes of COCO categories person (1), car (3) or dog (18); the last
    image has none (as some COCO images). Returns the json path.
    """
    rng = np.random.default_rng(seed)
    image_dir = os.path.join(root, "coco", split)
    images, anns = [], []
    for i in range(num_images):
        img_id = 100 + i  # not 1..N, as in COCO
        file_name = f"{img_id:012d}.jpg"
        boxes = []
        if i < num_images - 1 or num_images == 1:
            for _ in range(1 + i % 2):
                w, h = int(rng.integers(12, 30)), int(rng.integers(12, 30))
                x, y = int(rng.integers(0, width - w)), int(rng.integers(0, height - h))
                boxes.append((x, y, x + w, y + h))
                anns.append({"id": 1000 + len(anns), "image_id": img_id,
                             "category_id": int(rng.choice([1, 3, 18])),
                             "bbox": [float(x), float(y), float(w), float(h)],
                             "area": float(w * h), "iscrowd": 0,
                             "segmentation": [[x, y, x + w, y, x + w, y + h, x, y + h]]})
        _write_jpeg(os.path.join(image_dir, file_name), rng, height, width, boxes)
        images.append({"id": img_id, "file_name": file_name, "height": height, "width": width})
    categories = [{"id": c, "name": n, "supercategory": ""} for c, n in COCO_CATEGORIES]
    json_file = os.path.join(root, "coco", "annotations", f"instances_{split}.json")
    os.makedirs(os.path.dirname(json_file), exist_ok=True)
    with open(json_file, "w") as f:
        json.dump({"info": {}, "licenses": [], "images": images, "annotations": anns,
                   "categories": categories}, f, indent=1)
    return json_file


def voc_xml(file_name: str, height: int, width: int, objects: List[dict]) -> str:
    """The text of a VOC annotation file; ``objects`` have name, bbox (1-based ints), difficult."""
    objs = "".join(
        f"""
  <object>
    <name>{o['name']}</name>
    <pose>Unspecified</pose>
    <truncated>0</truncated>
    <difficult>{int(o.get('difficult', 0))}</difficult>
    <bndbox>
      <xmin>{o['bbox'][0]}</xmin>
      <ymin>{o['bbox'][1]}</ymin>
      <xmax>{o['bbox'][2]}</xmax>
      <ymax>{o['bbox'][3]}</ymax>
    </bndbox>
  </object>"""
        for o in objects
    )
    return f"""<annotation>
  <folder>VOC</folder>
  <filename>{file_name}</filename>
  <size>
    <width>{width}</width>
    <height>{height}</height>
    <depth>3</depth>
  </size>
  <segmented>0</segmented>{objs}
</annotation>
"""


def make_tiny_voc(root: str, year: int = 2007, splits: Optional[Dict[str, int]] = None,
                  height: int = 60, width: int = 70, seed: int = 0,
                  with_test_labels: bool = True) -> str:
    """Write ``root/VOC{year}`` with ``Annotations``, ``ImageSets/Main``, ``JPEGImages``.

    Args:
        splits: images per split (default ``{"train": 3, "val": 2, "test": 3}``); ``trainval`` is
            train + val. Image names are 6-digit numbers as in VOC2007.
        with_test_labels: ``False`` writes no XML for the test images (like VOC2012 test).

    Each image has one to three objects (dog, person, car); every third object is "difficult".
    Returns the year's folder.
    """
    splits = dict(splits or {"train": 3, "val": 2, "test": 3})
    rng = np.random.default_rng(seed)
    base = os.path.join(root, f"VOC{year}")
    os.makedirs(os.path.join(base, "ImageSets", "Main"), exist_ok=True)
    os.makedirs(os.path.join(base, "Annotations"), exist_ok=True)
    ids: Dict[str, List[str]] = {}
    n = 0
    k_obj = 0
    for split, count in splits.items():
        ids[split] = []
        for _ in range(count):
            n += 1
            name = f"{n:06d}"
            ids[split].append(name)
            objects = []
            for _ in range(1 + n % 3):
                w, h = int(rng.integers(10, 30)), int(rng.integers(10, 30))
                x0, y0 = int(rng.integers(1, width - w)), int(rng.integers(1, height - h))
                objects.append({"name": str(rng.choice(["dog", "person", "car"])),
                                "bbox": (x0, y0, x0 + w, y0 + h),
                                "difficult": int(k_obj % 3 == 2)})
                k_obj += 1
            _write_jpeg(os.path.join(base, "JPEGImages", name + ".jpg"), rng, height, width,
                        [(o["bbox"][0] - 1, o["bbox"][1] - 1, o["bbox"][2], o["bbox"][3])
                         for o in objects])
            if split != "test" or with_test_labels:
                with open(os.path.join(base, "Annotations", name + ".xml"), "w") as f:
                    f.write(voc_xml(name + ".jpg", height, width, objects))
    if "train" in ids and "val" in ids and "trainval" not in ids:
        ids["trainval"] = ids["train"] + ids["val"]
    for split, names in ids.items():
        with open(os.path.join(base, "ImageSets", "Main", split + ".txt"), "w") as f:
            f.write("".join(x + "\n" for x in names))
    return base


__all__ = ["VOC_CLASSES", "make_tiny_coco", "make_tiny_voc", "voc_xml"]
