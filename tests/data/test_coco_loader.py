"""COCO-layout loading: Detectron2's dicts, and one clear sentence per bad record."""

import json
import logging
import os

import pytest

from resdet.data import get_dataset_dicts
from resdet.data.coco import load_coco_json
from tests.tiny_datasets import make_tiny_coco
from resdet.errors import UserError


@pytest.fixture
def coco_root(tmp_path, monkeypatch):
    monkeypatch.setenv("DETECTRON2_DATASETS", str(tmp_path))
    make_tiny_coco(str(tmp_path), "val2017", num_images=4)
    return tmp_path


def _edit(root, fn):
    path = os.path.join(root, "coco", "annotations", "instances_val2017.json")
    with open(path) as f:
        data = json.load(f)
    fn(data)
    with open(path, "w") as f:
        json.dump(data, f)
    return path


def test_loads_detectron2_dicts(coco_root):
    dicts = get_dataset_dicts("coco_2017_val")
    assert [d["image_id"] for d in dicts] == [100, 101, 102, 103]
    assert dicts[0]["file_name"] == os.path.join(str(coco_root), "coco", "val2017",
                                                 "000000000100.jpg")
    assert (dicts[0]["height"], dicts[0]["width"]) == (64, 80)
    assert [len(d["annotations"]) for d in dicts] == [1, 2, 1, 0]  # empty image kept
    raw = json.load(open(os.path.join(coco_root, "coco/annotations/instances_val2017.json")))
    cat_to_contiguous = {1: 0, 3: 2, 18: 16}  # COCO ids -> contiguous (80 classes)
    a = dicts[1]["annotations"][0]
    r = [x for x in raw["annotations"] if x["image_id"] == 101][0]
    assert a == {"iscrowd": 0, "bbox": r["bbox"], "bbox_mode": 1,
                 "category_id": cat_to_contiguous[r["category_id"]]}


def test_invalid_json_names_file_and_line(coco_root):
    path = os.path.join(coco_root, "coco", "annotations", "instances_val2017.json")
    with open(path, "w") as f:
        f.write('{\n  "images": [\n    {"id": 1,\n')
    with pytest.raises(UserError, match=r"instances_val2017.json is not valid JSON \(line 4"):
        get_dataset_dicts("coco_2017_val")


@pytest.mark.parametrize("bbox,why", [
    ([10, 10, -5, 8], "non-positive size"),
    ([10, 10, 0, 8], "non-positive size"),
    ([10, float("nan"), 5, 8], "non-finite box"),
    ([85, 10, 30, 8], "with no area inside the 80x64 image"),
])
def test_bad_box_is_skipped_with_warning(coco_root, caplog, bbox, why):
    _edit(coco_root, lambda d: d["annotations"][0].update(bbox=bbox))
    with caplog.at_level(logging.WARNING, logger="resdet.data"):
        dicts = get_dataset_dicts("coco_2017_val")
    assert sum(len(d["annotations"]) for d in dicts) == 3  # one of 4 skipped
    msg = caplog.records[0].getMessage()
    assert "instances_val2017.json: annotation id 1000" in msg and why in msg
    assert "000000000100.jpg" in msg and msg.endswith("skipped.")
    assert "1 problem(s) skipped" in caplog.records[-1].getMessage()
    with pytest.raises(UserError, match=f"annotation id 1000 .*{why}.*SKIP_BAD_SAMPLES"):
        get_dataset_dicts("coco_2017_val", strict=True)


def test_box_crossing_the_border_is_clipped_and_kept(coco_root, caplog):
    # Issue 12, case b13: a box run 14 px past the right border keeps its visible part, as
    # Detectron2's mapper and torchvision's references do; only boxes with no area go.
    _edit(coco_root, lambda d: d["annotations"][0].update(bbox=[60, 10, 34, 30]))
    with caplog.at_level(logging.INFO, logger="resdet.data"):
        dicts = get_dataset_dicts("coco_2017_val")
    assert sum(len(d["annotations"]) for d in dicts) == 4
    assert dicts[0]["annotations"][0]["bbox"] == [60.0, 10.0, 20.0, 30.0]  # 80 px wide image
    assert not [r for r in caplog.records if r.levelname == "WARNING"]
    assert "1 box(es) crossing the image border were clipped to it and kept" in caplog.text


def test_unknown_category_and_image(coco_root, caplog):
    def edit(d):
        d["annotations"][0]["category_id"] = 12  # a removed COCO id
        d["annotations"][1]["image_id"] = 999
    _edit(coco_root, edit)
    with caplog.at_level(logging.WARNING, logger="resdet.data"):
        dicts = get_dataset_dicts("coco_2017_val")
    msgs = [r.getMessage() for r in caplog.records]
    assert "annotation id 1000 (image" in msgs[0] and "unknown category_id 12" in msgs[0]
    assert "annotation id 1001 refers to image id 999, which is not in 'images'" in msgs[1]
    assert sum(len(d["annotations"]) for d in dicts) == 2


def test_missing_keys_and_missing_dataset(coco_root, tmp_path, monkeypatch):
    path = _edit(coco_root, lambda d: d.pop("annotations"))
    with pytest.raises(UserError, match="has no 'annotations' list"):
        load_coco_json(path, str(coco_root))
    monkeypatch.setenv("DETECTRON2_DATASETS", str(tmp_path / "elsewhere"))
    with pytest.raises(UserError, match=r"coco_2017_train is not on disk: .*elsewhere.*"
                                        r"instances_train2017.json does not exist.*README"):
        get_dataset_dicts("coco_2017_train")


def test_malformed_fields_do_not_crash(coco_root, caplog):
    def edit(d):
        d["annotations"][0]["category_id"] = [1]
        d["annotations"][1]["image_id"] = {"x": 1}
        d["annotations"][2]["iscrowd"] = "yes"
        d["annotations"][3]["bbox"] = [1, 2, "w", 4]
        d["images"][3]["id"] = [103]
    _edit(coco_root, edit)
    with caplog.at_level(logging.WARNING, logger="resdet.data"):
        dicts = get_dataset_dicts("coco_2017_val")
    msgs = [r.getMessage() for r in caplog.records]
    assert "images[3] has an 'id' that is not an integer" in msgs[0]
    assert "annotation id 1000" in msgs[1] and "unknown category_id [1]" in msgs[1]
    assert "annotation id 1001 refers to image id {'x': 1}" in msgs[2]
    assert "annotation id 1002" in msgs[3] and "iscrowd 'yes'" in msgs[3]
    assert "annotation id 1003" in msgs[4] and "non-numeric bbox" in msgs[4]
    assert len(dicts) == 3 and sum(len(d["annotations"]) for d in dicts) == 0
