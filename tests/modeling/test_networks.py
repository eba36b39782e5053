"""The paper's networks: parameter counts, FLOPs, shapes, gradients, options (issue 2)."""

import pytest
import torch
import torchvision

from resdet.errors import UserError
from resdet.modeling import (
    ARCHITECTURES,
    FrozenBatchNorm2d,
    build_backbone,
    build_classifier,
    build_stage,
    get_arch,
)
from resdet.modeling.complexity import count_flops, count_parameters
from resdet.modeling.layers import zero_pad_shortcut

IMAGENET_DEPTHS = (18, 34, 50, 101, 152)
# Table 1: FLOPs (multiply-adds) at 224x224, x10^9.
PAPER_GFLOPS = {18: 1.8, 34: 3.6, 50: 3.8, 101: 7.6, 152: 11.3}
# Table 6: parameters of the CIFAR-10 ResNets, in millions, as printed.
PAPER_CIFAR_PARAMS = {20: "0.27", 32: "0.46", 44: "0.66", 56: "0.85", 110: "1.7", 1202: "19.4"}
# Exact counts (BN affine parameters included), which round to Table 6.
CIFAR_PARAMS = {20: 269_722, 32: 464_154, 44: 658_586, 56: 853_018, 110: 1_727_962,
                1202: 19_421_274}


def _input_for(name):
    # The CIFAR nets at their own size; the ImageNet ones at 64x64 (enough for stride 32).
    size = min(get_arch(name).input_size, 64)
    return torch.randn(2, 3, size, size)


@pytest.mark.parametrize("depth", IMAGENET_DEPTHS)
def test_resnet_params_equal_torchvision(depth):
    ours = count_parameters(build_classifier(f"resnet{depth}"))
    theirs = count_parameters(getattr(torchvision.models, f"resnet{depth}")())
    assert ours == theirs


def test_vgg16_params_equal_torchvision():
    assert count_parameters(build_classifier("vgg16")) == count_parameters(
        torchvision.models.vgg16())


@pytest.mark.parametrize("depth", IMAGENET_DEPTHS)
def test_flops_match_paper_table1(depth):
    flops, per_child = count_flops(build_classifier(f"resnet{depth}"), 224)
    assert abs(flops / 1e9 - PAPER_GFLOPS[depth]) / PAPER_GFLOPS[depth] < 0.02
    assert sum(per_child.values()) == pytest.approx(flops)


@pytest.mark.parametrize("depth", IMAGENET_DEPTHS)
def test_flops_with_stride_in_3x3_match_torchvision(depth):
    weights = getattr(torchvision.models, f"ResNet{depth}_Weights").IMAGENET1K_V1
    flops, _ = count_flops(build_classifier(f"resnet{depth}", stride_in_1x1=False), 224)
    # torchvision rounds its figure to 3 decimals (GFLOPs).
    assert flops / 1e9 == pytest.approx(weights.meta["_ops"], abs=6e-3)


@pytest.mark.parametrize("depth", sorted(CIFAR_PARAMS))
def test_cifar_params_match_table6(depth):
    n = count_parameters(build_classifier(f"cifar_resnet{depth}", num_classes=10))
    assert n == CIFAR_PARAMS[depth]
    digits = 2 if n < 1e6 else 1
    assert f"{n / 1e6:.{digits}f}" == PAPER_CIFAR_PARAMS[depth]


@pytest.mark.parametrize("name", [n for n in ARCHITECTURES if not n.startswith("plain")
                                  and n.startswith(("resnet", "cifar_resnet"))])
def test_plain_and_option_a_have_equal_params_and_c_more_than_b(name):
    plain = name.replace("resnet", "plain")
    option_a = count_parameters(build_classifier(name, shortcut="A"))
    if plain in ARCHITECTURES:
        assert count_parameters(build_classifier(plain)) == option_a
    option_b = count_parameters(build_classifier(name, shortcut="B"))
    option_c = count_parameters(build_classifier(name, shortcut="C"))
    assert option_c > option_b >= option_a


SMALL_ARCHS = [n for n in ARCHITECTURES if n not in ("cifar_resnet1202",)]


@pytest.mark.parametrize("name", SMALL_ARCHS)
def test_forward_shape_and_every_parameter_gets_a_gradient(name):
    torch.manual_seed(0)
    model = build_classifier(name, num_classes=7)
    x = _input_for(name)
    if name == "vgg16":
        x = torch.randn(1, 3, 32, 32)
    logits = model(x)
    assert logits.shape == (x.shape[0], 7)
    logits.sum().backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None]
    assert missing == []


def test_cifar_resnet1202_builds_with_the_paper_layout():
    model = build_classifier("cifar_resnet1202", num_classes=10)
    n = (1202 - 2) // 6
    assert [len(getattr(model, s)) for s in ("res2", "res3", "res4")] == [n, n, n]
    assert model(torch.randn(1, 3, 32, 32)).shape == (1, 10)


@pytest.mark.parametrize("name", ["resnet18", "resnet50", "plain34", "cifar_resnet20", "vgg16"])
def test_backbone_reports_true_shapes(name):
    spec = get_arch(name)
    features = ("conv4_3", "conv5_3") if name == "vgg16" else ("stem",) + spec.stage_names
    backbone = build_backbone(name, out_features=features)
    x = torch.randn(1, 3, 64, 64)
    outputs = backbone(x)
    assert list(outputs) == list(features)
    for feature, spec in backbone.output_shape().items():
        assert outputs[feature].shape[1] == spec.channels
        assert 64 // outputs[feature].shape[-1] == spec.stride


def test_c4_backbone_stops_at_res4_and_res5_stage_matches_classifier():
    backbone = build_backbone("resnet101", out_features=("res4",))
    assert not hasattr(backbone, "res5")
    assert backbone.output_shape()["res4"].channels == 1024
    assert backbone.output_shape()["res4"].stride == 16
    res5 = build_stage("resnet101", "res5", norm="FrozenBN")
    classifier = build_classifier("resnet101")
    ours = {k: v.shape for k, v in res5.state_dict().items()}
    theirs = {k[len("res5."):]: v.shape for k, v in classifier.state_dict().items()
              if k.startswith("res5.") and "num_batches_tracked" not in k}
    assert ours == theirs
    assert res5(torch.randn(1, 1024, 14, 14)).shape == (1, 2048, 7, 7)


@pytest.mark.parametrize("shortcut", ["A", "C"])
def test_shortcut_option_reaches_res5_stage(shortcut):
    stage = build_stage("resnet34", "res5", shortcut=shortcut)
    assert (stage[0].shortcut is None) == (shortcut == "A")
    assert (stage[1].shortcut is None) == (shortcut == "A")
    plain = build_stage("plain50", "res5")
    assert all(not block.residual for block in plain)


def test_zero_pad_shortcut_subsamples_and_pads_with_zeros():
    x = torch.arange(2 * 2 * 4 * 4, dtype=torch.float32).view(2, 2, 4, 4)
    y = zero_pad_shortcut(x, 5, 2)
    assert y.shape == (2, 5, 2, 2)
    torch.testing.assert_close(y[:, :2], x[:, :, ::2, ::2])
    assert torch.count_nonzero(y[:, 2:]) == 0


def test_option_a_has_no_shortcut_parameters():
    model = build_classifier("cifar_resnet20", num_classes=10)
    assert not any("shortcut" in name for name, _ in model.named_parameters())


@pytest.mark.parametrize("freeze_at", [0, 1, 2, 3, 5])
def test_freeze_at_freezes_exactly_stem_and_stages(freeze_at):
    model = build_classifier("resnet18", freeze_at=freeze_at)
    expected_frozen = (["stem"] if freeze_at >= 1 else []) + \
        ["res2", "res3", "res4", "res5"][: max(freeze_at - 1, 0)]
    for name, module in model.named_children():
        grads = {p.requires_grad for p in module.parameters()}
        frozen = name in expected_frozen
        assert grads == ({False} if frozen else {True}), name
        has_frozen_bn = any(isinstance(m, FrozenBatchNorm2d) for m in module.modules())
        assert has_frozen_bn == frozen, name


@pytest.mark.parametrize("norm", ["BN", "FrozenBN", "GN", "SyncBN"])
def test_norm_options(norm):
    model = build_backbone("cifar_resnet20", out_features=("res4",), norm=norm)
    names = {type(m).__name__ for m in model.modules()}
    expected = {"BN": "BatchNorm2d", "FrozenBN": "FrozenBatchNorm2d", "GN": "GroupNorm",
                "SyncBN": "SyncBatchNorm"}[norm]
    assert expected in names
    if norm != "SyncBN":  # SyncBatchNorm only runs in a process group
        assert model(torch.randn(2, 3, 32, 32))["res4"].shape == (2, 64, 8, 8)


def test_frozen_bn_equals_batchnorm_in_eval_mode():
    bn = torch.nn.BatchNorm2d(4).eval()
    bn.running_mean.uniform_(-1, 1)
    bn.running_var.uniform_(0.5, 2)
    bn.weight.data.uniform_(0.5, 2)
    bn.bias.data.uniform_(-1, 1)
    frozen = FrozenBatchNorm2d.convert_frozen_batchnorm(bn)
    x = torch.randn(2, 4, 3, 3)
    torch.testing.assert_close(frozen(x), bn(x))


def test_stride_in_1x1_places_the_stride():
    paper = build_stage("resnet50", "res3", stride_in_1x1=True)[0]
    v15 = build_stage("resnet50", "res3", stride_in_1x1=False)[0]
    assert (paper.conv1.stride, paper.conv2.stride) == ((2, 2), (1, 1))
    assert (v15.conv1.stride, v15.conv2.stride) == ((1, 1), (2, 2))


def test_unknown_architecture_lists_valid_names():
    with pytest.raises(UserError) as err:
        build_classifier("resnet51")
    message = str(err.value)
    assert message.startswith("Unknown architecture 'resnet51'; valid names are: resnet18,")
    for name in ARCHITECTURES:
        assert name in message


def test_bad_options_are_named():
    with pytest.raises(UserError, match="Unknown shortcut option 'D'"):
        build_classifier("resnet18", shortcut="D")
    with pytest.raises(UserError, match="Unknown norm 'LN'"):
        build_classifier("resnet18", norm="LN")
    with pytest.raises(UserError, match="Unknown option"):
        build_classifier("resnet18", dilation=2)
    with pytest.raises(UserError, match="Unknown output feature 'res6'"):
        build_backbone("resnet18", out_features=("res6",))
