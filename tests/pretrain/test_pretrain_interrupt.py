"""Real processes: SIGTERM saves and exits 0; SIGKILL then --resume ends at the same iteration
with a continuous lr schedule and metrics.json; two gloo processes match one process."""

import json
import os
import signal
import subprocess
import sys

import pytest

from tests.pretrain.tiny_cls_data import make_imagenet_folders
from tests.subprocess_wait import wait_until

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
TOOL = os.path.join(ROOT, "tools", "pretrain_imagenet.py")
CONFIG = os.path.join(ROOT, "configs", "pretrain", "quickstart.yaml")


def _env(root):
    env = dict(os.environ, DETECTRON2_DATASETS=str(root / "datasets"), RESDET_PROGRESS="0",
               OMP_NUM_THREADS="1", PYTHONPATH=ROOT)
    return env


def _opts(out, max_iter, **extra):
    opts = {"OUTPUT_DIR": str(out), "DATASETS.TRAIN": "('imagenet_train',)",
            "DATASETS.TEST": "('imagenet_val',)", "MODEL.RESDET.NUM_CLASSES": "3",
            "DATALOADER.NUM_WORKERS": "0", "SOLVER.IMS_PER_BATCH": "4",
            "SOLVER.MAX_ITER": str(max_iter), "SOLVER.STEPS": "(10, 20)",
            "SOLVER.CHECKPOINT_PERIOD": "4", "TEST.EVAL_PERIOD": "0", "PRETRAIN.LOG_PERIOD": "1",
            "PRETRAIN.TRAIN_RESIZE_RANGE": "[32, 40]", "PRETRAIN.TEST_RESIZE": "32"}
    opts.update(extra)
    return [x for kv in opts.items() for x in kv]


def _metrics(out):
    path = os.path.join(out, "metrics.json")
    if not os.path.exists(path):
        return []
    with open(path) as f:
        return [json.loads(x) for x in f if x.strip().endswith("}")]


@pytest.mark.slow
def test_sigterm_then_sigkill_then_resume(tmp_path):
    make_imagenet_folders(str(tmp_path / "datasets"), classes=3, per_class=4, val_per_class=1)
    out = tmp_path / "run"
    base, opts = [sys.executable, TOOL, "--config", CONFIG], _opts(out, 24)
    cmd = base + opts
    # 1) SIGTERM mid-run: checkpoint saved, exit code 0, message names the checkpoint
    p = subprocess.Popen(cmd, env=_env(tmp_path), stdout=subprocess.PIPE,
                         stderr=subprocess.STDOUT, text=True)
    assert wait_until(p, lambda: any(m.get("iteration", -1) >= 5 for m in _metrics(out)))
    p.send_signal(signal.SIGTERM)
    text = p.communicate(timeout=120)[0]
    assert p.returncode == 0, text
    assert "Received SIGTERM: saved checkpoint" in text and "--resume" in text
    with open(out / "last_checkpoint") as f:
        ck = f.read()
    stopped_at = int(ck[6:13])
    assert stopped_at >= 5 and os.path.isfile(out / ck)
    # 2) --resume, then SIGKILL after a later periodic checkpoint
    p = subprocess.Popen(base + ["--resume"] + opts, env=_env(tmp_path), stdout=subprocess.DEVNULL,
                         stderr=subprocess.DEVNULL)
    later = lambda: (out / "model_0000015.pth").exists()  # noqa: E731
    assert wait_until(p, lambda: later() and any(m.get("iteration", -1) >= 17
                                            for m in _metrics(out)))
    p.kill()
    p.wait()
    assert p.returncode == -signal.SIGKILL
    with open(out / "last_checkpoint") as f:
        killed_after = int(f.read()[6:13])
    assert killed_after >= 15
    # 3) --resume runs to the end from the last complete checkpoint
    r = subprocess.run(base + ["--resume"] + opts, env=_env(tmp_path), capture_output=True,
                       text=True, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    assert f"continuing at iteration {killed_after + 1}" in r.stdout
    train = [m for m in _metrics(out) if "loss_cls" in m]
    assert [m["iteration"] for m in train] == list(range(24))  # each once, no gap
    for m in train:  # lr continuous: the step schedule of an uninterrupted run
        want = 0.1 * 0.1 ** sum(m["iteration"] >= s for s in (10, 20))
        assert abs(m["lr"] - want) < 1e-12, m
    import torch

    final = torch.load(out / "model_final.pth", weights_only=True)
    assert final["iteration"] == 23


@pytest.mark.slow
def test_two_gloo_processes_match_one_process(tmp_path):
    make_imagenet_folders(str(tmp_path / "datasets"), classes=3, per_class=4, val_per_class=1)
    # GroupNorm: BN's batch statistics would legitimately differ between 1x8 and 2x4 images
    extra = {"PRETRAIN.NORM": "GN", "SOLVER.IMS_PER_BATCH": "8", "SOLVER.CHECKPOINT_PERIOD": "100"}
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone",
                "--nproc_per_node", "2", TOOL]
    launchers = {1: [sys.executable, TOOL, "--num-gpus", "1"],
                 2: [sys.executable, TOOL, "--num-gpus", "2"],
                 "torchrun": torchrun}  # torchrun starts the 2 processes itself
    losses = {}
    for n, launcher in launchers.items():
        out = tmp_path / f"np{n}"
        r = subprocess.run(launcher + ["--config", CONFIG] + _opts(out, 3, **extra),
                           env=_env(tmp_path), capture_output=True, text=True, timeout=300)
        assert r.returncode == 0, r.stdout + r.stderr
        if n != 1:
            assert "Rank 0 of 2" in r.stdout + r.stderr
        losses[n] = [m["loss_cls"] for m in _metrics(out) if "loss_cls" in m]
    print("first losses, 1 process x 8 vs 2 processes x 4 (spawned, torchrun):", losses)
    assert len(losses[1]) == len(losses[2]) == len(losses["torchrun"]) == 3
    assert all(0 < v < 10 for v in losses[1])  # a sane, training network
    for a, b, c in zip(losses[1], losses[2], losses["torchrun"]):
        for other in (b, c):  # stated tolerance: 1e-4 relative
            assert abs(a - other) <= 1e-4 * max(1.0, abs(a)), losses
