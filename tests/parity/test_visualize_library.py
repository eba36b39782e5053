"""resdet.detection.visualize in-process: file names, --num, skipped images, records.json."""

from __future__ import annotations

import json
import os

import cv2
import numpy as np

from resdet.detection.mapper import DetectionMapper
from resdet.detection.visualize import visualize


def _records(tmp_path):
    recs = []
    for k, folder in enumerate(("a", "b", "c")):
        os.makedirs(tmp_path / folder)
        path = str(tmp_path / folder / "img.jpg")  # the same stem in three folders
        cv2.imwrite(path, np.full((20, 30, 3), 60 * k, np.uint8))
        recs.append({"file_name": path, "height": 20, "width": 30, "image_id": k,
                     "annotations": [{"bbox": [2, 3, 10, 5], "bbox_mode": 1, "category_id": k,
                                      "iscrowd": 0}]})
    os.remove(recs[1]["file_name"])  # the middle one is missing
    return recs


def test_dataloader_source_pairs_samples_with_records(tmp_path):
    recs = _records(tmp_path)
    mapper = DetectionMapper((40,), 1000, "choice", "none", "BGR")
    samples = (s for s in (mapper(r, i) for i, r in enumerate(recs)) if s is not None)
    out = str(tmp_path / "vis")
    result = visualize("dataloader", recs, ["x", "y", "z"], out, loader_samples=samples)
    assert [e["png"] for e in result["images"]] == ["img.png", "img_1.png"]
    assert [e["image_size"] for e in result["images"]] == [[40, 60], [40, 60]]
    assert result["images"][1]["boxes"] == [[4.0, 6.0, 24.0, 16.0]]  # scaled by 2
    assert result["images"][1]["classes"] == ["z"]
    assert result["skipped"] == [{"file_name": recs[1]["file_name"]}]
    with open(os.path.join(out, "records.json"), encoding="utf-8") as f:
        assert json.load(f) == result
    drawn = cv2.imread(os.path.join(out, "img_1.png"))
    assert drawn.shape == (40, 60, 3) and (drawn[30:, :] == 120).all()  # pixels kept below


def test_annotation_source_and_num(tmp_path):
    recs = _records(tmp_path)
    out = str(tmp_path / "vis")
    result = visualize("annotation", recs, ["x", "y", "z"], out, num=1)
    assert [e["png"] for e in result["images"]] == ["img.png"]
    assert result["images"][0]["boxes"] == [[2.0, 3.0, 12.0, 8.0]]
    assert result["images"][0]["iscrowd"] == [0] and result["skipped"] == []
    assert sorted(os.listdir(out)) == ["img.png", "records.json"]
