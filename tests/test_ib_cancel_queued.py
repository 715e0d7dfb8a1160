"""A cancel of an order whose placeOrder still waits in the pacer (the burst used up) must not
overtake it: IB would answer 10147 (no such order) and the order would then go out and work,
after the engine had asked for it to be cancelled (at a stop: left working at IB). Against
the IB Gateway simulator over loopback."""

from __future__ import annotations

from engine.messages import EventKind
from tests.ib_venue_support import IBHarness, until

C = EventKind.CANCELLED


async def test_a_cancel_follows_its_order_still_queued_in_the_pacer():
    async with IBHarness() as h:
        await h.book_ready("AAPL")
        await until(lambda: h.venue.pacer.pending == 0, 10, "start-up requests sent")
        price = round(h.mid("AAPL") * 0.95, 2)  # rests: nothing fills
        coids = [h.strat.buy("AAPL", 1, price) for _ in range(8)]  # more than the burst of 5
        last = coids[-1]
        assert h.venue.pacer.pending > 0, "the last orders wait for the pacer's tokens"
        h.strat.cancel(last)
        await h.wait_kind(last, C, timeout=10)
        assert h.sim_order(last) is None or h.sim_order(last).status == "Cancelled"
        assert not [e for e in h.venue.errors if e[1] == 10147]
