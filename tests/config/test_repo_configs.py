"""Every YAML under configs/ loads strictly (no unknown keys, right types), _BASE_ files too."""

import pathlib

import pytest

from resdet.config import load_config

CONFIG_DIR = pathlib.Path(__file__).resolve().parents[2] / "configs"
CONFIGS = sorted(CONFIG_DIR.rglob("*.yaml")) if CONFIG_DIR.is_dir() else []


@pytest.mark.skipif(not CONFIGS, reason="no configs/*.yaml yet")
@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: str(p.relative_to(CONFIG_DIR)))
def test_config_loads(path):
    cfg = load_config(str(path))
    assert cfg.is_frozen()
