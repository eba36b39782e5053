"""Which detection engine ``tools/train_net.py`` runs: Detectron2 when it imports, else this one.

DESIGN.md: ``--engine auto`` picks Detectron2 when ``import detectron2`` works, and the first log
line says which engine runs and why. Without ``--engine`` the config's ``ENGINE`` key decides.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from typing import Any, Callable, Optional, Sequence

from resdet.errors import UserError

ENGINES = ("auto", "detectron2", "torchvision")


@dataclass
class Engine:
    """A resolved engine: its name, the first log line, and its per-process main and launcher."""

    name: str
    line: str
    main: Callable[[Any], Any]
    launch: Callable[..., Any]


def detectron2_available() -> bool:
    """True when ``import detectron2`` works."""
    if importlib.util.find_spec("detectron2") is None:
        return False
    try:
        import detectron2  # noqa: F401
    except Exception:  # a broken install counts as absent for "auto"
        return False
    return True


def _config_engine(config_file: str, opts: Optional[Sequence[str]]) -> str:
    from resdet.config import load_config

    try:
        return str(load_config(config_file, opts).ENGINE)
    except UserError:
        return "auto"  # the engine's own loader reports the problem with its full message


def resolve_engine(requested: Optional[str], config_file: str = "",
                   opts: Optional[Sequence[str]] = None) -> Engine:
    """Pick the engine for ``--engine requested`` (None: the config's ``ENGINE``, default auto).

    Raises:
        UserError: an unknown name, or "detectron2" when it does not import.
    """
    source = "--engine"
    if requested is None:
        requested, source = _config_engine(config_file, opts), "ENGINE in the config"
    if requested not in ENGINES:
        raise UserError(f"{source} {requested!r} is not an engine; use one of "
                        f"{', '.join(ENGINES)}.")
    has_d2 = detectron2_available()
    if requested == "detectron2" and not has_d2:
        raise UserError(f"{source} asks for detectron2 but it does not import; install it (see "
                        "README) or use --engine torchvision.")
    if requested == "detectron2" or (requested == "auto" and has_d2):
        from detectron2.engine import launch as d2_launch

        from resdet.d2.train import main as d2_main

        why = "requested" if requested == "detectron2" else "auto: detectron2 imports"
        return Engine("detectron2", f"Engine: detectron2 ({why})", d2_main, d2_launch)
    from resdet.engine import launch
    from resdet.tvdet.train import main as tv_main

    why = "requested" if requested == "torchvision" else "auto: detectron2 does not import"
    return Engine("torchvision", f"Engine: torchvision ({why})", tv_main, launch)
