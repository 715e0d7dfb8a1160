"""A synthetic L2 market-data feed: a seeded random walk of book updates for several instruments.

Each instrument has a mid ``m`` in ticks; bids live at ``m-1-k`` and asks at ``m+k`` for
``k < depth``, so the book is never crossed. A step moves the mid one tick (the level it crosses
changes side: one delete, one set), pulled back towards the starting price so long runs stay
inside the book window. Other updates set a random size (sometimes 0: a delete) at a random
level; a share of updates also prints a trade at the touch. Everything is generated with numpy
a batch at a time, stamped with one ``ts_recv`` per batch as a socket read would be, and written
into the engine's rings. The same seed gives the same stream.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence

import numpy as np

from engine.config import FeedConfig
from engine.instruments import Instrument
from engine.messages import BOOK_DELTA, TRADE, BookSide, DeltaAction, Side

log = logging.getLogger(__name__)


class SyntheticFeed:
    """Generates book deltas and trades; ``run`` drives an engine at ``rate`` updates/s."""

    def __init__(
        self,
        config: FeedConfig,
        instruments: Sequence[Instrument],
        ref_prices: Sequence[float],
    ) -> None:
        if not instruments:
            raise ValueError("the synthetic feed needs at least one instrument")
        self.config = config
        self.instruments = list(instruments)
        self._ids = np.array([i.id for i in instruments], dtype=np.int32)
        self._rng = np.random.default_rng(config.seed)
        self._start = np.array(
            [i.to_ticks(p) for i, p in zip(instruments, ref_prices, strict=True)], dtype=np.int64
        )
        self.mids = self._start.copy()
        self._trade_ids = 0
        self.generated = 0

    def snapshot(self, ts: int) -> np.ndarray:
        """A full book per instrument: CLEAR, then ``depth`` levels a side."""
        depth = self.config.depth
        rows = []
        for j, iid in enumerate(self._ids.tolist()):
            m = int(self.mids[j])
            d = np.zeros(1 + 2 * depth, dtype=BOOK_DELTA)
            d["instrument_id"] = iid
            d["action"] = DeltaAction.SET
            d["action"][0] = DeltaAction.CLEAR
            k = np.arange(depth)
            d["side"][1 : 1 + depth] = BookSide.BID
            d["price"][1 : 1 + depth] = m - 1 - k
            d["side"][1 + depth :] = BookSide.ASK
            d["price"][1 + depth :] = m + k
            d["size"][1:] = self._rng.integers(1, self.config.max_size + 1, 2 * depth)
            rows.append(d)
        out = np.concatenate(rows)
        out["ts_event"] = ts
        out["ts_recv"] = ts
        return out

    def generate(self, n: int, ts: int) -> tuple[np.ndarray, np.ndarray]:
        """About ``n`` book deltas (a step adds one) and the trades printed among them, stamped
        ``ts`` (event and receive time)."""
        cfg = self.config
        rng = self._rng
        k_inst = len(self._ids)
        which = rng.integers(0, k_inst, n)
        step = rng.random(n) < cfg.step_prob
        # Mean reversion: the further from the start, the likelier a step back.
        drift = np.tanh((self.mids - self._start) / 200.0)
        up = rng.random(n) < (0.5 - 0.3 * drift[which])
        step_dir = np.where(step, np.where(up, 1, -1), 0).astype(np.int64)
        # Each update sees the mid after every step before it (on its own instrument).
        mid_after = np.empty(n, dtype=np.int64)
        for j in range(k_inst):
            mask = which == j
            cum = np.cumsum(step_dir[mask])
            mid_after[mask] = self.mids[j] + cum
            if len(cum):
                self.mids[j] += cum[-1]
        is_bid = rng.random(n) < 0.5
        level = rng.integers(0, cfg.depth, n)
        size = rng.integers(1, cfg.max_size + 1, n)
        size[rng.random(n) < 0.1] = 0
        price = np.where(is_bid, mid_after - 1 - level, mid_after + level)
        # A step up turns the old best ask (new mid - 1) into a bid: delete the ask there and
        # set a bid; a step down turns the old best bid (new mid) into an ask.
        counts = 1 + step
        out = np.zeros(int(counts.sum()), dtype=BOOK_DELTA)
        src = np.repeat(np.arange(n), counts)
        first_of_step = np.zeros(len(out), dtype=bool)
        first_of_step[np.cumsum(counts)[step] - 2] = True
        second_of_step = np.roll(first_of_step, 1)
        out["instrument_id"] = self._ids[which[src]]
        out["action"] = DeltaAction.SET
        out["side"] = np.where(is_bid[src], BookSide.BID, BookSide.ASK)
        out["price"] = price[src]
        out["size"] = size[src]
        s_dir = step_dir[src]
        s_mid = mid_after[src]
        crossed_level = np.where(s_dir > 0, s_mid - 1, s_mid)
        out["price"][first_of_step] = crossed_level[first_of_step]
        out["side"][first_of_step] = np.where(s_dir[first_of_step] > 0, BookSide.ASK, BookSide.BID)
        out["size"][first_of_step] = 0
        out["price"][second_of_step] = crossed_level[second_of_step]
        out["side"][second_of_step] = np.where(
            s_dir[second_of_step] > 0, BookSide.BID, BookSide.ASK
        )
        out["size"][second_of_step] = np.maximum(size[src][second_of_step], 1)
        out["ts_event"] = ts
        out["ts_recv"] = ts

        traded = rng.random(n) < cfg.trade_ratio
        t = np.zeros(int(traded.sum()), dtype=TRADE)
        if len(t):
            buy = rng.random(len(t)) < 0.5
            m = mid_after[traded]
            t["instrument_id"] = self._ids[which[traded]]
            t["aggressor"] = np.where(buy, Side.BUY, Side.SELL)
            t["price"] = np.where(buy, m, m - 1)
            t["size"] = rng.integers(1, max(cfg.max_size // 5, 1) + 1, len(t))
            t["trade_id"] = np.arange(self._trade_ids + 1, self._trade_ids + 1 + len(t))
            self._trade_ids += len(t)
            t["ts_event"] = ts
            t["ts_recv"] = ts
        self.generated += len(out)
        return out, t

    def publish(self, engine, n: int) -> int:
        """Generate ``n`` updates, write them into ``engine``'s rings and pump; returns deltas.

        They are stamped once generated, as a real feed stamps a read before parsing it.
        """
        deltas, trades = self.generate(n, 0)
        ts = engine.clock.now()
        for batch in (deltas, trades):
            batch["ts_event"] = ts
        self._write(engine, deltas, trades, ts)
        return len(deltas)

    def publish_snapshot(self, engine) -> None:
        self._write(engine, self.snapshot(engine.clock.now()), np.zeros(0, dtype=TRADE))

    @staticmethod
    def _write(engine, deltas: np.ndarray, trades: np.ndarray, ts_recv: int = 0) -> None:
        # Write no more than the ring holds, pumping in between, so nothing is conflated when
        # the consumer is simply behind by one batch. ``ts_recv`` (not 0) stamps the rows as
        # they are copied into the rings.
        ring = engine.deltas
        pos = 0
        while pos < len(deltas):
            room = max(ring.free, 1)
            ring.write(deltas[pos : pos + room], ts_recv)
            pos += room
            engine.pump()
        if len(trades):
            engine.trades.write(trades, ts_recv)
            engine.pump()

    async def run(self, engine, stop: asyncio.Event) -> None:
        """Publish at ``rate`` updates/s in steps of ``interval_ms`` until ``stop`` is set."""
        loop = asyncio.get_running_loop()
        interval = self.config.interval_ms / 1e3
        self.publish_snapshot(engine)
        last = loop.time()
        owed = 0.0
        while not stop.is_set():
            await asyncio.sleep(interval)
            now = loop.time()
            owed += (now - last) * self.config.rate
            last = now
            n = int(owed)
            if n:
                owed -= n
                self.publish(engine, n)
