"""The kill switch against IB (the gateway simulator over loopback), beside another API client of
the same account: it cancels this engine's own orders one by one, never with IB's global cancel
(``reqGlobalCancel`` cancels every open order of the account, whichever client placed it)
unless ``[risk] kill_switch_global_cancel`` says so, and in SHADOW nothing reaches the gateway.
Also: IB's commissions, reported after their executions, count in the risk state.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from engine.config import RiskConfig, RouterConfig
from engine.messages import EventKind
from hotpath import risk as rk
from tests.ib_sim_support import RecordingApp
from tests.ib_venue_support import IBHarness, until
from tests.test_ib_sim_interop import aapl, limit

A, C = EventKind.ACCEPTED, EventKind.CANCELLED
OTHER_CLIENT = 9
GLOBAL = RiskConfig(equity=1e9, kill_switch_global_cancel=True)


@asynccontextmanager
async def other_client(h: IBHarness) -> AsyncIterator[RecordingApp]:
    """A second API client of the account (another engine, or TWS): the official ibapi client.
    Its ``connect`` waits for the gateway's answer, and the gateway runs on this loop: it
    connects from a thread."""
    app = RecordingApp()
    await asyncio.to_thread(app.start, "127.0.0.1", h.server.port, OTHER_CLIENT)
    try:
        await until(lambda: app.all("nextValidId"), 5, "the other client's handshake")
        yield app
    finally:
        await asyncio.to_thread(app.stop)


async def other_order(h: IBHarness, app: RecordingApp) -> tuple[int, int]:
    """The other client's resting buy; returns its key in the simulator's orders."""
    (oid,) = app.all("nextValidId")[-1]
    app.placeOrder(oid, aapl(), limit("BUY", 1, round(h.mid("AAPL") * 0.9, 2)))
    key = (OTHER_CLIENT, oid)
    orders = h.core().orders
    await until(lambda: key in orders and orders[key].status == "Submitted", 5, "its order")
    return key


def status(h: IBHarness, key: tuple[int, int]) -> str:
    """The simulator's status of order ``key`` (client id, order id), working or completed."""
    (o,) = [o for o in h.sim_orders() if (o.client_id, o.order_id) == key]
    return o.status


async def our_orders(h: IBHarness, n: int = 3) -> list[int]:
    low = round(h.mid("AAPL") * 0.97, 2)
    coids = [h.strat.buy("AAPL", 1, low) for _ in range(n)]
    for coid in coids:
        await h.wait_kind(coid, A)
    return coids


async def test_kill_switch_cancels_our_orders_one_by_one_and_not_the_other_clients() -> None:
    async with IBHarness() as h, other_client(h) as app:
        await h.book_ready("AAPL")
        theirs = await other_order(h, app)
        coids = await our_orders(h)
        h.engine.kill_switch("drill")
        for coid in coids:
            await h.wait_kind(coid, C)
        await asyncio.sleep(0.2)
        assert h.venue.cancels_sent == 3
        assert status(h, theirs) == "Submitted"
        assert not [s for s in app.all("orderStatus") if s[1] == "Cancelled"]


async def test_kill_switch_global_cancel_when_configured_cancels_the_whole_account() -> None:
    async with IBHarness(risk=GLOBAL) as h, other_client(h) as app:
        await h.book_ready("AAPL")
        theirs = await other_order(h, app)
        coids = await our_orders(h)
        h.engine.kill_switch("drill")
        for coid in coids:
            await h.wait_kind(coid, C)
        await until(lambda: status(h, theirs) == "Cancelled", 5, "the global cancel")


async def test_kill_switch_in_shadow_sends_nothing_to_the_gateway_even_if_global() -> None:
    shadow = RouterConfig(mode="shadow")
    async with IBHarness(risk=GLOBAL, router=shadow) as h, other_client(h) as app:
        await h.book_ready("AAPL")
        theirs = await other_order(h, app)
        coids = await our_orders(h)
        assert all(h.engine.tracker.get(c).shadow for c in coids)
        h.engine.kill_switch("drill")
        for coid in coids:
            await h.wait_kind(coid, C)
        await asyncio.sleep(0.2)
        assert (h.venue.orders_sent, h.venue.cancels_sent) == (0, 0)
        assert status(h, theirs) == "Submitted"
        assert [r[0] for r in h.core().received] == [OTHER_CLIENT]


async def test_commissions_reported_after_their_executions_count_in_the_risk_state() -> None:
    async with IBHarness(sim={"orders": {"commission_delay_ms": 50}}) as h:
        await h.book_ready("AAPL")
        aapl_id = h.registry.resolve("AAPL").id
        coid = h.strat.buy("AAPL", 10, round(h.mid("AAPL") + 0.50, 2))
        await until(lambda: sum(f.fill_lots for f in h.strat.fills(coid)) == 10, 5, "filled")
        assert all(f.commission == 0 for f in h.strat.fills(coid))  # the fees come later
        fees = sum(r.report.commissionAndFees for r in h.core().executions)
        assert fees > 0
        a = h.engine.risk.arrays
        await until(lambda: math.isclose(a.gst[rk.GS_FEES], fees, rel_tol=1e-9), 3, "fees")
        assert math.isclose(a.sst[h.strat.id, rk.SS_FEES], fees, rel_tol=1e-9)
        assert math.isclose(a.pst[h.strat.id, aapl_id, rk.PS_FEES], fees, rel_tol=1e-9)
        g = a.gst
        assert h.engine.breakers.day_pnl() == g[rk.GS_REALISED] + g[rk.GS_UNREAL] - fees
        pos = h.engine.portfolio.position(h.strat.id, aapl_id)
        assert math.isclose(pos.commission, fees, rel_tol=1e-9)
