"""Preallocated single-producer / single-consumer ring buffers with batch drain.

Two kinds, one per message representation (see ``engine.messages``):

* ``ArrayRing`` holds a numpy structured array. Producers write whole batches (``write``) or
  fill slots in place (``claim`` + ``commit``, for decoders that parse straight into the ring);
  the consumer takes a contiguous view (``read``) and hands it to a kernel. Market-data rings
  use it, and their overflow policy is explicit: ``DROP_NEWEST`` or ``DROP_OLDEST`` count what
  they lose; ``CONFLATE`` first compacts the ring keeping only the newest message per key
  (the latest size at a price level, the latest quote per instrument), which loses no
  information a book needs, and counts what it folded.
* ``ObjectRing`` holds pooled ``__slots__`` objects. The producer ``claim``s a slot and fills
  it; the consumer ``drain``s with a per-message handler. Order rings use it, and they never
  drop: a claim on a full ring spills into an overflow queue (allocated, since this is the error
  path), tells its owner once through ``on_full`` (the engine halts trading), and the spilled
  messages re-enter the ring, in order, as the consumer frees slots.

Capacities are powers of two so that a sequence number maps to a slot with one mask; sequence
numbers (``head``, ``tail``) only grow. Single-threaded by design: the producer and consumer run
on the same event loop, so there are no atomics, and a consumer never holds a view across a
producer's turn.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable, Sequence
from enum import Enum
from typing import Generic, TypeVar

import numpy as np

from hotpath.layouts import resident_zeros
from hotpath.rows import COPIERS

log = logging.getLogger(__name__)

T = TypeVar("T")


class OverflowPolicy(Enum):
    DROP_NEWEST = "drop_newest"
    DROP_OLDEST = "drop_oldest"
    CONFLATE = "conflate"


def _check_capacity(name: str, capacity: int) -> int:
    if capacity < 2 or capacity & (capacity - 1):
        raise ValueError(f"ring {name!r}: capacity must be a power of two >= 2, got {capacity}")
    return capacity


class ArrayRing:
    """A ring of numpy structured rows for batch producers and kernel consumers."""

    def __init__(
        self,
        name: str,
        dtype: np.dtype,
        capacity: int,
        policy: OverflowPolicy = OverflowPolicy.DROP_NEWEST,
        conflate_key: Sequence[str] = (),
    ) -> None:
        self.name = name
        self.capacity = _check_capacity(name, capacity)
        self.policy = policy
        if policy is OverflowPolicy.CONFLATE and not conflate_key:
            raise ValueError(f"ring {name!r}: CONFLATE needs the key fields that identify a value")
        self.conflate_key = tuple(conflate_key)
        self.buffer = resident_zeros(capacity, dtype)  # no page faults on the first lap
        # numpy copies structured rows field by field (~65 ns a row); the same rows viewed as
        # opaque void records copy at memcpy speed (~5 ns), so batches go through this view.
        self._void = np.dtype((np.void, self.buffer.dtype.itemsize))
        self._rows = self.buffer.view(self._void)
        self._dtype = self.buffer.dtype
        # The market-data layouts have a row-copy kernel (``hotpath.rows``): ~5x cheaper than
        # the void view for a socket read's batch. A batch of exactly this dtype object takes it.
        self._copy = COPIERS.get(self._dtype)
        self._mask = capacity - 1
        self.head = 0
        self.tail = 0
        self.dropped = 0
        self.conflated = 0

    def __len__(self) -> int:
        return self.tail - self.head

    @property
    def free(self) -> int:
        return self.capacity - (self.tail - self.head)

    def write(self, batch: np.ndarray, ts_recv: int = 0) -> int:
        """Copy ``batch`` in, applying the overflow policy; returns how many rows were accepted.

        With ``ts_recv`` (not 0) the rows are stamped with it in the ring as they are copied (a
        socket read's arrival time); ``batch`` itself is left as it was."""
        dtype = batch.dtype
        if dtype is not self._dtype and dtype != self._dtype:
            raise TypeError(f"ring {self.name!r} holds {self._dtype}, cannot write {dtype}")
        n = len(batch)
        if n > self.capacity - (self.tail - self.head):
            batch = self._make_room(batch)
            n = len(batch)
        copy = self._copy
        if copy is not None and dtype is self._dtype and batch.ndim == 1:
            copy(batch, self.buffer, self.tail, self._mask, ts_recv)  # one call, stamp included
            self.tail += n
            return n
        # Same item size, so the void view needs no copy even of a strided batch.
        rows = batch.view(self._void)
        start = self.tail & self._mask
        first = self.capacity - start
        if n <= first:
            self._rows[start : start + n] = rows
            if ts_recv:
                self.buffer["ts_recv"][start : start + n] = ts_recv
        else:  # the batch wraps round the end of the buffer
            self._rows[start:] = rows[:first]
            self._rows[: n - first] = rows[first:]
            if ts_recv:
                self.buffer["ts_recv"][start:] = ts_recv
                self.buffer["ts_recv"][: n - first] = ts_recv
        self.tail += n
        return n

    def claim(self, n: int) -> np.ndarray:
        """A writable contiguous view of up to ``n`` free slots (fewer at the wrap point)."""
        start = self.tail & self._mask
        k = min(n, self.capacity - (self.tail - self.head), self.capacity - start)
        return self.buffer[start : start + k]

    def commit(self, n: int) -> None:
        """Publish ``n`` rows filled through ``claim``."""
        self.tail += n

    def read(self, max_n: int) -> np.ndarray:
        """Take up to ``max_n`` rows as a contiguous view (fewer at the wrap point).

        The slots are released at once: process the view before the producer runs again.
        """
        start = self.head & self._mask
        k = min(max_n, self.tail - self.head, self.capacity - start)
        self.head += k
        return self.buffer[start : start + k]

    def read_span(self, max_n: int) -> tuple[int, int]:
        """``read`` as buffer indices: rows ``buffer[start:stop]``, for a kernel that takes the
        buffer itself (no view is made). Released at once, as by ``read``."""
        h = self.head
        start = h & self._mask
        k = min(max_n, self.tail - h, self.capacity - start)
        self.head = h + k
        return start, start + k

    def _make_room(self, batch: np.ndarray) -> np.ndarray:
        if self.policy is OverflowPolicy.CONFLATE:
            self._conflate()
        free = self.capacity - (self.tail - self.head)
        n = len(batch)
        if n <= free:
            return batch
        if self.policy is OverflowPolicy.DROP_NEWEST:
            self.dropped += n - free
            return batch[:free]
        # DROP_OLDEST (and CONFLATE when folding was not enough): the newest data wins.
        if n >= self.capacity:
            self.dropped += len(self) + n - self.capacity
            self.head = self.tail
            return batch[n - self.capacity :]
        lose = n - free
        self.dropped += lose
        self.head += lose
        return batch

    def _conflate(self) -> None:
        """Keep only the newest pending row per key, in arrival order."""
        pending = self._pending_copy()
        if not len(pending):
            return
        keys = np.rec.fromarrays([pending[k] for k in self.conflate_key])
        # np.unique on the reversed rows finds each key's last occurrence.
        _, last_from_end = np.unique(keys[::-1], return_index=True)
        keep = np.sort(len(pending) - 1 - last_from_end)
        self.conflated += len(pending) - len(keep)
        kept = pending[keep]
        # Sequence numbers only grow: the kept rows end where the ring ended.
        self.head = self.tail - len(kept)
        self.buffer[(np.arange(self.head, self.tail)) & self._mask] = kept

    def _pending_copy(self) -> np.ndarray:
        start = self.head & self._mask
        n = self.tail - self.head
        idx = (np.arange(n) + start) & self._mask
        return self.buffer[idx]


class ObjectRing(Generic[T]):
    """A ring of pooled objects that never drops: overflow spills and reports once."""

    __slots__ = (
        "_factory",
        "_mask",
        "_slots",
        "_spill",
        "capacity",
        "errors",
        "head",
        "name",
        "on_full",
        "overflowed",
        "spilled",
        "tail",
    )

    def __init__(
        self,
        name: str,
        factory: Callable[[], T],
        capacity: int,
        on_full: Callable[[ObjectRing[T]], None] | None = None,
    ) -> None:
        self.name = name
        self.capacity = _check_capacity(name, capacity)
        self._factory = factory
        self._slots: list[T] = [factory() for _ in range(capacity)]
        self._mask = capacity - 1
        self._spill: deque[T] = deque()
        self.on_full = on_full
        self.head = 0
        self.tail = 0
        self.spilled = 0
        self.errors = 0
        self.overflowed = False

    def __len__(self) -> int:
        return self.tail - self.head + len(self._spill)

    def claim(self) -> T:
        """The next slot to fill; it is published at once (the consumer runs only in the pump).

        Invariant: the spill queue is non-empty only while the ring is full, so one comparison
        keeps arrival order.
        """
        t = self.tail
        if t - self.head == self.capacity:
            return self._overflow()
        self.tail = t + 1
        return self._slots[t & self._mask]

    def last(self) -> T | None:
        """The message claimed last, handled or not (its slot keeps it until claimed again);
        None before the first claim."""
        if self._spill:
            return self._spill[-1]
        t = self.tail
        return self._slots[(t - 1) & self._mask] if t else None

    def drain(self, handler: Callable[[T], object], max_n: int) -> int:
        """Call ``handler`` on up to ``max_n`` messages in order; returns how many were handled.

        A handler that raises is logged with the ring's name and the message is counted in
        ``errors``; the rest of the batch is still delivered.
        """
        h = self.head
        end = min(self.tail, h + max_n)
        if end == h:
            return 0
        if end - h == 1:
            # One message, the order path's usual case (an action is flushed at once): no batch.
            try:
                handler(self._slots[h & self._mask])
            except Exception:
                self._failed(handler)
        else:
            start = h & self._mask
            stop = start + (end - h)
            # Iterating a list slice is cheaper than indexing with a mask per message.
            if stop <= self.capacity:
                batch = self._slots[start:stop]
            else:
                batch = self._slots[start:] + self._slots[: stop - self.capacity]
            for msg in batch:
                try:
                    handler(msg)
                except Exception:
                    self._failed(handler)
        self.head = end
        if self._spill:
            self._refill()
        return end - h

    def _failed(self, handler: Callable[[T], object]) -> None:
        self.errors += 1
        log.exception("ring %r: handler %r failed on a message", self.name, handler)

    def _overflow(self) -> T:
        obj = self._factory()
        self._spill.append(obj)
        self.spilled += 1
        if not self.overflowed:
            self.overflowed = True
            if self.on_full is not None:
                self.on_full(self)
        return obj

    def _refill(self) -> None:
        spill = self._spill
        slots = self._slots
        while spill and self.tail - self.head < self.capacity:
            # The spilled object takes the freed slot's place; the pooled one it displaces is
            # garbage, which is acceptable on this error path.
            slots[self.tail & self._mask] = spill.popleft()
            self.tail += 1
        if not spill:
            self.overflowed = False
