"""The quickstarts keep one checkpoint and run on the GPU when there is one."""

import os

from resdet.config import load_config

CONFIGS = os.path.join(os.path.dirname(__file__), "..", "..", "configs")


def test_detection_quickstart_writes_model_final_only():
    cfg = load_config(os.path.join(CONFIGS, "quickstart.yaml"))
    # no periodic model_NNNNNNN.pth in a few-minute run, on either engine (Detectron2's
    # PeriodicCheckpointer also saves at MAX_ITER when it divides the period)
    assert cfg.SOLVER.CHECKPOINT_PERIOD > cfg.SOLVER.MAX_ITER


def test_quickstarts_leave_the_device_to_the_default():
    for name in ("quickstart.yaml", os.path.join("pretrain", "quickstart.yaml")):
        assert load_config(os.path.join(CONFIGS, name)).MODEL.DEVICE == "cuda", name
