"""resdet's config: Detectron2's key names and defaults plus resdet's keys, loaded strictly.

    from resdet.config import get_cfg, load_config
    cfg = load_config("configs/quickstart.yaml", ["SOLVER.BASE_LR", "0.02"])
"""

from resdet.config.defaults import CfgNode, add_resdet_config, get_cfg
from resdet.config.loading import (
    all_keys,
    check_keys_honoured,
    dump_config,
    flatten,
    load_config,
    lookup,
    merge_dict,
    merge_file,
    merge_opts,
)

__all__ = [
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
