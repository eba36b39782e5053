"""PASCAL VOC loading as Detectron2 does it (0-based boxes, difficult kept), and bad XML."""

import logging
import os

import pytest

from resdet.data import get_dataset_dicts, get_metadata
from tests.tiny_datasets import make_tiny_voc, voc_xml
from resdet.data.voc import VOC_CLASSES
from resdet.errors import UserError


@pytest.fixture
def voc_root(tmp_path, monkeypatch):
    monkeypatch.setenv("DETECTRON2_DATASETS", str(tmp_path))
    make_tiny_voc(str(tmp_path), 2007)
    return tmp_path


def _write_xml(root, name, text):
    with open(os.path.join(root, "VOC2007", "Annotations", name + ".xml"), "w") as f:
        f.write(text)


def test_loads_like_detectron2(voc_root):
    _write_xml(voc_root, "000001", voc_xml("000001.jpg", 60, 70, [
        {"name": "dog", "bbox": (1, 2, 30, 40)},
        {"name": "person", "bbox": (5, 6, 20, 21), "difficult": 1}]))
    dicts = get_dataset_dicts("voc_2007_train")
    assert [d["image_id"] for d in dicts] == ["000001", "000002", "000003"]
    d = dicts[0]
    assert d["file_name"].endswith(os.path.join("VOC2007", "JPEGImages", "000001.jpg"))
    assert (d["height"], d["width"]) == (60, 70)
    assert d["annotations"] == [
        {"category_id": 11, "bbox": [0.0, 1.0, 30.0, 40.0], "bbox_mode": 0, "iscrowd": 0,
         "difficult": 0},
        {"category_id": 14, "bbox": [4.0, 5.0, 20.0, 21.0], "bbox_mode": 0, "iscrowd": 0,
         "difficult": 1},
    ]
    assert len(get_dataset_dicts("voc_2007_trainval")) == 5
    meta = get_metadata("voc_2007_test")
    assert meta["thing_classes"] == list(VOC_CLASSES) and VOC_CLASSES[0] == "aeroplane"
    assert (meta["year"], meta["split"], meta["evaluator_type"]) == (2007, "test", "pascal_voc")


def test_malformed_xml_names_file_and_line(voc_root, caplog):
    _write_xml(voc_root, "000002", "<annotation>\n  <size><width>7</width>\n</annotation>\n")
    with caplog.at_level(logging.WARNING, logger="resdet.data"):
        dicts = get_dataset_dicts("voc_2007_train")
    assert [d["image_id"] for d in dicts] == ["000001", "000003"]
    msg = caplog.records[0].getMessage()
    assert "000002.xml is not valid XML (line 3" in msg
    with pytest.raises(UserError, match="000002.xml is not valid XML"):
        get_dataset_dicts("voc_2007_train", strict=True)


@pytest.mark.parametrize("objects,why", [
    ([{"name": "unicorn", "bbox": (1, 1, 9, 9)}], "unknown class <name> 'unicorn'"),
    ([{"name": "dog", "bbox": (1, 1, "x", 9)}], "<bndbox> needs numeric"),
    ([{"name": "dog", "bbox": (20, 1, 10, 9)}], "non-positive size"),
    ([{"name": "dog", "bbox": (80, 1, 90, 9)}], "with no area inside the 70x60 image"),
])
def test_bad_object_skipped_with_element(voc_root, caplog, objects, why):
    _write_xml(voc_root, "000001", voc_xml("000001.jpg", 60, 70, objects + [
        {"name": "cat", "bbox": (2, 2, 8, 8)}]))
    with caplog.at_level(logging.WARNING, logger="resdet.data"):
        d = get_dataset_dicts("voc_2007_train")[0]
    assert [a["category_id"] for a in d["annotations"]] == [VOC_CLASSES.index("cat")]
    msg = caplog.records[0].getMessage()
    assert "000001.xml: element <object> #1" in msg and why in msg


def test_box_past_the_border_clipped_and_kept(voc_root):
    _write_xml(voc_root, "000001", voc_xml("000001.jpg", 60, 70, [
        {"name": "dog", "bbox": (41, 11, 84.5, 30)}]))
    (a,) = get_dataset_dicts("voc_2007_train")[0]["annotations"]
    assert a["bbox"] == [40.0, 10.0, 70.0, 30.0]


def test_missing_xml_and_missing_size(voc_root, caplog):
    os.remove(os.path.join(voc_root, "VOC2007", "Annotations", "000003.xml"))
    _write_xml(voc_root, "000002", "<annotation><size><width>7</width></size></annotation>")
    with caplog.at_level(logging.WARNING, logger="resdet.data"):
        assert len(get_dataset_dicts("voc_2007_train")) == 1
    msgs = " | ".join(r.getMessage() for r in caplog.records)
    assert "000002.xml: element <size> needs positive <width> and <height>" in msgs
    assert "000003.xml does not exist" in msgs


def test_voc2012_test_without_labels(tmp_path, monkeypatch):
    monkeypatch.setenv("DETECTRON2_DATASETS", str(tmp_path))
    make_tiny_voc(str(tmp_path), 2012, {"test": 2}, with_test_labels=False)
    dicts = get_dataset_dicts("voc_2012_test")
    assert [(d["image_id"], d["height"], d["width"], d["annotations"]) for d in dicts] == [
        ("000001", 60, 70, []), ("000002", 60, 70, [])]
    with pytest.raises(UserError, match=r"voc_2012_val is not on disk.*ImageSets"):
        get_dataset_dicts("voc_2012_val")
