"""The sample market maker (engine/strategies/market_maker.py) on a real Engine and SimVenue.

ES (tick 0.25): quotes sit ``half_spread_ticks`` either side of the mid, skewed against the
position; only a change of the mid or of the position can move them.
"""

from __future__ import annotations

from adapters.sim.venue import SimVenue
from engine.clock import SimClock
from engine.config import RiskConfig
from engine.instruments import AssetClass, InstrumentRegistry
from engine.messages import BookSide
from engine.risk_gate import Verdict
from engine.runtime import Engine
from engine.strategies.market_maker import MarketMaker, MarketMakerParams
from tests.book_support import set_levels

BID, ASK = int(BookSide.BID), int(BookSide.ASK)


class Harness:
    def __init__(self, risk: RiskConfig | None = None) -> None:
        self.registry = InstrumentRegistry()
        self.es = self.registry.add("ES", "SIM", AssetClass.FUTURE, 0.25, 1.0, 50.0)
        self.clock = SimClock(1_000_000_000)
        self.venue = SimVenue("SIM")
        risk = risk or RiskConfig(equity=1e9)
        self.engine = Engine(self.registry, {"SIM": self.venue}, self.clock, risk=risk)
        params = MarketMakerParams(size=2, half_spread_ticks=1, skew_ticks=2.0, max_inventory=40)
        self.mm: MarketMaker = self.engine.add_strategy(MarketMaker, "mm", params, ["ES"])
        self.engine.start()

    def book(self, *levels: tuple[int, int, int]) -> None:
        set_levels(self.engine, self.es.id, self.clock.now(), levels)

    def quotes(self) -> list[tuple[int, int, int]]:
        """Working orders as (side, ticks, lots), bid first."""
        orders = self.mm.open_orders("ES")
        return sorted(((o.side, o.price_ticks, o.qty_lots) for o in orders), reverse=True)


def test_quotes_both_sides_around_the_mid() -> None:
    h = Harness()
    h.book((BID, 399, 10), (ASK, 401, 10))
    assert h.quotes() == [(1, 399, 2), (-1, 401, 2)]
    assert h.venue.received == 2


def test_a_change_of_sizes_only_moves_nothing() -> None:
    h = Harness()
    h.book((BID, 399, 10), (ASK, 401, 10))
    h.book((BID, 399, 25))
    h.book((ASK, 401, 3))
    assert h.venue.received == 2
    assert h.engine.router.modifies == 0
    assert h.quotes() == [(1, 399, 2), (-1, 401, 2)]


def test_a_move_of_the_mid_moves_the_quote_it_changes() -> None:
    h = Harness()
    h.book((BID, 399, 10), (ASK, 401, 10))
    h.book((ASK, 402, 10), (ASK, 401, 0))  # mid 400 -> 400.5: the ask moves, the bid stays
    assert h.engine.router.modifies == 1
    assert h.venue.received == 2
    assert h.quotes() == [(1, 399, 2), (-1, 402, 2)]


def test_a_quote_that_stopped_working_is_placed_again_at_an_unchanged_mid() -> None:
    h = Harness()
    h.book((BID, 399, 10), (ASK, 401, 10))
    bid = next(o for o in h.mm.open_orders("ES") if o.side == 1)
    h.mm.cancel(bid.client_order_id)
    h.engine.pump()
    assert h.quotes() == [(-1, 401, 2)]
    h.book((BID, 399, 11))  # the same mid and position as when it was quoted
    assert h.quotes() == [(1, 399, 2), (-1, 401, 2)]
    assert h.venue.received == 3


def test_a_rate_refusal_pauses_requotes_and_the_quote_moves_after_it() -> None:
    # Two messages of burst, one per second after: the two quotes use it up.
    h = Harness(RiskConfig(equity=1e9, strategy_order_rate_per_s=1.0, strategy_order_burst=2))
    h.book((BID, 399, 10), (ASK, 401, 10))
    assert h.quotes() == [(1, 399, 2), (-1, 401, 2)]
    h.book((ASK, 402, 10), (ASK, 401, 0))  # the ask should move: the gate refuses it
    assert h.engine.risk.rejects[Verdict.STRATEGY_RATE] == 1
    assert h.mm.rate_refusals == 1
    h.book((ASK, 403, 10), (ASK, 402, 0))  # paused: no request at all
    assert h.engine.risk.rejects[Verdict.STRATEGY_RATE] == 1
    assert h.engine.router.modifies == 0
    assert h.quotes() == [(1, 399, 2), (-1, 401, 2)]
    h.clock.advance_to(h.clock.now() + 2_000_000_000)  # past the pause, a token refilled
    h.book((BID, 399, 12))  # a size change only: the quotes are worked out again all the same
    assert h.engine.router.modifies == 2  # mid 401: both quotes move
    assert h.quotes() == [(1, 400, 2), (-1, 402, 2)]


def test_a_missing_quote_is_placed_during_a_pause() -> None:
    h = Harness(RiskConfig(equity=1e9, strategy_order_rate_per_s=1.0, strategy_order_burst=3))
    h.book((BID, 399, 10), (ASK, 401, 10))
    bid = next(o for o in h.mm.open_orders("ES") if o.side == 1)
    h.mm.cancel(bid.client_order_id)
    h.engine.pump()
    h.book((ASK, 402, 10), (ASK, 401, 0))  # new bid passes (last token), ask modify refused
    assert h.mm.rate_refusals == 1
    assert h.quotes() == [(1, 399, 2), (-1, 401, 2)]


def test_a_halt_pulls_the_quotes_and_nothing_is_sent_until_active_again() -> None:
    h = Harness()
    h.book((BID, 399, 10), (ASK, 401, 10))
    assert h.quotes() == [(1, 399, 2), (-1, 401, 2)]
    h.engine.set_trading_state("halted", "operator says stop")
    h.engine.pump()
    assert h.quotes() == []  # cancelled: a halted quote could not follow the market
    for k in range(5):  # the market moves on
        h.book((ASK, 402 + k, 10), (ASK, 401 + k, 0))
    assert sum(h.engine.risk.rejects) == 0  # no order or modify the gate must refuse
    assert h.venue.received == 2
    h.engine.set_trading_state("active", "operator says go")
    h.book((BID, 399, 11))
    assert h.quotes() == [(1, 401, 2), (-1, 404, 2)]  # mid 402.5: 401.5 and 403.5, rounded out


def test_reducing_quotes_only_the_side_that_reduces_at_most_the_position() -> None:
    h = Harness()
    h.book((BID, 397, 10), (ASK, 401, 10))  # quotes 398 / 400
    h.book((ASK, 398, 1))  # one lot of our bid at 398 fills: long 1
    assert h.mm.position("ES") == 1
    h.engine.set_trading_state("reducing", "risk says reduce")
    h.engine.pump()
    assert h.quotes() == []  # both pulled
    h.book((ASK, 398, 0), (BID, 397, 11))  # mid 399: fair 398.95
    assert h.quotes() == [(-1, 400, 1)]  # the ask only, one lot: all it may sell
    h.book((ASK, 402, 10), (ASK, 401, 0))  # mid 399.5: the ask moves, in size
    assert h.quotes() == [(-1, 401, 1)]
    assert sum(h.engine.risk.rejects) == 0


def test_inventory_limits_count_lots_not_float_sums() -> None:
    # Lots of 0.1, size 0.1, max_inventory 0.3: three bids may fill (0.1 + 0.2 is
    # 0.30000000000000004, above 0.3 as a float, not as lots).
    registry = InstrumentRegistry()
    btc = registry.add("BTC", "SIM", AssetClass.CRYPTO, 0.01, 0.1, 1.0, currency="USD")
    clock = SimClock(1_000_000_000)
    engine = Engine(registry, {"SIM": SimVenue("SIM")}, clock, risk=RiskConfig(equity=1e9))
    params = MarketMakerParams(size=0.1, skew_ticks=0.0, max_inventory=0.3)
    mm: MarketMaker = engine.add_strategy(MarketMaker, "mm", params, ["BTC"])
    engine.start()

    def book(*levels: tuple[int, int, int]) -> None:
        set_levels(engine, btc.id, clock.now(), levels)

    book((BID, 9_990, 10), (ASK, 10_010, 10))
    for filled in range(3):
        bids = [o for o in mm.open_orders("BTC") if o.side == 1]
        assert len(bids) == 1, f"no bid with {filled} lots held"
        px = bids[0].price_ticks
        book((ASK, px, 1))  # the market sells one lot to our bid
        book((ASK, px, 0))
    assert engine.portfolio.position(mm.id, 0).lots == 3
    assert [o.side for o in mm.open_orders("BTC")] == [-1]  # at the limit: the ask only


def test_a_book_without_a_mid_pulls_the_quotes_until_one_is_back() -> None:
    """A side of the book empties (IB ended the stream, the connection dropped, the market is
    one-sided): the quotes cannot be priced, so both are cancelled; the next book with a mid
    quotes again."""
    h = Harness()
    h.book((BID, 399, 10), (ASK, 401, 10))
    assert len(h.quotes()) == 2
    h.book((ASK, 401, 0))  # the ask side empties
    assert h.quotes() == []
    assert h.engine.router.cancels == 2
    h.book((ASK, 403, 5))
    assert h.quotes() == [(1, 400, 2), (-1, 402, 2)]
