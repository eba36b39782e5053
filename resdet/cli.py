"""Entry-point wrapper for ``tools/*.py``: a user error becomes one sentence, not a traceback."""

from __future__ import annotations

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
