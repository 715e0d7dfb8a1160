"""Streaming under load: the gateway simulator serves requests between slices of a flood and
holds a slow client's market data back; the client answers order events ahead of a read's
market data.

Behaviour only (which messages come, in what order, what state results), never how fast.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import numpy as np
import pytest
from ibapi.contract import Contract
from ibapi.server_versions import MAX_CLIENT_VER

from adapters.ib.connection import ClientSession
from adapters.ib.decode import PICK_MAX, HotDecoder
from adapters.ib.gateway_sim.core import GatewayCore, Session
from adapters.ib.gateway_sim.responses import ResponseEncoder
from tests.ib_sim_support import RecordingApp, sim_config

VERSIONS = [176, MAX_CLIENT_VER]
MS = 1_000_000


@pytest.fixture(params=VERSIONS, ids=lambda v: f"v{v}")
def version(request: pytest.FixtureRequest) -> int:
    return request.param


class Clock:
    """A clock that moves only when told to, or by ``tick`` on every reading."""

    def __init__(self) -> None:
        self.now = 1_750_000_000 * 10**9
        self.tick = 0

    def __call__(self) -> int:
        self.now += self.tick
        return self.now


def es() -> Contract:
    c = Contract()
    c.symbol, c.secType, c.exchange, c.currency = "ES", "FUT", "CME", "USD"
    c.lastTradeDateOrContractMonth = "202506"
    return c


class Pair:
    """A sans-I/O client (``ClientSession`` with ibapi's decoder) wired to a core ``Session``."""

    def __init__(self, version: int, events_per_second: float = 10_000.0) -> None:
        self.clock = Clock()
        cfg = sim_config(
            gateway={"max_server_version": version},
            market={"events_per_second": events_per_second},
            pacing={"enabled": False},
        )
        self.core = GatewayCore(cfg, clock=self.clock)
        self.app = RecordingApp()
        self.client = ClientSession(self.app, 5, max_version=version)
        self.s: Session = self.core.open_session("test")
        self.s.receive(self.client.hello())
        self.pump()
        assert self.client.ready

    def pump(self) -> None:
        """Deliver what each side has written until both are quiet."""
        while True:
            out = self.s.take_output()
            if out:
                self.client.receive(out)
            req = self.client.take_output()
            if req:
                self.s.receive(req)
            if not out and not req:
                return

    def mark(self) -> int:
        return len(self.app.calls)

    def names(self, since: int) -> list[str]:
        """Callbacks since ``since`` (ibapi's extra ``...ProtoBuf`` ones left out)."""
        return [c.name for c in self.app.calls[since:] if not c.name.endswith("ProtoBuf")]


def depth_book(app: RecordingApp, req_id: int) -> dict[int, list[tuple[float, Decimal]]]:
    sides: dict[int, list[tuple[float, Decimal]]] = {0: [], 1: []}
    for rid, pos, op, side, price, size in app.all("updateMktDepth"):
        if rid != req_id:
            continue
        levels = sides[side]
        if op == 0:
            levels.insert(pos, (price, size))
        elif op == 1:
            levels[pos] = (price, size)
        else:
            levels.pop(pos)
    return sides


def market_top(core: GatewayCore, rows: int) -> dict[int, list[tuple[float, Decimal]]]:
    b = core.market.book(core.market.resolve(es())[0].con_id)
    return {0: b.asks[:rows], 1: b.bids[:rows]}


def test_a_budgeted_advance_leaves_the_rest_due_and_a_request_is_answered_between(
    version: int,
) -> None:
    p = Pair(version)
    p.client.client.reqMktDepth(7, es(), 10, False, [])
    p.pump()
    p.clock.now += 50 * MS  # 500 market events due at 10k/s
    p.clock.tick = 1  # every reading of the clock spends the (zero) budget
    taken = p.core.steps_taken
    assert p.core.advance(budget_ns=0) is True  # one turn, the rest still due
    first = p.core.steps_taken - taken
    assert 0 < first < 500
    p.pump()
    mark = p.mark()
    p.client.client.reqCurrentTime()
    p.pump()
    # Answered at once, with none of the remaining market events ahead of it.
    assert p.names(mark) == ["currentTime"]
    while p.core.advance(budget_ns=0):
        p.pump()
    p.pump()
    assert p.core.steps_taken - taken == 500
    assert p.core.steps_dropped == 0
    assert depth_book(p.app, 7) == market_top(p.core, 10)


def test_a_held_client_gets_answers_but_no_market_data_then_catches_up(version: int) -> None:
    p = Pair(version)
    p.client.client.reqMktDepth(7, es(), 10, False, [])
    p.pump()
    p.core.hold_market_data(p.s)
    assert p.core.status()["market_data_held"] == 1
    mark = p.mark()
    p.clock.now += 20 * MS
    p.core.advance()
    p.client.client.reqCurrentTime()
    p.pump()
    assert p.names(mark) == ["currentTime"]  # answers go, market data does not
    assert p.s.held_back > 0
    p.core.release_market_data(p.s)
    p.pump()
    assert "updateMktDepth" in p.names(mark)
    assert depth_book(p.app, 7) == market_top(p.core, 10)  # caught up by the diff
    p.clock.now += 20 * MS
    p.core.advance()
    p.pump()
    assert depth_book(p.app, 7) == market_top(p.core, 10)
    assert p.core.status()["market_data_held"] == 0


def test_depth_streams_stay_exact_through_holds_faults_and_takes(version: int) -> None:
    """A whole-book subscription gets the market's own rows (it goes live); a partial one is
    diffed. Either client book must equal the market whenever data flows, across holds (a
    live stream is frozen at the next advance), a farm blip, stopped data and orders that
    take liquidity between steps."""
    import random

    from ibapi.order import Order

    p = Pair(version)
    p.client.client.reqMktDepth(7, es(), 10, False, [])  # ES has 10 levels: the whole book
    p.client.client.reqMktDepth(8, es(), 4, False, [])
    p.pump()
    rng = random.Random(5)
    held = stopped = False
    live_seen = frozen = 0
    order_id = 100
    for _ in range(400):
        was_live = p.s.subs[7].live
        action = rng.choice(["md", "md", "md", "hold", "release", "take", "blip", "stop"])
        if action == "md":
            p.clock.now += rng.randint(1, 4) * MS
            p.core.advance()
        elif action == "hold":
            p.core.hold_market_data(p.s)
            held = True
        elif action == "release":
            p.core.release_market_data(p.s)
            held = False
        elif action == "take":
            o = Order()
            o.action, o.orderType = rng.choice(["BUY", "SELL"]), "MKT"
            o.totalQuantity = Decimal(rng.randint(1, 40))
            p.client.client.placeOrder(order_id, es(), o)
            order_id += 1
        elif action == "blip" and not p.core.farm_down:
            p.core.fault("farm_blip", seconds=0.003)
        elif action == "stop":
            stopped = not stopped
            p.core.fault("stop_market_data" if stopped else "resume_market_data", symbol="ES")
        p.pump()
        live_seen += p.s.subs[7].live
        frozen += was_live and not p.s.subs[7].live
        assert not p.s.subs[8].live  # it sees 4 of 10 levels: always diffed
        flowing = not (held or stopped or p.core.farm_down)
        if action == "md" and flowing:
            assert depth_book(p.app, 7) == market_top(p.core, 10)
            assert depth_book(p.app, 8) == market_top(p.core, 4)
    p.core.release_market_data(p.s)
    if stopped:
        p.core.fault("resume_market_data", symbol="ES")
    p.clock.now += 10 * MS
    p.core.advance()
    p.pump()
    assert depth_book(p.app, 7) == market_top(p.core, 10)
    assert depth_book(p.app, 8) == market_top(p.core, 4)
    assert live_seen > 40 and frozen > 5  # both ways through the forwarding were taken


# ---- the client: order events ahead of the read's market data ---------------------------------


class _Order(RecordingApp):
    """Records callbacks and, with them, how many row batches had arrived before."""

    def __init__(self) -> None:
        super().__init__()
        self.rows_seen = 0

    def _record(self, name: str, args: tuple[Any, ...]) -> None:
        super()._record(name, (*args, self.rows_seen))


def test_order_events_are_dispatched_before_the_reads_market_data(version: int) -> None:
    app = _Order()
    batches: list[int] = []

    def on_rows(rows: np.ndarray, raw: np.ndarray) -> None:
        assert raw.shape == (len(rows), rows.dtype.itemsize)
        batches.append(len(rows))
        app.rows_seen += 1

    session = ClientSession(app, 5, max_version=version, on_rows=on_rows)
    session.order_ids_from = 4096
    session.receive(b"\0\0\0\x1a" + f"{version}\0".encode() + b"20250602 10:00:00 EST\0")
    assert session.hot is not None
    enc = ResponseEncoder(version, True)
    read = b"".join(
        [
            enc.update_mkt_depth(7, 0, 1, 1, 100.25, Decimal(3)),
            enc.error(7, 317, "Market depth data has been RESET", 0),
            enc.order_status(
                5000, "Cancelled", Decimal(0), Decimal(1), 0.0, 99, 0, 0.0, 5, "", 0.0
            ),
            enc.update_mkt_depth(7, 0, 1, 0, 100.50, Decimal(4)),
            enc.error(5000, 202, "Order Canceled - reason:", 0),
        ]
    )
    session.receive(read)
    assert batches == [2]  # the rows still go in one batch
    (status,) = app.all("orderStatus")
    app.calls = [c for c in app.calls if not c.name.endswith("ProtoBuf")]
    assert status[0] == 5000 and status[-1] == 0  # before the rows
    by_code = {args[2]: args[-1] for args in app.all("error")}
    assert by_code[202] == 0  # an order's error goes with the order stream
    assert by_code[317] == 1  # a market-data error keeps its place after the rows


class _Undecoded(_Order):
    """Also records, with each callback, how many received bytes were still undecoded (the
    last two arguments recorded: those bytes, then the row batches before)."""

    session: ClientSession

    def _record(self, name: str, args: tuple[Any, ...]) -> None:
        assert self.session.hot is not None
        super()._record(name, (*args, self.session.hot.buffered))


def _hot_session(version: int, app: _Undecoded, batches: list[int]) -> ClientSession:
    def on_rows(rows: np.ndarray, raw: np.ndarray) -> None:
        batches.append(len(rows))
        app.rows_seen += 1

    session = ClientSession(app, 5, max_version=version, on_rows=on_rows)
    app.session = session
    session.order_ids_from = 4096
    session.receive(b"\0\0\0\x1a" + f"{version}\0".encode() + b"20250602 10:00:00 EST\0")
    return session


def _depth(enc: ResponseEncoder, n: int, base: float) -> list[bytes]:
    return [enc.update_mkt_depth(7, i % 10, 1, 1, base + i / 4, Decimal(i + 1)) for i in range(n)]


def _status(enc: ResponseEncoder, order_id: int) -> bytes:
    return enc.order_status(
        order_id, "Cancelled", Decimal(0), Decimal(1), 0.0, 99, 0, 0.0, 5, "", 0.0
    )


def test_a_big_reads_order_events_go_before_its_market_data_is_decoded(version: int) -> None:
    """Past ``_PICK_BYTES`` the order events are picked out of the read by id and dispatched
    while its market data is still undecoded bytes; each once, and the rest as before."""
    app = _Undecoded()
    batches: list[int] = []
    session = _hot_session(version, app, batches)
    enc = ResponseEncoder(version, True)
    read = b"".join(
        [
            *_depth(enc, 150, 100.0),
            enc.error(7, 317, "Market depth data has been RESET", 0),
            _status(enc, 5000),
            *_depth(enc, 150, 200.0),
            enc.error(5000, 202, "Order Canceled - reason:", 0),
            _status(enc, 5001),
        ]
    )
    assert len(read) > 4 * 1024
    session.receive(read)
    assert batches == [300]  # every row, once, in one batch
    app.calls = [c for c in app.calls if not c.name.endswith("ProtoBuf")]
    statuses = app.all("orderStatus")
    assert [s[0] for s in statuses] == [5000, 5001]  # once each, in wire order
    for s in statuses:
        assert s[-1] == 0 and s[-2] > 4 * 1024  # before the rows: the read not decoded yet
    errors = {args[2]: args[-2:] for args in app.all("error")}  # (undecoded, rows before)
    assert errors[202][0] > 0 and errors[202][1] == 0  # the order's error with its stream
    assert errors[317] == (0, 1)  # the market-data error after the rows, all decoded
    assert session.hot is not None and session.hot.buffered == 0


def test_a_small_read_is_decoded_before_its_order_events_go(version: int) -> None:
    """Under ``_PICK_BYTES`` nothing is picked: the read is decoded, then the order events go
    ahead of its rows as before."""
    app = _Undecoded()
    batches: list[int] = []
    session = _hot_session(version, app, batches)
    enc = ResponseEncoder(version, True)
    session.receive(b"".join([*_depth(enc, 3, 100.0), _status(enc, 5000)]))
    app.calls = [c for c in app.calls if not c.name.endswith("ProtoBuf")]
    ((*_, undecoded, rows_before),) = app.all("orderStatus")
    assert (rows_before, undecoded) == (0, 0)
    assert batches == [3]


def test_picked_order_events_stay_once_each_across_batches_and_past_the_pick_limit(
    version: int,
) -> None:
    """A decoder batch holds ``capacity`` frames: frame positions count from each batch's
    first, and only the first batch's picked ones are skipped at decode; past ``PICK_MAX``
    the rest go after the rows, still once each and in order."""
    app = _Undecoded()
    batches: list[int] = []
    session = _hot_session(version, app, batches)
    session.hot = HotDecoder(version, capacity=8)
    enc = ResponseEncoder(version, True)
    frames = [*_depth(enc, 40, 100.0)]
    # Order events at positions 3 and 11: the second batch's position 3 as well.
    frames.insert(3, _status(enc, 5000))
    frames.insert(11, _status(enc, 5001))
    session.receive(b"".join(frames))
    app.calls = [c for c in app.calls if not c.name.endswith("ProtoBuf")]
    assert [s[0] for s in app.all("orderStatus")] == [5000, 5001]
    assert sum(batches) == 40

    app.calls, batches[:] = [], []
    session.hot = HotDecoder(version)
    many = [x for i in range(PICK_MAX + 10) for x in (_status(enc, 6000 + i), *_depth(enc, 2, 1.0))]
    session.receive(b"".join(many))
    app.calls = [c for c in app.calls if not c.name.endswith("ProtoBuf")]
    assert [s[0] for s in app.all("orderStatus")] == [6000 + i for i in range(PICK_MAX + 10)]
    assert batches == [2 * (PICK_MAX + 10)]


# ---- the simulator's priority lane: answers ahead of streamed market data -----------------------


def test_a_slice_ends_after_one_turn_when_a_request_is_waiting(version: int) -> None:
    p = Pair(version)
    p.client.client.reqMktDepth(7, es(), 10, False, [])
    p.pump()
    p.clock.now += 50 * MS  # 500 market events due, budget never spent (the clock stands)
    state = {"polls": 0, "waiting": False}

    def waiting() -> bool:
        state["polls"] += 1
        if state["polls"] == 3:  # a request arrives after two turns
            state["waiting"] = True
        return state["waiting"]

    p.core.input_pending = waiting
    taken = p.core.steps_taken
    assert p.core.advance(budget_ns=10**12) is True  # cut short, the rest still due
    assert 0 < p.core.steps_taken - taken < 500
    state["waiting"] = False  # the server reads it
    while p.core.advance(budget_ns=10**12):
        pass
    p.pump()
    assert p.core.steps_taken - taken == 500  # nothing lost by the cut
    assert depth_book(p.app, 7) == market_top(p.core, 10)


def test_answers_are_written_ahead_of_streamed_market_data(version: int) -> None:
    p = Pair(version)
    p.client.client.reqMktDepth(7, es(), 10, False, [])
    p.pump()
    p.core.input_pending = lambda: False  # as under the server: a budgeted advance streams
    p.clock.now += 5 * MS
    assert p.core.advance(budget_ns=10**12) is False
    assert p.s._md_out and not p.s._out  # the slice's market data, not written yet
    mark = p.mark()
    p.client.client.reqCurrentTime()
    p.s.receive(p.client.take_output())
    p.client.receive(p.s.take_answers())
    assert p.names(mark) == ["currentTime"]  # the answer alone, ahead of the market data
    p.pump()
    assert set(p.names(mark)[1:]) == {"updateMktDepth"}
    assert depth_book(p.app, 7) == market_top(p.core, 10)


def test_a_cancel_answers_with_order_status_first_and_urgently(version: int) -> None:
    from ibapi.order import Order
    from ibapi.order_cancel import OrderCancel

    p = Pair(version)
    urgent: list[bytes] = []
    p.core.urgent = lambda s: urgent.append(s.take_answers())
    o = Order()
    o.action, o.totalQuantity, o.orderType, o.lmtPrice = "BUY", Decimal(1), "LMT", 1.0
    p.client.client.placeOrder(100, es(), o)
    p.pump()
    mark = p.mark()
    urgent.clear()
    p.client.client.cancelOrder(100, OrderCancel())
    p.s.receive(p.client.take_output())
    assert urgent, "the server was asked to write the answer at once"
    first = p.mark()
    p.client.receive(b"".join(urgent))
    assert p.names(first) == ["orderStatus", "error"]  # no openOrder encoded yet
    assert p.app.all("orderStatus")[-1][1] == "Cancelled"
    p.pump()
    assert p.names(mark) == ["orderStatus", "error", "openOrder"]


def test_the_cancel_answer_warm_up_sends_and_changes_nothing(version: int) -> None:
    from ibapi.order import Order
    from ibapi.order_cancel import OrderCancel

    p = Pair(version)
    p.core.warm_answers()  # no cancel seen yet: nothing to re-run
    o = Order()
    o.action, o.totalQuantity, o.orderType, o.lmtPrice = "BUY", Decimal(1), "LMT", 1.0
    for oid in (100, 101):
        p.client.client.placeOrder(oid, es(), o)
    p.pump()
    p.client.client.cancelOrder(100, OrderCancel())
    frame = p.client.take_output()
    p.s.receive(frame)
    p.pump()
    assert p.s.last_cancel == frame[4:]  # the frame's payload, kept to re-run
    before, mark = p.core.ledger(), p.mark()
    for _ in range(3):
        p.core.warm_answers()
    assert not p.s.take_output() and not p.s.take_answers()
    assert p.core.ledger() == before and p.mark() == mark
    p.client.client.cancelOrder(101, OrderCancel())  # the real path still answers
    p.pump()
    assert p.names(mark) == ["orderStatus", "error", "openOrder"]
    assert p.app.all("orderStatus")[-1][:2] == (101, "Cancelled")
    p.s.last_cancel = b"\x00\x00"  # unreadable: dropped, not raised
    p.core.warm_answers()
    assert p.s.last_cancel == b""
