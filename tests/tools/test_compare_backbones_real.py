"""compare_backbones on two real 2-iteration runs (VGG-16 and ResNet-101, torchvision engine,
the paper's VOC configs on a tiny VOC 2007 in the official layout)."""

import os
import subprocess
import sys

import pytest

from tests.tiny_datasets import make_tiny_voc

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TINY = ["MODEL.WEIGHTS", "", "DATASETS.TRAIN", "('voc_2007_trainval',)",
        "INPUT.MIN_SIZE_TRAIN", "(64,)", "INPUT.MAX_SIZE_TRAIN", "96", "INPUT.MIN_SIZE_TEST", "64",
        "INPUT.MAX_SIZE_TEST", "96", "SOLVER.MAX_ITER", "2", "SOLVER.WARMUP_ITERS", "1",
        "SOLVER.CHECKPOINT_PERIOD", "0", "MODEL.RPN.PRE_NMS_TOPK_TRAIN", "200",
        "MODEL.RPN.POST_NMS_TOPK_TRAIN", "20", "MODEL.RPN.PRE_NMS_TOPK_TEST", "100",
        "MODEL.RPN.POST_NMS_TOPK_TEST", "5", "MODEL.ROI_HEADS.BATCH_SIZE_PER_IMAGE", "8",
        "DATALOADER.NUM_WORKERS", "0", "MODEL.DEVICE", "cpu"]


def _train(config, out, extra, env):
    cmd = [sys.executable, os.path.join(ROOT, "tools", "train_net.py"), "--config",
           os.path.join(ROOT, "configs", config), "--engine", "torchvision", *TINY, *extra,
           "OUTPUT_DIR", out]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]


@pytest.mark.slow
def test_two_real_runs(tmp_path):
    data = tmp_path / "datasets"
    make_tiny_voc(str(data), 2007, splits={"trainval": 2, "test": 2})
    env = dict(os.environ, DETECTRON2_DATASETS=str(data), OMP_NUM_THREADS="1")
    vgg, r101 = str(tmp_path / "vgg16"), str(tmp_path / "r101")
    _train("faster_rcnn_VGG16_voc0712.yaml", vgg, ["MODEL.RESDET.VGG_FC_DIM", "64"], env)
    _train("faster_rcnn_R101_voc0712.yaml", r101, [], env)
    out = tmp_path / "report"
    proc = subprocess.run([sys.executable, os.path.join(ROOT, "tools", "compare_backbones.py"),
                           vgg, r101, "--out", str(out)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    text = (out / "report.md").read_text()
    rows = [ln for ln in text.splitlines() if ln.startswith("| vgg16 |") or
            ln.startswith("| r101 |")]
    assert len(rows) == 2, text
    assert "| VGG-16 | VGG | torchvision | voc_2007_trainval |" in rows[0]
    assert "| ResNet-101 | C4 | torchvision | voc_2007_trainval |" in rows[1]
    assert rows[0].endswith("| 73.2 | – |") and rows[1].endswith("| 76.4 | – |")
    assert "| 2 |" in text  # both runs logged their 2 iterations
    for name in ("ap_bars.png", "loss_curves.png", "seconds_per_iter.png"):
        assert (out / name).read_bytes()[:4] == b"\x89PNG"
