"""Orders only for contracts IB has confirmed: an instrument whose qualification failed, or
whose config disagrees with IB's contract details, has its orders refused with the reason."""

from __future__ import annotations

import logging

import pytest
from ib_venue_support import IBHarness

from adapters.ib.venue import NOT_QUALIFIED
from engine.messages import EventKind

pytestmark = pytest.mark.asyncio


async def test_orders_for_a_contract_ib_does_not_know_are_refused(caplog) -> None:
    caplog.set_level(logging.ERROR, logger="tickwire.ib")
    async with IBHarness(symbols=("AAPL", "NOPE")) as h:
        nope = h.registry.resolve("NOPE")
        assert nope.id in h.venue.unqualified and nope.id not in h.venue.qualified
        assert any("NOPE" in r.getMessage() and "refused" in r.getMessage() for r in caplog.records)
        coid = h.strat.buy("NOPE", 1, 10.0)
        await h.wait_kind(coid, EventKind.REJECTED)
        ev = next(e for e in h.strat.of(coid) if e.kind == EventKind.REJECTED)
        assert ev.reason_code == NOT_QUALIFIED
        assert "NOPE" in ev.reason and "qualify" in ev.reason
        assert not [o for o in h.sim_orders() if o.order.orderRef == str(coid)]
        # The qualified instrument trades as usual.
        await h.book_ready("AAPL")
        ok = h.strat.buy("AAPL", 1, round(h.mid("AAPL") - 5, 2))
        await h.wait_kind(ok, EventKind.ACCEPTED)


async def test_orders_for_an_instrument_configured_unlike_ib_are_refused() -> None:
    # IB's AAPL has multiplier 1: configured as 100, P&L and exposure would be 100x off.
    async with IBHarness(facts={"AAPL": (0.01, 1.0, 100.0, "USD")}) as h:
        aapl = h.registry.resolve("AAPL")
        assert aapl.id in h.venue.qualified  # IB answered, but not what the config says
        assert "multiplier 100" in h.venue.unqualified[aapl.id]
        coid = h.strat.buy("AAPL", 1, 10.0)
        await h.wait_kind(coid, EventKind.REJECTED)
        ev = next(e for e in h.strat.of(coid) if e.kind == EventKind.REJECTED)
        assert ev.reason_code == NOT_QUALIFIED and "multiplier" in ev.reason
        assert not [o for o in h.sim_orders() if o.order.orderRef == str(coid)]
        msft = h.strat.buy("MSFT", 1, 10.0)
        await h.wait_kind(msft, EventKind.ACCEPTED)
