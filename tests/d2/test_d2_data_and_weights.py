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


_P01_SCRIPT = r'''
import json, sys
from detectron2.config import get_cfg
from detectron2.data import DatasetCatalog, DatasetMapper, MetadataCatalog
from detectron2.modeling import (ANCHOR_GENERATOR_REGISTRY, BACKBONE_REGISTRY,
                                 META_ARCH_REGISTRY, PROPOSAL_GENERATOR_REGISTRY,
                                 RPN_HEAD_REGISTRY, ROI_HEADS_REGISTRY)
from detectron2.modeling.roi_heads import (ROI_BOX_HEAD_REGISTRY, ROI_KEYPOINT_HEAD_REGISTRY,
                                           ROI_MASK_HEAD_REGISTRY)

REGISTRIES = (ANCHOR_GENERATOR_REGISTRY, BACKBONE_REGISTRY, META_ARCH_REGISTRY,
              PROPOSAL_GENERATOR_REGISTRY, RPN_HEAD_REGISTRY, ROI_HEADS_REGISTRY,
              ROI_BOX_HEAD_REGISTRY, ROI_KEYPOINT_HEAD_REGISTRY, ROI_MASK_HEAD_REGISTRY)


def snapshot():
    return {
        "records": DatasetCatalog.get("coco_2017_val"),
        "metadata": {n: MetadataCatalog.get(n).as_dict()
                     for n in ("coco_2017_val", "voc_2007_trainval")},
        "loaders": {n: id(DatasetCatalog[n]) for n in DatasetCatalog.list()},
        "cfg": get_cfg().dump(),
        "registries": {r._name: {k: id(v) for k, v in r._obj_map.items()} for r in REGISTRIES},
    }


before = snapshot()
import resdet.d2  # noqa: E402,F401
after = snapshot()
out = {"records_equal": before["records"] == after["records"],
       "segmentation": sum("segmentation" in a for r in after["records"]
                           for a in r["annotations"]),
       "keypoints": sum("keypoints" in a for r in after["records"] for a in r["annotations"]),
       "metadata_equal": before["metadata"] == after["metadata"],
       "cfg_equal": before["cfg"] == after["cfg"],
       "loaders_kept": all(after["loaders"][n] == i for n, i in before["loaders"].items()),
       "new_names": sorted(set(after["loaders"]) - set(before["loaders"])),
       "registries_kept": all(after["registries"][r][k] == i
                              for r, objs in before["registries"].items()
                              for k, i in objs.items()),
       "new_registered": sorted(k for r, objs in after["registries"].items() for k in objs
                                if k not in before["registries"][r])}
cfg = get_cfg()
cfg.MODEL.MASK_ON = True
cfg.INPUT.MIN_SIZE_TRAIN = (64,)
cfg.INPUT.MAX_SIZE_TRAIN = 128
sample = DatasetMapper(cfg, is_train=True)(after["records"][0])
out["fields"] = sorted(sample["instances"].get_fields())
print(json.dumps(out))
'''


def _write_coco_with_masks_and_keypoints(root):
    import json

    import cv2
    import numpy as np

    os.makedirs(os.path.join(root, "coco", "val2017"))
    os.makedirs(os.path.join(root, "coco", "annotations"))
    cv2.imwrite(os.path.join(root, "coco", "val2017", "000000000139.jpg"),
                np.full((60, 80, 3), 90, np.uint8))
    anns = [{"id": 1, "image_id": 139, "category_id": 1, "iscrowd": 0, "area": 200.0,
             "bbox": [10, 10, 20, 20], "segmentation": [[10, 10, 30, 10, 20, 30]],
             "keypoints": [15, 15, 2] * 17, "num_keypoints": 17},
            {"id": 2, "image_id": 139, "category_id": 18, "iscrowd": 0, "area": 300.0,
             "bbox": [40, 20, 30, 20], "segmentation": [[40, 20, 70, 20, 55, 40]]}]
    from resdet.data.catalog import COCO_CATEGORIES

    cats = [{"id": i, "name": n} for i, n in COCO_CATEGORIES]  # Detectron2 checks all 80
    with open(os.path.join(root, "coco", "annotations", "instances_val2017.json"), "w") as f:
        json.dump({"images": [{"id": 139, "file_name": "000000000139.jpg", "height": 60,
                               "width": 80}], "annotations": anns, "categories": cats}, f)


def test_p01_plugin_leaves_detectron2_names_config_and_registries(tmp_path):
    """Issue 11, case p01: ``import resdet.d2`` changes nothing Detectron2 owns."""
    import json
    import subprocess
    import sys

    _write_coco_with_masks_and_keypoints(str(tmp_path))
    repo = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    env = dict(os.environ, DETECTRON2_DATASETS=str(tmp_path), PYTHONPATH=repo,
               OMP_NUM_THREADS="1")
    proc = subprocess.run([sys.executable, "-c", _P01_SCRIPT], capture_output=True, text=True,
                          env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["records_equal"] and out["segmentation"] == 2 and out["keypoints"] == 1
    assert out["metadata_equal"] and out["cfg_equal"] and out["loaders_kept"]
    assert out["new_names"] == ["shapes_train", "shapes_val", "voc_2012_test"]
    assert out["registries_kept"]
    assert out["new_registered"] == ["ResdetRes5ROIHeads", "ResdetVGGBoxHead",
                                     "build_resdet_resnet_backbone",
                                     "build_resdet_resnet_fpn_backbone",
                                     "build_resdet_vgg_backbone"]
    assert out["fields"] == ["gt_boxes", "gt_classes", "gt_masks"]


def test_b11_png16_is_the_same_picture_on_both_engines(tmp_path):
    """Issue 11, case b11: the Detectron2 engine's mapper decodes a 16-bit PNG with resdet's
    reader (its 8-bit twin's pixels), as the torchvision engine does."""
    import cv2
    import numpy as np

    from resdet.d2.data import SkippingDatasetMapper
    from resdet.tvdet.data import TrainMapper

    grey = cv2.resize(np.random.default_rng(0).integers(0, 256, (12, 16), np.uint8), (64, 48))
    cv2.imwrite(str(tmp_path / "g8.png"), grey)
    cv2.imwrite(str(tmp_path / "g16.png"), grey.astype(np.uint16) * 257)
    cfg = add_resdet_config(d2_get_cfg())
    cfg.INPUT.MIN_SIZE_TRAIN = (36,)
    cfg.INPUT.RANDOM_FLIP = "none"
    d2_mapper = SkippingDatasetMapper(cfg, is_train=True)
    tv_mapper = TrainMapper((36,), 1333, "choice", "none", "BGR")
    images = {}
    for name in ("g8.png", "g16.png"):
        record = {"file_name": str(tmp_path / name), "height": 48, "width": 64, "image_id": name,
                  "annotations": [{"bbox": [4, 4, 20, 20], "bbox_mode": 1, "category_id": 0,
                                   "iscrowd": 0}]}
        d2, tv = d2_mapper(dict(record)), tv_mapper(dict(record))
        torch.testing.assert_close(d2["image"], tv["image"], rtol=0, atol=0)
        torch.testing.assert_close(d2["instances"].gt_boxes.tensor, tv["target"]["boxes"])
        images[name] = d2["image"]
    torch.testing.assert_close(images["g16.png"], images["g8.png"], rtol=0, atol=0)
    expected = cv2.resize(grey, (48, 36), interpolation=cv2.INTER_LINEAR)
    torch.testing.assert_close(images["g16.png"][0], torch.from_numpy(expected), rtol=0, atol=0)
    assert d2_mapper(dict(record))["instances"].gt_boxes.tensor.tolist() == [[3.0, 3.0, 18.0,
                                                                              18.0]]
