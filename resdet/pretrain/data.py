"""Classification loaders for pretraining: the paper's augmentation, per-pixel mean, test views.

Training samples are seeded by their position in the global sample stream (see
:class:`resdet.engine.InfiniteSampler`), so augmentation is identical whatever the number of
workers or processes, and after ``--resume``.
"""

from __future__ import annotations

import logging
import signal
from typing import Any, Dict, List, Sequence, Tuple

import numpy as np
import torch
from torch.utils.data import BatchSampler, DataLoader, Dataset

from resdet.data import cls_transforms as T
from resdet.data.catalog import get_dataset_dicts
from resdet.data.classification import held_out_split
from resdet.data.records import compact_records
from resdet.engine import comm
from resdet.engine.sampler import InferenceSampler, InfiniteSampler
from resdet.errors import UserError

logger = logging.getLogger("resdet.pretrain")


class Normalizer:
    """Subtract a mean (per-pixel image ``3 x H x W`` or per-channel ``3 x 1 x 1``), divide by std.

    Paper Sec. 3.4/4.2: "the per-pixel mean subtracted". A mean image is resized (bilinear) when a
    test view has another size (multi-scale testing).
    """

    def __init__(self, mean: torch.Tensor, std: torch.Tensor):
        self.mean = mean.float()
        self.std = std.float().view(3, 1, 1)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """[..., 3, H, W] image(s) -> float, mean subtracted and divided by std."""
        mean = self.mean.to(x.device)
        if mean.shape[-2:] != (1, 1) and mean.shape[-2:] != x.shape[-2:]:
            mean = torch.nn.functional.interpolate(mean[None], size=x.shape[-2:],
                                                   mode="bilinear", align_corners=False)[0]
        return (x.float() - mean) / self.std.to(x.device)

    def numpy_hwc(self, img: np.ndarray) -> np.ndarray:
        """Normalise an ``H x W x 3`` float array (training path, in loader workers)."""
        mean = self.mean
        if mean.shape[-2:] != (1, 1) and tuple(mean.shape[-2:]) != img.shape[:2]:
            mean = torch.nn.functional.interpolate(mean[None], size=img.shape[:2],
                                                   mode="bilinear", align_corners=False)[0]
        m = mean.permute(1, 2, 0).numpy()
        s = self.std.permute(1, 2, 0).numpy()
        return (img.astype(np.float32) - m) / s

    def state_dict(self) -> Dict[str, torch.Tensor]:
        """Tensors to store in checkpoints."""
        return {"mean": self.mean, "std": self.std.view(3)}

    @classmethod
    def from_state(cls, state: Dict[str, torch.Tensor]) -> "Normalizer":
        """Inverse of :meth:`state_dict`."""
        return cls(state["mean"], state["std"])

    def channel_mean(self) -> List[float]:
        """Per-channel RGB mean (for detection configs' MODEL.PIXEL_MEAN, reversed for BGR)."""
        return [float(v) for v in self.mean.mean(dim=(1, 2))]


def _read(rec: dict) -> np.ndarray:
    if "image" in rec:
        return rec["image"]
    from resdet.data.image_io import read_image

    return read_image(rec["file_name"], format="RGB")


class _BadSampleMixin:
    skip_bad: bool = True
    records: Sequence[dict]

    def _read_or_substitute(self, index: int) -> Tuple[np.ndarray, int, int]:
        """Image and label of ``index``; an unreadable image is replaced by the next readable one
        (deterministically) with a warning naming it, unless skipping is off."""
        n_bad = 0
        for k in range(min(len(self.records), 100)):
            rec = self.records[(index + k) % len(self.records)]
            try:
                return _read(rec), rec["label"], n_bad
            except UserError as e:
                if not self.skip_bad:
                    raise UserError(f"{e} (set DATALOADER.SKIP_BAD_SAMPLES True to skip such "
                                    "images with a warning)") from None
                n_bad += 1
                logger.warning("Skipping unreadable image: %s", e)
        raise UserError(f"100 consecutive images from {self.records[index].get('file_name')} "
                        "on are unreadable; check the dataset (datasets/check.py).")


class TrainDataset(_BadSampleMixin, Dataset):
    """Training views: index ``(record_index, stream_position)`` -> dict(image, label, n_bad).

    Args:
        records: dataset dicts (``file_name`` or ``image``, and ``label``).
        normalizer: mean/std, applied before CIFAR padding (zero padding = the mean).
        augmentation: "scale" (ImageNet) or "pad_crop" (CIFAR).
        crop: output size.
        resize_range: shorter-side range for "scale".
        pad: padding for "pad_crop".
        color_std: PCA lighting std (0 disables).
        seed: base seed of the per-sample generators.
        skip_bad: skip unreadable images (True) or fail (False).

    The records are kept compactly (:func:`resdet.data.records.compact_records`), so forked
    loader workers share them instead of each copying the list.
    """

    def __init__(self, records: Sequence[dict], normalizer: Normalizer, *, augmentation: str,
                 crop: int, resize_range: Sequence[int] = (256, 480), pad: int = 4,
                 color_std: float = 0.0, seed: int = 0, skip_bad: bool = True):
        if augmentation not in ("scale", "pad_crop"):
            raise UserError(f"PRETRAIN.AUGMENTATION {augmentation!r} must be 'scale' (ImageNet) "
                            "or 'pad_crop' (CIFAR).")
        self.records = compact_records(records)
        self.normalizer = normalizer
        self.augmentation = augmentation
        self.crop = crop
        self.resize_range = tuple(resize_range)
        self.pad = pad
        self.color_std = color_std
        self.seed = seed
        self.skip_bad = skip_bad

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, key: Tuple[int, int]) -> Dict[str, Any]:
        index, position = key
        img, label, n_bad = self._read_or_substitute(index)
        rng = np.random.default_rng([self.seed & 0xFFFFFFFF, position])
        if self.augmentation == "scale":
            img = T.scale_augment_crop(img, rng, self.resize_range, self.crop)
            x = self.normalizer.numpy_hwc(T.lighting(img, rng, self.color_std))
        else:
            x = img.astype(np.float32)
            if self.color_std > 0:
                x = T.lighting(x, rng, self.color_std)
            x = T.pad_crop(self.normalizer.numpy_hwc(x), rng, self.pad, self.crop)
        return {"image": T.to_chw_tensor(x), "label": label, "n_bad": n_bad}


class EvalDataset(_BadSampleMixin, Dataset):
    """Raw (unnormalised) test views: "center" ``3xSxS``, "10crop" ``10x3xSxS``, "multiscale" the
    whole image. An unreadable image (when skipping) gives label -1, which evaluation ignores.
    Records are kept compactly, as in :class:`TrainDataset`."""

    def __init__(self, records: Sequence[dict], *, mode: str, crop: int, resize: int,
                 skip_bad: bool = True):
        if mode not in ("center", "10crop", "multiscale"):
            raise UserError(f"PRETRAIN.TEST_MODE {mode!r} must be center, 10crop or multiscale.")
        self.records = compact_records(records)
        self.mode = mode
        self.crop = crop
        self.resize = resize
        self.skip_bad = skip_bad

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, index: int) -> Dict[str, Any]:
        rec = self.records[index]
        try:
            img = _read(rec)
            label = rec["label"]
        except UserError as e:
            if not self.skip_bad:
                raise
            logger.warning("Skipping unreadable test image: %s", e)
            img, label = np.zeros((self.resize, self.resize, 3), np.uint8), -1
        if self.mode == "multiscale":
            return {"image": T.to_chw_tensor(img), "label": label}
        img = T.resize_shorter(img, self.resize)
        if self.mode == "center":
            return {"image": T.to_chw_tensor(T.center_crop(img, self.crop)), "label": label}
        return {"image": T.ten_crop_views(T.to_chw_tensor(img), self.crop), "label": label}


def _worker_init(_: int) -> None:
    # Ctrl-C goes to the whole process group; workers ignore it so the trainer can save a
    # checkpoint and stop them itself.
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def build_train_loader(dataset: TrainDataset, *, batch_per_process: int, seed: int,
                       start_iter: int, num_workers: int) -> DataLoader:
    """An endless loader resuming at ``start_iter`` (global stream position
    ``start_iter * batch_per_process * world_size``)."""
    world = comm.get_world_size()
    sampler = InfiniteSampler(len(dataset), shuffle=True, seed=seed,
                              start=start_iter * batch_per_process * world, with_positions=True)
    return DataLoader(dataset, batch_sampler=BatchSampler(sampler, batch_per_process,
                                                          drop_last=True),
                      num_workers=num_workers, pin_memory=torch.cuda.is_available(),
                      worker_init_fn=_worker_init, persistent_workers=num_workers > 0,
                      prefetch_factor=4 if num_workers > 0 else None)


def build_test_loader(dataset: EvalDataset, *, batch_size: int, num_workers: int) -> DataLoader:
    """This process's shard of the test set (every image exactly once over all processes)."""
    if dataset.mode == "multiscale":
        batch_size = 1  # images keep their own sizes
    return DataLoader(dataset, batch_size=batch_size, sampler=InferenceSampler(len(dataset)),
                      num_workers=num_workers, worker_init_fn=_worker_init,
                      pin_memory=torch.cuda.is_available())


def load_records(name: str, *, val_split: int = 0, split_seed: int = 0, part: str = "all"
                 ) -> Sequence[dict]:
    """Records of a classification dataset, optionally its train or held-out part.

    Args:
        name: dataset name (``resdet.data.list_datasets()``).
        val_split: held-out size (PRETRAIN.VAL_SPLIT); 0 uses everything.
        split_seed: permutation seed of the split.
        part: "all", "train" (without the held-out images) or "heldout".

    Returns:
        The records, stored compactly (:func:`resdet.data.records.compact_records`): a read-only
        sequence of dicts that the main process holds in a fraction of a list's memory.
    """
    records = get_dataset_dicts(name)
    if val_split > 0 and part != "all":
        train, val = held_out_split(records, val_split, seed=split_seed)
        records = train if part == "train" else val
    return compact_records(records)


def compute_normalizer(records: Sequence[dict], *, mode: str, crop: int, resize: int,
                       max_samples: int, num_workers: int = 0) -> Normalizer:
    """Mean image (``mode`` "pixel") or channel mean/std ("channel") of the training set.

    Averages up to ``max_samples`` evenly spaced training images, each resized (shorter side
    ``resize``) and centre-cropped to ``crop``, the view the network sees at test time. "pixel"
    keeps std 1 (the paper only subtracts the mean).
    """
    if mode not in ("pixel", "channel"):
        raise UserError(f"PRETRAIN.MEAN {mode!r} must be 'pixel' or 'channel'.")
    n = len(records)
    idx = np.linspace(0, n - 1, num=min(n, max(1, int(max_samples)))).round().astype(int)
    subset = [records[i] for i in sorted(set(idx.tolist()))]
    ds = EvalDataset(subset, mode="center", crop=crop, resize=resize, skip_bad=True)
    loader = DataLoader(ds, batch_size=64, num_workers=num_workers)
    total = torch.zeros(3, crop, crop, dtype=torch.float64)
    total_sq = torch.zeros(3, dtype=torch.float64)
    count = 0
    for batch in loader:
        keep = batch["label"] >= 0
        x = batch["image"][keep].double()
        total += x.sum(dim=0)
        total_sq += (x ** 2).sum(dim=(0, 2, 3))
        count += int(keep.sum())
    if count == 0:
        raise UserError("No readable training image to compute PRETRAIN.MEAN from.")
    mean_img = (total / count).float()
    if mode == "pixel":
        return Normalizer(mean_img, torch.ones(3))
    ch_mean = mean_img.mean(dim=(1, 2))
    var = total_sq / (count * crop * crop) - ch_mean.double() ** 2
    return Normalizer(ch_mean.view(3, 1, 1), var.clamp_min(1e-6).sqrt().float())
