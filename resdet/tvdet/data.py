"""Data loading for the torchvision engine, from the catalog's Detectron2-style dataset dicts.

Training: :class:`resdet.detection.mapper.DetectionMapper` reads and checks the image, resizes
its shortest edge to a size drawn from ``INPUT.MIN_SIZE_TRAIN`` (long edge at most
``INPUT.MAX_SIZE_TRAIN``) and flips per ``INPUT.RANDOM_FLIP``, exactly as on the Detectron2
engine; batches of ``IMS_PER_BATCH / world``
images, grouped by orientation when ``DATALOADER.ASPECT_RATIO_GROUPING``. The stream is endless
and resumable (:class:`resdet.engine.InfiniteSampler`), and each sample's augmentation is seeded
by its position in it, so it does not depend on the number of workers. Unreadable images are
skipped with a warning naming them and a count (``DATALOADER.SKIP_BAD_SAMPLES``).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any, Dict, Iterator, List, Optional, Sequence

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, IterableDataset, get_worker_info

from resdet.data import get_dataset_dicts
from resdet.data.annotations import record_boxes
from resdet.data.records import compact_records
from resdet.detection.mapper import training_dicts as _training_dicts
from resdet.detection.mapper import FLIPS, DetectionMapper, MappedImage
from resdet.engine import InferenceSampler, InfiniteSampler, comm, per_process_batch
from resdet.errors import UserError

if TYPE_CHECKING:
    from fvcore.common.config import CfgNode

logger = logging.getLogger(__name__)

__all__ = ["FLIPS", "TrainMapper", "TrainStream", "build_test_loader", "build_train_loader",
           "dataset_dicts",
           "inference_on_dataset", "record_boxes", "training_dicts", "training_samples_once"]


class TrainMapper:
    """One record -> ``{"image": uint8 CHW tensor, "target": {"boxes", "labels"}, "file_name"}``
    through the engine-neutral :class:`~resdet.detection.mapper.DetectionMapper` (the same
    reading, checks, box policy, resizing and flipping as the Detectron2 engine), or None when
    the image is skipped.

    Args:
        min_sizes: shortest-edge sizes (``INPUT.MIN_SIZE_TRAIN``).
        max_size: longest-edge limit (``INPUT.MAX_SIZE_TRAIN``).
        sampling: "choice" (one of ``min_sizes``) or "range" (uniform in [min, max]).
        flip: "horizontal", "vertical" or "none".
        image_format: "BGR" or "RGB".
        skip_bad: skip unreadable images with a warning (else raise :class:`UserError`).
        seed: base seed; each sample's draws use ``seed + position in the stream``.
    """

    def __init__(self, min_sizes: Sequence[int], max_size: int, sampling: str, flip: str,
                 image_format: str, skip_bad: bool = True, seed: int = 0):
        self.mapper = DetectionMapper(min_sizes, max_size, sampling, flip, image_format,
                                      is_train=True, skip_bad=skip_bad, seed=seed)

    @property
    def skipped(self) -> int:
        """How many samples the wrapped mapper has skipped (images that cannot be used)."""
        return self.mapper.skipped

    def __call__(self, record: dict, position: int = 0) -> Optional[Dict[str, Any]]:
        """A record -> ``{image: uint8 [C, H, W], file_name, target: {boxes [N, 4], labels [N]}}``,
        or None for a skipped sample.
        """
        out = self.mapper(record, position)
        if out is None:
            return None
        image = torch.from_numpy(np.ascontiguousarray(out.image.transpose(2, 0, 1)))
        return {"image": image, "file_name": record["file_name"],
                "target": {"boxes": torch.from_numpy(out.boxes),
                           "labels": torch.from_numpy(out.classes)}}


class TrainStream(IterableDataset):
    """Endless stream of training batches (lists of mapped samples) for one process.

    Loader workers take turns over the sampler's stream; with ``group_by_aspect`` a batch holds
    only landscape or only portrait images (Detectron2's ``AspectRatioGroupedDataset``).
    """

    def __init__(self, dicts: List[dict], mapper: TrainMapper, batch_size: int, *,
                 group_by_aspect: bool, seed: int, start: int):
        self.dicts = dicts
        self.mapper = mapper
        self.batch_size = batch_size
        self.group_by_aspect = group_by_aspect
        self.seed = seed
        self.start = start
        # Read here, in the main process: loader workers must not query the process group.
        self.rank, self.world_size = comm.get_rank(), comm.get_world_size()

    def __iter__(self) -> Iterator[List[Dict[str, Any]]]:
        info = get_worker_info()
        worker, workers = (info.id, info.num_workers) if info else (0, 1)
        sampler = InfiniteSampler(len(self.dicts), shuffle=True, seed=self.seed,
                                  start=self.start, rank=self.rank,
                                  world_size=self.world_size, with_positions=True)
        buckets: Dict[int, list] = {0: [], 1: []}
        for k, (index, position) in enumerate(sampler):
            if k % workers != worker:
                continue
            sample = self.mapper(self.dicts[index], position)
            if sample is None:
                continue
            _, h, w = sample["image"].shape
            bucket = buckets[int(h > w) if self.group_by_aspect else 0]
            bucket.append(sample)
            if len(bucket) == self.batch_size:
                yield list(bucket)
                bucket.clear()


def _as_batch(samples: List[Dict[str, Any]]) -> Dict[str, list]:
    return {"images": [s["image"] for s in samples], "targets": [s["target"] for s in samples]}


def _passthrough(x):
    return x


def _one_sentence(loader: DataLoader) -> Iterator[Any]:
    """Iterate ``loader``; a worker's UserError surfaces as its own sentence, not a traceback."""
    it = iter(loader)
    while True:
        try:
            batch = next(it)
        except UserError as e:
            text = str(e).strip().splitlines()
            raise UserError(text[-1].split("UserError: ", 1)[-1] if text else "") from None
        yield batch


def dataset_dicts(name: str, *, strict: bool = False) -> List[dict]:
    """Records of ``name`` from resdet's catalog (the same call as on the Detectron2 engine)."""
    return get_dataset_dicts(name, strict=strict)


def training_dicts(cfg: CfgNode) -> List[dict]:
    """Records of all ``DATASETS.TRAIN`` (:func:`resdet.detection.mapper.training_dicts`)."""
    return _training_dicts(cfg, dataset_dicts)


def training_samples_once(cfg: CfgNode,
                          dicts: Optional[List[dict]] = None) -> Iterator[MappedImage]:
    """Each training record once, in dataset order, as this engine's training loader maps it
    (the stream's seed 0, each record's position its index); skipped images are left out. For
    ``tools/visualize_data.py``; ``dicts``: :func:`training_dicts` if not given."""
    dicts = training_dicts(cfg) if dicts is None else dicts
    inp = cfg.INPUT
    mapper = TrainMapper(inp.MIN_SIZE_TRAIN, inp.MAX_SIZE_TRAIN, inp.MIN_SIZE_TRAIN_SAMPLING,
                         inp.RANDOM_FLIP, inp.FORMAT, cfg.DATALOADER.SKIP_BAD_SAMPLES, seed=0)
    for position, record in enumerate(dicts):
        sample = mapper(record, position)
        if sample is None:
            continue
        target = sample["target"]
        yield MappedImage(record, sample["image"].numpy().transpose(1, 2, 0),
                          target["boxes"].numpy(), target["labels"].numpy())


def build_train_loader(cfg: CfgNode, start_iter: int = 0, *, seed: int = 0,
                       dicts: Optional[List[dict]] = None) -> Iterator[Dict[str, list]]:
    """Endless iterator of batches ``{"images": [uint8 CHW], "targets": [{"boxes", "labels"}]}``
    for this process, resuming after ``start_iter`` iterations."""
    dicts = training_dicts(cfg) if dicts is None else dicts
    batch = per_process_batch(cfg.SOLVER.IMS_PER_BATCH)
    inp = cfg.INPUT
    mapper = TrainMapper(inp.MIN_SIZE_TRAIN, inp.MAX_SIZE_TRAIN, inp.MIN_SIZE_TRAIN_SAMPLING,
                         inp.RANDOM_FLIP, inp.FORMAT, cfg.DATALOADER.SKIP_BAD_SAMPLES, seed)
    dicts = compact_records(dicts)  # forked workers share it instead of copying (issue 13)
    stream = TrainStream(dicts, mapper, batch, group_by_aspect=cfg.DATALOADER.ASPECT_RATIO_GROUPING,
                         seed=seed, start=start_iter * cfg.SOLVER.IMS_PER_BATCH)
    workers = int(cfg.DATALOADER.NUM_WORKERS)
    loader = DataLoader(stream, batch_size=None, num_workers=workers, collate_fn=_as_batch,
                        persistent_workers=False, prefetch_factor=2 if workers else None)
    return _one_sentence(loader)


class _TestDataset(Dataset):
    def __init__(self, dicts: List[dict], indices: Sequence[int], mapper: DetectionMapper):
        self.dicts = dicts
        self.indices = list(indices)
        self.mapper = mapper

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i: int):
        record = self.dicts[self.indices[i]]
        # The model resizes test images itself; the mapper reads and checks them.
        img = self.mapper.read(record)
        if img is None:
            return record, None
        return record, torch.from_numpy(np.ascontiguousarray(img.transpose(2, 0, 1)))


def build_test_loader(cfg: CfgNode, dataset_name: str) -> DataLoader:
    """This process's share of ``dataset_name``: items ``[(record, uint8 CHW image or None)]``
    one image at a time (Detectron2 tests one image per GPU too); the model resizes them."""
    dicts = compact_records(get_dataset_dicts(dataset_name))  # shared by forked workers
    shard = InferenceSampler(len(dicts))
    workers = int(cfg.DATALOADER.NUM_WORKERS)
    mapper = DetectionMapper((0,), 0, image_format=cfg.INPUT.FORMAT, is_train=False,
                             skip_bad=True)  # evaluation goes on without an unreadable image
    return DataLoader(_TestDataset(dicts, list(shard), mapper), batch_size=1,
                      shuffle=False, num_workers=workers, collate_fn=_passthrough)


def inference_on_dataset(model: torch.nn.Module, loader: DataLoader, evaluator: Any,
                         device: torch.device) -> Dict[str, Any]:
    """Run ``model`` (eval mode) over ``loader`` and return ``evaluator.evaluate()``."""
    evaluator.reset()
    total = 0
    with torch.no_grad():
        for items in loader:
            items = [(r, im) for r, im in items if im is not None]
            if not items:
                continue
            outputs = model([im.to(device) for _, im in items])
            outputs = [{k: v.float().cpu() if v.is_floating_point() else v.cpu()
                        for k, v in o.items()} for o in outputs]
            evaluator.process([r for r, _ in items], outputs)
            total += len(items)
    logger.info("Ran inference on %d images (rank %d).", total, comm.get_rank())
    return evaluator.evaluate()
