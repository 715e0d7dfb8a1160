"""parse_request against the real encoders: ibapi's EClient at each layout, ib_async at 176/178.

Every request is encoded by the client library itself (its connection swapped for a stand-in
that keeps the bytes), the length prefix is removed with ``ibapi.comm.read_msg``, and the
parsed request must hold exactly what the client was asked to send.
"""

from __future__ import annotations

import copy
import math
import string
from collections.abc import Callable
from dataclasses import fields, is_dataclass
from decimal import Decimal
from typing import Any, get_args

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from ib_async import contract as ia_contract
from ib_async import objects as ia_objects
from ib_async import order as ia_order
from ib_async.client import Client as IbAsyncClient
from ibapi import comm
from ibapi.client import EClient
from ibapi.common import PROTOBUF_MSG_IDS
from ibapi.const import UNSET_DOUBLE, UNSET_INTEGER
from ibapi.contract import ComboLeg, Contract, DeltaNeutralContract
from ibapi.execution import ExecutionFilter
from ibapi.message import OUT
from ibapi.order import Order, OrderComboLeg
from ibapi.order_cancel import OrderCancel
from ibapi.order_condition import (
    ExecutionCondition,
    MarginCondition,
    OrderCondition,
    PercentChangeCondition,
    PriceCondition,
    TimeCondition,
    VolumeCondition,
)
from ibapi.protobuf.PlaceOrderRequest_pb2 import PlaceOrderRequest as PlaceOrderRequestProto
from ibapi.server_versions import (
    MAX_CLIENT_VER,
    MIN_CLIENT_VER,
    MIN_SERVER_VER_PROTOBUF,
    MIN_SERVER_VER_PROTOBUF_PLACE_ORDER,
)
from ibapi.softdollartier import SoftDollarTier
from ibapi.tag_value import TagValue
from ibapi.wrapper import EWrapper

from adapters.ib.gateway_sim.requests import (
    CancelAccountSummary,
    CancelAccountUpdatesMulti,
    CancelHistoricalData,
    CancelMktData,
    CancelMktDepth,
    CancelOrder,
    CancelPositions,
    CancelTickByTickData,
    MalformedRequest,
    PlaceOrder,
    ReqAccountSummary,
    ReqAccountUpdates,
    ReqAccountUpdatesMulti,
    ReqAllOpenOrders,
    ReqAutoOpenOrders,
    ReqCompletedOrders,
    ReqContractDetails,
    ReqCurrentTime,
    ReqCurrentTimeMillis,
    ReqExecutions,
    ReqGlobalCancel,
    ReqHistoricalData,
    ReqIds,
    ReqManagedAccts,
    ReqMarketDataType,
    ReqMarketRule,
    ReqMktData,
    ReqMktDepth,
    ReqOpenOrders,
    ReqPositions,
    ReqTickByTickData,
    Request,
    StartApi,
    Unsupported,
    parse_request,
)
from tests.ib_sim_support import SentFrames

VERSIONS = (176, 178, 200, 201, 203, 206, 213, 225)
CLIENT_ID = 7
CAPABILITIES = "cap-a"


# --- Capturing the real encoders ---------------------------------------------------------------


class _RefuseLoudly(EWrapper):
    """EClient reports an encoder refusal (field unsupported at a version) through error()."""

    def error(self, reqId, errorTime, errorCode, errorString, advancedOrderRejectJson=""):
        raise AssertionError(f"ibapi refused to encode: {errorCode} {errorString}")


def _payload(frame: bytes) -> bytes:
    size, payload, rest = comm.read_msg(frame)
    assert rest == b"" and size == len(payload)
    return payload


def ibapi_payload(version: int, call: Callable[[EClient], object]) -> bytes:
    client = EClient(_RefuseLoudly())
    wire = SentFrames()
    client.conn = wire
    client.serverVersion_ = version
    client.setConnState(EClient.CONNECTED)
    client.clientId = CLIENT_ID
    client.optCapab = CAPABILITIES
    call(client)
    [frame] = wire.sent
    return _payload(frame)


def ib_async_payloads(version: int, call: Callable[[IbAsyncClient], object]) -> list[bytes]:
    client = IbAsyncClient(wrapper=None)
    wire = SentFrames()
    client.conn = wire
    client._serverVersion = version
    client.connState = IbAsyncClient.CONNECTED
    client.MaxRequests = 0  # no throttling: nothing may wait on the event loop
    client.clientId = CLIENT_ID
    call(client)
    return [_payload(frame) for frame in wire.sent]


def wire_id(version: int, payload: bytes) -> int:
    if version >= MIN_SERVER_VER_PROTOBUF:
        return int.from_bytes(payload[:4], "big")
    return int(payload.split(b"\0", 1)[0])


# --- Comparing what was sent with what was parsed -----------------------------------------------

_LIST_ATTRS = {
    "algoParams",
    "smartComboRoutingParams",
    "orderMiscOptions",
    "orderComboLegs",
    "conditions",
    "comboLegs",
    "specificDates",
    "market_data_options",
    "market_depth_options",
    "chart_options",
}


def state(obj: Any, ordered_tags: bool = True) -> Any:
    """Every attribute of obj, recursively, as plain comparable data.

    None and [] are the same for list attributes: ibapi cannot tell them apart on the wire.
    Booleans differ from 0 and 1.
    With ``ordered_tags=False`` TagValue lists compare as sets (protobuf maps keep no order).
    """
    if isinstance(obj, bool):  # True == 1 in Python; a flag parsed as an int is a bug
        return ("bool", obj)
    if isinstance(obj, TagValue):
        return ("TagValue", obj.tag, obj.value)
    if isinstance(obj, list):
        items = [state(item, ordered_tags) for item in obj]
        if not ordered_tags and all(isinstance(item, TagValue) for item in obj):
            items.sort()
        return items
    if is_dataclass(obj):
        attrs = {f.name: getattr(obj, f.name) for f in fields(obj)}
    elif hasattr(obj, "__dict__"):
        attrs = vars(obj)
    else:
        return obj
    return (
        type(obj).__name__,
        {
            name: state([] if value is None and name in _LIST_ATTRS else value, ordered_tags)
            for name, value in attrs.items()
        },
    )


def assert_same(parsed: Any, expected: Any, version: int) -> None:
    ordered = version < MIN_SERVER_VER_PROTOBUF_PLACE_ORDER
    assert state(parsed, ordered) == state(expected, ordered)


# --- Contracts ---------------------------------------------------------------------------------


def make_contract(**attrs: Any) -> Contract:
    contract = Contract()
    for name, value in attrs.items():
        setattr(contract, name, value)
    return contract


def stock() -> Contract:
    return make_contract(
        conId=265598,
        symbol="AAPL",
        secType="STK",
        exchange="SMART",
        primaryExchange="NASDAQ",
        currency="USD",
        localSymbol="AAPL",
        tradingClass="NMS",
    )


def future() -> Contract:
    return make_contract(
        conId=495512563,
        symbol="ES",
        secType="FUT",
        lastTradeDateOrContractMonth="20251219",
        multiplier="50",
        exchange="CME",
        currency="USD",
        localSymbol="ESZ5",
        tradingClass="ES",
    )


def option() -> Contract:
    return make_contract(
        conId=756733123,
        symbol="SPY",
        secType="OPT",
        lastTradeDateOrContractMonth="20251219",
        strike=600.0,
        right="C",
        multiplier="100",
        exchange="SMART",
        primaryExchange="CBOE",
        currency="USD",
        localSymbol="SPY   251219C00600000",
        tradingClass="SPY",
    )


def cash() -> Contract:
    return make_contract(
        conId=12087792,
        symbol="EUR",
        secType="CASH",
        exchange="IDEALPRO",
        currency="USD",
        localSymbol="EUR.USD",
        tradingClass="EUR.USD",
    )


def crypto() -> Contract:
    return make_contract(
        conId=479624278,
        symbol="BTC",
        secType="CRYPTO",
        exchange="PAXOS",
        currency="USD",
        localSymbol="BTC.USD",
        tradingClass="BTC",
    )


def combo(exchange: str = "SMART") -> Contract:
    leg_1 = ComboLeg()
    leg_1.conId, leg_1.ratio, leg_1.action, leg_1.exchange = 111, 1, "BUY", "SMART"
    leg_2 = ComboLeg()
    leg_2.conId, leg_2.ratio, leg_2.action, leg_2.exchange = 222, 2, "SELL", "CBOE"
    hedge = DeltaNeutralContract()
    hedge.conId, hedge.delta, hedge.price = 756733, 0.5, 450.25
    return make_contract(
        symbol="SPY",
        secType="BAG",
        exchange=exchange,
        currency="USD",
        comboLegs=[leg_1, leg_2],
        deltaNeutralContract=hedge,
    )


CONTRACTS = {"STK": stock, "FUT": future, "OPT": option, "CASH": cash, "CRYPTO": crypto}


# --- Every request but placeOrder, at every version --------------------------------------------

ALL_VERSIONS = range(MIN_CLIENT_VER, MAX_CLIENT_VER + 1)


def _exec_filter(version: int) -> ExecutionFilter:
    exec_filter = ExecutionFilter()
    exec_filter.clientId, exec_filter.acctCode, exec_filter.time = 3, "DU123", "20250101-09:30:00"
    exec_filter.symbol, exec_filter.secType, exec_filter.exchange = "AAPL", "STK", "SMART"
    exec_filter.side = "BUY"
    if version >= 200:  # MIN_SERVER_VER_PARAMETRIZED_DAYS_OF_EXECUTIONS
        exec_filter.lastNDays, exec_filter.specificDates = 3, [20250101, 20250102]
    return exec_filter


def _order_cancel(version: int) -> OrderCancel:
    cancel = OrderCancel()
    if version >= 169:  # MIN_SERVER_VER_MANUAL_ORDER_TIME
        cancel.manualOrderCancelTime = "20250101-09:30:00"
    if version >= 192:  # MIN_SERVER_VER_CME_TAGGING_FIELDS
        cancel.extOperator, cancel.manualOrderIndicator = "ops-desk", 1
    return cancel


def _details_contract(version: int = MAX_CLIENT_VER) -> Contract:
    contract = stock()
    contract.includeExpired, contract.secIdType, contract.secId = True, "ISIN", "US0378331005"
    if version >= 176:  # MIN_SERVER_VER_BOND_ISSUERID
        contract.issuerId = "e1234"
    return contract


def request_cases(v: int) -> dict[str, tuple[str, tuple[Any, ...], Any]]:
    """name -> (EClient method, its arguments, the request it must parse to) at version v.

    Arguments ibapi refuses at v are left out; ones it silently does not send are expected as
    their defaults.
    """
    regulatory = v >= 114  # MIN_SERVER_VER_REQ_SMART_COMPONENTS
    smart_depth = v >= 146  # MIN_SERVER_VER_SMART_DEPTH
    keep_up = v >= 124  # MIN_SERVER_VER_SYNT_REALTIME_BARS
    mkt_options = [TagValue("k", "v")] if v >= 206 else []  # text: NotImplementedError
    depth = stock()
    depth.primaryExchange = depth.primaryExchange if v >= 149 else ""  # PRIM_EXCHANGE gate
    bars = future()
    bars.includeExpired = True
    chart = [TagValue("chartOption", "1")]
    bar_args = ("20250101 16:00:00 US/Eastern", "2 D", "5 mins", "MIDPOINT")
    cancel = _order_cancel(v)
    cancel_fields = (cancel.extOperator, cancel.manualOrderIndicator)
    cases = {
        "startApi": ("startApi", (), StartApi(CLIENT_ID, CAPABILITIES)),
        "reqCurrentTime": ("reqCurrentTime", (), ReqCurrentTime()),
        "reqIds": ("reqIds", (5,), ReqIds(5)),
        "reqContractDetails": (
            "reqContractDetails",
            (7, _details_contract(v)),
            ReqContractDetails(7, _details_contract(v)),
        ),
        "reqMktData": (
            "reqMktData",
            (8, option(), "233,236", False, regulatory, mkt_options),
            ReqMktData(8, option(), "233,236", False, regulatory, mkt_options),
        ),
        "reqMktData snapshot combo": (
            "reqMktData",
            (9, combo(), "", True, False, []),
            ReqMktData(9, combo(), "", True),
        ),
        "cancelMktData": ("cancelMktData", (8,), CancelMktData(8)),
        "reqMarketDataType": ("reqMarketDataType", (3,), ReqMarketDataType(3)),
        "reqMktDepth": (
            "reqMktDepth",
            (10, depth, 5, smart_depth, mkt_options),
            ReqMktDepth(10, depth, 5, smart_depth, mkt_options),
        ),
        "cancelMktDepth": ("cancelMktDepth", (10, smart_depth), CancelMktDepth(10, smart_depth)),
        "reqHistoricalData": (
            "reqHistoricalData",
            (11, bars, *bar_args, 1, 2, keep_up, chart),
            ReqHistoricalData(11, bars, *bar_args, True, 2, keep_up, chart),
        ),
        "reqHistoricalData all hours": (
            "reqHistoricalData",
            (11, bars, *bar_args, 0, 1, False, []),
            ReqHistoricalData(11, bars, *bar_args, False, 1, False),
        ),
        "cancelHistoricalData": ("cancelHistoricalData", (11,), CancelHistoricalData(11)),
        "cancelOrder": (
            "cancelOrder",
            (12, cancel),
            CancelOrder(12, cancel.manualOrderCancelTime, *cancel_fields),
        ),
        "reqGlobalCancel": ("reqGlobalCancel", (cancel,), ReqGlobalCancel(*cancel_fields)),
        "reqOpenOrders": ("reqOpenOrders", (), ReqOpenOrders()),
        "reqAllOpenOrders": ("reqAllOpenOrders", (), ReqAllOpenOrders()),
        "reqAutoOpenOrders": ("reqAutoOpenOrders", (True,), ReqAutoOpenOrders(True)),
        "reqCompletedOrders": ("reqCompletedOrders", (True,), ReqCompletedOrders(True)),
        "reqCompletedOrders all": ("reqCompletedOrders", (False,), ReqCompletedOrders(False)),
        "reqPositions": ("reqPositions", (), ReqPositions()),
        "cancelPositions": ("cancelPositions", (), CancelPositions()),
        "reqAccountSummary": (
            "reqAccountSummary",
            (13, "All", "NetLiquidation,BuyingPower"),
            ReqAccountSummary(13, "All", "NetLiquidation,BuyingPower"),
        ),
        "cancelAccountSummary": ("cancelAccountSummary", (13,), CancelAccountSummary(13)),
        "reqAccountUpdates": (
            "reqAccountUpdates",
            (True, "DU123"),
            ReqAccountUpdates(True, "DU123"),
        ),
        "reqAccountUpdates stop": ("reqAccountUpdates", (False, ""), ReqAccountUpdates(False, "")),
        "reqExecutions": (
            "reqExecutions",
            (15, _exec_filter(v)),
            ReqExecutions(15, _exec_filter(v)),
        ),
        "reqManagedAccts": ("reqManagedAccts", (), ReqManagedAccts()),
    }
    if v >= 103:  # MIN_SERVER_VER_MODELS_SUPPORT
        cases["reqAccountUpdatesMulti"] = (
            "reqAccountUpdatesMulti",
            (14, "DU123", "model-a", True),
            ReqAccountUpdatesMulti(14, "DU123", "model-a", True),
        )
        cases["cancelAccountUpdatesMulti"] = (
            "cancelAccountUpdatesMulti",
            (14,),
            CancelAccountUpdatesMulti(14),
        )
    if v >= 140:  # MIN_SERVER_VER_TICK_BY_TICK_IGNORE_SIZE; ibapi refuses anything older
        cases["reqTickByTickData BidAsk"] = (
            "reqTickByTickData",
            (16, cash(), "BidAsk", 0, True),
            ReqTickByTickData(16, cash(), "BidAsk", 0, True),
        )
        cases["reqTickByTickData AllLast"] = (
            "reqTickByTickData",
            (17, crypto(), "AllLast", 25, False),
            ReqTickByTickData(17, crypto(), "AllLast", 25, False),
        )
        cases["cancelTickByTickData"] = ("cancelTickByTickData", (16,), CancelTickByTickData(16))
    if v >= 126:  # MIN_SERVER_VER_MARKET_RULES
        cases["reqMarketRule"] = ("reqMarketRule", (32,), ReqMarketRule(32))
    if v >= 197:  # MIN_SERVER_VER_CURRENT_TIME_IN_MILLIS
        cases["reqCurrentTimeInMillis"] = ("reqCurrentTimeInMillis", (), ReqCurrentTimeMillis())
    return cases


OUT_IDS = {
    "startApi": OUT.START_API,
    "reqCurrentTime": OUT.REQ_CURRENT_TIME,
    "reqCurrentTimeInMillis": OUT.REQ_CURRENT_TIME_IN_MILLIS,
    "reqIds": OUT.REQ_IDS,
    "reqMarketRule": OUT.REQ_MARKET_RULE,
    "reqContractDetails": OUT.REQ_CONTRACT_DATA,
    "reqMktData": OUT.REQ_MKT_DATA,
    "cancelMktData": OUT.CANCEL_MKT_DATA,
    "reqMarketDataType": OUT.REQ_MARKET_DATA_TYPE,
    "reqMktDepth": OUT.REQ_MKT_DEPTH,
    "cancelMktDepth": OUT.CANCEL_MKT_DEPTH,
    "reqTickByTickData": OUT.REQ_TICK_BY_TICK_DATA,
    "cancelTickByTickData": OUT.CANCEL_TICK_BY_TICK_DATA,
    "reqHistoricalData": OUT.REQ_HISTORICAL_DATA,
    "cancelHistoricalData": OUT.CANCEL_HISTORICAL_DATA,
    "cancelOrder": OUT.CANCEL_ORDER,
    "reqGlobalCancel": OUT.REQ_GLOBAL_CANCEL,
    "reqOpenOrders": OUT.REQ_OPEN_ORDERS,
    "reqAllOpenOrders": OUT.REQ_ALL_OPEN_ORDERS,
    "reqAutoOpenOrders": OUT.REQ_AUTO_OPEN_ORDERS,
    "reqCompletedOrders": OUT.REQ_COMPLETED_ORDERS,
    "reqPositions": OUT.REQ_POSITIONS,
    "cancelPositions": OUT.CANCEL_POSITIONS,
    "reqAccountSummary": OUT.REQ_ACCOUNT_SUMMARY,
    "cancelAccountSummary": OUT.CANCEL_ACCOUNT_SUMMARY,
    "reqAccountUpdates": OUT.REQ_ACCT_DATA,
    "reqAccountUpdatesMulti": OUT.REQ_ACCOUNT_UPDATES_MULTI,
    "cancelAccountUpdatesMulti": OUT.CANCEL_ACCOUNT_UPDATES_MULTI,
    "reqExecutions": OUT.REQ_EXECUTIONS,
    "reqManagedAccts": OUT.REQ_MANAGED_ACCTS,
}


@pytest.mark.parametrize("version", ALL_VERSIONS)
def test_requests_round_trip_through_ibapi(version: int) -> None:
    mismatches = {}
    for name, (method, args, expected) in request_cases(version).items():
        payload = ibapi_payload(version, lambda c: getattr(c, method)(*args))  # noqa: B023

        parsed = parse_request(version, payload)

        if state(parsed, ordered_tags=False) != state(expected, ordered_tags=False):
            mismatches[name] = (state(parsed), state(expected))
        protobuf = PROTOBUF_MSG_IDS[OUT_IDS[method]] <= version
        assert wire_id(version, payload) == OUT_IDS[method] + (200 if protobuf else 0), name
    assert mismatches == {}


def test_request_cases_cover_every_request_type() -> None:
    parsed_types = {type(case[2]) for case in request_cases(MAX_CLIENT_VER).values()}
    assert parsed_types | {PlaceOrder, Unsupported} == set(get_args(Request))


@pytest.mark.parametrize("name", sorted(CONTRACTS))
@pytest.mark.parametrize("version", VERSIONS)
def test_contract_kinds_round_trip_in_contract_details(name: str, version: int) -> None:
    payload = ibapi_payload(version, lambda c: c.reqContractDetails(3, CONTRACTS[name]()))

    assert_same(parse_request(version, payload), ReqContractDetails(3, CONTRACTS[name]()), version)


# --- placeOrder --------------------------------------------------------------------------------


def conditions() -> list[OrderCondition]:
    return [
        PriceCondition(PriceCondition.TriggerMethodEnum.Last, 265598, "SMART", True, 150.5),
        TimeCondition(False, "20250101 10:00:00 US/Eastern").Or(),
        MarginCondition(True, 30),
        ExecutionCondition("STK", "SMART", "AAPL").Or(),
        VolumeCondition(265598, "SMART", False, 100000),
        PercentChangeCondition(265598, "SMART", True, 2.5),
    ]


def _leg_price(price: float) -> OrderComboLeg:
    leg = OrderComboLeg()
    leg.price = price
    return leg


NEVER = 10**9

# attribute: (value, first text server version, first protobuf server version); NEVER = that
# encoder never sends it. Text versions come from EClient.placeOrder's gates, protobuf ones from
# EClient.validateOrderParameters / validateAttachedOrdersParameters.
ORDER_FIELDS: dict[str, tuple[Any, int, int]] = {
    "action": ("SELL", 0, 0),
    "totalQuantity": (Decimal("12.5"), 0, 0),
    "lmtPrice": (101.25, 0, 0),
    "auxPrice": (99.5, 0, 0),
    "tif": ("GTD", 0, 0),
    "ocaGroup": ("oca-1", 0, 0),
    "account": ("DU123456", 0, 0),
    "openClose": ("C", 0, 0),
    "origin": (1, 0, 0),
    "orderRef": ("ref-42", 0, 0),
    "parentId": (41, 0, 0),
    "blockOrder": (True, 0, 0),
    "sweepToFill": (True, 0, 0),
    "displaySize": (300, 0, 0),
    "triggerMethod": (2, 0, 0),
    "outsideRth": (True, 0, 0),
    "hidden": (True, 0, 0),
    "orderComboLegs": ([_leg_price(1.25), _leg_price(2.5)], 0, 0),
    "smartComboRoutingParams": ([TagValue("NonGuaranteed", "1"), TagValue("LeginPrio", "0")], 0, 0),
    "discretionaryAmt": (0.25, 0, 0),
    "goodAfterTime": ("20250101 09:30:00 US/Eastern", 0, 0),
    "goodTillDate": ("20251231 16:00:00 US/Eastern", 0, 0),
    "faGroup": ("grp", 0, 0),
    "faMethod": ("EqualQuantity", 0, 0),
    "faPercentage": ("50", 0, 0),
    "modelCode": ("model-a", 0, 0),
    "shortSaleSlot": (2, 0, 0),
    "designatedLocation": ("LOC", 0, 0),
    "exemptCode": (3, 0, 0),
    "ocaType": (2, 0, 0),
    "rule80A": ("A", 0, 0),
    "settlingFirm": ("FIRM", 0, 0),
    "allOrNone": (True, 0, 0),
    "minQty": (7, 0, 0),
    "percentOffset": (0.015, 0, 0),
    "auctionStrategy": (2, 0, NEVER),  # not a field of Order.proto
    "startingPrice": (10.5, 0, 0),
    "stockRefPrice": (20.5, 0, 0),
    "delta": (0.45, 0, 0),
    "stockRangeLower": (90.0, 0, 0),
    "stockRangeUpper": (110.0, 0, 0),
    "overridePercentageConstraints": (True, 0, 0),
    "volatility": (0.3, 0, 0),
    "volatilityType": (2, 0, 0),
    "deltaNeutralOrderType": ("LMT", 0, 0),
    "deltaNeutralAuxPrice": (1.5, 0, 0),
    "deltaNeutralConId": (123, 0, 0),
    "deltaNeutralSettlingFirm": ("DNFIRM", 0, 0),
    "deltaNeutralClearingAccount": ("DNACCT", 0, 0),
    "deltaNeutralClearingIntent": ("IB", 0, 0),
    "deltaNeutralOpenClose": ("O", 0, 0),
    "deltaNeutralShortSale": (True, 0, 0),
    "deltaNeutralShortSaleSlot": (1, 0, 0),
    "deltaNeutralDesignatedLocation": ("DNLOC", 0, 0),
    "continuousUpdate": (True, 0, 0),
    "referencePriceType": (1, 0, 0),
    "trailStopPrice": (98.75, 0, 0),
    "trailingPercent": (1.5, 0, 0),
    "scaleInitLevelSize": (100, 0, 0),
    "scaleSubsLevelSize": (50, 0, 0),
    "scalePriceIncrement": (0.05, 0, 0),
    "scalePriceAdjustValue": (0.01, 0, 0),
    "scalePriceAdjustInterval": (60, 0, 0),
    "scaleProfitOffset": (0.2, 0, 0),
    "scaleAutoReset": (True, 0, 0),
    "scaleInitPosition": (10, 0, 0),
    "scaleInitFillQty": (5, 0, 0),
    "scaleRandomPercent": (True, 0, 0),
    "scaleTable": ("1:100/2:50", 0, 0),
    "activeStartTime": ("20250101 09:30:00", 0, 0),
    "activeStopTime": ("20250101 16:00:00", 0, 0),
    "hedgeType": ("D", 0, 0),
    "hedgeParam": ("beta=1", 0, 0),
    "optOutSmartRouting": (True, 0, 0),
    "clearingAccount": ("CLR", 0, 0),
    "clearingIntent": ("Away", 0, 0),
    "notHeld": (True, 0, 0),
    "algoStrategy": ("Adaptive", 0, 0),
    "algoParams": ([TagValue("adaptivePriority", "Urgent"), TagValue("b", "2")], 0, 0),
    "algoId": ("algo-7", 0, 0),
    "whatIf": (True, 0, 0),
    "orderMiscOptions": ([TagValue("m1", "v1"), TagValue("m2", "v=2")], 0, 0),
    "solicited": (True, 0, 0),
    "randomizeSize": (True, 0, 0),
    "randomizePrice": (True, 0, 0),
    "conditions": (conditions(), 102, 0),
    "conditionsIgnoreRth": (True, 102, 0),
    "conditionsCancelOrder": (True, 102, 0),
    "adjustedOrderType": ("STP LMT", 102, 0),
    "triggerPrice": (97.0, 102, 0),
    "lmtPriceOffset": (0.5, 102, 0),
    "adjustedStopPrice": (96.0, 102, 0),
    "adjustedStopLimitPrice": (95.5, 102, 0),
    "adjustedTrailingAmount": (0.75, 102, 0),
    "adjustableTrailingUnit": (1, 102, 0),
    "extOperator": ("ext", 105, 0),
    "cashQty": (1000.0, 111, 0),
    "mifid2DecisionMaker": ("dm", 138, 0),
    "mifid2DecisionAlgo": ("da", 138, 0),
    "mifid2ExecutionTrader": ("et", 139, 0),
    "mifid2ExecutionAlgo": ("ea", 139, 0),
    "dontUseAutoPriceForHedge": (True, 141, 0),
    "isOmsContainer": (True, 145, 0),
    "discretionaryUpToLimitPrice": (True, 148, 0),
    "usePriceMgmtAlgo": (True, 151, 0),
    "duration": (3600, 158, 0),
    "postToAts": (1, 160, 0),
    "autoCancelParent": (True, 162, 0),
    "advancedErrorOverride": ("8229", 166, 0),
    "manualOrderTime": ("20250101-09:30:00", 169, 0),
    "customerAccount": ("cust", 183, 0),
    "professionalCustomer": (True, 184, 0),
    "includeOvernight": (True, 189, 0),
    "manualOrderIndicator": (1, 192, 0),
    "imbalanceOnly": (True, 199, 0),
    "clientId": (5, NEVER, 0),
    "permId": (987654321, NEVER, 0),
    "bondAccruedInterest": ("1.25", NEVER, 0),
    "submitter": ("trader-1", NEVER, 0),
    "postOnly": (True, NEVER, 216),
    "allowPreOpen": (True, NEVER, 216),
    "ignoreOpenAuction": (True, NEVER, 216),
    "deactivate": (True, NEVER, 216),
    "seekPriceImprovement": (True, NEVER, 217),
    "whatIfType": (1, NEVER, 217),
    "routeMarketableToBbo": (True, NEVER, 217),
    "slOrderId": (43, NEVER, 218),
    "slOrderType": ("STP", NEVER, 218),
    "ptOrderId": (44, NEVER, 218),
    "ptOrderType": ("LMT", NEVER, 218),
    "hedgeMaxSize": (500, NEVER, 223),
}

# Order type -> (fields only that type sends, since text version, contract exchange, transmit)
PEG_VARIANTS: dict[str, tuple[dict[str, Any], int, str, bool]] = {
    "PEG BEST": (
        {
            "minTradeQty": 25,  # sent for IBKRATS only
            "minCompeteSize": 100,
            "competeAgainstBestOffset": math.inf,  # COMPETE_AGAINST_BEST_OFFSET_UP_TO_MID
            "midOffsetAtWhole": 0.01,
            "midOffsetAtHalf": 0.005,
        },
        170,
        "IBKRATS",
        True,
    ),
    "PEG BENCH": (
        {
            "referenceContractId": 12345,
            "isPeggedChangeAmountDecrease": True,
            "peggedChangeAmount": 0.5,
            "referenceChangeAmount": 0.25,
            "referenceExchangeId": "NYSE",
        },
        102,
        "SMART",
        False,
    ),
    "PEG MID": ({"midOffsetAtWhole": 0.02, "midOffsetAtHalf": 0.01}, 170, "SMART", True),
}

# ibapi cannot place any order below MIN_SERVER_VER_CASH_QTY (111): placeOrder refuses when
# order.cashQty is truthy, and its default UNSET_DOUBLE is.
KITCHEN_SINK_VERSIONS = range(111, MAX_CLIENT_VER + 1)


def kitchen_sink(version: int, order_type: str) -> tuple[Contract, Order]:
    """A BAG order with every field the encoder sends at ``version`` set to a non-default."""
    protobuf = version >= MIN_SERVER_VER_PROTOBUF_PLACE_ORDER
    peg_fields, peg_since, exchange, transmit = PEG_VARIANTS[order_type]
    contract = combo(exchange)
    contract.conId, contract.lastTradeDateOrContractMonth = 28812380, "20251219"
    contract.strike, contract.right, contract.multiplier = 4500.5, "C", "100"
    contract.primaryExchange, contract.localSymbol, contract.tradingClass = "ARCA", "SPY-X", "SPY"
    contract.secIdType, contract.secId = "ISIN", "US78462F1030"
    for leg, extra in zip(contract.comboLegs, ((1, 2, "X", 5), (2, 1, "Y", 6)), strict=True):
        leg.openClose, leg.shortSaleSlot, leg.designatedLocation, leg.exemptCode = extra
    if protobuf:  # createContractProto sends these; placeOrder's text layout does not
        contract.includeExpired, contract.comboLegsDescrip = True, "111|1,222|2"
        contract.description, contract.issuerId = "combo", "ISS1"
    order = Order()
    order.orderType, order.transmit = order_type, transmit
    for name, (value, text_since, proto_since) in ORDER_FIELDS.items():
        if version >= (proto_since if protobuf else text_since):
            setattr(order, name, copy.deepcopy(value))
    if version >= 106:  # MIN_SERVER_VER_SOFT_DOLLAR_TIER; displayName only travels in protobuf
        order.softDollarTier = SoftDollarTier("tier", "v1", "Tier One" if protobuf else "")
    if protobuf or version >= peg_since:
        for name, value in peg_fields.items():
            setattr(order, name, value)
    return contract, order


@pytest.mark.parametrize("order_type", sorted(PEG_VARIANTS))
@pytest.mark.parametrize("version", KITCHEN_SINK_VERSIONS)
def test_every_order_field_round_trips(version: int, order_type: str) -> None:
    contract, order = kitchen_sink(version, order_type)
    order.orderId = 42  # the parser copies the request's order id into the Order
    payload = ibapi_payload(version, lambda c: c.placeOrder(42, contract, order))

    parsed = parse_request(version, payload)

    assert isinstance(parsed, PlaceOrder)
    assert parsed.order_id == 42
    assert_same(parsed.contract, contract, version)
    assert_same(parsed.order, order, version)


def test_protobuf_drops_auction_strategy() -> None:
    # Order.proto has no auctionStrategy; client_utils.createOrderProto cannot send it.
    order = Order()
    order.action, order.totalQuantity, order.orderType = "BUY", Decimal(1), "MKT"
    order.auctionStrategy = 2
    text = parse_request(201, ibapi_payload(201, lambda c: c.placeOrder(1, stock(), order)))
    proto = parse_request(203, ibapi_payload(203, lambda c: c.placeOrder(1, stock(), order)))

    assert text.order.auctionStrategy == 2
    assert proto.order.auctionStrategy == Order().auctionStrategy


ORDER_TYPES = ("MKT", "LMT", "STP", "STP LMT", "MOC", "LOC", "TRAIL", "TRAIL LIMIT", "REL")
ORDER_TYPES += ("MIDPRICE",)
ASCII = string.ascii_letters + string.digits + " -_.:/"
prices = st.decimals(min_value=Decimal("0.01"), max_value=Decimal(100000), places=2).map(float)
words = st.text(ASCII, max_size=12)


@st.composite
def orders(draw: st.DrawFn) -> Order:
    order = Order()
    order.action = draw(st.sampled_from(("BUY", "SELL")))
    order.totalQuantity = draw(
        st.one_of(
            st.integers(1, 10**6).map(Decimal),
            st.decimals(Decimal("0.0001"), Decimal(1000), places=4),
        )
    )
    order.orderType = draw(st.sampled_from(ORDER_TYPES))
    if order.orderType in ("LMT", "STP LMT", "LOC", "MIDPRICE", "REL"):
        order.lmtPrice = draw(prices)
    if order.orderType in ("STP", "STP LMT", "REL"):
        order.auxPrice = draw(prices)
    if order.orderType in ("TRAIL", "TRAIL LIMIT"):
        order.trailStopPrice = draw(prices)
        if draw(st.booleans()):
            order.trailingPercent = draw(st.floats(0.01, 50).map(lambda x: round(x, 3)))
        else:
            order.auxPrice = draw(prices)
    if order.orderType == "TRAIL LIMIT":
        order.lmtPriceOffset = draw(prices)
    if order.orderType == "REL":
        order.percentOffset = draw(st.floats(0.0001, 0.1).map(lambda x: round(x, 4)))
    order.tif = draw(st.sampled_from(("DAY", "GTC", "IOC", "FOK", "GTD", "OPG")))
    if order.tif == "GTD":
        order.goodTillDate = draw(st.sampled_from(("20251231 16:00:00 US/Eastern", "20260102")))
    order.algoStrategy = draw(st.sampled_from(("", "Vwap", "Twap", "Adaptive")))
    if order.algoStrategy:
        params = draw(st.dictionaries(st.text(string.ascii_letters, min_size=1), words, max_size=4))
        order.algoParams = [TagValue(tag, value) for tag, value in params.items()]
    order.displaySize = draw(st.integers(0, 10_000))
    order.orderRef, order.ocaGroup = draw(words), draw(words)
    order.parentId = draw(st.integers(0, 2**31 - 2))
    order.transmit, order.outsideRth = draw(st.booleans()), draw(st.booleans())
    if draw(st.booleans()):
        order.cashQty = draw(prices)
    return order


@st.composite
def contracts(draw: st.DrawFn) -> Contract:
    contract = draw(st.sampled_from(list(CONTRACTS.values())))()
    contract.conId = draw(st.integers(0, 2**31 - 2))
    contract.exchange = draw(st.sampled_from(("SMART", "NYSE", "CME", "IDEALPRO", "PAXOS")))
    contract.primaryExchange, contract.localSymbol = draw(words), draw(words)
    contract.tradingClass, contract.currency = draw(words), draw(st.sampled_from(("USD", "EUR")))
    if contract.secType in ("FUT", "OPT"):
        contract.lastTradeDateOrContractMonth = draw(st.sampled_from(("202512", "20251219")))
        contract.multiplier = draw(st.sampled_from(("", "5", "50", "100", "0.1", "12.5")))
    if contract.secType == "OPT":
        contract.strike, contract.right = draw(prices), draw(st.sampled_from(("C", "P")))
    return contract


@settings(max_examples=400, deadline=None)
@given(version=st.sampled_from(VERSIONS), contract=contracts(), order=orders())
def test_generated_orders_round_trip(version: int, contract: Contract, order: Order) -> None:
    order.orderId = 9001
    payload = ibapi_payload(version, lambda c: c.placeOrder(9001, contract, order))

    parsed = parse_request(version, payload)

    assert_same(parsed.contract, contract, version)
    assert_same(parsed.order, order, version)


# --- ib_async (its own encoders, server versions <= 178) ---------------------------------------

IB_ASYNC_VERSIONS = (176, 178)

# Order attributes ib_async's placeOrder never sends (it stops at server version 178).
IB_ASYNC_UNSENT = {
    "orderId",
    "clientId",
    "permId",
    "basisPoints",
    "basisPointsType",
    "hedgeMaxSize",
    "autoCancelDate",
    "filledQuantity",
    "refFuturesConId",
    "shareholder",
    "routeMarketableToBbo",
    "parentPermId",
    "customerAccount",
    "professionalCustomer",
    "bondAccruedInterest",
    "includeOvernight",
    "manualOrderIndicator",
    "submitter",
    "postOnly",
    "allowPreOpen",
    "ignoreOpenAuction",
    "deactivate",
    "seekPriceImprovement",
    "whatIfType",
    "slOrderId",
    "slOrderType",
    "ptOrderId",
    "ptOrderType",
    "imbalanceOnly",
}


def ib_async_plain(value: Any) -> Any:
    """ib_async objects as the plain data ``state`` gives for their ibapi counterparts."""
    if isinstance(value, ia_contract.TagValue | TagValue):
        return ("TagValue", value.tag, value.value)
    if isinstance(value, list):
        return [ib_async_plain(item) for item in value]
    if isinstance(value, ia_order.OrderCondition):
        plain = {f.name: getattr(value, f.name) for f in fields(value) if f.name != "condType"}
        plain["isConjunctionConnection"] = plain.pop("conjunction") == "a"
        if "exch" in plain:
            plain["exchange"] = plain.pop("exch")
        return plain
    if isinstance(value, ia_order.OrderComboLeg):
        return value.price
    if isinstance(value, ia_objects.SoftDollarTier):
        return (value.name, value.val)
    return value


def parsed_plain(value: Any) -> Any:
    if isinstance(value, OrderCondition):
        plain = dict(vars(value))
        plain.pop("condType")
        return plain
    if isinstance(value, OrderComboLeg):
        return value.price
    if isinstance(value, SoftDollarTier):
        return (value.name, value.val)
    if isinstance(value, list):
        return [parsed_plain(item) for item in value]
    if isinstance(value, TagValue):
        return ("TagValue", value.tag, value.value)
    return value


def ib_async_kitchen_sink(exchange: str, order_type: str) -> tuple[Any, Any]:
    contract = ia_contract.Contract(
        conId=28812380,
        symbol="SPY",
        secType="BAG",
        lastTradeDateOrContractMonth="20251219",
        strike=4500.5,
        right="C",
        multiplier="100",
        exchange=exchange,
        primaryExchange="ARCA",
        currency="USD",
        localSymbol="SPY-X",
        tradingClass="SPY",
        secIdType="ISIN",
        secId="US78462F1030",
        comboLegs=[
            ia_contract.ComboLeg(111, 1, "BUY", "SMART", 1, 2, "X", 5),
            ia_contract.ComboLeg(222, 2, "SELL", "CBOE", 2, 1, "Y", 6),
        ],
        deltaNeutralContract=ia_contract.DeltaNeutralContract(756733, 0.5, 450.25),
    )
    order = ia_order.Order(orderType=order_type, faProfile="")
    for name, (value, text_since, _) in ORDER_FIELDS.items():
        if text_since <= 178 and name not in ("orderComboLegs", "conditions"):
            setattr(order, name, copy.deepcopy(value))
    order.totalQuantity = 12.5  # ib_async quantities are floats
    order.orderComboLegs = [ia_order.OrderComboLeg(1.25), ia_order.OrderComboLeg(2.5)]
    order.conditions = [
        ia_order.PriceCondition(1, "a", True, 150.5, 265598, "SMART", 2),
        ia_order.TimeCondition(3, "o", False, "20250101 10:00:00 US/Eastern"),
        ia_order.MarginCondition(4, "a", True, 30),
        ia_order.ExecutionCondition(5, "o", "STK", "SMART", "AAPL"),
        ia_order.VolumeCondition(6, "a", False, 100000, 265598, "SMART"),
        ia_order.PercentChangeCondition(7, "a", True, 2.5, 265598, "SMART"),
    ]
    order.softDollarTier = ia_objects.SoftDollarTier("tier", "v1")
    order.algoParams = [ia_contract.TagValue(t.tag, t.value) for t in order.algoParams]
    for name, value in PEG_VARIANTS[order_type][0].items():
        setattr(order, name, value)
    return contract, order


@pytest.mark.parametrize("order_type", sorted(PEG_VARIANTS))
@pytest.mark.parametrize("version", IB_ASYNC_VERSIONS)
async def test_ib_async_place_order_round_trips(version: int, order_type: str) -> None:
    exchange = PEG_VARIANTS[order_type][2]
    contract, order = ib_async_kitchen_sink(exchange, order_type)
    [payload] = ib_async_payloads(version, lambda c: c.placeOrder(42, contract, order))

    parsed = parse_request(version, payload)

    assert parsed.order_id == 42
    for name in (
        "conId",
        "symbol",
        "secType",
        "lastTradeDateOrContractMonth",
        "strike",
        "right",
        "multiplier",
        "exchange",
        "primaryExchange",
        "currency",
        "localSymbol",
        "tradingClass",
        "secIdType",
        "secId",
    ):
        assert getattr(parsed.contract, name) == getattr(contract, name), name
    assert [vars(leg) for leg in parsed.contract.comboLegs] == [
        {f.name: getattr(leg, f.name) for f in fields(leg)} for leg in contract.comboLegs
    ]
    assert vars(parsed.contract.deltaNeutralContract) == {
        "conId": 756733,
        "delta": 0.5,
        "price": 450.25,
    }
    # placeOrder sets volatility to None for non-VOL orders; it goes out as "" (UNSET).
    assert order.volatility is None and parsed.order.volatility == UNSET_DOUBLE
    compared = set(vars(parsed.order)) - IB_ASYNC_UNSENT - {"volatility"}
    mismatches = {
        name: (parsed_plain(getattr(parsed.order, name)), ib_async_plain(getattr(order, name)))
        for name in compared
        if parsed_plain(getattr(parsed.order, name)) != ib_async_plain(getattr(order, name))
    }
    assert mismatches == {}


def _ia_stock() -> Any:
    return ia_contract.Contract(
        conId=265598,
        symbol="AAPL",
        secType="STK",
        exchange="SMART",
        primaryExchange="NASDAQ",
        currency="USD",
        localSymbol="AAPL",
        tradingClass="NMS",
        includeExpired=True,
        secIdType="ISIN",
        secId="US0378331005",
        issuerId="e1234",
    )


def _ia_filter() -> Any:
    return ia_objects.ExecutionFilter(
        3, "DU123", "20250101-09:30:00", "AAPL", "STK", "SMART", "BUY"
    )


IB_ASYNC_CASES: dict[str, tuple[Callable[[IbAsyncClient], object], Any]] = {
    "startApi": (lambda c: c.startApi(), StartApi(CLIENT_ID, "")),
    "cancelOrder": (
        lambda c: c.cancelOrder(12, "20250101-09:30:00"),
        CancelOrder(12, "20250101-09:30:00"),
    ),
    "reqMktData": (
        lambda c: c.reqMktData(8, _ia_stock(), "233", False, False, []),
        ReqMktData(8, _details_contract(), "233"),
    ),
    "reqContractDetails": (
        lambda c: c.reqContractDetails(7, _ia_stock()),
        ReqContractDetails(7, _details_contract()),
    ),
    "reqExecutions": (
        lambda c: c.reqExecutions(15, _ia_filter()),
        ReqExecutions(15, _exec_filter(178)),
    ),
    "reqPositions": (lambda c: c.reqPositions(), ReqPositions()),
    "reqOpenOrders": (lambda c: c.reqOpenOrders(), ReqOpenOrders()),
    "reqAutoOpenOrders": (lambda c: c.reqAutoOpenOrders(True), ReqAutoOpenOrders(True)),
    "reqCompletedOrders": (lambda c: c.reqCompletedOrders(False), ReqCompletedOrders(False)),
    "reqAccountUpdates": (
        lambda c: c.reqAccountUpdates(True, "DU123"),
        ReqAccountUpdates(True, "DU123"),
    ),
    "reqAccountUpdatesMulti": (
        lambda c: c.reqAccountUpdatesMulti(3, "DU123", "", False),
        ReqAccountUpdatesMulti(3, "DU123", "", False),
    ),
}


def _only_sent_by_ib_async(request: Any) -> Any:
    # reqMktData sends the contract12 fields only; the expected contract carries more.
    if isinstance(request, ReqMktData):
        contract = request.contract
        contract.includeExpired, contract.secIdType, contract.secId = False, "", ""
        contract.issuerId, contract.strike = "", 0.0  # ib_async's default strike is 0.0
    if isinstance(request, ReqContractDetails):
        request.contract.strike = 0.0
    return request


@pytest.mark.parametrize("name", list(IB_ASYNC_CASES))
@pytest.mark.parametrize("version", IB_ASYNC_VERSIONS)
async def test_ib_async_requests_round_trip(version: int, name: str) -> None:
    call, expected = IB_ASYNC_CASES[name]
    [payload] = ib_async_payloads(version, call)

    assert_same(parse_request(version, payload), _only_sent_by_ib_async(expected), version)


# --- Malformed and unsupported frames ---------------------------------------------------------


def _kitchen_sink_payload(version: int) -> bytes:
    contract, order = kitchen_sink(version, "PEG BEST")
    return ibapi_payload(version, lambda c: c.placeOrder(42, contract, order))


@pytest.mark.parametrize("version", (176, 200, 201))
def test_every_truncation_of_a_text_place_order_is_malformed(version: int) -> None:
    payload = _kitchen_sink_payload(version)

    for length in range(len(payload)):
        with pytest.raises(MalformedRequest):
            parse_request(version, payload[:length])


def test_truncated_protobuf_place_order_is_malformed_unless_cut_before_attached_orders() -> None:
    payload = _kitchen_sink_payload(225)
    attached = PlaceOrderRequestProto.FromString(payload[4:]).attachedOrders.ByteSize()
    before_attached_orders = len(payload) - 2 - attached  # tag and length: one byte each
    parsed_lengths = []

    for length in range(len(payload)):
        try:
            parsed = parse_request(225, payload[:length])
        except MalformedRequest:
            continue
        parsed_lengths.append(length)
        # protobuf has no terminator: cut at a top-level field boundary, it is a valid message
        # without the fields after the cut. attachedOrders is the only optional top-level one.
        assert (parsed.order.slOrderId, parsed.order.ptOrderType) == (UNSET_INTEGER, "")
    assert parsed_lengths == [before_attached_orders]


def test_a_field_of_the_wrong_type_names_the_field() -> None:
    payload = ibapi_payload(178, lambda c: c.reqMktData(8, stock(), "", False, False, []))
    broken = payload.replace(b"\x0011\x008\x00", b"\x0011\x00eight\x00", 1)

    with pytest.raises(MalformedRequest) as raised:
        parse_request(178, broken)

    assert raised.value.msg_id == OUT.REQ_MKT_DATA
    assert "'reqId'" in raised.value.reason and "'eight'" in raised.value.reason


def test_extra_fields_mean_another_server_version() -> None:
    payload = ibapi_payload(200, lambda c: c.reqExecutions(1, ExecutionFilter()))

    with pytest.raises(MalformedRequest, match="left over"):
        parse_request(178, payload)  # 200 adds lastNDays and specificDates


def test_a_count_larger_than_the_frame_is_malformed_not_a_huge_loop() -> None:
    order = Order()
    order.action, order.totalQuantity, order.orderType = "BUY", Decimal(1), "MKT"
    order.algoStrategy, order.algoParams = "Vwap", [TagValue("a", "b")]
    payload = ibapi_payload(178, lambda c: c.placeOrder(1, stock(), order))
    broken = payload.replace(b"\x00Vwap\x001\x00a\x00b\x00", b"\x00Vwap\x00999999999\x00a\x00b\x00")

    with pytest.raises(MalformedRequest, match="'algoParams' is '999999999'"):
        parse_request(178, broken)


@pytest.mark.parametrize(
    ("version", "payload", "reason"),
    [
        (176, b"", "empty frame"),
        (201, b"\x00\x00", "shorter than the 4-byte message id"),
        (176, b"abc\x001\x00", "not a decimal number"),
        (176, b"49\x001", "not NUL-terminated"),
        (201, b"\x00\x00\x00\x31" + b"1", "not NUL-terminated"),
        (176, b"49\x00\xff\xfe\x00", "not UTF-8"),
        (178, b"3\x00", "frame ends before field 1 'orderId'"),
        (225, b"\x00\x00\x00\xcb" + b"\xff\xff\xff", "not a valid PlaceOrderRequest protobuf"),
        (225, b"\x00\x00\x00\xcb", "PlaceOrderRequest has no orderId"),
        (225, b"\x00\x00\x00\xd1" + b"\x0a\x05", "not a valid ContractDataRequest protobuf"),
    ],
)
def test_malformed_frames_say_why(version: int, payload: bytes, reason: str) -> None:
    with pytest.raises(MalformedRequest, match=reason):
        parse_request(version, payload)


@pytest.mark.parametrize(
    ("version", "payload", "msg_id"),
    [
        (176, b"12\x001\x001\x00", 12),  # reqNewsBulletins
        (178, b"82\x00", 82),  # reqMktDepthExchanges, no fields
        (201, b"\x00\x00\x00\x0c\x31\x00\x31\x00", 12),
        (225, b"\x00\x00\x00\x00", 0),
        (225, (12 + 200).to_bytes(4, "big") + b"\x08\x01", 212),  # protobuf NewsBulletins
        (225, (2**32 - 1).to_bytes(4, "big") + b"\xff", 2**32 - 1),
    ],
)
def test_unknown_ids_are_unsupported(version: int, payload: bytes, msg_id: int) -> None:
    assert parse_request(version, payload) == Unsupported(msg_id)


@pytest.mark.parametrize("version", (99, 226))
def test_versions_ibapi_cannot_negotiate_are_a_caller_error(version: int) -> None:
    with pytest.raises(ValueError, match=r"outside 100\.\.225") as raised:
        parse_request(version, b"49\x001\x00")
    assert not isinstance(raised.value, MalformedRequest)


@settings(max_examples=500, deadline=None)
@given(version=st.sampled_from(VERSIONS), payload=st.binary(max_size=64))
def test_garbage_is_malformed_or_a_request(version: int, payload: bytes) -> None:
    try:
        parsed = parse_request(version, payload)
    except MalformedRequest:
        return
    assert isinstance(parsed, get_args(Request))


@settings(max_examples=300, deadline=None)
@given(
    version=st.sampled_from((176, 200, 201, 225)),
    position=st.integers(0, 10**6),
    junk=st.binary(min_size=0, max_size=8),
)
def test_corrupted_place_orders_are_malformed_or_a_place_order(
    version: int, position: int, junk: bytes
) -> None:
    payload = _CORRUPTION_BASE[version]
    cut = 4 + position % (len(payload) - 4)  # keep the message id intact
    corrupted = payload[:cut] + junk + payload[cut + len(junk) :]
    try:
        parsed = parse_request(version, corrupted)
    except MalformedRequest:
        return
    assert isinstance(parsed, PlaceOrder)


_CORRUPTION_BASE = {version: _kitchen_sink_payload(version) for version in (176, 200, 201, 225)}


@pytest.mark.parametrize(
    ("field", "parsed"), [(b"1", True), (b"0", False), (b"", False), (b"2", True)]
)
def test_booleans_read_like_ibapi_decode(field: bytes, parsed: bool) -> None:
    # utils.decode(bool, ...): int(field or 0) != 0
    assert parse_request(176, b"15\x001\x00" + field + b"\x00") == ReqAutoOpenOrders(parsed)


def test_a_boolean_that_is_not_a_number_is_malformed() -> None:
    with pytest.raises(MalformedRequest, match="field 2 'autoBind' is 'yes', expected 0 or 1"):
        parse_request(176, b"15\x001\x00yes\x00")


@pytest.mark.parametrize("quantity", [b"NaN", b"sNaN", b"Infinity", b"12..5"])
def test_order_quantities_must_be_finite_decimals(quantity: bytes) -> None:
    order = Order()
    order.action, order.totalQuantity, order.orderType = "BUY", Decimal(7), "MKT"
    payload = ibapi_payload(178, lambda c: c.placeOrder(1, stock(), order))
    broken = payload.replace(b"\x00BUY\x007\x00MKT\x00", b"\x00BUY\x00" + quantity + b"\x00MKT\x00")

    with pytest.raises(MalformedRequest, match=r"'totalQuantity' is .*finite decimal quantity"):
        parse_request(178, broken)


@pytest.mark.parametrize("quantity", ["NaN", "sNaN", "12..5"])
def test_protobuf_order_quantities_must_be_finite_decimals(quantity: str) -> None:
    request = PlaceOrderRequestProto(orderId=1)
    request.contract.symbol, request.order.totalQuantity = "AAPL", quantity
    payload = (OUT.PLACE_ORDER + 200).to_bytes(4, "big") + request.SerializeToString()

    with pytest.raises(MalformedRequest, match=r"Order\.totalQuantity is"):
        parse_request(225, payload)


def test_protobuf_order_condition_of_unknown_type_is_malformed() -> None:
    request = PlaceOrderRequestProto(orderId=1)
    request.contract.symbol, request.order.orderType = "AAPL", "LMT"
    request.order.conditions.add(type=2)  # 2 was never assigned (1 Price, 3 Time, ...)
    payload = (OUT.PLACE_ORDER + 200).to_bytes(4, "big") + request.SerializeToString()

    with pytest.raises(MalformedRequest, match="order condition type 2 is unknown"):
        parse_request(225, payload)


def test_unset_sentinels_round_trip_as_unset() -> None:
    order = Order()
    order.action, order.totalQuantity, order.orderType = "BUY", Decimal(3), "MKT"
    for version in (178, 201, 225):
        parsed = parse_request(
            version, ibapi_payload(version, lambda c: c.placeOrder(1, stock(), order))
        )
        assert parsed.order.lmtPrice == UNSET_DOUBLE
        assert parsed.order.minQty == UNSET_INTEGER
        assert parsed.order.cashQty == UNSET_DOUBLE
        assert parsed.order.usePriceMgmtAlgo is None
        assert parsed.contract.strike == UNSET_DOUBLE
