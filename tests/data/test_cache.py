"""The parsed-annotation cache (resdet.data.cache): reuse, staleness, corruption, warnings."""

import json
import logging
import multiprocessing
import os
import stat

import pytest

from resdet.data import get_dataset_dicts
from resdet.data.cache import cache_dir, cached_call
from resdet.data.coco import load_coco_json
from tests.tiny_datasets import make_tiny_coco


@pytest.fixture
def cache(tmp_path, monkeypatch):
    folder = tmp_path / "cache"
    monkeypatch.setenv("RESDET_CACHE_DIR", str(folder))
    return folder


@pytest.fixture
def coco(tmp_path, monkeypatch, cache):
    monkeypatch.setenv("DETECTRON2_DATASETS", str(tmp_path / "ds"))
    make_tiny_coco(str(tmp_path / "ds"), "val2017", num_images=4)
    return str(tmp_path / "ds" / "coco" / "annotations" / "instances_val2017.json")


def _messages(caplog):
    return [r.getMessage() for r in caplog.records]


def _rewrite(path, edit):
    with open(path) as f:
        data = json.load(f)
    edit(data)
    with open(path, "w") as f:
        json.dump(data, f)


def test_cache_folder_follows_the_environment(monkeypatch, tmp_path):
    monkeypatch.delenv("RESDET_CACHE_DIR", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache_dir() == str(tmp_path / "xdg" / "resdet")
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert cache_dir() == str(tmp_path / "home" / ".cache" / "resdet")
    monkeypatch.setenv("RESDET_CACHE_DIR", "off")
    assert cache_dir() is None


def test_second_load_comes_from_the_cache(coco, cache, caplog):
    caplog.set_level(logging.INFO, logger="resdet")
    first = get_dataset_dicts("coco_2017_val")
    files = sorted(os.listdir(cache))
    assert len([f for f in files if f.endswith(".pkl")]) == 1
    caplog.clear()
    assert get_dataset_dicts("coco_2017_val") == first
    assert any("from the cache" in m for m in _messages(caplog))


def test_a_changed_file_invalidates_the_cache(coco, cache, caplog):
    caplog.set_level(logging.INFO, logger="resdet")
    before = load_coco_json(coco, "img")[0]
    assert before[0]["annotations"][0]["bbox"] != [1.0, 2.0, 3.0, 4.0]
    _rewrite(coco, lambda d: d["annotations"][0].update(bbox=[1.0, 2.0, 3.0, 4.0]))
    caplog.clear()
    after = load_coco_json(coco, "img")[0]
    first_ann = [d for d in after if d["image_id"] == before[0]["image_id"]][0]
    assert first_ann["annotations"][0]["bbox"] == [1.0, 2.0, 3.0, 4.0]
    assert any("is stale" in m and coco in m for m in _messages(caplog))
    # other arguments are other entries
    assert load_coco_json(coco, "other")[0][0]["file_name"] == \
        os.path.join("other", os.path.basename(after[0]["file_name"]))


def test_a_corrupt_cache_is_rebuilt(coco, cache, caplog):
    caplog.set_level(logging.INFO, logger="resdet")
    first = load_coco_json(coco, "img")
    (pkl,) = [p for p in cache.iterdir() if p.suffix == ".pkl"]
    for garbage in (b"not a pickle", pickle_of_other_thing()):
        pkl.write_bytes(garbage)
        caplog.clear()
        assert load_coco_json(coco, "img") == first
        assert any("is corrupt" in m and str(pkl) in m for m in _messages(caplog))
        caplog.clear()
        assert load_coco_json(coco, "img") == first  # and rewritten correctly
        assert not any(" is corrupt " in m for m in _messages(caplog))  # tmp path: "corrupt"
        assert any("Loaded" in m and str(pkl) in m for m in _messages(caplog))


def pickle_of_other_thing():
    import pickle

    return pickle.dumps({"magic": "resdet-cache", "format": 1, "key": ("other",), "value": 1})


def test_warnings_are_repeated_on_a_cached_load(coco, caplog):
    _rewrite(coco, lambda d: d["annotations"][0].update(bbox=[10, 10, -5, 8]))
    caplog.set_level(logging.WARNING, logger="resdet")
    first = load_coco_json(coco, "img")
    warned = [m for m in _messages(caplog) if "non-positive size" in m or "skipped" in m]
    assert len(warned) == 2  # the record, and the summary line
    caplog.clear()
    assert load_coco_json(coco, "img") == first
    assert [m for m in _messages(caplog) if "non-positive size" in m or "skipped" in m] == warned


def test_checker_and_strict_runs_do_not_reuse_a_lenient_parse(coco):
    from resdet.data.detection_checks import ProblemLog
    from resdet.errors import UserError

    _rewrite(coco, lambda d: d["annotations"][0].update(bbox=[10, 10, -5, 8]))
    load_coco_json(coco, "img")
    log = ProblemLog(coco)
    load_coco_json(coco, "img", problems=log)
    assert len(log.problems) == 1
    with pytest.raises(UserError, match="non-positive size"):
        load_coco_json(coco, "img", strict=True)


def test_unwritable_cache_folder_means_no_cache(coco, tmp_path, monkeypatch, caplog):
    blocker = tmp_path / "a_file"
    blocker.write_text("x")
    monkeypatch.setenv("RESDET_CACHE_DIR", str(blocker / "cache"))
    caplog.set_level(logging.INFO, logger="resdet")
    assert load_coco_json(coco, "img") == load_coco_json(coco, "img")
    assert not [r for r in caplog.records if r.levelno >= logging.INFO
                and "cache" in r.getMessage()]


def test_cache_files_follow_the_umask(coco, cache):
    old = os.umask(0o027)
    try:
        load_coco_json(coco, "img")
    finally:
        os.umask(old)
    (pkl,) = [p for p in cache.iterdir() if p.suffix == ".pkl"]
    assert stat.S_IMODE(pkl.stat().st_mode) == 0o640


def test_class_folder_listing_is_cached_and_sees_a_new_image(tmp_path, monkeypatch, cache):
    monkeypatch.setenv("DETECTRON2_DATASETS", str(tmp_path))
    for wnid in ("n01", "n02"):
        os.makedirs(tmp_path / "imagenet" / "train" / wnid)
        (tmp_path / "imagenet" / "train" / wnid / "a.JPEG").write_bytes(b"")
    assert len(get_dataset_dicts("imagenet_train")) == 2
    assert any(p.name.startswith("folders-") for p in cache.iterdir())
    (tmp_path / "imagenet" / "train" / "n02" / "b.JPEG").write_bytes(b"")
    recs = get_dataset_dicts("imagenet_train")
    assert [(os.path.basename(r["file_name"]), r["label"]) for r in recs] == [
        ("a.JPEG", 0), ("a.JPEG", 1), ("b.JPEG", 1)]


def test_other_loading_code_invalidates(cache):
    calls = []

    def build():
        calls.append(1)
        return len(calls)

    assert cached_call("t", ("k",), lambda: [], build, code="v1") == 1
    assert cached_call("t", ("k",), lambda: [], build, code="v1") == 1
    assert cached_call("t", ("k",), lambda: [], build, code="v2") == 2


def _build_once(args):
    marker, folder = args
    os.environ["RESDET_CACHE_DIR"] = folder

    def build():
        with open(marker, "a") as f:
            f.write("built\n")
        import time

        time.sleep(0.5)
        return "value"

    return cached_call("lock", ("k",), lambda: [], build)


def test_concurrent_processes_parse_once(tmp_path, cache):
    marker = str(tmp_path / "marker")
    with multiprocessing.get_context("fork").Pool(3) as pool:
        assert pool.map(_build_once, [(marker, str(cache))] * 3) == ["value"] * 3
    with open(marker) as f:
        assert f.read() == "built\n"


def test_class_folder_warnings_are_repeated_on_a_cached_listing(tmp_path, monkeypatch, cache,
                                                                caplog):
    monkeypatch.setenv("DETECTRON2_DATASETS", str(tmp_path))
    os.makedirs(tmp_path / "imagenet" / "train" / "n01")
    (tmp_path / "imagenet" / "train" / "n01" / "a.JPEG").write_bytes(b"")
    (tmp_path / "imagenet" / "train" / "stray.JPEG").write_bytes(b"")
    caplog.set_level(logging.INFO, logger="resdet")
    first = get_dataset_dicts("imagenet_train")
    warned = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warned) == 1 and "1 images outside its class folders" in warned[0]
    caplog.clear()
    assert get_dataset_dicts("imagenet_train") == first
    assert [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING] == warned
    assert any("from the cache" in m for m in _messages(caplog))
