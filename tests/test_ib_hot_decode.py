"""The IB hot-message decoder (``adapters.ib.decode`` over ``hotpath.ibwire``) against ibapi.

ibapi 10.46 is the reference: every stream is decoded twice, by ``HotDecoder`` (rows, plus the
cold frames handed to ibapi's ``Decoder``) and by ibapi's ``Decoder`` alone, dispatched exactly
as ``EClient.run`` does, and the ``EWrapper`` callbacks must come out the same, in the same
order. Streams come from the gateway simulator's ``ResponseEncoder`` at server versions from
pure text (176) to protobuf market data (206), protobuf tick-by-tick (208) and the newest
(225), cut into socket reads at random points; fuzzed and hand-written frames check that
whatever ibapi rejects is flagged malformed (and the kernel carries on), and that whatever it
accepts decodes the same.
"""

from __future__ import annotations

import itertools
import math
import struct
from collections.abc import Sequence
from decimal import Decimal
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from ibapi import comm
from ibapi.const import UNSET_DECIMAL, UNSET_DOUBLE
from ibapi.contract import Contract
from ibapi.decoder import Decoder
from ibapi.order import Order
from ibapi.order_state import OrderState
from ibapi.server_versions import MAX_CLIENT_VER
from ibapi.wrapper import EWrapper

from adapters.ib.decode import (
    HOT_ROW,
    PICK_MAX,
    ColdFrame,
    HotDecoder,
    HotKind,
    MalformedFrame,
)
from adapters.ib.gateway_sim.responses import ResponseEncoder
from hotpath import ibwire

VERSIONS = (176, 178, 200, 201, 206, 208, MAX_CLIENT_VER)
CONFIGS = [(v, pb) for v in VERSIONS for pb in (False, True)]
HOT_IDS = {1, 2, 12, 13, 99}
FUZZ = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# -- callbacks, normalised so ibapi's and ours compare ------------------------------------------


def num(x: Any) -> Any:
    """A float or Decimal as a comparable value: NaNs equal each other, -0.0 differs from 0.0."""
    if isinstance(x, Decimal) and x.is_nan():
        return "nan"
    x = float(x)
    return "nan" if math.isnan(x) else (x, math.copysign(1.0, x))


class Recorder(EWrapper):
    """ibapi's callbacks as tuples (hot ones normalised, cold ones by their simple values)."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[tuple] = []

    def tickPrice(self, reqId, tickType, price, attrib):
        a = (attrib.canAutoExecute, attrib.pastLimit, attrib.preOpen)
        self.calls.append(("tickPrice", reqId, tickType, num(price), a))

    def tickSize(self, reqId, tickType, size):
        self.calls.append(("tickSize", reqId, tickType, num(size)))

    def updateMktDepth(self, reqId, position, operation, side, price, size):
        self.calls.append(
            ("updateMktDepth", reqId, position, operation, side, num(price), num(size))
        )

    def updateMktDepthL2(
        self, reqId, position, marketMaker, operation, side, price, size, isSmartDepth
    ):
        self.calls.append(
            (
                "updateMktDepthL2",
                reqId,
                position,
                marketMaker,
                operation,
                side,
                num(price),
                num(size),
                bool(isSmartDepth),
            )
        )

    def tickByTickAllLast(
        self, reqId, tickType, time, price, size, tickAttribLast, exchange, specialConditions
    ):
        a = (tickAttribLast.pastLimit, tickAttribLast.unreported)
        self.calls.append(
            (
                "tickByTickAllLast",
                reqId,
                tickType,
                time,
                num(price),
                num(size),
                a,
                exchange,
                specialConditions,
            )
        )

    def tickByTickBidAsk(self, reqId, time, bidPrice, askPrice, bidSize, askSize, tickAttribBidAsk):
        a = (tickAttribBidAsk.bidPastLow, tickAttribBidAsk.askPastHigh)
        self.calls.append(
            (
                "tickByTickBidAsk",
                reqId,
                time,
                num(bidPrice),
                num(askPrice),
                num(bidSize),
                num(askSize),
                a,
            )
        )

    def tickByTickMidPoint(self, reqId, time, midPoint):
        self.calls.append(("tickByTickMidPoint", reqId, time, num(midPoint)))

    def nextValidId(self, orderId):
        self.calls.append(("nextValidId", orderId))

    def error(self, reqId, errorTime, errorCode, errorString, advancedOrderRejectJson=""):
        self.calls.append(("error", reqId, errorTime, errorCode, errorString))

    def openOrder(self, orderId, contract, order, orderState):
        self.calls.append(
            (
                "openOrder",
                orderId,
                contract.symbol,
                order.action,
                str(order.totalQuantity),
                orderState.status,
            )
        )

    def tickString(self, reqId, tickType, value):
        self.calls.append(("tickString", reqId, tickType, value))

    def marketDataType(self, reqId, marketDataType):
        self.calls.append(("marketDataType", reqId, marketDataType))


def text(b: bytes) -> str:
    return b.decode("utf-8", errors="backslashreplace")


def row_call(r: np.void) -> tuple:
    """The callback a row stands for, normalised as ``Recorder`` records ibapi's."""
    kind, a = HotKind(int(r["kind"])), int(r["attrib"])
    req, tt, t = int(r["req_id"]), int(r["tick_type"]), int(r["time"])
    if kind == HotKind.TICK_PRICE:
        return ("tickPrice", req, tt, num(r["price"]), (bool(a & 1), bool(a & 2), bool(a & 4)))
    if kind == HotKind.TICK_SIZE:
        return ("tickSize", req, tt, num(r["size"]))
    depth = (int(r["position"]), int(r["operation"]), int(r["side"]))
    if kind == HotKind.MKT_DEPTH:
        return ("updateMktDepth", req, *depth, num(r["price"]), num(r["size"]))
    if kind == HotKind.MKT_DEPTH_L2:
        pos, op, side = depth
        return (
            "updateMktDepthL2",
            req,
            pos,
            text(r["market_maker"]),
            op,
            side,
            num(r["price"]),
            num(r["size"]),
            bool(r["is_smart_depth"]),
        )
    if kind == HotKind.TBT_LAST:
        return (
            "tickByTickAllLast",
            req,
            tt,
            t,
            num(r["price"]),
            num(r["size"]),
            (bool(a & 1), bool(a & 2)),
            text(r["exchange"]),
            text(r["special_conditions"]),
        )
    if kind == HotKind.TBT_BID_ASK:
        return (
            "tickByTickBidAsk",
            req,
            t,
            num(r["bid_price"]),
            num(r["ask_price"]),
            num(r["bid_size"]),
            num(r["ask_size"]),
            (bool(a & 1), bool(a & 2)),
        )
    assert kind == HotKind.TBT_MID_POINT
    return ("tickByTickMidPoint", req, t, num(r["mid_point"]))


# -- the two decoders ---------------------------------------------------------------------------

_DECODERS: dict[int, Decoder] = {}


def ibapi_decoder(version: int, wrapper: EWrapper) -> Decoder:
    """ibapi's Decoder at ``version`` (built once: its constructor inspects every callback)."""
    if version not in _DECODERS:
        _DECODERS[version] = Decoder(wrapper, version)
    decoder = _DECODERS[version]
    decoder.wrapper = wrapper
    return decoder


def ibapi_dispatch(decoder: Decoder, msg: bytes) -> None:
    """One frame's payload, exactly as ``EClient.run`` dispatches it."""
    if decoder.serverVersion >= 201:
        msg_id = int.from_bytes(msg[:4], "big")
        text_ = msg[4:]
    else:
        msg_id = int(msg[: msg.index(b"\0")])
        text_ = msg[msg.index(b"\0") + 1 :]
    if msg_id > 200:
        decoder.processProtoBuf(text_, msg_id - 200)
    else:
        decoder.interpret(comm.read_fields(text_), msg_id)


def ibapi_calls(stream: bytes, version: int) -> list[tuple]:
    rec = Recorder()
    decoder = ibapi_decoder(version, rec)
    buf = stream
    while buf:
        _, msg, buf = comm.read_msg(buf)  # as EReader cuts them
        assert msg, "test streams hold complete, non-empty frames"
        ibapi_dispatch(decoder, msg)
    return rec.calls


def our_calls(pieces: Sequence[bytes], version: int, capacity: int = 64) -> list[tuple]:
    """Feed ``pieces`` one by one; rows and cold frames (through ibapi) in wire order."""
    rec = Recorder()
    decoder = ibapi_decoder(version, rec)
    hot = HotDecoder(version, capacity=capacity, buffer_bytes=4096)
    for piece in pieces:
        batch = hot.feed(piece)
        while True:
            assert batch.fatal is None and not batch.malformed, batch.malformed
            for item in batch.in_order():
                if isinstance(item, ColdFrame):
                    assert item.msg_id % 200 not in HOT_IDS
                    item.dispatch(decoder)
                else:
                    assert not (item["flags"] & ibwire.FLAG_STRING_CUT).any()
                    rec.calls.extend(row_call(r) for r in item)
            if not batch.more:
                break
            batch = hot.feed(b"")
    assert hot.buffered == 0
    return rec.calls


MALFORMED = "malformed"


def per_frame(frames: Sequence[bytes], version: int) -> tuple[list[Any], list[Any]]:
    """Each frame's callbacks, from ibapi (``MALFORMED`` where it raises) and from ours
    (``MALFORMED`` where flagged; a row whose string was cut marks its strings ``"<cut>"``)."""
    ref: list[Any] = []
    for f in frames:
        rec = Recorder()
        decoder = ibapi_decoder(version, rec)
        try:
            ibapi_dispatch(decoder, f[4:])
        except Exception:
            ref.append(MALFORMED)
        else:
            ref.append(rec.calls)
    hot = HotDecoder(version, capacity=len(frames) + 1)
    batch = hot.feed(b"".join(frames))
    assert batch.frames == len(frames) and not batch.more and batch.fatal is None
    ours: list[Any] = [[] for _ in frames]
    for frame in batch.malformed:
        assert isinstance(frame, MalformedFrame) and frame.describe()
        ours[frame.index] = MALFORMED
    for frame in batch.cold:
        rec = Recorder()
        frame.dispatch(ibapi_decoder(version, rec))
        ours[frame.index] = rec.calls
    for r in batch.rows:
        call = row_call(r)
        if r["flags"] & ibwire.FLAG_STRING_CUT:
            call = tuple("<cut>" if isinstance(v, str) and i else v for i, v in enumerate(call))
        ours[int(r["frame"])].append(call)
    return ref, ours


def assert_same_per_frame(frames: Sequence[bytes], version: int) -> None:
    ref, ours = per_frame(frames, version)
    for k, (want, got) in enumerate(zip(ref, ours, strict=True)):
        if got != MALFORMED and want != MALFORMED and any("<cut>" in c for c in got):
            want = [
                tuple("<cut>" if isinstance(v, str) and i else v for i, v in enumerate(c))
                for c in want
            ]
        if want != got and got == MALFORMED and known_divergence(frames[k], want):
            continue
        assert got == want, f"frame {frames[k]!r}"


# Where each callback has ints the rows keep in int32 columns (the rest, time, is int64).
INT32_ARGS = {
    "tickPrice": (1, 2),
    "tickSize": (1, 2),
    "updateMktDepth": (1, 2, 3, 4),
    "updateMktDepthL2": (1, 2, 4, 5),
    "tickByTickAllLast": (1, 2),
    "tickByTickBidAsk": (1,),
    "tickByTickMidPoint": (1,),
}


def known_divergence(frame: bytes, ibapi_calls_: list[tuple]) -> bool:
    """ibapi took what hotpath.ibwire documents it refuses: an int beyond its column, or a
    size spelled with non-ASCII digits or spaces."""
    for call in ibapi_calls_:
        ints = INT32_ARGS.get(call[0], ())
        if any(not -(2**31) <= call[k] < 2**31 for k in ints):
            return True
        if any(type(v) is int and not -(2**63) <= v < 2**63 for v in call[1:]):
            return True
    return any(b >= 0x80 for b in frame)


# -- generated messages -------------------------------------------------------------------------

i32 = st.integers(-(2**31), 2**31 - 1)
req_ids = st.one_of(st.integers(0, 10_000), i32)
prices = st.one_of(
    st.sampled_from([-1.0, 0.0, -0.0, UNSET_DOUBLE, 1e300, 5e-324, 0.1, 185.25]),
    st.decimals(-(10**6), 10**6, places=2, allow_nan=False).map(float),
    st.floats(width=64),
)
sizes = st.one_of(
    st.sampled_from([UNSET_DECIMAL, Decimal(0), Decimal("0.0001"), Decimal("1E+3")]),
    st.decimals(places=4, allow_nan=False, allow_infinity=False),
    st.decimals(allow_nan=True, allow_infinity=True),
    st.integers(0, 10**12).map(Decimal),
)
masks = st.one_of(st.integers(0, 7), st.integers(0, 2**31 - 1))
strings = st.text(
    st.characters(blacklist_categories=("Cs",), blacklist_characters="\0"), max_size=16
).filter(lambda s: len(s.encode()) <= 16)
times = st.one_of(st.integers(1_600_000_000, 1_800_000_000), st.integers(-(2**63), 2**63 - 1))
price_tick_types = st.one_of(st.sampled_from([1, 2, 4, 6, 7, 9, 14, 66, 67, 68, 72, -1, 111]), i32)
size_tick_types = st.one_of(st.sampled_from([0, 3, 5, 8, 21, 69, 70, 71, 74, -1, 111]), i32)


def _stock() -> Contract:
    c = Contract()
    c.conId, c.symbol, c.secType, c.exchange, c.currency = 265598, "AAPL", "STK", "SMART", "USD"
    return c


def _order() -> Order:
    o = Order()
    o.action, o.totalQuantity, o.orderType, o.tif = "SELL", Decimal("0.5"), "MKT", "DAY"
    return o


def _state() -> OrderState:
    s = OrderState()
    s.status = "Submitted"
    return s


Message = tuple[str, tuple]
hot_messages = st.one_of(
    st.tuples(st.just("tick_price"), st.tuples(req_ids, price_tick_types, prices, sizes, masks)),
    st.tuples(st.just("tick_size"), st.tuples(req_ids, size_tick_types, sizes)),
    st.tuples(
        st.just("update_mkt_depth"),
        st.tuples(req_ids, i32, st.integers(0, 2) | i32, st.integers(0, 1) | i32, prices, sizes),
    ),
    st.tuples(
        st.just("update_mkt_depth_l2"),
        st.tuples(
            req_ids,
            i32,
            strings,
            st.integers(0, 2),
            st.integers(0, 1),
            prices,
            sizes,
            st.booleans(),
        ),
    ),
    st.tuples(
        st.just("tick_by_tick_all_last"),
        st.tuples(
            req_ids,
            st.sampled_from([1, 2]),
            times,
            prices,
            sizes,
            st.integers(0, 3),
            strings,
            strings,
        ),
    ),
    st.tuples(
        st.just("tick_by_tick_bid_ask"),
        st.tuples(req_ids, times, prices, prices, sizes, sizes, st.integers(0, 3)),
    ),
    st.tuples(st.just("tick_by_tick_mid_point"), st.tuples(req_ids, times, prices)),
)
cold_messages = st.one_of(
    st.tuples(st.just("next_valid_id"), st.tuples(st.integers(1, 10**6))),
    st.tuples(
        st.just("error"),
        st.tuples(
            req_ids,
            st.sampled_from([200, 2104, 10167]),
            st.just("no security"),
            st.just(1_700_000_000_000),
        ),
    ),
    st.tuples(st.just("tick_string"), st.tuples(req_ids, st.just(45), st.just("1700000000"))),
    st.tuples(st.just("market_data_type"), st.tuples(req_ids, st.integers(1, 4))),
    st.tuples(st.just("open_order"), st.tuples(st.integers(1, 10**6))),
)
messages = st.one_of(hot_messages, cold_messages)


def encode(enc: ResponseEncoder, msg: Message) -> bytes:
    name, args = msg
    if name == "open_order":
        return enc.open_order(args[0], _stock(), _order(), _state())
    return getattr(enc, name)(*args)


def split(stream: bytes, cuts: Sequence[int]) -> list[bytes]:
    points = sorted({c % (len(stream) + 1) for c in cuts})
    bounds = [0, *points, len(stream)]
    return [stream[a:b] for a, b in itertools.pairwise(bounds)]


# -- streams ------------------------------------------------------------------------------------


@pytest.mark.parametrize(("version", "protobuf"), CONFIGS)
@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    msgs=st.lists(messages, min_size=1, max_size=30),
    cuts=st.lists(st.integers(0, 1 << 20), max_size=8),
    capacity=st.sampled_from([1, 3, 64]),
)
def test_stream_decodes_as_ibapi(version, protobuf, msgs, cuts, capacity):
    enc = ResponseEncoder(version, protobuf)
    stream = b"".join(encode(enc, m) for m in msgs)
    want = ibapi_calls(stream, version)
    assert our_calls(split(stream, cuts), version, capacity) == want


def test_tick_price_adds_the_size_tick_and_rows_carry_their_frame():
    enc = ResponseEncoder(176, protobuf=False)
    stream = (
        enc.tick_price(7, 1, 185.25, Decimal(300), 5)
        + enc.next_valid_id(3)
        + enc.tick_price(7, 9, 184.0, Decimal(0), 0)  # close: no size tick
        + enc.tick_price(7, 68, 185.5, UNSET_DECIMAL, 2)  # delayed last -> 71
    )
    batch = HotDecoder(176).feed(stream)
    rows = batch.rows
    assert rows["kind"].tolist() == [1, 2, 1, 1, 2]
    assert rows["tick_type"].tolist() == [1, 0, 9, 68, 71]
    assert rows["frame"].tolist() == [0, 0, 2, 3, 3]
    assert rows["size"].tolist() == [300.0, 300.0, 0.0, ibwire.UNSET_SIZE, ibwire.UNSET_SIZE]
    assert rows["attrib"].tolist() == [5, 0, 0, 2, 0]
    assert [(f.index, f.at, f.msg_id) for f in batch.cold] == [(1, 2, 9)]
    parts = list(batch.in_order())
    assert [len(p) if isinstance(p, np.ndarray) else "cold" for p in parts] == [2, "cold", 3]


def test_hot_rows_are_views_of_preallocated_output():
    enc = ResponseEncoder(MAX_CLIENT_VER)
    hot = HotDecoder(MAX_CLIENT_VER, capacity=8)
    first = hot.feed(enc.tick_size(1, 8, Decimal(5))).rows
    second = hot.feed(enc.tick_size(2, 8, Decimal(6))).rows
    assert first.base is second.base and second.dtype == HOT_ROW
    assert int(second[0]["req_id"]) == 2 and second[0]["flags"] == ibwire.FLAG_PROTOBUF


def test_large_frames_grow_the_buffer():
    enc = ResponseEncoder(178, protobuf=False)
    long_text = "x" * 100_000
    stream = enc.tick_size(1, 8, Decimal(1)) + enc.tick_string(2, 45, long_text)
    stream += enc.tick_size(3, 8, Decimal(2))
    pieces = split(stream, range(0, len(stream), 7000))
    assert our_calls(pieces, 178) == ibapi_calls(stream, 178)


# -- numbers: ibapi's int(), float() and Decimal() ----------------------------------------------

number_texts = st.one_of(
    st.floats(width=64).map(repr),
    st.floats(width=64).map(lambda x: repr(x).upper()),
    st.decimals().map(str),
    st.builds(
        lambda ws, sign, ip, dot, fp, e, ws2: f"{ws}{sign}{ip}{dot}{fp}{e}{ws2}",
        st.sampled_from(["", " ", "\t", "\x0b", "\x1c"]),
        st.sampled_from(["", "+", "-"]),
        st.text("0123456789", max_size=30),
        st.sampled_from(["", "."]),
        st.text("0123456789", max_size=30),
        st.one_of(
            st.just(""),
            st.builds("e{}{}".format, st.sampled_from(["", "-", "+"]), st.integers(0, 400)),
        ),
        st.sampled_from(["", " ", "\r\n"]),
    ),
    st.text("0123456789._eE+-infatyINFATYsS \t\x1c", max_size=14),
    st.sampled_from(
        [
            "",
            "Infinity",
            "-Infinity",
            "inf",
            "-iNF",
            "nan",
            "NaN12",
            "sNaN",
            "1_000",
            "1__0",
            "_1",
            "1_",
            "1e1_0",
            "1._5",
            " 1 ",
            "1 0",
            "0x10",
            "1e",
            "e5",
            ".",
            "+",
            "1.7976931348623157E308",
            "1.7976931348623157e+308",
            "2147483647",
            "9223372036854775807",
            "-9223372036854775808",
            "2.4703282292062327e-324",
            "2.4703282292062328e-324",
            "1e999999999999999999",
            "1e9999999999999999999",
            "1e-1999999999999999997",
            "4.9406564584124654e-324",
            "170141183460469231731687303715884105727",
            "0." + "0" * 400 + "1e400",
            "9" * 800 + "e-800",
            "1" + "0" * 900 + "1e-900",
            "٣",
            "1\u00a0",
        ]
    ),
)


def mid_point_frame(value: bytes) -> bytes:
    body = b"99\x001\x004\x000\x00" + value + b"\x00"
    return struct.pack(">I", len(body)) + body


def tick_size_frame(value: bytes) -> bytes:
    body = b"2\x006\x001\x008\x00" + value + b"\x00"
    return struct.pack(">I", len(body)) + body


@FUZZ
@given(st.lists(number_texts, min_size=1, max_size=20))
def test_numbers_parse_as_python_does(values):
    raw = [v.encode() for v in values]
    assert_same_per_frame([mid_point_frame(v) for v in raw], 176)  # float()
    assert_same_per_frame([tick_size_frame(v) for v in raw], 176)  # Decimal()


@FUZZ
@given(
    st.integers(0, 10**25),
    st.integers(-360, 330),
    st.sampled_from([False, True]),
)
def test_floats_round_correctly_beyond_exact_arithmetic(mantissa, exp, neg):
    value = f"{'-' if neg else ''}{mantissa}e{exp}".encode()
    assert_same_per_frame([mid_point_frame(value), tick_size_frame(value)], 176)


@pytest.mark.parametrize("field", [b" 12 ", b"+5", b"1_0", b"", b"-0", b"0012", b"\x0b7\x0c"])
def test_int_fields_parse_as_python_does(field):
    body = b"1\x006\x00" + field + b"\x001\x00100.5\x0010\x000\x00"
    assert_same_per_frame([struct.pack(">I", len(body)) + body], 176)


@pytest.mark.parametrize("field", [b"1__0", b"_1", b" ", b"1.0", b"0x1", b"9" * 30, b"\xd9\xa1"])
def test_bad_int_fields_are_malformed(field):
    body = b"1\x006\x00" + field + b"\x001\x00100.5\x0010\x000\x00"
    ref, ours = per_frame([struct.pack(">I", len(body)) + body], 176)
    assert ours == [MALFORMED]
    assert ref == [MALFORMED] or field == b"9" * 30  # ibapi takes a 30-digit reqId


# -- text layouts by server version ---------------------------------------------------------------


def text_frame(*fields: bytes) -> bytes:
    body = b"".join(f + b"\0" for f in fields)
    return struct.pack(">I", len(body)) + body


@pytest.mark.parametrize("version", [100, 108, 109, 131, 132, 145, 146, 176])
@pytest.mark.parametrize("mask", [b"0", b"1", b"2", b"3", b"5", b"7", b"-1"])
def test_attrib_masks_and_smart_depth_follow_the_server_version(version, mask):
    frames = [
        text_frame(b"1", b"6", b"4", b"1", b"10.5", b"100", mask),
        text_frame(b"1", b"6", b"4", b"2", b"10.5", b"", mask),
        text_frame(b"99", b"4", b"1", b"1700000000", b"10.5", b"7", mask, b"NYSE", b""),
        text_frame(b"99", b"4", b"3", b"1700000000", b"10.5", b"10.6", b"1", b"2", mask),
        text_frame(b"13", b"1", b"4", b"0", b"MM", b"0", b"1", b"10.5", b"100", mask),
    ]
    assert_same_per_frame(frames, version)


@pytest.mark.parametrize(
    "frame",
    [
        text_frame(b"2", b"6", b"4", b"111", b"100"),  # TickTypeEnum.NOT_SET: no callback
        text_frame(b"2", b"6", b"4", b"-1", b"100"),  # IB's NOT_SET is reported
        text_frame(b"2", b"6", b"4", b"8", b"9223372036854775807"),  # unset sentinels
        text_frame(b"2", b"6", b"4", b"8", b"-9223372036854775808"),
        text_frame(b"2", b"6", b"4", b"8", b"1.7976931348623157E308"),
        text_frame(b"2", b"6", b"4", b"8", b"1.7976931348623157e+308"),  # not a sentinel
        text_frame(b"2", b"6", b"4", b"8", b"100", b"extra", b"fields"),  # ignored
        text_frame(b"2", b"6", b"4", b"8") + b"",  # size missing
        struct.pack(">I", 10) + b"2\x006\x004\x008\x0010",  # last field not NUL-terminated
        text_frame(b"1", b"", b"", b"", b"", b"", b""),  # empty ints and floats are 0
        text_frame(b"1", b"6", b"4", b"1", b"Infinity", b"1", b"0"),
        text_frame(b"99", b"4", b"0", b"1700000000"),  # tick type 0: nothing
        text_frame(b"99", b"4", b"7", b"1700000000", b"1"),  # unknown tick type: nothing
        text_frame(b"99", b"4", b"1", b"1700000000", b"1", b"2", b"0", b"NYSE"),  # short
        text_frame(b"99", b"4", b"1", b"99999999999999999999", b"1", b"2", b"0", b"A", b"B"),
        text_frame(b"12", b"1", b"4", b"0", b"0", b"1", b"10.5"),  # size missing
        text_frame(b"13", b"1", b"4", b"0", b"\xff\xfeMM", b"0", b"1", b"10.5", b"1", b"1"),
        text_frame(b"13", b"1", b"4", b"0", b"a-very-long-market-maker", b"0", b"1", b"1", b"1"),
        text_frame(b"13", b"1", b"4", b"0", b"MM", b"0", b"1", b"10.5", b"1"),  # no smartDepth
        text_frame(b"1", b"6", b"4", b"1", b"abc", b"1", b"0"),
        text_frame(b"01", b"6", b"4", b"8", b"1"),  # id "01" is tickPrice... with a short body
        text_frame(b" 2", b"6", b"4", b"8", b"1"),
        text_frame(b"x2", b"6", b"4", b"8", b"1"),  # unreadable id
        struct.pack(">I", 3) + b"2\x00\x01",
    ],
)
def test_text_corner_cases_match_ibapi(frame):
    assert_same_per_frame([frame], 176)


def test_strings_longer_than_their_column_are_cut_and_flagged():
    enc = ResponseEncoder(176, protobuf=False)
    frame = enc.update_mkt_depth_l2(1, 0, "M" * 20, 0, 1, 10.0, Decimal(1), True)
    rows = HotDecoder(176).feed(frame).rows
    assert rows[0]["market_maker"] == b"M" * 16 and rows[0]["flags"] & ibwire.FLAG_STRING_CUT


# -- protobuf -----------------------------------------------------------------------------------


def test_protobuf_schema_matches_ibapi_descriptors():
    from google.protobuf.descriptor import FieldDescriptor as FD
    from ibapi.protobuf import (
        MarketDepth_pb2,
        MarketDepthL2_pb2,
        TickByTickData_pb2,
        TickPrice_pb2,
        TickSize_pb2,
    )

    kinds = {
        FD.TYPE_INT32: ibwire.PB_INT32,
        FD.TYPE_INT64: ibwire.PB_INT64,
        FD.TYPE_BOOL: ibwire.PB_BOOL,
        FD.TYPE_DOUBLE: ibwire.PB_DOUBLE,
        FD.TYPE_STRING: ibwire.PB_STRING,
        FD.TYPE_MESSAGE: ibwire.PB_MESSAGE,
    }
    tops = {
        ibwire.PB_TICK_PRICE: TickPrice_pb2.TickPrice.DESCRIPTOR,
        ibwire.PB_TICK_SIZE: TickSize_pb2.TickSize.DESCRIPTOR,
        ibwire.PB_MARKET_DEPTH: MarketDepth_pb2.MarketDepth.DESCRIPTOR,
        ibwire.PB_TICK_BY_TICK: TickByTickData_pb2.TickByTickData.DESCRIPTOR,
    }
    assert [f.name for f in MarketDepthL2_pb2.MarketDepthL2.DESCRIPTOR.fields] == [
        f.name for f in MarketDepth_pb2.MarketDepth.DESCRIPTOR.fields
    ]
    seen = set()

    def check(t: int, desc: Any) -> None:
        seen.add(t)
        name, (lo, hi), fields = ibwire.PB_SCHEMA[t]
        assert name == desc.name
        assert sorted(fields) == sorted(f.number for f in desc.fields)
        for f in desc.fields:
            fname, kind, slot, nested = fields[f.number]
            assert (fname, kind) == (f.name, kinds[f.type]) and lo <= slot < hi
            assert f.has_presence  # proto3 optional: HasField works, as ibapi relies on
            if kind == ibwire.PB_MESSAGE:
                check(nested, f.message_type)
        oneofs = [o for o in desc.oneofs if len(o.fields) > 1]
        assert [tuple(f.number for f in o.fields) for o in oneofs] == (
            [ibwire.PB_ONEOF[t]] if t in ibwire.PB_ONEOF else []
        )

    for t, desc in tops.items():
        check(t, desc)
    assert seen == set(ibwire.PB_SCHEMA)


def varint(v: int) -> bytes:
    v &= (1 << 64) - 1
    out = bytearray()
    while True:
        out.append((v & 0x7F) | (0x80 if v > 0x7F else 0))
        v >>= 7
        if not v:
            return bytes(out)


def tag(number: int, wire: int) -> bytes:
    return varint(number << 3 | wire)


def vi(number: int, value: int) -> bytes:
    return tag(number, 0) + varint(value)


def ld(number: int, payload: bytes) -> bytes:
    return tag(number, 2) + varint(len(payload)) + payload


def dbl(number: int, value: float) -> bytes:
    return tag(number, 1) + struct.pack("<d", value)


def pb_frame(msg_id: int, body: bytes) -> bytes:
    payload = (msg_id + 200).to_bytes(4, "big") + body
    return struct.pack(">I", len(payload)) + payload


LAST = ld(3, vi(1, 17) + ld(2, vi(1, 1)) + dbl(3, 1.5) + ld(4, b"7") + ld(5, b"ARCA"))
BID_ASK = ld(4, vi(1, 18) + dbl(3, 1.25) + dbl(4, 1.5) + ld(5, b"3") + ld(6, b"4"))
MID = ld(5, vi(1, 19) + dbl(2, 1.375) + ld(3, b"1"))
GROUP = tag(9, 3) + vi(1, 5) + tag(10, 3) + tag(10, 4) + tag(9, 4)

PROTOBUF_CASES = [
    *[pb_frame(m, b"") for m in HOT_IDS],  # every field absent: ibapi's defaults
    pb_frame(1, vi(1, 5) + vi(2, 1) + dbl(3, 10.5) + ld(4, b"100")),  # no attrMask: all set
    pb_frame(1, vi(1, 5) + vi(2, 2) + ld(4, b" 1_0 ") + vi(5, 2)),
    pb_frame(1, vi(1, 5) + vi(2, 2) + ld(4, b"")),  # Decimal(""): raises
    pb_frame(1, vi(1, 5) + vi(2, 2) + ld(4, b"2147483647")),  # no sentinels in protobuf
    pb_frame(1, vi(1, -1) + vi(2, (1 << 32) + 4) + vi(1, 6)),  # last wins, int32 wraps
    pb_frame(1, vi(1, 5) + tag(1, 1) + b"\0" * 8),  # wrong wire type: unknown field
    pb_frame(1, vi(1, 5) + GROUP + tag(15, 5) + b"\0" * 4 + vi(20, 1) + ld(19, b"\xff")),
    pb_frame(1, vi(1, 5) + tag(9, 3) + tag(9, 3) + tag(9, 4)),  # unterminated group
    pb_frame(1, vi(1, 5) + tag(9, 3) + tag(8, 4)),  # mismatched end group
    pb_frame(1, tag(9, 3) * 100 + tag(9, 4) * 100),  # upb's depth limit: 100 is fine...
    pb_frame(1, tag(9, 3) * 101 + tag(9, 4) * 101),  # ...101 is not
    pb_frame(1, b"\x08" + b"\xff" * 9 + b"\x7f"),  # 10-byte varint, high bits ignored
    pb_frame(1, b"\x08" + b"\xff" * 10 + b"\x01"),  # 11 bytes: error
    pb_frame(1, b"\x88\x80\x80\x80\x00\x05"),  # 5-byte tag
    pb_frame(1, b"\x88\x80\x80\x80\x80\x00\x05"),  # 6-byte tag: error
    pb_frame(1, b"\x00\x01"),  # field number 0
    pb_frame(1, b"\x0f"),  # wire type 7
    pb_frame(2, vi(1, 3) + vi(2, 111) + ld(3, b"5")),  # TickTypeEnum.NOT_SET: nothing
    pb_frame(2, vi(1, 3) + ld(3, b"5")),  # tickType absent: UNSET_INTEGER, reported
    pb_frame(12, vi(1, 3)),  # no marketDepthData: nothing
    pb_frame(12, vi(1, 3) + ld(2, b"")),  # empty marketDepthData: all defaults
    pb_frame(13, vi(1, 3) + ld(2, b"")),  # L2 defaults differ (position 0, marketMaker "")
    pb_frame(13, vi(1, 3) + ld(2, vi(7, 2)) + ld(2, vi(1, 7) + ld(6, b"NSDQ"))),  # merge
    pb_frame(13, vi(1, 3) + ld(2, ld(6, b"\xc3\xa9t\xc3\xa9"))),  # UTF-8 market maker
    pb_frame(13, vi(1, 3) + ld(2, ld(6, b"\xc3"))),  # invalid UTF-8: DecodeError
    pb_frame(13, vi(1, 3) + ld(2, ld(6, b"\xed\xa0\x80"))),  # a surrogate
    pb_frame(13, vi(1, 3) + ld(2, vi(1, 1) + ld(6, b"MM"))[:-1]),  # sub-message overruns
    pb_frame(99, vi(1, 1) + vi(2, 1) + LAST),
    pb_frame(99, vi(1, 1) + vi(2, 2) + LAST + LAST),
    pb_frame(99, vi(1, 1) + vi(2, 1) + BID_ASK),  # type and oneof member disagree
    pb_frame(99, vi(1, 1) + vi(2, 3) + LAST + BID_ASK),  # the oneof keeps the last
    pb_frame(99, vi(1, 1) + vi(2, 1) + LAST + BID_ASK + ld(3, dbl(3, 2.5))),  # cleared
    pb_frame(99, vi(1, 1) + vi(2, 4) + MID),
    pb_frame(99, vi(1, 1) + vi(2, 4) + ld(5, ld(3, b"x"))),  # its size is decoded: raises
    pb_frame(99, vi(1, 1) + vi(2, 3) + ld(4, ld(2, vi(2, 1)) + ld(2, vi(1, 1)))),
    pb_frame(99, vi(1, 1) + vi(2, 7) + MID),
]


@pytest.mark.parametrize("frame", PROTOBUF_CASES)
@pytest.mark.parametrize("version", [176, MAX_CLIENT_VER])
def test_protobuf_corner_cases_match_ibapi(frame, version):
    if version < 201:  # a text id above 200 is protobuf too
        msg_id = int.from_bytes(frame[4:8], "big")
        body = str(msg_id).encode() + b"\0" + frame[8:]
        frame = struct.pack(">I", len(body)) + body
    assert_same_per_frame([frame], version)


def test_short_frames_at_raw_ids_read_the_id_from_what_is_there():
    frames = [struct.pack(">I", 1) + b"\xc9", struct.pack(">I", 2) + b"\x00\x01"]
    assert_same_per_frame(frames, MAX_CLIENT_VER)  # 201: TickPrice defaults; 1: no fields


# -- malformed and truncated frames ---------------------------------------------------------------


def mutate(frame: bytes, version: int, how: int, at: int, value: int) -> bytes:
    """Truncate (0), overwrite (1), insert (2) or delete (3) a byte after the message id."""
    msg = frame[4:]
    head = 4 if version >= 201 else msg.index(b"\0") + 1
    body = bytearray(msg[head:])
    k = at % (len(body) + 1)
    if how == 0:
        del body[k:]
    elif how == 1 and body:
        body[k % len(body)] = value
    elif how == 2:
        body.insert(k, value)
    elif body:
        del body[k % len(body)]
    out = msg[:head] + bytes(body)
    return struct.pack(">I", len(out)) + out


@pytest.mark.parametrize(
    ("version", "protobuf"), [(176, False), (208, True), (MAX_CLIENT_VER, True)]
)
@FUZZ
@given(
    st.lists(
        st.tuples(hot_messages, st.integers(0, 3), st.integers(0, 1000), st.integers(0, 255)),
        min_size=1,
        max_size=12,
    )
)
def test_mutated_frames_are_flagged_or_match_ibapi(version, protobuf, cases):
    enc = ResponseEncoder(version, protobuf)
    frames = [mutate(encode(enc, m), version, how, at, value) for m, how, at, value in cases]
    assert_same_per_frame(frames, version)


def test_truncated_frames_are_flagged_and_decoding_carries_on():
    enc = ResponseEncoder(176, protobuf=False)
    good = enc.tick_size(1, 8, Decimal(5))
    full = enc.tick_by_tick_all_last(2, 1, 1_700_000_000, 10.5, Decimal(3), 0, "NYSE", "")
    body = full[4:]
    for n in range(len(body) - 1):
        cut = struct.pack(">I", n) + body[:n]
        batch = HotDecoder(176).feed(good + cut + good)
        assert batch.rows["req_id"].tolist() == [1, 1]
        assert len(batch.malformed) == 1 and batch.malformed[0].index == 1
        assert batch.malformed[0].msg_id == (99 if n >= 3 else -1)


def test_oversized_length_is_fatal_and_stays_fatal():
    enc = ResponseEncoder(MAX_CLIENT_VER)
    good = enc.tick_size(1, 8, Decimal(5))
    hot = HotDecoder(MAX_CLIENT_VER)
    batch = hot.feed(good + struct.pack(">I", ibwire.MAX_MSG_LEN + 1) + b"junk")
    assert len(batch.rows) == 1 and batch.frames == 1
    assert (
        batch.fatal is not None and "507" in batch.fatal and "close the connection" in batch.fatal
    )
    again = hot.feed(good)
    assert again.fatal == batch.fatal and len(again.rows) == 0


def test_cut_frames_takes_complete_frames_and_waits_for_the_rest():
    frames = np.zeros((4, ibwire.N_FRAME_COLUMNS), dtype=np.int64)
    data = struct.pack(">I", 2) + b"ab" + struct.pack(">I", 0) + struct.pack(">I", 3) + b"c"
    buf = np.frombuffer(bytearray(data), dtype=np.uint8)
    assert ibwire.cut_frames(buf, 0, len(buf), frames) == (10, 2, ibwire.CUT_DONE, 0)
    assert frames[:2, :2].tolist() == [[4, 2], [10, 0]]
    edge = np.frombuffer(bytearray(struct.pack(">I", ibwire.MAX_MSG_LEN) + b"x"), np.uint8)
    assert ibwire.cut_frames(edge, 0, len(edge), frames) == (0, 0, ibwire.CUT_DONE, 0)
    over = np.frombuffer(bytearray(struct.pack(">I", ibwire.MAX_MSG_LEN + 1)), np.uint8)
    bad = ibwire.MAX_MSG_LEN + 1
    assert ibwire.cut_frames(over, 0, 4, frames) == (0, 0, ibwire.CUT_BAD_LENGTH, bad)
    assert ibwire.cut_frames(buf, 0, len(buf), frames[:1]) == (6, 1, ibwire.CUT_FULL, 0)


def test_decoders_ignore_an_empty_frame_at_raw_ids():
    hot = HotDecoder(MAX_CLIENT_VER)
    batch = hot.feed(struct.pack(">I", 0) + ResponseEncoder(MAX_CLIENT_VER).tick_size(1, 8, 1))
    assert [(f.msg_id, f.payload) for f in batch.cold] == [(0, b"")] and len(batch.rows) == 1


# ---- pick_frames: order answers found in a read without decoding it --------------------------

_HOT_IDS = {ibwire.TICK_PRICE, ibwire.TICK_SIZE, ibwire.MARKET_DEPTH, ibwire.MARKET_DEPTH_L2}
_HOT_IDS |= {ibwire.TICK_BY_TICK} | {i + ibwire.PROTOBUF_MSG_ID for i in _HOT_IDS}
_HOT_IDS.add(ibwire.TICK_BY_TICK + ibwire.PROTOBUF_MSG_ID)


def _ref_frame_id(payload: bytes, version: int) -> tuple[bool, int, int]:
    """What ``EClient.run`` reads as the id: ``(readable, id, where the rest starts)``."""
    if version >= ibwire.MIN_SERVER_VER_PROTOBUF:
        return True, int.from_bytes(payload[:4], "big"), min(4, len(payload))
    if b"\0" not in payload:
        return False, -1, 0
    text = payload[: payload.index(b"\0")]
    try:
        msg_id = int(text or 0)  # the kernel reads an empty id as ibapi's ``decode`` does: 0
    except ValueError:
        return False, -1, 0
    return -(2**63) <= msg_id < 2**63, msg_id, len(text) + 1


def _ref_pick(data: bytes, version: int, wanted: bytes, cap: int, pick_cap: int):
    """Plain Python: cut like ``cut_frames`` with ``cap``; the wanted frames' positions."""
    p = n = 0
    picked: list[tuple[int, int, bytes]] = []
    while len(data) - p >= 4:
        length = int.from_bytes(data[p : p + 4], "big")
        if length > ibwire.MAX_MSG_LEN:
            return (p, n, ibwire.CUT_BAD_LENGTH, length), picked
        if len(data) - p - 4 < length:
            break
        if n == cap:
            return (p, n, ibwire.CUT_FULL, 0), picked
        payload = data[p + 4 : p + 4 + length]
        ok, msg_id, rest = _ref_frame_id(payload, version)
        if ok and 0 <= msg_id < len(wanted) and wanted[msg_id] and len(picked) < pick_cap:
            picked.append((n, msg_id, payload[rest:]))
        n += 1
        p += 4 + length
    return (p, n, ibwire.CUT_DONE, 0), picked


_text_ids = st.one_of(
    st.integers(0, 520).map(lambda i: str(i).encode()),
    st.sampled_from([b"", b"x", b"-1", b" 3 ", b"0004", b"1_1", b"99999999999999999999", b"\xff"]),
)
_pb_ids = st.one_of(
    st.integers(0, 520).map(lambda i: i.to_bytes(4, "big")),
    st.integers(0, 2**32 - 1).map(lambda i: i.to_bytes(4, "big")),
    st.binary(max_size=3),  # a frame shorter than an id: ``int.from_bytes`` of what there is
)


@st.composite
def _pick_streams(draw):
    version = draw(st.sampled_from(VERSIONS))
    ids = _pb_ids if version >= ibwire.MIN_SERVER_VER_PROTOBUF else _text_ids
    frames = []
    for msg_id in draw(st.lists(ids, max_size=14)):
        if version >= ibwire.MIN_SERVER_VER_PROTOBUF:
            payload = msg_id + draw(st.binary(max_size=6)) if len(msg_id) == 4 else msg_id
        else:
            payload = msg_id + draw(st.sampled_from([b"\0", b"\0a\0b\0", b""]))
        frames.append(struct.pack(">I", len(payload)) + payload)
    data = b"".join(frames)
    if draw(st.booleans()):  # a bad length prefix somewhere after the first frame
        cut = len(frames[0]) if frames else 0
        data = data[:cut] + struct.pack(">I", ibwire.MAX_MSG_LEN + 1) + data[cut:]
    data = data[: draw(st.integers(0, len(data)))]  # a read that ends mid-frame
    marked = draw(st.one_of(st.sets(st.integers(0, 511), max_size=60), st.just(set(range(512)))))
    wanted = bytes(int(i in marked) for i in range(512))
    return version, data, wanted, draw(st.integers(1, 12)), draw(st.integers(1, 5))


@given(_pick_streams())
@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_pick_frames_matches_a_plain_python_cut(case):
    version, data, wanted, cap, pick_cap = case
    pad = b"\x07" * 3  # not at offset 0, and bytes past ``stop`` are not read
    buf = np.frombuffer(bytearray(pad + data + b"\0\0\0\x01"), dtype=np.uint8)
    frames = np.full((cap, ibwire.N_FRAME_COLUMNS), -7, dtype=np.int64)
    picked = np.zeros(pick_cap, dtype=np.int64)
    table = np.frombuffer(wanted, dtype=np.uint8).copy()
    end, n, status, bad, k = ibwire.pick_frames(
        buf, len(pad), len(pad) + len(data), version, table, frames, picked
    )
    (r_end, r_n, r_status, r_bad), ref = _ref_pick(data, version, wanted, cap, pick_cap)
    assert (end - len(pad), n, status, bad) == (r_end, r_n, r_status, r_bad)
    got = []
    for i in picked[:k].tolist():
        offset, length, msg_id, payload = (frames[i, c] for c in (0, 1, 2, 7))
        got.append((i, int(msg_id), bytes(buf[payload : offset + length])))
    assert got == ref


@given(_pick_streams())
@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_hot_decoder_pick_gives_the_cold_frames_decode_gives(case):
    """What ``pick`` finds is what ``decode`` then returns as cold for the same positions."""
    version, data, wanted, cap, _ = case
    table = np.frombuffer(wanted, dtype=np.uint8).copy()
    table[sorted(_HOT_IDS)] = 0  # a hot id is decoded into rows, not handed over
    hot = HotDecoder(version, capacity=cap)
    hot.append(data)
    picked = hot.pick(table)
    assert len(picked) <= PICK_MAX
    batch = hot.decode()
    cold = {f.index: (f.msg_id, f.payload) for f in batch.cold}
    assert {f.index: (f.msg_id, f.payload) for f in picked}.items() <= cold.items()
    expect = [f.index for f in batch.cold if 0 <= f.msg_id < 512 and table[f.msg_id]]
    assert [f.index for f in picked] == expect[:PICK_MAX]
