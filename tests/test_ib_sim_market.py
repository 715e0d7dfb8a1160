"""The gateway simulator's market (adapters/ib/gateway_sim/market.py).

Books are checked from the outside: a client replica applies every emitted depth row the way
ib_async applies updateMktDepth (insert / update / delete by position) and must equal the
market's own book after every call; the replica must never be crossed mid-step.
"""

from __future__ import annotations

import itertools
import re
from datetime import UTC, date, datetime
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from ibapi.const import UNSET_DOUBLE
from ibapi.contract import Contract

from adapters.ib.gateway_sim.market import (
    ASK,
    BID,
    DELETE,
    INSERT,
    UPDATE,
    DepthRow,
    Grid,
    Market,
    Quote,
    Replay,
    ReplayStep,
    SimInstrument,
    Trade,
    default_universe,
    record_line,
    session_end_after,
)

UNIVERSE = default_universe(date(2025, 6, 2))
BY_SYMBOL = {(i.symbol, i.sec_type): i for i in UNIVERSE}
AAPL, ES = BY_SYMBOL["AAPL", "STK"], BY_SYMBOL["ES", "FUT"]
EURUSD, BTC = BY_SYMBOL["EUR", "CASH"], BY_SYMBOL["BTC", "CRYPTO"]
AAPL_C = BY_SYMBOL["AAPL", "OPT"]
NS = 1_000_000_000
MON_10_ET = int(datetime(2025, 6, 2, 14, 0, tzinfo=UTC).timestamp()) * NS


class Replica:
    """A client's view of one book built only from DepthRow events."""

    def __init__(self, market: Market, con_id: int) -> None:
        self.sides: dict[int, list[tuple[float, Decimal]]] = {BID: [], ASK: []}
        self.apply(market.snapshot_rows(con_id))

    def apply(self, events: list) -> None:
        for ev in events:
            if type(ev) is not DepthRow:
                continue
            rows = self.sides[ev.side]
            if ev.operation == INSERT:
                assert 0 <= ev.position <= len(rows), ev
                rows.insert(ev.position, (ev.price, ev.size))
            elif ev.operation == UPDATE:
                assert 0 <= ev.position < len(rows), ev
                assert rows[ev.position][0] == ev.price, ev
                rows[ev.position] = (ev.price, ev.size)
            else:
                assert ev.operation == DELETE and 0 <= ev.position < len(rows), ev
                assert rows[ev.position][0] == ev.price, ev
                del rows[ev.position]
            bids, asks = self.sides[BID], self.sides[ASK]
            assert not (bids and asks and bids[0][0] >= asks[0][0]), f"crossed after {ev}"


def assert_valid(market: Market, con_id: int) -> None:
    st_ = market.state(con_id)
    depth = market.instrument(con_id).depth_levels
    assert all(a > b for a, b in itertools.pairwise(st_.bid_px))
    assert all(a < b for a, b in itertools.pairwise(st_.ask_px))
    assert len(st_.bid_px) == len(st_.bid_sz) <= depth
    assert len(st_.ask_px) == len(st_.ask_sz) <= depth
    assert all(s > 0 for s in st_.bid_sz + st_.ask_sz)
    if st_.bid_px and st_.ask_px:
        assert st_.bid_px[0] < st_.ask_px[0]


def events_of(market: Market, con_ids: list[int], steps: int) -> list:
    return [(c, market.step(c)) for _ in range(steps) for c in con_ids]


# ---- instruments, contracts, details ----------------------------------------------------------


def test_default_universe_is_realistic_and_distinct() -> None:
    con_ids = [i.con_id for i in UNIVERSE]
    assert len(set(con_ids)) == len(con_ids)
    assert {(i.symbol, i.sec_type) for i in UNIVERSE} >= {
        ("AAPL", "STK"),
        ("MSFT", "STK"),
        ("SPY", "STK"),
        ("ES", "FUT"),
        ("NQ", "FUT"),
        ("AAPL", "OPT"),
        ("EUR", "CASH"),
        ("BTC", "CRYPTO"),
    }
    assert (AAPL.con_id, EURUSD.con_id, BTC.con_id) == (265598, 12087792, 479624278)
    assert (ES.multiplier, BY_SYMBOL["NQ", "FUT"].multiplier, ES.min_tick) == ("50", "20", 0.25)
    assert ES.last_trade_date == "20250620" and ES.local_symbol == "ESM5"
    assert (
        AAPL_C.multiplier == "100" and AAPL_C.right == "C" and AAPL_C.last_trade_date > "20250602"
    )
    assert EURUSD.min_tick == 0.00005 and BTC.size_increment == 0.0001
    later = default_universe(date(2025, 6, 21))
    assert {i.last_trade_date for i in later if i.sec_type == "FUT"} == {"20250919"}


def test_contract_and_details_are_filled_per_security_type() -> None:
    c = AAPL.contract()
    assert (c.conId, c.symbol, c.secType, c.exchange, c.primaryExchange, c.currency) == (
        265598,
        "AAPL",
        "STK",
        "SMART",
        "NASDAQ",
        "USD",
    )
    d = AAPL.details(MON_10_ET)
    assert d.minTick == 0.01 and d.priceMagnifier == 1 and d.stockType == "COMMON"
    assert "LMT" in d.orderTypes.split(",") and "SMART" in d.validExchanges.split(",")
    assert len(d.marketRuleIds.split(",")) == len(d.validExchanges.split(","))
    assert d.minSize == Decimal(1) and d.sizeIncrement == Decimal(1)
    assert d.timeZoneId == "US/Eastern"
    assert d.liquidHours.startswith("20250602:0930-20250602:1600;")
    assert "20250607:CLOSED" in d.liquidHours
    assert re.fullmatch(r"(\d{8}:(\d{4}-\d{8}:\d{4}|CLOSED);){6}\d{8}:.*", d.tradingHours)
    assert BY_SYMBOL["SPY", "STK"].details().stockType == "ETF"
    fut = ES.details(MON_10_ET)
    assert (fut.contractMonth, fut.realExpirationDate, fut.underSecType) == (
        "202506",
        "20250620",
        "IND",
    )
    assert fut.contract.multiplier == "50" and fut.stockType == ""
    # the CME session opens the evening before
    assert fut.tradingHours.startswith("20250601:1700-20250602:1600;")
    opt = AAPL_C.details(MON_10_ET)
    assert (opt.underConId, opt.underSymbol, opt.contract.strike) == (265598, "AAPL", 200.0)
    assert BTC.details().sizeIncrement == Decimal("0.0001")
    assert "CLOSED" not in BTC.details(MON_10_ET).tradingHours


def contract(**fields: object) -> Contract:
    c = Contract()
    for k, v in fields.items():
        setattr(c, k, v)
    return c


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        ({"conId": 265598}, ["AAPL STK"]),
        ({"conId": 265598, "exchange": "SMART"}, ["AAPL STK"]),
        ({"conId": 265598, "exchange": "CME"}, []),
        ({"conId": 999}, []),
        (
            {"symbol": "AAPL", "secType": "STK", "exchange": "SMART", "currency": "USD"},
            ["AAPL STK"],
        ),
        ({"symbol": "AAPL", "secType": "STK", "exchange": "ISLAND"}, ["AAPL STK"]),
        ({"symbol": "AAPL", "secType": "STK", "primaryExchange": "ARCA"}, []),
        ({"symbol": "AAPL", "secType": "STK", "currency": "EUR"}, []),
        ({"symbol": "aapl"}, ["AAPL STK", "AAPL OPT"]),
        ({"symbol": "ES", "secType": "FUT", "lastTradeDateOrContractMonth": "202506"}, ["ES FUT"]),
        (
            {"symbol": "ES", "secType": "FUT", "lastTradeDateOrContractMonth": "20250620"},
            ["ES FUT"],
        ),
        ({"symbol": "ES", "secType": "FUT", "lastTradeDateOrContractMonth": "202509"}, []),
        ({"symbol": "ES", "secType": "FUT", "multiplier": "50.0"}, ["ES FUT"]),
        ({"symbol": "ES", "secType": "FUT", "multiplier": "5"}, []),
        ({"localSymbol": "ESM5", "secType": "FUT"}, ["ES FUT"]),
        ({"symbol": "AAPL", "secType": "OPT", "strike": 200.0, "right": "CALL"}, ["AAPL OPT"]),
        ({"symbol": "AAPL", "secType": "OPT", "strike": 210.0}, []),
        ({"symbol": "AAPL", "secType": "OPT", "right": "P"}, []),
        ({"symbol": "EUR", "secType": "CASH", "exchange": "IDEALPRO"}, ["EUR CASH"]),
        ({"symbol": "BTC", "secType": "CRYPTO", "exchange": "PAXOS"}, ["BTC CRYPTO"]),
        ({"symbol": "BTC", "secType": "CRYPTO", "tradingClass": "ETH"}, []),
    ],
)
def test_resolve_like_ib(fields: dict, expected: list[str]) -> None:
    market = Market(UNIVERSE, seed=1)
    found = market.resolve(contract(**fields))
    assert [f"{i.symbol} {i.sec_type}" for i in found] == expected


def test_unset_strike_is_not_a_filter() -> None:
    market = Market(UNIVERSE, seed=1)
    c = contract(symbol="AAPL", secType="OPT", strike=UNSET_DOUBLE)
    assert [i.con_id for i in market.resolve(c)] == [AAPL_C.con_id]


def test_grid_round_trips_and_market_rules() -> None:
    fx = Grid(EURUSD)
    assert fx.ticks(1.13005) == 22601 and fx.price(22601) == 1.13005
    assert fx.ticks(1.13002) is None
    g = Grid(AAPL)
    assert g.ticks(199.99) == 19999 and g.price(19999) == 199.99 and g.ticks(199.995) is None
    opt = Grid(AAPL_C)
    assert opt.on_rule(opt.ticks(2.53)) and opt.on_rule(opt.ticks(3.05))
    assert not opt.on_rule(opt.ticks(3.03))
    btc = Grid(BTC)
    assert btc.lots(Decimal("0.0005")) == 5 and btc.size(5) == Decimal("0.0005")
    assert btc.lots(Decimal("0.00005")) is None


def test_day_session_end() -> None:
    fri_17_et = int(datetime(2025, 6, 6, 21, 0, tzinfo=UTC).timestamp()) * NS
    assert (
        session_end_after(AAPL, MON_10_ET)
        == int(datetime(2025, 6, 2, 20, 0, tzinfo=UTC).timestamp()) * NS
    )
    # after Friday's close the next DAY session ends on Monday
    assert (
        session_end_after(AAPL, fri_17_et)
        == int(datetime(2025, 6, 9, 20, 0, tzinfo=UTC).timestamp()) * NS
    )
    assert (
        session_end_after(ES, MON_10_ET)
        == int(
            datetime(2025, 6, 2, 20, 0, tzinfo=UTC).timestamp()  # 15:00 Chicago
        )
        * NS
    )


# ---- the walk ---------------------------------------------------------------------------------


def test_same_seed_same_events_other_seed_other_events() -> None:
    con_ids = [i.con_id for i in UNIVERSE]
    a = events_of(Market(UNIVERSE, seed=42), con_ids, 200)
    b = events_of(Market(UNIVERSE, seed=42), con_ids, 200)
    c = events_of(Market(UNIVERSE, seed=43), con_ids, 200)
    assert a == b
    assert a != c
    assert sum(len(evs) for _, evs in a) > 1000


def test_initial_book_is_full_and_centred_on_the_start_price() -> None:
    market = Market(UNIVERSE, seed=5)
    for inst in UNIVERSE:
        book = market.book(inst.con_id)
        assert len(book.bids) == len(book.asks) == inst.depth_levels
        assert book.bid <= inst.price <= book.ask
        assert_valid(market, inst.con_id)
    opt = market.book(AAPL_C.con_id)
    assert [p for p, _ in opt.bids[:3]] == [8.45, 8.40, 8.35]  # 0.05 increments above $3


def test_steps_reproduce_the_book_for_a_client_and_never_cross() -> None:
    market = Market(UNIVERSE, seed=9)
    replicas = {i.con_id: Replica(market, i.con_id) for i in UNIVERSE}
    prints = quotes = 0
    for _ in range(400):
        for inst in UNIVERSE:
            before = market.book(inst.con_id)
            evs = market.step(inst.con_id)
            replicas[inst.con_id].apply(evs)
            book = market.book(inst.con_id)
            assert replicas[inst.con_id].sides[BID] == book.bids
            assert replicas[inst.con_id].sides[ASK] == book.asks
            assert_valid(market, inst.con_id)
            q = [e for e in evs if type(e) is Quote]
            top_changed = (before.bid, before.bid_size, before.ask, before.ask_size) != (
                book.bid,
                book.bid_size,
                book.ask,
                book.ask_size,
            )
            assert len(q) == int(top_changed)
            if q:
                assert q[0] == Quote(book.bid, book.bid_size, book.ask, book.ask_size)
                quotes += 1
            trades = [e for e in evs if type(e) is Trade]
            if trades:
                assert book.last == trades[-1].price
                assert book.volume == before.volume + sum(t.size for t in trades)
                prints += 1
    assert prints > 100 and quotes > 400
    assert market.book(EURUSD.con_id).last == -1.0  # IDEALPRO never prints


def test_level_sizes_wander_around_the_level_size_however_long_the_flow() -> None:
    # Order flow moves a level's size halfway to a fresh draw: sizes must neither collapse to
    # one lot (a multiplicative walk drifts down) nor run away, even after a long flood. Steps
    # as short as a 40k events/s flood's: the price barely moves, so levels are not renewed.
    market = Market([AAPL], seed=4, step_ns=NS // 40_000)
    lots = market.state(AAPL.con_id).level_lots
    changed = 0
    for _ in range(60_000):
        evs = market.step(AAPL.con_id)
        changed += any(type(e) is DepthRow and e.operation == UPDATE for e in evs)
    st_ = market.state(AAPL.con_id)
    sizes = sorted(st_.bid_sz + st_.ask_sz)
    assert lots // 4 <= sizes[len(sizes) // 2] <= 3 * lots, (sizes, lots)
    assert sizes[-1] <= 4 * lots
    assert changed > 50_000  # nearly every step's order flow changes a size


def test_walk_scales_with_time_given() -> None:
    calm_market = Market([AAPL], seed=3)
    for k in range(300):
        calm_market.step(AAPL.con_id, MON_10_ET + k * NS // 1000)  # 1 ms apart: barely moves
    calm = abs(calm_market.book(AAPL.con_id).bid - AAPL.price)
    wild = Market([AAPL], seed=3)
    for k in range(300):
        wild.step(AAPL.con_id, MON_10_ET + k * 60 * NS)  # a minute apart
    moved = abs(wild.book(AAPL.con_id).bid - AAPL.price)
    assert calm <= 0.05 < moved


@settings(max_examples=60, deadline=None)
@given(
    seed=st.integers(0, 2**32),
    ops=st.lists(
        st.one_of(
            st.tuples(st.just("step"), st.integers(0, 5 * NS)),
            st.tuples(st.sampled_from(["BUY", "SELL"]), st.integers(1, 4000)),
        ),
        min_size=1,
        max_size=60,
    ),
)
def test_books_stay_valid_under_steps_and_takes(seed: int, ops: list) -> None:
    market = Market([AAPL, BY_SYMBOL["NQ", "FUT"]], seed=seed)
    con_ids = [AAPL.con_id, BY_SYMBOL["NQ", "FUT"].con_id]
    replicas = {c: Replica(market, c) for c in con_ids}
    t = MON_10_ET
    for kind, arg in ops:
        for c in con_ids:
            if kind == "step":
                t += arg
                evs = market.step(c, t)
            else:
                qty = Decimal(arg) if c == AAPL.con_id else Decimal(arg % 40 + 1)
                _, evs = market.take(c, kind, qty)
            replicas[c].apply(evs)
            assert replicas[c].sides[BID] == market.book(c).bids
            assert replicas[c].sides[ASK] == market.book(c).asks
            assert_valid(market, c)


def test_take_walks_the_levels_and_reports_what_it_changed() -> None:
    market = Market([AAPL], seed=11)
    con = AAPL.con_id
    before = market.book(con)
    replica = Replica(market, con)
    want = before.asks[0][1] + before.asks[1][1] + 7
    fills, evs = market.take(con, "BUY", want)
    assert fills == [before.asks[0], before.asks[1], (before.asks[2][0], Decimal(7))]
    after = market.book(con)
    assert after.asks[0] == (before.asks[2][0], before.asks[2][1] - 7)
    assert len(after.asks) == len(before.asks) - 2
    assert [(t.price, t.size) for t in evs if type(t) is Trade] == fills
    assert after.volume == before.volume + want and after.last == before.asks[2][0]
    assert [e for e in evs if type(e) is Quote] == [
        Quote(after.bid, after.bid_size, after.ask, after.ask_size)
    ]
    replica.apply(evs)
    assert replica.sides[ASK] == after.asks
    # a limit stops the walk; nothing is taken beyond it
    limit = after.asks[1][0]
    fills, _ = market.take(con, "BUY", Decimal(10**9), limit)
    assert fills and all(p <= limit for p, _ in fills)
    assert market.book(con).ask > limit
    # selling walks the bids from the best down
    fills, _ = market.take(con, "SELL", Decimal(1))
    assert fills == [(before.bid, Decimal(1))]
    # the next step refills the window around the unchanged fair price
    market.step(con)
    assert len(market.book(con).asks) == AAPL.depth_levels


def test_take_fractional_crypto() -> None:
    market = Market([BTC], seed=2)
    top = market.book(BTC.con_id).asks[0]
    fills, _ = market.take(BTC.con_id, "BUY", Decimal("0.0003"))
    assert fills == [(top[0], Decimal("0.0003"))]
    assert market.book(BTC.con_id).asks[0][1] == top[1] - Decimal("0.0003")
    with pytest.raises(ValueError, match="multiple"):
        market.take(BTC.con_id, "BUY", Decimal("0.00001"))


def test_auction_price_is_the_mid_on_the_grid() -> None:
    market = Market([AAPL, AAPL_C], seed=1)
    st_ = market.state(AAPL.con_id)
    assert market.auction_price(AAPL.con_id) == st_.bid_px[0]  # one-tick spread: ties to the bid
    o = market.state(AAPL_C.con_id)
    assert market.auction_price(AAPL_C.con_id) == (o.bid_px[0] + o.ask_px[0]) // 2


# ---- history ----------------------------------------------------------------------------------


@pytest.mark.parametrize("what", ["TRADES", "MIDPOINT", "BID", "ASK"])
def test_bars_end_at_the_current_price(what: str) -> None:
    market = Market([AAPL], seed=4)
    for _ in range(50):
        market.step(AAPL.con_id)
    book = market.book(AAPL.con_id)
    end = MON_10_ET + 30 * NS
    bars = market.bars(AAPL.con_id, end, 3600, 60, what)
    assert len(bars) == 60
    expected = {
        "TRADES": book.last,
        "MIDPOINT": (book.bid + book.ask) / 2,
        "BID": book.bid,
        "ASK": book.ask,
    }[what]
    assert bars[-1].close == pytest.approx(expected)
    assert bars[-1].date == "20250602 10:00:00 US/Eastern"
    assert bars[0].date == "20250602 09:01:00 US/Eastern"
    for b in bars:
        assert b.low <= min(b.open, b.close) <= max(b.open, b.close) <= b.high
    for prev, cur in itertools.pairwise(bars):
        assert cur.open == pytest.approx(prev.close, abs=0.011)
    if what == "TRADES":
        assert all(b.volume > 0 and b.barCount > 0 for b in bars)
    else:
        assert all(b.volume == -1 and b.barCount == -1 for b in bars)
    assert [str(b) for b in bars] == [str(b) for b in market.bars(AAPL.con_id, end, 3600, 60, what)]


def test_bar_dates_daily_epoch_and_no_data() -> None:
    market = Market([AAPL, EURUSD], seed=4)
    daily = market.bars(AAPL.con_id, MON_10_ET, 5 * 86_400, 86_400, "MIDPOINT")
    assert [b.date for b in daily] == ["20250529", "20250530", "20250531", "20250601", "20250602"]
    epoch = market.bars(AAPL.con_id, MON_10_ET, 300, 60, "BID", format_date=2)
    assert [int(b.date) for b in epoch] == [MON_10_ET // NS - 60 * k for k in range(5, 0, -1)]
    # bid and ask bars share one path
    asks = market.bars(AAPL.con_id, MON_10_ET, 300, 60, "ASK", format_date=2)
    assert all(a.close >= b.close for a, b in zip(asks, epoch, strict=True))
    assert market.bars(EURUSD.con_id, MON_10_ET, 300, 60, "TRADES") == []
    assert market.bars(AAPL.con_id, MON_10_ET, 300, 60, "NONSENSE") == []
    with pytest.raises(ValueError):
        market.bars(AAPL.con_id, MON_10_ET, 300, 0, "TRADES")


# ---- replay -----------------------------------------------------------------------------------


def test_a_recording_replays_to_the_same_books(tmp_path) -> None:
    source = Market([AAPL, ES], seed=21)
    lines = [record_line(c, 0, source.snapshot_rows(c)) for c in (AAPL.con_id, ES.con_id)]
    books = []
    for k in range(150):
        for c in (AAPL.con_id, ES.con_id):
            lines.append(record_line(c, (k + 1) * NS // 10, source.step(c)))
        books.append((source.book(AAPL.con_id), source.book(ES.con_id)))
    path = tmp_path / "rec.jsonl"
    path.write_text("\n".join(lines) + "\n")

    replays = Replay.load(path)
    assert set(replays) == {AAPL.con_id, ES.con_id}
    target = Market([AAPL, ES], seed=999)
    replicas = {}
    for c, r in replays.items():
        deletes = target.attach_replay(c, r)
        assert all(type(e) is DepthRow and e.operation == DELETE for e in deletes[:-1])
        assert target.book(c).bids == []
        target.step(c)  # the snapshot record
        replicas[c] = Replica(target, c)
    for aapl_book, es_book in books:
        for c, want in ((AAPL.con_id, aapl_book), (ES.con_id, es_book)):
            evs = target.step(c)
            replicas[c].apply(evs)
            got = target.book(c)
            assert (got.bids, got.asks, got.last, got.volume) == (
                want.bids,
                want.asks,
                want.last,
                want.volume,
            )
            assert replicas[c].sides[BID] == got.bids
    assert target.step(AAPL.con_id) == []  # exhausted, no loop


def test_replay_by_time_loop_and_interference() -> None:
    steps = [
        ReplayStep(0, (DepthRow(BID, 0, INSERT, 100.0, Decimal(5)),)),
        ReplayStep(NS, (DepthRow(ASK, 0, INSERT, 100.02, Decimal(7)),)),
        ReplayStep(2 * NS, trades=(Trade(100.02, Decimal(3)),)),
    ]
    inst = SimInstrument(con_id=7, symbol="TST", sec_type="STK", depth_levels=2)
    market = Market([inst], seed=0)
    market.attach_replay(7, Replay(steps, loop=True))
    t = MON_10_ET
    assert [type(e) for e in market.step(7, t)] == [DepthRow, Quote]
    assert market.step(7, t + NS // 2) == []
    evs = market.step(7, t + 2 * NS)  # two records are due
    assert [type(e) for e in evs] == [DepthRow, Trade, Quote]
    assert market.book(7).last == 100.02
    # liquidity taken in between does not confuse the by-price replay
    market.take(7, "SELL", Decimal(5))
    assert market.book(7).bids == []
    # a bid through the ask removes the crossed ask; depth is capped
    market.attach_replay(
        7,
        Replay(
            [
                ReplayStep(
                    0,
                    (
                        DepthRow(BID, 0, INSERT, 100.05, Decimal(1)),
                        DepthRow(BID, 1, INSERT, 100.04, Decimal(1)),
                        DepthRow(BID, 2, INSERT, 100.03, Decimal(1)),
                    ),
                )
            ]
        ),
    )
    market.step(7)
    assert [p for p, _ in market.book(7).bids] == [100.05, 100.04]
    assert_valid(market, 7)


def test_replay_rejects_bad_records(tmp_path) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_text('{"con_id": 1, "ts_ns": 0}\n{"con_id": 1, "depth": [[0, 0]]}\n')
    with pytest.raises(ValueError, match=r"bad\.jsonl:2"):
        Replay.load(path)
    market = Market([AAPL], seed=0)
    market.attach_replay(
        AAPL.con_id, Replay([ReplayStep(0, (DepthRow(BID, 0, 0, 100.001, Decimal(1)),))])
    )
    with pytest.raises(ValueError, match="off the price or size grid"):
        market.step(AAPL.con_id)
