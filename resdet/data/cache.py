"""On-disk cache of parsed annotation files and folder listings, so a second start is fast.

Parsing COCO-train's instances file takes a minute and listing ImageNet's 1.28M files several
seconds, in every run and every process. :func:`cached_call` stores what a loader returned (after
its checks) in one pickle file and gives it back while the loader's inputs are unchanged:

- **Key.** The cache file's name comes from what was asked (loader, arguments); inside it are
  the *stamps* of the source files and folders it was built from (path, size, modification time
  in ns, inode; small files also a hash of their bytes) and a hash of the loader's source code.
  A stamp or code change makes the entry stale: it is rebuilt, with an info line saying why.
  Stamps are taken before and after the build; an entry whose sources changed meanwhile is not
  stored.
- **Never trusted blindly.** A file that does not unpickle, or holds another key, is rebuilt with
  a warning naming it.
- **Where.** ``$RESDET_CACHE_DIR`` if set (``off`` disables caching), else
  ``$XDG_CACHE_HOME/resdet``, else ``~/.cache/resdet``. A folder that cannot be created or written
  means no cache, silently (one debug line). Files follow the user's umask.
- **Once per machine.** Processes building the same entry take a lock file next to it: the first
  one parses and writes, the others (the other local ranks of a distributed run) wait for the
  lock and then read the file it wrote.
- **Warnings survive.** Warnings the loader logged (under the ``resdet`` logger) while building
  are stored with the entry and logged again on every cached load.
"""

from __future__ import annotations

import contextlib
import functools
import gc
import hashlib
import importlib
import inspect
import logging
import os
import pickle
import time
from typing import Any, Callable, Dict, Iterable, List, Optional, Sequence, Tuple

logger = logging.getLogger(__name__)

FORMAT = 1  # of the cache files themselves
SMALL_FILE = 16 * 2 ** 20  # files up to this size are also keyed by a hash of their bytes
_MAGIC = "resdet-cache"


def cache_dir() -> Optional[str]:
    """The cache folder (see the module docstring), or None when caching is off."""
    env = os.environ.get("RESDET_CACHE_DIR")
    if env is not None:
        return None if env.strip().lower() in ("", "off", "0", "none") else \
            os.path.expanduser(env)
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = os.path.expanduser(xdg) if xdg else os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "resdet")


def _writable_dir() -> Optional[str]:
    folder = cache_dir()
    if folder is None:
        return None
    try:
        os.makedirs(folder, exist_ok=True)
    except OSError as e:
        logger.debug("No annotation cache: cannot create %s (%s).", folder, e)
        return None
    if not os.access(folder, os.W_OK | os.X_OK):
        logger.debug("No annotation cache: %s is not writable.", folder)
        return None
    return folder


def stamp(paths: Iterable[str]) -> Tuple[tuple, ...]:
    """``(path, size, mtime_ns, inode[, sha1])`` of each path (``None`` fields if missing).

    Files up to :data:`SMALL_FILE` bytes also carry a hash of their bytes, so an edit that keeps
    the size within the file system's timestamp granularity is still seen.
    """
    out = []
    for p in paths:
        try:
            st = os.stat(p)
        except OSError:
            out.append((p, None, None, None))
            continue
        entry: tuple = (p, st.st_size, st.st_mtime_ns, st.st_ino)
        if os.path.isfile(p) and st.st_size <= SMALL_FILE:
            try:
                with open(p, "rb") as f:
                    entry += (hashlib.sha1(f.read()).hexdigest(),)
            except OSError:
                pass
        out.append(entry)
    return tuple(out)


@functools.lru_cache(maxsize=None)
def _file_hash(path: str) -> str:
    with open(path, "rb") as f:
        return hashlib.sha1(f.read()).hexdigest()[:16]


def code_version(*modules: Any) -> str:
    """A hash of the source files of ``modules`` (modules, functions, or dotted module names):
    any edit of the loading code (a new listing rule, a new check) makes older entries stale."""
    parts = []
    for m in modules:
        if isinstance(m, str):
            m = importlib.import_module(m)
        path = inspect.getsourcefile(m)
        parts.append(_file_hash(os.path.abspath(path)) if path else repr(m))
    return "-".join(parts)


class _Capture(logging.Handler):
    """Collects the warnings logged under ``resdet`` while a loader runs."""

    def __init__(self):
        super().__init__(logging.WARNING)
        self.messages: List[Tuple[str, int, str]] = []

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.messages.append((record.name, record.levelno, record.getMessage()))
        except Exception:  # a message that does not format is not worth failing the load for
            pass


def _replay(messages: Sequence[Tuple[str, int, str]]) -> None:
    for name, level, text in messages:
        logging.getLogger(name).log(level, "%s", text)


@contextlib.contextmanager
def gc_paused():
    """Python's cycle collector off for a while: parsing or unpickling millions of small objects
    (COCO-train's annotations) otherwise runs it again and again over them, doubling the time.
    The loaders make no reference cycles."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


@contextlib.contextmanager
def _locked(path: str):
    """An exclusive ``flock`` on ``path`` (no-op where locks are unavailable)."""
    try:
        import fcntl

        f = open(path, "a")
    except (ImportError, OSError):
        yield
        return
    try:
        fcntl.flock(f, fcntl.LOCK_EX)
    except OSError:
        pass
    try:
        yield
    finally:
        f.close()  # releases the lock


def _read(path: str, key: tuple, sources: Tuple[tuple, ...], code: str, what: str
          ) -> Tuple[bool, Any]:
    """``(True, value)`` from a valid entry; ``(False, None)`` after saying why not."""
    if not os.path.exists(path):
        return False, None
    try:
        with open(path, "rb") as f:
            entry = pickle.load(f)
        ok = (isinstance(entry, dict) and entry.get("magic") == _MAGIC
              and entry.get("format") == FORMAT and entry.get("key") == key
              and "value" in entry)
    except Exception as e:  # truncated, garbage, or classes that no longer exist
        logger.warning("The cache of %s (%s) is corrupt (%s: %s); parsing again.", what, path,
                       type(e).__name__, e)
        return False, None
    if not ok:
        logger.warning("The cache of %s (%s) is corrupt (not a resdet cache entry for it); "
                       "parsing again.", what, path)
        return False, None
    if entry.get("code") != code:
        logger.info("The cache of %s was written by other loading code; parsing again.", what)
        return False, None
    if entry.get("sources") != sources:
        changed = [new[0] for old, new in zip(entry.get("sources") or (), sources) if old != new]
        logger.info("The cache of %s is stale (%s changed); parsing again.", what,
                    ", ".join(changed[:3]) or "the source list")
        return False, None
    _replay(entry.get("messages", ()))
    logger.info("Loaded %s from the cache %s.", what, path)
    return True, entry["value"]


def _mtime(path: str) -> Optional[int]:
    try:
        return os.stat(path).st_mtime_ns
    except OSError:
        return None


def _write(path: str, entry: Dict[str, Any]) -> None:
    tmp = f"{path}.{os.getpid()}.tmp"
    try:
        with open(tmp, "wb") as f:  # open() follows the umask, unlike mkstemp's 0600
            pickle.dump(entry, f, protocol=pickle.HIGHEST_PROTOCOL)
        os.replace(tmp, path)
    except Exception as e:  # full disk, a value that does not pickle: run without the cache
        logger.debug("Could not write the cache %s (%s).", path, e)
        with contextlib.suppress(OSError):
            os.remove(tmp)


def cached_call(kind: str, key: tuple, sources: Callable[[], Sequence[str]],
                build: Callable[[], Any], *, code: str = "", what: str = "") -> Any:
    """``build()``, or what it returned last time while ``sources`` are unchanged.

    Args:
        kind: short name of the loader (the cache file's prefix), e.g. ``"coco"``.
        key: what was asked (file names, arguments); picklable and comparable with ``==``.
        sources: returns the files and folders the result depends on; called before and after
            a build (a folder listing's sources may only exist once the build made them).
        build: the loader; its exceptions pass through and nothing is cached.
        code: version of the loading code (:func:`code_version`).
        what: how log lines name the data (default: ``kind`` and the key).

    Returns:
        The loader's value (a fresh copy from the cache file, or the one just built).
    """
    what = what or f"{kind} {key}"
    folder = _writable_dir()
    if folder is None:
        return build()
    name = hashlib.sha1(repr((kind, key)).encode()).hexdigest()[:24]
    path = os.path.join(folder, f"{kind}-{name}.pkl")
    seen = _mtime(path)
    with gc_paused():
        found, value = _read(path, key, stamp(sources()), code, what)
    if found:
        return value
    with gc_paused(), _locked(path + ".lock"):
        # Another process (another local rank) may have written it while we waited.
        if _mtime(path) not in (None, seen):
            found, value = _read(path, key, stamp(sources()), code, what)
            if found:
                return value
        before = stamp(sources())
        capture = _Capture()
        resdet_logger = logging.getLogger("resdet")
        resdet_logger.addHandler(capture)
        t0 = time.perf_counter()
        try:
            value = build()
        finally:
            resdet_logger.removeHandler(capture)
        after = stamp(sources())
        if before == after:
            _write(path, {"magic": _MAGIC, "format": FORMAT, "key": key, "code": code,
                          "sources": after, "messages": capture.messages, "value": value})
            logger.debug("Parsed %s in %.1f s and cached it in %s.", what,
                         time.perf_counter() - t0, path)
        else:
            logger.debug("Not caching %s: its files changed while it was read.", what)
    return value


def cached_loader(kind: str, *, sources: Callable[..., Sequence[str]],
                  key: Callable[..., tuple], code: Sequence[Any] = (),
                  bypass: Optional[Callable[..., bool]] = None,
                  what: Optional[Callable[..., str]] = None) -> Callable:
    """Decorator form of :func:`cached_call` for a loader function.

    Args:
        kind: cache file prefix.
        sources: ``sources(*args, **kwargs)`` -> paths the result depends on.
        key: ``key(*args, **kwargs)`` -> what was asked.
        code: modules whose source is the loading code (default: the loader's module).
        bypass: ``bypass(*args, **kwargs)`` True -> call the loader without the cache.
        what: ``what(*args, **kwargs)`` -> the data's name in log lines.
    """
    def wrap(fn: Callable) -> Callable:
        modules = tuple(code) or (inspect.getmodule(fn),)

        @functools.wraps(fn)
        def loader(*args, **kwargs):
            with gc_paused():
                if bypass is not None and bypass(*args, **kwargs):
                    return fn(*args, **kwargs)
                return cached_call(kind, key(*args, **kwargs), lambda: sources(*args, **kwargs),
                                   lambda: fn(*args, **kwargs), code=code_version(*modules),
                                   what=what(*args, **kwargs) if what else "")
        loader.uncached = fn
        return loader
    return wrap


# ---- the loaders that use it --------------------------------------------------------------------

def _coco_key(json_file: str, image_root: str, *, id_map: Optional[Dict[int, int]] = None,
              strict: bool = False, problems: Any = None) -> tuple:
    ids = tuple(sorted(id_map.items())) if id_map is not None else None
    return (os.path.abspath(json_file), json_file, image_root, ids, bool(strict))


def _coco_sources(json_file: str, *args, **kwargs) -> List[str]:
    return [json_file]


def _coco_bypass(*args, problems: Any = None, **kwargs) -> bool:
    return problems is not None  # datasets/check.py wants every problem, freshly read


def _coco_what(json_file: str, *args, **kwargs) -> str:
    return json_file


#: Caches :func:`resdet.data.coco.load_coco_json` (keyed by the file, ``image_root``, ``id_map``
#: and ``strict``; bypassed when a ``problems`` log is passed).
cache_coco_json = cached_loader(
    "coco", sources=_coco_sources, key=_coco_key, bypass=_coco_bypass, what=_coco_what,
    code=("resdet.data.coco", "resdet.data.annotations", "resdet.data.problems",
          "resdet.data.coco_format"))


def folder_sources(folder: str, extra: Sequence[str] = ()) -> List[str]:
    """A class-folder tree's stamp paths: the folder, each sub-folder (adding or removing an
    image changes its folder's modification time), and ``extra`` files (label files)."""
    paths = [folder]
    try:
        paths += sorted(e.path for e in os.scandir(folder) if e.is_dir())
    except OSError:
        pass
    return paths + list(extra)
