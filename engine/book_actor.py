"""The book actor: applies market-data batches to the books and wakes who listens.

One kernel call per drained batch. After it, only the instruments whose top of book changed are
dispatched: venues first (``on_book``: the market moved before anything sent in reaction to it
reaches a venue), then each subscribed strategy's ``on_book``. A simulated venue does its matching
in ``after_dispatch``, once the strategies are done, so matching never delays their orders. The
``ts_recv`` of the batch's first message becomes the trigger stamp of any order a strategy sends
from that callback (tick-to-order).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np

from engine.messages import BOOK_DELTA, NO_PRICE, BookSide, DeltaAction
from engine.strategy import Strategy, Trade

if TYPE_CHECKING:
    from engine.runtime import Engine

log = logging.getLogger(__name__)


class BookActor:
    def __init__(self, engine: Engine, quote_batch: int) -> None:
        self._engine = engine
        self._books = engine.books
        self._clock = engine.clock
        self._views = engine.book_views
        # Shadow venues match against the same books: they hear of them like the real ones.
        self._venues = [*engine.venues.values(), *engine.router.shadow_venues.values()]
        n = len(engine.registry)
        self.book_subs: list[list[Strategy]] = [[] for _ in range(n)]
        self.trade_subs: list[list[Strategy]] = [[] for _ in range(n)]
        self._feed_to_book = engine.latency["feed_to_book"]
        self._mark = engine.risk.on_book  # reference prices for collars and market orders
        # The same, bound to the book store's output arrays: one call with the count.
        self._mark_top = engine.risk.marker(self._books._ids, self._books._top)
        self._deltas = engine.deltas
        self._trade = Trade()
        self._dispatching = False
        self._after: list[Callable[[], object]] = []  # waiting for the strategies to finish
        # Quotes are applied as CLEAR + bid + ask deltas: one scratch batch, reused.
        self._quote_deltas = np.zeros(3 * quote_batch, dtype=BOOK_DELTA)
        self.updates = 0
        self.trades = 0
        self.quotes = 0
        self.callback_errors = 0

    def subscribe(self, strategy: Strategy, instrument_id: int, trades: bool = True) -> None:
        if strategy not in self.book_subs[instrument_id]:
            self.book_subs[instrument_id].append(strategy)
        if trades and strategy not in self.trade_subs[instrument_id]:
            self.trade_subs[instrument_id].append(strategy)

    def drain_deltas(self, max_n: int) -> None:
        ring = self._deltas
        start, end = ring.read_span(max_n)
        if start == end:
            return
        # The kernel reads the rows where they are in the ring: no view on the order path.
        buffer = ring.buffer
        ids, ts_recv = self._books.apply_span(buffer, start, end, self._clock.now())
        self.updates += end - start
        if ids:
            self._mark_top(len(ids))
        self._dispatch(ids, ts_recv)
        # Bookkeeping after the strategies had their turn: it is not on the order path.
        rows = buffer[start:end]
        self._feed_to_book.record_many(rows["ts_book"] - rows["ts_recv"])

    def drain_quotes(self, max_n: int) -> None:
        q = self._engine.quotes.read(max_n)
        n = len(q)
        if not n:
            return
        d = self._quote_deltas[: 3 * n]
        d["instrument_id"] = np.repeat(q["instrument_id"], 3)
        d["ts_event"] = np.repeat(q["ts_event"], 3)
        d["ts_recv"] = np.repeat(q["ts_recv"], 3)
        d["action"][0::3] = DeltaAction.CLEAR
        d["action"][1::3] = DeltaAction.SET
        d["action"][2::3] = DeltaAction.SET
        d["side"][1::3] = BookSide.BID
        d["side"][2::3] = BookSide.ASK
        d["price"][1::3] = q["bid_price"]
        d["size"][1::3] = q["bid_size"]
        d["price"][2::3] = q["ask_price"]
        d["size"][2::3] = q["ask_size"]
        no_bid = q["bid_price"] == NO_PRICE
        no_ask = q["ask_price"] == NO_PRICE
        if no_bid.any() or no_ask.any():
            # A side without a price (IB's -1: no bid or no ask now) is an empty side, which
            # the CLEAR made: its SET would be refused as invalid and counted in
            # book_skipped_total. A missing bid's slot repeats the CLEAR (nothing is set yet), a
            # missing ask's repeats the bid's.
            bids, asks = d[1::3], d[2::3]
            bids["action"][no_bid] = DeltaAction.CLEAR
            asks[no_ask] = bids[no_ask]
        ids = self._books.apply(d, self._clock.now())
        if ids:
            self._mark(self._books._ids, self._books._top, len(ids))
        q["ts_book"] = d["ts_book"][0::3]
        self.quotes += n
        self._dispatch(ids, q["ts_recv"].item(0))
        self._feed_to_book.record_many(q["ts_book"] - q["ts_recv"])

    def drain_trades(self, max_n: int) -> None:
        view = self._engine.trades.read(max_n)
        if not len(view):
            return
        view["ts_book"] = self._clock.now()
        self.trades += len(view)
        for venue in self._venues:
            venue.on_trades(view)
        subs = self.trade_subs
        registry = self._engine.registry
        trade = self._trade
        eng = self._engine
        columns = zip(
            view["instrument_id"].tolist(), view["price"].tolist(), view["size"].tolist(),
            view["aggressor"].tolist(), view["ts_event"].tolist(), view["ts_recv"].tolist(),
            strict=True,
        )  # fmt: skip
        for i, price, size, aggressor, ts_event, ts_recv in columns:
            listeners = subs[i]
            if not listeners:
                continue
            inst = registry[i]
            trade.instrument = inst
            trade.price = inst.from_ticks(price)
            trade.size = inst.from_lots(size)
            trade.aggressor = aggressor
            trade.ts_event = ts_event
            trade.ts_recv = eng.trigger_ts = ts_recv
            for s in listeners:
                try:
                    s.on_trade(trade)
                except Exception:
                    self._callback_failed(s, "on_trade")
                if eng.intents.tail != eng.intents.head:
                    eng.flush_intents()
        eng.trigger_ts = 0

    def after_dispatch(self, fn: Callable[[], object]) -> None:
        """Run ``fn`` once the strategies have had the batch being dispatched (now if none is)."""
        if self._dispatching:
            self._after.append(fn)
        else:
            fn()

    def _dispatch(self, ids: list[int], trigger_ts: int) -> None:
        if not ids:
            return
        eng = self._engine
        self._dispatching = True
        try:
            for venue in self._venues:
                venue.on_book(ids)
            eng.trigger_ts = trigger_ts
            views = self._views
            subs = self.book_subs
            intents = eng.intents
            for i in ids:
                view = views[i]
                for s in subs[i]:
                    try:
                        s.on_book(view)
                    except Exception:
                        self._callback_failed(s, "on_book")
                    if intents.tail != intents.head:
                        # Orders go out before the next strategy's callback, not after the batch.
                        eng.flush_intents()
        finally:
            eng.trigger_ts = 0
            self._dispatching = False
            if self._after:
                after, self._after = self._after, []
                for fn in after:
                    try:
                        fn()
                    except Exception:
                        log.exception("after_dispatch callback %r raised", fn)

    def _callback_failed(self, strategy: Strategy, callback: str) -> None:
        self.callback_errors += 1
        log.exception("strategy %r: %s raised; the engine goes on", strategy.name, callback)
