"""MODEL.DEVICE's default picks the GPU when one is visible and the CPU otherwise, quietly."""

from __future__ import annotations

import logging

import torch

from resdet.config import get_cfg
from resdet.engine import select_device


def _warnings(cfg):
    said = []
    handler = logging.Handler(logging.WARNING)
    handler.emit = lambda record: said.append(record.getMessage())
    logger = logging.getLogger("resdet")
    logger.addHandler(handler)
    try:
        device = select_device(cfg)
    finally:
        logger.removeHandler(handler)
    return device, said


def test_default_device_on_a_cpu_machine_is_the_cpu_without_a_warning(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    cfg = get_cfg()
    assert cfg.MODEL.DEVICE == "cuda"  # Detectron2's default, kept: it means "a GPU if any"
    assert _warnings(cfg) == (torch.device("cpu"), [])


def test_default_device_with_a_gpu_is_this_process_gpu(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert select_device(get_cfg()) == torch.device("cuda", 0)


def test_a_named_gpu_that_is_missing_is_warned_about(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    cfg = get_cfg()
    cfg.MODEL.DEVICE = "cuda:1"
    assert _warnings(cfg) == (torch.device("cpu"), [
        "MODEL.DEVICE is 'cuda:1' but no CUDA GPU is visible; running on the CPU."])
