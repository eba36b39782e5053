"""Samplers for iteration-based training: an endless, seeded, resumable stream of indices.

The global stream is the concatenation of seeded permutations (epoch e uses ``seed + e``); rank r
of W takes positions r, r+W, r+2W, ... of it. Hence W processes with batch B/W see, batch for batch,
the same samples as one process with batch B, and a resumed run starts at the exact position where
the checkpoint left off (``start`` counts samples of the global stream already consumed).
"""

from __future__ import annotations

import itertools
from typing import Iterator, Optional

import torch
from torch.utils.data import Sampler

from resdet.engine import comm


class InfiniteSampler(Sampler[int]):
    """Endless sampler over ``range(size)``, deterministic given ``seed``, resumable at ``start``.

    Args:
        size: number of samples in the dataset.
        shuffle: draw a fresh seeded permutation per epoch (else sequential order).
        seed: the permutation seed; the same on every rank.
        start: position in the global stream to start from (samples already used, all ranks).
        rank, world_size: this process's share; default from :mod:`resdet.engine.comm`.
        with_positions: yield ``(index, position)`` pairs; the position in the global stream lets
            a dataset seed each sample's augmentation, so augmentation does not depend on the
            number of workers or processes and is reproduced exactly after ``--resume``.
    """

    def __init__(self, size: int, shuffle: bool = True, seed: int = 0, start: int = 0,
                 rank: Optional[int] = None, world_size: Optional[int] = None,
                 with_positions: bool = False):
        self._with_positions = with_positions
        if size <= 0:
            raise ValueError("InfiniteSampler needs a non-empty dataset")
        self._size = size
        self._shuffle = shuffle
        self._seed = int(seed)
        self._start = int(start)
        self._rank = comm.get_rank() if rank is None else rank
        self._world = comm.get_world_size() if world_size is None else world_size

    def _global_stream(self) -> Iterator[int]:
        epoch, offset = divmod(self._start, self._size)
        for e in itertools.count(epoch):
            if self._shuffle:
                g = torch.Generator()
                g.manual_seed(self._seed + e)
                order = torch.randperm(self._size, generator=g).tolist()
            else:
                order = list(range(self._size))
            base = e * self._size
            for i in range(offset, self._size):
                yield (order[i], base + i) if self._with_positions else order[i]
            offset = 0

    def __iter__(self) -> Iterator[int]:
        # Positions start, start+1, ... in the global stream; keep those that belong to this rank
        # so that the union over ranks of one step is one global batch.
        first = (self._rank - self._start) % self._world
        return itertools.islice(self._global_stream(), first, None, self._world)


class InferenceSampler(Sampler[int]):
    """Each rank gets a contiguous shard of ``range(size)``; together they cover it exactly once."""

    def __init__(self, size: int, rank: Optional[int] = None, world_size: Optional[int] = None):
        rank = comm.get_rank() if rank is None else rank
        world = comm.get_world_size() if world_size is None else world_size
        shard = (size - 1) // world + 1 if size else 0
        self._indices = range(min(rank * shard, size), min((rank + 1) * shard, size))

    def __iter__(self) -> Iterator[int]:
        return iter(self._indices)

    def __len__(self) -> int:
        return len(self._indices)
