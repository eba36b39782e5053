"""Fixtures: a dataset root with tiny COCO / VOC datasets; one torch thread per test."""

from __future__ import annotations

import pytest
import torch
from tvdet_helpers import write_tiny_coco, write_tiny_voc


@pytest.fixture(scope="session")
def tiny_root(tmp_path_factory) -> str:
    """A dataset root holding tiny COCO 2017 and VOC 2007/2012 datasets."""
    root = str(tmp_path_factory.mktemp("datasets"))
    write_tiny_coco(root)
    write_tiny_voc(root)
    return root


@pytest.fixture
def datasets_env(tiny_root, monkeypatch) -> str:
    monkeypatch.setenv("DETECTRON2_DATASETS", tiny_root)
    return tiny_root


@pytest.fixture(autouse=True)
def _one_thread(monkeypatch):
    # 2 shared cores: one thread per test process is faster than two fighting (the env var also
    # keeps resdet.tvdet.train.cpu_threads from choosing for the test).
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)
