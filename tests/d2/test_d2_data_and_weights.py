"""Datasets in Detectron2's catalog, and MODEL.WEIGHTS in resdet, torchvision and MSRA formats."""

import os

import pytest

pytest.importorskip("detectron2")

import torch  # noqa: E402
from detectron2.config import get_cfg as d2_get_cfg  # noqa: E402
from detectron2.data import DatasetCatalog, MetadataCatalog  # noqa: E402
from detectron2.modeling import build_model  # noqa: E402

from resdet.config import add_resdet_config  # noqa: E402
from resdet.d2 import ResdetCheckpointer, register_resdet_datasets  # noqa: E402
from resdet.errors import UserError  # noqa: E402


def test_builtin_datasets_registered(d2_datasets):
    names = DatasetCatalog.list()
    for name in ("coco_2017_train", "coco_2017_val", "voc_2007_trainval", "voc_2007_test",
                 "voc_2012_trainval", "voc_2012_test", "shapes_train", "shapes_val"):
        assert name in names, name
    # Detectron2's own names keep Detectron2's loaders (issue 11, case p01); the Detectron2
    # engine reads resdet's records for them (resdet.d2.data.dataset_dicts).
    for name in ("coco_2017_val", "voc_2007_trainval"):
        loader = DatasetCatalog[name]  # the registered function (a UserDict entry)
        assert os.path.join("detectron2", "data", "datasets") in loader.__code__.co_filename
        assert not loader.__module__.startswith("resdet")
    from resdet.d2.data import dataset_dicts

    coco = dataset_dicts("coco_2017_val")
    assert len(coco) == 3
    assert coco[0]["file_name"].startswith(os.path.join(d2_datasets, "coco", "val2017"))
    assert {a["category_id"] for r in coco for a in r["annotations"]} == {0, 2, 16}
    assert len(dataset_dicts("voc_2007_trainval")) == 3
    # added by resdet: no public labels for VOC2012 test; shapes generated on first use
    test12 = DatasetCatalog.get("voc_2012_test")
    assert len(test12) == 2 and all(r["annotations"] == [] for r in test12)
    assert MetadataCatalog.get("shapes_val").thing_classes == ["circle", "square", "triangle"]
    assert len(DatasetCatalog.get("shapes_val")) == 3


def test_registration_follows_dataset_root(d2_datasets, tmp_path, monkeypatch):
    monkeypatch.setenv("DETECTRON2_DATASETS", str(tmp_path))
    changed = register_resdet_datasets()
    assert changed == ["shapes_train", "shapes_val", "voc_2012_test"]  # never Detectron2's names
    assert MetadataCatalog.get("voc_2012_test").dirname == os.path.join(str(tmp_path), "VOC2012")
    with pytest.raises(UserError, match="Dataset voc_2012_test is not on disk: "):
        DatasetCatalog.get("voc_2012_test")
    monkeypatch.setenv("DETECTRON2_DATASETS", d2_datasets)
    register_resdet_datasets()
    assert register_resdet_datasets() == []  # idempotent
    assert len(DatasetCatalog.get("voc_2012_test")) == 2


def _c4_model(arch="resnet50", depth=50, **extra):
    cfg = add_resdet_config(d2_get_cfg())
    cfg.MODEL.DEVICE = "cpu"
    cfg.MODEL.BACKBONE.NAME = "build_resdet_resnet_backbone"
    cfg.MODEL.ROI_HEADS.NAME = "ResdetRes5ROIHeads"
    cfg.MODEL.RESDET.ARCH = arch
    cfg.MODEL.RESNETS.DEPTH = depth
    if depth < 50:
        cfg.MODEL.RESNETS.RES2_OUT_CHANNELS = 64
    for k, v in extra.items():
        cfg.merge_from_list([k.replace("__", "."), v])
    return build_model(cfg)


def _torchvision_resnet_state(depth):
    import torchvision

    torch.manual_seed(0)
    return getattr(torchvision.models, f"resnet{depth}")().state_dict()


def test_torchvision_file_loads_into_backbone_and_res5_head(tmp_path):
    state = _torchvision_resnet_state(18)
    path = tmp_path / "resnet18-tv.pth"
    torch.save(state, path)
    model = _c4_model("resnet18", 18)
    ResdetCheckpointer(model).load(str(path))
    torch.testing.assert_close(model.backbone.stem.conv1.weight, state["conv1.weight"])
    torch.testing.assert_close(model.backbone.res3[1].conv2.weight, state["layer2.1.conv2.weight"])
    torch.testing.assert_close(model.roi_heads.res5[0].shortcut.weight,
                               state["layer4.0.downsample.0.weight"])
    torch.testing.assert_close(model.roi_heads.res5[1].conv1.norm.running_var,
                               state["layer4.1.bn1.running_var"])


def test_resdet_checkpoint_loads(tmp_path):
    from resdet.modeling import build_classifier

    torch.manual_seed(1)
    net = build_classifier("resnet18")
    path = tmp_path / "model_final.pth"
    torch.save({"model": net.state_dict(), "cfg": "MODEL: {}\n", "iteration": 9}, path)
    model = _c4_model("resnet18", 18)
    ResdetCheckpointer(model).load(str(path))
    torch.testing.assert_close(model.backbone.res4[0].conv1.weight, net.res4[0].conv1.weight)
    torch.testing.assert_close(model.roi_heads.res5[1].conv2.weight, net.res5[1].conv2.weight)


def test_vgg_weights_reach_fc6_fc7(tmp_path):
    cfg = add_resdet_config(d2_get_cfg())
    cfg.merge_from_list(["MODEL.DEVICE", "cpu", "MODEL.BACKBONE.NAME", "build_resdet_vgg_backbone",
                         "MODEL.RESDET.ARCH", "vgg16", "MODEL.RESDET.VGG_FC_DIM", "16",
                         "MODEL.ROI_HEADS.NAME", "StandardROIHeads",
                         "MODEL.ROI_HEADS.IN_FEATURES", "['conv5_3']",
                         "MODEL.RPN.IN_FEATURES", "['conv5_3']",
                         "MODEL.ROI_BOX_HEAD.NAME", "ResdetVGGBoxHead",
                         "MODEL.ROI_BOX_HEAD.POOLER_RESOLUTION", "7"])
    model = build_model(cfg)
    # a torchvision-layout VGG-16 file (features.N / classifier.N), with a 16-wide classifier
    state = {}
    convs = [m for m in model.backbone.net.modules() if isinstance(m, torch.nn.Conv2d)]
    index = [0, 2, 5, 7, 10, 12, 14, 17, 19, 21, 24, 26, 28]
    for i, conv in zip(index, convs):
        state[f"features.{i}.weight"] = torch.randn_like(conv.weight)
        state[f"features.{i}.bias"] = torch.randn_like(conv.bias)
    state["classifier.0.weight"] = torch.randn(16, 512 * 7 * 7)
    state["classifier.0.bias"] = torch.randn(16)
    state["classifier.3.weight"] = torch.randn(16, 16)
    state["classifier.3.bias"] = torch.randn(16)
    state["classifier.6.weight"] = torch.randn(1000, 16)
    state["classifier.6.bias"] = torch.randn(1000)
    path = tmp_path / "vgg16-tv.pth"
    torch.save(state, path)
    ResdetCheckpointer(model).load(str(path))
    torch.testing.assert_close(model.backbone.conv4_2.weight, state["features.19.weight"])
    torch.testing.assert_close(model.roi_heads.box_head.fc6.weight, state["classifier.0.weight"])
    torch.testing.assert_close(model.roi_heads.box_head.fc7.bias, state["classifier.3.bias"])


def test_missing_weights_file_is_a_user_error(tmp_path):
    model = _c4_model("resnet18", 18)
    with pytest.raises(UserError, match="MODEL.WEIGHTS file .*nope.pth does not exist"):
        ResdetCheckpointer(model).load(str(tmp_path / "nope.pth"))


def test_torchvision_name_resolves_through_the_hub_cache(tmp_path, monkeypatch):
    from resdet.checkpoint.files import torchvision_weights_url

    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    url = torchvision_weights_url("torchvision://resnet18")
    cached = tmp_path / "hub" / "checkpoints" / os.path.basename(url)
    cached.parent.mkdir(parents=True)
    state = _torchvision_resnet_state(18)
    torch.save(state, cached)
    model = _c4_model("resnet18", 18)
    ResdetCheckpointer(model).load("torchvision://resnet18")
    torch.testing.assert_close(model.backbone.res2[0].conv1.weight, state["layer1.0.conv1.weight"])


def test_torchvision_file_with_msra_settings_warns_naming_keys(tmp_path, caplog):
    path = tmp_path / "resnet18-tv.pth"
    torch.save(_torchvision_resnet_state(18), path)
    model = _c4_model("resnet18", 18)
    cfg = add_resdet_config(d2_get_cfg())  # Detectron2's defaults: BGR, std 1 (MSRA's)
    with caplog.at_level("WARNING"):
        ResdetCheckpointer(model, cfg=cfg).load(str(path))
    assert (f"{path} holds torchvision weights, trained on RGB images normalised by ImageNet's "
            "mean and std: set MODEL.PIXEL_MEAN [123.675, 116.28, 103.53], MODEL.PIXEL_STD "
            "[58.395, 57.12, 57.375], INPUT.FORMAT 'RGB', MODEL.RESNETS.STRIDE_IN_1X1 False") \
        in caplog.text  # cfg's arch is Detectron2's default resnet50: a bottleneck net
