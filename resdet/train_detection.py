"""Detection's entry point: which engine a run uses, chosen above both adapters, with the config
loaded once, and the checks a run makes before it builds anything (``tools/train_net.py``).

DESIGN.md: ``--engine auto`` picks Detectron2 when ``import detectron2`` works, and the first log
line says which engine runs and why. Without ``--engine`` the config's ``ENGINE`` key decides; it is
read from the YAML files and the command line alone, so that the config is then loaded once, into
the chosen engine's tree (Detectron2's full defaults plus resdet's keys, or resdet's defaults).

This module imports neither adapter (nor torch) until an engine is resolved, so a tool can parse its
command line and check its inputs before the heavy imports.
"""

from __future__ import annotations

import importlib.util
import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Optional, Sequence

from resdet.errors import UserError

if TYPE_CHECKING:
    from fvcore.common.config import CfgNode

ENGINES = ("auto", "detectron2", "torchvision")


@dataclass
class Engine:
    """A resolved engine.

    Attributes:
        name: ``"detectron2"`` or ``"torchvision"``.
        line: the first log line (the engine and why it was chosen).
        cfg: the run's config, loaded once into this engine's tree (frozen).
    """

    name: str
    line: str
    cfg: Any

    def main(self) -> Callable[..., Any]:
        """The per-process entry point ``main(args, cfg)`` of this engine's adapter."""
        if self.name == "detectron2":
            from resdet.d2.train import main
        else:
            from resdet.tvdet.train import main
        return main

    def launch(self) -> Callable[..., Any]:
        """The process launcher: Detectron2's ``launch`` or :func:`resdet.engine.launch`."""
        if self.name == "detectron2":
            from detectron2.engine import launch
        else:
            from resdet.engine import launch
        return launch


def detectron2_available() -> bool:
    """True when ``import detectron2`` works (a broken install counts as absent)."""
    if importlib.util.find_spec("detectron2") is None:
        return False
    try:
        import detectron2  # noqa: F401
    except Exception:
        return False
    return True


def config_engine(config_file: str, opts: Optional[Sequence[str]] = None) -> str:
    """The ``ENGINE`` a config asks for: the last one set in its ``_BASE_`` chain, the file, or
    the command line's ``ENGINE VALUE`` (default ``"auto"``).

    Only that key is read here; the whole config is checked when it is loaded for the engine.
    """
    value = _file_engine(config_file) if config_file else None
    opts = list(opts or [])
    for key, val in zip(opts[0::2], opts[1::2]):
        if key == "ENGINE":
            value = val
    return str(value) if value is not None else "auto"


def _file_engine(path: str, depth: int = 0) -> Optional[str]:
    import yaml

    if depth > 20 or not os.path.isfile(path):
        return None  # the loader reports a missing file or a _BASE_ cycle in full
    try:
        with open(path, encoding="utf-8") as f:
            data = yaml.safe_load(f)
    except (OSError, UnicodeDecodeError, yaml.YAMLError):
        return None
    if not isinstance(data, dict):
        return None
    if "ENGINE" in data:
        return data["ENGINE"]
    base = data.get("_BASE_")
    if isinstance(base, str) and base:
        base = os.path.expanduser(base)
        if not os.path.isabs(base):
            base = os.path.join(os.path.dirname(path), base)
        return _file_engine(base, depth + 1)
    return None


def resolve_engine(requested: Optional[str], config_file: str = "",
                   opts: Optional[Sequence[str]] = None) -> Engine:
    """Pick the engine for ``--engine requested`` (None: the config's ``ENGINE``), then load the
    config once into that engine's tree.

    Raises:
        UserError: an unknown name, "detectron2" when it does not import, or a bad config.
    """
    source = "--engine"
    if requested is None:
        requested, source = config_engine(config_file, opts), "ENGINE in the config"
    if requested not in ENGINES:
        raise UserError(f"{source} {requested!r} is not an engine; use one of "
                        f"{', '.join(ENGINES)}.")
    has_d2 = detectron2_available()
    if requested == "detectron2" and not has_d2:
        raise UserError(f"{source} asks for detectron2 but it does not import; install it (see "
                        "README) or use --engine torchvision.")
    from resdet.config import load_config

    if requested == "detectron2" or (requested == "auto" and has_d2):
        why = "requested" if requested == "detectron2" else "auto: detectron2 imports"
        name = "detectron2"
    else:
        why = "requested" if requested == "torchvision" else "auto: detectron2 does not import"
        name = "torchvision"
    cfg = load_config(config_file, list(opts or []), engine=name)
    return Engine(name, f"Engine: {name} ({why})", cfg)


def check_datasets(cfg: CfgNode, *, eval_only: bool, engine: str) -> None:
    """The run's datasets are named and on disk (synthetic ones generated), before any model is
    built or weights downloaded.

    Names resdet's catalog does not know are left to the Detectron2 adapter on that engine (a
    dataset registered in Detectron2's own catalog).

    Raises:
        UserError: DATASETS.TRAIN (or, with --eval-only, DATASETS.TEST) is empty, a name is
            unknown, or a dataset's files are not where they belong.
    """
    from resdet.data import catalog
    from resdet.data.custom import register_custom_datasets

    register_custom_datasets(cfg)  # DATASETS.CUSTOM names are checked like builtin ones
    if not eval_only and not cfg.DATASETS.TRAIN:
        raise UserError("DATASETS.TRAIN is empty; name at least one training dataset (pass "
                        "--config FILE, or DATASETS.TRAIN \"('shapes_train',)\").")
    if eval_only and not cfg.DATASETS.TEST:
        raise UserError("--eval-only needs DATASETS.TEST; name at least one test dataset.")
    names = list(cfg.DATASETS.TEST) if eval_only else list(cfg.DATASETS.TRAIN) + list(
        cfg.DATASETS.TEST)
    known = set(catalog.list_datasets())
    for name in names:
        if name not in known:
            if engine == "detectron2":
                continue
            catalog.get_metadata(name)  # raises the catalog's message, with a suggestion
        catalog.ensure_generated(name)
        path = catalog.missing_path(name)
        if path is not None:
            raise catalog.missing_dataset_error(name, path)


def check_run(engine: Engine, *, eval_only: bool) -> None:
    """Everything a run can check before it builds a model or downloads weights: the config
    (keys the engine honours, the network it describes), the datasets, OUTPUT_DIR.

    Raises:
        UserError: the first problem, in one sentence.
    """
    from resdet.engine.defaults import check_output_dir  # the check pretraining makes too

    cfg = engine.cfg
    if engine.name == "detectron2":
        from resdet.d2.train import check_config
    else:
        from resdet.tvdet.build import check_config
    check_config(cfg)
    if eval_only and not cfg.MODEL.WEIGHTS:
        raise UserError("--eval-only needs MODEL.WEIGHTS (a model_final.pth of either engine).")
    weights = str(cfg.MODEL.WEIGHTS)
    if weights and "://" not in weights and not os.path.isfile(weights):
        raise UserError(f"MODEL.WEIGHTS file {weights} does not exist; give an existing file or "
                        "a name such as torchvision://resnet101.")
    check_datasets(cfg, eval_only=eval_only, engine=engine.name)
    check_output_dir(cfg.OUTPUT_DIR or ".")
