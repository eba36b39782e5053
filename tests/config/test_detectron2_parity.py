"""With Detectron2 importable: every resdet default exists in Detectron2's config, same value."""

import pytest

from resdet.config import add_resdet_config, flatten, get_cfg, load_config


def _d2_cfg():
    d2_config = pytest.importorskip("detectron2.config")
    return add_resdet_config(d2_config.get_cfg())


def test_every_resdet_key_matches_detectron2():
    d2 = flatten(_d2_cfg())
    ours = flatten(get_cfg())
    missing = sorted(set(ours) - set(d2))
    assert not missing, f"keys not in Detectron2's config: {missing}"
    differ = {k: (v, d2[k]) for k, v in ours.items() if d2[k] != v or type(d2[k]) is not type(v)}
    assert not differ, f"values differing from Detectron2's: {differ}"


def test_add_resdet_config_keeps_detectron2_defaults():
    d2_config = pytest.importorskip("detectron2.config")
    before = flatten(d2_config.get_cfg())
    after = flatten(add_resdet_config(d2_config.get_cfg()))
    assert {k: after[k] for k in before} == before


def test_load_config_into_detectron2_cfg(tmp_path):
    base = _d2_cfg()
    path = tmp_path / "x.yaml"
    path.write_text("SOLVER:\n  BASE_LR: 0.02\nMODEL:\n  RESDET:\n    ARCH: resnet101\n")
    cfg = load_config(str(path), ["SOLVER.MAX_ITER", "5"], base_cfg=base)
    assert type(cfg) is type(base)
    assert (cfg.SOLVER.BASE_LR, cfg.SOLVER.MAX_ITER, cfg.MODEL.RESDET.ARCH) == (
        0.02, 5, "resnet101")
    assert load_config(None, engine="detectron2").MODEL.RESDET.ARCH == "resnet50"



def test_defaults_match_detectron2_source_file(monkeypatch):
    """Reads detectron2/config/defaults.py without importing detectron2 (deps may be absent)."""
    import importlib.util
    import os
    import sys
    import types

    from fvcore.common.config import CfgNode

    spec = importlib.util.find_spec("detectron2")
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("detectron2 source not on the path")
    path = os.path.join(next(iter(spec.submodule_search_locations)), "config", "defaults.py")
    # Its only import is ``from .config import CfgNode``: serve fvcore's from a stand-in package.
    package = types.ModuleType("_d2_config_src")
    package.__path__ = []
    config_module = types.ModuleType("_d2_config_src.config")
    config_module.CfgNode = CfgNode
    monkeypatch.setitem(sys.modules, "_d2_config_src", package)
    monkeypatch.setitem(sys.modules, "_d2_config_src.config", config_module)
    module_spec = importlib.util.spec_from_file_location("_d2_config_src.defaults", path)
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    d2 = flatten(add_resdet_config(module._C.clone()))
    ours = flatten(get_cfg())
    assert sorted(set(ours) - set(d2)) == []
    assert {k: v for k, v in ours.items() if d2[k] != v or type(d2[k]) is not type(v)} == {}
