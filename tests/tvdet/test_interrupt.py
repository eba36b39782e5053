"""Real processes on the torchvision engine: SIGTERM saves a checkpoint and exits 0; after
SIGKILL, --resume continues from the last complete checkpoint to the same final iteration."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys

import pytest
from tvdet_helpers import REPO, config_path, tiny_opts

from tests.subprocess_wait import wait_until

TOOL = os.path.join(REPO, "tools", "train_net.py")
COCO = {"DATASETS.TRAIN": '("coco_2017_train",)', "DATASETS.TEST": '("coco_2017_val",)'}


def _records(out):
    path = os.path.join(out, "metrics.json")
    if not os.path.exists(path):
        return []
    with open(path) as f:
        return [json.loads(x) for x in f if x.strip().endswith("}") and "total_loss" in x]


def _iterations(out):
    return [r["iteration"] for r in _records(out)]


@pytest.mark.slow
def test_sigterm_saves_and_sigkill_resumes(tiny_root, tmp_path):
    out = str(tmp_path / "run")
    opts = tiny_opts(out, **COCO, **{"SOLVER.MAX_ITER": "40", "SOLVER.CHECKPOINT_PERIOD": "5",
                                     "SOLVER.STEPS": "(30,)"})
    env = dict(os.environ, DETECTRON2_DATASETS=tiny_root, OMP_NUM_THREADS="1",
               RESDET_PROGRESS="0", PYTHONPATH=REPO)
    cmd = [sys.executable, TOOL, "--config", config_path("quickstart.yaml"),
           "--engine", "torchvision"]

    # SIGTERM mid-run: a checkpoint of the current iteration, exit code 0, no traceback.
    p = subprocess.Popen(cmd + opts, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                         text=True)
    assert wait_until(p, lambda: any(i >= 3 for i in _iterations(out)))
    p.send_signal(signal.SIGTERM)
    text = p.communicate(timeout=240)[0]
    assert p.returncode == 0, text
    assert "Traceback" not in text
    with open(os.path.join(out, "last_checkpoint")) as f:
        stopped = f.read().strip()
    assert os.path.isfile(os.path.join(out, stopped)) and stopped in text

    # --resume, then SIGKILL once a later periodic checkpoint exists.
    p = subprocess.Popen(cmd + ["--resume"] + opts, env=env, stdout=subprocess.DEVNULL,
                         stderr=subprocess.DEVNULL)
    later = os.path.join(out, "model_0000014.pth")
    assert wait_until(p, lambda: os.path.exists(later) and max(_iterations(out)) >= 16)
    p.kill()
    p.wait(timeout=60)
    with open(os.path.join(out, "last_checkpoint")) as f:
        assert os.path.isfile(os.path.join(out, f.read().strip()))

    # --resume after the kill ends at the same final iteration as an uninterrupted run.
    done = subprocess.run(cmd + ["--resume"] + opts, env=env, capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
    records = _records(out)
    its = [r["iteration"] for r in records]
    # Each logged iteration once (records past the resumed checkpoint are replaced), ending at 39.
    assert its == sorted(set(its)) and its[-1] == 39, its
    assert os.path.isfile(os.path.join(out, "model_final.pth"))
    # The schedule continues across both restarts: lr drops by GAMMA at iteration 30 (STEPS).
    base_lr = records[0]["lr"]
    for r in records:
        expected = base_lr * (0.1 if r["iteration"] >= 30 else 1.0)
        assert r["lr"] == pytest.approx(expected), r
