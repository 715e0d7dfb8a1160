"""IBVenue's order side against the gateway simulator over loopback: answers that race, IB
errors, and what a dropped connection or a restart must not lose.

Where IB's messages must arrive in an order the simulator does not produce, the simulator's own
message is handed to the venue's wrapper ahead of the simulator's delayed copy.
"""

from __future__ import annotations

from ibapi.const import UNSET_LONG
from ibapi.message import IN
from ibapi.protobuf.OrderStatus_pb2 import OrderStatus as OrderStatusProto

from engine.messages import EventKind
from tests.ib_venue_support import IBHarness, until
from tests.test_ib_venue_faults import (
    rest_px,
    settled,
)

A, F, C, R, M, X, COMM = (
    EventKind.ACCEPTED,
    EventKind.FILL,
    EventKind.CANCELLED,
    EventKind.REJECTED,
    EventKind.MODIFIED,
    EventKind.CANCEL_REJECTED,
    EventKind.COMMISSION,
)


async def at_sim(h: IBHarness, *coids: int) -> None:
    await until(
        lambda: all(str(c) in {o.order.orderRef for o in h.sim_orders()} for c in coids),
        5,
        "the orders at the simulator",
    )


# ---- ids IB did not send ------------------------------------------------------------------------


def order_status_without_perm_id(order_id: int) -> tuple[int, bytes]:
    """A protobuf orderStatus (server version >= 201) without a permId: ibapi hands the venue
    UNSET_LONG for it."""
    pb = OrderStatusProto(orderId=order_id, status="PreSubmitted", filled="0", remaining="1")
    return IN.ORDER_STATUS + 200, pb.SerializeToString()


async def test_a_perm_id_missing_from_a_protobuf_order_status_is_not_taken() -> None:
    async with IBHarness() as h:  # the newest server version: orderStatus is protobuf
        v = h.venue
        await settled(h)
        h.fault("latency", ms=300)
        coids = [h.strat.buy("AAPL", 1, rest_px(h)) for _ in range(2)]
        h.engine.pump()
        await at_sim(h, *coids)
        for coid in coids:
            assert h.venue.conn.session._order_status(
                *order_status_without_perm_id(h.sim_order(coid).order_id)
            )
        h.engine.pump()
        assert UNSET_LONG not in v._by_perm
        assert [h.strat.of(c)[0].venue_order_id for c in coids] == [
            h.sim_order(c).order_id for c in coids
        ]
        for coid in coids:
            h.strat.cancel(coid)
            await h.wait_kind(coid, C)
            (ev,) = [e for e in h.strat.of(coid) if e.kind == C]
            assert ev.venue_order_id == h.sim_order(coid).perm_id
