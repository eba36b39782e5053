"""tools/export_model.py: a pretraining classifier and a torchvision-engine detector exported to
TorchScript, ONNX and torch.export give the eager model's outputs on a sample image."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys

import pytest
import torch

from resdet.config import load_config
from resdet.errors import UserError
from resdet.export import export_and_check, load_exportable
from tests.pretrain.tiny_cls_data import make_imagenet_folders
from tests.tvdet.tvdet_helpers import config_path, tiny_opts, train_args, write_tiny_coco

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _has_onnx() -> bool:
    try:
        import onnx  # noqa: F401
        import onnxruntime  # noqa: F401
    except ImportError:
        return False
    return True


@pytest.fixture
def classifier_run(tmp_path, monkeypatch):
    from resdet.pretrain.train import run

    monkeypatch.setenv("DETECTRON2_DATASETS", str(tmp_path / "datasets"))
    monkeypatch.setenv("RESDET_PROGRESS", "0")
    make_imagenet_folders(str(tmp_path / "datasets"), classes=3, per_class=4, val_per_class=2)
    out = str(tmp_path / "cls")
    cfg = load_config(os.path.join(REPO, "configs", "pretrain", "imagenet_resnet18.yaml"), [
        "MODEL.DEVICE", "cpu", "DATALOADER.NUM_WORKERS", "0", "SOLVER.IMS_PER_BATCH", "4",
        "PRETRAIN.TEST_BATCH_SIZE", "4", "SOLVER.AMP.ENABLED", "False",
        "MODEL.RESDET.ARCH", "cifar_resnet20", "MODEL.RESDET.NUM_CLASSES", "3",
        "SOLVER.MAX_ITER", "2", "SOLVER.CHECKPOINT_PERIOD", "0", "PRETRAIN.CROP_SIZE", "32",
        "PRETRAIN.TRAIN_RESIZE_RANGE", "[36, 48]", "PRETRAIN.TEST_RESIZE", "36",
        "PRETRAIN.LR_POLICY", "step", "OUTPUT_DIR", out])
    run(cfg, argparse.Namespace(eval_only=False, resume=False))
    return os.path.join(out, "model_final.pth")


def test_classifier_round_trip(classifier_run, tmp_path):
    exp = load_exportable(classifier_run)
    assert exp.kind == "classifier" and exp.sample[0].shape == (1, 3, 32, 32)
    assert exp.sample_source.endswith(".JPEG") and "val" in exp.sample_source
    formats = ["torchscript", "torch_export"] + (["onnx"] if _has_onnx() else [])
    results = export_and_check(exp, str(tmp_path / "exported"), formats)
    assert [r.format for r in results] == formats
    assert all(r.skipped is None and os.path.isfile(r.path) for r in results)
    with torch.no_grad():
        want = exp.module(*exp.sample)
        assert want.shape == (1, 3)
        torch.testing.assert_close(torch.jit.load(results[0].path)(*exp.sample), want)
        program = torch.export.load(results[1].path).module()
        torch.testing.assert_close(program(*exp.sample), want)
    if _has_onnx():
        import onnxruntime

        session = onnxruntime.InferenceSession(results[2].path,
                                               providers=["CPUExecutionProvider"])
        got = torch.from_numpy(session.run(None, {"images": exp.sample[0].numpy()})[0])
        torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-4)


def test_export_without_onnx_skips_it_with_a_sentence(classifier_run, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "onnxruntime", None)
    results = export_and_check(load_exportable(classifier_run), str(tmp_path / "e"), ["onnx"])
    assert results[0].path is None and results[0].skipped == (
        "onnx skipped: onnx and onnxruntime are not installed (pip install 'resdet[export]').")
    assert not os.path.exists(tmp_path / "e" / "model.onnx")


def test_exported_outputs_that_differ_are_an_error(classifier_run, tmp_path, monkeypatch):
    from resdet.export import exporters

    def broken(exp, path):
        return (exp.module(*exp.sample) + 1.0,)

    monkeypatch.setitem(exporters.EXPORTERS, "torchscript", (".ts", broken, True))
    with pytest.raises(UserError, match="The torchscript export's outputs differ from the "
                                        "eager model's on the sample image"):
        export_and_check(load_exportable(classifier_run), str(tmp_path / "e"), ["torchscript"])


@pytest.mark.slow
def test_detector_round_trip_through_the_tool(tmp_path, monkeypatch):
    from resdet.tvdet.train import main

    write_tiny_coco(str(tmp_path / "datasets"))
    monkeypatch.setenv("DETECTRON2_DATASETS", str(tmp_path / "datasets"))
    monkeypatch.setenv("RESDET_PROGRESS", "0")
    out = str(tmp_path / "det")
    main(train_args(config_path("quickstart.yaml"), tiny_opts(out, **{
        "DATASETS.TRAIN": '("coco_2017_train",)', "DATASETS.TEST": '("coco_2017_val",)',
        # scores high enough that the sample image has detections to compare
        "MODEL.ROI_HEADS.SCORE_THRESH_TEST": "0.0"})))
    weights = os.path.join(out, "model_final.pth")
    formats = ["torchscript"] + (["onnx"] if _has_onnx() else [])
    env = dict(os.environ, PYTHONPATH=REPO, OMP_NUM_THREADS="1")
    proc = subprocess.run([sys.executable, os.path.join(REPO, "tools", "export_model.py"),
                           "--weights", weights, "--output", str(tmp_path / "exported"),
                           "--format", *formats], capture_output=True, text=True, env=env,
                          timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    sample = os.path.join(str(tmp_path / "datasets"), "coco", "val2017", "000000000000.jpg")
    lines = [ln for ln in proc.stdout.splitlines() if "outputs equal" in ln]
    assert [ln.split(":")[0] for ln in lines] == formats
    assert all(sample in ln for ln in lines)

    exp = load_exportable(weights)
    assert exp.kind == "detector" and exp.sample_source == sample
    with torch.no_grad():
        boxes, scores, labels = exp.module(*exp.sample)
        assert boxes.shape[0] > 0 and boxes.shape == (scores.shape[0], 4)
        got = torch.jit.load(str(tmp_path / "exported" / "model.ts"))(*exp.sample)
    for g, w in zip(got, (boxes, scores, labels)):
        torch.testing.assert_close(g, w)


def test_not_a_run_checkpoint_is_one_sentence(tmp_path):
    path = tmp_path / "w.pth"
    torch.save({"conv1.weight": torch.zeros(1)}, path)
    with pytest.raises(UserError) as e:
        load_exportable(str(path))
    assert str(e.value) == (f"{path} is not a resdet training checkpoint (it has no 'model' and "
                            "'cfg'); give a model_final.pth of a pretraining or torchvision-"
                            "engine run.")
