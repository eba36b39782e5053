"""The paper's augmentation, per-sample seeding, mean subtraction and unreadable images."""

import numpy as np
import pytest
import torch

from resdet.data import cls_transforms as T
from resdet.errors import UserError
from resdet.pretrain.data import EvalDataset, Normalizer, TrainDataset, compute_normalizer


def test_scale_augment_crop_size_and_scale_range():
    img = np.zeros((100, 200, 3), np.uint8)
    img[:, :100] = 255  # left half white
    for seed in range(20):
        out = T.scale_augment_crop(img, np.random.default_rng(seed), (50, 60), 40)
        assert out.shape == (40, 40, 3)
    # shorter side 50 -> image 50x100: a 40 crop sees both halves only near the middle;
    # the mean over many crops is about half white
    means = [T.scale_augment_crop(img, np.random.default_rng(s), (50, 50), 40).mean()
             for s in range(200)]
    assert 90 < np.mean(means) < 165


def test_pad_crop_and_flip():
    img = np.arange(4 * 4 * 3, dtype=np.float32).reshape(4, 4, 3) + 1
    outs = [T.pad_crop(img, np.random.default_rng(s), 2, 4) for s in range(50)]
    assert all(o.shape == (4, 4, 3) for o in outs)
    assert any((o == 0).any() for o in outs)  # zero padding shows up
    assert any(np.array_equal(o, img) for o in outs)
    assert any(np.array_equal(o, img[:, ::-1]) for o in outs)


def test_lighting_is_alexnet_pca():
    rng = np.random.default_rng(5)
    alpha = np.random.default_rng(5).normal(0, 0.1, 3).astype(np.float32)
    out = T.lighting(np.zeros((2, 2, 3), np.uint8), rng, 0.1)
    want = T.IMAGENET_EIGVEC @ (alpha * T.IMAGENET_EIGVAL) * 255
    np.testing.assert_allclose(out[0, 0], want, rtol=1e-5)


def _records(tmp_path, n=4, bad=None):
    import cv2

    recs = []
    for i in range(n):
        p = tmp_path / f"im{i}.JPEG"
        if i == bad:
            p.write_bytes(b"\xff\xd8 this is not a jpeg")
        else:
            cv2.imwrite(str(p), np.full((30, 40, 3), 40 * i, np.uint8))
        recs.append({"file_name": str(p), "label": i % 2})
    return recs


def test_train_samples_seeded_by_stream_position(tmp_path):
    recs = _records(tmp_path)
    norm = Normalizer(torch.zeros(3, 24, 24), torch.ones(3))
    ds = TrainDataset(recs, norm, augmentation="scale", crop=24, resize_range=(26, 40),
                      color_std=0.1, seed=7)
    a = ds[(1, 10)]["image"]
    ds[(2, 11)]  # other draws in between do not matter
    assert torch.equal(a, ds[(1, 10)]["image"])
    assert not torch.equal(a, ds[(1, 12)]["image"])


def test_unreadable_image_skipped_with_warning_or_error(tmp_path, caplog):
    recs = _records(tmp_path, bad=1)
    norm = Normalizer(torch.zeros(3, 1, 1), torch.ones(3))
    ds = TrainDataset(recs, norm, augmentation="scale", crop=24, resize_range=(24, 30))
    import logging

    log = logging.getLogger("resdet.pretrain")
    log.addHandler(caplog.handler)  # "resdet" may not propagate once a run set up logging
    try:
        out = ds[(1, 0)]
    finally:
        log.removeHandler(caplog.handler)
    assert out["n_bad"] == 1 and out["label"] == recs[2]["label"]
    assert str(recs[1]["file_name"]) in caplog.text
    strict = TrainDataset(recs, norm, augmentation="scale", crop=24, resize_range=(24, 30),
                          skip_bad=False)
    with pytest.raises(UserError) as e:
        strict[(1, 0)]
    assert recs[1]["file_name"] in str(e.value) and "SKIP_BAD_SAMPLES" in str(e.value)
    test = EvalDataset(recs, mode="center", crop=24, resize=24)
    assert test[1]["label"] == -1  # ignored by the evaluator


def test_pixel_mean_is_mean_image(tmp_path):
    recs = _records(tmp_path, n=3)
    norm = compute_normalizer(recs, mode="pixel", crop=24, resize=24, max_samples=10)
    assert norm.mean.shape == (3, 24, 24)
    # images are uniform 0, 40, 80 -> mean 40 everywhere (JPEG may be off by one)
    assert abs(float(norm.mean.mean()) - 40) < 1.5
    x = torch.full((1, 3, 24, 24), 40.0)
    assert float(norm(x).abs().max()) < 1.5
    ch = compute_normalizer(recs, mode="channel", crop=24, resize=24, max_samples=10)
    assert ch.mean.shape == (3, 1, 1) and 30 < float(ch.std[0]) < 36  # std of {0, 40, 80}
