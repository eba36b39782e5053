"""Write tiny COCO and PASCAL VOC datasets in their official layouts, for tests and smoke runs.

No dataset can be downloaded in tests, so they build these under a temporary
``$DETECTRON2_DATASETS``; the files have exactly the structure of the real ones (the same json
keys, XML elements and folders), only few images, so the real loaders, evaluators and trainers run
on them unchanged.

By default the images and their boxes are drawn at random; the ``images`` keyword of
:func:`make_tiny_coco` and :func:`make_tiny_voc` spells out each image (name, size, pixel seed)
and its objects (box, class, colour) instead.
"""

from __future__ import annotations

import json
import os
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple, Union

import numpy as np

from resdet.data.catalog import COCO_CATEGORIES
from resdet.data.voc import VOC_CLASSES

# BGR colour of the bright rectangles painted where the objects are, unless an object has its own.
BOX_COLOR: Tuple[int, int, int] = (40, 200, 220)

Seed = Union[int, np.random.Generator]


def _write_jpeg(path: str, rng: np.random.Generator, height: int, width: int,
                regions: Sequence[Tuple[Sequence[float], Sequence[int]]] = ()) -> None:
    """A noise image (values 60..119) with each ``((x0, y0, x1, y1), bgr)`` region filled.

    ``x1`` and ``y1`` are exclusive, as in a slice.
    """
    import cv2

    img = rng.integers(60, 120, size=(height, width, 3), dtype=np.uint8)
    for (x0, y0, x1, y1), color in regions:
        img[int(y0):int(y1), int(x0):int(x1)] = color
    os.makedirs(os.path.dirname(path), exist_ok=True)
    if not cv2.imwrite(path, img):
        raise OSError(f"Could not write the image {path}.")


def _pixel_rng(spec: Mapping[str, Any], rng: np.random.Generator) -> np.random.Generator:
    """The image's own generator where ``spec`` has a ``seed``, else the shared one."""
    return np.random.default_rng(spec["seed"]) if "seed" in spec else rng


def _random_coco_objects(rng: np.random.Generator, count: int, height: int,
                         width: int) -> List[Dict[str, Any]]:
    """``count`` boxes of person (1), car (3) or dog (18), as ``make_tiny_coco`` draws them."""
    objects = []
    for _ in range(count):
        w, h = int(rng.integers(12, 30)), int(rng.integers(12, 30))
        x, y = int(rng.integers(0, width - w)), int(rng.integers(0, height - h))
        objects.append({"category_id": int(rng.choice([1, 3, 18])), "bbox": [x, y, w, h]})
    return objects


def make_tiny_coco(root: str, split: str = "val2017", num_images: int = 4, height: int = 64,
                   width: int = 80, seed: Seed = 0, *,
                   images: Optional[Sequence[Mapping[str, Any]]] = None) -> str:
    """Write ``root/coco/{split}/*.jpg`` and ``root/coco/annotations/instances_{split}.json``.

    By default each image has one or two boxes of COCO categories person (1), car (3) or dog
    (18); the last image has none (as some COCO images). Returns the json path.

    Args:
        root: the dataset root (``$DETECTRON2_DATASETS``).
        split: the image folder and json suffix, e.g. ``"train2017"``.
        num_images: how many random images (ignored with ``images``).
        height: the image height (for images that do not give their own).
        width: the image width (for images that do not give their own).
        seed: the generator of the random boxes and pixels: an int, or a ``numpy`` Generator to
            continue one (e.g. from one split into the next).
        images: the images themselves instead of random ones; each a dict with optional keys
            ``id`` (default 100 + index), ``file_name`` (default the 12-digit id + ``.jpg``),
            ``height``, ``width``, ``seed`` (the image's own pixel generator; default the shared
            one) and ``objects`` (default none): dicts with ``category_id``, ``bbox`` (COCO
            ``[x, y, w, h]`` in pixels, painted as ``[y:y + h, x:x + w]``) and optional
            ``color`` (BGR, default :data:`BOX_COLOR`).
    """
    rng = np.random.default_rng(seed)
    image_dir = os.path.join(root, "coco", split)
    specs = images if images is not None else [{}] * num_images
    out_images, anns = [], []
    for i, spec in enumerate(specs):
        img_id = spec.get("id", 100 + i)  # not 1..N, as in COCO
        file_name = spec.get("file_name", f"{img_id:012d}.jpg")
        h, w = spec.get("height", height), spec.get("width", width)
        if images is not None:
            objects = list(spec.get("objects", ()))
        elif i < num_images - 1 or num_images == 1:
            objects = _random_coco_objects(rng, 1 + i % 2, h, w)
        else:
            objects = []
        regions = []
        for o in objects:
            x, y, bw, bh = o["bbox"]
            regions.append(((x, y, x + bw, y + bh), o.get("color", BOX_COLOR)))
            anns.append({"id": 1000 + len(anns), "image_id": img_id,
                         "category_id": int(o["category_id"]),
                         "bbox": [float(x), float(y), float(bw), float(bh)],
                         "area": float(bw * bh), "iscrowd": 0,
                         "segmentation": [[x, y, x + bw, y, x + bw, y + bh, x, y + bh]]})
        _write_jpeg(os.path.join(image_dir, file_name), _pixel_rng(spec, rng), h, w, regions)
        out_images.append({"id": img_id, "file_name": file_name, "height": h, "width": w})
    categories = [{"id": c, "name": n, "supercategory": ""} for c, n in COCO_CATEGORIES]
    json_file = os.path.join(root, "coco", "annotations", f"instances_{split}.json")
    os.makedirs(os.path.dirname(json_file), exist_ok=True)
    with open(json_file, "w") as f:
        json.dump({"info": {}, "licenses": [], "images": out_images, "annotations": anns,
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


def _random_voc_objects(rng: np.random.Generator, count: int, first: int, height: int,
                        width: int) -> List[Dict[str, Any]]:
    """``count`` objects (dog, person, car) as ``make_tiny_voc`` draws them; ``first`` is the
    dataset-wide index of the first (every third object is difficult)."""
    objects = []
    for k in range(first, first + count):
        w, h = int(rng.integers(10, 30)), int(rng.integers(10, 30))
        x0, y0 = int(rng.integers(1, width - w)), int(rng.integers(1, height - h))
        objects.append({"name": str(rng.choice(["dog", "person", "car"])),
                        "bbox": (x0, y0, x0 + w, y0 + h), "difficult": int(k % 3 == 2)})
    return objects


def make_tiny_voc(root: str, year: int = 2007, splits: Optional[Dict[str, int]] = None,
                  height: int = 60, width: int = 70, seed: Seed = 0,
                  with_test_labels: bool = True, *,
                  images: Optional[Mapping[str, Sequence[Mapping[str, Any]]]] = None) -> str:
    """Write ``root/VOC{year}`` with ``Annotations``, ``ImageSets/Main``, ``JPEGImages``.

    By default each image has one to three objects (dog, person, car); every third object is
    "difficult". Returns the year's folder.

    Args:
        root: the dataset root (``$DETECTRON2_DATASETS``).
        year: the ``VOC{year}`` folder.
        splits: images per split (default ``{"train": 3, "val": 2, "test": 3}``); ``trainval`` is
            train + val. Image names are 6-digit numbers as in VOC2007. Ignored with ``images``.
        height: the image height (for images that do not give their own).
        width: the image width (for images that do not give their own).
        seed: the generator of the random boxes and pixels: an int, or a ``numpy`` Generator to
            continue one.
        with_test_labels: ``False`` writes no XML for the test images (like VOC2012 test).
        images: the images of each split themselves instead of random ones (``trainval`` is
            still train + val where not given); each a dict with optional keys ``name`` (the
            file stem; default the 6-digit running number), ``height``, ``width``, ``seed`` (the
            image's own pixel generator; default the shared one) and ``objects`` (default none):
            dicts as :func:`voc_xml` takes (``bbox`` 1-based ``(xmin, ymin, xmax, ymax)``,
            painted as ``[ymin - 1:ymax, xmin - 1:xmax]``), with an optional ``color`` (BGR,
            default :data:`BOX_COLOR`).
    """
    if images is None:
        plan = {s: [{}] * c for s, c in (splits or {"train": 3, "val": 2, "test": 3}).items()}
    else:
        plan = dict(images)
    rng = np.random.default_rng(seed)
    base = os.path.join(root, f"VOC{year}")
    os.makedirs(os.path.join(base, "ImageSets", "Main"), exist_ok=True)
    os.makedirs(os.path.join(base, "Annotations"), exist_ok=True)
    ids: Dict[str, List[str]] = {}
    n = 0
    k_obj = 0
    for split, specs in plan.items():
        ids[split] = []
        for spec in specs:
            n += 1
            name = spec.get("name", f"{n:06d}")
            ids[split].append(name)
            h, w = spec.get("height", height), spec.get("width", width)
            if images is not None:
                objects = list(spec.get("objects", ()))
            else:
                objects = _random_voc_objects(rng, 1 + n % 3, k_obj, h, w)
                k_obj += len(objects)
            _write_jpeg(os.path.join(base, "JPEGImages", name + ".jpg"), _pixel_rng(spec, rng),
                        h, w, [((o["bbox"][0] - 1, o["bbox"][1] - 1, o["bbox"][2], o["bbox"][3]),
                                o.get("color", BOX_COLOR)) for o in objects])
            if split != "test" or with_test_labels:
                with open(os.path.join(base, "Annotations", name + ".xml"), "w") as f:
                    f.write(voc_xml(name + ".jpg", h, w, objects))
    if "train" in ids and "val" in ids and "trainval" not in ids:
        ids["trainval"] = ids["train"] + ids["val"]
    for split, names in ids.items():
        with open(os.path.join(base, "ImageSets", "Main", split + ".txt"), "w") as f:
            f.write("".join(x + "\n" for x in names))
    return base


__all__ = ["BOX_COLOR", "VOC_CLASSES", "make_tiny_coco", "make_tiny_voc", "voc_xml"]
