"""Order books: the book kernel's throughput, and ``L2Book`` side by side with NautilusTrader.

1. ``test_book_kernel_throughput``: ``BookStore.apply`` on batches of ``BOOK_DELTA`` rows (as
   the book actor drains the ring), price-level updates over 8 instruments; target >= 30 million
   updates/s.
   ``test_book_kernel_ib_rows``: the same for IB position-based depth (insert / update / delete
   rows), for reference.
2. ``test_l2book_apply_batch``: ``L2Book.apply_batch`` per update, building its numpy input
   arrays from Python lists (as a decoder hands them over) inside the measured round.
3. ``test_anchor_nautilus_apply_delta``: the same updates through NautilusTrader's
   ``OrderBook.apply_delta`` (L2_MBP) from Python, building each ``OrderBookDelta`` (with its
   ``BookOrder``, ``Price`` and ``Quantity``) inside the measured round, as the numpy arrays are
   for ours. Target: ours >= 3x faster per update.
4. ``test_anchor_nautilus_apply_deltas_batched``: the same, one ``OrderBookDeltas`` per batch.

Every test puts ``messages_per_round`` (updates) and, once measured, ``ns_per_update`` (median)
in ``extra_info``; the anchors add ``l2book_speedup`` (their ns per update over ours).
"""

from __future__ import annotations

import numpy as np
import pytest

from engine.book import BookStore, L2Book
from engine.messages import BOOK_DELTA, BookSide, DeltaAction

N_INST = 8
KERNEL_UPDATES = 100_000
KERNEL_BATCH = 5_000
L2_BATCHES = 100
L2_BATCH = 100
TICK = 0.01
MID = 1_000_000  # ticks: 10,000.00

_NS: dict[str, float] = {}  # ns per update, by test, for the anchors' ratios


def level_updates(n: int, n_inst: int, seed: int) -> tuple[np.ndarray, ...]:
    """A venue-like stream of price-level updates: ``(instrument, side, ticks, lots)``.

    Each instrument's mid walks a tick at a time; updates land mostly near the touch
    (geometric distance), a quarter of them delete the level, and when the mid moves the level
    it crosses is deleted first, so the books stay uncrossed as a venue's do.
    """
    rng = np.random.default_rng(seed)
    step = rng.choice([-1, 0, 1], size=n, p=[0.02, 0.96, 0.02])
    inst = rng.integers(0, n_inst, n)
    side = rng.integers(0, 2, n)
    dist = rng.geometric(0.2, n) - 1
    lots = np.where(rng.random(n) < 0.25, 0, rng.integers(1, 100, n))
    mids = [MID] * n_inst
    out = []
    for i, st, s, d, q in zip(inst.tolist(), step.tolist(), side.tolist(), dist.tolist(),
                              lots.tolist(), strict=True):  # fmt: skip
        if st > 0:  # the lowest ask is now below the mid
            out.append((i, BookSide.ASK, mids[i], 0))
        elif st < 0:  # the highest bid is now at the mid
            out.append((i, BookSide.BID, mids[i] - 1, 0))
        mids[i] += st
        out.append((i, s, mids[i] - 1 - d if s == BookSide.BID else mids[i] + d, q))
        if len(out) >= n:
            break
    cols = np.array(out[:n], dtype=np.int64).T
    return cols[0], cols[1], cols[2], cols[3]


def test_book_kernel_throughput(benchmark):
    inst, side, ticks, lots = level_updates(KERNEL_UPDATES, N_INST, seed=1)
    deltas = np.zeros(KERNEL_UPDATES, dtype=BOOK_DELTA)
    deltas["instrument_id"] = inst
    deltas["side"] = side
    deltas["action"] = DeltaAction.SET
    deltas["price"] = ticks
    deltas["size"] = lots
    batches = [deltas[k : k + KERNEL_BATCH] for k in range(0, KERNEL_UPDATES, KERNEL_BATCH)]
    store = BookStore(N_INST, 4096)
    store.warm_up()
    clear = np.zeros(N_INST, dtype=BOOK_DELTA)
    clear["instrument_id"] = np.arange(N_INST)
    clear["action"] = DeltaAction.CLEAR

    def setup():
        store.apply(clear, 0)  # each round starts from empty books
        return (), {}

    def go() -> None:
        for b in batches:
            store.apply(b, 1)

    benchmark.extra_info["messages_per_round"] = KERNEL_UPDATES
    benchmark.pedantic(go, setup=setup, rounds=30, warmup_rounds=2)
    assert store.skipped == 0 and store.dropped == 0 and store.crossed == 0
    _record(benchmark, "kernel", KERNEL_UPDATES)
    if benchmark.stats:
        benchmark.extra_info["updates_per_s"] = 1e9 / benchmark.extra_info["ns_per_update"]


def ib_row_updates(n: int, n_inst: int, max_rows: int, seed: int) -> np.ndarray:
    """A stream of IB depth rows: mostly size updates, some inserts and deletes, best first."""
    rng = np.random.default_rng(seed)
    held = [[0, 0] for _ in range(n_inst)]
    inst = rng.integers(0, n_inst, n).tolist()
    side = rng.integers(0, 2, n).tolist()
    roll = rng.random(n).tolist()
    pick = rng.random(n).tolist()
    actions, positions = [], []
    for i, s, r, u in zip(inst, side, roll, pick, strict=True):
        rows = held[i][s]
        if rows == 0 or (rows < max_rows and r < 0.2):
            actions.append(DeltaAction.INSERT)
            positions.append(int(u * (rows + 1)))
            held[i][s] += 1
        elif r < 0.35:
            actions.append(DeltaAction.DELETE)
            positions.append(int(u * rows))
            held[i][s] -= 1
        else:
            actions.append(DeltaAction.UPDATE)
            positions.append(int(u * rows))
    d = np.zeros(n, dtype=BOOK_DELTA)
    d["instrument_id"] = inst
    d["side"] = side
    d["action"] = actions
    d["position"] = positions
    pos = np.array(positions, dtype=np.int64)
    d["price"] = np.where(d["side"] == BookSide.BID, MID - 1 - pos, MID + pos)
    d["size"] = rng.integers(1, 100, n)
    return d


def test_book_kernel_ib_rows(benchmark):
    deltas = ib_row_updates(KERNEL_UPDATES // 2, N_INST, 20, seed=3)
    batches = [deltas[k : k + KERNEL_BATCH] for k in range(0, len(deltas), KERNEL_BATCH)]
    store = BookStore(N_INST, 4096, max_rows=20)
    store.warm_up()
    clear = np.zeros(N_INST, dtype=BOOK_DELTA)
    clear["instrument_id"] = np.arange(N_INST)
    clear["action"] = DeltaAction.CLEAR

    def setup():
        store.apply(clear, 0)
        return (), {}

    def go() -> None:
        for b in batches:
            store.apply(b, 1)

    benchmark.extra_info["messages_per_round"] = len(deltas)
    benchmark.pedantic(go, setup=setup, rounds=20, warmup_rounds=2)
    assert store.skipped == 0 and store.dropped == 0
    _record(benchmark, "kernel_ib_rows", len(deltas))


def _l2_stream() -> list[tuple[list[int], list[float], list[float]]]:
    """``L2_BATCHES`` socket reads of ``L2_BATCH`` updates: Python lists, as decoded."""
    _, side, ticks, lots = level_updates(L2_BATCHES * L2_BATCH, 1, seed=2)
    prices = (ticks * TICK).round(2)
    out = []
    for k in range(0, len(side), L2_BATCH):
        sl = slice(k, k + L2_BATCH)
        out.append((side[sl].tolist(), prices[sl].tolist(), lots[sl].astype(float).tolist()))
    return out


def test_l2book_apply_batch(benchmark):
    stream = _l2_stream()
    book = L2Book(TICK)
    book.apply_batch(*(np.array(c) for c in stream[0]))  # warm-up: kernel loaded

    def setup():
        book.clear()
        return (), {}

    def go() -> None:
        for sides, prices, sizes in stream:
            book.apply_batch(
                np.array(sides, dtype=np.int64),
                np.array(prices, dtype=np.float64),
                np.array(sizes, dtype=np.float64),
            )

    benchmark.extra_info["messages_per_round"] = L2_BATCHES * L2_BATCH
    benchmark.pedantic(go, setup=setup, rounds=30, warmup_rounds=2)
    assert book.skipped == 0 and book.crossed == 0
    assert book.best_bid() is not None and book.best_ask() is not None
    _record(benchmark, "l2book", L2_BATCHES * L2_BATCH)


def _nautilus():
    try:
        from nautilus_trader.model.book import OrderBook
        from nautilus_trader.model.data import BookOrder, OrderBookDelta, OrderBookDeltas
        from nautilus_trader.model.enums import BookAction, BookType, OrderSide
        from nautilus_trader.model.identifiers import InstrumentId
        from nautilus_trader.model.objects import Price, Quantity
    except ImportError:
        print("\nnautilus_trader is not installed: its anchors are skipped ('.[anchors]' extra)")
        pytest.skip("nautilus_trader is not installed (the 'anchors' extra)")
    return (
        OrderBook, BookOrder, OrderBookDelta, OrderBookDeltas, BookAction, BookType, OrderSide,
        InstrumentId, Price, Quantity,
    )  # fmt: skip


def test_anchor_nautilus_apply_delta(benchmark):
    (OrderBook, BookOrder, OrderBookDelta, _, BookAction, BookType, OrderSide, InstrumentId, Price,
     Quantity) = _nautilus()  # fmt: skip
    stream = _l2_stream()
    iid = InstrumentId.from_str("BTCUSDT.BINANCE")
    buy, sell = OrderSide.BUY, OrderSide.SELL
    update, delete = BookAction.UPDATE, BookAction.DELETE
    books = []

    def setup():
        books.append(OrderBook(iid, BookType.L2_MBP))
        return (books[-1],), {}

    def go(book) -> None:
        seq = 0
        for sides, prices, sizes in stream:
            for s, p, q in zip(sides, prices, sizes, strict=True):
                seq += 1
                order = BookOrder(sell if s else buy, Price(p, 2), Quantity(q, 0), 0)
                book.apply_delta(OrderBookDelta(iid, update if q else delete, order, 0, seq, 0, 0))

    benchmark.extra_info["messages_per_round"] = L2_BATCHES * L2_BATCH
    benchmark.pedantic(go, setup=setup, rounds=10, warmup_rounds=1)
    _check_same_book(books[-1])
    _record(benchmark, "nautilus_apply_delta", L2_BATCHES * L2_BATCH)


def test_anchor_nautilus_apply_deltas_batched(benchmark):
    (OrderBook, BookOrder, OrderBookDelta, OrderBookDeltas, BookAction, BookType, OrderSide,
     InstrumentId, Price, Quantity) = _nautilus()  # fmt: skip
    stream = _l2_stream()
    iid = InstrumentId.from_str("BTCUSDT.BINANCE")
    buy, sell = OrderSide.BUY, OrderSide.SELL
    update, delete = BookAction.UPDATE, BookAction.DELETE
    books = []

    def setup():
        books.append(OrderBook(iid, BookType.L2_MBP))
        return (books[-1],), {}

    def go(book) -> None:
        seq = 0
        for sides, prices, sizes in stream:
            batch = []
            for s, p, q in zip(sides, prices, sizes, strict=True):
                seq += 1
                order = BookOrder(sell if s else buy, Price(p, 2), Quantity(q, 0), 0)
                batch.append(OrderBookDelta(iid, update if q else delete, order, 0, seq, 0, 0))
            book.apply_deltas(OrderBookDeltas(iid, batch))

    benchmark.extra_info["messages_per_round"] = L2_BATCHES * L2_BATCH
    benchmark.pedantic(go, setup=setup, rounds=10, warmup_rounds=1)
    _check_same_book(books[-1])
    _record(benchmark, "nautilus_apply_deltas", L2_BATCHES * L2_BATCH)


def _check_same_book(nautilus_book) -> None:
    """The anchor did the same work: its book ends as ours does."""
    ours = L2Book(TICK)
    for sides, prices, sizes in _l2_stream():
        ours.apply_batch(np.array(sides), np.array(prices), np.array(sizes))
    theirs = [(float(lv.price), float(lv.size())) for lv in nautilus_book.bids()[:10]]
    assert theirs == ours.depth("bid", 10)
    theirs = [(float(lv.price), float(lv.size())) for lv in nautilus_book.asks()[:10]]
    assert theirs == ours.depth("ask", 10)


def _record(benchmark, name: str, per_round: int) -> None:
    if not benchmark.stats:  # --benchmark-disable: nothing measured
        return
    ns = benchmark.stats.stats.median * 1e9 / per_round
    benchmark.extra_info["ns_per_update"] = ns
    _NS[name] = ns
    if name.startswith("nautilus") and "l2book" in _NS:
        benchmark.extra_info["l2book_speedup"] = ns / _NS["l2book"]
