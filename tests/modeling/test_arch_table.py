"""The architecture table: specs agree with what the builders make; options and ARCH/DEPTH."""

import pytest
import torch

from resdet.config import CHOICES, NORMS, SHORTCUTS, get_cfg, load_config
from resdet.errors import UserError
from resdet.modeling import (
    ARCHITECTURES,
    BasicBlock,
    BottleneckBlock,
    arch_info,
    build_backbone,
    build_classifier,
    get_arch,
    resolve_arch,
)


@pytest.mark.parametrize("name", [n for n in ARCHITECTURES if n != "cifar_resnet1202"])
def test_spec_shapes_are_the_built_backbones(name):
    spec = get_arch(name)
    backbone = build_backbone(name, out_features=spec.feature_names())
    assert backbone.output_shape() == spec.stage_shapes()


def test_table_holds_the_papers_networks():
    specs = ARCHITECTURES.values()
    assert [s.name for s in specs if s.family == "resnet"] == [
        f"{p}{d}" for d in (18, 34, 50, 101, 152) for p in ("resnet", "plain")]
    assert get_arch("resnet101").stage_blocks == (3, 4, 23, 3)  # Table 1
    assert get_arch("resnet50").stage_channels == (256, 512, 1024, 2048)
    assert get_arch("resnet34").block is BasicBlock
    assert get_arch("plain152").block is BottleneckBlock and not get_arch("plain152").residual
    assert get_arch("cifar_resnet110").stage_blocks == (18, 18, 18)  # 6n+2, Sec. 4.2
    assert [(s.default_shortcut, s.input_size, s.num_classes) for s in
            map(get_arch, ("resnet50", "cifar_plain20", "vgg16"))] == [
        ("B", 224, 1000), ("A", 32, 10), (None, 224, 1000)]
    assert get_arch("vgg16").default_norm is None


def test_arch_info_is_a_view_of_the_spec():
    assert arch_info("resnet50") == dict(family="resnet", depth=50, block="bottleneck",
                                         residual=True, stages=("res2", "res3", "res4", "res5"))
    assert arch_info("cifar_plain20")["family"] == "cifar"
    assert arch_info("vgg16")["block"] is None


def test_classifier_defaults_to_the_specs_classes():
    assert build_classifier("cifar_resnet20").fc.out_features == 10
    assert build_classifier("resnet18").fc.out_features == 1000


@pytest.mark.parametrize("name, classifier", [
    ("resnet18", "fc"), ("plain50", "fc"), ("cifar_resnet20", "fc"), ("vgg16", "fc8")])
def test_spec_names_the_classifier_layer(name, classifier):
    spec = get_arch(name)
    assert spec.classifier == classifier
    with torch.device("meta"):  # shapes only: VGG-16's fc6 alone has 103M weights
        model = build_classifier(name, num_classes=7)
    layer = getattr(model, spec.classifier)
    assert isinstance(layer, torch.nn.Linear) and layer.out_features == 7
    assert f"{classifier}.weight" in model.state_dict()


def test_block_supports_is_the_block_classes_option():
    # every ImageNet net takes stride_in_1x1; only bottleneck blocks have a 1x1 conv to move it to
    assert [(n, get_arch(n).supports("stride_in_1x1"), get_arch(n).block_supports("stride_in_1x1"))
            for n in ("resnet18", "plain34", "resnet50", "plain152", "cifar_resnet20",
                      "vgg16")] == [
        ("resnet18", True, False), ("plain34", True, False), ("resnet50", True, True),
        ("plain152", True, True), ("cifar_resnet20", False, False), ("vgg16", False, False)]
    assert not get_arch("resnet50").block_supports("shortcut")


def test_unsupported_option_is_named():
    with pytest.raises(UserError) as err:
        build_classifier("cifar_resnet20", stride_in_1x1=False)
    assert str(err.value) == ("Unknown option(s) for 'cifar_resnet20': stride_in_1x1; it takes "
                              "shortcut, norm, freeze_at.")
    with pytest.raises(UserError) as err:
        build_backbone("vgg16", shortcut="B", dilation=2)
    assert str(err.value) == ("Unknown option(s) for 'vgg16': dilation, shortcut; it takes "
                              "norm, freeze_at.")
    # None asks for nothing, so a caller may pass every option it knows.
    assert build_backbone("vgg16", shortcut=None).output_shape()["conv5_3"].stride == 16


def test_one_list_per_option():
    assert SHORTCUTS == ("A", "B", "C")
    assert NORMS == ("BN", "FrozenBN", "GN", "SyncBN")
    assert CHOICES["MODEL.RESDET.SHORTCUT"] == ("",) + SHORTCUTS
    import tools.analyze_model as analyze_model

    with pytest.raises(SystemExit):
        analyze_model.parse_args(["--arch", "resnet18", "--shortcut", "D"])
    with pytest.raises(UserError, match="Unknown shortcut option 'D'; use one of A, B, C"):
        build_classifier("resnet18", shortcut="D")
    with pytest.raises(UserError) as err:
        load_config(None, ["MODEL.RESDET.SHORTCUT", "D"])
    assert str(err.value) == ("Config key 'MODEL.RESDET.SHORTCUT' in the command line must be "
                              "one of '', 'A', 'B', 'C', got 'D'.")


def _cfg(arch, depth):
    cfg = get_cfg()
    cfg.MODEL.RESDET.ARCH = arch
    cfg.MODEL.RESNETS.DEPTH = depth
    return cfg


@pytest.mark.parametrize("arch, depth, expected", [
    ("", 50, "resnet50"), ("", 101, "resnet101"), ("resnet101", 50, "resnet101"),
    ("resnet101", 101, "resnet101"), ("plain34", 34, "plain34"),
    ("cifar_resnet20", 50, "cifar_resnet20"), ("cifar_resnet20", 20, "cifar_resnet20"),
    ("vgg16", 50, "vgg16"),
])
def test_arch_follows_depth_or_names_the_net(arch, depth, expected):
    assert resolve_arch(_cfg(arch, depth)) == expected


def test_arch_and_depth_that_disagree_name_both_keys():
    with pytest.raises(UserError) as err:
        resolve_arch(_cfg("resnet101", 152))
    assert str(err.value) == (
        "MODEL.RESDET.ARCH = 'resnet101' has 101 layers but MODEL.RESNETS.DEPTH = 152; set only "
        "one of them (MODEL.RESNETS.DEPTH to 101, or MODEL.RESDET.ARCH to '' to follow DEPTH).")
    with pytest.raises(UserError) as err:
        resolve_arch(_cfg("", 56))
    assert str(err.value) == (
        "MODEL.RESNETS.DEPTH = 56 names no ResNet (MODEL.RESDET.ARCH is empty, so it follows "
        "DEPTH); use one of 18, 34, 50, 101, 152, or set MODEL.RESDET.ARCH.")
    with pytest.raises(UserError, match="MODEL.RESDET.ARCH = 'resnet51' is not a network; "
                                        "valid names are: resnet18, plain18,"):
        resolve_arch(_cfg("resnet51", 50))
