"""MODEL.WEIGHTS made for another network: the torchvision engine refuses it with exactly the
Detectron2 engine's sentence (issue 15). Both engines check the same parts of the same converted
file (resdet.checkpoint.check_fit): the file's own key names, its layout label, the file name as
given. Each case's sentence is asserted exactly on the torchvision engine, and again on the
Detectron2 engine where Detectron2 imports."""

from __future__ import annotations

import logging

import pytest
import torch
import torchvision
from tvdet_helpers import config_path

from resdet.config import load_config
from resdet.errors import UserError
from resdet.tvdet.build import build_model

R18_C4 = ("faster_rcnn_R50_coco.yaml",
          ["MODEL.RESDET.ARCH", "resnet18", "MODEL.RESNETS.DEPTH", "18",
           "MODEL.RESNETS.RES2_OUT_CHANNELS", "64"])
R18_FPN = ("quickstart.yaml", [])
VGG = ("faster_rcnn_VGG16_coco.yaml", ["MODEL.RESDET.VGG_FC_DIM", "16"])
CPU = ["MODEL.DEVICE", "cpu"]


def _warnings(caplog) -> list:
    """resdet's warnings: none before a refusal (advice on input settings waits for a file that
    fits), so the user reads one sentence."""
    return [r.getMessage() for r in caplog.records
            if r.levelno >= logging.WARNING and r.name.startswith("resdet")]


def _vgg16_state(fc6_in: int = 512 * 7 * 7, fc_dim: int = 16) -> dict:
    """A torchvision-layout VGG-16 file (features.N, classifier.N) with fc6/fc7 ``fc_dim`` wide
    (torchvision's own are 4096 wide: 120M parameters the tests do not need)."""
    torch.manual_seed(0)
    state = {f"features.{k}": v for k, v in
             torchvision.models.vgg16(weights=None).features.state_dict().items()}
    state.update({"classifier.0.weight": torch.randn(fc_dim, fc6_in),
                  "classifier.0.bias": torch.randn(fc_dim),
                  "classifier.3.weight": torch.randn(fc_dim, fc_dim),
                  "classifier.3.bias": torch.randn(fc_dim),
                  "classifier.6.weight": torch.randn(1000, fc_dim),
                  "classifier.6.bias": torch.randn(1000)})
    return state


def _resnet50(tmp_path):
    path = tmp_path / "resnet50-torchvision.pth"
    torch.save(torchvision.models.resnet50(weights=None).state_dict(), path)
    # the first weight of another shape, by its name in the file, then by its resdet name
    return R18_FPN, path, (
        f"{path}: weight 'layer1.0.conv1.weight' (resdet name 'res2.0.conv1.weight') has shape "
        "(64, 64, 1, 1) but the model resnet18 expects (64, 64, 3, 3) (and 22 more); build the "
        "architecture and options the weights were made for")


def _res5_head(tmp_path):
    state = torchvision.models.resnet18(weights=None).state_dict()
    state["layer4.1.conv2.weight"] = torch.zeros(512, 512, 1, 1)
    path = tmp_path / "resnet18-1x1.pth"
    torch.save(state, path)
    return R18_C4, path, (
        f"{path}: weight 'layer4.1.conv2.weight' (resdet name '1.conv2.weight') has shape (512, "
        "512, 1, 1) but the model res5 box head expects (512, 512, 3, 3); build the "
        "architecture and options the weights were made for")


def _vgg_fc6(tmp_path):
    path = tmp_path / "vgg16-pool6.pth"
    torch.save(_vgg16_state(fc6_in=512 * 6 * 6), path)  # fc6 after a 6x6 pool, not 7x7
    return VGG, path, (
        f"{path}: weight 'classifier.0.weight' (resdet name 'fc6.weight') has shape (16, 18432) "
        "but the model fc6/fc7 box head expects (16, 25088); build the architecture and "
        "options the weights were made for")


def _vgg_for_resnet(tmp_path):
    path = tmp_path / "vgg16.pth"
    torch.save(_vgg16_state(), path)
    return R18_FPN, path, (
        f"no weight in {path} (torchvision VGG) fits the model resnet18 (its names, as resdet "
        "names: conv1_1.weight, conv1_1.bias, conv1_2.weight; the model's: stem.conv1.weight, "
        "stem.conv1.norm.weight, stem.conv1.norm.bias); check the architecture and the file")


CASES = {"resnet50_file_for_resnet18": _resnet50, "c4_res5_head_of_another_shape": _res5_head,
         "vgg16_fc6_of_another_shape": _vgg_fc6, "vgg16_file_for_resnet18": _vgg_for_resnet}


@pytest.mark.parametrize("case", CASES)
def test_torchvision_engine_names_the_file_and_its_own_keys(case, tmp_path, caplog):
    (name, opts), path, expected = CASES[case](tmp_path)
    cfg = load_config(config_path(name), opts + CPU + ["MODEL.WEIGHTS", str(path)])
    with pytest.raises(UserError) as e, caplog.at_level(logging.WARNING):
        build_model(cfg)
    assert str(e.value) == expected
    assert _warnings(caplog) == []


@pytest.mark.parametrize("case", CASES)
def test_detectron2_engine_says_the_same(case, tmp_path, caplog):
    pytest.importorskip("detectron2")
    from detectron2.config import get_cfg
    from detectron2.modeling import build_model as d2_build_model

    from resdet.d2 import ResdetCheckpointer, add_resdet_config

    (name, opts), path, expected = CASES[case](tmp_path)
    cfg = load_config(config_path(name), opts + CPU + ["MODEL.WEIGHTS", str(path)],
                      base_cfg=add_resdet_config(get_cfg()))
    model = d2_build_model(cfg)
    with pytest.raises(UserError) as e, caplog.at_level(logging.WARNING):
        ResdetCheckpointer(model, cfg=cfg).load(cfg.MODEL.WEIGHTS)
    assert str(e.value) == expected
    assert _warnings(caplog) == []


def test_torchvision_file_that_fits_warns_only_about_input_settings(tmp_path, caplog):
    """A torchvision ResNet-18 into the C4 (FrozenBN) ResNet-18 detector: loaded, and the one
    warning is the input settings it was trained with (its BN step counters are no weights)."""
    from resdet.tvdet.weights import backbone_state_dict

    torch.manual_seed(0)
    net = torchvision.models.resnet18(weights=None)
    path = tmp_path / "resnet18.pth"
    torch.save(net.state_dict(), path)
    (name, opts) = R18_C4
    cfg = load_config(config_path(name), opts + CPU + ["MODEL.WEIGHTS", str(path)])
    with caplog.at_level(logging.WARNING):
        det = build_model(cfg)
    (warning,) = _warnings(caplog)
    assert warning.startswith(f"{path} holds torchvision weights, trained on RGB images")
    got = backbone_state_dict(det)
    torch.testing.assert_close(got["res2.1.conv2.weight"], net.layer1[1].conv2.weight)
    torch.testing.assert_close(got["res5.1.conv2.norm.running_var"], net.layer4[1].bn2.running_var)
