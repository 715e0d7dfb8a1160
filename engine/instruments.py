"""Instrument registry: symbols at the edges, dense integer ids on the hot path.

An instrument's id is its index in the registry, so kernels index per-instrument arrays
(tick size, lot size, book windows, limits) directly with it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from enum import Enum

import numpy as np


class AssetClass(Enum):
    STOCK = "stock"
    FUTURE = "future"
    OPTION = "option"
    FX = "fx"
    CRYPTO = "crypto"


@dataclass(frozen=True, slots=True)
class Instrument:
    id: int
    symbol: str
    venue: str
    asset_class: AssetClass
    tick_size: float
    lot_size: float
    multiplier: float
    currency: str
    # Venue facts, known once the venue has qualified the instrument (IB: contract details).
    con_id: int = 0
    order_types: frozenset[str] = frozenset()
    #: Trading sessions as (start, end) UTC epoch nanoseconds, earliest first.
    sessions: tuple[tuple[int, int], ...] = ()

    @property
    def key(self) -> str:
        """``SYMBOL.VENUE``, unique across the registry."""
        return f"{self.symbol}.{self.venue}"

    def to_ticks(self, price: float) -> int:
        """The nearest tick to ``price`` (use ``on_tick_grid`` first where off-grid is an error)."""
        return round(price / self.tick_size)

    def from_ticks(self, ticks: int) -> float:
        return ticks * self.tick_size

    def on_tick_grid(self, price: float) -> bool:
        ticks = price / self.tick_size
        # The division is exact to about one part in 1e15: allow that, never a fraction of a tick.
        return math.isfinite(ticks) and abs(ticks - round(ticks)) <= 1e-9 * (1.0 + abs(ticks))

    def to_lots(self, qty: float) -> int:
        return round(qty / self.lot_size)

    def from_lots(self, lots: int) -> float:
        return lots * self.lot_size

    def whole_lots(self, qty: float) -> bool:
        lots = qty / self.lot_size
        return math.isfinite(lots) and abs(lots - round(lots)) <= 1e-9 * (1.0 + abs(lots))

    @property
    def tick_value(self) -> float:
        """Currency value of one tick on one lot."""
        return self.tick_size * self.lot_size * self.multiplier


_VENUE_FACTS = frozenset({"con_id", "order_types", "sessions"})


class InstrumentRegistry:
    """All instruments the engine trades, addressable by id or by ``SYMBOL`` / ``SYMBOL.VENUE``."""

    def __init__(self) -> None:
        self._by_id: list[Instrument] = []
        self._by_key: dict[str, Instrument] = {}
        self._by_symbol: dict[str, list[Instrument]] = {}

    def add(
        self,
        symbol: str,
        venue: str,
        asset_class: AssetClass,
        tick_size: float,
        lot_size: float = 1.0,
        multiplier: float = 1.0,
        currency: str = "USD",
    ) -> Instrument:
        key = f"{symbol}.{venue}"
        if key in self._by_key:
            raise ValueError(f"instrument {key} is registered twice")
        for name, value in (("tick_size", tick_size), ("lot_size", lot_size)):
            if not (math.isfinite(value) and value > 0):
                raise ValueError(f"instrument {key}: {name} must be a positive number, got {value}")
        inst = Instrument(
            len(self._by_id), symbol, venue, asset_class, tick_size, lot_size, multiplier, currency
        )
        self._by_id.append(inst)
        self._by_key[key] = inst
        self._by_symbol.setdefault(symbol, []).append(inst)
        return inst

    def __len__(self) -> int:
        return len(self._by_id)

    def __iter__(self):
        return iter(self._by_id)

    def __getitem__(self, instrument_id: int) -> Instrument:
        return self._by_id[instrument_id]

    def get(self, name: str) -> Instrument:
        """Look up by ``SYMBOL.VENUE`` or by a symbol that only one venue lists."""
        inst = self._by_key.get(name)
        if inst is not None:
            return inst
        found = self._by_symbol.get(name, [])
        if len(found) == 1:
            return found[0]
        if not found:
            known = ", ".join(sorted(self._by_key)) or "none"
            raise KeyError(f"unknown instrument {name!r}; registered: {known}")
        venues = ", ".join(i.key for i in found)
        raise KeyError(f"instrument {name!r} is listed on several venues ({venues}): name one")

    def resolve(self, ref: int | str | Instrument) -> Instrument:
        if isinstance(ref, Instrument):
            return ref
        if isinstance(ref, int):
            return self._by_id[ref]
        return self.get(ref)

    def update_venue_facts(self, instrument_id: int, **facts: object) -> Instrument:
        """Record what the venue says about an instrument (``con_id``, ``order_types``,
        ``sessions``); returns the updated instrument.

        Instruments are values: the registry swaps in a new one, so call this while wiring up,
        before actors keep references to the old one.
        """
        unknown = sorted(set(facts) - _VENUE_FACTS)
        if unknown:
            raise ValueError(
                f"update_venue_facts: {', '.join(unknown)} not a venue fact; "
                f"expected {', '.join(sorted(_VENUE_FACTS))}"
            )
        old = self._by_id[instrument_id]
        inst = replace(old, **facts)  # type: ignore[arg-type]
        self._by_id[instrument_id] = inst
        self._by_key[inst.key] = inst
        same = self._by_symbol[inst.symbol]
        same[same.index(old)] = inst
        return inst

    def known(self, instrument_id: int) -> bool:
        return 0 <= instrument_id < len(self._by_id)

    def column(self, field: str) -> np.ndarray:
        """One float attribute for every instrument, indexed by id (for kernels)."""
        return np.array([getattr(i, field) for i in self._by_id], dtype=np.float64)
