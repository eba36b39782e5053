"""Entry-point wrapper for ``tools/*.py``: a user error becomes one sentence, not a traceback."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from typing import Callable, Optional, Sequence

from resdet.errors import UserError


def debug_requested(argv: Optional[Sequence[str]] = None) -> bool:
    """True when ``--debug`` is on the command line or ``RESDET_DEBUG`` is set to a true value."""
    argv = sys.argv[1:] if argv is None else argv
    return "--debug" in argv or os.environ.get("RESDET_DEBUG", "") not in ("", "0", "false")


def run_main(main: Callable[[], object]) -> None:
    """Run a tool's ``main()``; a :class:`UserError` prints ``error: <message>`` and exits with 2.

    With ``--debug`` or ``RESDET_DEBUG=1`` the exception propagates with its full traceback.
    """
    if debug_requested():
        main()
        return
    try:
        main()
    except UserError as e:
        logging.shutdown()
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        sys.exit(130)


def default_argument_parser(description: Optional[str] = None) -> argparse.ArgumentParser:
    """The common command line of resdet's training tools (Detectron2's flags, plus ``--debug``).

    Args:
        description: text shown by ``--help``.

    Returns:
        A parser with --config/--config-file, --resume, --eval-only, --num-gpus, --num-machines,
        --machine-rank, --dist-url, --debug and trailing ``KEY VALUE`` config overrides.
    """
    parser = argparse.ArgumentParser(
        description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", "--config-file", dest="config_file", default="",
                        metavar="FILE", help="path to the YAML config")
    parser.add_argument("--resume", action="store_true",
                        help="continue from OUTPUT_DIR/last_checkpoint (model, optimizer, "
                             "scheduler, iteration) instead of starting from MODEL.WEIGHTS")
    parser.add_argument("--eval-only", action="store_true", help="only evaluate MODEL.WEIGHTS")
    parser.add_argument("--num-gpus", type=int, default=1,
                        help="processes per machine (one per GPU; on a CPU-only machine this many "
                             "gloo processes)")
    parser.add_argument("--num-machines", type=int, default=1, help="total number of machines")
    parser.add_argument("--machine-rank", type=int, default=0,
                        help="the rank of this machine (unique per machine)")
    parser.add_argument("--dist-url", default="auto",
                        help="initialization URL for the process group, e.g. tcp://HOST:PORT; "
                             "'auto' picks a free local port (single machine only)")
    parser.add_argument("--debug", action="store_true", help="show full tracebacks")
    parser.add_argument("opts", default=None, nargs=argparse.REMAINDER,
                        help="config overrides as KEY VALUE pairs, e.g. SOLVER.MAX_ITER 100")
    return parser
