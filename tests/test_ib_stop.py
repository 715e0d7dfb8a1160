"""Stopping an IB venue whose supervisor is still connecting: the operator's stop during
start-up (``run_app`` lets a signal interrupt it) must end, whatever await the cancel lands on.

Against the IB Gateway simulator over loopback."""

from __future__ import annotations

import asyncio

from adapters.ib.gateway_sim.server import GatewaySimServer
from adapters.ib.venue import IBVenue
from engine.clock import LiveClock
from engine.config import IBVenueConfig, RiskConfig
from engine.instruments import AssetClass, InstrumentRegistry
from engine.runtime import Engine
from tests.ib_sim_support import sim_config


async def test_a_stop_that_lands_as_ib_qualifies_a_contract_still_ends_the_venue():
    """The stop's cancel reaches the supervisor in the same loop turn as IB's contract
    details (its ``wait_for`` in qualification): Python 3.11's ``wait_for`` then returns the
    result and drops the cancel, and the supervisor went on to wait on the session for good,
    so ``stop`` (and the process) never ended."""
    server = GatewaySimServer(sim_config())
    await server.start()
    loop = asyncio.get_running_loop()
    clock = LiveClock()
    clock.bind(loop)
    registry = InstrumentRegistry()
    registry.add("AAPL", "IB", AssetClass.STOCK, 0.01)
    venue = IBVenue("IB", IBVenueConfig(port=server.port, reconnect_initial_s=0.05))
    Engine(registry, {"IB": venue}, clock, risk=RiskConfig(equity=1e9))
    stopping: list[asyncio.Task] = []
    request = venue.contracts.request

    def stop_as_it_answers(spec):
        fut = request(spec)
        if not stopping:  # before the supervisor's wait_for hooks the future
            fut.add_done_callback(lambda _: stopping.append(loop.create_task(venue.stop())))
        return fut

    venue.contracts.request = stop_as_it_answers  # type: ignore[method-assign]
    try:
        await asyncio.wait_for(venue.start(), 20)
        while not stopping:
            await asyncio.sleep(0.005)
        await asyncio.wait_for(asyncio.shield(stopping[0]), 3)  # it takes milliseconds
        assert venue._task is not None and venue._task.done()
        assert venue.conn is None or not venue.conn.session.ready or venue._stopping
    finally:
        if venue._task is not None and not venue._task.done():
            venue._task.cancel()  # the unfixed venue's supervisor: let the test end
        await server.stop()
