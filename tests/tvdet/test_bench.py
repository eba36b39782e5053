"""The benchmark pair has the same sizes, and the timing function runs both alternately."""

from __future__ import annotations

from resdet.tvdet.bench import benchmark, build_models


def test_same_sizes_as_torchvision_and_timing_runs():
    models = build_models(64, 128)
    ours, theirs = models["resdet"], models["torchvision"]
    count = {n: sum(p.numel() for p in m.parameters()) for n, m in models.items()}
    trainable = {n: sum(p.numel() for p in m.parameters() if p.requires_grad)
                 for n, m in models.items()}
    assert count["resdet"] == count["torchvision"]
    assert trainable["resdet"] == trainable["torchvision"]
    assert ours.rpn._post_nms_top_n == theirs.rpn._post_nms_top_n
    assert ours.roi_heads.fg_bg_sampler.batch_size_per_image == 512
    r = benchmark("train", iters=1, warmup=0, batch_size=1, image_size=(64, 96), models=models)
    assert r["resdet"] > 0 and r["torchvision"] > 0
    assert r["ratio"] == r["resdet"] / r["torchvision"]
