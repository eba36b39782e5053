"""Detectron2's own checkpointer reads resdet's exports as resdet reads them (needs detectron2).

Skipped where Detectron2 is not importable (it is optional); run with it on PYTHONPATH.
"""

import pickle

import pytest
import torch

from resdet.checkpoint import load_weights, save_detectron2_pkl, to_msra
from resdet.modeling import build_backbone

pytest.importorskip("detectron2")


@pytest.fixture(scope="module")
def source():
    torch.manual_seed(0)
    src = build_backbone("resnet50", out_features=("res5",))
    g = torch.Generator().manual_seed(0)
    for name, buf in src.named_buffers():
        if name.endswith("running_mean"):
            buf.copy_(torch.rand(buf.shape, generator=g) * 0.2 - 0.1)
        elif name.endswith("running_var"):
            buf.copy_(torch.rand(buf.shape, generator=g) + 0.5)
    return src


def _d2_c4_model(path):
    from detectron2.checkpoint import DetectionCheckpointer
    from detectron2.config import get_cfg
    from detectron2.modeling import build_model

    cfg = get_cfg()  # R50-C4 Faster R-CNN, FrozenBN, stride in 1x1: the MSRA setting
    cfg.MODEL.DEVICE = "cpu"
    model = build_model(cfg).eval()
    DetectionCheckpointer(model).load(str(path))
    return model


@pytest.mark.slow
@pytest.mark.parametrize("c4_head", [False, True])
def test_detectron2_loads_resdet_pkl_exactly(source, tmp_path, c4_head):
    save_detectron2_pkl(source, tmp_path / "r50.pkl", c4_head=c4_head)
    d2 = _d2_c4_model(tmp_path / "r50.pkl").state_dict()
    for k, v in source.state_dict().items():
        if "num_batches_tracked" not in k:
            d2_key = ("roi_heads." if k.startswith("res5.") else "backbone.") + k
            torch.testing.assert_close(d2[d2_key], v, rtol=0, atol=0)


@pytest.mark.slow
def test_msra_pkl_same_features_in_detectron2_and_resdet(source, tmp_path):
    with open(tmp_path / "R-50.pkl", "wb") as f:
        pickle.dump(to_msra(source), f, protocol=2)
    x = torch.randn(1, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    ours = build_backbone("resnet50", out_features=("res4",), norm="FrozenBN").eval()
    load_weights(ours, tmp_path / "R-50.pkl")
    d2 = _d2_c4_model(tmp_path / "R-50.pkl")
    with torch.no_grad():
        a, b = ours(x)["res4"], d2.backbone(x)["res4"]
    scale = b.abs().max().item()
    torch.testing.assert_close(a, b, rtol=1e-3, atol=1e-5 * scale)
