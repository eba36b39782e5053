"""Tiny pretraining runs end to end on ImageNet folders and CIFAR batches; export to a backbone."""

import argparse
import json
import os

import pytest
import torch

from resdet.config import load_config
from resdet.errors import UserError
from resdet.pretrain.train import _test_sets, run
from tests.pretrain.tiny_cls_data import make_cifar_batches, make_imagenet_folders

CONFIGS = os.path.join(os.path.dirname(__file__), "..", "..", "configs", "pretrain")
ARGS = argparse.Namespace(eval_only=False, resume=False)
TINY = ["MODEL.DEVICE", "cpu", "DATALOADER.NUM_WORKERS", "0", "SOLVER.IMS_PER_BATCH", "4",
        "PRETRAIN.LOG_PERIOD", "1", "PRETRAIN.TEST_BATCH_SIZE", "4", "SOLVER.CHECKPOINT_PERIOD",
        "2", "SOLVER.AMP.ENABLED", "False"]


@pytest.fixture
def root(tmp_path, monkeypatch):
    monkeypatch.setenv("DETECTRON2_DATASETS", str(tmp_path / "datasets"))
    monkeypatch.setenv("RESDET_PROGRESS", "0")
    return tmp_path


def test_imagenet_folders_train_eval_export(root):
    make_imagenet_folders(str(root / "datasets"), classes=3, per_class=4, val_per_class=2)
    out = str(root / "out")
    cfg = load_config(os.path.join(CONFIGS, "imagenet_resnet18.yaml"), TINY + [
        "MODEL.RESDET.NUM_CLASSES", "3", "MODEL.RESDET.SHORTCUT", "B", "SOLVER.MAX_ITER", "3",
        "PRETRAIN.TRAIN_RESIZE_RANGE", "[36, 48]", "PRETRAIN.CROP_SIZE", "32",
        "PRETRAIN.TEST_RESIZE", "36", "PRETRAIN.LR_POLICY", "step", "OUTPUT_DIR", out,
        "SOLVER.CHECKPOINT_PERIOD", "100"])  # only model_final: resnet18 files are large
    res = run(cfg, ARGS)
    assert not res["interrupted"]
    with open(os.path.join(out, "eval_results.json")) as f:
        ev = json.load(f)
    assert set(ev) == {"imagenet_val"} and ev["imagenet_val"]["num_images"] == 6
    assert 0 <= ev["imagenet_val"]["top1_err"] <= 100 and "top5_err" in ev["imagenet_val"]
    for name in ("config.yaml", "log.txt", "metrics.json", "last_checkpoint", "model_final.pth"):
        assert os.path.isfile(os.path.join(out, name)), name
    with open(os.path.join(out, "metrics.json")) as f:
        lines = [json.loads(x) for x in f]
    train_lines = [x for x in lines if "loss_cls" in x]
    assert [x["iteration"] for x in train_lines] == [0, 1, 2]
    assert all({"lr", "time", "data_time", "total_loss"} <= set(x) for x in train_lines)
    assert any("imagenet_val/top1_err" in x for x in lines)

    final = torch.load(os.path.join(out, "model_final.pth"), weights_only=True)
    assert final["arch"] == "resnet18" and final["iteration"] == 2 and "MODEL" in final["cfg"]
    assert len(final["pixel_mean"]) == 3
    # the export is a detection backbone: every backbone weight matched
    from resdet.checkpoint import load_weights
    from resdet.modeling import build_backbone

    bb = build_backbone("resnet18", out_features=("res2", "res3", "res4", "res5"))
    report = load_weights(bb, os.path.join(out, "model_final.pth"), arch="resnet18")
    assert report.missing == []
    for k, v in bb.state_dict().items():
        if "num_batches_tracked" not in k:
            torch.testing.assert_close(v, final["model"][k])

    # tools/convert_weights.py turns it into a Detectron2 .pkl that loads back completely
    import runpy
    import sys

    pkl = os.path.join(out, "r18.pkl")
    argv = sys.argv
    sys.argv = ["convert_weights.py", "--src", os.path.join(out, "model_final.pth"),
                "--arch", "resnet18", "--out", pkl]
    try:
        runpy.run_path(os.path.join(CONFIGS, "..", "..", "tools", "convert_weights.py"),
                       run_name="__main__")
    except SystemExit as e:
        assert not e.code
    finally:
        sys.argv = argv
    bb2 = build_backbone("resnet18", out_features=("res2", "res3", "res4", "res5"))
    assert load_weights(bb2, pkl, arch="resnet18").missing == []
    torch.testing.assert_close(bb2.state_dict()["res5.1.conv2.weight"],
                               final["model"]["res5.1.conv2.weight"])

    # --eval-only with the exported weights and 10-crop testing
    cfg2 = load_config(os.path.join(out, "config.yaml"), [
        "MODEL.WEIGHTS", os.path.join(out, "model_final.pth"), "PRETRAIN.TEST_MODE", "10crop",
        "OUTPUT_DIR", str(root / "eval")])
    res2 = run(cfg2, argparse.Namespace(eval_only=True, resume=False))
    assert res2["eval_results"]["imagenet_val"]["num_images"] == 6

    # --eval-only needs no training set: classes and normaliser come from the weights, and a
    # val folder without one class keeps the model's label order (matched by folder name)
    assert final["classes"] == ["n01440764", "n01440765", "n01440766"]
    import shutil

    shutil.rmtree(str(root / "datasets" / "imagenet" / "train"))
    shutil.rmtree(str(root / "datasets" / "imagenet" / "val" / "n01440764"))
    sets, _ = _test_sets(cfg2, final["classes"], "model_final.pth")
    assert [r["label"] for r in sets["imagenet_val"]] == [1, 1, 2, 2]
    res3 = run(cfg2, argparse.Namespace(eval_only=True, resume=False))
    assert res3["eval_results"]["imagenet_val"]["num_images"] == 4


def test_cifar_batches_train(root):
    make_cifar_batches(str(root / "datasets"), per_batch=4, test=6)
    out = str(root / "cifar")
    cfg = load_config(os.path.join(CONFIGS, "cifar10_resnet20.yaml"), TINY + [
        "SOLVER.MAX_ITER", "2", "OUTPUT_DIR", out, "PRETRAIN.VAL_SPLIT", "4"])
    res = run(cfg, ARGS)
    assert set(res["eval_results"]) == {"cifar10_train_heldout", "cifar10_test"}
    assert res["eval_results"]["cifar10_train_heldout"]["num_images"] == 4
    assert res["eval_results"]["cifar10_test"]["num_images"] == 6
    # same seed -> same first losses, also with a loader worker (augmentation is seeded per
    # sample position, not per worker)
    cfg2 = load_config(os.path.join(CONFIGS, "cifar10_resnet20.yaml"), TINY + [
        "SOLVER.MAX_ITER", "2", "OUTPUT_DIR", out + "_again", "PRETRAIN.VAL_SPLIT", "4",
        "DATALOADER.NUM_WORKERS", "1"])
    run(cfg2, ARGS)

    def losses(d):
        with open(os.path.join(d, "metrics.json")) as f:
            return [r["loss_cls"] for r in map(json.loads, f) if "loss_cls" in r]

    # The second run has a loader worker, so one compute thread fewer: float sums in another
    # order (differences ~1e-7); another sample order would move the losses far more.
    assert len(losses(out)) == 2
    torch.testing.assert_close(torch.tensor(losses(out + "_again")), torch.tensor(losses(out)),
                               rtol=1e-5, atol=1e-6)


def test_num_classes_mismatch_names_key(root):
    make_imagenet_folders(str(root / "datasets"), classes=3, per_class=1, val_per_class=1)
    cfg = load_config(os.path.join(CONFIGS, "imagenet_resnet18.yaml"), TINY + [
        "MODEL.RESDET.NUM_CLASSES", "2", "OUTPUT_DIR", str(root / "o")])
    with pytest.raises(UserError, match="MODEL.RESDET.NUM_CLASSES"):
        run(cfg, ARGS)


def test_eval_only_torchvision_weights_use_torchvision_normalisation(root, monkeypatch):
    import torchvision

    from resdet.pretrain.task import ClassificationTask

    from resdet.data.classification import imagenet1k_wnids

    # real ImageNet-1k classes: torchvision's weights are labelled by them (issue 17)
    make_imagenet_folders(str(root / "datasets"), classes=3, per_class=1, val_per_class=2,
                          names=imagenet1k_wnids()[:3])
    tv18 = str(root / "tv_resnet18.pth")
    torch.save(torchvision.models.resnet18(weights=None).state_dict(), tv18)
    seen = []
    evaluate = ClassificationTask.evaluate

    def spy(self, model):
        seen.append(self.normalizer)
        return evaluate(self, model)

    monkeypatch.setattr(ClassificationTask, "evaluate", spy)
    opts = TINY + ["PRETRAIN.TEST_RESIZE", "36", "PRETRAIN.CROP_SIZE", "32",
                   "OUTPUT_DIR", str(root / "tv")]
    cfg = load_config(os.path.join(CONFIGS, "imagenet_resnet18.yaml"),
                      opts + ["MODEL.WEIGHTS", tv18])
    res = run(cfg, argparse.Namespace(eval_only=True, resume=False))
    assert res["eval_results"]["imagenet_val"]["num_images"] == 6
    # ImageNet mean/std of [0, 1] RGB images, on 0..255 pixels; not the training set's mean
    torch.testing.assert_close(seen[0].mean.view(3), torch.tensor([123.675, 116.28, 103.53]))
    torch.testing.assert_close(seen[0].std.view(3), torch.tensor([58.395, 57.12, 57.375]))

    # torchvision's ResNet-50 strides in the 3x3 conv: evaluating it with the paper's placement
    # would load without complaint and score badly, so it is refused
    tv50 = str(root / "tv_resnet50.pth")
    torch.save(torchvision.models.resnet50(weights=None).state_dict(), tv50)
    cfg = load_config(os.path.join(CONFIGS, "imagenet_resnet50.yaml"),
                      opts + ["MODEL.WEIGHTS", tv50])
    with pytest.raises(UserError, match=r"tv_resnet50.pth holds torchvision weights, whose "
                       r"resnet50 puts the stride in the 3x3 conv; set "
                       r"MODEL.RESNETS.STRIDE_IN_1X1 False to evaluate them\."):
        run(cfg, argparse.Namespace(eval_only=True, resume=False))
    cfg = load_config(os.path.join(CONFIGS, "imagenet_resnet50.yaml"),
                      opts + ["MODEL.WEIGHTS", tv50, "MODEL.RESNETS.STRIDE_IN_1X1", "False"])
    res = run(cfg, argparse.Namespace(eval_only=True, resume=False))
    assert res["eval_results"]["imagenet_val"]["num_images"] == 6
