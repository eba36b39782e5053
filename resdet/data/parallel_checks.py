"""Open every image of a dataset in parallel processes, with a progress bar and ETA.

``datasets/check.py`` on ImageNet train (1.28M images) or COCO train (118k) spends nearly all its
time decoding images; one process per core makes that scale with the machine (decoding in
threads does not: reading headers, checking sizes and formatting messages hold the GIL). Results
come back in the records' order, so the problem list reads the same at any worker count. Each
image gets the same check as training's mappers apply
(:func:`resdet.data.image_checks.check_record_image`).
"""

from __future__ import annotations

import multiprocessing
import os
from typing import Iterable, Iterator, List, Sequence, Tuple

CHUNK = 64  # images per task sent to a worker
_FIELDS = ("file_name", "height", "width")  # what the image check reads of a record


def _check_chunk(args: Tuple[Sequence[dict], bool]) -> List[str]:
    from resdet.data.image_checks import check_record_image

    records, decode = args
    return [check_record_image(r, decode=decode) for r in records]


def _init_worker() -> None:
    try:  # one decoding thread per process: the processes are the parallelism
        import cv2

        cv2.setNumThreads(1)
    except ImportError:  # pragma: no cover - opencv is a dependency
        pass


def _chunks(items: Sequence[dict], decode: bool) -> Iterator[Tuple[Sequence[dict], bool]]:
    for i in range(0, len(items), CHUNK):
        yield items[i:i + CHUNK], decode


def image_problems(records: Iterable[dict], *, decode: bool = True, workers: int = 0,
                   progress: bool = True, desc: str = "checking images") -> Iterator[str]:
    """:func:`resdet.data.image_checks.check_record_image` of every record with a
    ``file_name``, in the records' order.

    Args:
        records: dataset dicts (``file_name``; ``height``/``width`` when annotated).
        decode: decode the pixels (else headers only).
        workers: processes (0: one per CPU); 1 checks in this process.
        progress: show a tqdm progress bar with rate and ETA (on a terminal only).
        desc: the progress bar's label.

    Yields:
        One string per image: a problem sentence, or ``""``.
    """
    from tqdm import tqdm

    # Only the fields the check reads travel to the workers (not the annotations).
    items = [{k: d[k] for k in _FIELDS if k in d} for d in records if "file_name" in d]
    workers = workers or os.cpu_count() or 1
    bar = tqdm(total=len(items), desc=desc, unit="img", disable=None if progress else True,
               mininterval=1.0, smoothing=0.05)
    try:
        if workers == 1 or len(items) <= CHUNK:
            for chunk in _chunks(items, decode):
                yield from _check_chunk(chunk)
                bar.update(len(chunk[0]))
            return
        # spawn, not fork: a process that has started threads (torch's, a training run's loader)
        # can deadlock in a forked child that inherits a held lock (seen in the test suite).
        ctx = multiprocessing.get_context("spawn")
        with ctx.Pool(min(workers, -(-len(items) // CHUNK)), initializer=_init_worker) as pool:
            for results in pool.imap(_check_chunk, _chunks(items, decode)):
                yield from results
                bar.update(len(results))
    finally:
        bar.close()
