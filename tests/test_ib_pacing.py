"""Outbound pacing: the token bucket's priorities and IB's historical-data rules."""

from __future__ import annotations

import asyncio

import pytest
from hypothesis import given
from hypothesis import strategies as st
from ibapi.wrapper import EWrapper

from adapters.ib.connection import connect
from adapters.ib.gateway_sim.server import GatewaySimServer
from adapters.ib.pacing import CANCEL, DATA, ORDER, HistoricalPacer, HistoricalRequest, MessagePacer
from engine.config import ConfigError, parse_config
from tests.ib_sim_support import sim_config


def test_cancels_go_before_orders_before_data() -> None:
    p = MessagePacer(rate=10, burst=2)
    p.submit(DATA, b"d1")
    p.submit(ORDER, b"o1")
    p.submit(CANCEL, b"c1")
    p.submit(CANCEL, b"c2")
    assert p.drain(0.0) == b"c1c2"
    assert p.drain(0.05) == b""  # half a token
    assert p.drain(0.1) == b"o1"
    assert p.next_due(0.1) == pytest.approx(0.2)
    assert p.drain(0.2) == b"d1"
    assert p.next_due(0.2) is None


def test_a_frame_goes_at_once_only_when_nothing_waits_and_a_token_is_free() -> None:
    p = MessagePacer(rate=10, burst=2)
    assert p.send_now(0.0) and p.send_now(0.0)  # the burst
    assert not p.send_now(0.0)  # no token: the caller queues it
    p.submit(ORDER, b"o1")
    assert not p.send_now(1.0)  # tokens again, but o1 waits: it goes first
    assert p.drain(1.0) == b"o1"
    assert p.send_now(1.0) and p.sent == 4 and p.pending == 0


@given(
    st.lists(st.tuples(st.floats(0, 0.2), st.integers(0, 4)), min_size=1, max_size=300),
    st.integers(1, 400),
)
def test_frames_sent_at_once_count_against_the_rate_too(
    steps: list[tuple[float, int]], n: int
) -> None:
    p = MessagePacer(rate=45, burst=5)
    for i in range(n):
        p.submit(i % 3, b"x")
    t = 0.0
    sends: list[float] = []
    for gap, tries in steps:
        t += gap
        sends += [t] * len(p.drain(t))
        sends += [t for _ in range(tries) if p.send_now(t)]
    for i, at in enumerate(sends):
        assert len([s for s in sends[i:] if s < at + 1.0]) <= 45 + 5
    assert p.sent == len(sends)


@given(st.lists(st.floats(0, 0.2), min_size=1, max_size=300), st.integers(1, 400))
def test_no_rolling_second_exceeds_the_rate_plus_burst(gaps: list[float], n: int) -> None:
    p = MessagePacer(rate=45, burst=5)
    for i in range(n):
        p.submit(i % 3, b"x")
    t = 0.0
    sends: list[float] = []
    for g in gaps:
        t += g
        sends += [t] * len(p.drain(t))
    for i, at in enumerate(sends):
        window = [s for s in sends[i:] if s < at + 1.0]
        assert len(window) <= 45 + 5
    assert len(sends) == n - p.pending


def test_rate_above_ibs_limit_is_refused() -> None:
    with pytest.raises(ValueError, match=r"\(0, 50\]"):
        MessagePacer(rate=60)


def _worst_second(p: MessagePacer, step: float = 0.001, horizon: float = 3.0) -> int:
    """The most frames ``p`` lets out in any rolling second, with far more queued than it can
    send: drained every ``step`` seconds from a full bucket."""
    for _ in range(500):
        p.submit(DATA, b"x")
    sends: list[float] = []
    for i in range(int(horizon / step) + 1):
        t = i * step
        sends += [t] * len(p.drain(t))
    return max(len([s for s in sends[j:] if s < at + 1.0]) for j, at in enumerate(sends))


@given(st.floats(1, 49), st.floats(0, 1))
def test_no_rolling_second_exceeds_50_at_any_accepted_rate_and_burst(rate, share) -> None:
    """Whatever rate and burst the pacer accepts, no rolling second carries more than IB's 50."""
    burst = 1 + share * (50 - rate - 1)
    assert _worst_second(MessagePacer(rate, burst), step=0.01) <= 50


@pytest.mark.parametrize(("rate", "burst"), [(50, 5), (45, 20)])
def test_a_burst_on_top_of_the_rate_beyond_50_is_refused(rate: float, burst: float) -> None:
    # Measured before the check: 54 messages in a rolling second at 50/5, 64 at 45/20.
    with pytest.raises(ValueError, match=r"rate \d+ \+ burst \d+ must be at most 50"):
        MessagePacer(rate, burst)
    doc = {"venues": {"IB": {"kind": "ib", "pacing_msgs_per_s": rate, "pacing_burst": burst}}}
    with pytest.raises(ConfigError) as err:
        parse_config(doc, "live.toml")
    e = err.value
    assert e.file == "live.toml" and e.key == "venues.IB.pacing_burst"
    assert "pacing_msgs_per_s" in e.message and "pacing_burst" in e.message
    assert 45 <= _worst_second(MessagePacer(45, 5)) <= 50  # the default


def test_each_error_100_slows_down_for_a_minute_from_itself() -> None:
    """Back-to-back 100s: the rate halves again at each, and the full rate comes back only a
    minute after the latest one (a restore left from the first must not undo the second)."""
    p = MessagePacer(rate=40, burst=5)
    assert p.slow_down(0.0) == 20
    assert p.slow_down(50.0) == 10
    p.drain(61.0)  # a minute after the first 100, 11 s after the second
    assert p.rate == 10
    p.drain(109.9)
    assert p.rate == 10
    p.drain(110.0)
    assert p.rate == 40 == p.base_rate
    for _ in range(10):
        p.slow_down(200.0)
    assert p.rate == 5  # never below 5 msg/s


def test_tokens_accrue_at_the_slow_rate_until_the_slow_time_is_over() -> None:
    p = MessagePacer(rate=40, burst=5)
    assert all(p.send_now(0.0) for _ in range(5))  # the bucket is empty at t = 0
    p.slow_down(0.0, for_s=0.1)
    for _ in range(10):
        p.submit(ORDER, b"o")
    # 0.1 s at 20/s, then 0.025 s at 40/s: 3 tokens (at 40/s all along it would be 5).
    assert p.drain(0.125) == b"ooo"


def _req(**kw) -> HistoricalRequest:
    base = dict(contract_key=265598, exchange="SMART", what_to_show="TRADES", end_date_time="",
                duration="1 D", bar_size="1 min")  # fmt: skip
    return HistoricalRequest(**{**base, **kw})


def test_identical_request_waits_15_seconds() -> None:
    h = HistoricalPacer()
    r = _req()
    assert h.earliest(r, 0.0) == 0.0
    h.sent_now(r, 0.0)
    h.finished()
    assert h.earliest(r, 1.0) == pytest.approx(15.0)
    assert h.earliest(_req(bar_size="5 mins"), 1.0) == 1.0


def test_six_for_one_contract_within_two_seconds_is_avoided_and_bid_ask_counts_twice() -> None:
    h = HistoricalPacer()
    for i in range(5):
        r = _req(duration=f"{i + 1} D")
        assert h.earliest(r, 0.1 * i) == pytest.approx(0.1 * i)
        h.sent_now(r, 0.1 * i)
    assert h.earliest(_req(duration="9 D"), 0.5) == pytest.approx(2.0)
    assert h.earliest(_req(duration="9 D", contract_key=1), 0.5) == 0.5
    g = HistoricalPacer()
    for i in range(2):
        g.sent_now(_req(what_to_show="BID_ASK", duration=f"{i} D"), 0.0)
    assert g.earliest(_req(what_to_show="BID_ASK", duration="7 D"), 0.1) == pytest.approx(2.0)


def test_sixty_per_ten_minutes_and_fifty_open() -> None:
    h = HistoricalPacer()
    for i in range(60):
        r = _req(contract_key=i, bar_size="30 secs")
        h.sent_now(r, float(i))
        h.finished()
    assert h.earliest(_req(contract_key=999, bar_size="5 secs"), 100.0) == pytest.approx(600.0)
    o = HistoricalPacer()
    for i in range(50):
        o.sent_now(_req(contract_key=i), 0.0)
    assert o.earliest(_req(contract_key=77), 700.0) is None
    o.finished()
    assert o.earliest(_req(contract_key=77), 700.0) == 700.0


@pytest.mark.parametrize("bar_size", ["1 min", "1 hour", "1 day", "1 week", "1 month"])
def test_the_ten_minute_count_is_for_small_bars_only(bar_size: str) -> None:
    """IB's 60 requests per 10 minutes is a rule for bars of 30 s or less: the 61st request
    for daily bars (61 symbols) goes at once, where it used to wait 570 s."""
    h = HistoricalPacer()
    t = 0.0
    for k in range(61):
        r = _req(contract_key=k, duration="1 Y", bar_size=bar_size)
        assert h.earliest(r, t) == t, f"request {k + 1}"
        h.sent_now(r, t)
        h.finished()
        t += 0.5
    # Large-bar requests do not use up the small bars' allowance either.
    assert h.earliest(_req(contract_key=999, bar_size="1 secs"), t) == t


def test_tick_data_and_small_bars_count_against_the_ten_minutes_together() -> None:
    h = HistoricalPacer()
    for k in range(30):
        h.sent_now(_req(contract_key=k, bar_size="30 secs"), float(k))
        h.sent_now(_req(contract_key=k, bar_size=""), float(k))  # reqHistoricalTicks: no bars
        h.finished()
        h.finished()
    assert h.earliest(_req(contract_key=999, bar_size="15 secs"), 100.0) == pytest.approx(600.0)
    assert h.earliest(_req(contract_key=999, bar_size=""), 100.0) == pytest.approx(600.0)
    assert h.earliest(_req(contract_key=999, bar_size="1 min"), 100.0) == 100.0


async def test_a_burst_of_500_requests_through_the_pacer_earns_no_error_100() -> None:
    server = GatewaySimServer(sim_config())
    await server.start()
    errors: list[int] = []

    class W(EWrapper):
        def error(self, req_id, t, code, msg, adv=""):
            errors.append(code)

        def currentTime(self, time):
            answers.append(time)

    answers: list[int] = []
    try:
        conn = await connect("127.0.0.1", server.port, 1, W())
        pacer = MessagePacer()
        for _ in range(500):
            conn.client.reqCurrentTime()
            pacer.submit(DATA, conn.session.take_output())
        loop = asyncio.get_running_loop()
        while pacer.pending:
            out = pacer.drain(loop.time())
            if out:
                conn.protocol.transport.write(out)
            await asyncio.sleep(max(0.0, pacer.next_due(loop.time()) or 0) - loop.time() + 0.001)
        while len(answers) < 500:
            await asyncio.sleep(0.05)
        assert 100 not in errors and conn.connected
        conn.close()
    finally:
        await server.stop()
