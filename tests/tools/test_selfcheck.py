"""tools/selfcheck.py: the environment table, a smoke item made to fail on purpose (its sentence
and the exit status), the GPU bench rows skipped on a CPU, and valid JSON. CI runs the whole
``--quick`` smoke itself (.ci/run), so the tests run single items."""

import json
import os
import subprocess
import sys

import pytest

from resdet.selfcheck.environment import collect_environment, peak_bf16_tflops
from resdet.selfcheck.smoke import error_sentence, item_names

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
TOOL = os.path.join(ROOT, "tools", "selfcheck.py")


def _selfcheck(tmp_path, *args):
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=ROOT, CUDA_VISIBLE_DEVICES="")
    out = tmp_path / "selfcheck.json"
    r = subprocess.run([sys.executable, TOOL, "--json", str(out), *args], env=env,
                       capture_output=True, text=True, timeout=600)
    with open(out) as f:
        return r, json.load(f)


def test_peak_table():
    assert peak_bf16_tflops("NVIDIA H200") == 989.4
    assert peak_bf16_tflops("NVIDIA H100 80GB HBM3") == 989.4
    assert peak_bf16_tflops("NVIDIA H100 PCIe") == 756.5
    assert peak_bf16_tflops("NVIDIA A100-SXM4-80GB") == 312.0
    assert peak_bf16_tflops("NVIDIA L4") == 121.0
    assert peak_bf16_tflops("Tesla T4") is None  # no bf16 tensor cores: no fraction stated


def test_error_sentence():
    out = "INFO something\nTraceback...\nerror: Dataset x is not on disk: put it there.\n\n"
    assert error_sentence(out) == "Dataset x is not on disk: put it there."
    assert error_sentence("a\nlast line\n") == "last line"
    assert error_sentence("") == "the command printed nothing"


def test_environment_names_datasets_on_disk(tmp_path, monkeypatch):
    ds = tmp_path / "ds"
    (ds / "coco" / "annotations").mkdir(parents=True)
    (ds / "coco" / "val2017").mkdir()
    (ds / "coco" / "annotations" / "instances_val2017.json").write_text("{}")
    (ds / "VOC2007").mkdir()
    monkeypatch.setenv("DETECTRON2_DATASETS", str(ds))
    findings = {f.name: f for f in collect_environment()}
    assert findings["Python"].status == "ok"
    assert findings["torchvision"].status == "ok"
    on_disk = findings["builtin datasets on disk"]
    # coco_2017_val has both its file and its folder; train has neither; every VOC split of
    # 2007 lives in VOC2007/
    assert on_disk.value == ("coco_2017_val, voc_2007_test, voc_2007_train, voc_2007_trainval, "
                             "voc_2007_val")
    assert findings["datasets root"].value == f"{ds} ($DETECTRON2_DATASETS)"


def test_quick_items_are_the_cpu_sized_ones():
    quick = item_names(quick=True)
    assert quick[:4] == ["pretrain-bf16-channels-last", "pretrain-fp16-loss-scaling",
                         "pretrain-compile", "resume-after-sigterm"]
    assert "detection-torchvision-quickstart" in quick
    assert "detection-torchvision-R101-C4" not in quick
    full = item_names(quick=False)
    assert {"detection-torchvision-R50-FPN", "detection-detectron2-R101-C4"} <= set(full)
    assert "detection-torchvision-quickstart" not in full


@pytest.mark.slow
def test_an_item_made_to_fail_says_why_and_sets_the_exit_status(tmp_path):
    r, report = _selfcheck(tmp_path, "--quick", "--only", "pretrain-fp16-loss-scaling",
                           "--work-dir", str(tmp_path / "work"),
                           "--opts", "MODEL.RESDET.ARCH", "resnet7")
    assert r.returncode == 1, r.stdout + r.stderr
    [item] = report["smoke"]
    assert item["name"] == "pretrain-fp16-loss-scaling" and item["status"] == "failed"
    log = tmp_path / "work" / "pretrain-fp16-loss-scaling.log"
    # The tool's own one-sentence error, then where to look
    assert item["detail"].startswith("MODEL.RESDET.ARCH = 'resnet7' is not a network; valid names ")
    assert item["detail"].endswith(f"(exit status 2; log: {log})")
    assert log.is_file() and "error: MODEL.RESDET.ARCH = 'resnet7' is not" in log.read_text()
    assert "FAIL pretrain-fp16-loss-scaling" in r.stdout
    assert "1 check(s) failed" in r.stdout
    assert report["failed"] == 1


@pytest.mark.slow
def test_a_passing_item_exits_0(tmp_path):
    r, report = _selfcheck(tmp_path, "--quick", "--only", "pretrain-fp16-loss-scaling",
                           "pretrain-compile")
    assert r.returncode == 0, r.stdout + r.stderr
    assert [(i["name"], i["status"]) for i in report["smoke"]] == [
        ("pretrain-fp16-loss-scaling", "passed"), ("pretrain-compile", "skipped")]
    assert report["smoke"][1]["detail"].startswith("torch.compile takes about a minute")
    assert "All checks passed." in r.stdout


def test_bench_rows_skip_without_a_gpu(tmp_path):
    r, report = _selfcheck(tmp_path, "--bench")
    assert r.returncode == 0, r.stdout + r.stderr
    assert len(report["bench"]) == 5
    assert {row["status"] for row in report["bench"]} == {"skipped"}
    assert {row["detail"] for row in report["bench"]} == {"a GPU row: no GPU visible"}
    assert report["bench"][0]["command"].startswith(
        "python tools/benchmark.py --task train --arch resnet50 --device cuda --batch 256 --amp "
        "--channels-last")
    assert report["device"] == "cpu"


def test_unknown_item_is_one_sentence(tmp_path):
    env = dict(os.environ, PYTHONPATH=ROOT, CUDA_VISIBLE_DEVICES="")
    r = subprocess.run([sys.executable, TOOL, "--quick", "--only", "pretrain"], env=env,
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 2
    assert r.stderr.strip().splitlines()[-1].startswith(
        "error: unknown item 'pretrain'; the items are: pretrain-bf16-channels-last, ")
