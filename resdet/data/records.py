"""Record lists stored compactly, so loader workers do not copy them.

A forked loader worker shares its parent's memory until it writes to a page. Reading an item of a
Python list writes to it: the reference count of every object touched changes, so over an epoch
each worker ends up with a private copy of the whole list of dicts (the copy-on-read effect,
pytorch/pytorch#13246): 130+ MiB per worker for ImageNet's 1.28M records, more for COCO's records
that carry their boxes. The classes here hold the records in a few large arrays instead, which
reading does not write to; an item is rebuilt as a fresh dict on each access, as
``detectron2.data.common``'s serialised list does.

- :class:`SerializedList`: any picklable records, pickled into one byte buffer plus offsets
  (Detectron2's scheme). Detection records (with their annotations) use it.
- :class:`ColumnRecords`: records that all have the same keys with ``str`` or ``int`` values
  (``{"file_name", "label", "image_id"}`` of class folders): one array per key, strings as one
  UTF-8 buffer plus offsets. Smaller and faster to build than pickling.

:func:`compact_records` picks one. Both are read-only sequences of dicts: ``len``, indexing
(negative too), iteration; each access returns a new dict, so a caller may modify it freely.
The arrays are torch tensors, so a loader started with the ``spawn`` method shares them through
shared memory instead of copying them.
"""

from __future__ import annotations

import logging
import pickle
from typing import Any, Dict, Iterable, Iterator, List, Sequence, Union

import numpy as np
import torch

logger = logging.getLogger(__name__)

__all__ = ["ColumnRecords", "SerializedList", "compact_records"]


def _concat(chunks: Iterable[bytes]) -> "tuple[torch.Tensor, torch.Tensor]":
    """One uint8 buffer of all ``chunks`` and the int64 end offset of each."""
    ends: List[int] = []
    buf = bytearray()
    for c in chunks:
        buf += c
        ends.append(len(buf))
    # The bytearray becomes the tensor's storage (no copy).
    data = torch.from_numpy(np.frombuffer(buf, dtype=np.uint8))
    return data, torch.tensor(ends, dtype=torch.int64)


class _Buffer:
    """Byte chunks in one buffer; ``chunk(i)`` is a memoryview of the i-th one."""

    def __init__(self, data: torch.Tensor, ends: torch.Tensor):
        self.data, self.ends = data, ends
        self._views()

    def _views(self) -> None:
        # numpy views of the tensors: indexing them is cheaper than tensor.item(), and neither
        # touches a per-item Python object.
        self._data = self.data.numpy()
        self._ends = self.ends.numpy()

    def __len__(self) -> int:
        return len(self._ends)

    def chunk(self, i: int) -> memoryview:
        start = int(self._ends[i - 1]) if i > 0 else 0
        return memoryview(self._data[start:int(self._ends[i])])

    def nbytes(self) -> int:
        return self._data.nbytes + self._ends.nbytes

    def __getstate__(self) -> Dict[str, torch.Tensor]:
        return {"data": self.data, "ends": self.ends}

    def __setstate__(self, state: Dict[str, torch.Tensor]) -> None:
        self.data, self.ends = state["data"], state["ends"]
        self._views()


class _RecordSequence(Sequence):
    def _index(self, i: int) -> int:
        n = len(self)
        if not isinstance(i, (int, np.integer)):
            raise TypeError(f"record indices must be integers, not {type(i).__name__}")
        i = int(i)
        if i < 0:
            i += n
        if not 0 <= i < n:
            raise IndexError(f"record index {i} out of range for {n} records")
        return i

    def __iter__(self) -> Iterator[dict]:
        for i in range(len(self)):
            yield self[i]

    def to_list(self) -> List[dict]:
        """The records as a plain list of dicts."""
        return list(self)


class SerializedList(_RecordSequence):
    """Records pickled into one byte buffer plus end offsets (``detectron2.data.common``'s
    serialised list).

    Args:
        records: the records (any picklable objects; dataset dicts here).
    """

    def __init__(self, records: Iterable[Any]):
        self._buf = _Buffer(*_concat(pickle.dumps(r, protocol=pickle.HIGHEST_PROTOCOL)
                                     for r in records))

    def __len__(self) -> int:
        return len(self._buf)

    def __getitem__(self, i: int) -> Any:
        return pickle.loads(self._buf.chunk(self._index(i)))

    def nbytes(self) -> int:
        """Bytes held by the buffer and the offsets."""
        return self._buf.nbytes()


class ColumnRecords(_RecordSequence):
    """Records with the same keys and ``str``/``int`` values, one array per key.

    Args:
        records: dicts that all have the keys of the first one, each value a ``str`` or an
            ``int`` (the same type for a key in every record; ``bool`` is not ``int`` here).

    Raises:
        ValueError: the records do not have that form (use :class:`SerializedList`).
    """

    def __init__(self, records: Sequence[dict]):
        keys = list(records[0]) if len(records) else []
        if set(map(len, records)) - {len(keys)}:
            raise ValueError("records have different numbers of fields")
        self._keys = keys
        self._len = len(records)
        self._ints: Dict[str, torch.Tensor] = {}
        self._strs: Dict[str, _Buffer] = {}
        for k in keys:
            try:
                column = [r[k] for r in records]
            except (KeyError, TypeError):
                raise ValueError(f"not every record has the field {k!r}") from None
            types = set(map(type, column))
            if types == {str}:
                encoded = [v.encode("utf-8", "surrogateescape") for v in column]
                ends = np.cumsum(np.fromiter(map(len, encoded), np.int64, len(encoded)))
                data = np.frombuffer(bytearray(b"".join(encoded)), dtype=np.uint8)
                self._strs[k] = _Buffer(torch.from_numpy(data), torch.from_numpy(ends))
            elif types == {int}:
                try:
                    self._ints[k] = torch.tensor(column, dtype=torch.int64)
                except (OverflowError, RuntimeError):
                    raise ValueError(f"field {k!r} has integers beyond int64") from None
            else:
                raise ValueError(f"field {k!r} holds {sorted(t.__name__ for t in types)}, not "
                                 "only str or only int")
        self._views()

    def _views(self) -> None:
        self._int_views = {k: v.numpy() for k, v in self._ints.items()}

    def __getstate__(self) -> Dict[str, Any]:
        return {"keys": self._keys, "len": self._len, "ints": self._ints, "strs": self._strs}

    def __setstate__(self, state: Dict[str, Any]) -> None:
        self._keys, self._len = state["keys"], state["len"]
        self._ints, self._strs = state["ints"], state["strs"]
        self._views()

    def __len__(self) -> int:
        return self._len

    def __getitem__(self, i: int) -> dict:
        i = self._index(i)
        out = {}
        for k in self._keys:
            if k in self._strs:
                out[k] = str(self._strs[k].chunk(i), "utf-8", "surrogateescape")
            else:
                out[k] = int(self._int_views[k][i])
        return out

    def column(self, key: str) -> np.ndarray:
        """An integer column as a read-only numpy array (e.g. all labels, without decoding)."""
        view = self._int_views[key].view()
        view.flags.writeable = False
        return view

    def nbytes(self) -> int:
        """Bytes held by all the arrays."""
        return (sum(v.nbytes for v in self._int_views.values())
                + sum(b.nbytes() for b in self._strs.values()))


CompactRecords = Union[ColumnRecords, SerializedList]


def compact_records(records: Sequence[Any]) -> Sequence[Any]:
    """``records`` in a form that forked loader workers read without copying.

    Column arrays when every record is a flat dict of ``str``/``int`` fields with the same keys
    (class folders), else one pickled byte buffer (detection records, CIFAR's in-memory images).
    Already compact records are returned as they are.

    Args:
        records: a list of dataset dicts (or anything picklable).

    Returns:
        A :class:`ColumnRecords` or :class:`SerializedList` with the same items in the same
        order.
    """
    if isinstance(records, (ColumnRecords, SerializedList)):
        return records
    if len(records) and isinstance(records[0], dict):
        try:
            out: Sequence[Any] = ColumnRecords(records)
        except ValueError:
            out = SerializedList(records)
    else:
        out = SerializedList(records)
    logger.debug("%d records stored compactly in %.1f MiB (%s)", len(out),
                 out.nbytes() / 2 ** 20, type(out).__name__)
    return out
