"""A network defined only here, registered, and built everywhere resdet builds networks (issue 16).

The network is a 3-stage bottleneck net with its own block class (a grouped 3x3, as ResNeXt) and
its own option (``groups``), registered with its own family builder. Nothing in ``resdet/`` knows
it: classification, backbones, pretraining and the FPN detector on both engines work from the
spec alone (the Detectron2 half where Detectron2 imports).
"""

import os

import pytest
import torch
import torch.nn.functional as F

from resdet.errors import UserError
from resdet.modeling import (
    ArchSpec,
    Conv2d,
    ImageNetStem,
    ResidualBlock,
    ShapeSpec,
    build_backbone,
    build_classifier,
    build_stage,
    default_out_features,
    get_arch,
    get_norm,
    list_architectures,
    register_arch,
    register_family,
    unregister_arch,
)
from resdet.modeling.arch import FAMILIES
from resdet.modeling.complexity import count_parameters
from resdet.modeling.resnet import build_resnet

NAME = "grouped_resnet14"
CONFIGS = os.path.join(os.path.dirname(__file__), "..", "..", "configs")


class GroupedBottleneck(ResidualBlock):
    """1x1 reduce to out/2, grouped 3x3 (stride here), 1x1 restore."""

    options = ("groups",)

    def __init__(self, in_channels, out_channels, *, stride=1, residual=True, shortcut="B",
                 norm="BN", groups=4):
        super().__init__(in_channels, out_channels, stride, residual, shortcut, norm)
        mid = out_channels // 2
        self.conv1 = Conv2d(in_channels, mid, 1, bias=False, norm=get_norm(norm, mid))
        self.conv2 = Conv2d(mid, mid, 3, stride=stride, padding=1, groups=groups, bias=False,
                            norm=get_norm(norm, mid))
        self.conv3 = Conv2d(mid, out_channels, 1, bias=False, norm=get_norm(norm, out_channels))

    def forward(self, x):
        out = F.relu_(self.conv1(x))
        out = F.relu_(self.conv2(out))
        return F.relu_(self.add_shortcut(self.conv3(out), x))


def build_grouped_resnet(spec, *, groups=4, **options):
    """The family's builder: resdet's ResNet builder, with this family's option."""
    return build_resnet(spec, groups=groups, **options)


SPEC = ArchSpec(
    name=NAME, family="grouped_resnet", depth=14,  # stem + 4 blocks x 3 convs + fc
    stage_names=("res2", "res3", "res4"), stage_blocks=(1, 1, 2), stage_channels=(64, 128, 256),
    block=GroupedBottleneck, stem=ImageNetStem, default_shortcut="B", input_size=64,
    num_classes=5, options=("shortcut", "norm", "freeze_at", "groups"))
# Counted by hand (weights + BN affine): stem 9,536; res2 6,656; res3 30,464 (projection
# shortcut 8,448); res4 120,320 + 103,424; fc 256 * 5 + 5 = 1,285.
EXPECTED_PARAMS = 271_685


@pytest.fixture(scope="module", autouse=True)
def registered():
    register_family("grouped_resnet")(build_grouped_resnet)
    register_arch(SPEC)
    yield
    unregister_arch(NAME)
    FAMILIES.pop("grouped_resnet")


def test_registered_name_is_listed_and_its_spec_answers():
    assert list_architectures()[-1] == NAME
    assert get_arch(NAME) is SPEC
    assert SPEC.stage_shapes() == {"stem": ShapeSpec(64, 4), "res2": ShapeSpec(64, 4),
                                   "res3": ShapeSpec(128, 8), "res4": ShapeSpec(256, 16)}
    assert default_out_features(NAME) == ("res4",)


def test_classifier_shape_params_and_gradients():
    torch.manual_seed(0)
    model = build_classifier(NAME)  # 5 classes: the spec's
    assert count_parameters(model) == EXPECTED_PARAMS
    assert [len(getattr(model, s)) for s in ("res2", "res3", "res4")] == [1, 1, 2]
    assert all(isinstance(b, GroupedBottleneck) for s in ("res2", "res3", "res4")
               for b in getattr(model, s))
    assert model.res3[0].conv2.groups == 4 and model.res3[0].conv2.stride == (2, 2)
    logits = model(torch.randn(2, 3, 64, 64))
    assert logits.shape == (2, 5)
    logits.sum().backward()
    assert [n for n, p in model.named_parameters() if p.grad is None] == []


def test_its_own_option_reaches_every_block_and_others_are_refused():
    model = build_classifier(NAME, num_classes=3, groups=8)
    assert {b.conv2.groups for s in ("res2", "res3", "res4") for b in getattr(model, s)} == {8}
    with pytest.raises(UserError) as err:
        build_classifier(NAME, stride_in_1x1=False)
    assert str(err.value) == (f"Unknown option(s) for '{NAME}': stride_in_1x1; it takes "
                              "shortcut, norm, freeze_at, groups.")
    option_a = build_classifier(NAME, shortcut="A")
    assert not any("shortcut" in n for n, _ in option_a.named_parameters())
    assert count_parameters(option_a) == EXPECTED_PARAMS - 8_448 - 33_280


def test_backbone_output_shape_matches_features():
    backbone = build_backbone(NAME, out_features=("res2", "res3"), freeze_at=2)
    assert not hasattr(backbone, "res4")  # deeper stages are not built
    assert backbone.output_shape() == {"res2": ShapeSpec(64, 4), "res3": ShapeSpec(128, 8)}
    outputs = backbone(torch.randn(1, 3, 64, 96))
    assert {k: tuple(v.shape) for k, v in outputs.items()} == {
        "res2": (1, 64, 16, 24), "res3": (1, 128, 8, 12)}
    assert not any(p.requires_grad for p in backbone.stem.parameters())
    assert not any(p.requires_grad for p in backbone.res2.parameters())
    assert all(p.requires_grad for p in backbone.res3.parameters())


def test_stage_is_the_classifiers_stage():
    stage = build_stage(NAME, "res4", norm="BN")
    classifier = build_classifier(NAME)
    ours = {k: v.shape for k, v in stage.state_dict().items()}
    theirs = {k[len("res4."):]: v.shape for k, v in classifier.state_dict().items()
              if k.startswith("res4.")}
    assert ours == theirs
    assert stage(torch.randn(1, 128, 8, 8)).shape == (1, 256, 4, 4)


def test_pretraining_trains_it(tmp_path, monkeypatch):
    from resdet.config import load_config
    from resdet.pretrain.train import build_pretrain_model, check_pretrain_config, run
    from tests.pretrain.tiny_cls_data import make_cifar_batches

    monkeypatch.setenv("DETECTRON2_DATASETS", str(tmp_path / "datasets"))
    monkeypatch.setenv("RESDET_PROGRESS", "0")
    make_cifar_batches(str(tmp_path / "datasets"), per_batch=4, test=4)
    # SHORTCUT reaches it (the spec takes "shortcut"); MODEL.RESNETS.STRIDE_IN_1X1, always set,
    # does not (the spec does not take it: passing it would be refused).
    cfg = load_config(os.path.join(CONFIGS, "pretrain", "Base-CIFAR10.yaml"), [
        "MODEL.RESDET.ARCH", NAME, "MODEL.RESDET.SHORTCUT", "A", "MODEL.DEVICE", "cpu",
        "DATALOADER.NUM_WORKERS", "0",
        "SOLVER.IMS_PER_BATCH", "4", "SOLVER.MAX_ITER", "2", "SOLVER.CHECKPOINT_PERIOD", "100",
        "SOLVER.AMP.ENABLED", "False", "PRETRAIN.LOG_PERIOD", "1", "PRETRAIN.TEST_BATCH_SIZE",
        "4", "TEST.EVAL_PERIOD", "0", "OUTPUT_DIR", str(tmp_path / "out")])
    assert cfg.MODEL.RESNETS.STRIDE_IN_1X1
    check_pretrain_config(cfg)
    model = build_pretrain_model(cfg)
    assert isinstance(model.res2[0], GroupedBottleneck) and model.fc.out_features == 10
    # option A (no projections) and 10 classes instead of the spec's 5
    assert count_parameters(model) == EXPECTED_PARAMS - 8_448 - 33_280 + 5 * 256 + 5
    import argparse

    result = run(cfg, argparse.Namespace(eval_only=False, resume=False))
    assert not result["interrupted"]
    assert result["eval_results"]["cifar10_test"]["num_images"] == 4
    final = torch.load(tmp_path / "out" / "model_final.pth", weights_only=True)
    assert (final["arch"], final["shortcut"]) == (NAME, "A")
    assert not any("shortcut" in k for k in final["model"])


# The 3-stage FPN: res2..res4 -> p2..p4, and p5 by max pooling p4 (LastLevelMaxPool).
FPN_OPTS = ["MODEL.RESDET.ARCH", NAME, "MODEL.RESNETS.DEPTH", "14",
            "MODEL.RESNETS.RES2_OUT_CHANNELS", "64",
            "MODEL.RESNETS.OUT_FEATURES", "['res2', 'res3', 'res4']",
            "MODEL.FPN.IN_FEATURES", "['res2', 'res3', 'res4']",
            "MODEL.RPN.IN_FEATURES", "['p2', 'p3', 'p4', 'p5']",
            "MODEL.ROI_HEADS.IN_FEATURES", "['p2', 'p3', 'p4']",
            "MODEL.ANCHOR_GENERATOR.SIZES", "[[32], [64], [128], [256]]",
            "MODEL.WEIGHTS", "", "MODEL.DEVICE", "cpu"]
FPN_SHAPES = {"p2": (256, 4), "p3": (256, 8), "p4": (256, 16), "p5": (256, 32)}


def test_torchvision_engine_builds_it_as_fpn_backbone():
    from resdet.config import load_config
    from resdet.tvdet.build import build_model

    cfg = load_config(os.path.join(CONFIGS, "Base-RCNN-FPN.yaml"), FPN_OPTS)
    model = build_model(cfg, load_weights=False)
    body = model.backbone.body
    assert isinstance(body.res2[0], GroupedBottleneck)
    assert body.output_shape() == {"res2": ShapeSpec(64, 4), "res3": ShapeSpec(128, 8),
                                   "res4": ShapeSpec(256, 16)}
    assert dict(model.backbone.strides) == {k: s for k, (_, s) in FPN_SHAPES.items()}
    features = model.backbone(torch.randn(1, 3, 64, 64))
    assert {k: tuple(v.shape) for k, v in features.items()} == {
        k: (1, c, 64 // s, 64 // s) for k, (c, s) in FPN_SHAPES.items()}


def test_detectron2_engine_builds_it_as_fpn_backbone():
    pytest.importorskip("detectron2")
    from detectron2.config import get_cfg as d2_get_cfg
    from detectron2.modeling import build_backbone as d2_build_backbone

    import resdet.d2  # noqa: F401  (registers the backbones)
    from resdet.config import add_resdet_config, load_config

    cfg = load_config(os.path.join(CONFIGS, "Base-RCNN-FPN.yaml"), FPN_OPTS,
                      base_cfg=add_resdet_config(d2_get_cfg()))
    backbone = d2_build_backbone(cfg)
    assert isinstance(backbone.bottom_up.net.res2[0], GroupedBottleneck)
    assert {k: (s.channels, s.stride) for k, s in backbone.output_shape().items()} == FPN_SHAPES
    features = backbone(torch.randn(1, 3, 64, 64))
    assert {k: tuple(v.shape) for k, v in features.items()} == {
        k: (1, c, 64 // s, 64 // s) for k, (c, s) in FPN_SHAPES.items()}
