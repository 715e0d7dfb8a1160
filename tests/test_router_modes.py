"""Router modes SHADOW / CANARY / LIVE and the shadow-vs-live comparison.

Most tests run a real engine with a simulated venue as the "real" venue (``SIM``, answering
at once on a SimClock) and the router's own shadow venue (``SIM:shadow``) beside it; the IB
tests trade through ``IBVenue`` against the gateway simulator over loopback to show that a
shadowed order never reaches the gateway.
"""

from __future__ import annotations

import asyncio
import io
import itertools
import math
import tomllib
from pathlib import Path

import numpy as np
import pytest
from event_recorder import Recorder

from adapters.sim.venue import SimVenue
from engine.app import RunReport, build_app, run_app
from engine.clock import SimClock
from engine.config import (
    ConfigError,
    RiskConfig,
    RouterConfig,
    RouterVenueConfig,
    ShadowVenueConfig,
    SimVenueConfig,
    parse_config,
)
from engine.instruments import AssetClass, InstrumentRegistry
from engine.messages import BOOK_DELTA, BookSide, DeltaAction, EventKind
from engine.orders import Order, OrderState
from engine.router import VenueMode, format_comparison, goes_live, mix64
from engine.runtime import Engine
from tests.ib_venue_support import IBHarness

ROOT = Path(__file__).resolve().parent.parent
START_NS = 1_700_000_000_000_000_000
BID, ASK = int(BookSide.BID), int(BookSide.ASK)
A, F, C, X = EventKind.ACCEPTED, EventKind.FILL, EventKind.CANCELLED, EventKind.CANCEL_REJECTED
SESSION_BASE = 1_700_000_000 << 24


class Counting(SimVenue):
    """A simulated venue that also counts the cancels and modifies it is sent."""

    def __init__(self, *args) -> None:
        super().__init__(*args)
        self.cancels: list[int] = []
        self.modifies: list[int] = []

    def cancel(self, order) -> None:
        self.cancels.append(order.client_order_id)
        super().cancel(order)

    def modify(self, order, qty_lots: int, price_ticks: int) -> None:
        self.modifies.append(order.client_order_id)
        super().modify(order, qty_lots, price_ticks)


class Harness:
    """ES at venue SIM and NQ at venue SIM2 (both simulated, tick 1.0 so prices are ticks)."""

    def __init__(
        self,
        router: RouterConfig | None = None,
        venue: SimVenueConfig | None = None,
        session_base: int | None = SESSION_BASE,
    ) -> None:
        self.registry = InstrumentRegistry()
        self.es = self.registry.add("ES", "SIM", AssetClass.FUTURE, 1.0, 1.0, 1.0)
        self.nq = self.registry.add("NQ", "SIM2", AssetClass.FUTURE, 1.0, 1.0, 1.0)
        self.clock = SimClock(START_NS)
        self.sim = Counting("SIM", venue or SimVenueConfig())
        self.sim2 = Counting("SIM2", venue or SimVenueConfig())
        self.engine = Engine(
            self.registry, {"SIM": self.sim, "SIM2": self.sim2}, self.clock,
            risk=RiskConfig(max_open_orders=100_000, equity=1e9), router=router,
        )  # fmt: skip
        if session_base is not None:
            # Client order ids as a restart with the same session base would make them: the
            # same ids in two engines, to compare their choices.
            self.engine.tracker._ids = itertools.count(session_base + 1)
        self.strat: Recorder = self.engine.add_strategy(Recorder, "rec", None, ["ES", "NQ"])
        self.engine.start()

    def book(self, inst, bid: int, ask: int, size: int = 1_000_000) -> None:
        """Replace ``inst``'s book with one bid and one ask level."""
        d = np.zeros(3, dtype=BOOK_DELTA)
        d["instrument_id"] = inst.id
        d["action"] = [DeltaAction.CLEAR, DeltaAction.SET, DeltaAction.SET]
        d["side"] = [BID, BID, ASK]
        d["price"] = [0, bid, ask]
        d["size"] = [0, size, size]
        d["ts_event"] = d["ts_recv"] = self.clock.now()
        self.engine.deltas.write(d)
        self.engine.pump()

    def shadow(self, venue: str = "SIM") -> SimVenue:
        return self.engine.router.shadow_venues[venue]

    def order(self, coid: int):
        tr = self.engine.tracker
        return tr.get(coid) or tr.finished[coid]


def canary(pct: float, mode: str = "canary", **shadow) -> RouterConfig:
    return RouterConfig(
        venues={"SIM": RouterVenueConfig(mode=mode, canary_pct=pct)},
        shadow=ShadowVenueConfig(ack_latency_us=0, fill_latency_us=0, **shadow),
    )


# ---- the choice --------------------------------------------------------------------------


def test_mixer_is_splitmix64() -> None:
    # splitmix64 seeded with 0: its first output is mix64(0). Pinned, because the CANARY choice
    # of every journaled order depends on it: a different mixer would reroute after an upgrade.
    assert mix64(0) == 0xE220A8397B1DCDAF
    assert mix64(1) != mix64(2)
    assert all(0 <= mix64(x) < 2**64 for x in (0, 1, 2**63, 2**64 - 1))
    assert goes_live(12345, 100.0) and not goes_live(12345, 0.0)


# ---- LIVE --------------------------------------------------------------------------------


def test_live_sends_every_order_and_shadows_none() -> None:
    h = Harness()
    assert h.engine.router.modes == {"SIM": VenueMode.LIVE, "SIM2": VenueMode.LIVE}
    assert h.engine.router.shadow_venues == {} and not h.engine.router.any_shadow
    h.book(h.es, 100, 102)
    coids = [h.strat.buy("ES", 1) for _ in range(50)] + [h.strat.sell("ES", 1, 90.0)]
    h.engine.pump()
    assert h.sim.received == 51
    assert not any(h.order(c).shadow for c in coids)
    assert h.engine.router.shadowed == 0
    assert h.engine.portfolio.position(0, h.es.id).lots == 49  # 50 bought, 1 sold at 100
    assert h.engine.shadow_portfolio.positions() == {}
    assert h.engine.router.comparison() == {}


# ---- SHADOW ------------------------------------------------------------------------------


def test_shadow_fills_in_the_shadow_book_and_sends_nothing() -> None:
    h = Harness(canary(0.0, mode="shadow"))
    router = h.engine.router
    assert router.modes["SIM"] is VenueMode.SHADOW and router.modes["SIM2"] is VenueMode.LIVE
    assert set(router.shadow_venues) == {"SIM"} and h.shadow().name == "SIM:shadow"
    h.book(h.es, 100, 102)
    h.book(h.nq, 50, 51)
    filled = h.strat.buy("ES", 5)
    resting = h.strat.buy("ES", 2, 90.0)
    other = h.strat.buy("NQ", 3)  # SIM2 is LIVE
    h.engine.pump()
    assert h.strat.kinds(filled) == [A, F]
    assert h.strat.fills(filled)[0].fill_price_ticks == 102
    assert h.strat.kinds(resting) == [A]
    assert h.order(filled).shadow and h.order(resting).shadow and not h.order(other).shadow
    assert h.sim.received == 0 and h.shadow().received == 2 and h.sim2.received == 1
    # Kept apart: shadow fills in the shadow book, live ones in the live book.
    assert h.engine.shadow_portfolio.position(0, h.es.id).lots == 5
    assert h.engine.portfolio.position(0, h.es.id).lots == 0
    assert h.engine.portfolio.position(0, h.nq.id).lots == 3
    assert h.strat.position("ES") == 5 and h.strat.shadow_position("ES") == 5
    assert h.strat.live_position("ES") == 0 and h.strat.position("NQ") == 3
    # The shadow venue hears of the book like the real ones: the resting order fills when the
    # ask comes down to it.
    h.book(h.es, 88, 90)
    assert h.strat.kinds(resting) == [A, F]
    assert h.engine.shadow_portfolio.position(0, h.es.id).lots == 7
    # Cancels and modifies of shadow orders go to the shadow venue only.
    late = h.strat.sell("ES", 1, 200.0)
    h.strat.modify(late, qty=2, price=199.0)
    h.strat.cancel(late)
    h.engine.pump()
    assert h.strat.kinds(late) == [A, EventKind.MODIFIED, C]
    assert h.sim.cancels == [] and h.sim.modifies == []
    # P&L: live + shadow together, and each apart.
    assert h.strat.pnl().total == pytest.approx(
        h.strat.live_pnl().total + h.strat.shadow_pnl().total
    )
    assert h.strat.shadow_pnl().unrealised == pytest.approx(5 * (89 - 102) + 2 * (89 - 90))


def test_shadow_orders_count_against_the_risk_limits() -> None:
    """The gate's limits apply to the as-if-live book: shadow fills use up max_position."""
    registry = InstrumentRegistry()
    es = registry.add("ES", "SIM", AssetClass.FUTURE, 1.0, 1.0, 1.0)
    clock = SimClock(START_NS)
    engine = Engine(
        registry, {"SIM": SimVenue("SIM")}, clock, risk=RiskConfig(max_position=10, equity=1e9),
        router=canary(0.0, mode="shadow"),
    )  # fmt: skip
    strat = engine.add_strategy(Recorder, "rec", None, ["ES"])
    engine.start()
    d = np.zeros(2, dtype=BOOK_DELTA)
    d["instrument_id"] = es.id
    d["action"] = DeltaAction.SET
    d["side"] = [BID, ASK]
    d["price"] = [100, 102]
    d["size"] = 1000
    engine.deltas.write(d)
    engine.pump()
    first = strat.buy("ES", 8)
    engine.pump()
    assert strat.kinds(first) == [A, F]
    second = strat.buy("ES", 5)
    engine.pump()
    assert strat.kinds(second) == [EventKind.REJECTED]
    assert engine.shadow_portfolio.position(0, es.id).lots == 8


# ---- CANARY ------------------------------------------------------------------------------


def test_canary_share_matches_pct_and_is_reproducible() -> None:
    n, pct = 2000, 10.0
    runs = []
    for _ in range(2):
        h = Harness(canary(pct))
        h.book(h.es, 100, 102)
        coids = [h.strat.buy("ES", 1, 50.0) for _ in range(n)]  # rest: nothing fills
        h.engine.pump()
        live = [c for c in coids if not h.order(c).shadow]
        p = pct / 100
        sigma = math.sqrt(n * p * (1 - p))
        assert abs(len(live) - n * p) < 4 * sigma, (len(live), n * p, sigma)
        assert all(goes_live(c, pct) == (c in set(live)) for c in coids)
        assert h.sim.received == len(live) and h.shadow().received == n - len(live)
        assert h.engine.router.shadowed == n - len(live)
        assert all(k == [A] for k in map(h.strat.kinds, coids))
        runs.append({c: h.order(c).shadow for c in coids})
    # Two engines, the same client order ids: the same choice for every order.
    assert runs[0] == runs[1]


@pytest.mark.parametrize("pct", [0.0, 0.5, 37.25, 100.0])
def test_canary_share_at_other_percentages(pct: float) -> None:
    n = 2000
    h = Harness(canary(pct))
    h.book(h.es, 100, 102)
    coids = [h.strat.buy("ES", 1, 50.0) for _ in range(n)]
    h.engine.pump()
    live = sum(not h.order(c).shadow for c in coids)
    p = pct / 100
    sigma = math.sqrt(n * p * (1 - p))
    assert abs(live - n * p) <= 4 * sigma  # exact at 0 and 100


def test_canary_cancels_and_modifies_follow_the_order() -> None:
    h = Harness(canary(50.0))
    h.book(h.es, 100, 102)
    coids = [h.strat.buy("ES", 1, 50.0) for _ in range(200)]
    h.engine.pump()
    live = {c for c in coids if not h.order(c).shadow}
    assert 0 < len(live) < 200
    for c in coids[:100]:
        h.strat.modify(c, price=49.0)
    h.strat.cancel_all("ES")
    h.engine.pump()
    # The real venue saw the live orders' requests and nothing of the shadow ones.
    assert set(h.sim.cancels) == live
    assert set(h.sim.modifies) == live & set(coids[:100])
    for c in coids:
        kinds = h.strat.kinds(c)
        assert kinds[-1] == C and X not in kinds, (c, kinds)
    assert not h.sim._orders and not h.shadow()._orders


def test_a_shadow_order_never_reaches_a_venue_that_went_live() -> None:
    """A shadow order restored (say, from a journal) after its venue went LIVE: its cancel is
    refused here, never sent to the real venue, which never had the order."""
    h = Harness()
    order = Order(h.engine.tracker.next_id(), 0, h.es.id, 1, 1, 0, 1, 50)
    order.shadow = True
    order.state = OrderState.ACCEPTED
    h.engine.tracker.add(order)
    h.strat.cancel(order.client_order_id)
    h.strat.modify(order.client_order_id, price=49.0)
    h.engine.pump()
    assert h.sim.cancels == [] and h.sim.modifies == []
    kinds = h.strat.kinds(order.client_order_id)
    assert kinds == [X, X]
    assert "was shadowed" in h.strat.of(order.client_order_id)[0].reason


def test_global_mode_caps_every_venue() -> None:
    def modes(global_mode: str, sim: str, sim2: str | None = None) -> dict[str, VenueMode]:
        venues = {"SIM": RouterVenueConfig(mode=sim, canary_pct=25.0)}
        if sim2 is not None:
            venues["SIM2"] = RouterVenueConfig(mode=sim2)
        h = Harness(RouterConfig(mode=global_mode, venues=venues))
        return h.engine.router.modes

    assert modes("shadow", "canary") == {"SIM": VenueMode.SHADOW, "SIM2": VenueMode.SHADOW}
    assert modes("live", "canary") == {"SIM": VenueMode.CANARY, "SIM2": VenueMode.LIVE}
    assert modes("canary", "live", "shadow") == {
        "SIM": VenueMode.CANARY,
        "SIM2": VenueMode.SHADOW,
    }
    # A venue capped from CANARY to SHADOW sends nothing, whatever its canary_pct.
    h = Harness(RouterConfig(mode="shadow", venues={"SIM": RouterVenueConfig("canary", 100.0)}))
    h.book(h.es, 100, 102)
    coids = [h.strat.buy("ES", 1) for _ in range(20)]
    h.engine.pump()
    assert h.sim.received == 0 and all(h.order(c).shadow for c in coids)
    # A global CANARY on a venue with no [router.venues] section: canary_pct 0, all shadowed.
    h = Harness(RouterConfig(mode="canary"))
    h.book(h.nq, 50, 51)
    coids = [h.strat.buy("NQ", 1) for _ in range(20)]
    h.engine.pump()
    assert h.sim2.received == 0 and all(h.order(c).shadow for c in coids)


# ---- the comparison ----------------------------------------------------------------------


def test_comparison_reports_fill_rate_slippage_latency_and_books() -> None:
    router = RouterConfig(
        venues={"SIM": RouterVenueConfig(mode="canary", canary_pct=50.0)},
        shadow=ShadowVenueConfig(ack_latency_us=200, fill_latency_us=300),
    )
    h = Harness(router, SimVenueConfig(ack_latency_us=100, fill_latency_us=50))
    h.book(h.es, 100, 102)  # arrival mid 101
    buys = [h.strat.buy("ES", 2) for _ in range(40)]  # fill at 102: +99 bp
    rests = [h.strat.buy("ES", 1, 60.0) for _ in range(20)]  # never fill
    h.clock.advance_to(h.clock.now() + 10_000_000)
    h.engine.pump()
    assert all(h.strat.kinds(c) == [A, F] for c in buys)
    comp = h.engine.router.comparison()
    assert set(comp) == {"SIM"}  # SIM2 is LIVE: nothing to compare
    row = comp["SIM"]
    assert row["mode"] == "canary" and row["canary_pct"] == 50.0
    live, shadow = row["live"], row["shadow"]
    n_live = sum(not h.order(c).shadow for c in buys)
    r_live = sum(not h.order(c).shadow for c in rests)
    assert live["orders"] == n_live + r_live and shadow["orders"] == 60 - n_live - r_live
    for book, n_filled, n_rest in ((live, n_live, r_live), (shadow, 40 - n_live, 20 - r_live)):
        assert book["orders_filled"] == n_filled
        assert book["fill_rate"] == pytest.approx(n_filled / (n_filled + n_rest))
        assert book["lots_ordered"] == 2 * n_filled + n_rest
        assert book["lot_fill_rate"] == pytest.approx(2 * n_filled / (2 * n_filled + n_rest))
        bp = (102 - 101) / 101 * 1e4
        assert book["slippage_bp_mean"] == pytest.approx(bp)
        assert book["slippage_bp_p50"] == pytest.approx(bp)
        assert book["slippage_bp_p90"] == pytest.approx(bp)
    # Latencies from routing: the real venue answers in 100 µs and fills 100 + 50 µs later;
    # the shadow in 200 µs and 200 + 300.
    assert live["ack_us_p50"] == pytest.approx(100) and live["ack_us_p99"] == pytest.approx(100)
    assert live["first_fill_us_p50"] == pytest.approx(150)
    assert shadow["ack_us_p50"] == pytest.approx(200)
    assert shadow["first_fill_us_p99"] == pytest.approx(500)
    # Each book's positions and P&L (marked to the mid of 101).
    assert live["positions"] == {"ES": 2 * n_live}
    assert shadow["positions"] == {"ES": 2 * (40 - n_live)}
    assert live["pnl"] == pytest.approx(2 * n_live * (101 - 102))
    # A sell against the bid: slippage is positive when worse for us there too.
    sell = h.strat.sell("ES", 1)
    h.clock.advance_to(h.clock.now() + 10_000_000)
    book = "shadow" if h.order(sell).shadow else "live"
    assert h.engine.router.comparison()["SIM"][book]["slippage_bp_p90"] == pytest.approx(
        (101 - 100) / 101 * 1e4
    )
    table = h.engine.router.format_comparison()
    assert "SIM" in table and "canary 50%" in table and "shadow" in table and "+99.01" in table
    gauges = {(name, tuple(sorted(labels.items()))): v for name, _, labels, v in h.engine.gauges()}
    key = ("router_fill_rate", (("book", "live"), ("venue", "SIM")))
    assert gauges[key] == pytest.approx(live["fill_rate"])
    assert ("router_slippage_bp", (("book", "shadow"), ("venue", "SIM"))) in gauges


def test_comparison_window_is_bounded() -> None:
    router = RouterConfig(
        mode="shadow",
        stats_window=16,
        shadow=ShadowVenueConfig(ack_latency_us=0, fill_latency_us=0),
    )
    h = Harness(router)
    h.book(h.es, 100, 102)
    for _ in range(50):
        h.strat.buy("ES", 1)
    h.engine.pump()
    stats = h.engine.router.stats
    assert stats.orders == 50 and len(stats._slot) == 16
    shadow = h.engine.router.comparison()["SIM"]["shadow"]
    assert shadow["orders"] == 16 and shadow["fill_rate"] == 1.0
    # Positions come from the book, not the window.
    assert shadow["positions"] == {"ES": 50}
    assert format_comparison({}) == ""


# ---- config and the demo -----------------------------------------------------------------


def demo(**router) -> dict:
    data = tomllib.loads((ROOT / "config" / "demo.toml").read_text())
    data["venues"]["SIM"]["ack_latency_us"] = 0
    data["venues"]["SIM"]["fill_latency_us"] = 0
    data["metrics"]["enabled"] = False
    data["router"] = router
    return data


def config_error(data: dict) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        parse_config(data, "demo-test.toml")
    return info.value


def test_router_config_errors_name_the_key() -> None:
    e = config_error(demo(venues={"NOPE": {"mode": "shadow"}}))
    assert e.key == "router.venues.NOPE" and "no [venues.NOPE]" in e.message
    assert "SIM" in e.message
    e = config_error(demo(venues={"SIM": {"mode": "canary", "canary_pct": 150}}))
    assert e.key == "router.venues.SIM.canary_pct" and "between 0 and 100" in e.message
    e = config_error(demo(venues={"SIM": {"canary_pct": -1}}))
    assert e.key == "router.venues.SIM.canary_pct"
    e = config_error(demo(mode="paper"))
    assert e.key == "router.mode" and "'shadow'" in e.message
    e = config_error(demo(venues={"SIM": {"mdoe": "shadow"}}))
    assert e.key == "router.venues.SIM.mdoe" and "did you mean 'mode'" in e.message
    e = config_error(demo(shadow={"ack_latency_us": -5}))
    assert e.key == "router.shadow.ack_latency_us"
    cfg = parse_config(demo(), "demo-test.toml")
    assert cfg.router.mode == "live" and cfg.router.venues == {}
    assert cfg.router.shadow.ack_latency_us == 200.0


def test_router_refuses_an_unknown_venue_when_built_directly() -> None:
    with pytest.raises(ValueError, match=r"router\.venues\.NOPE.*SIM"):
        Harness(RouterConfig(venues={"NOPE": RouterVenueConfig()}))


def test_demo_in_canary_keeps_the_books_apart_and_reports_them() -> None:
    config = parse_config(
        demo(mode="canary", venues={"SIM": {"mode": "canary", "canary_pct": 30}},
             shadow={"ack_latency_us": 0, "fill_latency_us": 0}),
        "demo-test.toml",
    )  # fmt: skip
    app = build_app(config, SimClock(START_NS))
    engine, feed = app.engine, app.feed
    engine.start()
    feed.publish_snapshot(engine)
    for _ in range(300):
        feed.publish(engine, 100)
    engine.stop()
    shadow = engine.router.shadow_venues["SIM"]
    real = engine.venues["SIM"]
    assert engine.router.orders > 20 and real.received > 0 and shadow.received > 0
    assert real.received + shadow.received == engine.router.orders
    assert shadow.received == engine.router.shadowed
    assert engine.tracker.illegal == 0
    # Each book holds exactly its own orders' fills.
    lots: dict[tuple[bool, int, int], int] = {}
    for order in [*engine.tracker.open.values(), *engine.tracker.finished.values()]:
        key = (order.shadow, order.strategy_id, order.instrument_id)
        lots[key] = lots.get(key, 0) + order.filled_lots * order.side
    for (is_shadow, sid, iid), n in lots.items():
        book = engine.shadow_portfolio if is_shadow else engine.portfolio
        assert book.position(sid, iid).lots == n
    for s in engine.strategies:
        for inst in s.instruments:
            assert s.position(inst) == pytest.approx(
                s.live_position(inst) + s.shadow_position(inst)
            )
    comp = engine.router.comparison()["SIM"]
    assert comp["live"]["orders"] + comp["shadow"]["orders"] == engine.router.orders
    report = RunReport(1.0, 0, 0, 0, 0, 0.0, [], "active", None, engine.router.format_comparison())
    assert "shadow vs live" in report.format() and "canary 30%" in report.format()


async def test_run_summary_and_status_show_the_comparison() -> None:
    data = demo(venues={"SIM": {"mode": "canary", "canary_pct": 50}})
    data["venues"]["SIM"]["ack_latency_us"] = 50
    data["venues"]["SIM"]["fill_latency_us"] = 50
    data["engine"]["status_interval_s"] = 0.2
    app = build_app(parse_config(data, "demo-test.toml"))
    out = io.StringIO()
    report = await run_app(app, 0.6, out)
    assert app.engine.router.orders > 0
    text = report.format()
    assert "shadow vs live" in text and "canary 50%" in text
    assert "shadowed" in out.getvalue() and "shadow P&L" in out.getvalue()
    # All LIVE: no table.
    app = build_app(parse_config(demo(), "demo-test.toml"))
    report = await run_app(app, 0.2, io.StringIO())
    assert report.router == "" and "shadow vs live" not in report.format()


# ---- IB: nothing reaches the gateway -----------------------------------------------------


async def test_ib_shadow_sends_nothing_to_the_gateway() -> None:
    async with IBHarness(router=RouterConfig(mode="shadow")) as h:
        await h.book_ready("AAPL")
        assert h.engine.router.modes["IB"] is VenueMode.SHADOW
        px = round(h.mid("AAPL") + 0.50, 2)
        coid = h.strat.buy("AAPL", 10, px)
        await h.wait_kind(coid, F)
        assert h.kinds(coid)[0] == A
        assert sum(f.fill_lots for f in h.strat.fills(coid)) == 10
        assert all(f.exec_id.startswith("IB:shadow-") for f in h.strat.fills(coid))
        rest = h.strat.buy("AAPL", 5, round(h.mid("AAPL") * 0.97, 2))
        await h.wait_kind(rest, A)
        h.strat.cancel(rest)
        await h.wait_kind(rest, C)
        aapl = h.registry.resolve("AAPL")
        assert h.engine.shadow_portfolio.position(0, aapl.id).lots == 10
        assert h.engine.portfolio.position(0, aapl.id).lots == 0
        assert h.strat.position("AAPL") == 10
        await asyncio.sleep(0.1)  # anything sent would have reached the simulator by now
        assert h.sim_orders() == [] and h.venue.orders_sent == 0
        assert h.core().market.book(265598) is not None  # the market data did flow


async def test_ib_canary_sends_only_the_live_share() -> None:
    router = RouterConfig(venues={"IB": RouterVenueConfig(mode="canary", canary_pct=50.0)})
    async with IBHarness(router=router) as h:
        await h.book_ready("AAPL")
        low = round(h.mid("AAPL") * 0.97, 2)
        coids = [h.strat.buy("AAPL", 1, low) for _ in range(30)]
        for c in coids:
            await h.wait_kind(c, A)
        live = {c for c in coids if not h.engine.tracker.get(c).shadow}
        assert 0 < len(live) < 30
        assert all(goes_live(c, 50.0) == (c in live) for c in coids)
        h.strat.cancel_all("AAPL")
        for c in coids:
            await h.wait_kind(c, C)
        await asyncio.sleep(0.1)
        # The gateway knows the live orders only; no shadow order or its cancel reached it.
        assert {int(o.order.orderRef) for o in h.sim_orders()} == live
        assert h.venue.orders_sent == len(live)
        assert all(X not in h.kinds(c) for c in coids)
