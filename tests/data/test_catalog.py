"""The dataset catalog: builtin names, paths under $DETECTRON2_DATASETS, registration."""

import os

import pytest

from resdet.data import dataset_root, get_dataset_dicts, get_metadata, list_datasets, register
from resdet.errors import UserError


def test_builtin_names_and_paths(tmp_path, monkeypatch):
    names = set(list_datasets())
    expected = {"coco_2017_train", "coco_2017_val", "shapes_train", "shapes_val"} | {
        f"voc_{y}_{s}" for y in (2007, 2012) for s in ("trainval", "train", "val", "test")}
    assert expected <= names
    monkeypatch.setenv("DETECTRON2_DATASETS", str(tmp_path))
    assert dataset_root() == str(tmp_path)
    meta = get_metadata("coco_2017_train")
    assert meta["json_file"] == os.path.join(str(tmp_path), "coco", "annotations",
                                             "instances_train2017.json")
    assert meta["image_root"] == os.path.join(str(tmp_path), "coco", "train2017")
    assert len(meta["thing_classes"]) == 80 and meta["thing_classes"][0] == "person"
    assert meta["thing_dataset_id_to_contiguous_id"][90] == 79
    assert get_metadata("voc_2012_val")["dirname"] == os.path.join(str(tmp_path), "VOC2012")
    monkeypatch.delenv("DETECTRON2_DATASETS")
    assert dataset_root() == "datasets"


def test_unknown_name_suggests():
    with pytest.raises(UserError, match=r"Unknown dataset 'voc_2007_tset'; did you mean "
                                        r"'voc_2007_test'\?"):
        get_metadata("voc_2007_tset")


def test_register_passes_strict():
    calls = []

    def loader(strict=False):
        calls.append(strict)
        return [{"file_name": "x.jpg", "image_id": 1, "height": 2, "width": 2,
                 "annotations": []}]

    register("test_catalog_tiny", loader, {"thing_classes": ["a"], "evaluator_type": "coco"})
    assert get_dataset_dicts("test_catalog_tiny", strict=True)[0]["image_id"] == 1
    assert calls == [True]
    assert get_metadata("test_catalog_tiny")["thing_classes"] == ["a"]
    register("test_catalog_noargs", lambda: [], {})
    assert get_dataset_dicts("test_catalog_noargs") == []
    with pytest.raises(ValueError, match="already registered"):
        register("test_catalog_tiny", loader, {})
