"""IBVenue's market data against the gateway simulator over loopback: what strategies and the
risk gate see when IB ends or degrades an instrument's data.

A book stream IB ends mid-stream (10197, competing live session; 354 and the like) empties the
instrument's book, so no strategy quotes on, and no market order is valued against, its last
prices.
"""

from __future__ import annotations

import logging

import pytest

from engine.messages import EventKind
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
