"""One answer to "what is this weights file": a WeightsKind on the converted result (issue 11)."""

import dataclasses

import pytest
import torch
import torchvision

import resdet.checkpoint.loader as loader
from resdet.checkpoint import WeightsKind, convert_to_resdet, load_weights, to_detectron2, to_msra
from resdet.checkpoint.formats import strides_in_3x3
from resdet.errors import UserError
from resdet.modeling import (
    BottleneckBlock,
    build_backbone,
    build_classifier,
    get_arch,
    register_arch,
    unregister_arch,
)


@pytest.fixture(scope="module")
def resdet_sd():
    torch.manual_seed(0)
    return build_backbone("resnet18", out_features=("res5",)).state_dict()


def test_kind_and_the_label_kept_beside_it(resdet_sd):
    tv = torchvision.models.resnet18(weights=None).state_dict()
    vgg = torchvision.models.vgg16(weights=None).state_dict()
    cases = [
        (tv, WeightsKind.TORCHVISION_RESNET, "torchvision ResNet (or timm)", None),
        ({"module." + k: v for k, v in tv.items()}, WeightsKind.TORCHVISION_RESNET,
         "torchvision ResNet (or timm)", None),
        (vgg, WeightsKind.TORCHVISION_VGG, "torchvision VGG", None),
        (to_msra(resdet_sd), WeightsKind.MSRA_CAFFE2, "MSRA/Caffe2 blobs", "blobs"),
        (to_detectron2(resdet_sd), WeightsKind.DETECTRON2_PKL, "Detectron2 .pkl (from resdet)",
         "model"),
        ({"model": resdet_sd, "cfg": "MODEL: {}\n"}, WeightsKind.RESDET, "resdet checkpoint",
         "model"),
        ({"model": {"backbone." + k: v for k, v in resdet_sd.items()}, "iteration": 9},
         WeightsKind.DETECTRON2, "Detectron2 checkpoint, prefix 'backbone.'", "model"),
        (resdet_sd, WeightsKind.DETECTRON2, "resdet/Detectron2 names", None),
        ({"head.weight": torch.zeros(2)}, WeightsKind.UNKNOWN, "state dict", None),
    ]
    for obj, kind, label, entry in cases:
        converted = convert_to_resdet(obj)
        assert (converted.kind, converted.source_format, converted.entry) == (kind, label, entry)
    assert WeightsKind.TORCHVISION_RESNET.torchvision_conventions
    assert not WeightsKind.DETECTRON2_PKL.torchvision_conventions
    assert WeightsKind.RESDET.resdet_names and not WeightsKind.MSRA_CAFFE2.resdet_names


def test_strides_in_3x3_takes_the_kind_or_the_old_label():
    assert strides_in_3x3(WeightsKind.TORCHVISION_RESNET, "resnet50")
    assert not strides_in_3x3(WeightsKind.TORCHVISION_RESNET, "resnet18")  # basic blocks
    assert not strides_in_3x3(WeightsKind.MSRA_CAFFE2, "resnet50")
    assert strides_in_3x3("torchvision ResNet (or timm), prefix 'model.'", "resnet50")


def test_strides_in_3x3_asks_the_block_not_a_family_name():
    tv = WeightsKind.TORCHVISION_RESNET
    assert [strides_in_3x3(tv, n) for n in ("plain101", "plain34", "cifar_resnet20", "vgg16")] \
        == [True, False, False, False]

    class WideBottleneck(BottleneckBlock):  # a block of a user's net: its options decide
        pass

    spec = register_arch(dataclasses.replace(get_arch("resnet50"), name="test_wide50",
                                             block=WideBottleneck))
    try:
        assert strides_in_3x3(tv, spec.name)
    finally:
        unregister_arch(spec.name)
    with pytest.raises(UserError, match="^Unknown architecture 'resnet51'; valid names are: "
                                        "resnet18, plain18, "):
        strides_in_3x3(tv, "resnet51")


def test_converted_weights_are_not_converted_again(monkeypatch):
    tv = torchvision.models.resnet18(weights=None)
    converted = convert_to_resdet(tv.state_dict(), "tv.pth")

    def fail(*args, **kwargs):
        raise AssertionError("converted twice")

    monkeypatch.setattr(loader, "convert_to_resdet", fail)
    body = converted.subset(lambda name: not name.startswith("fc."))
    assert len(body.tensors) == 120 and body.kind is WeightsKind.TORCHVISION_RESNET
    backbone = build_backbone("resnet18", out_features=("res5",), stride_in_1x1=False)
    report = load_weights(backbone, body, source="tv.pth")
    assert report.missing == [] and report.unexpected == []
    assert report.kind is WeightsKind.TORCHVISION_RESNET
    classifier = build_classifier("resnet18", stride_in_1x1=False)
    assert load_weights(classifier, converted).missing == []


def test_empty_file_is_one_sentence():
    from resdet.errors import UserError

    with pytest.raises(UserError) as e:
        convert_to_resdet({}, "x.pth")
    assert str(e.value) == ("x.pth holds no weights (an empty dict); pass the file the training "
                            "run wrote")
