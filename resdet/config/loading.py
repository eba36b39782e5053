"""Loading a config: the defaults, a YAML file and command-line opts, frozen; writing it back.

The merging itself (``_BASE_``, literal values, type checks, the error sentences) is in
:mod:`resdet.config.merging`; this module picks the defaults of the engine, runs the merges, and
checks that an engine honours every key a config sets. It is the top of the config package:
choices -> merging -> node -> defaults -> loading, each importing only those before it.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence

from fvcore.common.config import CfgNode as _FvcoreCfgNode

from resdet.config.choices import ENGINES
from resdet.config.defaults import add_resdet_config, get_cfg
from resdet.config.merging import (  # noqa: F401  (re-exported: resdet.config.loading.merge_file)
    BASE_KEY,
    COMMAND_LINE,
    all_keys,
    flatten,
    lookup,
    merge_dict,
    merge_file,
    merge_opts,
    same_value,
)
from resdet.errors import UserError



def load_config(
    path: str | None,
    opts: Sequence[str] | None = None,
    *,
    base_cfg: _FvcoreCfgNode | None = None,
    engine: str | None = None,
) -> _FvcoreCfgNode:
    """Build a frozen config from the defaults, a YAML file and command-line opts.

    Args:
        path: YAML config file; its ``_BASE_`` (a path relative to the file) is merged first,
            recursively. None or "" uses the defaults only.
        opts: ``[KEY, VALUE, ...]`` overrides, applied after the file (e.g.
            ``["SOLVER.BASE_LR", "0.02"]``).
        base_cfg: config to merge into (not changed; a clone is used). Default: resdet's
            ``get_cfg()``; pass Detectron2's ``get_cfg()`` + ``add_resdet_config`` to load for it.
        engine: "detectron2" makes the default ``base_cfg`` Detectron2's own config (plus resdet's
            keys); "torchvision", "auto" or None use resdet's defaults (which equal Detectron2's on
            every key they share; resolve "auto" before calling to get Detectron2's full tree).

    Returns:
        The merged, frozen config.

    Raises:
        UserError: missing or unparsable file, unknown key, wrong value type, odd number of opts.
    """
    if engine not in (None, *ENGINES):
        raise UserError(
            f"Unknown engine {engine!r}; use one of {', '.join(ENGINES)}."
        )
    if base_cfg is None:
        base_cfg = _engine_defaults(engine)
    cfg = base_cfg.clone()
    cfg.defrost()
    if path:
        merge_file(cfg, path)
    if opts:
        merge_opts(cfg, opts)
    cfg.freeze()
    return cfg


def _engine_defaults(engine: str | None) -> _FvcoreCfgNode:
    """resdet's defaults, or Detectron2's own (plus resdet's keys) for ``engine='detectron2'``."""
    if engine != "detectron2":
        return get_cfg()
    try:
        from detectron2.config import get_cfg as d2_get_cfg
    except ImportError as e:
        raise UserError(
            f"The detectron2 engine was asked for but detectron2 does not import ({e}); "
            "install it or use --engine torchvision."
        ) from e
    return add_resdet_config(d2_get_cfg())


def dump_config(cfg: _FvcoreCfgNode, path: str) -> str:
    """Write ``cfg`` as YAML to ``path`` (e.g. ``OUTPUT_DIR/config.yaml``), atomically.

    Args:
        cfg: the config to write.
        path: the output file; its folder is created.

    Returns:
        ``path``.

    Raises:
        UserError: the folder cannot be created or the file written (naming OUTPUT_DIR).
    """
    path = os.fspath(path)
    text = cfg.dump()
    tmp = f"{path}.tmp.{os.getpid()}"
    try:
        folder = os.path.dirname(path)
        if folder:
            os.makedirs(folder, exist_ok=True)
        # Written then renamed, so a killed job never leaves a half-written config.yaml.
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(text)
        os.replace(tmp, path)
    except OSError as e:
        raise UserError(
            f"Cannot write the config to '{path}' ({e.strerror or e}); "
            "check that OUTPUT_DIR is writable."
        ) from e
    return path


def check_keys_honoured(
    cfg: _FvcoreCfgNode,
    supported: Iterable[str],
    *,
    engine: str,
    defaults: _FvcoreCfgNode | None = None,
) -> None:
    """Refuse a config that sets a key the engine would silently ignore.

    Args:
        cfg: the loaded config.
        supported: full keys (``"MODEL.RPN.NMS_THRESH"``) or prefixes (``"SOLVER."``, or a group
            name such as ``"SOLVER"``) that the engine reads.
        engine: engine name for the message, e.g. ``"torchvision"``.
        defaults: what counts as unchanged; default resdet's ``get_cfg()``. Keys that
            ``defaults`` does not hold are not judged.

    Raises:
        UserError: naming the first key (in tree order) whose value differs from its default and
            that ``supported`` does not cover.
    """
    if defaults is None:
        defaults = get_cfg()
    prefixes = tuple(s if s.endswith(".") else s + "." for s in supported)
    exact = set(supported)
    default_flat = flatten(defaults)
    bad = []
    for full_key, value in flatten(cfg).items():
        if full_key not in default_flat or full_key in exact or full_key.startswith(prefixes):
            continue
        if not same_value(value, default_flat[full_key]):
            bad.append((full_key, value))
    if not bad:
        return
    key, value = bad[0]
    hint = "remove it" if engine == "detectron2" else "remove it or use --engine detectron2"
    also = ""
    if len(bad) > 1:
        also = " (also unsupported: " + ", ".join(k for k, _ in bad[1:]) + ")"
    raise UserError(
        f"Config key '{key}' = {value!r} is not supported by the {engine} engine; {hint}{also}."
    )
