"""Fine-tuning from weights made for another network is refused on the Detectron2 engine as on
the torchvision engine, with the same sentence (issue 15); weights that fit still load, and a
detector for another class count is a warning only."""

import logging
import os

import pytest

pytest.importorskip("detectron2")

import torch  # noqa: E402
from tests.d2.d2_helpers import TINY_OPTS  # noqa: E402

from resdet.cli import default_argument_parser  # noqa: E402
from resdet.errors import UserError  # noqa: E402
from resdet.modeling import build_classifier  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
QUICKSTART = os.path.join(ROOT, "configs", "quickstart.yaml")  # ResNet-18 FPN, 3 classes


def _start(engine_name, out, *opts):
    """What tools/train_net.py does, in this process (one GPU-less worker: no launcher)."""
    from resdet.train_detection import check_run, resolve_engine

    parser = default_argument_parser("test")
    parser.add_argument("--engine", default=None)
    args = parser.parse_args(["--config", QUICKSTART, "--engine", engine_name, *TINY_OPTS,
                              "OUTPUT_DIR", str(out), *opts])
    engine = resolve_engine(args.engine, args.config_file, args.opts)
    check_run(engine, eval_only=args.eval_only)
    args.engine_line = engine.line
    return engine.main()(args, engine.cfg)


def _d2_model(*opts):
    """The Detectron2 engine's quickstart detector and its config."""
    from resdet.d2.train import ResdetTrainer, setup

    parser = default_argument_parser("test")
    args = parser.parse_args(["--config", QUICKSTART, *TINY_OPTS, *opts])
    cfg = setup(args)
    return ResdetTrainer.build_model(cfg), cfg


def test_cifar_weights_for_the_resnet18_detector_are_one_sentence_on_both_engines(
        d2_datasets, tmp_path):
    torch.manual_seed(0)
    path = tmp_path / "cifar_resnet20.pth"
    torch.save(build_classifier("cifar_resnet20").state_dict(), path)
    expected = (f"{path}: weight 'stem.conv1.weight' has shape (16, 3, 3, 3) but the model "
                "resnet18 expects (64, 3, 7, 7) (and 64 more); build the architecture and "
                "options the weights were made for")
    with pytest.raises(UserError) as d2:
        _start("detectron2", tmp_path / "d2", "MODEL.WEIGHTS", str(path))
    assert str(d2.value) == expected
    with pytest.raises(UserError) as tv:
        _start("torchvision", tmp_path / "tv", "MODEL.WEIGHTS", str(path))
    # the same decision from the same shared check (resdet.checkpoint.check_fit), in the same words
    assert str(tv.value) == expected
    assert not (tmp_path / "d2" / "model_final.pth").exists()


def test_imagenet_weights_for_the_right_network_load_without_warning(d2_datasets, tmp_path,
                                                                       caplog):
    from resdet.d2 import ResdetCheckpointer

    torch.manual_seed(1)
    net = build_classifier("resnet18")  # 1000-class fc: a head the detector has no place for
    path = tmp_path / "resnet18.pth"
    torch.save(net.state_dict(), path)
    model, cfg = _d2_model()
    with caplog.at_level(logging.WARNING):
        ResdetCheckpointer(model, cfg=cfg).load(str(path))
    ours = [r.getMessage() for r in caplog.records
            if r.levelno >= logging.WARNING and r.name.startswith("resdet")]
    assert ours == []
    bottom_up = model.backbone.bottom_up
    torch.testing.assert_close(bottom_up.stem.conv1.weight, net.stem.conv1.weight, rtol=0, atol=0)
    torch.testing.assert_close(bottom_up.res5[1].conv2.norm.running_var,
                               net.res5[1].conv2.norm.running_var, rtol=0, atol=0)


def _detector_file(tmp_path, num_classes):
    model, _ = _d2_model("MODEL.ROI_HEADS.NUM_CLASSES", str(num_classes))
    path = tmp_path / f"detector_{num_classes}.pth"
    torch.save({"model": model.state_dict(), "iteration": 3}, path)
    return path, model


def test_detector_for_another_class_count_fine_tunes_with_a_warning(d2_datasets, tmp_path,
                                                                     caplog):
    from resdet.d2 import ResdetCheckpointer

    path, source = _detector_file(tmp_path, 5)
    model, cfg = _d2_model()  # 3 classes
    with caplog.at_level(logging.WARNING):
        ResdetCheckpointer(model, cfg=cfg).load(str(path))
    torch.testing.assert_close(model.roi_heads.box_head.fc1.weight,
                               source.roi_heads.box_head.fc1.weight, rtol=0, atol=0)
    assert model.roi_heads.box_predictor.cls_score.weight.shape == (4, 256)
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
    # nothing will train the box predictor when evaluating: refused, with the counts
    with pytest.raises(UserError, match=(
            rf"^{path} does not fit the detector: \d+ weights matched, 0 missing, 4 with another "
            r"shape \('roi_heads.box_predictor.cls_score.weight' \(6, 256\) in the file, "
            r"\(4, 256\) in the model; ")):
        ResdetCheckpointer(model, cfg=cfg, purpose="evaluate").load(str(path))


def test_detector_of_another_architecture_is_refused_when_fine_tuning(d2_datasets, tmp_path):
    from resdet.d2 import ResdetCheckpointer

    model, _ = _d2_model("MODEL.FPN.OUT_CHANNELS", "32")
    path = tmp_path / "fpn32.pth"
    torch.save({"model": model.state_dict()}, path)
    model, cfg = _d2_model()  # FPN.OUT_CHANNELS 64
    with pytest.raises(UserError, match=(
            rf"^{path} does not fit the detector: .*; \d+ of the mismatched weights are not a "
            r"classifier or box predictor for another class count, so the file was made for "
            r"another architecture: build the architecture and options the weights were made "
            r"for$")):
        ResdetCheckpointer(model, cfg=cfg).load(str(path))


def test_c4_res5_head_of_another_shape_is_named(tmp_path):
    """C4: the RoI head's res5 is checked as the torchvision engine checks it (another part)."""
    from detectron2.config import get_cfg
    from detectron2.modeling import build_model

    from resdet.d2 import ResdetCheckpointer, add_resdet_config

    cfg = add_resdet_config(get_cfg())
    cfg.merge_from_list(["MODEL.DEVICE", "cpu", "MODEL.BACKBONE.NAME",
                         "build_resdet_resnet_backbone", "MODEL.ROI_HEADS.NAME",
                         "ResdetRes5ROIHeads", "MODEL.RESDET.ARCH", "resnet18",
                         "MODEL.RESNETS.DEPTH", "18", "MODEL.RESNETS.RES2_OUT_CHANNELS", "64"])
    model = build_model(cfg)
    state = build_classifier("resnet18").state_dict()
    state["res5.1.conv2.weight"] = torch.zeros(512, 512, 1, 1)
    path = tmp_path / "r18_1x1.pth"
    torch.save(state, path)
    with pytest.raises(UserError) as e:
        ResdetCheckpointer(model, cfg=cfg).load(str(path))
    assert str(e.value) == (
        f"{path}: weight 'res5.1.conv2.weight' (resdet name '1.conv2.weight') has shape (512, "
        "512, 1, 1) but the model res5 box head expects (512, 512, 3, 3); build the "
        "architecture and options the weights were made for")
