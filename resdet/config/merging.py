"""Merging into a config: YAML files with ``_BASE_``, ``KEY VALUE`` opts, and dotted-key reads.

The merge rules are yacs'/fvcore's (the ones Detectron2 uses): a string value is read as a Python
literal when it is one, a list may replace a tuple and back, ``None`` may replace anything and be
replaced by anything. resdet adds int -> float promotion (``BASE_LR: 1``) and turns every failure
into one :class:`~resdet.errors.UserError` sentence naming the file and key. It merges into any
fvcore CfgNode, so it works on Detectron2's own config too.

Layer: below :mod:`resdet.config.node` (whose ``merge_from_file`` calls it), above
:mod:`resdet.config.choices`.
"""

from __future__ import annotations

import difflib
import os
from ast import literal_eval
from collections.abc import Iterable, Sequence
from typing import Any

import yaml
from fvcore.common.config import CfgNode as _FvcoreCfgNode

from resdet.config.choices import CHOICES
from resdet.errors import UserError

BASE_KEY = "_BASE_"
COMMAND_LINE = "the command line"
_LIST_TYPES = (list, tuple)


def merge_file(cfg: _FvcoreCfgNode, path: str, _chain: tuple = ()) -> None:
    """Merge a YAML file into ``cfg`` in place, its ``_BASE_`` chain first.

    Args:
        cfg: unfrozen config to change.
        path: the YAML file.
        _chain: files already being merged (to report a ``_BASE_`` cycle).

    Raises:
        UserError: a missing or unreadable file, invalid YAML, a ``_BASE_`` cycle, an unknown
            key, a value of the wrong type or outside ``CHOICES``; each names the file and key.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        if _chain:
            raise UserError(
                f"Config file '{path}' named by _BASE_ in '{_chain[-1]}' does not exist; "
                "fix the _BASE_ path (it is relative to the file that names it)."
            )
        raise UserError(f"Config file '{path}' does not exist; check the path.")
    real = os.path.realpath(path)
    if real in (os.path.realpath(p) for p in _chain):
        raise UserError(
            f"Config file '{path}' is its own _BASE_ (chain: {' -> '.join(_chain + (path,))}); "
            "remove the cycle."
        )
    data = _read_yaml(path)
    base = data.pop(BASE_KEY, None)
    if base is not None:
        if not isinstance(base, str) or not base:
            raise UserError(f"_BASE_ in '{path}' must be a file path, got {base!r}; fix it.")
        base = os.path.expanduser(base)
        if not os.path.isabs(base):
            base = os.path.normpath(os.path.join(os.path.dirname(path), base))
        merge_file(cfg, base, _chain + (path,))
    merge_dict(cfg, data, source=path)


def _read_yaml(path: str) -> dict:
    try:
        with open(path, encoding="utf-8") as f:
            data = yaml.safe_load(f)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        problem = getattr(e, "problem", None) or str(e).splitlines()[0]
        raise UserError(
            f"Config file '{path}' is not valid YAML{where} ({problem}); fix its syntax."
        ) from e
    except (OSError, UnicodeDecodeError) as e:
        raise UserError(f"Config file '{path}' cannot be read ({e}); check the file.") from e
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise UserError(
            f"Config file '{path}' must hold a mapping of keys (KEY: value), "
            f"got a {type(data).__name__}; fix the file."
        )
    return data


def merge_opts(cfg: _FvcoreCfgNode, opts: Sequence[str]) -> None:
    """Merge ``[KEY, VALUE, ...]`` command-line overrides into ``cfg`` in place.

    Args:
        cfg: unfrozen config to change.
        opts: alternating full key names and values; values are read as Python literals when
            they parse as one (``0.02``, ``"(640, 800)"``, ``True``), else kept as strings.

    Raises:
        UserError: an odd number of items, an unknown key (with the nearest valid one), a
            value of the wrong type or outside ``CHOICES``.
    """
    opts = list(opts)
    if len(opts) % 2:
        raise UserError(
            f"Command-line overrides must be KEY VALUE pairs, got {len(opts)} items "
            f"(last: {opts[-1]!r}); give a value for every key."
        )
    for full_key, value in zip(opts[0::2], opts[1::2]):
        node = cfg
        parts = str(full_key).split(".")
        for part in parts[:-1]:
            if not isinstance(node, _FvcoreCfgNode) or part not in node:
                _unknown_key(cfg, str(full_key), COMMAND_LINE)
            node = node[part]
        if not isinstance(node, _FvcoreCfgNode):
            _unknown_key(cfg, str(full_key), COMMAND_LINE)
        _merge_value(cfg, node, parts[-1], value, str(full_key), COMMAND_LINE)


def merge_dict(cfg: _FvcoreCfgNode, data: dict, *, source: str) -> None:
    """Merge a nested mapping (a parsed YAML file) into ``cfg`` in place.

    Args:
        cfg: unfrozen config to change.
        data: nested dict of key -> value.
        source: where ``data`` came from, for error messages (a file path).

    Raises:
        UserError: as :func:`merge_opts`, naming ``source``.
    """
    _merge_node(cfg, cfg, data, prefix="", source=source)


def _merge_node(root: _FvcoreCfgNode, node: _FvcoreCfgNode, data: dict, prefix: str,
                source: str) -> None:
    for key, value in data.items():
        full_key = prefix + str(key)
        _merge_value(root, node, str(key), value, full_key, source)


def _merge_value(root: _FvcoreCfgNode, node: _FvcoreCfgNode, key: str, value: Any,
                 full_key: str, source: str) -> None:
    raw, value = value, _decode(value)
    if key not in node:
        if node.is_new_allowed():
            node[key] = _to_node(node, value)
            return
        if _detectron2_default(full_key, value, source):
            return
        _unknown_key(root, full_key, source)
    old = node[key]
    if isinstance(old, _FvcoreCfgNode):
        if not isinstance(value, dict):
            children = ", ".join(f"'{full_key}.{k}'" for k in list(old.keys())[:4])
            raise UserError(
                f"Config key '{full_key}' in {source} is a group of keys ({children}...), "
                f"got {type(value).__name__} {value!r}; set one of its keys instead."
            )
        _merge_node(root, old, value, full_key + ".", source)
        return
    if isinstance(old, str) and isinstance(raw, str):
        # A path or name that happens to read as a literal (OUTPUT_DIR: 2024) stays a string.
        value = raw
    value = _coerce(value, old, full_key, source)
    allowed = CHOICES.get(full_key)
    if allowed is not None and value not in allowed:
        names = ", ".join(repr(a) for a in allowed)
        raise UserError(
            f"Config key '{full_key}' in {source} must be one of {names}, got {value!r}."
        )
    node[key] = value


def _detectron2_default(full_key: str, value: Any, source: str) -> bool:
    """True when ``full_key`` (a key or group of Detectron2's config that this tree lacks, as in a
    Detectron2-engine run's ``config.yaml``) keeps Detectron2's default: accepted, nothing to
    honour. A changed value is an error naming the key; a key Detectron2 lacks returns False."""
    from resdet.config.detectron2_keys import DETECTRON2_ONLY_DEFAULTS as d2_defaults

    if isinstance(value, dict):
        leaves = [(f"{full_key}.{k}", _decode(v)) for k, v in value.items()]
        if not any(k == full_key or k.startswith(full_key + ".") for k in d2_defaults):
            return False
        for leaf_key, leaf_value in leaves:
            if not _detectron2_default(leaf_key, leaf_value, source):
                raise UserError(f"Unknown config key '{leaf_key}' in {source}; remove it or "
                                "check its spelling against resdet/config/defaults.py.")
        return True
    if full_key not in d2_defaults:
        return False
    if not same_value(value, d2_defaults[full_key]):
        raise UserError(
            f"Config key '{full_key}' = {value!r} in {source} is a Detectron2 setting that this "
            "engine cannot honour (only Detectron2's default "
            f"{d2_defaults[full_key]!r} is accepted); remove it or use --engine detectron2."
        )
    return True


def same_value(a: Any, b: Any) -> bool:
    """Whether two config values are equal as config values: lists and tuples alike, ints and
    floats compared by value, bools only with bools."""
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(same_value(x, y) for x, y in zip(a, b))
    return type(a) is type(b) and a == b or (
        isinstance(a, (int, float)) and isinstance(b, (int, float))
        and not isinstance(a, bool) and not isinstance(b, bool) and a == b
    )


def _decode(value: Any) -> Any:
    # yacs' _decode_cfg_value: strings that are Python literals become those literals.
    if isinstance(value, str):
        try:
            return literal_eval(value)
        except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
            return value
    return value


def _to_node(parent: _FvcoreCfgNode, value: Any) -> Any:
    return type(parent)(value) if isinstance(value, dict) else value


def _coerce(value: Any, old: Any, full_key: str, source: str) -> Any:
    if isinstance(value, dict):
        raise UserError(
            f"Config key '{full_key}' in {source} must be {_type_name(old)}, "
            f"got a mapping {value!r}; give a single value."
        )
    if type(value) is type(old) or old is None or value is None:
        return value
    if isinstance(old, _LIST_TYPES) and isinstance(value, _LIST_TYPES):
        return type(old)(value)
    # int -> float promotion (``BASE_LR: 1``); bool is an int subclass and is not promoted.
    if type(old) is float and type(value) is int:
        return float(value)
    raise UserError(
        f"Config key '{full_key}' in {source} must be {_type_name(old)}, "
        f"got {type(value).__name__} {value!r}."
    )


def _type_name(value: Any) -> str:
    if isinstance(value, _LIST_TYPES):
        return "a list"
    return type(value).__name__


def _unknown_key(root: _FvcoreCfgNode, full_key: str, source: str) -> None:
    keys = list(all_keys(root))
    suggestion = _nearest_key(full_key, keys)
    if suggestion:
        raise UserError(
            f"Unknown config key '{full_key}' in {source}; did you mean '{suggestion}'?"
        )
    raise UserError(
        f"Unknown config key '{full_key}' in {source}; remove it or check its spelling "
        "against resdet/config/defaults.py."
    )


def _nearest_key(full_key: str, keys: list) -> str | None:
    close = difflib.get_close_matches(full_key, keys, n=1, cutoff=0.6)
    if close:
        return close[0]
    # A right key under the wrong group (MODEL.BASE_LR -> SOLVER.BASE_LR).
    last = full_key.rsplit(".", 1)[-1]
    same_name = [k for k in keys if k.rsplit(".", 1)[-1] == last]
    if same_name:
        return difflib.get_close_matches(full_key, same_name, n=1, cutoff=0.0)[0]
    close = difflib.get_close_matches(last, [k.rsplit(".", 1)[-1] for k in keys], n=1,
                                      cutoff=0.75)
    if close:
        return next(k for k in keys if k.rsplit(".", 1)[-1] == close[0])
    return None


def all_keys(cfg: _FvcoreCfgNode, prefix: str = "", *, groups: bool = True) -> Iterable[str]:
    """Every full key name in ``cfg`` (``"SOLVER.BASE_LR"``), in tree order.

    Args:
        cfg: any fvcore/Detectron2 CfgNode.
        prefix: prepended to every name (used by the recursion).
        groups: also yield group names (``"SOLVER"``, ``"SOLVER.AMP"``).
    """
    for key, value in cfg.items():
        full_key = prefix + key
        if isinstance(value, _FvcoreCfgNode):
            if groups:
                yield full_key
            yield from all_keys(value, full_key + ".", groups=groups)
        else:
            yield full_key


def lookup(cfg: _FvcoreCfgNode, full_key: str) -> Any:
    """The value of a dotted key such as ``"MODEL.RESNETS.DEPTH"`` (any engine's CfgNode).

    Raises:
        KeyError: a part of ``full_key`` that ``cfg`` does not have.
    """
    node = cfg
    for part in full_key.split("."):
        node = node[part]
    return node


def flatten(cfg: _FvcoreCfgNode) -> dict:
    """``{"SOLVER.BASE_LR": 0.001, ...}`` for every leaf key of ``cfg``, in tree order."""
    return {full_key: lookup(cfg, full_key) for full_key in all_keys(cfg, groups=False)}
