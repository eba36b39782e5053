"""10-crop and fully-convolutional multi-scale testing agree with a direct computation."""

import torch
import torch.nn.functional as F

from resdet.data.cls_transforms import ten_crop_views
from resdet.modeling import build_classifier
from resdet.pretrain.data import Normalizer
from resdet.pretrain.multicrop import class_score_map, multiscale_probs, ten_crop_probs


def _setup(arch="cifar_resnet20", classes=7):
    torch.manual_seed(0)
    model = build_classifier(arch, num_classes=classes).eval()
    # BN with non-trivial statistics, so eval-mode scores are not flat
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.1, 0.1)
            m.running_var.uniform_(0.5, 1.5)
    norm = Normalizer(torch.full((3, 1, 1), 100.0), torch.full((3,), 50.0))
    img = torch.rand(3, 40, 52, generator=torch.Generator().manual_seed(1)) * 255
    return model, norm, img


@torch.no_grad()
def test_ten_crop_matches_explicit_crops():
    model, norm, img = _setup()
    s = 32
    h, w = img.shape[1:]
    boxes = [(0, 0), (0, w - s), (h - s, 0), (h - s, w - s), ((h - s) // 2, (w - s) // 2)]
    ref = []
    for y, x in boxes:
        crop = img[:, y:y + s, x:x + s]
        for view in (crop, torch.flip(crop, dims=[2])):
            ref.append(F.softmax(model(norm(view[None])), dim=1)[0])
    ref = torch.stack(ref).mean(0)
    got = ten_crop_probs(model, ten_crop_views(img, s)[None], norm)[0]
    torch.testing.assert_close(got, ref, rtol=1e-5, atol=1e-6)
    assert abs(float(got.sum()) - 1) < 1e-5


@torch.no_grad()
def test_multiscale_fully_convolutional_matches_resize_and_forward():
    for arch in ("cifar_resnet20", "resnet18"):
        model, norm, img = _setup(arch)
        scales = [32, 48, 64]
        ref = []
        for s in scales:
            r = s / min(img.shape[1:])
            size = (round(img.shape[1] * r), round(img.shape[2] * r))
            x = norm(F.interpolate(img[None], size=size, mode="bilinear", align_corners=False,
                                   antialias=r < 1))
            for view in (x, torch.flip(x, dims=[3])):
                ref.append(F.softmax(model(view), dim=1)[0])  # global pool + fc
        ref = torch.stack(ref).mean(0)
        got = multiscale_probs(model, img, scales, norm)
        torch.testing.assert_close(got, ref, rtol=1e-5, atol=1e-6)


@torch.no_grad()
def test_score_map_is_fc_as_1x1_conv():
    model, norm, img = _setup()
    x = norm(img[None])
    smap = class_score_map(model, x)
    assert smap.shape[:2] == (1, 7) and smap.shape[2:] == (10, 13)  # stride 4 on 40x52
    feat = model.forward_features(x)["res4"]
    manual = torch.einsum("nchw,kc->nkhw", feat, model.fc.weight) + model.fc.bias[:, None, None]
    torch.testing.assert_close(smap, manual, rtol=1e-5, atol=1e-5)


@torch.no_grad()
def test_vgg16_fully_convolutional_equals_its_classifier_at_224():
    # fc6 as a 7x7 conv, fc7/fc8 as 1x1 convs: on a 224 input (a 7x7 pool5 map) the score map is
    # 1x1 and equals the ordinary forward (eval mode: no dropout).
    torch.manual_seed(0)
    model = build_classifier("vgg16", num_classes=5).eval()
    x = torch.randn(2, 3, 224, 224)
    smap = class_score_map(model, x)
    assert smap.shape == (2, 5, 1, 1)
    torch.testing.assert_close(smap[:, :, 0, 0], model(x), rtol=1e-4, atol=1e-5)
    # a larger input slides the same classifier: 256 -> an 8x8 pool5 map -> 2x2 scores
    assert class_score_map(model, torch.randn(1, 3, 256, 256)).shape == (1, 5, 2, 2)
