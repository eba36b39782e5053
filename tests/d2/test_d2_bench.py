"""resdet.d2.bench: the pairs it times compute the same thing, and it reports ratios."""

import pytest

pytest.importorskip("detectron2")

import torch  # noqa: E402

from resdet.d2.bench import benchmark, build_pair, make_inputs  # noqa: E402


def test_pairs_share_weights_and_outputs():
    theirs, ours = build_pair("FPN", 50)
    assert type(ours.backbone.bottom_up).__name__ == "ResdetBackbone"
    assert type(theirs.backbone.bottom_up).__name__ == "ResNet"
    inputs = make_inputs(1, 64, 96)
    theirs.eval()
    ours.eval()
    with torch.no_grad():
        a = theirs.backbone(theirs.preprocess_image(inputs).tensor)
        b = ours.backbone(ours.preprocess_image(inputs).tensor)
    for key in a:
        torch.testing.assert_close(a[key], b[key])


def test_benchmark_rows():
    rows = benchmark((50,), ("C4",), modes=("inference", "train"), height=64, width=96,
                     iters=1, warmup=0)
    assert [(r["model"], r["mode"]) for r in rows] == [("R50-C4", "inference"),
                                                         ("R50-C4", "train")]
    assert all(r["detectron2_s"] > 0 and r["resdet_s"] > 0 and r["ratio"] > 0 for r in rows)
