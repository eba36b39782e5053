"""Other trainers' checkpoints as MODEL.WEIGHTS of a detection run, on both engines (case b17)."""

import argparse
import os

import pytest
import torch
import torchvision

from resdet.config import load_config

CONFIGS = os.path.join(os.path.dirname(__file__), "..", "..", "configs")
R18_C4 = ["MODEL.RESDET.ARCH", "resnet18", "MODEL.RESNETS.DEPTH", "18",
          "MODEL.RESNETS.RES2_OUT_CHANNELS", "64", "MODEL.DEVICE", "cpu"]


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    """A torchvision reference-script checkpoint (case b17) and a MoCo v2 one."""
    torch.manual_seed(0)
    tv = torchvision.models.resnet18(weights=None)
    twin = torchvision.models.resnet18(weights=None)
    d = tmp_path_factory.mktemp("ckpt")
    opt = torch.optim.SGD(tv.parameters(), lr=0.1, momentum=0.9)
    torch.save({"model": tv.state_dict(), "optimizer": opt.state_dict(),
                "lr_scheduler": torch.optim.lr_scheduler.StepLR(opt, 30).state_dict(),
                "epoch": 89, "args": argparse.Namespace(model="resnet18", lr=0.1)},
               d / "model_89.pth")
    moco = {**{"module.encoder_q." + k: v for k, v in tv.state_dict().items()},
            **{"module.encoder_k." + k: v for k, v in twin.state_dict().items()},
            "module.queue": torch.randn(128, 16), "module.queue_ptr": torch.zeros(1)}
    torch.save({"epoch": 200, "arch": "resnet18", "state_dict": moco}, d / "moco_v2.pth.tar")
    return tv.state_dict(), [str(d / "model_89.pth"), str(d / "moco_v2.pth.tar")]


def test_torchvision_engine_takes_them(checkpoints):
    from resdet.tvdet.build import build_model

    state, paths = checkpoints
    for path in paths:
        cfg = load_config(os.path.join(CONFIGS, "faster_rcnn_R50_coco.yaml"),
                          R18_C4 + ["MODEL.WEIGHTS", path])
        model = build_model(cfg)
        body = model.backbone.body.state_dict()
        torch.testing.assert_close(body["stem.conv1.weight"], state["conv1.weight"])
        torch.testing.assert_close(body["res4.1.conv2.weight"], state["layer3.1.conv2.weight"])
        res5 = model.roi_heads.box_head.res5.state_dict()
        torch.testing.assert_close(res5["1.conv1.weight"], state["layer4.1.conv1.weight"])


def test_detectron2_engine_takes_them(checkpoints):
    pytest.importorskip("detectron2")
    from detectron2.config import get_cfg as d2_get_cfg
    from detectron2.modeling import build_model

    from resdet.config import add_resdet_config
    from resdet.d2 import ResdetCheckpointer

    state, paths = checkpoints
    for path in paths:
        cfg = add_resdet_config(d2_get_cfg())
        cfg.MODEL.BACKBONE.NAME = "build_resdet_resnet_backbone"
        cfg.MODEL.ROI_HEADS.NAME = "ResdetRes5ROIHeads"
        cfg.merge_from_list(R18_C4)
        model = build_model(cfg)
        ResdetCheckpointer(model).load(path)
        torch.testing.assert_close(model.backbone.stem.conv1.weight, state["conv1.weight"])
        torch.testing.assert_close(model.backbone.res4[1].conv2.weight,
                                   state["layer3.1.conv2.weight"])
        torch.testing.assert_close(model.roi_heads.res5[1].conv1.weight,
                                   state["layer4.1.conv1.weight"])
