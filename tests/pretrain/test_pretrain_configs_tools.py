"""Every pretraining config loads and names a real network; curves and Fig. 6 tool work."""

import glob
import json
import os

import pytest

from resdet.config import load_config
from resdet.errors import UserError
from resdet.modeling import get_arch, resolve_arch
from resdet.pretrain.train import build_pretrain_model, check_pretrain_config
from tests.pretrain.tiny_cls_data import make_imagenet_folders

CONFIG_DIR = os.path.join(os.path.dirname(__file__), "..", "..", "configs", "pretrain")
LEAVES = sorted(p for p in glob.glob(os.path.join(CONFIG_DIR, "*.yaml"))
                if not os.path.basename(p).startswith("Base-"))


def test_all_leaves_present():
    names = {os.path.basename(p)[:-5] for p in LEAVES}
    want = {f"imagenet_{n}" for n in ("resnet18", "resnet34", "resnet50", "resnet101",
                                      "resnet152", "plain18", "plain34", "resnet34_A",
                                      "resnet34_C", "vgg16")}
    want |= {f"cifar10_resnet{d}" for d in (20, 32, 44, 56, 110, 1202)}
    want |= {f"cifar10_plain{d}" for d in (20, 32, 44, 56, 110)}
    assert want | {"quickstart"} == names


@pytest.mark.parametrize("path", LEAVES, ids=os.path.basename)
def test_config_loads(path):
    cfg = load_config(path)
    check_pretrain_config(cfg)
    spec = get_arch(resolve_arch(cfg))
    name = os.path.basename(path)
    if name.startswith("cifar10"):
        assert (spec.input_size, spec.num_classes) == (32, 10)
        assert cfg.SOLVER.STEPS == (32000, 48000)
        assert cfg.SOLVER.MAX_ITER == 64000 and cfg.SOLVER.IMS_PER_BATCH == 128
        assert (cfg.PRETRAIN.WARMUP_LR > 0) == (spec.residual and spec.depth >= 110)
    elif name.startswith("imagenet"):
        assert cfg.SOLVER.IMS_PER_BATCH == 256 and cfg.PRETRAIN.TRAIN_RESIZE_RANGE == [256, 480]
    if name.endswith("_A.yaml") or name.endswith("_C.yaml"):
        assert cfg.MODEL.RESDET.SHORTCUT == name[-6]


def test_bad_choice_names_key():
    path = os.path.join(CONFIG_DIR, "quickstart.yaml")
    with pytest.raises(UserError, match="Config key 'PRETRAIN.MEAN' in the command line must be "
                                        "one of 'pixel', 'channel', got 'median'"):
        load_config(path, ["PRETRAIN.MEAN", "median"])
    cfg = load_config(path)
    cfg.defrost()
    cfg.PRETRAIN.MEAN = "median"  # set in code, past the loader's check
    with pytest.raises(UserError, match="PRETRAIN.MEAN"):
        check_pretrain_config(cfg)


@pytest.mark.parametrize("value, norm_layers", [
    ("BN", {"BatchNorm2d"}), ("GN", {"GroupNorm"}), ("", set()), ("none", set()), ("None", set())])
def test_pretrain_norm_is_a_choice_and_none_builds_no_norm(value, norm_layers):
    cfg = load_config(os.path.join(CONFIG_DIR, "quickstart.yaml"), ["PRETRAIN.NORM", value])
    check_pretrain_config(cfg)
    model = build_pretrain_model(cfg)
    assert {type(m).__name__ for m in model.modules() if "Norm" in type(m).__name__} \
        == norm_layers


def test_pretrain_norm_outside_its_list_names_the_key():
    path = os.path.join(CONFIG_DIR, "quickstart.yaml")
    with pytest.raises(UserError) as err:
        load_config(path, ["PRETRAIN.NORM", "LN"])
    assert str(err.value) == ("Config key 'PRETRAIN.NORM' in the command line must be one of "
                              "'BN', 'FrozenBN', 'GN', 'SyncBN', '', 'none', 'None', got 'LN'.")
    cfg = load_config(path)
    cfg.defrost()
    cfg.PRETRAIN.NORM = "NONE"  # set in code, past the loader's check
    with pytest.raises(UserError) as err:
        check_pretrain_config(cfg)
    assert str(err.value) == ("PRETRAIN.NORM is 'NONE'; use one of 'BN', 'FrozenBN', 'GN', "
                              "'SyncBN', '', 'none', 'None'.")


def test_network_options_follow_the_spec():
    path = os.path.join(CONFIG_DIR, "quickstart.yaml")
    # ARCH "" follows DEPTH (one fact, one key); stride_in_1x1 reaches the nets that take it
    cfg = load_config(path, ["MODEL.RESDET.ARCH", "", "MODEL.RESNETS.DEPTH", "50",
                             "MODEL.RESNETS.STRIDE_IN_1X1", "False"])
    check_pretrain_config(cfg)
    model = build_pretrain_model(cfg)
    assert model.res3[0].conv1.stride == (1, 1) and model.res3[0].conv2.stride == (2, 2)
    assert model.fc.out_features == 10
    # the CIFAR nets do not take it: the Detectron2 key (always set) is not passed to them
    cfg = load_config(path, ["MODEL.RESNETS.STRIDE_IN_1X1", "False"])
    assert type(build_pretrain_model(cfg).res3[0]).__name__ == "BasicBlock"
    with pytest.raises(UserError) as err:
        check_pretrain_config(load_config(path, ["MODEL.RESDET.ARCH", "resnet18",
                                                 "MODEL.RESNETS.DEPTH", "34"]))
    assert str(err.value).startswith("MODEL.RESDET.ARCH = 'resnet18' has 18 layers but "
                                     "MODEL.RESNETS.DEPTH = 34; ")


def test_shortcut_for_a_net_without_shortcuts_names_the_key():
    """It used to be dropped without a word for VGG-16."""
    cfg = load_config(os.path.join(CONFIG_DIR, "imagenet_vgg16.yaml"),
                      ["MODEL.RESDET.SHORTCUT", "B"])
    with pytest.raises(UserError) as err:
        check_pretrain_config(cfg)
    assert str(err.value) == ("MODEL.RESDET.SHORTCUT is 'B' but vgg16 takes no shortcut option "
                              "(it takes norm, freeze_at); set MODEL.RESDET.SHORTCUT ''.")


def test_plot_curves_and_degradation(tmp_path, monkeypatch):
    from resdet.pretrain.curves import load_curves, plot_runs
    from resdet.pretrain.degradation import run_degradation

    monkeypatch.setenv("DETECTRON2_DATASETS", str(tmp_path / "datasets"))
    monkeypatch.setenv("RESDET_PROGRESS", "0")
    make_imagenet_folders(str(tmp_path / "datasets"), classes=3, per_class=3, val_per_class=1)
    summary = run_degradation(
        "imagenet_train", 2, str(tmp_path / "fig6"), archs=("cifar_plain20", "cifar_resnet20"),
        batch=2, opts=["DATALOADER.NUM_WORKERS", "0", "PRETRAIN.TRAIN_RESIZE_RANGE", "[32, 40]"])
    assert set(summary) == {"cifar_plain20", "cifar_resnet20"}
    png = tmp_path / "fig6" / "degradation.png"
    assert png.stat().st_size > 1000
    with open(tmp_path / "fig6" / "summary.json") as f:
        assert set(json.load(f)) == set(summary)
    c = load_curves(str(tmp_path / "fig6" / "cifar_plain20"))
    assert c["train"][0] == [1, 2] and len(c["val"][0]) >= 1
    with pytest.raises(UserError, match="metrics.json"):
        plot_runs([str(tmp_path / "nowhere")], str(tmp_path / "x.png"))


def test_plot_curves_names_a_damaged_metrics_line(tmp_path):
    from resdet.pretrain.curves import load_curves

    with open(tmp_path / "metrics.json", "w") as f:
        f.write('{"iteration": 0, "train_error": 0.5}\n{"iterat\n'
                '{"iteration": 1, "train_error": 0.25}\n{"iteration": 2, "tra')
    with pytest.raises(UserError, match=r"metrics.json line 2 is not valid JSON"):
        load_curves(str(tmp_path))
    with open(tmp_path / "metrics.json", "w") as f:  # a run still writing: its last line is cut
        f.write('{"iteration": 0, "train_error": 0.5}\n{"iteration": 1, "tra')
    assert load_curves(str(tmp_path))["train"] == ([1], [50.0])
