"""tools/benchmark.py: each task on a tiny input; its JSON has the keys and positive numbers."""

import importlib.util
import json
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TOOL = os.path.join(ROOT, "tools", "benchmark.py")
TINY = ["--input-size", "64", "--batch", "2", "--iters", "2", "--warmup", "1", "--json"]


def _tool():
    spec = importlib.util.spec_from_file_location("benchmark_tool", TOOL)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _last_json(out: str) -> dict:
    return json.loads(out.strip().splitlines()[-1])


def _positive_side(side: dict):
    assert side["sec_per_iter"] > 0 and side["images_per_sec"] > 0
    assert side["images_per_sec"] == pytest.approx(side["images_per_iter"]
                                                   / side["sec_per_iter"])


@pytest.mark.parametrize("task, extra", [
    ("train", ["--arch", "resnet18"]),
    ("inference", ["--arch", "resnet18", "--stride-in-3x3", "--channels-last"]),
])
def test_backbone_tasks_against_torchvision(task, extra, capsys):
    _tool().main(["--task", task, *extra, *TINY, "--reference", "torchvision"])
    r = _last_json(capsys.readouterr().out)
    assert r["task"] == task and r["device"] == "cpu"
    assert r["settings"]["batch"] == 2 and r["settings"]["input_size"] == 64
    for side in ("ours", "reference"):
        _positive_side(r[side])
        assert r[side]["iters"] == 2
    assert r["ours"]["name"].startswith("resdet resnet18")
    assert r["reference"]["name"] == "torchvision resnet18"
    assert r["ratio"] > 0 and r["ratio_of_medians"] > 0
    if task == "train":  # the memory pass saw the activations and gradients
        assert r["ours"]["peak_memory_mb"] > 0
    assert r["settings"]["channels_last"] == (task == "inference")


def test_without_reference_the_ratio_is_null(capsys):
    _tool().main(["--task", "inference", "--arch", "cifar_resnet20", "--batch", "2",
                  "--iters", "2", "--warmup", "0", "--json"])
    r = _last_json(capsys.readouterr().out)
    assert r["reference"] is None and r["ratio"] is None
    _positive_side(r["ours"])
    assert r["settings"]["input_size"] is None  # CIFAR default, 32


def test_data_task_pretraining_loader(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("DETECTRON2_DATASETS", str(tmp_path))
    _tool().main(["--task", "data", "--arch", "resnet18", *TINY])
    r = _last_json(capsys.readouterr().out)
    assert r["task"] == "data"
    assert r["ours"]["name"].startswith("pretraining loader (synthetic_imagenet, 64px")
    assert r["ours"]["images_per_sec"] > 0 and r["reference"]["images_per_sec"] > 0
    assert r["ratio"] == pytest.approx(r["reference"]["images_per_sec"]
                                       / r["ours"]["images_per_sec"])
    assert 0 <= r["together"]["data_wait_fraction"] <= 1
    assert isinstance(r["keeps_up"], bool)


def test_eval_task_against_pycocotools(capsys):
    _tool().main(["--task", "eval", "--reference", "pycocotools", "--eval-images", "30",
                  "--iters", "1", "--json"])
    r = _last_json(capsys.readouterr().out)
    # same numbers (faster-coco-eval may differ from pycocotools in the last float bit)
    assert r["identical"] is True or r["max_abs_diff"] < 1e-9
    assert r["ours"]["sec_per_iter"] > 0 and r["reference"]["sec_per_iter"] > 0
    assert r["ratio"] == pytest.approx(r["ours"]["sec_per_iter"] / r["reference"]["sec_per_iter"])


def test_user_errors_are_one_sentence():
    proc = subprocess.run([sys.executable, TOOL, "--task", "train", "--arch", "plain18",
                           "--reference", "torchvision", "--iters", "1"],
                          capture_output=True, text=True)
    assert proc.returncode == 2
    assert "has none" in proc.stderr and "Traceback" not in proc.stderr


TINY_FPN = """ENGINE: torchvision
MODEL:
  DEVICE: cpu
  BACKBONE: {NAME: build_resdet_resnet_fpn_backbone}
  RESDET: {ARCH: resnet18}
  RESNETS: {DEPTH: 18, RES2_OUT_CHANNELS: 64, OUT_FEATURES: [res2, res3, res4, res5]}
  FPN: {IN_FEATURES: [res2, res3, res4, res5]}
  ANCHOR_GENERATOR: {SIZES: [[32], [64], [128], [256], [512]]}
  RPN: {IN_FEATURES: [p2, p3, p4, p5, p6], POST_NMS_TOPK_TRAIN: 100, POST_NMS_TOPK_TEST: 50}
  ROI_HEADS: {NAME: StandardROIHeads, IN_FEATURES: [p2, p3, p4, p5], BATCH_SIZE_PER_IMAGE: 32}
  ROI_BOX_HEAD: {NAME: FastRCNNConvFCHead, NUM_FC: 2, POOLER_RESOLUTION: 7}
DATASETS: {TRAIN: [shapes_train], TEST: []}
INPUT: {MIN_SIZE_TRAIN: [64], MAX_SIZE_TRAIN: 96, MIN_SIZE_TEST: 64, MAX_SIZE_TEST: 96}
SOLVER: {IMS_PER_BATCH: 2}
"""


@pytest.fixture(scope="module")
def tiny_fpn(tmp_path_factory):
    d = tmp_path_factory.mktemp("bench_det")
    path = d / "tiny_fpn.yaml"
    path.write_text(TINY_FPN)
    return str(path), str(d / "datasets")


@pytest.mark.slow
def test_detection_train_task(tiny_fpn, capsys):
    _tool().main(["--task", "train", "--config", tiny_fpn[0], "--engine", "torchvision",
                  *TINY[:-1], "--iters", "1", "--json"])
    r = _last_json(capsys.readouterr().out)
    assert r["ours"]["name"] == "resdet resnet18 FPN (torchvision engine)"
    _positive_side(r["ours"])
    assert r["ours"]["peak_memory_mb"] > 0


@pytest.mark.slow
def test_detection_data_task(tiny_fpn, monkeypatch, capsys):
    monkeypatch.setenv("DETECTRON2_DATASETS", tiny_fpn[1])
    _tool().main(["--task", "data", "--config", tiny_fpn[0], "--engine", "torchvision",
                  "--batch", "2", "--iters", "1", "--warmup", "0", "--json"])
    r = _last_json(capsys.readouterr().out)
    assert r["ours"]["name"] == "detection loader (shapes_train), 2 workers"
    assert r["ours"]["images_per_sec"] > 0 and r["reference"]["images_per_sec"] > 0
    assert r["ratio"] > 0 and 0 <= r["together"]["data_wait_fraction"] <= 1


@pytest.mark.slow
def test_detection_inference_against_torchvision(capsys):
    cfg = os.path.join(ROOT, "configs", "faster_rcnn_R50_FPN_coco.yaml")
    _tool().main(["--task", "inference", "--config", cfg, "--engine", "torchvision",
                  "--reference", "torchvision", "--input-size", "64", "--batch", "1",
                  "--iters", "1", "--warmup", "0", "--json"])
    r = _last_json(capsys.readouterr().out)
    assert r["ours"]["name"] == "resdet R50-FPN (torchvision engine)"
    assert r["reference"]["name"] == "torchvision fasterrcnn_resnet50_fpn"
    _positive_side(r["ours"])
    _positive_side(r["reference"])
    assert r["ratio"] > 0


def test_detection_reference_needs_r50_fpn(tiny_fpn):
    from resdet.errors import UserError

    with pytest.raises(UserError, match="compares R50-FPN"):
        _tool().main(["--task", "inference", "--config", tiny_fpn[0], "--engine", "torchvision",
                      "--reference", "torchvision", "--iters", "1"])


def test_detectron2_reference_needs_the_detectron2_engine(tiny_fpn):
    from resdet.errors import UserError

    with pytest.raises(UserError, match="detectron2"):
        _tool().main(["--task", "train", "--config", tiny_fpn[0], "--engine", "torchvision",
                      "--reference", "detectron2", "--iters", "1"])


@pytest.mark.slow
def test_detectron2_engine_against_detectron2(capsys):
    pytest.importorskip("detectron2")  # runs where Detectron2 is installed (PYTHONPATH)
    cfg = os.path.join(ROOT, "configs", "faster_rcnn_R50_FPN_coco.yaml")
    _tool().main(["--task", "train", "--config", cfg, "--engine", "detectron2",
                  "--reference", "detectron2", "--input-size", "64", "--batch", "1",
                  "--iters", "1", "--warmup", "0", "--json"])
    r = _last_json(capsys.readouterr().out)
    assert r["ours"]["name"] == "resdet R50-FPN (Detectron2 engine)"
    assert r["reference"]["name"] == "detectron2 R50-FPN"
    assert r["ratio"] > 0


def test_data_scale_task_tiny(capsys, monkeypatch):
    from resdet.benchmark import data_scale

    monkeypatch.setattr(data_scale, "detectron2_available", lambda: False)
    _tool().main(["--task", "data-scale", "--scale", "0.001", "--parts", "load", "--json"])
    r = _last_json(capsys.readouterr().out)
    assert r["task"] == "data-scale" and r["scale"] == 0.001 and r["detectron2"] is False
    assert r["imagenet_records"] == 1281  # 0.1% of ImageNet train
    assert r["coco_file"]["images"] == 118 and r["coco_file"]["annotations"] == 863
    for side in ("resdet_first", "resdet_cached"):  # every generated box is valid and kept
        assert (r["coco_load"][side]["images"], r["coco_load"][side]["annotations"]) == (118, 863)
        assert r["coco_load"][side]["seconds"] > 0 and r["coco_load"][side]["peak_mib"] > 0
    assert r["records_mib"] == {} and r["worker_growth"] == {}
    assert r["reference"] is None and r["ratio"] is None
    assert r["ours"]["coco_load_s"] == r["coco_load"]["resdet_first"]["seconds"]
    assert r["goals"] is None  # only judged at full size


@pytest.mark.slow
def test_data_scale_task_workers_against_detectron2(capsys):
    pytest.importorskip("detectron2")
    _tool().main(["--task", "data-scale", "--scale", "0.001", "--reference", "detectron2",
                  "--json"])
    r = _last_json(capsys.readouterr().out)
    assert r["coco_load"]["detectron2"]["annotations"] == 863
    assert set(r["records_mib"]) == {"list", "resdet", "detectron2"}
    assert 0 < r["records_mib"]["resdet"]["nbytes_mib"] < 1
    assert r["ratio"] == pytest.approx(r["coco_load"]["resdet_first"]["seconds"]
                                       / r["coco_load"]["detectron2"]["seconds"])
    for dataset, n in (("imagenet", 1281), ("coco", 118)):
        for store in ("list", "resdet", "detectron2"):
            w = r["worker_growth"][dataset][store]
            assert w["records"] == n and w["reads"] >= 512 and len(w["growth_mib"]) == 2
        assert max(r["worker_growth"][dataset]["resdet"]["growth_mib"]) < 5


def test_every_option_has_a_help_text():
    actions = _tool().build_parser()._actions
    assert len(actions) > 20
    assert [a.dest for a in actions if not a.help] == []
