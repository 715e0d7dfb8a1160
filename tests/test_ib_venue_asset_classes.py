"""Each asset class the engine names, traded through IBVenue against the gateway simulator:
what IB requires of its contracts and orders, and what comes back (fills, P&L)."""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from decimal import Decimal

import pytest
from ib_venue_support import IBHarness, until
from ibapi.const import UNSET_DECIMAL
from ibapi.contract import ContractDetails

from adapters.ib.contracts import ContractSpec, Qualified, check_against, qualify, spec_for
from adapters.ib.gateway_sim.market import default_universe
from adapters.ib.venue import IB_OFF_TICK, IB_ORDER_REJECTED, NOT_QUALIFIED
from engine.instruments import AssetClass, InstrumentRegistry
from engine.messages import EventKind, TimeInForce

BTC = {"BTC": (0.25, 0.0001, 1.0, "USD")}


def _btc(**venue) -> IBHarness:
    return IBHarness(symbols=("BTC",), facts=BTC, classes={"BTC": AssetClass.CRYPTO}, **venue)


async def _btc_mid(h: IBHarness) -> float:
    await until(lambda: h.strat.book("BTC").mid_ticks is not None, 5, "BTC book")
    return h.strat.book("BTC").mid_ticks * 0.25


def _rejection(h: IBHarness, coid: int):
    return next(e for e in h.strat.of(coid) if e.kind == EventKind.REJECTED)


async def test_crypto_market_orders_ib_would_reject_are_refused_with_what_to_do() -> None:
    # IB takes a crypto market buy only sized in cash (cashQty), and a crypto market order only
    # as IOC. tickwire sizes orders in coins: such orders are refused here, saying what works.
    async with _btc() as h:
        assert h.venue.qualified[h.registry.resolve("BTC").id].contract.secType == "CRYPTO"
        mid = await _btc_mid(h)
        buy = h.strat.buy("BTC", 0.001, tif=TimeInForce.IOC)
        sell_day = h.strat.sell("BTC", 0.001)
        await h.wait_kind(buy, EventKind.REJECTED)
        await h.wait_kind(sell_day, EventKind.REJECTED)
        ev = _rejection(h, buy)
        assert ev.reason_code == IB_ORDER_REJECTED
        assert "BTC.IB" in ev.reason and "cashQty" in ev.reason and "marketable limit" in ev.reason
        ev = _rejection(h, sell_day)
        assert ev.reason_code == IB_ORDER_REJECTED and "tif IOC" in ev.reason and "DAY" in ev.reason
        assert not [o for o in h.sim_orders() if o.order.orderRef in (str(buy), str(sell_day))]
        # What IB takes: a marketable limit buy in fractional coins, a market sell as IOC.
        limit = h.strat.buy("BTC", 0.0012, round(mid / 0.25 + 400) * 0.25, tif=TimeInForce.IOC)
        await until(lambda: sum(f.fill_lots for f in h.strat.fills(limit)) == 12, 5, "BTC fill")
        sell = h.strat.sell("BTC", 0.0012, tif=TimeInForce.IOC)
        await until(lambda: sum(f.fill_lots for f in h.strat.fills(sell)) == 12, 5, "BTC sell")
        assert h.sim_order(limit).order.totalQuantity == h.sim_order(sell).order.totalQuantity
        assert str(h.sim_order(sell).order.totalQuantity) == "0.0012"
        assert h.engine.portfolio.net_lots(h.registry.resolve("BTC").id) == 0


def _btc_details(size_increment: Decimal) -> ContractDetails:
    d = ContractDetails()
    c = d.contract
    c.conId, c.symbol, c.secType, c.exchange, c.currency = (
        479624278,
        "BTC",
        "CRYPTO",
        "PAXOS",
        "USD",
    )
    d.minTick, d.timeZoneId, d.sizeIncrement = 0.25, "US/Eastern", size_increment
    return d


def test_lot_size_must_be_a_multiple_of_ibs_size_increment() -> None:
    spec = ContractSpec("CRYPTO", "BTC", exchange="PAXOS", currency="USD")
    q = qualify(spec, [_btc_details(Decimal("0.0001"))])
    assert q.size_increment == 0.0001
    assert Qualified.from_json(q.to_json()).size_increment == 0.0001
    r = InstrumentRegistry()
    for lot in (0.0001, 0.001, 1.0):
        assert check_against(r.add(f"B{lot:g}", "IB", AssetClass.CRYPTO, 0.25, lot), q) == []
    (problem,) = check_against(r.add("FINE", "IB", AssetClass.CRYPTO, 0.25, 0.00001), q)
    assert (
        "FINE.IB" in problem and "lot_size 1e-05" in problem and "size increment 0.0001" in problem
    )
    assert "Set lot_size = 0.0001" in problem
    # Servers before 164 send no sizeIncrement: nothing to check against.
    unset = qualify(spec, [_btc_details(UNSET_DECIMAL)])
    assert unset.size_increment == 0.0
    assert check_against(r.add("OLD", "IB", AssetClass.CRYPTO, 0.25, 0.00001), unset) == []


async def test_orders_in_part_of_ibs_size_increment_are_refused_until_the_config_is_fixed() -> None:
    # IB trades AAPL in whole shares through the API and BTC in 0.0001: configured finer, an
    # order of 0.5 share or 0.00015 BTC would go to IB and be rejected there.
    facts = {"AAPL": (0.01, 0.1, 1.0, "USD"), "BTC": (0.25, 0.00001, 1.0, "USD")}
    classes = {"BTC": AssetClass.CRYPTO}
    async with IBHarness(symbols=("AAPL", "BTC", "MSFT"), facts=facts, classes=classes) as h:
        for sym, inc in (("AAPL", "1"), ("BTC", "0.0001")):
            iid = h.registry.resolve(sym).id
            assert iid in h.venue.qualified
            assert f"size increment {inc}" in h.venue.unqualified[iid]
        aapl = h.strat.buy("AAPL", 0.5, 10.0)
        btc = h.strat.buy("BTC", 0.00015, 50_000.0, tif=TimeInForce.IOC)
        for coid, sym in ((aapl, "AAPL"), (btc, "BTC")):
            await h.wait_kind(coid, EventKind.REJECTED)
            ev = _rejection(h, coid)
            assert ev.reason_code == NOT_QUALIFIED and "lot_size" in ev.reason and sym in ev.reason
        assert not h.sim_orders()
        msft = h.strat.buy("MSFT", 1, 10.0)
        await h.wait_kind(msft, EventKind.ACCEPTED)


async def test_a_continuous_future_streams_data_but_its_orders_are_refused() -> None:
    # IB answers a CONTFUT with the front month (its conId), still as CONTFUT: market data
    # only. An order for it is refused here, saying which contract month to name instead.
    async with IBHarness(
        symbols=("ES",),
        facts={"ES": (0.25, 1.0, 50.0, "USD")},
        classes={"ES": AssetClass.FUTURE},
        contracts={"ES": {"sec_type": "CONTFUT", "exchange": "CME"}},
    ) as h:
        es = h.registry.resolve("ES")
        front = next(i for i in h.core().market.instruments if i.symbol == "ES")
        assert h.venue.qualified[es.id].con_id == front.con_id
        await until(lambda: h.strat.book("ES").mid_ticks is not None, 5, "ES book")
        coid = h.strat.buy("ES", 1)
        await h.wait_kind(coid, EventKind.REJECTED)
        ev = _rejection(h, coid)
        assert ev.reason_code == NOT_QUALIFIED and "CONTFUT" in ev.reason
        assert f'last_trade_date = "{front.last_trade_date[:6]}"' in ev.reason
        assert not h.sim_orders()


def test_a_multiplier_given_as_a_number_goes_to_ib_as_its_digits() -> None:
    r = InstrumentRegistry()
    six_j = r.add("6J", "IB", AssetClass.FUTURE, 0.0000005, multiplier=12_500_000)
    keys = {"exchange": "CME", "last_trade_date": "202612"}
    for given, sent in (
        (12_500_000, "12500000"),
        (1_234_567, "1234567"),
        (0.1, "0.1"),
        (50.0, "50"),
    ):
        assert spec_for(six_j, keys | {"multiplier": given}).multiplier == sent


async def test_a_future_configured_on_an_expired_month_is_refused_saying_it_expired() -> None:
    contracts = {"NQ": {"exchange": "CME", "last_trade_date": "202003"}}
    facts = {"NQ": (0.25, 1.0, 20.0, "USD")}
    classes = {"NQ": AssetClass.FUTURE}
    async with IBHarness(symbols=("NQ",), facts=facts, classes=classes, contracts=contracts) as h:
        coid = h.strat.buy("NQ", 1, 20_000.0)
        await h.wait_kind(coid, EventKind.REJECTED)
        ev = _rejection(h, coid)
        assert ev.reason_code == NOT_QUALIFIED and "error 200" in ev.reason
        assert "last_trade_date 202003 has passed" in ev.reason and "expired" in ev.reason


@pytest.mark.parametrize("version", [176, 225], ids=["text", "protobuf"])
async def test_option_prices_off_ibs_market_rule_are_refused_before_sending(version: int) -> None:
    # IB's minTick for the AAPL option is 0.01, but its market rule prices it in 0.05 from 3:
    # 8.53 is on the engine's 0.01 grid and IB would reject it (110); it is refused here with
    # the rule's band, and a modify to it too. 8.55 and 2.53 (below 3: 0.01) go to IB.
    today = datetime.now(UTC).date()  # the simulator's universe: an option a month out
    option = next(i for i in default_universe(today) if i.sec_type == "OPT")
    keys = {"symbol": "AAPL", "last_trade_date": option.last_trade_date, "strike": 200.0}
    async with IBHarness(
        symbols=("AAPL_C200",),
        facts={"AAPL_C200": (0.01, 1.0, 100.0, "USD")},
        classes={"AAPL_C200": AssetClass.OPTION},
        contracts={"AAPL_C200": keys | {"right": "C"}},
        sim={"gateway": {"max_server_version": version}},
    ) as h:
        # The rule is asked for at qualification, before the market data: it is in by now.
        await until(lambda: h.strat.book("AAPL_C200").mid_ticks is not None, 5, "option book")
        off = h.strat.buy("AAPL_C200", 1, 8.53)
        await h.wait_kind(off, EventKind.REJECTED)
        ev = _rejection(h, off)
        assert ev.reason_code == IB_OFF_TICK
        assert "8.53" in ev.reason and "from 3 in steps of 0.05" in ev.reason
        assert "AAPL_C200.IB" in ev.reason
        low = h.strat.buy("AAPL_C200", 1, 2.53)
        on = h.strat.buy("AAPL_C200", 1, 8.55)
        await h.wait_kind(low, EventKind.ACCEPTED)
        await until(lambda: EventKind.ACCEPTED in h.kinds(on) or EventKind.FILL in h.kinds(on))
        assert not [o for o in h.sim_orders() if o.order.orderRef == str(off)]
        h.strat.modify(low, price=3.02)
        await h.wait_kind(low, EventKind.CANCEL_REJECTED)
        rej = next(e for e in h.strat.of(low) if e.kind == EventKind.CANCEL_REJECTED)
        assert rej.reason_code == IB_OFF_TICK and "3.02" in rej.reason
        assert h.sim_order(low).order.lmtPrice == 2.53  # unchanged at IB


async def test_a_fill_between_the_engines_ticks_is_said_loudly_and_counted(caplog) -> None:
    # tick_size 0.05 is a multiple of IB's minTick 0.01, so it qualifies; IB's fills at 0.01
    # steps are booked at the nearest 0.05. The first is a WARNING with both prices.
    caplog.set_level(logging.DEBUG, logger="tickwire.ib")
    async with IBHarness(symbols=("AAPL",), facts={"AAPL": (0.05, 1.0, 1.0, "USD")}) as h:
        await until(lambda: h.strat.book("AAPL").mid_ticks is not None, 5, "AAPL book")
        off = 0
        for _ in range(20):
            coid = h.strat.buy("AAPL", 1)
            await h.wait_kind(coid, EventKind.FILL)
            (ex,) = [e for e in h.core().executions if e.execution.orderRef == str(coid)]
            if abs(ex.execution.price * 20 - round(ex.execution.price * 20)) > 1e-6:
                off += 1
                assert h.strat.fills(coid)[0].fill_price_ticks == round(ex.execution.price / 0.05)
        assert off > 0, "the simulator never filled between 0.05 steps"
        assert h.venue.status()["off_grid_fills"] == off
        said = [r for r in caplog.records if "between the engine's ticks" in r.getMessage()]
        assert len(said) == off
        assert [r.levelno for r in said] == [logging.WARNING] + [logging.DEBUG] * (off - 1)
        assert "AAPL.IB" in said[0].getMessage() and "booked at" in said[0].getMessage()
