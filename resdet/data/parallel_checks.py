"""Open every image of a dataset in parallel processes, with a progress bar and ETA.

``datasets/check.py`` on ImageNet train (1.28M images) or COCO train (118k) spends nearly all its
time decoding images; one process per core makes that scale with the machine (decoding in
threads does not: reading headers, checking sizes and formatting messages hold the GIL). Results
come back in the records' order, so the problem list reads the same at any worker count.
"""

from __future__ import annotations

import multiprocessing
import os
from typing import Iterable, Iterator, List, Optional, Sequence, Tuple

from resdet.errors import UserError

Item = Tuple[str, Optional[int], Optional[int]]  # file_name, annotated height, width
CHUNK = 64  # images per task sent to a worker


def image_problem(file_name: str, height: Optional[int], width: Optional[int],
                  decode: bool = True) -> str:
    """Why an image file is unusable, or ``""``.

    Args:
        file_name: the image.
        height, width: the size its annotation gives (None: not checked).
        decode: decode the pixels (finds truncated files); else read the header only.

    Returns:
        A sentence naming the file (missing, unreadable, truncated, or another size than
        annotated), or ``""`` when it is fine.
    """
    from resdet.data.image_io import image_size, read_image

    try:
        if decode:
            h, w = read_image(file_name).shape[:2]
        else:
            h, w = image_size(file_name)
    except UserError as e:
        return str(e).split(";")[0]
    if height is not None and (h, w) != (height, width):
        return f"Image {file_name} is {w}x{h} but its annotation says {width}x{height}"
    return ""


def _check_chunk(args: Tuple[Sequence[Item], bool]) -> List[str]:
    items, decode = args
    return [image_problem(f, h, w, decode) for f, h, w in items]


def _init_worker() -> None:
    try:  # one decoding thread per process: the processes are the parallelism
        import cv2

        cv2.setNumThreads(1)
    except ImportError:  # pragma: no cover - opencv is a dependency
        pass


def _chunks(items: Sequence[Item], decode: bool) -> Iterator[Tuple[Sequence[Item], bool]]:
    for i in range(0, len(items), CHUNK):
        yield items[i:i + CHUNK], decode


def image_problems(records: Iterable[dict], *, decode: bool = True, workers: int = 0,
                   progress: bool = True, desc: str = "checking images") -> Iterator[str]:
    """:func:`image_problem` of every record with a ``file_name``, in the records' order.

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

    items: List[Item] = [(d["file_name"], d.get("height"), d.get("width")) for d in records
                         if "file_name" in d]
    workers = workers or os.cpu_count() or 1
    bar = tqdm(total=len(items), desc=desc, unit="img", disable=None if progress else True,
               mininterval=1.0, smoothing=0.05)
    try:
        if workers == 1 or len(items) <= CHUNK:
            for chunk in _chunks(items, decode):
                yield from _check_chunk(chunk)
                bar.update(len(chunk[0]))
            return
        ctx = multiprocessing.get_context("fork" if os.name == "posix" else "spawn")
        with ctx.Pool(min(workers, -(-len(items) // CHUNK)), initializer=_init_worker) as pool:
            for results in pool.imap(_check_chunk, _chunks(items, decode)):
                yield from results
                bar.update(len(results))
    finally:
        bar.close()
