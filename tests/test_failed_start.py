"""A run whose start fails leaves OUTPUT_DIR as it was (issue 15): pretraining, the torchvision
engine and the Detectron2 engine, with MODEL.WEIGHTS for another network, an unreadable weights
file, a training image that cannot be read, or a checkpoint to resume that is broken."""

from __future__ import annotations

import argparse
import logging
import os
import re
import stat

import pytest
import torch

from resdet.engine.defaults import default_setup, undo_failed_start
from resdet.engine.events import setup_logging
from resdet.errors import UserError
from resdet.modeling import build_classifier
from tests.pretrain.tiny_cls_data import make_imagenet_folders
from tests.tvdet.tvdet_helpers import config_path, tiny_opts, train_args, write_tiny_coco

# A previous run's folder: the files a failed start must neither remove nor change.
PREVIOUS = {"log.txt": b"[11/29 10:00:00 resdet] INFO: the previous run\n",
            "config.yaml": b"OUTPUT_DIR: previous\n",
            "metrics.json": b'{"iteration": 19, "total_loss": 1.5}\n',
            "last_checkpoint": b"model_0000019.pth",
            "notes.txt": b"kept\n"}
COCO = {"DATASETS.TRAIN": '("coco_2017_train",)', "DATASETS.TEST": '("coco_2017_val",)',
        "MODEL.ROI_HEADS.NUM_CLASSES": "80"}
# resdet.checkpoint's sentence for MODEL.WEIGHTS made for cifar_resnet20, loaded into resnet18
ANOTHER_NETWORK = ("{w}: weight 'stem.conv1.weight' has shape (16, 3, 3, 3) but the model "
                   "resnet18 expects (64, 3, 7, 7) (and {more} more); build the architecture and "
                   "options the weights were made for")


@pytest.fixture(scope="module")
def dataset_root(tmp_path_factory) -> str:
    root = str(tmp_path_factory.mktemp("datasets"))
    make_imagenet_folders(root, classes=3, per_class=2, val_per_class=1)
    write_tiny_coco(root)
    return root


@pytest.fixture
def env(dataset_root, monkeypatch) -> str:
    monkeypatch.setenv("DETECTRON2_DATASETS", dataset_root)
    monkeypatch.setenv("RESDET_PROGRESS", "0")
    monkeypatch.setenv("OMP_NUM_THREADS", "1")  # tvdet's cpu_threads leaves torch's setting
    return dataset_root


@pytest.fixture(params=["fresh", "existing"])
def output_dir(request, tmp_path):
    """OUTPUT_DIR: absent, with a parent that is absent too, or a previous run's folder."""
    out = tmp_path / "runs" / "run"
    if request.param == "existing":
        out.mkdir(parents=True)
        for name, data in PREVIOUS.items():
            (out / name).write_bytes(data)
        os.chmod(out / "config.yaml", 0o600)
    return out


def assert_as_before(out) -> None:
    """OUTPUT_DIR holds exactly what it held before the start (a fresh one, and its parent, are
    gone), and nothing logs into it."""
    if out.parent.exists():  # a previous run's folder (or leftovers of a fresh one)
        assert {p.name: p.read_bytes() for p in out.iterdir()} == PREVIOUS
        assert stat.S_IMODE(os.stat(out / "config.yaml").st_mode) == 0o600
    handlers = logging.getLogger("resdet").handlers
    assert not [h for h in handlers if isinstance(h, logging.FileHandler)
                and h.baseFilename.startswith(str(out))]


def cifar_weights(tmp_path) -> str:
    """A classifier checkpoint of another network (CIFAR ResNet-20)."""
    path = str(tmp_path / "cifar_resnet20.pth")
    torch.save(build_classifier("cifar_resnet20", num_classes=10).state_dict(), path)
    return path


def unreadable_weights(tmp_path) -> str:
    path = str(tmp_path / "truncated.pth")
    with open(path, "wb") as f:
        f.write(b"not a checkpoint")
    return path


def unreadable_message(path: str) -> str:
    return (re.escape(f"{path} could not be read as a torch checkpoint (") + ".*"
            + re.escape("); check that it is a complete .pth/.pkl weight file") + "$")


# ------------------------------------------------------------------------------ the mechanism
def test_undo_removes_only_what_the_start_created(tmp_path, output_dir):
    from resdet.config import get_cfg

    cfg = get_cfg()
    cfg.OUTPUT_DIR = str(output_dir)
    existed = output_dir.exists()
    error = UserError("MODEL.WEIGHTS is for another model.")
    with pytest.raises(UserError) as e:
        with undo_failed_start(cfg.OUTPUT_DIR):
            default_setup(cfg)  # OUTPUT_DIR, log.txt, config.yaml
            assert (output_dir / "config.yaml").read_bytes() != PREVIOUS["config.yaml"]
            (output_dir / "metrics.json").open("a").write('{"iteration": 0}\n')
            (output_dir / "events.out.tfevents.1.host.1.0").write_bytes(b"")
            raise error
    assert e.value is error
    assert output_dir.exists() == existed
    assert_as_before(output_dir)
    setup_logging(None)


def test_in_a_folder_that_was_there_only_the_starts_files_go(tmp_path):
    with pytest.raises(UserError):
        with undo_failed_start(str(tmp_path)):  # e.g. OUTPUT_DIR "." in a project folder
            (tmp_path / "log.txt").write_text("the start's\n")
            (tmp_path / "draft.txt").write_text("someone else's\n")
            raise UserError("failed")
    assert sorted(os.listdir(tmp_path)) == ["draft.txt"]


def test_a_run_under_way_keeps_its_files(tmp_path):
    out = tmp_path / "run"
    with pytest.raises(RuntimeError):
        with undo_failed_start(str(out)) as start:
            setup_logging(str(out))
            start.mark_started()
            raise RuntimeError("after the first iteration")
    setup_logging(None)
    assert sorted(os.listdir(out)) == ["log.txt"]


def test_ctrl_c_during_the_start_is_undone_too(tmp_path):
    out = tmp_path / "run"
    with pytest.raises(KeyboardInterrupt):
        with undo_failed_start(str(out)):
            out.mkdir()
            (out / "config.yaml").write_text("x")
            raise KeyboardInterrupt
    assert not out.exists()


# -------------------------------------------------------------------------------- pretraining
def test_pretraining_with_weights_of_another_network(env, tmp_path, output_dir):
    from resdet.config import load_config
    from resdet.pretrain.train import run

    w = cifar_weights(tmp_path)
    cfg = load_config(config_path("pretrain/imagenet_resnet18.yaml"),
                      ["MODEL.DEVICE", "cpu", "DATALOADER.NUM_WORKERS", "0",
                       "MODEL.RESDET.NUM_CLASSES", "3", "MODEL.WEIGHTS", w,
                       "OUTPUT_DIR", str(output_dir)])
    with pytest.raises(UserError) as e:
        run(cfg, argparse.Namespace(eval_only=False, resume=False))
    assert str(e.value) == ANOTHER_NETWORK.format(w=w, more=65)
    assert_as_before(output_dir)


# ------------------------------------------------------------------ detection, both engines
def _detect(engine_name: str, out, eval_only: bool = False, resume: bool = False, **opts):
    """What tools/train_net.py does, in this process."""
    from resdet.train_detection import check_run, resolve_engine

    config = config_path("quickstart.yaml")
    cli = tiny_opts(str(out), **{**COCO, **opts})
    engine = resolve_engine(engine_name, config, cli)
    check_run(engine, eval_only=eval_only)
    args = train_args(config, cli, eval_only=eval_only, resume=resume, engine=engine_name)
    args.engine_line = engine.line
    return engine.main()(args, engine.cfg)


def test_torchvision_engine_with_weights_of_another_network(env, tmp_path, output_dir):
    w = cifar_weights(tmp_path)
    with pytest.raises(UserError) as e:
        _detect("torchvision", output_dir, **{"MODEL.WEIGHTS": w})
    assert str(e.value) == ANOTHER_NETWORK.format(w=w, more=64)
    assert_as_before(output_dir)


@pytest.mark.parametrize("engine", ["torchvision", "detectron2"])
def test_detection_with_an_unreadable_weights_file(engine, env, tmp_path, output_dir):
    if engine == "detectron2":
        pytest.importorskip("detectron2")
    w = unreadable_weights(tmp_path)
    with pytest.raises(UserError, match=unreadable_message(w)):
        _detect(engine, output_dir, **{"MODEL.WEIGHTS": w})
    assert_as_before(output_dir)


def test_torchvision_engine_whose_first_batch_fails(env, tmp_path, output_dir, monkeypatch):
    import shutil

    root = tmp_path / "ds"
    shutil.copytree(env, root)
    bad = root / "coco" / "train2017" / "000000000001.jpg"
    bad.write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    monkeypatch.setenv("DETECTRON2_DATASETS", str(root))
    with pytest.raises(UserError, match=re.escape(str(bad))):
        _detect("torchvision", output_dir, **{"DATALOADER.SKIP_BAD_SAMPLES": "False"})
    assert_as_before(output_dir)


def test_torchvision_engine_resuming_a_broken_checkpoint_keeps_the_run(env, tmp_path):
    out = tmp_path / "runs" / "run"
    out.mkdir(parents=True)
    for name, data in PREVIOUS.items():
        (out / name).write_bytes(data)
    os.chmod(out / "config.yaml", 0o600)
    (out / "model_0000019.pth").write_bytes(b"cut off")
    with pytest.raises(UserError, match=re.escape(str(out / "model_0000019.pth"))):
        _detect("torchvision", out, resume=True)
    assert (out / "model_0000019.pth").read_bytes() == b"cut off"
    (out / "model_0000019.pth").unlink()
    assert_as_before(out)
