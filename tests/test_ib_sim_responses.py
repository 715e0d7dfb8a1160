"""ResponseEncoder frames, decoded by the official ibapi Decoder and by ib_async's.

Every frame is cut with ``ibapi.comm.read_msg`` and dispatched exactly like ``EClient.run``:
a raw 4-byte id from server version 201, else the first NUL field; ids above 200 go to
``Decoder.processProtoBuf``, the rest to ``Decoder.interpret``. ibapi drops a text message whose
field count is wrong without a word, so every test asserts the callbacks that happened, and the
harness also fails on text fields a decoder left unread. ib_async (text, <= 178) is fed
``str`` fields the way its ``Client`` splits them.
"""

from __future__ import annotations

import inspect
import struct
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC
from decimal import Decimal
from types import SimpleNamespace
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from ib_async.decoder import Decoder as AsyncDecoder
from ibapi import comm
from ibapi.commission_and_fees_report import CommissionAndFeesReport
from ibapi.common import (
    PROTOBUF_MSG_ID,
    BarData,
    PriceIncrement,
    TickAttrib,
    TickAttribBidAsk,
    TickAttribLast,
)
from ibapi.const import UNSET_DECIMAL, UNSET_DOUBLE, UNSET_INTEGER
from ibapi.contract import (
    ComboLeg,
    Contract,
    ContractDetails,
    DeltaNeutralContract,
    FundAssetType,
    FundDistributionPolicyIndicator,
)
from ibapi.decoder import Decoder
from ibapi.execution import Execution
from ibapi.ineligibility_reason import IneligibilityReason
from ibapi.object_implem import Object
from ibapi.order import Order, OrderComboLeg
from ibapi.order_condition import PriceCondition
from ibapi.order_state import OrderAllocation, OrderState
from ibapi.softdollartier import SoftDollarTier
from ibapi.tag_value import TagValue
from ibapi.ticktype import TickTypeEnum
from ibapi.wrapper import EWrapper

from adapters.ib.gateway_sim.responses import (
    HOT,
    MAX_SERVER_VERSION,
    MIN_SERVER_VERSION,
    PROTOBUF_FROM,
    ResponseEncoder,
)

# The decision under test, restated so that a change to the module's table fails here.
EXPECTED_PROTOBUF_FROM = {
    **dict.fromkeys((4, 11, 55, 59), 201),
    **dict.fromkeys((5, 3), 203),
    **dict.fromkeys((53, 101, 102), 204),
    **dict.fromkeys((10, 52), 205),
    **dict.fromkeys((1, 2, 46, 45, 57, 12, 13, 58, 81), 206),
    **dict.fromkeys((15, 61, 62, 63, 64, 6, 7, 8, 54, 73, 74), 207),
    **dict.fromkeys((17, 90, 108, 99), 208),
    **dict.fromkeys((9, 49, 109), 213),
    93: 212,  # marketRule
}

VERSIONS = (163, 176, 178, 200, 201, 213, 225)
FORMS = [(v, pb) for v in VERSIONS for pb in ((True, False) if v >= 201 else (True,))]
ASYNC_VERSIONS = (163, 176, 178)
T_MS = 1_745_600_000_123
T_S = 1_745_600_000


# -- decoding harness --------------------------------------------------------------------------


class Recorder(EWrapper):
    """Records every EWrapper callback except the raw ``*ProtoBuf`` echoes."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[tuple[str, tuple[Any, ...]]] = []


def _recording(name: str) -> Callable[..., None]:
    def record(self: Recorder, *args: Any) -> None:
        self.calls.append((name, args))

    return record


for _name, _ in inspect.getmembers(EWrapper, inspect.isfunction):
    if not _name.startswith("_") and not _name.endswith("ProtoBuf"):
        setattr(Recorder, _name, _recording(_name))


class _Fields(tuple):
    """``read_fields``' tuple, remembering the iterator a processing handler consumed."""

    def __iter__(self):  # type: ignore[override]
        self.consumed = super().__iter__()
        return self.consumed


@dataclass
class Decoded:
    frames: list[tuple[str, int]]  # ("pb" | "text", message id) per frame
    calls: list[tuple[str, tuple[Any, ...]]]


def ibapi_decode(data: bytes, version: int) -> Decoded:
    recorder = Recorder()
    decoder = Decoder(recorder, version)
    frames = []
    while data:
        size, msg, data = comm.read_msg(data)
        assert msg and size == len(msg), "truncated frame"
        if version >= 201:
            msg_id, payload = int.from_bytes(msg[:4], "big"), msg[4:]
        else:
            cut = msg.index(b"\0")
            msg_id, payload = int(msg[:cut]), msg[cut + 1 :]
        if msg_id > PROTOBUF_MSG_ID:
            frames.append(("pb", msg_id - PROTOBUF_MSG_ID))
            decoder.processProtoBuf(payload, msg_id - PROTOBUF_MSG_ID)
        else:
            frames.append(("text", msg_id))
            fields = _Fields(comm.read_fields(payload))
            decoder.interpret(fields, msg_id)
            unread = list(getattr(fields, "consumed", ()))
            assert not unread, f"message {msg_id}: fields the decoder did not read: {unread}"
    return Decoded(frames, recorder.calls)


def expected_frames(ids: Sequence[int], version: int, protobuf: bool) -> list[tuple[str, int]]:
    return [("pb" if protobuf and version >= EXPECTED_PROTOBUF_FROM[i] else "text", i) for i in ids]


class _AsyncRecorder:
    """Stands in for ib_async's Wrapper: records calls, offers what execDetails reads."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, tuple[Any, ...]]] = []
        self.ib = SimpleNamespace(TimezoneTWS=None)
        self.defaultTimezone = UTC

    def __getattr__(self, name: str) -> Callable[..., None]:
        return lambda *args: self.calls.append((name, args))


class _RaisingLogger:
    """ib_async logs and swallows decode errors; surface them instead."""

    def exception(self, msg: str, *args: Any, **kwargs: Any) -> None:
        raise AssertionError(f"ib_async could not decode: {msg}")


def ib_async_decode(frame: bytes, version: int) -> list[tuple[str, tuple[Any, ...]]]:
    recorder = _AsyncRecorder()
    decoder = AsyncDecoder(recorder, version)  # type: ignore[arg-type]
    decoder.logger = _RaisingLogger()  # type: ignore[assignment]
    (size,) = struct.unpack(">I", frame[:4])
    assert len(frame) == 4 + size
    fields = frame[4:].decode(errors="backslashreplace").split("\0")
    fields.pop()
    decoder.interpret(fields)
    return recorder.calls


def norm(value: Any) -> Any:
    """ibapi objects have no __eq__: compare them as (class, attributes)."""
    if isinstance(value, Object):
        return type(value).__name__, {k: norm(v) for k, v in vars(value).items()}
    if isinstance(value, (list, tuple)):
        return [norm(v) for v in value]
    return value


def pairs(tag_values: Sequence[TagValue] | None) -> list[tuple[str, str]]:
    return [(tv.tag, tv.value) for tv in tag_values or ()]


def names(words: str) -> list[str]:
    return words.split()


def assert_fields(got: object, want: object, names: Sequence[str]) -> None:
    mismatched = {n: (getattr(got, n), getattr(want, n)) for n in names}
    mismatched = {n: gw for n, gw in mismatched.items() if gw[0] != gw[1]}
    assert not mismatched, f"(decoded, sent) differ: {mismatched}"


# -- inputs ------------------------------------------------------------------------------------


def stock() -> Contract:
    c = Contract()
    c.conId, c.symbol, c.secType, c.strike = 265598, "AAPL", "STK", 0.0
    c.exchange, c.primaryExchange, c.currency = "SMART", "NASDAQ", "USD"
    c.localSymbol, c.tradingClass = "AAPL", "NMS"
    return c


def option() -> Contract:
    c = Contract()
    c.conId, c.symbol, c.secType = 756733412, "AAPL", "OPT"
    c.lastTradeDateOrContractMonth, c.strike, c.right, c.multiplier = "20250620", 200.0, "C", "100"
    c.exchange, c.currency = "SMART", "USD"
    c.localSymbol, c.tradingClass = "AAPL  250620C00200000", "AAPL"
    return c


def limit_order() -> Order:
    o = Order()
    o.action, o.totalQuantity, o.orderType, o.lmtPrice = "BUY", Decimal("100"), "LMT", 185.25
    o.tif, o.account, o.orderRef, o.clientId = "GTC", "DU123", "strat-1", 3
    o.permId, o.parentId, o.ocaGroup, o.ocaType = 1_234_567_890_123, 6, "oca-1", 2
    o.displaySize, o.trailStopPrice, o.trailingPercent = 10, 180.5, 1.5
    o.goodTillDate = "20250630 16:00:00 US/Eastern"
    o.algoStrategy = "Adaptive"
    o.algoParams = [TagValue("adaptivePriority", "Normal")]
    o.outsideRth, o.modelCode, o.minQty, o.percentOffset = True, "model-a", 5, 0.02
    o.duration, o.postToAts, o.autoCancelParent = 60, 1, True
    o.minTradeQty, o.midOffsetAtWhole = 3, 0.01
    o.customerAccount, o.professionalCustomer, o.bondAccruedInterest = "CUST1", True, "12.5"
    o.includeOvernight, o.extOperator, o.manualOrderIndicator = True, "op-1", 1
    o.submitter, o.imbalanceOnly = "trader-1", True
    return o


def market_order() -> Order:
    """Every price unset: TWS writes 1.7976931348623157E308 for those."""
    o = Order()
    o.action, o.totalQuantity, o.orderType, o.tif = "SELL", Decimal("0.5"), "MKT", "DAY"
    return o


def submitted_state() -> OrderState:
    st_ = OrderState()
    st_.status, st_.commissionAndFeesCurrency = "Submitted", "USD"
    st_.commissionAndFees, st_.minCommissionAndFees, st_.maxCommissionAndFees = 1.25, 1.0, 2.0
    st_.initMarginAfter, st_.warningText = "25000.5", "Order held while securities are located"
    return st_


ORDER_FIELDS = names(
    "action totalQuantity orderType lmtPrice auxPrice tif account orderRef permId ocaGroup "
    "ocaType displaySize trailStopPrice trailingPercent goodTillDate goodAfterTime algoStrategy "
    "outsideRth hidden modelCode minQty percentOffset triggerMethod whatIf openClose origin "
    "volatility deltaNeutralOrderType lmtPriceOffset triggerPrice cashQty"
)
# Fields a text layout only carries from some server version on (protobuf always carries them).
GATED_ORDER_FIELDS = {
    "duration": 158,
    "postToAts": 160,
    "autoCancelParent": 162,
    "minTradeQty": 170,
    "midOffsetAtWhole": 170,
    "customerAccount": 183,
    "professionalCustomer": 184,
    "bondAccruedInterest": 185,
    "includeOvernight": 189,
    "extOperator": 193,
    "manualOrderIndicator": 193,
    "submitter": 198,
    "imbalanceOnly": 199,
}
STATE_FIELDS = names(
    "status commissionAndFees minCommissionAndFees maxCommissionAndFees "
    "commissionAndFeesCurrency initMarginAfter warningText"
)
CONTRACT_FIELDS = names(
    "conId symbol secType lastTradeDateOrContractMonth strike right multiplier exchange "
    "currency localSymbol tradingClass"
)


def assert_order(got: Order, want: Order, version: int, pb: bool, text_fields: Sequence[str]):
    assert_fields(got, want, ORDER_FIELDS)
    assert pairs(got.algoParams) == pairs(want.algoParams)
    for name, since in GATED_ORDER_FIELDS.items():
        if pb or version >= since:
            assert getattr(got, name) == getattr(want, name), name
        else:  # not on the wire: the decoder must have left its default, not a shifted value
            assert getattr(got, name) == getattr(Order(), name), name
    if pb:
        assert_fields(got, want, ["clientId", "parentId"])
    else:
        assert_fields(got, want, text_fields)


# -- one table of simple messages ---------------------------------------------------------------


def _bar(date: str, o: float, h: float, low: float, c: float, vol: str, wap: str, n: int):
    bar = BarData()
    bar.date, bar.open, bar.high, bar.low, bar.close = date, o, h, low, c
    bar.volume, bar.wap, bar.barCount = Decimal(vol), Decimal(wap), n
    return bar


BARS = [
    _bar("20250425 09:30:00 US/Eastern", 185.0, 186.5, 184.75, 186.25, "1200", "185.6", 31),
    _bar("20250425 09:31:00 US/Eastern", 186.25, 186.3, 185.9, 186.0, "800", "186.1", 17),
]


def _attrib(**flags: bool) -> TickAttrib:
    attrib = TickAttrib()
    for name, flag in flags.items():
        setattr(attrib, name, flag)
    return attrib


def _last_attrib(past_limit: bool, unreported: bool) -> TickAttribLast:
    attrib = TickAttribLast()
    attrib.pastLimit, attrib.unreported = past_limit, unreported
    return attrib


def _bid_ask_attrib(bid_past_low: bool, ask_past_high: bool) -> TickAttribBidAsk:
    attrib = TickAttribBidAsk()
    attrib.bidPastLow, attrib.askPastHigh = bid_past_low, ask_past_high
    return attrib


def _commission() -> CommissionAndFeesReport:
    report = CommissionAndFeesReport()
    report.execId, report.commissionAndFees, report.currency = "0001f4e8.6800a1b2.01.01", 1.0, "USD"
    report.realizedPNL, report.yield_, report.yieldRedemptionDate = UNSET_DOUBLE, UNSET_DOUBLE, 0
    return report


def _increment(low: float, inc: float) -> PriceIncrement:
    p = PriceIncrement()
    p.lowEdge, p.increment = low, inc
    return p


Calls = list[tuple[str, tuple[Any, ...]]]


@dataclass(frozen=True)
class Case:
    encode: Callable[[ResponseEncoder], bytes]
    expect: Callable[[int, bool], Calls]  # (server version, sent as protobuf) -> callbacks
    ids: Callable[[int], tuple[int, ...]]  # message id of each frame at a server version
    since: int = MIN_SERVER_VERSION


def _one(msg_id: int) -> Callable[[int], tuple[int, ...]]:
    return lambda v: (msg_id,)


ORDER_REJECT = '{"rejectReason":"price too far","code":"\\u00e9"}'

CASES: dict[str, Case] = {
    "next_valid_id": Case(
        lambda e: e.next_valid_id(42), lambda v, pb: [("nextValidId", (42,))], _one(9)
    ),
    "managed_accounts": Case(
        lambda e: e.managed_accounts(["DU123", "DU456"]),
        lambda v, pb: [("managedAccounts", ("DU123,DU456",))],
        _one(15),
    ),
    "current_time": Case(
        lambda e: e.current_time(T_S), lambda v, pb: [("currentTime", (T_S,))], _one(49)
    ),
    "market_rule": Case(
        lambda e: e.market_rule(32, ((0.0, 0.01), (3.0, 0.05))),
        lambda v, pb: [("marketRule", (32, [_increment(0.0, 0.01), _increment(3.0, 0.05)]))],
        _one(93),
    ),
    "current_time_millis": Case(
        lambda e: e.current_time_millis(T_MS),
        lambda v, pb: [("currentTimeInMillis", (T_MS,))],
        _one(109),
        since=197,
    ),
    "error_notice": Case(
        lambda e: e.error(-1, 2104, "Market data farm connection is OK:usfarm", T_MS),
        lambda v, pb: [
            (
                "error",
                (
                    -1,
                    T_MS if pb or v >= 194 else 0,
                    2104,
                    "Market data farm connection is OK:usfarm",
                    "",
                ),
            )
        ],
        _one(4),
    ),
    "error_reject_non_ascii": Case(
        lambda e: e.error(7, 201, "Ordre rejeté – prix hors limite \\ 5 €", T_MS, ORDER_REJECT),
        lambda v, pb: [
            (
                "error",
                (
                    7,
                    T_MS if pb or v >= 194 else 0,
                    201,
                    "Ordre rejeté – prix hors limite \\ 5 €",
                    ORDER_REJECT if pb or v >= 166 else "",
                ),
            )
        ],
        _one(4),
    ),
    "contract_data_end": Case(
        lambda e: e.contract_data_end(5), lambda v, pb: [("contractDetailsEnd", (5,))], _one(52)
    ),
    "tick_req_params": Case(
        lambda e: e.tick_req_params(5, 0.01, "9c0001", 3),
        lambda v, pb: [("tickReqParams", (5, 0.01, "9c0001", 3))],
        _one(81),
    ),
    "market_data_type": Case(
        lambda e: e.market_data_type(5, 3), lambda v, pb: [("marketDataType", (5, 3))], _one(58)
    ),
    "tick_price_bid": Case(
        lambda e: e.tick_price(5, 1, 185.25, Decimal("300"), 3),
        lambda v, pb: [
            ("tickPrice", (5, 1, 185.25, _attrib(canAutoExecute=True, pastLimit=True))),
            ("tickSize", (5, 0, Decimal("300"))),
        ],
        _one(1),
    ),
    "tick_price_delayed_last": Case(
        lambda e: e.tick_price(5, 68, 185.5, 7, 4),
        lambda v, pb: [
            ("tickPrice", (5, 68, 185.5, _attrib(preOpen=True))),
            ("tickSize", (5, 71, Decimal(7))),
        ],
        _one(1),
    ),
    "tick_price_close_has_no_size": Case(
        lambda e: e.tick_price(5, 9, 184.1, 0, 0),
        lambda v, pb: [("tickPrice", (5, 9, 184.1, _attrib()))],
        _one(1),
    ),
    "tick_size": Case(
        lambda e: e.tick_size(5, 8, Decimal("12345.5")),
        lambda v, pb: [("tickSize", (5, 8, Decimal("12345.5")))],
        _one(2),
    ),
    "tick_string": Case(
        lambda e: e.tick_string(5, 45, "1745600000"),
        lambda v, pb: [("tickString", (5, 45, "1745600000"))],
        _one(46),
    ),
    "tick_generic": Case(
        lambda e: e.tick_generic(5, 49, 0.5),
        lambda v, pb: [("tickGeneric", (5, 49, 0.5))],
        _one(45),
    ),
    "tick_snapshot_end": Case(
        lambda e: e.tick_snapshot_end(5), lambda v, pb: [("tickSnapshotEnd", (5,))], _one(57)
    ),
    "update_mkt_depth": Case(
        lambda e: e.update_mkt_depth(5, 0, 1, 1, 185.2, Decimal("100")),
        lambda v, pb: [("updateMktDepth", (5, 0, 1, 1, 185.2, Decimal("100")))],
        _one(12),
    ),
    "update_mkt_depth_l2": Case(
        lambda e: e.update_mkt_depth_l2(5, 2, "NSDQ", 0, 0, 185.3, Decimal("200"), True),
        lambda v, pb: [("updateMktDepthL2", (5, 2, "NSDQ", 0, 0, 185.3, Decimal("200"), True))],
        _one(13),
    ),
    "tick_by_tick_last": Case(
        lambda e: e.tick_by_tick_all_last(5, 1, T_S, 185.25, Decimal("100"), 2, "NASDAQ", "@ I"),
        lambda v, pb: [
            (
                "tickByTickAllLast",
                (5, 1, T_S, 185.25, Decimal("100"), _last_attrib(False, True), "NASDAQ", "@ I"),
            )
        ],
        _one(99),
    ),
    "tick_by_tick_all_last": Case(
        lambda e: e.tick_by_tick_all_last(5, 2, T_S, 185.0, 3, 1, "ARCA", ""),
        lambda v, pb: [
            (
                "tickByTickAllLast",
                (5, 2, T_S, 185.0, Decimal(3), _last_attrib(True, False), "ARCA", ""),
            )
        ],
        _one(99),
    ),
    "tick_by_tick_bid_ask": Case(
        lambda e: e.tick_by_tick_bid_ask(5, T_S, 185.2, 185.3, Decimal("100"), Decimal("300"), 3),
        lambda v, pb: [
            (
                "tickByTickBidAsk",
                (5, T_S, 185.2, 185.3, Decimal("100"), Decimal("300"), _bid_ask_attrib(True, True)),
            )
        ],
        _one(99),
    ),
    "tick_by_tick_mid_point": Case(
        lambda e: e.tick_by_tick_mid_point(5, T_S, 185.25),
        lambda v, pb: [("tickByTickMidPoint", (5, T_S, 185.25))],
        _one(99),
    ),
    "historical_data": Case(
        lambda e: e.historical_data(5, BARS, "20250425 09:30:00", "20250425 16:00:00"),
        lambda v, pb: [
            ("historicalData", (5, BARS[0])),
            ("historicalData", (5, BARS[1])),
            ("historicalDataEnd", (5, "20250425 09:30:00", "20250425 16:00:00")),
        ],
        lambda v: (17, 108) if v >= 196 else (17,),
    ),
    "historical_data_update": Case(
        lambda e: e.historical_data_update(5, BARS[1]),
        lambda v, pb: [("historicalDataUpdate", (5, BARS[1]))],
        _one(90),
    ),
    "order_status": Case(
        lambda e: e.order_status(
            7,
            "Filled",
            Decimal("100"),
            Decimal("0"),
            185.2,
            1_234_567_890_123,
            6,
            185.2,
            3,
            "",
            0.0,
        ),
        lambda v, pb: [
            (
                "orderStatus",
                (
                    7,
                    "Filled",
                    Decimal(100),
                    Decimal(0),
                    185.2,
                    1_234_567_890_123,
                    6,
                    185.2,
                    3,
                    "",
                    0.0,
                ),
            )
        ],
        _one(3),
    ),
    "open_order_end": Case(
        lambda e: e.open_order_end(), lambda v, pb: [("openOrderEnd", ())], _one(53)
    ),
    "completed_orders_end": Case(
        lambda e: e.completed_orders_end(), lambda v, pb: [("completedOrdersEnd", ())], _one(102)
    ),
    "exec_details_end": Case(
        lambda e: e.exec_details_end(5), lambda v, pb: [("execDetailsEnd", (5,))], _one(55)
    ),
    "commission_and_fees_report": Case(
        lambda e: e.commission_and_fees_report(_commission()),
        lambda v, pb: [("commissionAndFeesReport", (_commission(),))],
        _one(59),
    ),
    "position_end": Case(lambda e: e.position_end(), lambda v, pb: [("positionEnd", ())], _one(62)),
    "account_summary": Case(
        lambda e: e.account_summary(5, "DU123", "NetLiquidation", "100000.00", "USD"),
        lambda v, pb: [("accountSummary", (5, "DU123", "NetLiquidation", "100000.00", "USD"))],
        _one(63),
    ),
    "account_summary_end": Case(
        lambda e: e.account_summary_end(5), lambda v, pb: [("accountSummaryEnd", (5,))], _one(64)
    ),
    "update_account_value": Case(
        lambda e: e.update_account_value("CashBalance", "100000.00", "USD", "DU123"),
        lambda v, pb: [("updateAccountValue", ("CashBalance", "100000.00", "USD", "DU123"))],
        _one(6),
    ),
    "update_account_value_non_ascii": Case(
        lambda e: e.update_account_value("AccountAlias", "Müller \\ Söhne ✓", "", "DU123"),
        lambda v, pb: [("updateAccountValue", ("AccountAlias", "Müller \\ Söhne ✓", "", "DU123"))],
        _one(6),
    ),
    "update_account_time": Case(
        lambda e: e.update_account_time("15:23"),
        lambda v, pb: [("updateAccountTime", ("15:23",))],
        _one(8),
    ),
    "account_download_end": Case(
        lambda e: e.account_download_end("DU123"),
        lambda v, pb: [("accountDownloadEnd", ("DU123",))],
        _one(54),
    ),
    "account_update_multi": Case(
        lambda e: e.account_update_multi(5, "DU123", "", "CashBalance", "100000.00", "USD"),
        lambda v, pb: [("accountUpdateMulti", (5, "DU123", "", "CashBalance", "100000.00", "USD"))],
        _one(73),
    ),
    "account_update_multi_end": Case(
        lambda e: e.account_update_multi_end(5),
        lambda v, pb: [("accountUpdateMultiEnd", (5,))],
        _one(74),
    ),
}


@pytest.mark.parametrize(("version", "protobuf"), FORMS)
@pytest.mark.parametrize("name", CASES)
def test_ibapi_decodes_each_message_into_its_inputs(name: str, version: int, protobuf: bool):
    case = CASES[name]
    if version < case.since:
        pytest.skip(f"{name} exists from server version {case.since}")
    decoded = ibapi_decode(case.encode(ResponseEncoder(version, protobuf)), version)
    assert decoded.frames == expected_frames(case.ids(version), version, protobuf)
    sent_as_pb = decoded.frames[0][0] == "pb"
    assert norm(decoded.calls) == norm(case.expect(version, sent_as_pb))


ALL_VERSIONS = range(MIN_SERVER_VERSION, MAX_SERVER_VERSION + 1)


@pytest.mark.parametrize("name", CASES)
def test_text_layouts_decode_at_every_version(name: str):
    """Every version gate of the text layouts, not just the sampled versions."""
    case = CASES[name]
    for version in ALL_VERSIONS:
        if version >= case.since:
            decoded = ibapi_decode(case.encode(ResponseEncoder(version, False)), version)
            assert decoded.frames == expected_frames(case.ids(version), version, False), version
            assert norm(decoded.calls) == norm(case.expect(version, False)), version


def test_protobuf_table_is_the_documented_one():
    assert dict(PROTOBUF_FROM) == EXPECTED_PROTOBUF_FROM


@pytest.mark.parametrize("name", [n for n in CASES if n != "current_time_millis"])
def test_each_message_switches_to_protobuf_exactly_at_its_threshold(name: str):
    case = CASES[name]
    first = EXPECTED_PROTOBUF_FROM[case.ids(MAX_SERVER_VERSION)[0]]
    for version, kind in ((first - 1, "text"), (first, "pb")):
        decoded = ibapi_decode(case.encode(ResponseEncoder(version)), version)
        assert decoded.frames[0][0] == kind, version
        assert norm(decoded.calls) == norm(case.expect(version, kind == "pb"))


@pytest.mark.parametrize("name", CASES)
def test_protobuf_flag_changes_nothing_below_201(name: str):
    case = CASES[name]
    assert case.encode(ResponseEncoder(200, True)) == case.encode(ResponseEncoder(200, False))


def test_text_ids_are_ascii_below_201_and_raw_ints_from_201():
    assert ResponseEncoder(200).next_valid_id(42) == b"\x00\x00\x00\x079\x001\x0042\x00"
    assert ResponseEncoder(201).next_valid_id(42) == b"\x00\x00\x00\x09\x00\x00\x00\x091\x0042\x00"
    pb = ResponseEncoder(213).next_valid_id(42)
    assert pb[4:8] == (9 + 200).to_bytes(4, "big")


def test_versions_outside_the_known_layouts_are_refused():
    with pytest.raises(ValueError, match="156"):
        ResponseEncoder(MIN_SERVER_VERSION - 1)
    with pytest.raises(ValueError, match="226"):
        ResponseEncoder(MAX_SERVER_VERSION + 1)
    with pytest.raises(ValueError, match="197"):
        ResponseEncoder(196).current_time_millis(T_MS)


def test_unset_doubles_travel_as_java_max_double():
    frame = ResponseEncoder(178).open_order(8, stock(), market_order(), submitted_state())
    assert b"\x001.7976931348623157E308\x00" in frame
    (_, (_, _, order, _)) = ibapi_decode(frame, 178).calls[0]
    assert order.lmtPrice == order.auxPrice == order.triggerPrice == UNSET_DOUBLE
    assert order.trailStopPrice == UNSET_DOUBLE  # read twice, the second time without SHOW_UNSET


# -- orders ------------------------------------------------------------------------------------


def check_open_order(version: int, protobuf: bool) -> None:
    for make_order in (limit_order, market_order):
        check_one_open_order(version, protobuf, make_order)


def check_one_open_order(version: int, protobuf: bool, make_order: Callable[[], Order]) -> None:
    contract, order, state = option(), make_order(), submitted_state()
    decoded = ibapi_decode(
        ResponseEncoder(version, protobuf).open_order(8, contract, order, state), version
    )
    assert decoded.frames == expected_frames([5], version, protobuf)
    [(name, (order_id, got_contract, got_order, got_state))] = decoded.calls
    pb = decoded.frames[0][0] == "pb"
    assert (name, order_id, got_order.orderId) == ("openOrder", 8, 8)
    assert_fields(got_contract, contract, CONTRACT_FIELDS)
    assert_order(got_order, order, version, pb, ["clientId", "parentId", "blockOrder"])
    assert_fields(got_state, state, STATE_FIELDS)


def exotic() -> tuple[Contract, Order]:
    """A combo with every optional block of the openOrder layout switched on."""
    c = Contract()
    c.conId, c.symbol, c.secType, c.exchange, c.currency = 28812380, "SPY", "BAG", "SMART", "USD"
    c.comboLegsDescrip = "756733412|1,756733413|-1"
    legs = []
    for con_id, action in ((756733412, "BUY"), (756733413, "SELL")):
        leg = ComboLeg()
        leg.conId, leg.ratio, leg.action, leg.exchange = con_id, 1, action, "SMART"
        leg.openClose, leg.designatedLocation = 1, "loc"
        legs.append(leg)
    c.comboLegs = legs
    c.deltaNeutralContract = DeltaNeutralContract()
    c.deltaNeutralContract.conId, c.deltaNeutralContract.delta = 756733400, 0.5
    c.deltaNeutralContract.price = 512.25

    o = Order()
    o.action, o.totalQuantity, o.orderType, o.lmtPrice = "BUY", Decimal("2"), "PEG BENCH", 1.5
    o.orderComboLegs = [OrderComboLeg(), OrderComboLeg()]
    o.orderComboLegs[0].price = 1.25
    o.smartComboRoutingParams = [TagValue("NonGuaranteed", "1")]
    o.scaleInitLevelSize, o.scaleSubsLevelSize, o.scalePriceIncrement = 100, 50, 0.05
    o.scalePriceAdjustValue, o.scalePriceAdjustInterval, o.scaleProfitOffset = 0.01, 60, 0.2
    o.scaleAutoReset, o.scaleInitPosition, o.scaleInitFillQty = True, 10, 5
    o.hedgeType, o.hedgeParam = "D", "0.5"
    o.deltaNeutralOrderType, o.deltaNeutralAuxPrice, o.deltaNeutralConId = "LMT", 99.5, 756733400
    o.deltaNeutralOpenClose, o.deltaNeutralShortSale, o.deltaNeutralShortSaleSlot = "O", True, 1
    o.deltaNeutralDesignatedLocation = "loc"
    o.referenceContractId, o.isPeggedChangeAmountDecrease = 756733400, True
    o.peggedChangeAmount, o.referenceChangeAmount, o.referenceExchangeId = 0.1, 0.2, "CBOE"
    o.conditions = [PriceCondition(2, 756733400, "SMART", True, 510.0)]
    o.conditionsIgnoreRth, o.conditionsCancelOrder = True, True
    o.softDollarTier = SoftDollarTier("tier", "7", "Tier 7")
    o.adjustedOrderType, o.triggerPrice, o.adjustedStopPrice = "STP", 1.0, 0.9
    return c, o


EXOTIC_ORDER_FIELDS = names(
    "scaleInitLevelSize scaleSubsLevelSize scalePriceIncrement scalePriceAdjustValue "
    "scalePriceAdjustInterval scaleProfitOffset scaleAutoReset scaleInitPosition scaleInitFillQty "
    "hedgeType hedgeParam deltaNeutralOrderType deltaNeutralAuxPrice deltaNeutralConId "
    "deltaNeutralOpenClose deltaNeutralShortSale deltaNeutralShortSaleSlot "
    "deltaNeutralDesignatedLocation referenceContractId isPeggedChangeAmountDecrease "
    "peggedChangeAmount referenceChangeAmount referenceExchangeId conditionsIgnoreRth "
    "conditionsCancelOrder adjustedOrderType triggerPrice adjustedStopPrice lmtPrice"
)


def check_exotic_open_order(version: int, protobuf: bool) -> None:
    contract, order = exotic()
    state = submitted_state()
    allocation = OrderAllocation()
    allocation.account, allocation.position, allocation.isMonetary = "DU123", Decimal(4), True
    state.orderAllocations, state.marginCurrency, state.suggestedSize = [allocation], "USD", 3
    frame = ResponseEncoder(version, protobuf).open_order(9, contract, order, state)
    [(_, (_, got_contract, got_order, got_state))] = ibapi_decode(frame, version).calls
    assert_fields(got_order, order, EXOTIC_ORDER_FIELDS)
    assert norm(got_contract.comboLegs) == norm(contract.comboLegs)
    assert norm(got_contract.deltaNeutralContract) == norm(contract.deltaNeutralContract)
    assert [leg.price for leg in got_order.orderComboLegs] == [1.25, UNSET_DOUBLE]
    assert pairs(got_order.smartComboRoutingParams) == [("NonGuaranteed", "1")]
    assert norm(got_order.conditions) == norm(order.conditions)
    assert norm(got_order.softDollarTier) == norm(order.softDollarTier)
    if (protobuf and version >= 203) or version >= 195:
        assert_fields(got_state, state, ["marginCurrency", "suggestedSize"])
        assert norm(got_state.orderAllocations) == norm(state.orderAllocations)


def filled_state() -> OrderState:
    st_ = OrderState()
    st_.status, st_.completedTime, st_.completedStatus = "Filled", "20250425 15:23:54", "Filled"
    return st_


COMPLETED_FIELDS = names(
    "filledQuantity parentPermId autoCancelDate refFuturesConId shareholder routeMarketableToBbo"
)


# The completed-order layout's own gates: no duration or postToAts at all, and autoCancelParent
# and imbalanceOnly at every version (``processCompletedOrderMsg``).
COMPLETED_GATES = {
    "autoCancelParent": MIN_SERVER_VERSION,
    "imbalanceOnly": MIN_SERVER_VERSION,
    "minTradeQty": 170,
    "midOffsetAtWhole": 170,
    "customerAccount": 183,
    "professionalCustomer": 184,
    "submitter": 198,
}


def check_completed_order(version: int, protobuf: bool) -> None:
    contract, order, state = option(), limit_order(), filled_state()
    order.orderId, order.filledQuantity, order.parentPermId = 8, Decimal("100"), 99
    order.autoCancelDate, order.shareholder, order.routeMarketableToBbo = "20250630", "sh", True
    decoded = ibapi_decode(
        ResponseEncoder(version, protobuf).completed_order(contract, order, state), version
    )
    assert decoded.frames == expected_frames([101], version, protobuf)
    [(name, (got_contract, got_order, got_state))] = decoded.calls
    pb = decoded.frames[0][0] == "pb"
    assert name == "completedOrder"
    assert_fields(got_contract, contract, CONTRACT_FIELDS)
    assert_fields(got_order, order, ORDER_FIELDS + COMPLETED_FIELDS)
    for field, since in COMPLETED_GATES.items():
        expected = order if pb or version >= since else Order()
        assert getattr(got_order, field) == getattr(expected, field), field
    if pb:
        assert_fields(got_order, order, ["orderId", "clientId", "parentId"])
    assert_fields(got_state, state, ["status", "completedTime", "completedStatus"])


# -- executions, positions, contract details ---------------------------------------------------


def fill() -> Execution:
    e = Execution()
    e.execId, e.acctNumber = "0001f4e8.6800a1b2.01.01", "DU123"
    e.time = "20250425 15:23:54 US/Eastern"
    e.exchange, e.side, e.shares, e.price = "ISLAND", "BOT", Decimal("100"), 185.2
    e.permId, e.clientId, e.orderId, e.liquidation = 1_234_567_890_123, 3, 8, 0
    e.cumQty, e.avgPrice, e.orderRef, e.evRule = Decimal("100"), 185.2, "strat-1", "aapl"
    e.evMultiplier, e.modelCode, e.lastLiquidity = 1.5, "model-a", 2
    e.pendingPriceRevision, e.submitter = True, "trader-1"
    return e


EXECUTION_FIELDS = names(
    "execId time acctNumber exchange side shares price permId clientId orderId liquidation "
    "cumQty avgPrice orderRef evRule evMultiplier modelCode lastLiquidity"
)


def check_exec_details(version: int, protobuf: bool) -> None:
    contract, execution = option(), fill()
    decoded = ibapi_decode(
        ResponseEncoder(version, protobuf).exec_details(-1, contract, execution), version
    )
    assert decoded.frames == expected_frames([11], version, protobuf)
    [(name, (req_id, got_contract, got))] = decoded.calls
    pb = decoded.frames[0][0] == "pb"
    assert (name, req_id) == ("execDetails", -1)
    assert_fields(got_contract, contract, CONTRACT_FIELDS)
    assert_fields(got, execution, EXECUTION_FIELDS)
    assert got.pendingPriceRevision is (pb or version >= 178)
    assert got.submitter == ("trader-1" if pb or version >= 198 else "")


def check_position_and_portfolio(version: int, protobuf: bool) -> None:
    enc = ResponseEncoder(version, protobuf)
    contract = stock()
    data = enc.position("DU123", contract, Decimal("-100"), 185.2) + enc.update_portfolio(
        contract, Decimal("-100"), 186.0, -18600.0, 185.2, -80.0, 12.5, "DU123"
    )
    decoded = ibapi_decode(data, version)
    assert decoded.frames == expected_frames([61, 7], version, protobuf)
    [(pos, (account, pos_contract, qty, cost)), (pf, (pf_contract, *values))] = decoded.calls
    assert (pos, account, qty, cost) == ("position", "DU123", Decimal(-100), 185.2)
    assert (pf, values) == (
        "updatePortfolio",
        [Decimal(-100), 186.0, -18600.0, 185.2, -80.0, 12.5, "DU123"],
    )
    pb = decoded.frames[0][0] == "pb"
    assert_fields(pos_contract, contract, CONTRACT_FIELDS)
    portfolio_fields = [f for f in CONTRACT_FIELDS if f != "exchange"] + ["primaryExchange"]
    assert_fields(pf_contract, contract, portfolio_fields + (["exchange"] if pb else []))


def details(sec_type: str = "STK") -> ContractDetails:
    d = ContractDetails()
    d.contract = option() if sec_type == "OPT" else stock()
    d.contract.secType = sec_type
    d.contract.lastTradeDate = "20250620" if sec_type == "OPT" else ""
    d.marketName, d.minTick, d.orderTypes = "NMS", 0.01, "ACTIVETIM,AD,ALERT,LMT,MKT"
    d.validExchanges, d.priceMagnifier, d.underConId = "SMART,AMEX,NYSE,ISLAND", 1, 265598
    d.longName, d.contractMonth, d.industry = "Société Générale “Apple”", "202506", "Technology"
    d.category, d.subcategory, d.timeZoneId = "Computers", "Computers", "US/Eastern"
    d.tradingHours = "20250425:0400-20250425:2000;20250426:CLOSED"
    d.liquidHours = "20250425:0930-20250425:1600;20250426:CLOSED"
    d.evRule, d.evMultiplier, d.aggGroup = "", 0, 1
    d.secIdList = [TagValue("ISIN", "US0378331005")]
    d.underSymbol, d.underSecType, d.marketRuleIds = "AAPL", "STK", "26,26,26"
    d.realExpirationDate, d.stockType = "20250620", "COMMON"
    d.lastTradeTime = "16:00" if sec_type == "OPT" else ""
    d.minSize, d.sizeIncrement, d.suggestedSizeIncrement = Decimal("0.0001"), Decimal("0.0001"), 100
    reason = IneligibilityReason("1", "not eligible for overnight trading")
    d.ineligibilityReasonList = [reason]
    return d


DETAILS_FIELDS = names(
    "marketName minTick orderTypes validExchanges priceMagnifier underConId longName "
    "contractMonth industry category subcategory timeZoneId tradingHours liquidHours evRule "
    "evMultiplier aggGroup underSymbol underSecType marketRuleIds realExpirationDate stockType "
    "lastTradeTime"
)
DETAILS_CONTRACT_FIELDS = [*CONTRACT_FIELDS, "primaryExchange"]


def check_contract_data(version: int, protobuf: bool) -> None:
    for sec_type in ("STK", "OPT"):
        check_one_contract_data(version, protobuf, sec_type)


def check_one_contract_data(version: int, protobuf: bool, sec_type: str) -> None:
    want = details(sec_type)
    decoded = ibapi_decode(ResponseEncoder(version, protobuf).contract_data(5, want), version)
    assert decoded.frames == expected_frames([10], version, protobuf)
    [(name, (req_id, got))] = decoded.calls
    pb = decoded.frames[0][0] == "pb"
    assert (name, req_id) == ("contractDetails", 5)
    assert_fields(got.contract, want.contract, DETAILS_CONTRACT_FIELDS)
    assert_fields(got, want, DETAILS_FIELDS)
    assert pairs(got.secIdList) == pairs(want.secIdList)
    assert got.contract.lastTradeDate == (
        want.contract.lastTradeDate if pb or version >= 182 else ""
    )
    sizes = ["minSize", "sizeIncrement", "suggestedSizeIncrement"]
    if pb or version >= 164:
        assert_fields(got, want, sizes)
    else:
        assert [getattr(got, s) for s in sizes] == [UNSET_DECIMAL] * 3
    reasons = [(r.id_, r.description) for r in got.ineligibilityReasonList or ()]
    assert reasons == (
        [("1", "not eligible for overnight trading")] if pb or version >= 186 else []
    )


def check_fund_contract_data(version: int, protobuf: bool) -> None:
    """Fund fields travel in text from 179 on, and only for secType FUND."""
    want = details("FUND")
    want.fundName, want.fundFamily, want.fundClosed = "Vanguard 500", "Vanguard", True
    want.fundDistributionPolicyIndicator = FundDistributionPolicyIndicator.IncomeFund
    want.fundAssetType = FundAssetType.Equity
    [(_, (_, got))] = ibapi_decode(
        ResponseEncoder(version, protobuf).contract_data(5, want), version
    ).calls
    fund = [
        "fundName",
        "fundFamily",
        "fundClosed",
        "fundDistributionPolicyIndicator",
        "fundAssetType",
    ]
    if version >= 179:
        assert_fields(got, want, fund)
    else:
        assert_fields(got, ContractDetails(), fund)
    assert_fields(got, want, DETAILS_FIELDS)


CHECKS = {
    "open_order": check_open_order,
    "exotic_open_order": check_exotic_open_order,
    "completed_order": check_completed_order,
    "exec_details": check_exec_details,
    "position_and_portfolio": check_position_and_portfolio,
    "contract_data": check_contract_data,
    "fund_contract_data": check_fund_contract_data,
}


@pytest.mark.parametrize(("version", "protobuf"), FORMS)
@pytest.mark.parametrize("check", CHECKS)
def test_structured_messages_round_trip(check: str, version: int, protobuf: bool):
    CHECKS[check](version, protobuf)


@pytest.mark.parametrize("check", CHECKS)
def test_structured_text_layouts_at_every_version(check: str):
    for version in ALL_VERSIONS:
        CHECKS[check](version, False)


# -- the hot path ------------------------------------------------------------------------------

ids = st.integers(min_value=-(2**31) + 1, max_value=2**31 - 2)
prices = st.floats(allow_nan=False, allow_infinity=False, width=64)
# ibapi reads a size of exactly 2147483647 as UNSET_DECIMAL.
sizes = st.decimals(min_value=0, max_value=10**12, allow_nan=False, allow_infinity=False).filter(
    lambda d: d != UNSET_INTEGER
)
words = st.text(alphabet=st.characters(min_codepoint=32, max_codepoint=126), max_size=12)
HOT_FORMS = [(178, False), (225, False), (225, True)]


def test_hot_encoders_switch_to_protobuf_with_their_family():
    enc = ResponseEncoder(225)
    assert all(getattr(enc, name).__name__.endswith("_pb") for name in HOT)
    assert all(callable(getattr(ResponseEncoder(178), name)) for name in HOT)


@settings(max_examples=40, deadline=None)
@given(
    req_id=ids,
    tick_type=st.sampled_from([1, 2, 4, 9, 66, 67, 68]),
    price=prices,
    size=sizes,
    mask=st.integers(0, 7),
)
def test_tick_price_property(req_id: int, tick_type: int, price: float, size: Decimal, mask: int):
    size_type = {1: 0, 2: 3, 4: 5, 66: 69, 67: 70, 68: 71}.get(tick_type)
    attrib = _attrib(
        canAutoExecute=bool(mask & 1), pastLimit=bool(mask & 2), preOpen=bool(mask & 4)
    )
    want = [("tickPrice", (req_id, tick_type, price, attrib))]
    if size_type is not None:
        want.append(("tickSize", (req_id, size_type, size)))
    for version, pb in HOT_FORMS:
        frame = ResponseEncoder(version, pb).tick_price(req_id, tick_type, price, size, mask)
        assert norm(ibapi_decode(frame, version).calls) == norm(want)


@settings(max_examples=40, deadline=None)
@given(
    req_id=ids,
    pos=st.integers(0, 100),
    op=st.integers(0, 2),
    side=st.integers(0, 1),
    price=prices,
    size=sizes,
    mm=words,
    smart=st.booleans(),
    tick_type=st.integers(0, TickTypeEnum.NOT_SET),
)
def test_depth_and_size_property(req_id, pos, op, side, price, size, mm, smart, tick_type):
    for version, pb in HOT_FORMS:
        enc = ResponseEncoder(version, pb)
        data = (
            enc.update_mkt_depth(req_id, pos, op, side, price, size)
            + enc.update_mkt_depth_l2(req_id, pos, mm, op, side, price, size, smart)
            + enc.tick_size(req_id, tick_type, size)
        )
        want = [
            ("updateMktDepth", (req_id, pos, op, side, price, size)),
            ("updateMktDepthL2", (req_id, pos, mm, op, side, price, size, smart)),
        ]
        if tick_type != TickTypeEnum.NOT_SET:  # ibapi never reports NOT_SET
            want.append(("tickSize", (req_id, tick_type, size)))
        assert ibapi_decode(data, version).calls == want


@settings(max_examples=40, deadline=None)
@given(
    req_id=ids,
    kind=st.sampled_from([1, 2]),
    t=st.integers(0, 2**40),
    p1=prices,
    p2=prices,
    s1=sizes,
    s2=sizes,
    mask=st.integers(0, 3),
    exch=words,
    cond=words,
)
def test_tick_by_tick_property(req_id, kind, t, p1, p2, s1, s2, mask, exch, cond):
    last_attrib = _last_attrib(bool(mask & 1), bool(mask & 2))
    quote_attrib = _bid_ask_attrib(bool(mask & 1), bool(mask & 2))
    want = [
        ("tickByTickAllLast", (req_id, kind, t, p1, s1, last_attrib, exch, cond)),
        ("tickByTickBidAsk", (req_id, t, p1, p2, s1, s2, quote_attrib)),
        ("tickByTickMidPoint", (req_id, t, p2)),
    ]
    for version, pb in HOT_FORMS:
        enc = ResponseEncoder(version, pb)
        data = (
            enc.tick_by_tick_all_last(req_id, kind, t, p1, s1, mask, exch, cond)
            + enc.tick_by_tick_bid_ask(req_id, t, p1, p2, s1, s2, mask)
            + enc.tick_by_tick_mid_point(req_id, t, p2)
        )
        assert norm(ibapi_decode(data, version).calls) == norm(want)


def test_reused_protobuf_messages_do_not_leak_between_calls():
    enc = ResponseEncoder(225)
    enc.tick_by_tick_all_last(5, 1, T_S, 1.0, 1, 3, "X", "cond")
    [(_, args)] = ibapi_decode(enc.tick_by_tick_all_last(6, 2, T_S, 2.0, 2, 0, "", ""), 225).calls
    assert norm(args) == norm((6, 2, T_S, 2.0, Decimal(2), _last_attrib(False, False), "", ""))


# -- ib_async, the second reader of the text protocol ------------------------------------------


@dataclass(frozen=True)
class AsyncCase:
    encode: Callable[[ResponseEncoder], bytes]
    expect: Callable[[int], Calls]


ASYNC_CASES = {
    "tick_price": AsyncCase(
        lambda e: e.tick_price(5, 1, 185.25, Decimal("300"), 1),
        lambda v: [("priceSizeTick", (5, 1, 185.25, 300.0))],
    ),
    "tick_size": AsyncCase(
        lambda e: e.tick_size(5, 8, Decimal("12345")), lambda v: [("tickSize", (5, 8, 12345.0))]
    ),
    "depth": AsyncCase(
        lambda e: e.update_mkt_depth(5, 0, 1, 1, 185.2, Decimal("100")),
        lambda v: [("updateMktDepth", (5, 0, 1, 1, 185.2, 100.0))],
    ),
    "depth_l2": AsyncCase(
        lambda e: e.update_mkt_depth_l2(5, 2, "NSDQ", 0, 0, 185.3, Decimal("200"), True),
        lambda v: [("updateMktDepthL2", (5, 2, "NSDQ", 0, 0, 185.3, 200.0, True))],
    ),
    "error": AsyncCase(
        lambda e: e.error(7, 201, "Order rejected - reason: price", T_MS, '{"code":"201"}'),
        lambda v: [
            (
                "error",
                (7, 201, "Order rejected - reason: price", '{"code":"201"}' if v >= 166 else ""),
            )
        ],
    ),
    "next_valid_id": AsyncCase(lambda e: e.next_valid_id(42), lambda v: [("nextValidId", (42,))]),
    "managed_accounts": AsyncCase(
        lambda e: e.managed_accounts(["DU123", "DU456"]),
        lambda v: [("managedAccounts", ("DU123,DU456",))],
    ),
    "order_status": AsyncCase(
        lambda e: e.order_status(7, "Submitted", 0, Decimal("100"), 0.0, 12345, 0, 0.0, 3, "", 0.0),
        lambda v: [("orderStatus", (7, "Submitted", 0.0, 100.0, 0.0, 12345, 0, 0.0, 3, "", 0.0))],
    ),
    "account_value": AsyncCase(
        lambda e: e.update_account_value("CashBalance", "100000.00", "USD", "DU123"),
        lambda v: [("updateAccountValue", ("CashBalance", "100000.00", "USD", "DU123"))],
    ),
    "account_summary": AsyncCase(
        lambda e: e.account_summary(5, "DU123", "NetLiquidation", "100000.00", "USD"),
        lambda v: [("accountSummary", (5, "DU123", "NetLiquidation", "100000.00", "USD"))],
    ),
    "tick_by_tick_bid_ask": AsyncCase(
        lambda e: e.tick_by_tick_bid_ask(5, T_S, 185.2, 185.3, 100, 300, 2),
        lambda v: [("tickByTickBidAsk", (5, T_S, 185.2, 185.3, 100.0, 300.0))],
    ),
    "tick_req_params": AsyncCase(
        lambda e: e.tick_req_params(5, 0.01, "9c0001", 3),
        lambda v: [("tickReqParams", (5, 0.01, "9c0001", 3))],
    ),
}


@pytest.mark.parametrize("version", ASYNC_VERSIONS)
@pytest.mark.parametrize("name", ASYNC_CASES)
def test_ib_async_decodes_each_message(name: str, version: int):
    case = ASYNC_CASES[name]
    calls = ib_async_decode(case.encode(ResponseEncoder(version)), version)
    if name == "tick_by_tick_bid_ask":  # compare the attribute separately: a dataclass
        [(cb, (*args, attrib))] = calls
        calls = [(cb, tuple(args))]
        assert (attrib.bidPastLow, attrib.askPastHigh) == (False, True)
    assert calls == case.expect(version)


def assert_attrs(obj: object, **want: Any) -> None:
    assert {name: getattr(obj, name) for name in want} == want


@pytest.mark.parametrize("version", ASYNC_VERSIONS)
def test_ib_async_decodes_open_orders(version: int):
    enc = ResponseEncoder(version)
    [(name, (order_id, c, o, s))] = ib_async_decode(
        enc.open_order(8, option(), limit_order(), submitted_state()), version
    )
    assert (name, order_id) == ("openOrder", 8)
    assert_attrs(c, conId=756733412, symbol="AAPL", strike=200.0, right="C", multiplier="100")
    assert_attrs(c, exchange="SMART", localSymbol="AAPL  250620C00200000", tradingClass="AAPL")
    assert_attrs(o, orderId=8, action="BUY", totalQuantity=100.0, orderType="LMT")
    assert_attrs(o, lmtPrice=185.25, auxPrice=UNSET_DOUBLE, tif="GTC", account="DU123")
    assert_attrs(o, orderRef="strat-1", clientId=3, permId=1_234_567_890_123, parentId=6)
    assert_attrs(o, ocaGroup="oca-1", displaySize=10, trailStopPrice=180.5, trailingPercent=1.5)
    assert_attrs(o, goodTillDate="20250630 16:00:00 US/Eastern", outsideRth=True)
    assert (o.algoStrategy, [tuple(tv) for tv in o.algoParams]) == (
        "Adaptive",
        [("adaptivePriority", "Normal")],
    )
    # The last fields ib_async reads: right values here mean nothing before them shifted.
    assert_attrs(o, duration=60, postToAts=1, autoCancelParent=True)
    if version >= 170:
        assert_attrs(o, minTradeQty=3, midOffsetAtWhole=0.01)
    assert_attrs(s, status="Submitted", commission=1.25, minCommission=1.0, maxCommission=2.0)
    assert_attrs(s, commissionCurrency="USD", initMarginAfter="25000.5")
    assert s.warningText == "Order held while securities are located"

    contract, order = exotic()
    [(_, (_, c, o, _))] = ib_async_decode(
        enc.open_order(9, contract, order, submitted_state()), version
    )
    assert_attrs(o, deltaNeutralOrderType="LMT", deltaNeutralDesignatedLocation="loc")
    assert_attrs(o, hedgeParam="0.5", adjustedOrderType="STP", triggerPrice=1.0)
    assert (len(c.comboLegs), len(o.conditions), o.softDollarTier.displayName) == (2, 1, "Tier 7")


@pytest.mark.parametrize("version", ASYNC_VERSIONS)
def test_ib_async_decodes_completed_orders(version: int):
    order = limit_order()
    order.filledQuantity, order.parentPermId = Decimal("100"), 99
    frame = ResponseEncoder(version).completed_order(option(), order, filled_state())
    [(name, (c, o, s))] = ib_async_decode(frame, version)
    assert (name, c.conId) == ("completedOrder", 756733412)
    assert_attrs(o, action="BUY", totalQuantity=100.0, permId=1_234_567_890_123)
    assert_attrs(o, filledQuantity=100.0, parentPermId=99)
    assert_attrs(s, status="Filled", completedTime="20250425 15:23:54", completedStatus="Filled")
    if version >= 170:
        assert o.minTradeQty == 3


@pytest.mark.parametrize("version", ASYNC_VERSIONS)
def test_ib_async_decodes_fills(version: int):
    enc = ResponseEncoder(version)
    [(name, (req_id, c, e))] = ib_async_decode(enc.exec_details(-1, option(), fill()), version)
    assert (name, req_id) == ("execDetails", -1)
    assert_attrs(c, conId=756733412, right="C", multiplier="100", tradingClass="AAPL")
    assert_attrs(e, execId=fill().execId, acctNumber="DU123", side="BOT", shares=100.0)
    assert_attrs(e, price=185.2, permId=1_234_567_890_123, clientId=3, orderId=8)
    assert_attrs(e, cumQty=100.0, avgPrice=185.2, orderRef="strat-1", modelCode="model-a")
    assert_attrs(e, lastLiquidity=2, pendingPriceRevision=version >= 178)
    assert e.time.isoformat() == "2025-04-25T19:23:54+00:00"

    [(name, (report,))] = ib_async_decode(enc.commission_and_fees_report(_commission()), version)
    assert name == "commissionReport"
    assert_attrs(report, execId=_commission().execId, commission=1.0, currency="USD")
    assert report.realizedPNL == UNSET_DOUBLE


@pytest.mark.parametrize("version", ASYNC_VERSIONS)
def test_ib_async_decodes_positions_and_portfolio(version: int):
    enc = ResponseEncoder(version)
    frame = enc.position("DU123", stock(), Decimal("-100"), 185.2)
    [(name, (account, c, qty, cost))] = ib_async_decode(frame, version)
    assert (name, account, qty, cost) == ("position", "DU123", -100.0, 185.2)
    assert_attrs(c, conId=265598, symbol="AAPL", exchange="SMART", strike=0.0)

    frame = enc.update_portfolio(
        stock(), Decimal(-100), 186.0, -18600.0, 185.2, -80.0, 12.5, "DU123"
    )
    [(name, (c, *values))] = ib_async_decode(frame, version)
    assert (name, values) == (
        "updatePortfolio",
        [-100.0, 186.0, -18600.0, 185.2, -80.0, 12.5, "DU123"],
    )
    assert_attrs(c, conId=265598, primaryExchange="NASDAQ", tradingClass="NMS")


@pytest.mark.parametrize("version", ASYNC_VERSIONS)
def test_ib_async_decodes_contract_details(version: int):
    frame = ResponseEncoder(version).contract_data(5, details("OPT"))
    [(name, (req_id, cd))] = ib_async_decode(frame, version)
    assert (name, req_id) == ("contractDetails", 5)
    assert_attrs(cd.contract, conId=756733412, lastTradeDateOrContractMonth="20250620")
    assert_attrs(cd.contract, strike=200.0, multiplier="100", primaryExchange="")
    assert_attrs(cd, marketName="NMS", minTick=0.01, lastTradeTime="16:00", stockType="COMMON")
    assert_attrs(cd, longName="Société Générale “Apple”", timeZoneId="US/Eastern")
    assert [tuple(tv) for tv in cd.secIdList] == [("ISIN", "US0378331005")]
    if version >= 164:
        assert_attrs(cd, minSize=0.0001, sizeIncrement=0.0001, suggestedSizeIncrement=100.0)
