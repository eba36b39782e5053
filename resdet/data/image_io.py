"""Read an image file into a uint8 array, with a clear error for unreadable or truncated files.

Shared by the data loaders of both detection engines and by ``datasets/check.py``.
"""

from __future__ import annotations

import io
import os

import numpy as np

from resdet.errors import UserError

_JPEG_START = b"\xff\xd8"
_JPEG_END = b"\xff\xd9"
# A complete JPEG ends with the EOI marker; a few writers append metadata after it, so the marker
# is searched in the file's tail and only a file without it is checked by full decoding in PIL.
_JPEG_TAIL = 64


_FIX = "re-download or re-extract it, or remove it from the dataset (datasets/check.py lists all)"


def _jpeg_is_truncated(data: bytes) -> bool:
    """True when JPEG bytes lack their end (OpenCV decodes such files silently, grey-filled)."""
    if _JPEG_END in data[-_JPEG_TAIL:]:
        return False
    from PIL import Image  # only for the rare file with data after its end marker

    try:
        with Image.open(io.BytesIO(data)) as im:
            im.load()
    except (OSError, SyntaxError, ValueError):
        return True
    return False


def read_image(path: str, format: str = "BGR",  # noqa: A002 (Detectron2's name)
               apply_exif: bool = True) -> np.ndarray:
    """Read an image as an ``H x W x 3`` uint8 array.

    Grey-scale and 4-channel files (alpha dropped, CMYK converted) become 3 channels; 16-bit
    files are scaled to 8 bits (the top byte); the EXIF orientation is applied (OpenCV's
    ``IMREAD_COLOR`` does so, as Detectron2's ``read_image`` does) unless ``apply_exif`` is
    False.

    Args:
        path: image file.
        format: ``"BGR"`` (OpenCV and Detectron2's default) or ``"RGB"``.
        apply_exif: rotate/flip by the file's EXIF orientation.

    Returns:
        The decoded image.

    Raises:
        UserError: the file is missing, empty, not an image, or truncated; the message names it.
    """
    if format not in ("BGR", "RGB"):
        raise UserError(f"read_image: format must be 'BGR' or 'RGB', not {format!r}.")
    import cv2

    try:
        with open(path, "rb") as f:
            data = f.read()
    except FileNotFoundError:
        raise UserError(
            f"Image {path} does not exist; check the dataset under $DETECTRON2_DATASETS "
            "(see datasets/README.md), or run datasets/check.py on it."
        ) from None
    except OSError as e:
        raise UserError(f"Image {path} cannot be read ({e.strerror}); check its permissions.") \
            from None
    if not data:
        raise UserError(f"Image {path} is empty; {_FIX}.")
    if data[:2] == _JPEG_START and _jpeg_is_truncated(data):
        raise UserError(f"Image {path} is a truncated JPEG; {_FIX}.")
    flags = cv2.IMREAD_COLOR if apply_exif else cv2.IMREAD_COLOR | cv2.IMREAD_IGNORE_ORIENTATION
    img = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), flags)
    if img is None:
        raise UserError(f"Image {path} is not a readable image (corrupt or truncated); "
                        f"{_FIX}.")
    if format == "RGB":
        img = np.ascontiguousarray(img[:, :, ::-1])
    return img


def exif_orientation(path: str) -> int:
    """The EXIF orientation tag of an image file (1, the upright default, when there is none or
    the file cannot be read)."""
    from PIL import Image

    try:
        with Image.open(path) as im:
            return int(im.getexif().get(0x0112, 1) or 1)
    except (OSError, SyntaxError, ValueError, TypeError):
        return 1


def image_size(path: str, apply_exif: bool = True) -> tuple:
    """Return ``(height, width)`` from the image header without decoding the pixels (after the
    EXIF orientation, as :func:`read_image` returns the image, unless ``apply_exif`` is False).

    Raises:
        UserError: the file is missing or not an image.
    """
    from PIL import Image

    if not os.path.isfile(path):
        raise UserError(f"Image {path} does not exist; check the dataset (see datasets/README.md).")
    try:
        with Image.open(path) as im:
            w, h = im.size
            # EXIF orientations 5-8 rotate by 90 degrees, which read_image applies.
            if apply_exif and im.getexif().get(0x0112, 1) in (5, 6, 7, 8):
                w, h = h, w
    except (OSError, SyntaxError, ValueError):
        raise UserError(f"Image {path} is not a readable image; {_FIX}.") from None
    return h, w
