"""The Detectron2 adapter on the engine-neutral detection layer: resdet's evaluators (cases b07,
p03), Detectron2's config dumps read everywhere (p02), unread resdet keys refused, and resdet's
evaluators equal to Detectron2's on clean data."""

from __future__ import annotations

import io
import contextlib
import math
import os

import numpy as np
import pytest
import torch

pytest.importorskip("detectron2")

from detectron2.config import get_cfg as d2_get_cfg  # noqa: E402
from detectron2.evaluation import COCOEvaluator as D2COCOEvaluator  # noqa: E402
from detectron2.evaluation import PascalVOCDetectionEvaluator  # noqa: E402
from detectron2.structures import Boxes, Instances  # noqa: E402

from resdet.config import add_resdet_config, load_config  # noqa: E402
from resdet.d2.train import ResdetTrainer, check_config  # noqa: E402
from resdet.data import catalog  # noqa: E402
from tests.tiny_datasets import make_tiny_voc, voc_xml  # noqa: E402
from resdet.errors import UserError  # noqa: E402
from resdet.evaluation import COCOEvaluator, PascalVOCEvaluator  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
QUICKSTART = os.path.join(REPO, "configs", "quickstart.yaml")


def _d2_cfg(*opts):
    return load_config("", list(opts), base_cfg=add_resdet_config(d2_get_cfg()))


def _instances(d, boxes, classes, scores=None):
    boxes = torch.as_tensor(boxes, dtype=torch.float32).reshape(-1, 4)
    n = len(boxes)
    scores = torch.as_tensor(scores if scores is not None else [0.9] * n, dtype=torch.float32)
    return {"instances": Instances((d["height"], d["width"]), pred_boxes=Boxes(boxes),
                                   scores=scores,
                                   pred_classes=torch.as_tensor(classes, dtype=torch.long))}


def _evaluate(evaluator, inputs, outputs):
    evaluator.reset()
    evaluator.process(inputs, outputs)
    with contextlib.redirect_stdout(io.StringIO()):
        return evaluator.evaluate()


def _same(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(
        (math.isnan(a[k]) and math.isnan(b[k])) or a[k] == pytest.approx(b[k], abs=1e-9)
        for k in a)


def test_resdet_key_unread_by_detectron2_builders_is_an_error():
    cfg = _d2_cfg("MODEL.BACKBONE.NAME", "build_resnet_backbone",
                  "MODEL.ROI_HEADS.NAME", "Res5ROIHeads", "MODEL.RESDET.SHORTCUT", "A")
    with pytest.raises(UserError) as e:
        check_config(cfg)
    assert str(e.value).startswith(
        "Config key 'MODEL.RESDET.SHORTCUT' = 'A' is not read by MODEL.BACKBONE.NAME "
        "'build_resnet_backbone' / MODEL.ROI_HEADS.NAME 'Res5ROIHeads'")
    # resdet's builders read it: no error
    check_config(_d2_cfg("MODEL.RESDET.SHORTCUT", "A", "MODEL.BACKBONE.NAME",
                         "build_resdet_resnet_backbone", "MODEL.ROI_HEADS.NAME",
                         "ResdetRes5ROIHeads"))
    # pretraining's keys are not the Detectron2 engine's either
    with pytest.raises(UserError, match="'PRETRAIN.CROP_SIZE' = 112 is not supported by the "
                                        "detectron2 engine"):
        check_config(_d2_cfg("PRETRAIN.CROP_SIZE", "112"))


def test_detectron2_run_config_reads_on_resdet_defaults(tmp_path):
    """p02: a Detectron2 run's config.yaml (its whole tree) loads without Detectron2's tree."""
    full = add_resdet_config(d2_get_cfg())
    full.MODEL.ROI_HEADS.NUM_CLASSES = 3
    path = tmp_path / "config.yaml"
    path.write_text(full.dump())
    cfg = load_config(str(path))  # resdet's defaults, as tools/predict.py and tvdet load it
    assert cfg.MODEL.ROI_HEADS.NUM_CLASSES == 3
    assert "PANOPTIC_FPN" not in cfg.MODEL
    full.MODEL.PANOPTIC_FPN.COMBINE.OVERLAP_THRESH = 0.7
    path.write_text(full.dump())
    with pytest.raises(UserError) as e:
        load_config(str(path))
    assert str(e.value) == (
        f"Config key 'MODEL.PANOPTIC_FPN.COMBINE.OVERLAP_THRESH' = 0.7 in {path} is a Detectron2 "
        "setting that this engine cannot honour (only Detectron2's default 0.5 is accepted); "
        "remove it or use --engine detectron2.")


def _cvat_voc(root):
    """VOC2007 test as annotation tools export it: float coordinates, no <pose>/<truncated>."""
    base = make_tiny_voc(str(root), 2007, {"test": 2})
    for name in ("000001", "000002"):
        xml = (f"<annotation><filename>{name}.jpg</filename><size><width>70</width>"
               "<height>60</height><depth>3</depth></size><object><name>dog</name>"
               "<bndbox><xmin>10.5</xmin><ymin>11.7</ymin><xmax>40.2</xmax><ymax>50.9</ymax>"
               "</bndbox></object></annotation>")
        with open(os.path.join(base, "Annotations", f"{name}.xml"), "w") as f:
            f.write(xml)
    return base


def test_b07_detectron2_engine_scores_cvat_style_voc_xml(tmp_path, monkeypatch):
    root = tmp_path / "ds"
    _cvat_voc(root)
    monkeypatch.setenv("DETECTRON2_DATASETS", str(root))
    from resdet.d2 import register_resdet_datasets

    register_resdet_datasets()
    try:
        cfg = _d2_cfg("OUTPUT_DIR", str(tmp_path / "out"))
        evaluator = ResdetTrainer.build_evaluator(cfg, "voc_2007_test")
        assert isinstance(evaluator, PascalVOCEvaluator)
        inputs = catalog.get_dataset_dicts("voc_2007_test")
        dog = catalog.get_metadata("voc_2007_test")["thing_classes"].index("dog")
        hit = [_instances(d, [a["bbox"] for a in d["annotations"]], [dog]) for d in inputs]
        res = _evaluate(evaluator, inputs, hit)["bbox"]
        assert res["AP50"] == pytest.approx(100.0)
        half = [hit[0], _instances(inputs[1], [[0, 0, 5, 5]], [dog])]
        # VOC07 11-point AP with one of two dogs found at precision 1: 6/11
        assert _evaluate(evaluator, inputs, half)["bbox"]["AP50"] == pytest.approx(600 / 11)
    finally:
        monkeypatch.undo()
        register_resdet_datasets()


def test_p03_no_detections_score_the_same_on_both_engines(d2_datasets, tmp_path):
    from resdet.detection.evaluation import build_detection_evaluator

    cfg = _d2_cfg("OUTPUT_DIR", str(tmp_path))
    inputs = catalog.get_dataset_dicts("coco_2017_val")
    empty = [_instances(d, np.zeros((0, 4)), []) for d in inputs]
    d2_engine = _evaluate(ResdetTrainer.build_evaluator(cfg, "coco_2017_val"), inputs, empty)
    tv_engine = _evaluate(build_detection_evaluator(cfg, "coco_2017_val"), inputs, empty)
    assert _same(d2_engine["bbox"], tv_engine["bbox"])
    assert d2_engine["bbox"]["AP"] == 0.0 and d2_engine["bbox"]["AP50"] == 0.0


def _d2_coco_name(json_file: str, image_root: str) -> str:
    from detectron2.data import DatasetCatalog
    from detectron2.data.datasets import register_coco_instances

    name = f"test_coco_{abs(hash(json_file))}"
    if name not in DatasetCatalog.list():
        register_coco_instances(name, {}, json_file, image_root)
        DatasetCatalog.get(name)  # loading fills the metadata's category id mapping
    return name


def _d2_voc_name(dirname: str) -> str:
    from detectron2.data import DatasetCatalog
    from detectron2.data.datasets import register_pascal_voc

    from resdet.data.voc import VOC_CLASSES

    name = f"test_voc07_{abs(hash(dirname))}"
    if name not in DatasetCatalog.list():
        register_pascal_voc(name, dirname, "test", 2007, VOC_CLASSES)
    return name


def test_resdet_evaluators_equal_detectron2s_on_clean_data(d2_datasets, tmp_path):
    inputs = catalog.get_dataset_dicts("coco_2017_val")
    rng = np.random.default_rng(0)
    outputs = []
    for d in inputs:
        boxes = [a["bbox"] for a in d["annotations"]]
        boxes = np.array([[x, y, x + w, y + h] for x, y, w, h in boxes], dtype=np.float64)
        boxes = np.concatenate([boxes + rng.normal(0, 3, boxes.shape), boxes[:1] + 20])
        cats = [a["category_id"] for a in d["annotations"]]
        outputs.append(_instances(d, boxes, cats + [cats[0]], rng.uniform(0.1, 1, len(boxes))))
    ours = _evaluate(COCOEvaluator("coco_2017_val"), inputs, outputs)["bbox"]
    # Detectron2's own coco_2017_val points where $DETECTRON2_DATASETS was when detectron2 was
    # first imported (another test may have done that): its evaluator gets this data by a name
    # of its own
    meta = catalog.get_metadata("coco_2017_val")
    name = _d2_coco_name(meta["json_file"], meta["image_root"])
    theirs = _evaluate(D2COCOEvaluator(name, tasks=("bbox",), output_dir=str(tmp_path / "d2")),
                       inputs, outputs)["bbox"]
    for key in ("AP", "AP50", "AP75", "APs", "APm", "APl"):
        assert (math.isnan(ours[key]) and math.isnan(theirs[key])) or \
            ours[key] == pytest.approx(theirs[key], abs=1e-6), key



def test_resdet_voc_evaluator_equals_detectron2s_on_clean_data(tmp_path, monkeypatch):
    """Every VOC class has ground truth (as on the official splits)."""
    from resdet.d2 import register_resdet_datasets
    from resdet.data.voc import VOC_CLASSES

    base = make_tiny_voc(str(tmp_path / "ds"), 2007, {"test": 4})
    for i in range(4):
        objects = [{"name": VOC_CLASSES[5 * i + j], "bbox": (1 + 12 * j, 5 + j, 11 + 12 * j, 40),
                    } for j in range(5)]
        with open(os.path.join(base, "Annotations", f"{i + 1:06d}.xml"), "w") as f:
            f.write(voc_xml(f"{i + 1:06d}.jpg", 64, 70, objects))
    monkeypatch.setenv("DETECTRON2_DATASETS", str(tmp_path / "ds"))
    register_resdet_datasets()
    try:
        voc = catalog.get_dataset_dicts("voc_2007_test")
        rng = np.random.default_rng(1)
        voc_out = [_instances(d, np.array([a["bbox"] for a in d["annotations"]])
                              + rng.normal(0, 2, (len(d["annotations"]), 4)),
                              [a["category_id"] for a in d["annotations"]],
                              rng.uniform(0.1, 1, len(d["annotations"]))) for d in voc]
        ours = _evaluate(PascalVOCEvaluator("voc_2007_test"), voc, voc_out)["bbox"]
        theirs = _evaluate(PascalVOCDetectionEvaluator(_d2_voc_name(base)), voc, voc_out)["bbox"]
        for key in ("AP", "AP50", "AP75"):
            assert ours[key] == pytest.approx(theirs[key], abs=1e-6), key
        assert 0 < ours["AP"] < 100
    finally:
        monkeypatch.undo()
        register_resdet_datasets()


def test_dataset_only_in_detectron2s_catalog_keeps_detectron2s_evaluator(d2_datasets, tmp_path):
    from detectron2.data import DatasetCatalog, MetadataCatalog
    from detectron2.data.datasets import register_coco_instances

    json_file = os.path.join(d2_datasets, "coco", "annotations", "instances_val2017.json")
    register_coco_instances("i11b_users_own", {}, json_file,
                            os.path.join(d2_datasets, "coco", "val2017"))
    try:
        evaluator = ResdetTrainer.build_evaluator(_d2_cfg("OUTPUT_DIR", str(tmp_path)),
                                                  "i11b_users_own")
        assert isinstance(evaluator, D2COCOEvaluator)
    finally:
        DatasetCatalog.remove("i11b_users_own")
        MetadataCatalog.remove("i11b_users_own")
