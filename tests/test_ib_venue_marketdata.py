"""IBVenue's market data against the gateway simulator over loopback: what strategies and the
risk gate see when IB ends or degrades an instrument's data.

A book stream IB ends mid-stream (10197, competing live session; 354 and the like) empties the
instrument's book, so no strategy quotes on, and no market order is valued against, its last
prices; so does a lost connection or 1100 for every book. IB is asked for no more depth rows
than a book keeps, so the book stays IB's.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import asdict, replace

import pytest

from adapters.ib.gateway_sim.market import default_universe
from engine.messages import BookSide, EventKind
from engine.risk_gate import Verdict
from tests.ib_venue_support import IBHarness, until

LOG = "tickwire.ib"


@pytest.mark.parametrize("depth_rows", [10, 0], ids=["depth", "l1"])
async def test_a_book_stream_ib_ends_empties_the_book(depth_rows: int, caplog) -> None:
    """Another session with live data logs in (10197 to every AAPL stream, its data stops):
    before, AAPL's book kept its last prices for good, and a market order was valued against
    them and filled. Now the book is emptied (the strategy sees no bid or ask), the order is
    refused for want of a reference price, and the ERROR says so; MSFT streams on."""
    caplog.set_level(logging.INFO, LOG)
    async with IBHarness(depth_rows=depth_rows) as h:
        await h.book_ready("AAPL")
        await h.book_ready("MSFT")
        h.fault("competing_session", symbol="AAPL")
        aapl = h.strat.book("AAPL")
        await until(lambda: aapl.bid is None and aapl.ask is None, 5, "AAPL's book emptied")
        coid = h.strat.buy("AAPL", 1)
        h.engine.pump()
        await until(lambda: h.strat.kinds(coid), 5, "the market order's answer")
        (ev,) = h.strat.of(coid)
        assert ev.kind == EventKind.REJECTED
        assert ev.reason_code == Verdict.NO_REFERENCE_PRICE
        assert h.strat.book("MSFT").mid_ticks is not None
        said = [r for r in caplog.records if "10197" in r.getMessage()]
        assert said and all(r.levelno == logging.ERROR for r in said)
        assert any("AAPL" in r.getMessage() and "book is emptied" in r.getMessage() for r in said)


def _deep_aapl(levels: int) -> dict:
    """The simulator's AAPL with ``levels`` price levels a side, as a config table."""
    (aapl,) = [i for i in default_universe() if (i.symbol, i.sec_type) == ("AAPL", "STK")]
    deep = asdict(replace(aapl, depth_levels=levels))
    return {k: v for k, v in deep.items() if v not in ("", ())}  # the defaults


async def test_depth_rows_beyond_the_books_rows_are_not_asked_for(caplog) -> None:
    """``depth_rows`` above the rows a book keeps (64 a side): before, IB was asked for them
    all; a row past the 64th that slid into view (a level above it went) was never in the
    book, and IB's later updates of it were refused as rows that do not exist, so the book
    lost levels for good. Now IB is asked for 64 rows, with a WARNING, and the book is IB's."""
    caplog.set_level(logging.INFO, LOG)
    sim = {"instruments": [_deep_aapl(90)], "market": {"events_per_second": 400.0}}
    async with IBHarness(symbols=("AAPL",), sim=sim, depth_rows=90) as h:
        rows = h.engine.books.rows.shape[2]
        assert any(
            r.levelno == logging.WARNING and "depth_rows" in r.getMessage() for r in caplog.records
        )
        await h.book_ready("AAPL")
        await asyncio.sleep(1.0)  # the market moves: levels go and come at the top
        h.fault("stop_market_data", symbol="AAPL")
        subs = [s for c in h.core().clients.values() for s in c.subs.values()]
        (sub,) = [s for s in subs if s.kind == "depth"]
        assert sub.rows == rows
        ib = h.core().client_depth(sub)  # the rows IB has sent, as its client should hold them
        grid = h.core().market.state(sub.instrument.con_id).grid
        book = h.strat.book("AAPL")

        def same() -> bool:
            for side, bs in ((1, BookSide.BID), (0, BookSide.ASK)):
                px, sz = ib[side][0][:rows], ib[side][1][:rows]  # its top rows, as many as a book's
                want = [(grid.price(p), float(grid.size(q))) for p, q in zip(px, sz, strict=True)]
                if [(round(p, 2), q) for p, q in book.depth(bs, 200)] != want:
                    return False
            return True

        await until(same, 5, "the book to be IB's rows")


@pytest.mark.parametrize(
    ("fault", "params"),
    [("daily_restart", {"seconds": 2.0}), ("connectivity_lost", {"seconds": 2.0})],
    ids=["socket-lost", "1100-then-1102"],
)
async def test_books_are_emptied_while_ibs_data_is_down(fault: str, params: dict) -> None:
    """The gateway restarts (the socket goes) or IB's link drops (1100): IB's data stops.
    Before, every book kept its last prices for the whole outage (what strategies, shadow
    venues and the risk gate read); now they are emptied at once, and the resubscription
    after the return (reconnect, or 1102) rebuilds them."""
    async with IBHarness(connect_timeout_s=0.5) as h:
        for s in ("AAPL", "MSFT"):
            await h.book_ready(s)
        h.fault(fault, **params)
        down = (lambda: not h.venue.connected) if fault == "daily_restart" else None
        await until(down or (lambda: h.venue.in_1100), 3, "the outage")
        books = [h.strat.book(s) for s in ("AAPL", "MSFT")]
        await until(lambda: all(b.mid_ticks is None for b in books), 2, "books emptied")
        assert h.venue.ready is False or h.venue.in_1100
        await until(lambda: h.venue.ready and not h.venue.in_1100, 10, "the return")
        for s in ("AAPL", "MSFT"):
            await h.book_ready(s)


@pytest.mark.parametrize("enabled", [True, False], ids=["delayed", "delayed-not-enabled"])
async def test_delayed_or_no_data_for_want_of_a_subscription_names_the_instrument(
    enabled: bool, caplog
) -> None:
    """Market data type 3 (delayed where there is no live subscription), MSFT without one.
    10167 (delayed data shown): before, an INFO line that named no instrument, while MSFT's
    book and the risk gate ran on prices 15-20 minutes old; now a WARNING names MSFT.
    10168 (delayed data not enabled either: no data at all): before, INFO too, the instrument
    silently without data; now the ERROR of a refused stream, naming MSFT."""
    caplog.set_level(logging.INFO, LOG)
    sim = {"market": {"delayed_only": ["MSFT"], "delayed_enabled": enabled}}
    async with IBHarness(sim=sim, depth_rows=0, market_data_type=3) as h:
        await h.book_ready("AAPL")
        code = 10167 if enabled else 10168
        await until(lambda: any(c == code for _, c, _ in h.venue.errors), 5, f"{code}")
        said = [r for r in caplog.records if str(code) in r.getMessage()]
        (record,) = said
        assert "MSFT.IB" in record.getMessage()
        if enabled:
            assert record.levelno == logging.WARNING and "delayed" in record.getMessage()
            await h.book_ready("MSFT")
        else:
            assert record.levelno == logging.ERROR and "refused" in record.getMessage()
            assert h.strat.book("MSFT").mid_ticks is None


async def test_a_warning_about_a_depth_stream_keeps_it(caplog) -> None:
    """A 2100-range warning with a depth stream's id (2152: some exchanges' depth needs more
    permissions; the rest streams on): before, it counted as a refusal, so the book fell back
    to L1 quotes for good (one level a side) with an ERROR. Now it is a WARNING naming the
    instrument; depth stays and the book keeps its levels."""
    caplog.set_level(logging.INFO, LOG)
    text = "Exchanges - Depth: ARCA; Top: BYX; Need additional market data permissions - Depth: X;"
    async with IBHarness() as h:
        await h.book_ready("AAPL")
        v = h.venue
        sub = v._subs[h.registry.resolve("AAPL").id]
        for session in h.core().clients.values():
            session.error(sub.depth, 2152, text)
        h.server.flush()
        await until(lambda: any(c == 2152 for _, c, _ in v.errors), 5, "2152")
        await asyncio.sleep(0.3)  # a refusal would ask for L1 now
        assert not v._l1_book[sub.instrument.id] and not sub.failed
        assert len(h.strat.book("AAPL").depth(BookSide.BID, 20)) > 1
        (said,) = [r for r in caplog.records if "2152" in r.getMessage()]
        assert said.levelno == logging.WARNING and "AAPL.IB" in said.getMessage()


async def test_ibs_no_ask_empties_the_side_and_is_not_an_invalid_delta() -> None:
    """IB says there is no ask now (tickPrice ask -1) on an L1 book: the ask side empties and
    the bid stays. Before, the quote's ask SET at no price was refused as an invalid delta and
    counted in book_skipped_total (an operator's alarm) each time; now nothing is counted."""
    async with IBHarness(depth_rows=0) as h:
        await h.book_ready("AAPL")
        sub = h.venue._subs[h.registry.resolve("AAPL").id]
        h.fault("stop_market_data", symbol="AAPL")
        bid = h.strat.book("AAPL").bid
        for session in h.core().clients.values():
            session.send(session.encoder.tick_price(sub.l1, 2, -1.0, 0, 0))
            session.send(session.encoder.tick_price(sub.l1, 1, bid - 0.01, 300, 0))
        h.server.flush()
        book = h.strat.book("AAPL")
        await until(lambda: book.ask is None and book.bid == round(bid - 0.01, 2), 5, "no ask")
        assert book.bid_size == 300
        assert h.engine.books.skipped == 0
