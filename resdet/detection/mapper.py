"""One record -> the pixels and boxes the network sees, for both engines' data loaders.

Both engines' training and test mappers call :class:`DetectionMapper`, so the same file becomes
the same pixels and boxes on either engine by construction:

1. read and check the image against its record (:func:`resdet.data.image_checks.
   read_record_image`: 8/16-bit, grey, CMYK, RGBA, EXIF orientation, truncated files, decoded
   size against the annotation's);
2. the record's non-crowd boxes (already clipped at load, :mod:`resdet.data.annotations`);
3. resize the shortest edge to a size drawn from ``INPUT.MIN_SIZE_TRAIN`` (long edge at most
   ``INPUT.MAX_SIZE_TRAIN``), as Detectron2's ``ResizeShortestEdge``, with OpenCV's bilinear
   resampling; at test time to ``INPUT.MIN_SIZE_TEST``/``MAX_SIZE_TEST``;
4. flip per ``INPUT.RANDOM_FLIP`` (probability 0.5, Detectron2's ``RandomFlip``);
5. clip the boxes to the image and drop those with no area left (Detectron2's
   ``filter_empty_instances``).

An image that cannot be used is skipped with one warning naming it and a running count
(``DATALOADER.SKIP_BAD_SAMPLES True``, the default), or stops the run with that sentence.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable, List, Optional, Sequence, Tuple

import numpy as np

from resdet.data.annotations import clip_and_filter, record_boxes
from resdet.data.image_checks import read_record_image
from resdet.errors import UserError

if TYPE_CHECKING:
    from fvcore.common.config import CfgNode

logger = logging.getLogger("resdet.detection")

FLIPS = ("horizontal", "vertical", "none")
SAMPLINGS = ("choice", "range")


def shortest_edge_size(height: int, width: int, size: int, max_size: int) -> Tuple[int, int]:
    """Output ``(h, w)`` of Detectron2's ``ResizeShortestEdge``: short side ``size``, long side at
    most ``max_size`` (0 = no limit), rounded half up."""
    scale = size / min(height, width)
    new_h, new_w = height * scale, width * scale
    if max_size and max(new_h, new_w) > max_size:
        scale = max_size / max(new_h, new_w)
        new_h, new_w = new_h * scale, new_w * scale
    return int(new_h + 0.5), int(new_w + 0.5)


@dataclass
class MappedImage:
    """What a mapper hands an engine for one record.

    Attributes:
        record: the dataset dict it came from (``file_name``, ``image_id``, ``height``,
            ``width`` of the image as stored).
        image: ``H x W x 3`` uint8, channels in ``INPUT.FORMAT`` order, resized (and flipped).
        boxes: float32 ``[N, 4]`` XYXY in ``image``'s pixels (non-crowd, clipped, with area).
        classes: int64 ``[N]`` contiguous class ids.
        flipped: "horizontal", "vertical" or "" (not flipped).
        crowd: bool ``[N]`` crowd flags where crowd boxes are kept (drawing the annotations as
            loaded); None where they are left out (what the network is fed).
    """

    record: dict
    image: np.ndarray
    boxes: np.ndarray
    classes: np.ndarray
    flipped: str = ""
    crowd: Optional[np.ndarray] = None


class DetectionMapper:
    """Read, check, resize and flip one record, as both engines' data loaders do.

    Args:
        min_sizes: shortest-edge sizes (``INPUT.MIN_SIZE_TRAIN``; test: ``(MIN_SIZE_TEST,)``,
            0 = keep the size).
        max_size: longest-edge limit (``INPUT.MAX_SIZE_TRAIN`` / ``MAX_SIZE_TEST``).
        sampling: "choice" (one of ``min_sizes``) or "range" (uniform in [min, max]).
        flip: "horizontal", "vertical" or "none".
        image_format: "BGR" or "RGB" (``INPUT.FORMAT``).
        is_train: training (boxes, augmentation) or test (image only, resized).
        skip_bad: skip unusable images with a warning (else raise :class:`UserError`).
        seed: base seed; with a ``position``, each sample's draws use ``seed + position``.

    Raises:
        UserError: a setting that is not one of the allowed values, naming its config key.
    """

    def __init__(self, min_sizes: Sequence[int], max_size: int, sampling: str = "choice",
                 flip: str = "horizontal", image_format: str = "BGR", *, is_train: bool = True,
                 skip_bad: bool = True, seed: int = 0):
        if sampling not in SAMPLINGS:
            raise UserError(f"INPUT.MIN_SIZE_TRAIN_SAMPLING = {sampling!r}: use 'choice' or "
                            "'range'.")
        if sampling == "range" and len(min_sizes) != 2:
            raise UserError("INPUT.MIN_SIZE_TRAIN needs two values (min, max) with "
                            "INPUT.MIN_SIZE_TRAIN_SAMPLING 'range'.")
        if flip not in FLIPS:
            raise UserError(f"INPUT.RANDOM_FLIP = {flip!r}: use one of {', '.join(FLIPS)}.")
        if image_format not in ("BGR", "RGB"):
            raise UserError(f"INPUT.FORMAT = {image_format!r}: use 'BGR' or 'RGB'.")
        self.min_sizes = [int(s) for s in min_sizes]
        self.max_size = int(max_size)
        self.sampling = sampling
        self.flip = flip if is_train else "none"
        self.image_format = image_format
        self.is_train = is_train
        self.skip_bad = skip_bad
        self.seed = int(seed)
        self.skipped = 0
        self._warned: set = set()

    @classmethod
    def from_config(cls, cfg: CfgNode, is_train: bool = True, seed: int = 0) -> "DetectionMapper":
        """The mapper for ``cfg``'s ``INPUT.*`` and ``DATALOADER.SKIP_BAD_SAMPLES``."""
        inp = cfg.INPUT
        skip_bad = bool(cfg.DATALOADER.SKIP_BAD_SAMPLES)
        if is_train:
            return cls(inp.MIN_SIZE_TRAIN, inp.MAX_SIZE_TRAIN, inp.MIN_SIZE_TRAIN_SAMPLING,
                       inp.RANDOM_FLIP, inp.FORMAT, is_train=True, skip_bad=skip_bad, seed=seed)
        return cls((inp.MIN_SIZE_TEST,), inp.MAX_SIZE_TEST, "choice", "none", inp.FORMAT,
                   is_train=False, skip_bad=skip_bad, seed=seed)

    def _rng(self, position: Optional[int]) -> np.random.Generator:
        if position is None:
            # Detectron2's loader seeds NumPy's global generator per worker; draw from it.
            return np.random.default_rng(np.random.randint(0, 2**31 - 1))
        return np.random.default_rng(self.seed + int(position))

    def _skip(self, record: dict, error: UserError) -> None:
        what = "training" if self.is_train else "test"
        if not self.skip_bad:
            raise UserError(str(error).rstrip(".") + "; or set DATALOADER.SKIP_BAD_SAMPLES True "
                            f"to skip such {what} images with a warning.") from None
        self.skipped += 1
        name = record.get("file_name", "?")
        if name not in self._warned:
            self._warned.add(name)
            logger.warning("Skipping a %s image (%d image(s) skipped so far in this loader; "
                           "DATALOADER.SKIP_BAD_SAMPLES): %s", what, self.skipped, error)

    def read(self, record: dict) -> Optional[np.ndarray]:
        """The record's image checked against it, or None when it is skipped."""
        try:
            return read_record_image(record, self.image_format)
        except UserError as e:
            self._skip(record, e)
            return None

    def __call__(self, record: dict, position: Optional[int] = None) -> Optional[MappedImage]:
        """Map one record; None when its image is skipped.

        Args:
            record: a dataset dict (not modified).
            position: the sample's position in the loader's stream: seeds its draws (the
                torchvision engine); None draws from NumPy's global generator (Detectron2's
                loader seeds it per worker).
        """
        import cv2

        img = self.read(record)
        if img is None:
            return None
        rng = self._rng(position)
        h, w = img.shape[:2]
        if self.sampling == "choice":
            size = self.min_sizes[int(rng.integers(len(self.min_sizes)))]
        else:
            size = int(rng.integers(self.min_sizes[0], self.min_sizes[1] + 1))
        new_h, new_w = shortest_edge_size(h, w, size, self.max_size) if size > 0 else (h, w)
        if self.is_train:
            boxes, classes = record_boxes(record)
            boxes, classes = clip_and_filter(boxes, classes, w, h)
        else:
            boxes, classes = np.zeros((0, 4), np.float32), np.zeros((0,), np.int64)
        if (new_h, new_w) != (h, w):
            img = cv2.resize(img, (new_w, new_h), interpolation=cv2.INTER_LINEAR)
            boxes = boxes * np.array([new_w / w, new_h / h] * 2, dtype=np.float32)
        flipped = ""
        if self.flip != "none" and rng.random() < 0.5:
            flipped = self.flip
            if flipped == "horizontal":
                img = img[:, ::-1]
                boxes = np.stack([new_w - boxes[:, 2], boxes[:, 1], new_w - boxes[:, 0],
                                  boxes[:, 3]], axis=1)
            else:
                img = img[::-1]
                boxes = np.stack([boxes[:, 0], new_h - boxes[:, 3], boxes[:, 2],
                                  new_h - boxes[:, 1]], axis=1)
        boxes, classes = clip_and_filter(boxes.astype(np.float32).reshape(-1, 4), classes,
                                         new_w, new_h)
        return MappedImage(record, np.ascontiguousarray(img), boxes, classes, flipped)


def training_dicts(cfg: CfgNode, dataset_dicts: Callable[..., List[dict]]) -> List[dict]:
    """Records of all ``DATASETS.TRAIN``, strict unless ``DATALOADER.SKIP_BAD_SAMPLES``, with
    images without boxes removed per ``DATALOADER.FILTER_EMPTY_ANNOTATIONS`` (both engines).

    Args:
        cfg: a detection config.
        dataset_dicts: ``(name, strict=...) -> records``: the engine's lookup (resdet's catalog;
            on Detectron2, also names registered in Detectron2's own catalog).

    Raises:
        UserError: DATASETS.TRAIN is empty, or it holds no usable image.
    """
    from resdet.data.annotations import filter_empty_annotations

    if not cfg.DATASETS.TRAIN:
        raise UserError("DATASETS.TRAIN is empty; name at least one training dataset.")
    strict = not cfg.DATALOADER.SKIP_BAD_SAMPLES
    dicts: List[dict] = []
    for name in cfg.DATASETS.TRAIN:
        dicts.extend(dataset_dicts(name, strict=strict))
    if cfg.DATALOADER.FILTER_EMPTY_ANNOTATIONS:
        dicts = filter_empty_annotations(dicts, "+".join(cfg.DATASETS.TRAIN))
    if not dicts:
        raise UserError(f"DATASETS.TRAIN {list(cfg.DATASETS.TRAIN)} has no usable images.")
    return dicts
