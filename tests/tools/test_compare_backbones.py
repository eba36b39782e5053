"""tools/compare_backbones.py on two fake short runs (VGG-16 and ResNet-101)."""

import json
import os
import subprocess
import sys

import pytest

from resdet.errors import UserError
from resdet.reports import compare_backbones, identify_backbone

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"

VGG_CFG = """ENGINE: torchvision
MODEL:
  BACKBONE:
    NAME: build_resdet_vgg_backbone
  RESDET:
    ARCH: vgg16
DATASETS:
  TRAIN: [voc_2007_trainval, voc_2012_trainval]
  TEST: [voc_2007_test]
"""
R101_CFG = """MODEL:
  BACKBONE:
    NAME: build_resdet_resnet_backbone
  RESNETS:
    DEPTH: 101
  RESDET:
    ARCH: resnet101
DATASETS:
  TRAIN: [voc_2007_trainval, voc_2012_trainval]
  TEST: [voc_2007_test]
"""


def make_run(root, name, cfg, losses, sec, results, engine_line=None):
    d = os.path.join(root, name)
    os.makedirs(d)
    with open(os.path.join(d, "config.yaml"), "w") as f:
        f.write(cfg)
    with open(os.path.join(d, "metrics.json"), "w") as f:
        for i, loss in enumerate(losses):
            f.write(json.dumps({"iteration": 2 * i + 1, "total_loss": loss, "lr": 0.001,
                                "time": sec, "data_time": 0.01}) + "\n")
    with open(os.path.join(d, "eval_results.json"), "w") as f:
        json.dump(results, f)
    if engine_line:
        with open(os.path.join(d, "log.txt"), "w") as f:
            f.write(f"[12:00:00 resdet]: {engine_line}\n")
    return d


@pytest.fixture
def two_runs(tmp_path):
    vgg = make_run(tmp_path, "vgg16_voc", VGG_CFG, [2.0, 1.5, 1.2], 0.5,
                   {"voc_2007_test": {"bbox": {"AP": 40.0, "AP50": 70.0, "AP75": 41.0}},
                    "coco_2017_val": {"bbox": {"AP": 20.0, "AP50": 40.0}}})
    r101 = make_run(tmp_path, "r101_voc", R101_CFG, [1.8, 1.1, 0.9], 0.8,
                    {"voc_2007_test": {"bbox": {"AP": 44.0, "AP50": 77.0, "AP75": 46.0}},
                     "coco_2017_val": {"bbox": {"AP": 25.0, "AP50": 46.0}}},
                    engine_line="Engine: detectron2 (auto: detectron2 imports)")
    return vgg, r101


def test_report_rows_and_charts(two_runs, tmp_path):
    out = tmp_path / "report"
    proc = subprocess.run([sys.executable, os.path.join(ROOT, "tools", "compare_backbones.py"),
                           *two_runs, "--out", str(out)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    text = (out / "report.md").read_text()
    rows = [ln for ln in text.splitlines() if ln.startswith("| vgg16_voc") or
            ln.startswith("| r101_voc")]
    assert len(rows) == 4  # two datasets x two runs
    # VOC07: 70.0 -> 77.0 is +10.0%; paper 73.2 / 76.4 beside ours
    assert ("| vgg16_voc | VGG-16 | VGG | torchvision | voc_2007_trainval+voc_2012_trainval | "
            "70.0 | 40.0 | (base) | (base) | 73.2 | – |") in rows
    assert ("| r101_voc | ResNet-101 | C4 | detectron2 | voc_2007_trainval+voc_2012_trainval | "
            "77.0 | 44.0 | +10.0% | +10.0% | 76.4 | – |") in rows
    # COCO: mAP@[.5,.95] 20 -> 25 is +25.0%; paper 41.5/21.2 and 48.4/27.2
    assert any(r.startswith("| r101_voc") and "46.0 | 25.0 | +15.0% | +25.0% | 48.4 | 27.2 |"
               in r for r in rows)
    assert any(r.startswith("| vgg16_voc") and "| 41.5 | 21.2 |" in r for r in rows)
    assert "mAP@[.5,.95] 21.2 -> 27.2 (+28.3%)" in text  # the paper's 28% relative gain
    for name in ("ap_bars.png", "loss_curves.png", "seconds_per_iter.png"):
        data = (out / name).read_bytes()
        assert data[:8] == PNG_MAGIC and len(data) > 5000, name
        assert f"]({name})" in text


def test_fpn_run_gets_no_paper_number(two_runs, tmp_path):
    fpn = make_run(tmp_path, "r101_fpn", R101_CFG.replace("build_resdet_resnet_backbone",
                                                          "build_resdet_resnet_fpn_backbone"),
                   [1.0], 0.3, {"voc_2007_test": {"bbox": {"AP50": 78.0}}})
    res = compare_backbones([two_runs[0], fpn], str(tmp_path / "out"))
    text = open(res["report"]).read()
    row = next(ln for ln in text.splitlines() if ln.startswith("| r101_fpn"))
    assert "| ResNet-101 | FPN |" in row and row.endswith("| – | – |")


def test_identify_backbone_from_detectron2_config():
    cfg = {"MODEL": {"BACKBONE": {"NAME": "build_resnet_fpn_backbone"},
                     "RESNETS": {"DEPTH": 50}}}
    assert identify_backbone(cfg) == ("resnet50", "FPN")
    assert identify_backbone({"MODEL": {"BACKBONE": {"NAME": "build_resdet_vgg_backbone"}}}) == (
        "vgg16", "VGG")


@pytest.mark.parametrize("broken, expected", [
    ("metrics.json", "metrics.json line 1 is not valid JSON"),
    ("eval_results.json", "eval_results.json is not valid JSON"),
    ("config.yaml", "config.yaml"),
])
def test_broken_file_is_named(two_runs, tmp_path, broken, expected):
    path = os.path.join(two_runs[1], broken)
    with open(path, "w") as f:
        f.write("{not json: [\n{}\n")
    with pytest.raises(UserError, match=expected.replace(".", r"\.").replace("[", r"\[")):
        compare_backbones(list(two_runs), str(tmp_path / "out"))


def test_missing_file_is_named(two_runs, tmp_path):
    os.remove(os.path.join(two_runs[0], "eval_results.json"))
    proc = subprocess.run([sys.executable, os.path.join(ROOT, "tools", "compare_backbones.py"),
                           *two_runs, "--out", str(tmp_path / "o")], capture_output=True,
                          text=True)
    assert proc.returncode == 2
    assert "eval_results.json does not exist" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_cut_last_metrics_line_is_ignored(two_runs, tmp_path, caplog):
    with open(os.path.join(two_runs[0], "metrics.json"), "a") as f:
        f.write('{"iteration": 7, "total_lo')  # a run killed while writing
    res = compare_backbones(list(two_runs), str(tmp_path / "out"))
    assert [len(r.metrics) for r in res["runs"]] == [3, 3]
    assert "last line is cut off" in caplog.text
