"""--resume honours SOLVER.BASE_LR/STEPS/MAX_ITER/GAMMA changed on purpose, from the resumed
iteration, with one warning per changed key (issue 12, case b19), on both engines."""

import json
import logging
import os
import subprocess
import sys

import pytest
import torch

from resdet.config import load_config
from resdet.engine import Trainer, seed_all
from resdet.engine.lr_schedule import build_lr_schedule, changed_solver_settings

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


class ToyTask:
    def run_step(self, model, batch):
        return {"loss_cls": model(batch).pow(2).mean()}


def _loader(start_iter):
    while True:
        yield torch.ones(4, 3)


def _run(out, opts, resume=False):
    """Train a toy model with the config's solver; returns {iteration: lr used}."""
    cfg = load_config(None, ["SOLVER.WARMUP_ITERS", "0", "SOLVER.CHECKPOINT_PERIOD", "2"] + opts)
    seed_all(0)
    model = torch.nn.Linear(3, 2)
    opt = torch.optim.SGD(model.parameters(), lr=cfg.SOLVER.BASE_LR)
    lrs = {}
    trainer = Trainer(model, opt, build_lr_schedule(cfg, opt), _loader, ToyTask(),
                      max_iter=cfg.SOLVER.MAX_ITER, output_dir=str(out), device=torch.device("cpu"),
                      checkpoint_period=2, log_period=1, progress=False, cfg_yaml=cfg.dump(),
                      hooks=[lambda t, it: lrs.__setitem__(it, opt.param_groups[0]["lr"])])
    if resume:
        assert trainer.resume()
    trainer.train()
    return lrs


def test_resumed_run_uses_the_configs_solver_settings(tmp_path, caplog):
    first = ["SOLVER.BASE_LR", "0.02", "SOLVER.MAX_ITER", "2", "SOLVER.STEPS", "(3,)",
             "SOLVER.GAMMA", "1.0"]
    assert _run(tmp_path, first) == {0: 0.02, 1: 0.02}
    second = ["SOLVER.BASE_LR", "0.0002", "SOLVER.MAX_ITER", "4", "SOLVER.STEPS", "(3,)",
              "SOLVER.GAMMA", "0.5"]
    with caplog.at_level(logging.WARNING, logger="resdet.engine"):
        lrs = _run(tmp_path, second, resume=True)
    assert lrs == pytest.approx({2: 0.0002, 3: 0.0001})  # new BASE_LR, new GAMMA after step 3
    lines = [r.getMessage() for r in caplog.records if "--resume:" in r.getMessage()]
    assert lines == [
        "--resume: SOLVER.BASE_LR 0.02 -> 0.0002 (checkpoint value -> config value); the config's "
        "value applies from iteration 2.",
        "--resume: SOLVER.MAX_ITER 2 -> 4 (checkpoint value -> config value); the config's value "
        "applies from iteration 2.",
        "--resume: SOLVER.GAMMA 1.0 -> 0.5 (checkpoint value -> config value); the config's value "
        "applies from iteration 2."]
    with open(tmp_path / "metrics.json") as f:
        assert [json.loads(line)["lr"] for line in f] == pytest.approx(
            [0.02, 0.02, 0.0002, 0.0001])


def test_unchanged_settings_say_nothing():
    cfg = load_config(None, ["SOLVER.STEPS", "(3, 5)"])
    assert changed_solver_settings(cfg.dump(), cfg) == []
    assert changed_solver_settings(None, cfg) == []  # an old checkpoint without its config
    other = load_config(None, ["SOLVER.STEPS", "(4, 5)"])
    assert changed_solver_settings(cfg.dump(), other) == [("SOLVER.STEPS", [3, 5], [4, 5])]


def _voc2007(root):
    """b19's data: VOC2007 trainval of two 96x72 images with a dog each."""
    from PIL import Image

    base = root / "VOC2007"
    for sub in ("Annotations", "ImageSets/Main", "JPEGImages"):
        os.makedirs(base / sub, exist_ok=True)
    for fid in ("000001", "000002"):
        Image.new("RGB", (96, 72), (90, 30, 200)).save(base / "JPEGImages" / f"{fid}.jpg")
        (base / "Annotations" / f"{fid}.xml").write_text(
            f"<annotation><filename>{fid}.jpg</filename><size><width>96</width><height>72"
            "</height><depth>3</depth></size><object><name>dog</name><difficult>0</difficult>"
            "<bndbox><xmin>11</xmin><ymin>13</ymin><xmax>60</xmax><ymax>50</ymax></bndbox>"
            "</object></annotation>")
    (base / "ImageSets" / "Main" / "trainval.txt").write_text("000001\n000002\n")


@pytest.mark.slow
@pytest.mark.parametrize("engine", ["torchvision", "detectron2"])
def test_case_b19_resume_with_a_lower_base_lr(tmp_path, engine):
    if engine == "detectron2":
        pytest.importorskip("detectron2")
    _voc2007(tmp_path)
    env = dict(os.environ, DETECTRON2_DATASETS=str(tmp_path), OMP_NUM_THREADS="1")
    out = tmp_path / "out"
    args = [sys.executable, os.path.join(REPO, "tools", "train_net.py"), "--engine", engine,
            "--config", os.path.join(REPO, "configs", "quickstart.yaml"), "MODEL.DEVICE", "cpu",
            "DATALOADER.NUM_WORKERS", "0", "SOLVER.IMS_PER_BATCH", "2", "SOLVER.WARMUP_ITERS", "0",
            "SOLVER.STEPS", "(3,)", "SOLVER.GAMMA", "1.0", "SOLVER.CHECKPOINT_PERIOD", "2",
            "INPUT.MIN_SIZE_TRAIN", "(64,)", "INPUT.MAX_SIZE_TRAIN", "128",
            "MODEL.ROI_HEADS.NUM_CLASSES", "20", "DATASETS.TRAIN", "('voc_2007_trainval',)",
            "DATASETS.TEST", "()", "OUTPUT_DIR", str(out)]
    r1 = subprocess.run(args + ["SOLVER.MAX_ITER", "2", "SOLVER.BASE_LR", "0.02"], env=env,
                        capture_output=True, text=True, timeout=600)
    assert r1.returncode == 0, r1.stdout[-3000:] + r1.stderr[-3000:]
    r2 = subprocess.run(args[:2] + ["--resume"] + args[2:] + ["SOLVER.MAX_ITER", "4",
                                                              "SOLVER.BASE_LR", "0.0002"],
                        env=env, capture_output=True, text=True, timeout=600)
    assert r2.returncode == 0, r2.stdout[-3000:] + r2.stderr[-3000:]
    with open(out / "metrics.json") as f:
        lrs = {r["iteration"]: r["lr"] for r in map(json.loads, f) if "lr" in r}
    assert lrs[1] == pytest.approx(0.02) and lrs[3] == pytest.approx(0.0002)
    assert (r2.stdout + r2.stderr).count(
        "--resume: SOLVER.BASE_LR 0.02 -> 0.0002 (checkpoint value -> config value); the "
        "config's value applies from iteration 2.") == 1
    assert "BASE_LR: 0.0002" in (out / "config.yaml").read_text()
