"""An image file checked against its record: the one place that decides which pixels a record's
boxes belong to (both engines' mappers and ``datasets/check.py`` call it).

A record says its image's ``height`` and ``width``. The decoded image must have that size, with
one allowance: a JPEG whose EXIF orientation turns it by 90 degrees may carry labels in either
frame. Decoding applies the orientation (as Detectron2 and OpenCV do); when the record's size is
that of the unrotated frame instead, its boxes were drawn on the stored pixels, so those are used
(said once per file in the log). Any other difference is an error naming both sizes.
"""

from __future__ import annotations

import logging
import threading
from typing import Optional, Set

import numpy as np

from resdet.data.image_io import exif_orientation, image_size, read_image
from resdet.errors import UserError

logger = logging.getLogger("resdet.data")

_FIX = ("fix the annotation's width/height or the file, or remove it from the dataset "
        "(datasets/check.py lists all)")
_TURNED = (5, 6, 7, 8)  # EXIF orientations that swap width and height

_told: Set[str] = set()
_told_lock = threading.Lock()


def _tell_unrotated_once(path: str, orientation: int) -> None:
    with _told_lock:
        if path in _told:
            return
        _told.add(path)
    logger.warning("Image %s: its record gives the size before the EXIF rotation (orientation "
                   "%d), so its boxes are taken as drawn on the stored, unrotated pixels.",
                   path, orientation)


def size_mismatch(path: str, height: int, width: int, record: dict) -> UserError:
    """The error for an image whose decoded size is not the record's."""
    return UserError(f"Image {path} is {width}x{height} but its annotation says "
                     f"{record['width']}x{record['height']}; {_FIX}.")


def _expected(record: dict) -> Optional[tuple]:
    if "height" in record and "width" in record:
        return int(record["height"]), int(record["width"])
    return None


def read_record_image(record: dict, image_format: str = "BGR") -> np.ndarray:
    """Decode ``record["file_name"]`` in the frame of the record's boxes.

    Args:
        record: a Detectron2-style dataset dict (``file_name``; ``height``/``width`` if known).
        image_format: ``"BGR"`` or ``"RGB"``.

    Returns:
        ``H x W x 3`` uint8 image, ``(H, W)`` equal to the record's size when it has one.

    Raises:
        UserError: the file is missing, empty, not an image, truncated, or its size matches the
            record in neither EXIF frame; the message names the file.
    """
    path = record["file_name"]
    img = read_image(path, format=image_format)
    want = _expected(record)
    if want is None or img.shape[:2] == want:
        return img
    h, w = img.shape[:2]
    orientation = exif_orientation(path)
    if orientation in _TURNED and (w, h) == want:
        _tell_unrotated_once(path, orientation)
        return read_image(path, format=image_format, apply_exif=False)
    raise size_mismatch(path, h, w, record)


def check_record_image(record: dict, decode: bool = True) -> str:
    """What is wrong with a record's image (the reason it would be skipped), or ``""``.

    Args:
        record: a dataset dict with ``file_name`` (``height``/``width`` checked if present).
        decode: decode the pixels (finds truncated files); ``False`` reads only the header.
    """
    try:
        if decode:
            read_record_image(record)
            return ""
        h, w = image_size(record["file_name"])
        want = _expected(record)
        if want is None or (h, w) == want:
            return ""
        if (w, h) == want and exif_orientation(record["file_name"]) in _TURNED:
            return ""
        raise size_mismatch(record["file_name"], h, w, record)
    except UserError as e:
        return str(e).split(";")[0]
