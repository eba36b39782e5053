"""tools/convert_weights.py: resdet -> Detectron2 .pkl -> resdet gives back the same tensors."""

import importlib.util
import os
import pickle
import subprocess
import sys

import pytest
import torch
import torchvision

from resdet.checkpoint import load_plain_pickle, save_resdet_weights
from resdet.errors import UserError
from resdet.modeling import ArchSpec, build_classifier, register_arch, unregister_arch


def _convert(repo_root, *args):
    return subprocess.run([sys.executable, "tools/convert_weights.py", *args], cwd=repo_root,
                          capture_output=True, text=True, timeout=300)


def test_round_trip_through_detectron2_pkl(repo_root, tmp_path):
    torch.manual_seed(0)
    model = build_classifier("resnet18", num_classes=10)
    for buf_name, buf in model.named_buffers():
        if buf_name.endswith("running_var"):
            buf.uniform_(0.5, 1.5)
    original = {k: v.clone() for k, v in model.state_dict().items()}
    save_resdet_weights(model, tmp_path / "r18.pth", arch="resnet18")

    proc = _convert(repo_root, "--src", str(tmp_path / "r18.pth"), "--arch", "resnet18",
                    "--out", str(tmp_path / "r18.pkl"), "--to", "detectron2")
    assert proc.returncode == 0, proc.stderr
    d2 = load_plain_pickle(tmp_path / "r18.pkl")
    assert d2["__author__"] == "resdet"
    assert d2["model"]["fc.weight"].shape == (10, 512)

    proc = _convert(repo_root, "--src", str(tmp_path / "r18.pkl"), "--arch", "resnet18",
                    "--out", str(tmp_path / "back.pth"))
    assert proc.returncode == 0, proc.stderr
    assert "0 missing" in proc.stderr
    back = torch.load(tmp_path / "back.pth", weights_only=True)
    assert back["arch"] == "resnet18" and back["source"] == str(tmp_path / "r18.pkl")
    skip = "num_batches_tracked"
    assert {k for k in back["model"] if skip not in k} == {k for k in original if skip not in k}
    for k, v in back["model"].items():
        if skip not in k:
            torch.testing.assert_close(v, original[k], rtol=0, atol=0)


def test_torchvision_backbone_file_to_resdet(repo_root, tmp_path):
    """A file without a classifier head becomes a backbone checkpoint."""
    sd = torchvision.models.resnet18(weights=None).state_dict()
    sd = {k: v for k, v in sd.items() if not k.startswith("fc.")}
    torch.save(sd, tmp_path / "tv.pth")
    proc = _convert(repo_root, "--src", str(tmp_path / "tv.pth"), "--arch", "resnet18",
                    "--out", str(tmp_path / "out.pth"))
    assert proc.returncode == 0, proc.stderr
    out = torch.load(tmp_path / "out.pth", weights_only=True)["model"]
    assert "fc.weight" not in out
    torch.testing.assert_close(out["res5.1.conv2.norm.weight"], sd["layer4.1.bn2.weight"])


def test_missing_file_is_one_line(repo_root, tmp_path):
    proc = _convert(repo_root, "--src", str(tmp_path / "missing.pkl"), "--arch", "resnet18",
                    "--out", str(tmp_path / "o.pth"))
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        f"error: weights file {tmp_path / 'missing.pkl'} does not exist; check the path"]



def test_wrong_architecture_writes_nothing(repo_root, tmp_path):
    spec = importlib.util.spec_from_file_location(
        "convert_weights", os.path.join(repo_root, "tools", "convert_weights.py"))
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    with open(tmp_path / "vgg.pkl", "wb") as f:  # a VGG file for a ResNet: nothing fits
        pickle.dump({"blobs": {"conv1_1_w": torch.zeros(64, 3, 3, 3).numpy()}}, f)
    with pytest.raises(UserError, match="fits the model resnet18"):
        tool.main(["--src", str(tmp_path / "vgg.pkl"), "--arch", "resnet18",
                   "--out", str(tmp_path / "o.pth")])
    assert not (tmp_path / "o.pth").exists()


def _tool(repo_root):
    spec = importlib.util.spec_from_file_location(
        "convert_weights", os.path.join(repo_root, "tools", "convert_weights.py"))
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    return tool


def test_entry_and_prefix_pick_another_network(repo_root, tmp_path):
    torch.manual_seed(0)
    a, b = torchvision.models.resnet18(weights=None), torchvision.models.resnet18(weights=None)
    torch.save({"net": a.state_dict(), "epoch": 3}, tmp_path / "mine.pth")
    tool = _tool(repo_root)
    tool.main(["--src", str(tmp_path / "mine.pth"), "--entry", "net", "--arch", "resnet18",
               "--out", str(tmp_path / "a.pth")])
    out = torch.load(tmp_path / "a.pth", weights_only=True)["model"]
    torch.testing.assert_close(out["res3.0.conv1.weight"], a.state_dict()["layer2.0.conv1.weight"])

    moco = {"state_dict": {**{"module.encoder_q." + k: v for k, v in a.state_dict().items()},
                           **{"module.encoder_k." + k: v for k, v in b.state_dict().items()}},
            "arch": "resnet18", "epoch": 200}
    torch.save(moco, tmp_path / "moco.pth.tar")
    tool.main(["--src", str(tmp_path / "moco.pth.tar"), "--prefix", "module.encoder_k.",
               "--arch", "resnet18", "--out", str(tmp_path / "k.pth")])
    out = torch.load(tmp_path / "k.pth", weights_only=True)["model"]
    torch.testing.assert_close(out["res3.0.conv1.weight"], b.state_dict()["layer2.0.conv1.weight"])


def test_shape_mismatch_message_names_no_missing_option(repo_root, tmp_path):
    """It once suggested strict_shapes=False, which is no command-line option."""
    sd = torchvision.models.resnet18(weights=None).state_dict()
    sd["layer1.0.conv1.weight"] = torch.zeros(64, 64, 1, 1)
    torch.save(sd, tmp_path / "r18.pth")
    with pytest.raises(UserError) as e:
        _tool(repo_root).main(["--src", str(tmp_path / "r18.pth"), "--arch", "resnet18",
                               "--out", str(tmp_path / "o.pth")])
    assert str(e.value) == (
        f"{tmp_path / 'r18.pth'}: weight 'layer1.0.conv1.weight' (resdet name "
        "'res2.0.conv1.weight') has shape (64, 64, 1, 1) but the model resnet18 expects "
        "(64, 64, 3, 3); build the architecture and options the weights were made for")
    assert not (tmp_path / "o.pth").exists()


def test_shortcut_for_a_net_without_shortcuts_is_named_before_reading(repo_root, tmp_path):
    with pytest.raises(UserError) as e:
        _tool(repo_root).main(["--src", str(tmp_path / "missing.pth"), "--arch", "vgg16",
                               "--shortcut", "B", "--out", str(tmp_path / "o.pth")])
    assert str(e.value) == ("--shortcut does not apply to vgg16, which has no shortcut option; "
                            "leave --shortcut out.")


def test_a_registered_net_converts_by_its_specs_classifier_and_last_stage(repo_root, tmp_path):
    """The head (fc8 here) and the backbone's last stage come from the spec, for any name."""
    spec = register_arch(ArchSpec(
        name="test_vgg3", family="vgg", depth=4, stage_names=("conv1_1", "conv2_1"),
        stage_blocks=(1, 1), stage_channels=(4, 8), residual=False, default_norm=None,
        options=("norm", "freeze_at"), classifier="fc8"))
    try:
        torch.manual_seed(0)
        model = build_classifier(spec.name, num_classes=3)
        save_resdet_weights(model, tmp_path / "cls.pth", arch=spec.name)
        tool = _tool(repo_root)
        tool.main(["--src", str(tmp_path / "cls.pth"), "--arch", spec.name,
                   "--out", str(tmp_path / "out.pth")])
        out = torch.load(tmp_path / "out.pth", weights_only=True)["model"]
        assert sorted(out) == sorted(model.state_dict())
        torch.testing.assert_close(out["fc8.weight"], model.fc8.weight, rtol=0, atol=0)

        body = {k: v for k, v in model.state_dict().items() if not k.startswith("fc")}
        torch.save(body, tmp_path / "body.pth")
        tool.main(["--src", str(tmp_path / "body.pth"), "--arch", spec.name,
                   "--out", str(tmp_path / "body_out.pth")])
        out = torch.load(tmp_path / "body_out.pth", weights_only=True)["model"]
        assert list(out) == ["conv1_1.weight", "conv1_1.bias", "conv2_1.weight", "conv2_1.bias"]
        for k, v in out.items():
            torch.testing.assert_close(v, body[k], rtol=0, atol=0)
    finally:
        unregister_arch(spec.name)
