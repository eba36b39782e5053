"""The synthetic shapes dataset: deterministic, COCO layout, safe to generate concurrently."""

import hashlib
import json
import os
import threading

from resdet.data import get_dataset_dicts, get_metadata
from resdet.data.shapes import SHAPES_CLASSES, ensure_shapes


def _digest(folder):
    h = hashlib.sha256()
    for dirpath, _, files in sorted(os.walk(folder)):
        for name in sorted(files):
            h.update(name.encode())
            with open(os.path.join(dirpath, name), "rb") as f:
                h.update(f.read())
    return h.hexdigest()


def test_deterministic_bytes(tmp_path):
    a = ensure_shapes(str(tmp_path / "a"), num_train=6, num_val=3)
    b = ensure_shapes(str(tmp_path / "b"), num_train=6, num_val=3)
    assert _digest(a) == _digest(b)
    c = ensure_shapes(str(tmp_path / "c"), num_train=6, num_val=3, seed=1)
    assert _digest(a) != _digest(c)
    assert sorted(os.listdir(os.path.join(a, "train"))) == [f"{i:06d}.jpg" for i in range(6)]


def test_catalog_records_are_valid(tmp_path, monkeypatch):
    monkeypatch.setenv("DETECTRON2_DATASETS", str(tmp_path))
    ensure_shapes(str(tmp_path), num_train=12, num_val=4)
    dicts = get_dataset_dicts("shapes_train")
    assert len(dicts) == 12 and len(get_dataset_dicts("shapes_val")) == 4
    meta = get_metadata("shapes_val")
    assert meta["thing_classes"] == list(SHAPES_CLASSES) and meta["evaluator_type"] == "coco"
    for d in dicts:
        assert 128 <= d["height"] <= 256 and 128 <= d["width"] <= 256
        assert 1 <= len(d["annotations"]) <= 4
        for a in d["annotations"]:
            x, y, w, h = a["bbox"]
            assert a["bbox_mode"] == 1 and a["category_id"] in (0, 1, 2)
            assert x >= 0 and y >= 0 and x + w <= d["width"] and y + h <= d["height"]
            assert w >= 27 and h >= 27  # large enough to learn quickly
    with open(meta["json_file"]) as f:
        assert [c["name"] for c in json.load(f)["categories"]] == list(SHAPES_CLASSES)


def test_concurrent_generation_is_atomic(tmp_path):
    paths, errors = [], []

    def run():
        try:
            paths.append(ensure_shapes(str(tmp_path), num_train=5, num_val=2))
        except Exception as e:  # pragma: no cover - reported below
            errors.append(e)

    threads = [threading.Thread(target=run) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors and len(set(paths)) == 1
    assert sorted(os.listdir(tmp_path)) == ["shapes"]  # no temporary folder left behind
    assert len(os.listdir(os.path.join(tmp_path, "shapes", "train"))) == 5
