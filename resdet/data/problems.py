"""Collect the problems a detection dataset has, so loaders can skip, count and name them.

Loaders report each bad record to a :class:`ProblemLog`: by default it is logged as a warning that
names the file (and annotation id or XML element) and then skipped; with ``strict=True`` the first
problem raises :class:`~resdet.errors.UserError`. Boxes that cross the image border are clipped and
kept (see :mod:`resdet.data.annotations`); they are counted apart (:meth:`ProblemLog.clip`), not
as problems. ``datasets/check.py`` reads the whole log.
"""

from __future__ import annotations

import logging
from typing import List

from resdet.errors import UserError

logger = logging.getLogger("resdet.data")


class ProblemLog:
    """Problems found while loading one dataset.

    Args:
        source: what is being loaded (a file or folder), used in the summary line.
        strict: raise :class:`UserError` at the first problem instead of skipping it.
        max_warnings: how many problems are logged one by one; the rest only count.

    Attributes:
        problems: one sentence per skipped record or annotation.
        clipped: one sentence per box that crossed the image border and was clipped to it.
        notes: things worth knowing that are not errors (e.g. images without boxes).
    """

    def __init__(self, source: str, *, strict: bool = False, max_warnings: int = 20):
        self.source = source
        self.strict = strict
        self.max_warnings = max_warnings
        self.problems: List[str] = []
        self.clipped: List[str] = []
        self.notes: List[str] = []

    def add(self, message: str) -> None:
        """Record one problem; ``message`` is a sentence naming the file and what is wrong."""
        if self.strict:
            raise UserError(message + "; fix or remove it (datasets/check.py lists every "
                            "problem), or set DATALOADER.SKIP_BAD_SAMPLES True to skip such "
                            "records with a warning")
        self.problems.append(message)
        if len(self.problems) <= self.max_warnings:
            logger.warning("%s; skipped.", message)

    def clip(self, message: str) -> None:
        """Record a box that was clipped to the image border (kept; not a problem)."""
        self.clipped.append(message)

    def note(self, message: str) -> None:
        """Record something worth knowing that is not an error (e.g. an image without boxes)."""
        self.notes.append(message)

    def summarize(self) -> None:
        """Log one line with the count of skipped records and one with clipped boxes, if any."""
        n = len(self.problems)
        if n:
            more = f" ({n - self.max_warnings} not shown)" if n > self.max_warnings else ""
            logger.warning("%s: %d problem(s) skipped%s; run datasets/check.py for the full list.",
                           self.source, n, more)
        if self.clipped:
            logger.info("%s: %d box(es) crossing the image border were clipped to it and kept.",
                        self.source, len(self.clipped))
