"""Contract specs, qualification, the contract cache and IB's session strings; end to end
against the gateway simulator over loopback with our own asyncio client."""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta

import pytest
from ibapi.common import BarData
from ibapi.contract import ContractDetails
from ibapi.server_versions import MAX_CLIENT_VER
from ibapi.wrapper import EWrapper

from adapters.ib.connection import Connection, connect
from adapters.ib.contracts import (
    ContractCache,
    ContractError,
    ContractQualifier,
    ContractSpec,
    Qualified,
    SpecError,
    check_against,
    ib_zone,
    parse_sessions,
    qualify,
    spec_for,
    to_contract,
)
from adapters.ib.gateway_sim.config import GatewaySimConfig
from adapters.ib.history import HistoryClient
from engine.instruments import AssetClass, InstrumentRegistry
from tests.ib_sim_support import SimThread, sim_config

# ---- the engine side of an IB connection, as a venue wires it -------------------------------


class Router(EWrapper):
    """Routes IB's answers into the qualifier and the history client; records errors."""

    def __init__(self, contracts: ContractQualifier, history: HistoryClient) -> None:
        super().__init__()
        self.contracts = contracts
        self.history = history
        self.errors: list[tuple[int, int, str]] = []

    def contractDetails(self, reqId: int, contractDetails: ContractDetails) -> None:
        self.contracts.on_contract_details(reqId, contractDetails)

    def contractDetailsEnd(self, reqId: int) -> None:
        self.contracts.on_contract_details_end(reqId)

    def historicalData(self, reqId: int, bar: BarData) -> None:
        self.history.on_historical_data(reqId, bar)

    def historicalDataEnd(self, reqId: int, start: str, end: str) -> None:
        self.history.on_historical_data_end(reqId, start, end)

    def historicalDataUpdate(self, reqId: int, bar: BarData) -> None:
        self.history.on_historical_data_update(reqId, bar)

    def error(
        self, reqId: int, errorTime: int, errorCode: int, errorString: str, adv: str = ""
    ) -> None:
        self.errors.append((reqId, errorCode, errorString))
        if not self.contracts.on_error(reqId, errorCode, errorString):
            self.history.on_error(reqId, errorCode, errorString)


@dataclass
class IB:
    sim: SimThread
    conn: Connection
    router: Router
    contracts: ContractQualifier
    history: HistoryClient
    #: How many requests went out through ``send``.
    sent: list[int]


@contextlib.asynccontextmanager
async def ib_session(config: GatewaySimConfig, **history_kw) -> AsyncIterator[IB]:
    """The simulator on its own thread, and our client connected to it on this loop."""
    with SimThread(config) as sim:
        holder: list[Connection] = []
        sent = [0]

        def send(fn) -> None:
            conn = holder[0]
            fn(conn.client)
            conn.flush()
            sent[0] += 1

        contracts = ContractQualifier(send)
        history = HistoryClient(send, **history_kw)
        router = Router(contracts, history)
        conn = await connect("127.0.0.1", sim.port, 7, router)
        holder.append(conn)
        try:
            yield IB(sim, conn, router, contracts, history, sent)
        finally:
            conn.close()


def versioned(version: int, **sections) -> GatewaySimConfig:
    return sim_config(gateway={"max_server_version": version}, **sections)


VERSIONS = [176, MAX_CLIENT_VER]


# ---- specs ----------------------------------------------------------------------------------


@pytest.fixture
def registry() -> InstrumentRegistry:
    r = InstrumentRegistry()
    r.add("AAPL", "ib", AssetClass.STOCK, 0.01)
    r.add("ES", "ib", AssetClass.FUTURE, 0.25, multiplier=50)
    r.add("AAPL_C200", "ib", AssetClass.OPTION, 0.01, multiplier=100)
    r.add("EUR.USD", "ib", AssetClass.FX, 0.00005)
    r.add("BTC/USD", "ib", AssetClass.CRYPTO, 0.25)
    r.add("ETH", "ib", AssetClass.CRYPTO, 0.01)
    return r


def test_spec_defaults_by_asset_class(registry: InstrumentRegistry) -> None:
    stk = spec_for(registry.get("AAPL"), {})
    assert (stk.sec_type, stk.symbol, stk.exchange, stk.currency) == ("STK", "AAPL", "SMART", "USD")
    fut = spec_for(registry.get("ES"), {"exchange": "CME", "last_trade_date": "202509"})
    assert (fut.sec_type, fut.exchange, fut.last_trade_date) == ("FUT", "CME", "202509")
    opt = spec_for(
        registry.get("AAPL_C200"),
        {"symbol": "AAPL", "last_trade_date": "20250718", "strike": 200, "right": "call"},
    )
    assert (opt.sec_type, opt.symbol, opt.exchange, opt.strike, opt.right) == (
        "OPT", "AAPL", "SMART", 200.0, "C",
    )  # fmt: skip
    fx = spec_for(registry.get("EUR.USD"), {})
    assert (fx.sec_type, fx.symbol, fx.currency, fx.exchange) == ("CASH", "EUR", "USD", "IDEALPRO")
    btc = spec_for(registry.get("BTC/USD"), {})
    assert (btc.sec_type, btc.symbol, btc.currency, btc.exchange) == (
        "CRYPTO", "BTC", "USD", "PAXOS",
    )  # fmt: skip
    eth = spec_for(registry.get("ETH"), {})
    assert (eth.symbol, eth.currency) == ("ETH", "USD")


def test_to_contract_carries_every_key() -> None:
    spec = ContractSpec(
        "FUT", "ES", exchange="CME", currency="USD", local_symbol="ESU5",
        last_trade_date="20250919", multiplier="50", con_id=42, trading_class="ES",
    )  # fmt: skip
    c = to_contract(spec)
    assert (c.secType, c.symbol, c.exchange, c.localSymbol) == ("FUT", "ES", "CME", "ESU5")
    assert (c.lastTradeDateOrContractMonth, c.multiplier, c.conId, c.tradingClass) == (
        "20250919", "50", 42, "ES",
    )  # fmt: skip


@pytest.mark.parametrize(
    ("name", "overrides", "key", "text"),
    [
        ("ES", {}, "exchange", "CME"),
        ("ES", {"exchange": "CME"}, "last_trade_date", "local_symbol"),
        ("ES", {"exchange": "CME", "last_trade_date": "2025-09"}, "last_trade_date", "YYYYMM"),
        ("AAPL_C200", {"last_trade_date": "20250718", "right": "C"}, "strike", "missing strike"),
        ("AAPL_C200", {"strike": 200, "right": "X", "last_trade_date": "202507"}, "right", "'C'"),
        ("AAPL", {"exchnage": "SMART"}, "exchnage", "unknown contract key"),
        ("AAPL", {"con_id": "265598"}, "con_id", "integer"),
        ("AAPL", {"sec_type": "SHARE"}, "sec_type", "not an IB security type"),
        ("AAPL", {"multiplier": "lots"}, "multiplier", "number"),
    ],
)
def test_spec_errors_name_the_key(registry, name, overrides, key, text) -> None:
    with pytest.raises(SpecError, match=text) as err:
        spec_for(registry.get(name), overrides)
    assert err.value.key == key
    assert isinstance(err.value, ValueError)


def test_fx_symbol_must_be_a_pair() -> None:
    r = InstrumentRegistry()
    r.add("EURO", "ib", AssetClass.FX, 0.0001)
    with pytest.raises(SpecError, match=r"EUR\.USD") as err:
        spec_for(r.get("EURO"), {})
    assert err.value.key == "symbol"
    assert spec_for(r.get("EURO"), {"symbol": "EUR/GBP"}).currency == "GBP"
    chf = spec_for(r.get("EURO"), {"symbol": "EUR", "currency": "CHF"})
    assert (chf.symbol, chf.currency, chf.exchange) == ("EUR", "CHF", "IDEALPRO")


def test_future_by_local_symbol_or_con_id_needs_no_expiry(registry) -> None:
    assert spec_for(registry.get("ES"), {"exchange": "CME", "local_symbol": "ESU5"})
    assert spec_for(registry.get("ES"), {"exchange": "CME", "con_id": 495512563}).con_id


# ---- qualify --------------------------------------------------------------------------------


def details(
    con_id: int, exchange: str = "CME", expiry: str = "", local: str = ""
) -> ContractDetails:
    d = ContractDetails()
    c = d.contract
    c.conId, c.symbol, c.secType, c.exchange = con_id, "ES", "FUT", exchange
    c.lastTradeDateOrContractMonth, c.localSymbol, c.multiplier = expiry, local, "50"
    c.currency = "USD"
    d.minTick, d.timeZoneId, d.longName = 0.25, "US/Central", "E-mini S&P 500"
    d.tradingHours = "20250601:1700-20250602:1600;20250607:CLOSED"
    d.liquidHours = "20250602:0830-20250602:1500"
    d.orderTypes, d.validExchanges = "LMT,MKT,STP", "CME,QBALGO"
    return d


def test_qualify_one() -> None:
    spec = ContractSpec("FUT", "ES", exchange="CME", last_trade_date="202506")
    q = qualify(spec, [details(11, expiry="20250620", local="ESM5")])
    assert (q.con_id, q.min_tick, q.multiplier, q.time_zone) == (11, 0.25, 50.0, "US/Central")
    assert q.order_types == frozenset({"LMT", "MKT", "STP"})
    assert q.valid_exchanges == ("CME", "QBALGO")
    assert (q.contract.conId, q.contract.exchange) == (11, "CME")


def test_qualify_none_is_error_200() -> None:
    with pytest.raises(ContractError, match=r"IB knows no contract for STK ZZZZ.*error 200"):
        qualify(ContractSpec("STK", "ZZZZ", exchange="SMART", currency="USD"), [])


def test_qualify_several_lists_candidates_and_the_key_to_add() -> None:
    spec = ContractSpec("FUT", "ES", exchange="CME")
    with pytest.raises(ContractError) as err:
        qualify(spec, [details(11, expiry="20250620", local="ESM5"),
                       details(12, expiry="20250919", local="ESU5")])  # fmt: skip
    text = str(err.value)
    assert "ambiguous" in text and "IB returned 2 contracts" in text
    assert "conId 11: localSymbol 'ESM5', exchange CME, expiry 20250620" in text
    assert "conId 12" in text and "20250919" in text
    assert "add last_trade_date or local_symbol or con_id" in text


def test_same_con_id_on_several_exchanges_is_one_contract() -> None:
    spec = ContractSpec("STK", "ES", exchange="QBALGO")
    q = qualify(spec, [details(11, "CME"), details(11, "QBALGO")])
    assert (q.con_id, q.contract.exchange) == (11, "QBALGO")


# ---- the cache ------------------------------------------------------------------------------


def _qualified() -> tuple[ContractSpec, Qualified]:
    spec = ContractSpec("FUT", "ES", exchange="CME", last_trade_date="202506")
    return spec, qualify(spec, [details(11, expiry="20250620", local="ESM5")])


def test_cache_round_trips_through_json(tmp_path) -> None:
    spec, q = _qualified()
    cache = ContractCache()
    cache.put(spec, q)
    assert cache.current(spec) is q
    path = tmp_path / "sub" / "contracts.json"
    cache.save(path)
    assert [p.name for p in path.parent.iterdir()] == ["contracts.json"]  # no temp file left
    again = ContractCache()
    assert again.load(path) == 1
    back = again.get(spec)
    assert back == q and back.contract.conId == 11 and back.contract.localSymbol == "ESM5"
    assert again.current(spec) is None  # from an earlier session: re-qualify when possible
    again.put(spec, back)
    again.new_session()
    assert again.current(spec) is None and again.get(spec) is back


def test_cache_tolerates_missing_and_corrupt_files(tmp_path, caplog) -> None:
    caplog.set_level(logging.INFO, logger="tickwire.ib.contracts")
    cache = ContractCache()
    assert cache.load(tmp_path / "absent.json") == 0
    bad = tmp_path / "bad.json"
    bad.write_text('{"version": 1, "entries": [{"spec": {"sec_typ')
    assert cache.load(bad) == 0
    bad.write_text(json.dumps({"version": 1, "entries": [{"spec": {"nope": 1}}]}))
    assert cache.load(bad) == 0
    assert len(cache) == 0
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 2 and "unreadable" in warnings[0].getMessage()


# ---- sessions -------------------------------------------------------------------------------


def _utc(*a: int) -> datetime:
    return datetime(*a, tzinfo=UTC)


def test_parse_sessions_dated_format_with_closed_days() -> None:
    text = "20261123:0930-20261123:1600;20261124:CLOSED;20261125:0930-20261125:1300"
    assert parse_sessions(text, "US/Eastern") == [
        (_utc(2026, 11, 23, 14, 30), _utc(2026, 11, 23, 21)),
        (_utc(2026, 11, 25, 14, 30), _utc(2026, 11, 25, 18)),
    ]


def test_parse_sessions_overnight_and_older_format() -> None:
    # CME Globex: opens the evening before (summer, CDT = UTC-5)
    assert parse_sessions("20250602:1700-20250603:1600", "US/Central") == [
        (_utc(2025, 6, 2, 22), _utc(2025, 6, 3, 21))
    ]
    # the older form: one date, comma-separated ranges; an end before the start is the next day
    assert parse_sessions("20250602:0930-1200,1300-1600;20250603:1715-1700", "EST5EDT") == [
        (_utc(2025, 6, 2, 13, 30), _utc(2025, 6, 2, 16)),
        (_utc(2025, 6, 2, 17), _utc(2025, 6, 2, 20)),
        (_utc(2025, 6, 3, 21, 15), _utc(2025, 6, 4, 21)),
    ]


def test_parse_sessions_across_a_dst_change_and_other_zones() -> None:
    # US clocks went back on 2 Nov 2025: the same local open is an hour later in UTC
    s = parse_sessions("20251031:0930-20251031:1600;20251103:0930-20251103:1600", "US/Eastern")
    assert [a.hour for a, _ in s] == [13, 14]
    assert parse_sessions("20250602:0900-20250602:1730", "MET")[0][0] == _utc(2025, 6, 2, 7)
    assert parse_sessions("20250602:0800-20250602:1630", "GB")[0][0] == _utc(2025, 6, 2, 7)
    assert parse_sessions("20250602:0930-20250602:1600", "America/New_York")[0][0].hour == 13
    assert parse_sessions("20250602:0930-20250602:1600", "EST")[0][0].hour == 13  # IB's EST: DST
    assert parse_sessions("", "US/Eastern") == []


def test_parse_sessions_errors_are_clear() -> None:
    with pytest.raises(ValueError, match="IB time zone 'Mars/Olympus'"):
        parse_sessions("20250602:0930-1600", "Mars/Olympus")
    with pytest.raises(ValueError, match=r"segment '20250602:0930'.*YYYYMMDD:HHMM"):
        parse_sessions("20250602:0930", "US/Eastern")
    with pytest.raises(ValueError, match="not HHMM"):
        parse_sessions("20250602:9930-1600", "US/Eastern")
    assert ib_zone("US/Eastern") is ib_zone("US/Eastern")


# ---- the config against IB ------------------------------------------------------------------


def test_check_against_names_instrument_and_key() -> None:
    _, q = _qualified()
    r = InstrumentRegistry()
    good = r.add("ES", "ib", AssetClass.FUTURE, 0.5, multiplier=50)
    assert check_against(good, q) == []
    bad = r.add("ES2", "ib", AssetClass.FUTURE, 0.1, multiplier=5, currency="EUR")
    problems = check_against(bad, q)
    assert len(problems) == 3
    assert (
        "ES2.ib" in problems[0] and "tick_size 0.1" in problems[0] and "minTick 0.25" in problems[0]
    )
    assert "Set tick_size = 0.25" in problems[0]
    assert "multiplier 5 but IB says 50" in problems[1] and "multiplier = 50" in problems[1]
    assert 'currency = "USD"' in problems[2]


def test_registry_takes_venue_facts() -> None:
    _, q = _qualified()
    r = InstrumentRegistry()
    r.add("AAPL", "ib", AssetClass.STOCK, 0.01)
    es = r.add("ES", "ib", AssetClass.FUTURE, 0.25, multiplier=50)
    new = r.update_venue_facts(es.id, **q.venue_facts())
    assert new.con_id == 11 and "LMT" in new.order_types
    assert new.sessions == ((1748815200 * 10**9, 1748898000 * 10**9),)
    assert r.get("ES") is new and r[es.id] is new and r.get("ES.ib") is new
    assert (new.tick_size, new.multiplier, new.id) == (0.25, 50, es.id)
    with pytest.raises(ValueError, match="tick_size not a venue fact"):
        r.update_venue_facts(es.id, tick_size=1.0)


# ---- end to end against the simulator -------------------------------------------------------


@pytest.mark.parametrize("version", VERSIONS, ids=lambda v: f"v{v}")
async def test_qualify_stock_future_and_fx_from_the_simulator(version: int) -> None:
    async with ib_session(versioned(version)) as ib:
        universe = ib.sim.call(lambda: list(ib.sim.server.core.instruments))
        es_sim = next(i for i in universe if i.symbol == "ES")
        r = InstrumentRegistry()
        aapl = r.add("AAPL", "ib", AssetClass.STOCK, 0.01)
        es = r.add("ES", "ib", AssetClass.FUTURE, 0.25, multiplier=50)
        eur = r.add("EUR.USD", "ib", AssetClass.FX, 0.00005, currency="USD")
        specs = {
            aapl.id: spec_for(aapl, {}),
            es.id: spec_for(es, {"exchange": "CME", "last_trade_date": es_sim.last_trade_date[:6]}),
            eur.id: spec_for(eur, {}),
        }
        results = {i: await ib.contracts.request(s) for i, s in specs.items()}

        q = results[aapl.id]
        assert (q.con_id, q.min_tick, q.multiplier, q.long_name) == (265598, 0.01, 1.0, "APPLE INC")
        assert {"LMT", "MKT", "STP", "MOC"} <= q.order_types and "NASDAQ" in q.valid_exchanges
        assert (q.contract.conId, q.contract.exchange) == (265598, "SMART")
        liquid = q.sessions(liquid=True)
        assert liquid and all(b - a == timedelta(hours=6, minutes=30) for a, b in liquid)
        assert all(a.tzinfo == UTC and a.minute == 30 and a.hour in (13, 14) for a, _ in liquid)

        q = results[es.id]
        assert (q.con_id, q.min_tick, q.multiplier) == (es_sim.con_id, 0.25, 50.0)
        assert q.contract.exchange == "CME" and q.time_zone == "US/Central"
        sessions = q.sessions()
        assert sessions and all(b - a == timedelta(hours=23) for a, b in sessions)
        assert check_against(es, q) == []

        q = results[eur.id]
        assert (q.con_id, q.min_tick, q.contract.secType) == (12087792, 0.00005, "CASH")
        assert q.valid_exchanges == ("IDEALPRO",) and "LMT" in q.order_types

        for i, q in results.items():
            r.update_venue_facts(i, **q.venue_facts())
        assert r.get("AAPL").con_id == 265598 and r.get("ES").sessions

        # cached for the session: no second request goes to IB
        sent = ib.sent[0]
        again = ib.contracts.request(specs[aapl.id])
        assert again.done() and again.result() is results[aapl.id]
        assert ib.sent[0] == sent


async def test_unknown_contract_is_error_200() -> None:
    async with ib_session(sim_config()) as ib:
        with pytest.raises(ContractError, match=r"IB knows no contract for STK ZZZZ.*error 200"):
            await ib.contracts.request(ContractSpec("STK", "ZZZZ", "SMART", currency="USD"))


async def test_a_second_es_expiry_makes_the_bare_future_ambiguous() -> None:
    base = sim_config()
    async with ib_session(base) as probe:
        universe = probe.sim.call(lambda: list(probe.sim.server.core.instruments))
    es = next(i for i in universe if i.symbol == "ES")
    front = datetime.strptime(es.last_trade_date, "%Y%m%d").date()
    back_date = front + timedelta(weeks=13)
    back = replace(es, con_id=es.con_id + 1, last_trade_date=f"{back_date:%Y%m%d}",
                   local_symbol="ESZ9")  # fmt: skip
    config = replace(base, instruments=[*universe, back])
    async with ib_session(config) as ib:
        with pytest.raises(ContractError) as err:
            await ib.contracts.request(ContractSpec("FUT", "ES", "CME", currency="USD"))
        text = str(err.value)
        assert "IB returned 2 contracts" in text
        assert f"conId {es.con_id}: localSymbol '{es.local_symbol}'" in text
        assert f"conId {back.con_id}: localSymbol 'ESZ9'" in text
        assert "add last_trade_date or local_symbol or con_id" in text
        q = await ib.contracts.request(
            ContractSpec("FUT", "ES", "CME", currency="USD", local_symbol="ESZ9")
        )
        assert q.con_id == back.con_id
