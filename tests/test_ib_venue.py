"""IBVenue end to end against the gateway simulator over loopback: the happy paths.

Connect, qualify, subscribe (depth into the book kernel), trade to a fill with its commission,
cancel, modify, positions and account values, held-back orders, ids and orderRef.
"""

from __future__ import annotations

import asyncio
import copy
import math
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from ibapi import comm
from ibapi.client import EClient
from ibapi.const import UNSET_DOUBLE
from ibapi.order import Order as IbOrder
from ibapi.server_versions import MAX_CLIENT_VER
from ibapi.wrapper import EWrapper

from adapters.ib.gateway_sim.requests import PlaceOrder, parse_request
from adapters.ib.pacing import ORDER
from engine.messages import Algo, BookSide, EventKind, OrderType, TimeInForce
from engine.orders import OrderState
from tests.ib_sim_support import SentFrames
from tests.ib_venue_support import IBHarness, until

A, F, C, R, M, X = (
    EventKind.ACCEPTED,
    EventKind.FILL,
    EventKind.CANCELLED,
    EventKind.REJECTED,
    EventKind.MODIFIED,
    EventKind.CANCEL_REJECTED,
)


@pytest.mark.parametrize("version", [176, 200, MAX_CLIENT_VER])
async def test_connect_qualify_subscribe_trade_cancel_positions(version: int) -> None:
    async with IBHarness(sim={"gateway": {"max_server_version": version}}) as h:
        v = h.venue
        assert v.server_version == version
        # Qualified from contract details: conId and IB's order types reach the registry.
        aapl = h.registry.resolve("AAPL")
        assert aapl.con_id == 265598 and "LMT" in aapl.order_types
        assert v.qualified[aapl.id].min_tick == pytest.approx(0.01)
        # L2 depth arrives as IB row operations and builds the engine's book.
        await h.book_ready("AAPL")

        def same_as_sim() -> bool:  # between two market events the books must agree
            sim_book = h.core().market.book(265598)
            view = h.strat.book("AAPL")
            return all(
                [(round(p, 2), int(q)) for p, q in view.depth(side, 10)]
                == [(round(p, 2), int(q)) for p, q in levels[:10]]
                for side, levels in ((BookSide.BID, sim_book.bids), (BookSide.ASK, sim_book.asks))
            )

        await until(same_as_sim, 5, "the engine's AAPL book equal to the simulator's")
        # A marketable limit buy fills; the commission arrives with or after the fill.
        px = round(h.mid("AAPL") + 0.50, 2)
        coid = h.strat.buy("AAPL", 10, px)
        await h.wait_kind(coid, F)
        kinds = h.kinds(coid)
        assert kinds[0] == A and kinds.count(A) == 1
        fills = h.strat.fills(coid)
        assert sum(f.fill_lots for f in fills) == 10
        assert all(f.exec_id for f in fills)
        await until(lambda: h.engine.portfolio.position(0, aapl.id).commission > 0, 3, "fee")
        # orderRef carries our client order id; the venue order id becomes IB's permId.
        sim_order = h.sim_order(coid)
        assert fills[-1].venue_order_id == sim_order.perm_id
        # A resting order is cancelled.
        low = round(h.mid("AAPL") * 0.97, 2)
        rest = h.strat.buy("AAPL", 5, low)
        await h.wait_kind(rest, A)
        h.strat.cancel(rest)
        await h.wait_kind(rest, C)
        assert h.engine.tracker.finished[rest].state is OrderState.CANCELLED
        # Positions and account values from IB sit beside the engine's own.
        broker = h.engine.portfolio.broker["IB"]
        await until(lambda: broker.positions.get(aapl.id, (0, 0))[0] == 10, 5, "IB position")
        assert h.engine.portfolio.net_lots(aapl.id) == 10
        assert broker.value("NetLiquidation") is not None


async def test_modify_changes_price_and_quantity_at_ib() -> None:
    async with IBHarness() as h:
        await h.book_ready("AAPL")
        low = round(h.mid("AAPL") * 0.97, 2)
        coid = h.strat.buy("AAPL", 5, low)
        await h.wait_kind(coid, A)
        h.strat.modify(coid, qty=7, price=round(low - 0.05, 2))
        await h.wait_kind(coid, M)
        order = h.engine.tracker.get(coid)
        assert order is not None and order.qty_lots == 7
        sim = h.sim_order(coid)
        assert float(sim.order.totalQuantity) == 7
        assert sim.order.lmtPrice == pytest.approx(low - 0.05)
        assert h.venue.orders_sent == 1  # a modify is the same IB order, not a new one


async def test_a_modify_moves_a_stop_order_trigger_at_ib() -> None:
    async with IBHarness() as h:
        await h.book_ready("AAPL")
        mid = h.mid("AAPL")
        far = round(mid * 0.90, 2)
        coid = h.strat.sell("AAPL", 3, None, order_type=OrderType.STOP, stop=far)
        await h.wait_kind(coid, A)
        # Only the trigger moves, still below the market: the same IB order, with the new
        # auxPrice, confirmed as MODIFIED, and not triggered.
        nearer = round(mid * 0.95, 2)
        h.strat.modify(coid, stop_price=nearer)
        await h.wait_kind(coid, M)
        assert h.sim_order(coid).order.auxPrice == pytest.approx(nearer)
        order = h.engine.tracker.get(coid)
        assert order is not None and order.qty_lots == 3
        assert order.extras.stop_price == nearer and order.extras.stop_ticks == round(nearer * 100)
        assert h.venue._by_coid[coid].extras == order.extras  # what a later modify re-sends
        assert F not in h.kinds(coid)
        # Moved to above the last price, a sell stop triggers at once and fills (the fill may
        # come before IB's word on the modify: the order is then done, FILLED).
        above = round(h.mid("AAPL") * 1.05, 2)
        h.strat.modify(coid, stop_price=above)
        await until(lambda: sum(f.fill_lots for f in h.strat.fills(coid)) == 3, 5, "3 filled")
        assert h.sim_order(coid).order.auxPrice == pytest.approx(above)
        assert h.engine.tracker.finished[coid].state is OrderState.FILLED
        assert h.venue.orders_sent == 1  # modifies are the same IB order, not new ones


async def test_an_open_order_with_the_old_stop_does_not_confirm_a_stop_modify() -> None:
    async with IBHarness() as h:
        await h.book_ready("AAPL")
        far = round(h.mid("AAPL") * 0.90, 2)
        coid = h.strat.sell("AAPL", 3, None, order_type=OrderType.STOP, stop=far)
        await h.wait_kind(coid, A)
        h.fault("ignore_requests", request="PlaceOrder", count=1)  # the modify never lands
        h.strat.modify(coid, stop_price=round(far + 1.0, 2))
        h.engine.pump()
        end = h.venue._ends["open_orders"]
        end.clear()
        h.venue._request(ORDER, lambda c: c.reqOpenOrders())  # IB reports the order as it is
        await asyncio.wait_for(end.wait(), 5)
        h.engine.pump()  # whatever the openOrder gave the engine
        assert h.sim_order(coid).order.auxPrice == pytest.approx(far)
        assert M not in h.kinds(coid)  # same quantity, but not the new stop: not applied
        order = h.engine.tracker.get(coid)
        assert order.state is OrderState.PENDING_MODIFY and order.extras.stop_price == far


async def test_a_modify_moves_a_trailing_orders_trail_at_ib() -> None:
    async with IBHarness() as h:
        await h.book_ready("AAPL")
        coid = h.strat.sell("AAPL", 2, None, order_type=OrderType.TRAILING_STOP, trail=5.0)
        await h.wait_kind(coid, A)
        h.strat.modify(coid, trail_percent=4.0)
        await h.wait_kind(coid, M)
        sim = h.sim_order(coid).order
        assert sim.trailingPercent == pytest.approx(4.0) and sim.auxPrice in (UNSET_DOUBLE, None)
        extras = h.engine.tracker.get(coid).extras
        assert extras.trail_percent == 4.0 and math.isnan(extras.trail_amount)


async def test_ib_reject_reaches_the_strategy_with_the_ib_code() -> None:
    async with IBHarness() as h:
        await h.book_ready("AAPL")
        h.fault("reject_orders", count=1)
        coid = h.strat.buy("AAPL", 1, round(h.mid("AAPL"), 2))
        await h.wait_kind(coid, R)
        ev = next(e for e in h.strat.of(coid) if e.kind == R)
        assert ev.reason_code == 201 and "201" in ev.reason


async def test_orders_are_held_back_while_disconnected() -> None:
    async with IBHarness() as h:
        await h.book_ready("AAPL")
        h.venue.conn.close()
        await until(lambda: not h.venue.connected, 3, "disconnect seen")
        coid = h.strat.buy("AAPL", 1, round(h.mid("AAPL"), 2))
        h.engine.pump()
        ev = next(e for e in h.strat.of(coid) if e.kind == R)
        assert ev.reason_code == -1 and "not connected" in ev.reason
        assert await h.venue.wait_ready(5)
        await h.book_ready("AAPL")  # depth was cleared and is streaming again
        coid = h.strat.buy("AAPL", 1, round(h.mid("AAPL") + 0.5, 2))
        await h.wait_kind(coid, F)


async def test_order_ids_never_reuse_and_start_above_market_data_ids(tmp_path) -> None:
    state = tmp_path / "ib-state.json"
    async with IBHarness(state_file=str(state), order_id_block=10) as h:
        await h.book_ready("AAPL")
        ids = []
        for _ in range(12):
            coid = h.strat.buy("AAPL", 1, round(h.mid("AAPL") * 0.97, 2))
            await h.wait_kind(coid, A)
            ids.append(h.sim_order(coid).order_id)
        assert ids == sorted(ids) and len(set(ids)) == 12 and min(ids) >= 4096
        hwm = __import__("json").loads(state.read_text())["order_id_high_water"]
        assert hwm >= max(ids)


async def test_historical_bars_through_the_venue_have_utc_timestamps() -> None:
    async with IBHarness() as h:
        bars = await asyncio.wait_for(
            h.venue.historical_bars("AAPL", duration="1800 S", bar_size="1 min"), 10
        )
        assert len(bars) >= 10
        times = [b.ts_utc_ns for b in bars]
        assert times == sorted(times) and len(set(times)) == len(times)
        assert all(b.low <= b.open <= b.high and b.low <= b.close <= b.high for b in bars)
        assert {t % 60_000_000_000 for t in times} == {0}  # whole minutes, UTC epoch


async def test_l1_only_book_and_depth_refusal_falls_back_to_quotes() -> None:
    async with IBHarness(symbols=("AAPL", "MSFT", "SPY"), depth_rows=0) as h:
        await h.book_ready("AAPL")  # from L1 quotes
        view = h.strat.book("AAPL")
        assert view.depth(BookSide.BID, 10)[1:] == []  # a quote sets the top only
    # The simulator allows 3 depth subscriptions: the 4th instrument's book comes from L1.
    async with IBHarness(symbols=("AAPL", "MSFT", "SPY", "EUR.USD"), sim={}) as h:
        await until(lambda: h.venue._l1_book.sum() == 1, 5, "one depth refusal")
        for s in ("AAPL", "MSFT", "SPY"):
            await h.book_ready(s)
        assert len(h.strat.book("MSFT").depth(BookSide.ASK, 10)) > 1
        assert any(code == 309 for _, code, _ in h.venue.errors)


async def test_ib_order_types_reach_the_gateway_as_ib_names_them() -> None:
    async with IBHarness() as h:
        await h.book_ready("AAPL")
        mid = h.mid("AAPL")
        far = round(mid * 0.97, 2)
        good_till = datetime.now(UTC) + timedelta(hours=1)
        sent = {
            "stp": h.strat.sell("AAPL", 3, None, order_type=OrderType.STOP, stop=far),
            "stplmt": h.strat.sell(
                "AAPL", 3, round(far - 0.05, 2), order_type=OrderType.STOP_LIMIT, stop=far
            ),
            "trail": h.strat.sell("AAPL", 2, None, order_type=OrderType.TRAILING_STOP, trail=1.0),
            "iceberg": h.strat.buy("AAPL", 10, far, display=2),
            "vwap": h.strat.buy(
                "AAPL", 4, far, algo=Algo.VWAP, algo_params=(("maxPctVol", "0.1"),)
            ),
        }
        sent["gtd"] = h.strat.buy("AAPL", 1, far, TimeInForce.GTD, good_till=good_till)
        for coid in sent.values():
            await until(lambda c=coid: A in h.kinds(c) or R in h.kinds(c), 5, "an answer")
            assert h.kinds(coid)[0] == A, h.strat.of(coid)
        o = {k: h.sim_order(c).order for k, c in sent.items()}
        assert (o["stp"].orderType, o["stp"].auxPrice) == ("STP", far)
        assert (o["stplmt"].orderType, o["stplmt"].lmtPrice) == ("STP LMT", round(far - 0.05, 2))
        assert (o["trail"].orderType, o["trail"].auxPrice) == ("TRAIL", 1.0)
        assert o["iceberg"].displaySize == 2 and float(o["iceberg"].totalQuantity) == 10
        assert o["gtd"].tif == "GTD" and o["gtd"].goodTillDate
        assert o["vwap"].algoStrategy == "Vwap"
        assert [(t.tag, t.value) for t in o["vwap"].algoParams] == [("maxPctVol", "0.1")]
        # A plain order of an iceberg's shape after it carries no display size.
        plain = h.strat.buy("AAPL", 10, far)
        await h.wait_kind(plain, A)
        assert h.sim_order(plain).order.displaySize in (0, None, 2**31 - 1)


def eclient_frame(version: int, order_id: int, contract, fields: dict) -> bytes:
    """What ibapi's own EClient.placeOrder sends for an Order built here from ``fields``."""
    client = EClient(EWrapper())
    client.conn, client.serverVersion_ = SentFrames(), version
    client.setConnState(EClient.CONNECTED)
    order = IbOrder()
    for name, value in fields.items():
        setattr(order, name, value)
    client.placeOrder(order_id, contract, order)
    [frame] = client.conn.sent
    return frame


@pytest.mark.parametrize("version", [176, 200, MAX_CLIENT_VER])
async def test_order_and_modify_frames_are_eclients(version: int) -> None:
    """Every placeOrder frame the venue sends (new orders and modifies, over the prepared
    templates) equals EClient.placeOrder's for an Order built independently from what the
    strategy asked; re-qualification (a new contract object) and another server version make
    the venue prepare again rather than reuse a stale template."""
    async with IBHarness(sim={"gateway": {"max_server_version": version}}) as h:
        v = h.venue
        sent: list[bytes] = []
        send = v._send
        v._send = lambda priority, frame: (  # type: ignore[method-assign]
            sent.append(frame) if priority == ORDER else None,
            send(priority, frame),
        )
        await h.book_ready("AAPL")
        await h.book_ready("MSFT")
        low, high = round(h.mid("AAPL") * 0.95, 2), round(h.mid("MSFT") * 1.05, 2)
        asked: dict[int, list[tuple[str, str, str, int, float]]] = {}

        def order(side: str, sym: str, lots: int, price: float | None, tif=TimeInForce.DAY):
            place = h.strat.buy if side == "BUY" else h.strat.sell
            coid = place(sym, lots, price, tif)  # no options: a plain order, no extras
            asked[coid] = [(side, "LMT" if price is not None else "MKT", tif.name, lots, price)]
            return coid

        resting = [
            order("BUY", "AAPL", 5, low),
            order("BUY", "AAPL", 7, round(low - 0.01, 2)),
            order("SELL", "MSFT", 3, high, TimeInForce.GTC),
        ]
        taker = order("BUY", "AAPL", 1, None)
        for coid in resting:
            await h.wait_kind(coid, A)
        await h.wait_kind(taker, F)
        for i, coid in enumerate(resting):
            side, kind, tif, lots, price = asked[coid][-1]
            new = (side, kind, tif, lots + 2 + i, round(price + (0.02 if i % 2 else -0.03), 2))
            asked[coid].append(new)
            h.strat.modify(coid, qty=new[3], price=new[4])
            await until(lambda c=coid: h.kinds(c).count(M) == 1, 5, f"modify of {coid}")
        assert v._prepared  # the plain orders went through prepared templates

        def expected(coid: int, sent_as: tuple) -> dict:
            side, kind, tif, lots, price = sent_as
            inst = h.registry[v._by_coid[coid].instrument_id]
            return {
                "action": side, "orderType": kind, "tif": tif, "account": v.account,
                "totalQuantity": Decimal(lots) * Decimal(repr(inst.lot_size)),
                "lmtPrice": UNSET_DOUBLE if price is None else price, "orderRef": str(coid),
            }  # fmt: skip

        by_coid: dict[int, list[bytes]] = {}
        for frame in sent:
            request = parse_request(version, comm.read_msg(frame)[1])
            assert isinstance(request, PlaceOrder)
            by_coid.setdefault(v._by_ib[request.order_id].client_order_id, []).append(frame)
        assert sorted(by_coid) == sorted(asked)
        for coid, frames in by_coid.items():
            live = v._by_coid[coid]
            contract = v._contracts[live.instrument_id]
            want = [
                eclient_frame(version, live.ib_id, contract, expected(coid, a)) for a in asked[coid]
            ]
            assert frames == want, coid

        # A new contract object for the instrument (re-qualification) or another server
        # version: the next frame is EClient's for that contract and that version.
        live = v._by_coid[resting[0]]
        moved = copy.deepcopy(v._contracts[live.instrument_id])
        moved.primaryExchange = "ARCA"
        v._contracts[live.instrument_id] = moved
        side, kind, tif, lots, price = asked[resting[0]][-1]
        fields = expected(resting[0], (side, kind, tif, lots + 1, price))
        assert v._place_frame(live, lots + 1, round(price * 100)) == eclient_frame(
            version, live.ib_id, moved, fields
        )
        other = 200 if version != 200 else 176
        v.server_version, current = other, v.server_version
        try:
            assert v._place_frame(live, lots + 1, round(price * 100)) == eclient_frame(
                other, live.ib_id, moved, fields
            )
        finally:
            v.server_version = current


async def test_finished_orders_are_forgotten_past_the_history_open_ones_never() -> None:
    """A long session's memory does not grow with every order: past ``done_history`` finished
    orders the oldest is forgotten with its executions; IB's later word of it is a foreign
    event and changes nothing; a working order is kept however many finish meanwhile."""
    async with IBHarness() as h:
        v = h.venue
        v.done_history = 2
        await h.book_ready("AAPL")
        aapl = h.registry.resolve("AAPL").id
        rest = h.strat.buy("AAPL", 1, round(h.mid("AAPL") * 0.9, 2))  # works all along
        await h.wait_kind(rest, A)
        filled = h.strat.buy("AAPL", 2, round(h.mid("AAPL") + 0.50, 2))
        await h.wait_kind(filled, F)
        await until(lambda: h.engine.portfolio.position(0, aapl).commission > 0, 3, "fee")
        exec_keys = list(v._by_coid[filled].exec_keys or ())
        assert exec_keys and all(k in v._execs for k in exec_keys)
        ids: dict[int, tuple[int, int]] = {}
        cancelled = []
        for _ in range(3):
            c = h.strat.buy("AAPL", 1, round(h.mid("AAPL") * 0.95, 2))
            await h.wait_kind(c, A)
            h.strat.cancel(c)
            await h.wait_kind(c, C)
            ids[c] = (v._by_coid[c].ib_id, v._by_coid[c].perm_id)
            cancelled.append(c)
        # Four finished, two remembered: the fill and the first cancel are forgotten.
        assert v.forgotten == 2
        assert filled not in v._by_coid and cancelled[0] not in v._by_coid
        assert not any(k in v._execs for k in exec_keys)
        assert all(c in v._by_coid for c in cancelled[1:])
        ib_id, perm_id = ids[cancelled[0]]
        assert ib_id not in v._by_ib and perm_id not in v._by_perm
        assert rest in v._by_coid and not v._by_coid[rest].done
        # A late word of a forgotten order: foreign, no event; a remembered one: a duplicate.
        foreign, kinds = v.foreign_events, h.kinds(cancelled[0])
        v._on_order_status(ib_id, "Cancelled", perm_id)
        assert v.foreign_events == foreign + 1 and h.kinds(cancelled[0]) == kinds
        kinds = h.kinds(cancelled[2])
        ib_id, perm_id = ids[cancelled[2]]
        v._on_order_status(ib_id, "Cancelled", perm_id)
        assert v.foreign_events == foreign + 1 and h.kinds(cancelled[2]) == kinds
        # The working order still trades normally.
        h.strat.cancel(rest)
        await h.wait_kind(rest, C)
        assert h.engine.tracker.finished[rest].state is OrderState.CANCELLED


def test_commissions_waiting_for_an_execution_are_bounded(monkeypatch) -> None:
    """A commission report may come before its execution and waits for it; reports whose
    execution never comes (another client's, a forgotten order's) do not pile up."""
    from adapters.ib import venue as venue_module
    from adapters.ib.venue import IBVenue

    monkeypatch.setattr(venue_module, "EARLY_COMMISSIONS", 3)
    v = IBVenue("IB")
    for i in range(5):
        v._on_commission(f"0000e0d5.6{i}.01.01", 1.0 + i)
    assert list(v._early_commission) == [f"0000e0d5.6{i}.01.01" for i in (2, 3, 4)]
    assert v._early_commission["0000e0d5.64.01.01"] == 5.0


async def test_a_cancel_or_modify_of_an_order_the_venue_finished_carries_ibs_code() -> None:
    """The engine still thinks an order open that the venue has finished (their answers
    crossed): the venue answers the cancel or modify itself, with IB's code for it, as the
    simulated venue does (10147: no order to cancel; 104: cannot modify)."""
    async with IBHarness() as h:
        await h.book_ready("AAPL")
        coid = h.strat.buy("AAPL", 1, round(h.mid("AAPL") * 1.01, 2))
        await h.wait_kind(coid, EventKind.FILL)
        order = h.engine.tracker.get(coid) or h.engine.tracker.finished[coid]
        answers = []
        for request in (lambda: h.venue.cancel(order), lambda: h.venue.modify(order, 2, 1)):
            request()
            answers.append(h.engine.events.last())
        assert [(e.kind, e.reason_code) for e in answers] == [
            (EventKind.CANCEL_REJECTED, 10147),
            (EventKind.CANCEL_REJECTED, 104),
        ]
