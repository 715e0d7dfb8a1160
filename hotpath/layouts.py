"""Fixed layouts of the market-data messages the kernels read (numpy structured dtypes).

Packed in descending field size so every field is naturally aligned (Numba reads aligned fields
without copies) and padding is explicit. ``engine.messages`` re-exports them and documents why
market data is numpy rows while order flow is pooled objects.
"""

from __future__ import annotations

import numpy as np

NO_PRICE = np.iinfo(np.int64).min
"""Tick value meaning "no price" (a market order, an empty side of the book)."""

PAGE = 4096


def resident_zeros(shape, dtype) -> np.ndarray:
    """``np.zeros(shape, dtype)`` with every page already mapped.

    A large ``np.zeros`` is lazily zero-filled memory: the first write to each 4 KiB page traps
    into the kernel to map it (a page fault, 1 to 30 µs on a shared VM), so a preallocated ring
    or latency buffer would pay those faults on the hot path, once per page, the first time
    round. Writing one byte per page here takes them at start-up instead.
    """
    a = np.zeros(shape, dtype)
    if a.nbytes > PAGE:
        a.reshape(-1).view(np.uint8)[::PAGE] = 0
    return a


BOOK_DELTA = np.dtype(
    [
        ("price", "i8"),  # ticks
        ("size", "i8"),  # lots; 0 deletes the level in the SET form
        ("ts_event", "i8"),  # venue time
        ("ts_recv", "i8"),  # reached the engine (before parsing)
        ("ts_book", "i8"),  # applied to the book (stamped by the book kernel)
        ("instrument_id", "i4"),
        ("side", "i1"),  # BookSide
        ("action", "i1"),  # DeltaAction
        ("position", "i2"),  # row for IB position-based depth, else 0
        ("mm_id", "i4"),  # market maker id for IB L2 depth, else 0
        ("flags", "i4"),  # bit 0: last delta of a venue batch (IB: isSmartDepth in bit 1)
    ],
    align=True,
)

QUOTE = np.dtype(
    [
        ("bid_price", "i8"),
        ("ask_price", "i8"),
        ("bid_size", "i8"),
        ("ask_size", "i8"),
        ("ts_event", "i8"),
        ("ts_recv", "i8"),
        ("ts_book", "i8"),
        ("instrument_id", "i4"),
        ("flags", "i4"),
    ],
    align=True,
)

TRADE = np.dtype(
    [
        ("price", "i8"),
        ("size", "i8"),
        ("trade_id", "i8"),
        ("ts_event", "i8"),
        ("ts_recv", "i8"),
        ("ts_book", "i8"),
        ("instrument_id", "i4"),
        ("aggressor", "i1"),  # Side of the taker, 0 if unknown
        ("_pad", "u1", (3,)),  # bytes, not V3: Numba types a nested uint8 array, not a void
    ],
    align=True,
)
