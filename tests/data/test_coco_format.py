"""COCO files as other tools write them, normalised once at load (resdet.data.coco_format)."""

import copy
import json
import logging

import pytest

from resdet.data.coco import load_coco_json
from resdet.data.coco_format import image_id_map, normalize_coco_gt, normalize_coco_results
from resdet.errors import UserError

GT = {"images": [{"id": 5, "file_name": "a.jpg", "width": 80, "height": 60},
                 {"id": "frame_b", "file_name": "b.jpg", "width": 80, "height": 60},
                 {"id": 2**40, "file_name": "c.jpg", "width": 80, "height": 60}],
      "annotations": [{"id": 7, "image_id": 5, "category_id": 1, "bbox": [1, 2, 30, 20]},
                      {"image_id": "frame_b", "category_id": 1, "bbox": [0, 0, 4, 5],
                       "area": 99.0, "iscrowd": 1},
                      {"id": 3, "image_id": 2**40, "category_id": 1, "bbox": [0, 0, 10, 10],
                       "iscrowd": 0}],
      "categories": [{"id": 1, "name": "person"}]}


def test_missing_fields_filled_with_one_warning_and_input_untouched(caplog):
    before = copy.deepcopy(GT)
    with caplog.at_level(logging.WARNING, logger="resdet.data"):
        out = normalize_coco_gt(GT, "gt.json")
    assert GT == before
    assert [(a["id"], a["area"], a["iscrowd"]) for a in out["annotations"]] == [
        (7, 600.0, 0), (8, 99.0, 1), (3, 100.0, 0)]  # the missing id numbered after the largest
    assert [r.getMessage() for r in caplog.records] == [
        "gt.json: annotations 2 without 'area' (set to the box area w*h); 1 without 'iscrowd' "
        "(set to 0); 1 without 'id' (numbered), as Detectron2 writes them."]


def test_string_mixed_and_huge_image_ids_map_to_1_to_n_and_results_follow():
    out = normalize_coco_gt(GT, "gt.json")
    assert [(im["id"], im["orig_image_id"]) for im in out["images"]] == [
        (1, 5), (2, "frame_b"), (3, 2**40)]
    assert [a["image_id"] for a in out["annotations"]] == [1, 2, 3]
    ids = image_id_map(out)
    assert ids == {5: 1, "frame_b": 2, 2**40: 3}
    res = [{"image_id": "frame_b", "category_id": 1, "bbox": [0, 0, 4, 5], "score": 1},
           {"image_id": 2**40, "category_id": 1, "bbox": [0, 0, 10, 10], "score": 0.5}]
    assert normalize_coco_results(res, "r.json", ids, ids) == [
        {"image_id": 2, "category_id": 1, "bbox": [0.0, 0.0, 4.0, 5.0], "score": 1.0},
        {"image_id": 3, "category_id": 1, "bbox": [0.0, 0.0, 10.0, 10.0], "score": 0.5}]
    # integer ids within the COCO API's range are kept as they are
    plain = {**GT, "images": GT["images"][:1], "annotations": GT["annotations"][:1]}
    assert image_id_map(normalize_coco_gt(plain, "gt.json")) is None


def test_duplicate_image_id_is_refused_when_mapping():
    gt = {**GT, "images": GT["images"][1:2] * 2}
    with pytest.raises(UserError, match=r"^gt\.json: image id 'frame_b' is listed twice; image "
                       r"ids must be unique\.$"):
        normalize_coco_gt(gt, "gt.json")


def test_the_loader_fills_the_same_fields_and_keeps_the_files_ids(tmp_path, caplog):
    path = tmp_path / "gt.json"
    path.write_text(json.dumps(GT))
    with caplog.at_level(logging.WARNING, logger="resdet.data"):
        dicts, _ = load_coco_json(str(path), str(tmp_path))
    assert [d["image_id"] for d in dicts] == [5, "frame_b", 2**40]  # mixed: file order
    assert [a["iscrowd"] for d in dicts for a in d["annotations"]] == [0, 1, 0]
    warned = [r.getMessage() for r in caplog.records if "without 'area'" in r.getMessage()]
    assert warned == [f"{path}: annotations 2 without 'area' (set to the box area w*h); 1 "
                      "without 'iscrowd' (set to 0), as Detectron2 writes them."]
