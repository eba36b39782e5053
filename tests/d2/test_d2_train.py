"""resdet.d2.train: resume, eval-only, bad input, signals, and the outputs DESIGN.md lists."""

import argparse
import json
import logging
import os
import re
import signal

import pytest

pytest.importorskip("detectron2")

import torch  # noqa: E402
from tests.d2.d2_helpers import TINY_OPTS  # noqa: E402

from resdet.d2.data import SkippingDatasetMapper  # noqa: E402
from resdet.d2.train import SignalCheckpointHook, main  # noqa: E402
from resdet.errors import UserError  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
QUICKSTART = os.path.join(ROOT, "configs", "quickstart.yaml")


def _args(output_dir, *opts, eval_only=False, resume=False, config=QUICKSTART):
    return argparse.Namespace(
        config_file=config, opts=[*TINY_OPTS, "OUTPUT_DIR", str(output_dir), *opts],
        resume=resume, eval_only=eval_only, num_gpus=1, debug=False)


@pytest.mark.skipif(not os.path.isfile(QUICKSTART), reason="configs/quickstart.yaml not yet there")
def test_train_resume_and_eval_only(d2_datasets, tmp_path):
    out = tmp_path / "out"
    results = main(_args(out))
    assert set(results["bbox"]) >= {"AP", "AP50", "AP75"}
    saved = json.loads((out / "eval_results.json").read_text())
    assert list(saved) == ["shapes_val"]
    assert set(saved["shapes_val"]["bbox"]) >= {"AP", "AP50", "AP75", "APs", "APm", "APl"}
    assert (out / "log.txt").is_file() and (out / "config.yaml").is_file()
    # as on the torchvision engine, a few test images are drawn after training
    assert len(list((out / "predictions").glob("*.png"))) == 3
    first = torch.load(out / "model_final.pth", map_location="cpu", weights_only=True)

    # --resume continues from last_checkpoint: one more iteration, not a fresh start
    main(_args(out, "SOLVER.MAX_ITER", "3", resume=True))
    second = torch.load(out / "model_final.pth", map_location="cpu", weights_only=True)
    assert (first["iteration"], second["iteration"]) == (1, 2)
    iterations = [json.loads(x)["iteration"] for x in (out / "metrics.json").read_text()
                  .splitlines() if "total_loss" in x]
    assert iterations[-1] == 2 and iterations.count(2) == 1

    # --eval-only evaluates MODEL.WEIGHTS without training, and writes the same results file
    eval_out = tmp_path / "eval"
    res = main(_args(eval_out, "MODEL.WEIGHTS", str(out / "model_final.pth"), eval_only=True))
    assert set(res["bbox"]) >= {"AP", "AP50", "AP75"}
    assert not (eval_out / "model_final.pth").exists()
    assert "shapes_val" in json.loads((eval_out / "eval_results.json").read_text())


@pytest.mark.skipif(not os.path.isfile(QUICKSTART), reason="configs/quickstart.yaml not yet there")
def test_dataset_not_on_disk_is_one_sentence(d2_datasets, tmp_path, monkeypatch):
    empty = tmp_path / "empty"
    empty.mkdir()
    monkeypatch.setenv("DETECTRON2_DATASETS", str(empty))
    with pytest.raises(UserError, match=r"coco_2017_train in DATASETS.TRAIN is not on disk: "
                                        r".*instances_train2017.json does not exist"):
        main(_args(tmp_path / "out", "DATASETS.TRAIN", "('coco_2017_train',)",
                   "DATASETS.TEST", "()", "MODEL.ROI_HEADS.NUM_CLASSES", "80"))
    monkeypatch.setenv("DETECTRON2_DATASETS", d2_datasets)
    with pytest.raises(UserError, match=r"'shapes_tran'.*did you mean 'shapes_train'"):
        main(_args(tmp_path / "out", "DATASETS.TRAIN", "('shapes_tran',)"))


@pytest.mark.skipif(not os.path.isfile(QUICKSTART), reason="configs/quickstart.yaml not yet there")
def test_bad_box_fails_when_skipping_is_off(d2_datasets, tmp_path, monkeypatch):
    import shutil

    root = tmp_path / "ds"
    shutil.copytree(d2_datasets, root)
    json_file = root / "coco" / "annotations" / "instances_train2017.json"
    data = json.loads(json_file.read_text())
    data["annotations"][0]["bbox"][2] = -5.0  # negative width
    json_file.write_text(json.dumps(data))
    monkeypatch.setenv("DETECTRON2_DATASETS", str(root))
    coco = ("DATASETS.TRAIN", "('coco_2017_train',)", "DATASETS.TEST", "()",
            "MODEL.ROI_HEADS.NUM_CLASSES", "80")
    with pytest.raises(UserError, match=re.escape(str(json_file))):
        main(_args(tmp_path / "out", *coco, "DATALOADER.SKIP_BAD_SAMPLES", "False"))
    main(_args(tmp_path / "out2", *coco))  # skipped with a warning by default: trains
    assert (tmp_path / "out2" / "model_final.pth").is_file()


@pytest.mark.skipif(not os.path.isfile(QUICKSTART), reason="configs/quickstart.yaml not yet there")
def test_key_the_engine_cannot_honour_is_an_error(d2_datasets, tmp_path):
    with pytest.raises(UserError, match="SOLVER.COMPILE"):
        main(_args(tmp_path / "out", "SOLVER.COMPILE", "True"))


def _mapper_cfg():
    from detectron2.config import get_cfg

    from resdet.config import add_resdet_config

    cfg = add_resdet_config(get_cfg())
    cfg.INPUT.MIN_SIZE_TRAIN = (32,)
    cfg.INPUT.MAX_SIZE_TRAIN = 64
    return cfg


def test_unreadable_training_image_is_skipped_with_its_name(tmp_path, caplog):
    bad = tmp_path / "broken.jpg"
    bad.write_bytes(b"\xff\xd8\xff\xe0 this is not a jpeg")
    record = {"file_name": str(bad), "height": 10, "width": 10, "image_id": 1,
              "annotations": []}
    mapper = SkippingDatasetMapper(_mapper_cfg(), is_train=True)
    with caplog.at_level(logging.WARNING):
        assert mapper(dict(record)) is None
        assert mapper(dict(record)) is None
    assert mapper.skipped == 2
    assert "broken.jpg" in caplog.text and "1 image(s) skipped" in caplog.text  # once a file
    strict = SkippingDatasetMapper(_mapper_cfg(), is_train=True, skip_bad=False)
    with pytest.raises(UserError, match="broken.jpg.*DATALOADER.SKIP_BAD_SAMPLES"):
        strict(dict(record))


def test_sigterm_saves_a_checkpoint_then_stops():
    saved = []

    class FakeCheckpointer:
        def save(self, name, **kwargs):
            saved.append((name, kwargs))

    class FakeTrainer:
        iter = 41

    hook = SignalCheckpointHook(FakeCheckpointer())
    hook.trainer = FakeTrainer()
    old = signal.getsignal(signal.SIGTERM)
    hook.before_train()
    try:
        hook.after_step()
        assert saved == []  # nothing happens without a signal
        os.kill(os.getpid(), signal.SIGTERM)
        with pytest.raises(SystemExit) as exc:
            hook.after_step()
        assert exc.value.code == 0  # saved and stopped cleanly, as the other engines do
        assert saved == [("model_0000041", {"iteration": 41})]
    finally:
        hook.after_train()
    assert signal.getsignal(signal.SIGTERM) is old


@pytest.mark.skipif(not os.path.isfile(QUICKSTART), reason="configs/quickstart.yaml not yet there")
def test_nonfinite_loss_is_one_sentence_naming_iteration_and_checkpoint(d2_datasets, tmp_path):
    from resdet.d2.train import _nonfinite_message

    out = tmp_path / "nan"
    # A zero pixel std makes every input infinite, so the first loss is NaN.
    with pytest.raises(UserError, match=r"The loss became infinite or NaN at iteration 0; no "
                                        r"checkpoint was written before it\."):
        main(_args(out, "MODEL.PIXEL_STD", "[0.0, 0.0, 0.0]"))
    assert not out.exists()  # its first iteration failed: the start left nothing (issue 15)
    out.mkdir()
    (out / "last_checkpoint").write_text("model_0000099.pth")
    message = _nonfinite_message(str(out), 123)
    assert message.startswith("The loss became infinite or NaN at iteration 123; the last good "
                              f"checkpoint is {out / 'model_0000099.pth'} (continue from it "
                              "with --resume")


@pytest.mark.skipif(not os.path.isfile(QUICKSTART), reason="configs/quickstart.yaml not yet there")
def test_two_processes_train_and_evaluate_together(d2_datasets, tmp_path):
    """tools/train_net.py --num-gpus 2 on the CPU: two gloo processes, DDP, gathered evaluation."""
    import subprocess
    import sys

    out = tmp_path / "ddp"
    env = dict(os.environ, DETECTRON2_DATASETS=d2_datasets, RESDET_PROGRESS="0")
    proc = subprocess.run(
        [sys.executable, os.path.join(ROOT, "tools", "train_net.py"), "--config", QUICKSTART,
         "--engine", "detectron2", "--num-gpus", "2", *TINY_OPTS, "OUTPUT_DIR", str(out),
         "MODEL.ROI_HEADS.SCORE_THRESH_TEST", "0.0"],  # detections on every image
        capture_output=True, text=True, env=env, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (out / "log.txt").is_file() and (out / "log.txt.rank1").is_file()
    iterations = [json.loads(x)["iteration"] for x in (out / "metrics.json").read_text()
                  .splitlines() if "total_loss" in x]
    assert iterations == [1]  # Detectron2 writes every 20 iterations and the last; rank 0 only
    assert torch.load(out / "model_final.pth", map_location="cpu",
                      weights_only=True)["iteration"] == 1
    # each process ran inference on part of shapes_val (3 images); rank 0 scored all of them
    # (resdet's COCO evaluator, as on the torchvision engine, gathers and writes the detections)
    predictions = json.loads((out / "inference" / "shapes_val" /
                              "coco_instances_results.json").read_text())
    val = json.loads(open(os.path.join(d2_datasets, "shapes", "annotations",
                                       "instances_val.json")).read())
    assert len(val["images"]) == 3
    assert sorted({p["image_id"] for p in predictions}) == sorted(i["id"] for i in val["images"])
    assert "AP50" in json.loads((out / "eval_results.json").read_text())["shapes_val"]["bbox"]
