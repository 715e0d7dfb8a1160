"""placeOrder frames: ``adapters.ib.wire`` against ibapi's EClient and ib_async.

Every call encodes a new order of one shape (a LMT DAY stock order with an account), as
``IBVenue`` sends it: a new order id, quantity, limit price *and orderRef* each call (the
venue writes its client order id, ``str`` of an incrementing integer, into ``orderRef``),
written into the same Order object inside the measured round, for ours and for the anchors.

1. ``test_encode_place_order_template``: the generic ``encode_place_order`` at 176 (text) and
   225 (protobuf), which checks the whole shape on every call.
2. ``test_prepared_place_order_encode``: ``PlaceOrderTemplate.encode`` from
   ``prepare_place_order``, the path ``IBVenue`` takes for orders without extras; the same
   values, the four fields passed as arguments (and, as in the venue, also written into the
   Order object, so the rounds do the same work besides encoding).
3. ``test_anchor_eclient_place_order``: ``EClient.placeOrder`` with the same arguments, its
   ``sendMsg`` going to a connection that drops the frame. Target: ours >= 10x faster and
   <= 3 µs, for each of 1 and 2.
4. ``test_anchor_ib_async_place_order``: ib_async's ``Client.placeOrder`` at 178 (its highest
   version), the frame captured by a stand-in connection (no socket, throttling off, so
   nothing waits on the event loop). Target: ours at 176 >= 8x faster. Skipped without
   ib_async.

``extra_info`` holds ``messages_per_round`` (1) and, once measured, ``ns_per_order``; the
anchors add ``wire_speedup`` (their ns per order over the generic encoder's at the same
version, 176 for ib_async) and ``prepared_speedup`` (the same over the prepared path's).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from decimal import Decimal
from typing import Any

import pytest
from ibapi.client import EClient
from ibapi.contract import Contract
from ibapi.order import Order
from ibapi.wrapper import EWrapper

from adapters.ib.wire import cache_stats, clear_cache, encode_place_order, prepare_place_order

VERSIONS = (176, 225)
IB_ASYNC_VERSION = 178  # ib_async's MaxClientVersion
N_VALUES = 1024

_NS: dict[str, float] = {}  # ns per order, by test, for the anchors' ratios


def _values() -> list[tuple[int, Decimal, float, str]]:
    """New (order id, quantity, limit price, orderRef) per call, cycled; the ref is a client
    order id as the venue writes it."""
    return [
        (1_000 + i, Decimal(1 + i % 50), 100.0 + (i % 400) * 0.01, str(30_119_742_928_846_852 + i))
        for i in range(N_VALUES)
    ]


def _contract() -> Contract:
    c = Contract()
    c.conId, c.symbol, c.secType, c.exchange = 265598, "AAPL", "STK", "SMART"
    c.primaryExchange, c.currency = "NASDAQ", "USD"
    return c


def _order() -> Order:
    o = Order()
    o.action, o.orderType, o.tif, o.account = "BUY", "LMT", "DAY", "DU123456"
    o.totalQuantity, o.lmtPrice, o.orderRef = Decimal(1), 100.0, "1"
    return o


class _NullConnection:
    def sendMsg(self, msg: bytes) -> None:
        pass

    def isConnected(self) -> bool:
        return True


class _Capture(_NullConnection):
    def __init__(self) -> None:
        self.frames: list[bytes] = []

    def sendMsg(self, msg: bytes) -> None:
        self.frames.append(msg)


def _eclient(version: int, conn: _NullConnection) -> EClient:
    client = EClient(EWrapper())
    client.conn, client.serverVersion_ = conn, version
    client.setConnState(EClient.CONNECTED)
    return client


def _record(benchmark, name: str, ours: str | None = None, prepared: str | None = None) -> None:
    benchmark.extra_info["messages_per_round"] = 1
    if not benchmark.stats:  # --benchmark-disable: nothing measured
        return
    ns = benchmark.stats.stats.median * 1e9
    benchmark.extra_info["ns_per_order"] = ns
    _NS[name] = ns
    if ours in _NS:
        benchmark.extra_info["wire_speedup"] = ns / _NS[ours]
    if prepared in _NS:
        benchmark.extra_info["prepared_speedup"] = ns / _NS[prepared]


# The measured calls, one per encoder: each takes the next values of ``_values()`` (and writes
# them into its Order, as the venue does) and encodes. ``benchmarks.wire_interleaved`` times the
# same calls interleaved.


def generic_call(version: int, contract: Contract, order: Order) -> Callable[[], bytes]:
    step = itertools.cycle(_values()).__next__

    def go() -> bytes:
        order_id, order.totalQuantity, order.lmtPrice, order.orderRef = step()
        return encode_place_order(version, order_id, contract, order)

    return go


def prepared_call(encode: Callable[..., bytes], order: Order) -> Callable[[], bytes]:
    step = itertools.cycle(_values()).__next__

    def go() -> bytes:
        order_id, qty, lmt, ref = step()
        order.totalQuantity, order.lmtPrice, order.orderRef = qty, lmt, ref  # as the venue does
        return encode(order_id, qty, lmt, ref)

    return go


def eclient_call(eclient: EClient, contract: Contract, order: Order) -> Callable[[], None]:
    place = eclient.placeOrder
    step = itertools.cycle(_values()).__next__

    def go() -> None:
        order_id, order.totalQuantity, order.lmtPrice, order.orderRef = step()
        place(order_id, contract, order)

    return go


def ib_async_call() -> tuple[Any, Callable[[], None]]:
    """ib_async's ``Client`` at 178 (no socket: set its ``conn``) and its placeOrder call.
    Raises ImportError without ib_async."""
    import ib_async
    from ib_async.client import Client

    contract = ib_async.Stock("AAPL", "SMART", "USD", primaryExchange="NASDAQ", conId=265598)
    order = ib_async.LimitOrder("BUY", 1, 100.0, tif="DAY", account="DU123456", orderRef="1")
    client = Client(wrapper=None)
    client._serverVersion = IB_ASYNC_VERSION
    client.connState = Client.CONNECTED
    client.MaxRequests = 0  # no throttling: every frame goes out at once, nothing waits
    step = itertools.cycle(_values()).__next__

    def go() -> None:
        order_id, order.totalQuantity, order.lmtPrice, order.orderRef = step()
        client.placeOrder(order_id, contract, order)

    return client, go


@pytest.mark.parametrize("version", VERSIONS)
def test_encode_place_order_template(benchmark, version: int) -> None:
    """The generic encoder: a cached shape, new id, quantity, price and ref each call."""
    contract, order = _contract(), _order()
    clear_cache()
    reference = _Capture()
    eclient = _eclient(version, reference)
    for order_id, *fields in _values():  # the frames are ibapi's
        order.totalQuantity, order.lmtPrice, order.orderRef = fields
        eclient.placeOrder(order_id, contract, order)
        assert encode_place_order(version, order_id, contract, order) == reference.frames[-1]
    assert cache_stats().ibapi_encodes == 1  # only the shape's first order went to ibapi
    benchmark.extra_info["target_ns"] = 3000
    benchmark(generic_call(version, contract, order))
    _record(benchmark, f"wire_{version}")


@pytest.mark.parametrize("version", VERSIONS)
def test_prepared_place_order_encode(benchmark, version: int) -> None:
    """The venue's path: a template prepared once for the shape, four fields per call."""
    contract, order = _contract(), _order()
    clear_cache()
    template = prepare_place_order(version, contract, order)
    assert template.templated
    encode = template.encode
    reference = _Capture()
    eclient = _eclient(version, reference)
    built = cache_stats().ibapi_encodes
    for order_id, *fields in _values():  # the frames are ibapi's
        order.totalQuantity, order.lmtPrice, order.orderRef = fields
        eclient.placeOrder(order_id, contract, order)
        assert encode(order_id, *fields) == reference.frames[-1]
    assert cache_stats().ibapi_encodes == built  # none of them went to ibapi
    benchmark.extra_info["target_ns"] = 3000
    benchmark(prepared_call(encode, order))
    _record(benchmark, f"prepared_{version}")


@pytest.mark.parametrize("version", VERSIONS)
def test_anchor_eclient_place_order(benchmark, version: int) -> None:
    """ibapi's EClient.placeOrder, same arguments, its frame dropped by the connection."""
    contract, order = _contract(), _order()
    benchmark(eclient_call(_eclient(version, _NullConnection()), contract, order))
    _record(benchmark, f"eclient_{version}", ours=f"wire_{version}", prepared=f"prepared_{version}")


def test_anchor_ib_async_place_order(benchmark) -> None:
    """ib_async's Client.placeOrder at 178, the frame captured without a socket."""
    pytest.importorskip("ib_async")
    client, go = ib_async_call()
    client.conn = capture = _Capture()
    go()
    assert len(capture.frames) == 1 and capture.frames[0][4:6] == b"3\0"  # placeOrder, text ids
    client.conn = _NullConnection()
    benchmark(go)
    _record(benchmark, "ib_async_178", ours="wire_176", prepared="prepared_176")
