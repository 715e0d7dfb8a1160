"""Market data for tests that drive a real engine by hand: price levels into its ring."""

from __future__ import annotations

import numpy as np

from engine.messages import BOOK_DELTA, DeltaAction
from engine.runtime import Engine


def set_levels(engine: Engine, instrument_id: int, ts: int, levels: tuple) -> None:
    """Price-level SET deltas ``(side, ticks, lots)`` of one instrument, written into the
    engine's market-data ring as one batch stamped ``ts`` (event and receipt), then a pump."""
    d = np.zeros(len(levels), dtype=BOOK_DELTA)
    d["instrument_id"] = instrument_id
    d["action"] = DeltaAction.SET
    d["side"] = [lv[0] for lv in levels]
    d["price"] = [lv[1] for lv in levels]
    d["size"] = [lv[2] for lv in levels]
    d["ts_event"] = d["ts_recv"] = ts
    engine.deltas.write(d)
    engine.pump()
