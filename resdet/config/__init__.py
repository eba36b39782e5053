"""resdet's config: Detectron2's key names and defaults plus resdet's keys, loaded strictly.

    from resdet.config import get_cfg, load_config
    cfg = load_config("configs/quickstart.yaml", ["SOLVER.BASE_LR", "0.02"])

Modules, each importing only those before it: ``choices`` (valid values of every option),
``merging`` (YAML files, opts, dotted keys), ``node`` (the CfgNode class), ``defaults`` (the key
tree), ``loading`` (defaults + file + opts, frozen; key checks of the engines).
"""

from resdet.config.choices import CHOICES, ENGINES, NORMS, SHORTCUTS
from resdet.config.defaults import add_resdet_config, get_cfg
from resdet.config.loading import check_keys_honoured, dump_config, load_config
from resdet.config.merging import (
    all_keys,
    flatten,
    lookup,
    merge_dict,
    merge_file,
    merge_opts,
)
from resdet.config.node import CfgNode

__all__ = [
    "CHOICES",
    "ENGINES",
    "NORMS",
    "SHORTCUTS",
    "CfgNode",
    "add_resdet_config",
    "all_keys",
    "check_keys_honoured",
    "dump_config",
    "flatten",
    "get_cfg",
    "load_config",
    "lookup",
    "merge_dict",
    "merge_file",
    "merge_opts",
]
