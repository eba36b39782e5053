"""Every supported layout loads into resdet and computes what its source computes."""

import logging
import pickle

import pytest
import torch
import torchvision

from resdet.checkpoint import (
    caffe2_to_resdet_name,
    load_weights,
    resdet_to_msra_name,
    save_detectron2_pkl,
    to_detectron2,
    to_msra,
)
from resdet.errors import UserError
from resdet.modeling import build_backbone, build_classifier, build_stage

X = torch.randn(1, 3, 64, 64, generator=torch.Generator().manual_seed(0))


def _randomize_bn(model: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Non-trivial BN statistics, so that a wrong mapping of running stats shows."""
    g = torch.Generator().manual_seed(seed)
    for name, buf in model.named_buffers():
        if name.endswith("running_mean"):
            buf.copy_(torch.rand(buf.shape, generator=g) * 0.2 - 0.1)
        elif name.endswith("running_var"):
            buf.copy_(torch.rand(buf.shape, generator=g) + 0.5)
    for name, p in model.named_parameters():
        if ".norm." in name or name.startswith("bn") or ".bn" in name:
            with torch.no_grad():
                p.copy_(torch.rand(p.shape, generator=g) + 0.5 if name.endswith("weight")
                        else torch.rand(p.shape, generator=g) * 0.2 - 0.1)
    return model


@pytest.fixture(scope="module")
def tv_resnet18():
    torch.manual_seed(0)
    return _randomize_bn(torchvision.models.resnet18(weights=None)).eval()


def test_torchvision_resnet50_same_logits():
    torch.manual_seed(0)
    tv = _randomize_bn(torchvision.models.resnet50(weights=None)).eval()
    model = build_classifier("resnet50", stride_in_1x1=False).eval()
    report = load_weights(model, tv.state_dict())
    assert report.missing == [] and report.unexpected == []
    assert len(report.matched) == len(model.state_dict())
    assert report.source_format.startswith("torchvision ResNet")
    with torch.no_grad():
        torch.testing.assert_close(model(X), tv(X))


def test_torchvision_vgg16_same_logits():
    torch.manual_seed(0)
    tv = torchvision.models.vgg16(weights=None).eval()
    model = build_classifier("vgg16").eval()
    report = load_weights(model, tv.state_dict())
    assert report.missing == [] and report.unexpected == []
    assert len(report.matched) == 32
    with torch.no_grad():
        torch.testing.assert_close(model(X), tv(X))


def test_timm_state_dict_without_num_batches_tracked(tv_resnet18):
    sd = {k: v for k, v in tv_resnet18.state_dict().items() if "num_batches_tracked" not in k}
    model = build_classifier("resnet18", stride_in_1x1=False).eval()
    report = load_weights(model, sd)
    assert report.missing == []  # num_batches_tracked is not a weight
    with torch.no_grad():
        torch.testing.assert_close(model(X), tv_resnet18(X))


def test_backbone_ignores_classifier_head_but_reports_it(tv_resnet18, caplog):
    backbone = build_backbone("resnet18", out_features=("res5",), stride_in_1x1=False).eval()
    with caplog.at_level(logging.INFO, logger="resdet.checkpoint"):
        report = load_weights(backbone, tv_resnet18.state_dict())
    assert sorted(report.unexpected) == ["fc.bias", "fc.weight"]
    assert report.missing == []
    assert f"{len(report.matched)} matched, 0 missing, 2 unexpected" in caplog.text
    assert "fc.{bias,weight}" in caplog.text
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]
    with torch.no_grad():
        torch.testing.assert_close(backbone(X)["res5"], _tv_res5(tv_resnet18, X))


def _tv_res5(tv, x):
    x = tv.maxpool(tv.relu(tv.bn1(tv.conv1(x))))
    return tv.layer4(tv.layer3(tv.layer2(tv.layer1(x))))


def test_detectron2_c4_checkpoint(tmp_path):
    torch.manual_seed(1)
    src = _randomize_bn(build_classifier("resnet18"), seed=1)
    model_sd = {}
    for k, v in src.state_dict().items():
        if k.startswith("fc."):
            continue
        model_sd[("roi_heads." if k.startswith("res5.") else "backbone.") + k] = v
    model_sd["proposal_generator.rpn_head.conv.weight"] = torch.zeros(256, 256, 3, 3)
    model_sd["roi_heads.box_predictor.cls_score.weight"] = torch.zeros(81, 512)
    path = tmp_path / "model_final.pth"
    torch.save({"model": model_sd, "iteration": 90000}, path)

    backbone = build_backbone("resnet18", out_features=("res5",))
    report = load_weights(backbone, str(path))
    assert report.missing == []
    assert sorted(report.unexpected) == ["proposal_generator.rpn_head.conv.weight",
                                         "roi_heads.box_predictor.cls_score.weight"]
    for k, v in backbone.state_dict().items():
        torch.testing.assert_close(v, src.state_dict()[k])

    # the res5 box head on its own: only roi_heads.res5.* is taken
    head = build_stage("resnet18", "res5")
    report = load_weights(head, str(path), source_prefix="res5.")
    assert report.missing == [] and report.unexpected == []
    torch.testing.assert_close(head.state_dict()["0.conv1.weight"],
                               src.state_dict()["res5.0.conv1.weight"])


def test_detectron2_fpn_prefix_and_resdet_ddp_checkpoint(tmp_path):
    src = build_backbone("resnet18", out_features=("res4",))
    sd = src.state_dict()
    fpn = {"backbone.bottom_up." + k: v for k, v in sd.items()}
    fpn["backbone.fpn_lateral2.weight"] = torch.zeros(256, 64, 1, 1)
    model = build_backbone("resnet18", out_features=("res4",))
    report = load_weights(model, {"model": fpn, "iteration": 1})
    assert report.missing == [] and report.unexpected == ["backbone.fpn_lateral2.weight"]
    assert "backbone.bottom_up." in report.source_format

    ddp = {"model": {"module." + k: v for k, v in sd.items()}, "cfg": "MODEL: {}\n",
           "iteration": 7}
    torch.save(ddp, tmp_path / "model_0000007.pth")
    model = build_backbone("resnet18", out_features=("res4",))
    report = load_weights(model, tmp_path / "model_0000007.pth")
    assert report.missing == [] and report.unexpected == []
    assert report.source_format.startswith("resdet checkpoint")
    torch.testing.assert_close(model.state_dict()["res4.1.conv2.weight"],
                               sd["res4.1.conv2.weight"])


def test_msra_pkl_matches_detectron2_pkl(tmp_path):
    """An MSRA-named ResNet-50 .pkl gives the same res4 features as the Detectron2 layout."""
    torch.manual_seed(2)
    src = _randomize_bn(build_backbone("resnet50", out_features=("res4",)), seed=2)
    save_detectron2_pkl(src, tmp_path / "d2.pkl")
    msra = to_msra(src)  # BN folded into scale/bias, as in the released R-50.pkl
    assert "res2_0_branch2a_bn_s" in msra["blobs"] and "conv1_w" in msra["blobs"]
    assert not any(k.endswith(("_rm", "_riv")) for k in msra["blobs"])
    with open(tmp_path / "R-50.pkl", "wb") as f:
        pickle.dump(msra, f, protocol=2)  # the MSRA files are Python 2 pickles

    feats = {}
    for name in ("d2.pkl", "R-50.pkl"):
        model = build_backbone("resnet50", out_features=("res4",), norm="FrozenBN").eval()
        report = load_weights(model, tmp_path / name)
        assert report.missing == [] and report.unexpected == []
        with torch.no_grad():
            feats[name] = model(X)["res4"]
        if name == "R-50.pkl":
            # Detectron2's rule for scale/bias-only BN: mean 0, var 1
            assert report.source_format == "MSRA/Caffe2 blobs"
            assert "stem.conv1.norm.running_var" in report.filled
            assert torch.all(model.state_dict()["res3.0.conv1.norm.running_var"] == 1)
    # folding BN into float32 scale/bias rounds: about 1e-6 of the largest value after 13 blocks
    scale = feats["d2.pkl"].abs().max().item()
    assert scale > 1e-2  # not a trivially zero comparison
    torch.testing.assert_close(feats["R-50.pkl"], feats["d2.pkl"], rtol=1e-3, atol=1e-5 * scale)


@pytest.mark.parametrize("c2, resdet", [
    ("conv1_w", "stem.conv1.weight"),
    ("res_conv1_bn_s", "stem.conv1.norm.weight"),
    ("res_conv1_bn_b", "stem.conv1.norm.bias"),
    ("res2_0_branch1_w", "res2.0.shortcut.weight"),
    ("res2_0_branch1_bn_s", "res2.0.shortcut.norm.weight"),
    ("res2_0_branch2a_w", "res2.0.conv1.weight"),
    ("res2_0_branch2a_bn_b", "res2.0.conv1.norm.bias"),
    ("res4_22_branch2c_bn_riv", "res4.22.conv3.norm.running_var"),
    ("res5_2_branch2b_bn_rm", "res5.2.conv2.norm.running_mean"),
    ("fc1000_w", "fc.weight"),
    ("fc1000_b", "fc.bias"),
    ("conv5_3_w", "conv5_3.weight"),
    ("fc7_b", "fc7.bias"),
])
def test_caffe2_names_both_ways(c2, resdet):
    assert caffe2_to_resdet_name(c2) == resdet
    assert resdet_to_msra_name(resdet) == c2


def test_shape_mismatch_names_key_and_shapes(tv_resnet18):
    sd = dict(tv_resnet18.state_dict())
    sd["layer1.0.conv1.weight"] = torch.zeros(64, 64, 1, 1)
    model = build_classifier("resnet18")
    with pytest.raises(UserError) as e:
        load_weights(model, sd, arch="resnet18")
    msg = str(e.value)
    assert "'layer1.0.conv1.weight'" in msg and "'res2.0.conv1.weight'" in msg
    assert "(64, 64, 1, 1)" in msg and "(64, 64, 3, 3)" in msg and "\n" not in msg

    report = load_weights(model, sd, strict_shapes=False)
    assert report.mismatched == ["res2.0.conv1.weight"]
    assert "res2.0.conv1.weight" not in report.missing


def test_nothing_matching_is_an_error(tv_resnet18):
    with pytest.raises(UserError, match="no weight in .* fits the model vgg16"):
        load_weights(build_backbone("vgg16"), tv_resnet18.state_dict(), arch="vgg16")


def test_detectron2_export_layouts():
    sd = build_backbone("resnet18", out_features=("res5",)).state_dict()
    plain = to_detectron2(sd)
    assert plain["__author__"] == "resdet" and plain["matching_heuristics"] is True
    assert "res5.0.conv1.weight" in plain["model"]
    assert not any("num_batches_tracked" in k for k in plain["model"])
    c4 = to_detectron2(sd, c4_head=True)
    assert c4["matching_heuristics"] is False
    assert "roi_heads.res5.0.conv1.weight" in c4["model"]
    assert "backbone.stem.conv1.weight" in c4["model"]
    model = build_backbone("resnet18", out_features=("res5",))
    assert load_weights(model, c4).missing == []


def test_torchvision_vgg16_bn_conv_bias_is_folded():
    torch.manual_seed(0)
    tv = _randomize_bn(torchvision.models.vgg16_bn(weights=None))
    with torch.no_grad():
        for m in tv.features:
            if isinstance(m, torch.nn.Conv2d):
                m.bias.uniform_(-0.5, 0.5)  # pretrained vgg16_bn has non-zero conv biases
    tv.eval()
    model = build_classifier("vgg16", norm="BN").eval()
    report = load_weights(model, tv.state_dict())
    assert report.missing == [] and report.unexpected == []
    with torch.no_grad():
        torch.testing.assert_close(model(X), tv(X))


def test_torchvision_detection_backbone_prefix(tv_resnet18):
    """torchvision's Faster R-CNN keeps its ResNet under backbone.body."""
    sd = {"backbone.body." + k: v for k, v in tv_resnet18.state_dict().items()
          if not k.startswith("fc.")}
    sd["rpn.head.conv.0.0.weight"] = torch.zeros(256, 256, 3, 3)
    backbone = build_backbone("resnet18", out_features=("res5",), stride_in_1x1=False).eval()
    report = load_weights(backbone, sd)
    assert report.missing == [] and report.unexpected == ["rpn.head.conv.0.0.weight"]
    with torch.no_grad():
        torch.testing.assert_close(backbone(X)["res5"], _tv_res5(tv_resnet18, X))


def test_detectron2_model_zoo_torchvision_pkl(tv_resnet18, tmp_path):
    """Detectron2's tools/convert-torchvision-to-d2.py output (its ImageNet R-50.pkl layout)."""
    converted = {}
    for k, v in tv_resnet18.state_dict().items():  # the script's renaming rules, verbatim
        if "layer" not in k:
            k = "stem." + k
        for t in [1, 2, 3, 4]:
            k = k.replace(f"layer{t}", f"res{t + 1}")
        for t in [1, 2, 3]:
            k = k.replace(f"bn{t}", f"conv{t}.norm")
        k = k.replace("downsample.0", "shortcut").replace("downsample.1", "shortcut.norm")
        converted[k] = v.numpy()
    with open(tmp_path / "R-18.pkl", "wb") as f:
        pickle.dump({"model": converted, "__author__": "torchvision",
                     "matching_heuristics": True}, f)
    model = build_classifier("resnet18", stride_in_1x1=False).eval()
    report = load_weights(model, tmp_path / "R-18.pkl")
    assert report.missing == [] and report.unexpected == []
    with torch.no_grad():
        torch.testing.assert_close(model(X), tv_resnet18(X))
