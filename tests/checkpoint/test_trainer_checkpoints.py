"""Training checkpoints of the trainers people use load as weights, without running their code.

Each test builds one trainer's checkpoint layout with random values (a torchvision ResNet-18
wrapped as that trainer wraps it, plus the optimizer, schedule and options it stores), saves it
with ``torch.save`` and checks that resdet takes the right network from the right entry: the
loaded model computes what the source network computes, and the log names the entry.
"""

import argparse
import importlib.util
import logging
import os
import re

import pytest
import torch
import torchvision

from resdet.checkpoint import WeightsKind, convert_to_resdet, load_weights, read_weights_file
from resdet.errors import UserError
from resdet.modeling import build_backbone, build_classifier

X = torch.randn(1, 3, 64, 64, generator=torch.Generator().manual_seed(0))


def _tv_resnet18(seed: int) -> torch.nn.Module:
    """A torchvision ResNet-18 with random weights and non-trivial BN statistics."""
    torch.manual_seed(seed)
    net = torchvision.models.resnet18(weights=None)
    g = torch.Generator().manual_seed(seed)
    for name, buf in net.named_buffers():
        if name.endswith("running_mean"):
            buf.copy_(torch.rand(buf.shape, generator=g) * 0.2 - 0.1)
        elif name.endswith("running_var"):
            buf.copy_(torch.rand(buf.shape, generator=g) + 0.5)
    return net.eval()


@pytest.fixture(scope="module")
def nets():
    """Two different networks: the one a trainer's convention says to use, and its twin."""
    return _tv_resnet18(0), _tv_resnet18(1)


def _res5(tv: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    x = tv.maxpool(tv.relu(tv.bn1(tv.conv1(x))))
    return tv.layer4(tv.layer3(tv.layer2(tv.layer1(x))))


def _prefixed(prefix: str, sd: dict) -> dict:
    return {prefix + k: v for k, v in sd.items()}


def _optimizer_and_schedule(net: torch.nn.Module):
    opt = torch.optim.SGD(net.parameters(), lr=0.1, momentum=0.9)
    net(X).sum().backward()
    opt.step()  # a real momentum buffer per parameter, as in a saved training run
    opt.zero_grad()
    sched = torch.optim.lr_scheduler.StepLR(opt, 30)
    return opt.state_dict(), sched.state_dict()


def _load_classifier(path, caplog, **kwargs):
    model = build_classifier("resnet18", stride_in_1x1=False).eval()
    with caplog.at_level(logging.INFO, logger="resdet.checkpoint"):
        report = load_weights(model, str(path), arch="resnet18", **kwargs)
    return model, report


def _load_backbone(path, caplog, **kwargs):
    model = build_backbone("resnet18", out_features=("res5",), stride_in_1x1=False).eval()
    with caplog.at_level(logging.INFO, logger="resdet.checkpoint"):
        report = load_weights(model, str(path), arch="resnet18", **kwargs)
    return model, report


def _same_classifier(model, tv):
    with torch.no_grad():
        torch.testing.assert_close(model(X), tv(X))


def _same_backbone(model, tv):
    with torch.no_grad():
        torch.testing.assert_close(model(X)["res5"], _res5(tv, X))


def test_torchvision_reference_script_checkpoint_b17(nets, tmp_path, caplog):
    """Case b17: references/classification/train.py's checkpoint, with its argparse.Namespace."""
    tv, _ = nets
    opt, sched = _optimizer_and_schedule(_tv_resnet18(0).train())
    args = argparse.Namespace(model="resnet18", lr=0.1, epochs=90, batch_size=32,
                              output_dir=".", device="cuda", weights=None)
    path = tmp_path / "model_89.pth"
    torch.save({"model": tv.state_dict(), "optimizer": opt, "lr_scheduler": sched,
                "epoch": 89, "args": args}, path)
    assert read_weights_file(path)["args"] == args  # admitted as data, rebuilt as itself

    model, report = _load_classifier(path, caplog)
    assert report.missing == [] and report.unexpected == []
    assert report.kind is WeightsKind.TORCHVISION_RESNET and report.entry == "model"
    assert report.source_format == "torchvision ResNet (or timm)"  # kept for its readers
    _same_classifier(model, tv)
    assert (f"Read {path}: a torchvision reference-script checkpoint (torchvision ResNet (or "
            "timm)); using entry 'model' (122 tensors); not used: optimizer, lr_scheduler, "
            "epoch, args") in caplog.text

    # ... and through tools/convert_weights.py, as the case tried it
    spec = importlib.util.spec_from_file_location(
        "convert_weights", os.path.join(os.path.dirname(__file__), "..", "..", "tools",
                                        "convert_weights.py"))
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    tool.main(["--src", str(path), "--arch", "resnet18", "--out", str(tmp_path / "r18.pth")])
    out = torch.load(tmp_path / "r18.pth", weights_only=True)["model"]
    torch.testing.assert_close(out["res5.1.conv2.weight"], tv.state_dict()["layer4.1.conv2.weight"])


def test_torchvision_reference_checkpoint_with_model_ema(nets, tmp_path, caplog):
    tv, twin = nets
    ema = torch.optim.swa_utils.AveragedModel(twin)  # torchvision's ExponentialMovingAverage
    path = tmp_path / "checkpoint.pth"
    torch.save({"model": tv.state_dict(), "model_ema": ema.state_dict(), "epoch": 3,
                "args": argparse.Namespace(model_ema=True)}, path)
    model, report = _load_classifier(path, caplog)
    assert report.entry == "model_ema" and report.missing == [] and report.unexpected == []
    _same_classifier(model, twin)  # module. and n_averaged are the average's wrapping
    assert "using entry 'model_ema', names under 'module.' (122 tensors); the exponential " \
           "moving average" in caplog.text
    model, report = _load_classifier(path, caplog, entry="model")
    assert report.entry == "model"
    _same_classifier(model, tv)


def test_timm_train_checkpoint_prefers_ema(nets, tmp_path, caplog):
    tv, twin = nets
    opt, _ = _optimizer_and_schedule(_tv_resnet18(0).train())
    path = tmp_path / "model_best.pth.tar"
    torch.save({"epoch": 99, "arch": "resnet18", "state_dict": tv.state_dict(),
                "optimizer": opt, "version": 2,
                "args": argparse.Namespace(model="resnet18", lr=0.4, model_ema=True),
                "metric": 71.3, "state_dict_ema": twin.state_dict()}, path)
    model, report = _load_classifier(path, caplog)
    assert report.entry == "state_dict_ema" and report.missing == []
    _same_classifier(model, twin)
    assert ("a timm train.py checkpoint (torchvision ResNet (or timm)); using entry "
            "'state_dict_ema' (122 tensors); the exponential moving average of the weights, "
            "which timm's load_checkpoint picks by default; for 'state_dict' instead, convert "
            "the file with tools/convert_weights.py --entry state_dict") in caplog.text
    model, report = _load_classifier(path, caplog, entry="state_dict")
    _same_classifier(model, tv)

    # without an EMA, timm's file holds one network
    torch.save({"epoch": 1, "arch": "resnet18", "state_dict": tv.state_dict(), "version": 2,
                "args": argparse.Namespace(model="resnet18")}, path)
    model, report = _load_classifier(path, caplog)
    assert report.entry == "state_dict"
    _same_classifier(model, tv)


def test_lightning_checkpoint_with_module_prefix(nets, tmp_path, caplog):
    tv, _ = nets
    opt, sched = _optimizer_and_schedule(_tv_resnet18(0).train())
    path = tmp_path / "epoch=9-step=500.ckpt"
    torch.save({
        "epoch": 9, "global_step": 500, "pytorch-lightning_version": "2.4.0",
        "state_dict": _prefixed("model.", tv.state_dict()),  # LightningModule.self.model
        "loops": {"fit_loop": {"state_dict": {}, "epoch_progress": {"total": {"ready": 10}}}},
        "callbacks": {"ModelCheckpoint{'monitor': 'val_acc', 'mode': 'max'}": {
            "monitor": "val_acc", "best_model_score": torch.tensor(0.71),
            "best_model_path": "/runs/epoch=9.ckpt", "kth_value": torch.tensor(0.7),
            "best_k_models": {"/runs/epoch=9.ckpt": torch.tensor(0.71)}, "dirpath": "/runs"}},
        "optimizer_states": [opt], "lr_schedulers": [sched],
        "hparams_name": "kwargs", "hyper_parameters": {"arch": "resnet18", "lr": 0.1},
    }, path)
    model, report = _load_classifier(path, caplog)
    assert report.entry == "state_dict" and report.missing == [] and report.unexpected == []
    assert report.kind is WeightsKind.TORCHVISION_RESNET
    _same_classifier(model, tv)
    assert "a PyTorch Lightning checkpoint (torchvision ResNet (or timm)); using entry " \
           "'state_dict', names under 'model.' (122 tensors)" in caplog.text


@pytest.mark.parametrize("new_trainer_state", [False, True])
def test_detectron2_training_checkpoint(tmp_path, caplog, new_trainer_state):
    src = build_backbone("resnet18", out_features=("res5",)).eval()
    model_sd = _prefixed("backbone.bottom_up.", src.state_dict())
    model_sd["backbone.fpn_lateral2.weight"] = torch.randn(256, 64, 1, 1)
    model_sd["roi_heads.box_predictor.cls_score.weight"] = torch.randn(81, 1024)
    optimizer = {"state": {0: {"momentum_buffer": torch.randn(3)}},
                 "param_groups": [{"lr": 0.02, "momentum": 0.9, "params": [0]}]}
    scheduler = {"base_lrs": [0.02], "last_epoch": 5000}
    if new_trainer_state:  # Detectron2's DefaultTrainer since 2020: one "trainer" entry
        ckpt = {"model": model_sd, "trainer": {"iteration": 4999, "optimizer": optimizer,
                                               "hooks": {"LRScheduler": {"scheduler": scheduler}}},
                "iteration": 4999}
    else:
        ckpt = {"model": model_sd, "optimizer": optimizer, "scheduler": scheduler,
                "iteration": 4999}
    path = tmp_path / "model_0004999.pth"
    torch.save(ckpt, path)
    model = build_backbone("resnet18", out_features=("res5",)).eval()
    with caplog.at_level(logging.INFO, logger="resdet.checkpoint"):
        report = load_weights(model, str(path))
    assert report.kind is WeightsKind.DETECTRON2 and report.entry == "model"
    assert report.missing == []
    assert sorted(report.unexpected) == ["backbone.fpn_lateral2.weight",
                                         "roi_heads.box_predictor.cls_score.weight"]
    for k, v in model.state_dict().items():
        torch.testing.assert_close(v, src.state_dict()[k])
    assert "a Detectron2 training checkpoint (Detectron2 checkpoint); using entry 'model', " \
           "names under 'backbone.bottom_up.'" in caplog.text


def test_mmpretrain_checkpoint_backbone_prefix(nets, tmp_path, caplog):
    tv, _ = nets
    sd = {k: v for k, v in tv.state_dict().items() if not k.startswith("fc.")}
    state = _prefixed("backbone.", sd)  # mmpretrain's ResNet keeps torchvision's names
    state["head.fc.weight"] = torch.randn(1000, 512)
    state["head.fc.bias"] = torch.randn(1000)
    meta = {"mmengine_version": "0.10.4", "epoch": 100, "iter": 500400, "seed": 0,
            "dataset_meta": {"classes": ("tench", "goldfish")}, "cfg": "model = dict(...)"}
    path = tmp_path / "resnet18_8xb32_in1k.pth"
    torch.save({"meta": meta, "state_dict": state}, path)
    model, report = _load_backbone(path, caplog)
    assert report.kind is WeightsKind.TORCHVISION_RESNET and report.entry == "state_dict"
    assert report.missing == [] and sorted(report.unexpected) == ["head.fc.bias",
                                                                  "head.fc.weight"]
    _same_backbone(model, tv)
    assert "an MMPretrain/MMDetection (OpenMMLab) checkpoint (torchvision ResNet (or timm)); " \
           "using entry 'state_dict', names under 'backbone.'" in caplog.text


def _mlp_fc(prefix):  # MoCo v2 / v3 replace fc by a projection MLP
    return {prefix + "fc.0.weight": torch.randn(512, 512), prefix + "fc.0.bias": torch.randn(512),
            prefix + "fc.2.weight": torch.randn(128, 512), prefix + "fc.2.bias": torch.randn(128)}


def _backbone_sd(net):
    return {k: v for k, v in net.state_dict().items() if not k.startswith("fc.")}


def test_moco_v2_checkpoint_uses_query_encoder(nets, tmp_path, caplog):
    tv, twin = nets
    sd = {**_prefixed("module.encoder_q.", _backbone_sd(tv)), **_mlp_fc("module.encoder_q."),
          **_prefixed("module.encoder_k.", _backbone_sd(twin)), **_mlp_fc("module.encoder_k."),
          "module.queue": torch.randn(128, 65536 // 64), "module.queue_ptr": torch.zeros(1)}
    path = tmp_path / "moco_v2_800ep_pretrain.pth.tar"
    torch.save({"epoch": 800, "arch": "resnet50", "state_dict": sd, "optimizer": {}}, path)
    model, report = _load_backbone(path, caplog)
    assert report.kind is WeightsKind.TORCHVISION_RESNET and report.missing == []
    _same_backbone(model, tv)
    assert "using entry 'state_dict', names under 'module.encoder_q.' (126 tensors); MoCo " \
           "v1/v2's query encoder (the file also holds 'module.encoder_k.', not used)" \
           in caplog.text
    assert not any(k.startswith("encoder_k") for k in report.unexpected)

    model, report = _load_backbone(path, caplog, prefix="module.encoder_k.")
    _same_backbone(model, twin)


def test_moco_v3_checkpoint_uses_base_encoder(nets, tmp_path, caplog):
    tv, twin = nets
    sd = {**_prefixed("module.base_encoder.", _backbone_sd(tv)),
          **_mlp_fc("module.base_encoder."),
          **_prefixed("module.momentum_encoder.", _backbone_sd(twin)),
          **_mlp_fc("module.momentum_encoder."),
          "module.predictor.0.weight": torch.randn(512, 256)}
    path = tmp_path / "r-50-1000ep.pth.tar"
    torch.save({"epoch": 1000, "arch": "resnet50", "state_dict": sd, "optimizer": {},
                "scaler": {"scale": 65536.0}}, path)
    model, report = _load_backbone(path, caplog)
    assert report.missing == []
    _same_backbone(model, tv)
    assert "names under 'module.base_encoder.'" in caplog.text
    assert "MoCo v3's base encoder (the file also holds 'module.momentum_encoder.', not used)" \
           in caplog.text


def test_dino_checkpoint_uses_teacher(nets, tmp_path, caplog):
    tv, twin = nets
    head = {"head.mlp.0.weight": torch.randn(2048, 512), "head.last_layer.weight_g":
            torch.randn(65536, 1)}
    path = tmp_path / "dino_resnet50_pretrain_full_checkpoint.pth"
    torch.save({"student": _prefixed("module.", {**_prefixed("backbone.", _backbone_sd(twin)),
                                                 **head}),
                "teacher": _prefixed("module.", {**_prefixed("backbone.", _backbone_sd(tv)),
                                                 **head}),
                "optimizer": {}, "epoch": 800, "fp16_scaler": None,
                "args": argparse.Namespace(arch="resnet50", out_dim=65536, lr=0.3),
                "dino_loss": {"center": torch.zeros(1, 65536)}}, path)
    model, report = _load_backbone(path, caplog)
    assert report.entry == "teacher" and report.missing == []
    _same_backbone(model, tv)
    assert "a DINO checkpoint (torchvision ResNet (or timm)); using entry 'teacher', names " \
           "under 'module.backbone.' (122 tensors); DINO's teacher network" in caplog.text
    model, report = _load_backbone(path, caplog, entry="student")
    _same_backbone(model, twin)


def test_swav_checkpoint_ddp_prefix(nets, tmp_path, caplog):
    tv, _ = nets
    sd = _prefixed("module.", {**_backbone_sd(tv),
                               "projection_head.0.weight": torch.randn(2048, 512),
                               "prototypes.weight": torch.randn(3000, 128)})
    path = tmp_path / "swav_800ep_pretrain.pth.tar"
    torch.save({"epoch": 800, "state_dict": sd, "optimizer": {}}, path)
    model, report = _load_backbone(path, caplog)
    assert report.kind is WeightsKind.TORCHVISION_RESNET and report.missing == []
    assert sorted(report.unexpected) == ["projection_head.0.weight", "prototypes.weight"]
    _same_backbone(model, tv)
    assert "a training checkpoint (MoCo, SwAV and others) (torchvision ResNet (or timm)); " \
           "using entry 'state_dict', names under 'module.'" in caplog.text


def test_byol_style_online_and_target_networks(nets, tmp_path, caplog):
    tv, twin = nets
    sd = {**_prefixed("online_network.encoder.", _backbone_sd(tv)),
          **_prefixed("target_network.encoder.", _backbone_sd(twin)),
          "online_network.projector.0.weight": torch.randn(4096, 512)}
    path = tmp_path / "byol.pth"
    torch.save(sd, path)
    model, report = _load_backbone(path, caplog)
    assert report.missing == [] and report.entry is None
    _same_backbone(model, tv)
    assert "names under 'online_network.encoder.'" in caplog.text


def test_unknown_checkpoint_layout_names_keys_and_way_forward(nets, tmp_path):
    tv, _ = nets
    path = tmp_path / "mine.pth"
    torch.save({"net": tv.state_dict(), "epoch": 3, "best_acc": 0.7}, path)
    with pytest.raises(UserError) as e:
        load_weights(build_classifier("resnet18"), str(path))
    assert str(e.value) == (
        f"{path} is a checkpoint layout resdet does not know (its entries: 'net' (122 "
        "tensors), 'epoch', 'best_acc'); name the entry that holds the network's weights with "
        "tools/convert_weights.py --entry net and use the file it writes, or re-save that entry "
        "alone (torch.save(checkpoint['net'], 'weights.pth'))")
    # the way it names works
    converted = convert_to_resdet(read_weights_file(path), str(path), entry="net")
    assert converted.kind is WeightsKind.TORCHVISION_RESNET and converted.entry == "net"


def test_two_unknown_networks_are_not_guessed(nets, tmp_path):
    tv, twin = nets
    sd = {**_prefixed("net_a.", tv.state_dict()), **_prefixed("net_b.", twin.state_dict())}
    with pytest.raises(UserError, match=re.escape(
            "<state dict> holds several networks (under 'net_a.', 'net_b.') and resdet does not "
            "know which one to use; convert the one you want with tools/convert_weights.py "
            "--prefix net_a. and use the file it writes")):
        load_weights(build_classifier("resnet18"), sd)
    model = build_classifier("resnet18", stride_in_1x1=False).eval()
    load_weights(model, sd, prefix="net_b.")
    _same_classifier(model, twin)


class Options:
    """A class of a training script: a checkpoint holding one would import it."""

    lr = 0.1


def test_non_plain_object_in_options_is_refused_with_a_way_forward(tmp_path):
    path = tmp_path / "ckpt.pth"
    torch.save({"state_dict": {"conv1.weight": torch.zeros(1)}, "hyper_parameters": Options()},
               path)
    with pytest.raises(UserError) as e:
        read_weights_file(path)
    assert str(e.value).startswith(f"{path} is not a plain weight file: it asks to load ")
    assert str(e.value).endswith(
        "Options, which resdet refuses to run (torch.load weights_only); if you trust the file's "
        "author, load it in Python yourself and re-save only the network's state dict "
        "(torch.save(state_dict, 'weights.pth')), then pass that file")


def test_plain_pickle_admits_the_same_option_classes(tmp_path):
    """The .pkl reader admits what torch.load's allow-list admits: options are data."""
    import pathlib
    import pickle

    from resdet.checkpoint import load_plain_pickle

    args = argparse.Namespace(lr=0.1, output_dir=pathlib.PurePosixPath("/runs/a"))
    with open(tmp_path / "w.pkl", "wb") as f:
        pickle.dump({"model": {"conv1.weight": torch.zeros(2, 3).numpy()}, "args": args}, f)
    assert load_plain_pickle(tmp_path / "w.pkl")["args"] == args
