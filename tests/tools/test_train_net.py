"""tools/train_net.py: the first log line names the engine; bad keys are one-sentence errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(REPO, "tests", "tvdet"))
from tvdet_helpers import tiny_opts, write_tiny_coco  # noqa: E402

without_detectron2 = pytest.mark.skipif(
    __import__("importlib").util.find_spec("detectron2") is not None,
    reason="these check the fallback when Detectron2 is absent")


def _run(args, env_root):
    env = dict(os.environ, DETECTRON2_DATASETS=env_root, RESDET_PROGRESS="0",
               OMP_NUM_THREADS="1")
    return subprocess.run([sys.executable, "tools/train_net.py", *args], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=300)


@without_detectron2
def test_auto_falls_back_to_torchvision_and_says_so_first(tmp_path):
    root = str(tmp_path / "ds")
    write_tiny_coco(root)
    out = str(tmp_path / "out")
    opts = tiny_opts(out, **{"DATASETS.TRAIN": '("coco_2017_train",)',
                             "DATASETS.TEST": '("coco_2017_val",)', "SOLVER.MAX_ITER": "1"})
    proc = _run(["--config", "configs/quickstart.yaml", "--engine", "auto", *opts], root)
    assert proc.returncode == 0, proc.stderr[-2000:]
    first = proc.stdout.splitlines()[0]
    assert "Engine: torchvision" in first and "detectron2 does not import" in first
    with open(os.path.join(out, "eval_results.json")) as f:
        assert "AP50" in json.load(f)["coco_2017_val"]["bbox"]
    with open(os.path.join(out, "log.txt")) as f:
        assert f.readline().rstrip().endswith(first.split("INFO: ", 1)[1])


@without_detectron2
def test_detectron2_engine_without_detectron2_is_a_clear_error(tmp_path):
    proc = _run(["--config-file", "configs/quickstart.yaml", "--engine", "detectron2"],
                str(tmp_path))
    assert proc.returncode == 2
    assert proc.stderr.startswith("error: ") and "--engine torchvision" in proc.stderr
    assert "Traceback" not in proc.stderr


@without_detectron2
def test_unsupported_key_is_one_sentence(tmp_path):
    proc = _run(["--config", "configs/quickstart.yaml", "--engine", "torchvision",
                 "MODEL.RPN.BOUNDARY_THRESH", "0", "OUTPUT_DIR", str(tmp_path / "o")],
                str(tmp_path))
    assert proc.returncode == 2
    assert "MODEL.RPN.BOUNDARY_THRESH" in proc.stderr and "Traceback" not in proc.stderr


def test_engine_line_is_printed_once_and_opens_log_txt(tmp_path):
    root = str(tmp_path / "ds")
    write_tiny_coco(root)
    out = str(tmp_path / "out")
    opts = tiny_opts(out, **{"DATASETS.TRAIN": '("coco_2017_train",)',
                             "DATASETS.TEST": '("coco_2017_val",)', "SOLVER.MAX_ITER": "1"})
    proc = _run(["--config", "configs/quickstart.yaml", "--engine", "torchvision", *opts], root)
    assert proc.returncode == 0, proc.stderr[-2000:]
    lines = [x for x in proc.stdout.splitlines() if x.endswith("INFO: Engine: torchvision "
                                                                "(requested)")]
    assert len(lines) == 1 and proc.stdout.splitlines()[0] == lines[0]
    with open(os.path.join(out, "log.txt")) as f:
        assert f.readline().rstrip() == lines[0]
