"""Server → client TWS API messages, encoded byte for byte as IB Gateway sends them.

``ResponseEncoder(server_version, protobuf=True)`` turns one callback's worth of values into
the complete frame (4-byte big-endian length prefix included) that the official ``ibapi``
``EClient.run``/``Decoder`` at that negotiated version decodes into exactly those callback
arguments, and that ib_async (text protocol, server version <= 178) decodes too. A method that
needs several frames (``historical_data``: bars, then the end marker from 196 on) returns them
concatenated.

Framing (``ibapi/client.py`` ``EClient.run``, ``ibapi/comm.py``):

- below 201 a message id is the first NUL-terminated ASCII field of the payload;
- from 201 (``MIN_SERVER_VER_PROTOBUF``) it is a raw 4-byte big-endian int with no NUL, text
  fields follow as NUL-terminated strings;
- a protobuf message travels as id + 200 followed by the serialized message.

ibapi switches each *request* to protobuf at its family's threshold (``common.PROTOBUF_MSG_IDS``)
but decodes every *response* in either form at any version >= 201, so the server chooses.
With ``protobuf=True`` a response goes out as protobuf once the version reaches the threshold of
the request family that produces it (``PROTOBUF_FROM``); ``protobuf=False`` keeps text (with raw
ids from 201). The table:

==========  =====================================================================
from        responses (IN ids)
==========  =====================================================================
201         error (4); execDetails (11), execDetailsEnd (55) and
            commissionAndFeesReport (59), the answers to reqExecutions
203         openOrder (5), orderStatus (3), the answers to placeOrder
204         openOrderEnd (53), completedOrder (101), completedOrdersEnd (102)
205         contractData (10), contractDataEnd (52)
206         tickPrice/Size/String/Generic (1, 2, 46, 45), tickSnapshotEnd (57),
            depth (12, 13), marketDataType (58), tickReqParams (81)
207         managedAccounts (15), position (61, 62), accountSummary (63, 64),
            account updates (6, 7, 8, 54), accountUpdateMulti (73, 74)
208         historicalData (17), historicalDataUpdate (90), historicalDataEnd (108),
            tickByTick (99), which ibapi files under the historical family
213         nextValidId (9), currentTime (49), currentTimeInMillis (109)
==========  =====================================================================

Evidence: a real TWS negotiated at 205 sent error, openOrder and orderStatus as protobuf and
nextValidId and managedAccounts as text (scmhub/ibsync #11), which this table reproduces.
Errors belong to no request family; they switch at 201, the first version that can carry
protobuf at all, which agrees with that capture (the exact TWS switch point is inferred).

Text layouts follow the version gates of ibapi 10.46's decoder (``decoder.py``,
``orderdecoder.py``) at every version from ``MIN_SERVER_VERSION`` to ``MAX_SERVER_VERSION``.
Some values have no place in a text layout and only travel as protobuf: openOrder's
primaryExchange, completedOrder's orderId, clientId and parentId, and ContractDetails'
minAlgoSize, price and size precisions and event-contract descriptions. Unset values go out
as TWS writes them (ib_insync #138): ``1.7976931348623157E308`` for doubles, ``2147483647`` for
ints, an empty field for decimals.
Strings that ibapi reads with ``unicode-escape`` (error text, the advanced-reject JSON,
``longName`` and every string of a "wrap" message such as tickString or accountSummary) are
sent ASCII-7 escaped, which ibapi expects from 153 (``MIN_SERVER_VER_ENCODE_MSG_ASCII7``);
ib_async does not unescape them, so it shows non-ASCII characters and backslashes escaped.

Hot path (``HOT``): the tick, depth and tick-by-tick encoders run 100,000+ times a second, so
they are bound once per encoder to their text or protobuf form, build text with one f-string
behind a precomputed id prefix, and refill one reused protobuf message per encoder. An encoder
therefore belongs to one connection and one thread.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Mapping, Sequence
from decimal import Decimal
from enum import Enum
from types import MappingProxyType
from typing import Any, Final

from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import Message
from ibapi import server_versions as sv
from ibapi.client_utils import createConditionsProto
from ibapi.commission_and_fees_report import CommissionAndFeesReport
from ibapi.common import BarData
from ibapi.const import UNSET_DECIMAL, UNSET_DOUBLE
from ibapi.contract import ComboLeg, Contract, ContractDetails
from ibapi.execution import Execution
from ibapi.message import IN
from ibapi.order import Order
from ibapi.order_state import OrderState
from ibapi.protobuf.AccountDataEnd_pb2 import AccountDataEnd
from ibapi.protobuf.AccountSummary_pb2 import AccountSummary
from ibapi.protobuf.AccountSummaryEnd_pb2 import AccountSummaryEnd
from ibapi.protobuf.AccountUpdateMulti_pb2 import AccountUpdateMulti
from ibapi.protobuf.AccountUpdateMultiEnd_pb2 import AccountUpdateMultiEnd
from ibapi.protobuf.AccountUpdateTime_pb2 import AccountUpdateTime
from ibapi.protobuf.AccountValue_pb2 import AccountValue
from ibapi.protobuf.ComboLeg_pb2 import ComboLeg as ComboLegProto
from ibapi.protobuf.CommissionAndFeesReport_pb2 import (
    CommissionAndFeesReport as CommissionAndFeesReportProto,
)
from ibapi.protobuf.CompletedOrder_pb2 import CompletedOrder
from ibapi.protobuf.CompletedOrdersEnd_pb2 import CompletedOrdersEnd
from ibapi.protobuf.Contract_pb2 import Contract as ContractProto
from ibapi.protobuf.ContractData_pb2 import ContractData
from ibapi.protobuf.ContractDataEnd_pb2 import ContractDataEnd
from ibapi.protobuf.ContractDetails_pb2 import ContractDetails as ContractDetailsProto
from ibapi.protobuf.CurrentTime_pb2 import CurrentTime
from ibapi.protobuf.CurrentTimeInMillis_pb2 import CurrentTimeInMillis
from ibapi.protobuf.ErrorMessage_pb2 import ErrorMessage
from ibapi.protobuf.Execution_pb2 import Execution as ExecutionProto
from ibapi.protobuf.ExecutionDetails_pb2 import ExecutionDetails
from ibapi.protobuf.ExecutionDetailsEnd_pb2 import ExecutionDetailsEnd
from ibapi.protobuf.HistoricalData_pb2 import HistoricalData
from ibapi.protobuf.HistoricalDataBar_pb2 import HistoricalDataBar
from ibapi.protobuf.HistoricalDataEnd_pb2 import HistoricalDataEnd
from ibapi.protobuf.HistoricalDataUpdate_pb2 import HistoricalDataUpdate
from ibapi.protobuf.ManagedAccounts_pb2 import ManagedAccounts
from ibapi.protobuf.MarketDataType_pb2 import MarketDataType
from ibapi.protobuf.MarketDepth_pb2 import MarketDepth
from ibapi.protobuf.MarketDepthL2_pb2 import MarketDepthL2
from ibapi.protobuf.MarketRule_pb2 import MarketRule
from ibapi.protobuf.NextValidId_pb2 import NextValidId
from ibapi.protobuf.OpenOrder_pb2 import OpenOrder
from ibapi.protobuf.OpenOrdersEnd_pb2 import OpenOrdersEnd
from ibapi.protobuf.Order_pb2 import Order as OrderProto
from ibapi.protobuf.OrderState_pb2 import OrderState as OrderStateProto
from ibapi.protobuf.OrderStatus_pb2 import OrderStatus
from ibapi.protobuf.PortfolioValue_pb2 import PortfolioValue
from ibapi.protobuf.Position_pb2 import Position
from ibapi.protobuf.PositionEnd_pb2 import PositionEnd
from ibapi.protobuf.PriceIncrement_pb2 import PriceIncrement
from ibapi.protobuf.TickByTickData_pb2 import TickByTickData
from ibapi.protobuf.TickGeneric_pb2 import TickGeneric
from ibapi.protobuf.TickPrice_pb2 import TickPrice
from ibapi.protobuf.TickReqParams_pb2 import TickReqParams
from ibapi.protobuf.TickSize_pb2 import TickSize
from ibapi.protobuf.TickSnapshotEnd_pb2 import TickSnapshotEnd
from ibapi.protobuf.TickString_pb2 import TickString
from ibapi.tag_value import TagValue
from ibapi.utils import isPegBenchOrder

MIN_SERVER_VERSION: Final = 157  # ib_async's floor; every decoder gate above it is encoded
MAX_SERVER_VERSION: Final = sv.MAX_CLIENT_VER  # 225, the newest layout ibapi 10.46 knows

PROTOBUF_FROM: Final[Mapping[int, int]] = MappingProxyType(
    {
        IN.ERR_MSG: sv.MIN_SERVER_VER_PROTOBUF,
        IN.EXECUTION_DATA: sv.MIN_SERVER_VER_PROTOBUF,
        IN.EXECUTION_DATA_END: sv.MIN_SERVER_VER_PROTOBUF,
        IN.COMMISSION_AND_FEES_REPORT: sv.MIN_SERVER_VER_PROTOBUF,
        IN.OPEN_ORDER: sv.MIN_SERVER_VER_PROTOBUF_PLACE_ORDER,
        IN.ORDER_STATUS: sv.MIN_SERVER_VER_PROTOBUF_PLACE_ORDER,
        IN.OPEN_ORDER_END: sv.MIN_SERVER_VER_PROTOBUF_COMPLETED_ORDER,
        IN.COMPLETED_ORDER: sv.MIN_SERVER_VER_PROTOBUF_COMPLETED_ORDER,
        IN.COMPLETED_ORDERS_END: sv.MIN_SERVER_VER_PROTOBUF_COMPLETED_ORDER,
        IN.CONTRACT_DATA: sv.MIN_SERVER_VER_PROTOBUF_CONTRACT_DATA,
        IN.CONTRACT_DATA_END: sv.MIN_SERVER_VER_PROTOBUF_CONTRACT_DATA,
        IN.TICK_PRICE: sv.MIN_SERVER_VER_PROTOBUF_MARKET_DATA,
        IN.TICK_SIZE: sv.MIN_SERVER_VER_PROTOBUF_MARKET_DATA,
        IN.TICK_STRING: sv.MIN_SERVER_VER_PROTOBUF_MARKET_DATA,
        IN.TICK_GENERIC: sv.MIN_SERVER_VER_PROTOBUF_MARKET_DATA,
        IN.TICK_SNAPSHOT_END: sv.MIN_SERVER_VER_PROTOBUF_MARKET_DATA,
        IN.MARKET_DEPTH: sv.MIN_SERVER_VER_PROTOBUF_MARKET_DATA,
        IN.MARKET_DEPTH_L2: sv.MIN_SERVER_VER_PROTOBUF_MARKET_DATA,
        IN.MARKET_DATA_TYPE: sv.MIN_SERVER_VER_PROTOBUF_MARKET_DATA,
        IN.TICK_REQ_PARAMS: sv.MIN_SERVER_VER_PROTOBUF_MARKET_DATA,
        IN.MANAGED_ACCTS: sv.MIN_SERVER_VER_PROTOBUF_ACCOUNTS_POSITIONS,
        IN.POSITION_DATA: sv.MIN_SERVER_VER_PROTOBUF_ACCOUNTS_POSITIONS,
        IN.POSITION_END: sv.MIN_SERVER_VER_PROTOBUF_ACCOUNTS_POSITIONS,
        IN.ACCOUNT_SUMMARY: sv.MIN_SERVER_VER_PROTOBUF_ACCOUNTS_POSITIONS,
        IN.ACCOUNT_SUMMARY_END: sv.MIN_SERVER_VER_PROTOBUF_ACCOUNTS_POSITIONS,
        IN.ACCT_VALUE: sv.MIN_SERVER_VER_PROTOBUF_ACCOUNTS_POSITIONS,
        IN.PORTFOLIO_VALUE: sv.MIN_SERVER_VER_PROTOBUF_ACCOUNTS_POSITIONS,
        IN.ACCT_UPDATE_TIME: sv.MIN_SERVER_VER_PROTOBUF_ACCOUNTS_POSITIONS,
        IN.ACCT_DOWNLOAD_END: sv.MIN_SERVER_VER_PROTOBUF_ACCOUNTS_POSITIONS,
        IN.ACCOUNT_UPDATE_MULTI: sv.MIN_SERVER_VER_PROTOBUF_ACCOUNTS_POSITIONS,
        IN.ACCOUNT_UPDATE_MULTI_END: sv.MIN_SERVER_VER_PROTOBUF_ACCOUNTS_POSITIONS,
        IN.HISTORICAL_DATA: sv.MIN_SERVER_VER_PROTOBUF_HISTORICAL_DATA,
        IN.HISTORICAL_DATA_UPDATE: sv.MIN_SERVER_VER_PROTOBUF_HISTORICAL_DATA,
        IN.HISTORICAL_DATA_END: sv.MIN_SERVER_VER_PROTOBUF_HISTORICAL_DATA,
        IN.TICK_BY_TICK: sv.MIN_SERVER_VER_PROTOBUF_HISTORICAL_DATA,
        IN.NEXT_VALID_ID: sv.MIN_SERVER_VER_PROTOBUF_REST_MESSAGES_3,
        IN.CURRENT_TIME: sv.MIN_SERVER_VER_PROTOBUF_REST_MESSAGES_3,
        IN.CURRENT_TIME_IN_MILLIS: sv.MIN_SERVER_VER_PROTOBUF_REST_MESSAGES_3,
        IN.MARKET_RULE: sv.MIN_SERVER_VER_PROTOBUF_REST_MESSAGES_2,
    }
)

HOT: Final = (
    "tick_price",
    "tick_size",
    "update_mkt_depth",
    "update_mkt_depth_l2",
    "tick_by_tick_all_last",
    "tick_by_tick_bid_ask",
    "tick_by_tick_mid_point",
)

_LEN = struct.Struct(">I").pack
_TBT_BID_ASK = "3"  # tickByTick's tick type for quotes (1 Last and 2 AllLast are trades)
_TBT_MID_POINT = "4"
_PROTOBUF_ID_OFFSET = 200
_UNSET_DOUBLE_TEXT = "1.7976931348623157E308"  # Java's Double.MAX_VALUE.toString()


# -- text fields -------------------------------------------------------------------------------


def _f(value: float) -> str:
    return _UNSET_DOUBLE_TEXT if value == UNSET_DOUBLE else str(value)


def _i(value: int) -> str:
    return str(int(value))


def _b(value: object) -> str:
    return "1" if value else "0"


def _d(value: Decimal | float) -> str:
    return "" if value == UNSET_DECIMAL else str(value)


def _esc(text: str) -> str:
    """ASCII-7 form of a string that ibapi decodes with ``unicode-escape``."""
    if text.isascii() and "\\" not in text:
        return text
    return text.encode("unicode-escape").decode("ascii")


def _pairs(tag_values: Sequence[TagValue] | None) -> list[str]:
    out = [str(len(tag_values or ()))]
    for tv in tag_values or ():
        out += [tv.tag, tv.value]
    return out


# -- protobuf fields ---------------------------------------------------------------------------


def _pb_string(value: object) -> str:
    return value.value[0] if isinstance(value, Enum) else str(value)


_PB_CONVERT: Final[Mapping[int, Callable[[Any], Any]]] = {
    FieldDescriptor.TYPE_STRING: _pb_string,
    FieldDescriptor.TYPE_DOUBLE: float,
    FieldDescriptor.TYPE_INT32: int,
    FieldDescriptor.TYPE_INT64: int,
    FieldDescriptor.TYPE_BOOL: bool,
}

_Plan = tuple[tuple[str, str, Callable[[Any], Any], object], ...]


def _plan(
    proto_cls: type[Message],
    default: object,
    renames: Mapping[str, str] | None = None,
    skip: frozenset[str] = frozenset(),
) -> _Plan:
    """Scalar protobuf fields that mirror an ibapi attribute, with that attribute's default.

    ibapi's protobuf decoders copy a field only when it is present, so sending every attribute
    that differs from the ibapi default reproduces the object exactly. Nested and map fields
    are built by hand.
    """
    renames = renames or {}
    plan = []
    for fd in proto_cls.DESCRIPTOR.fields:
        attr = renames.get(fd.name, fd.name)
        if fd.message_type is None and fd.name not in skip and hasattr(default, attr):
            plan.append((fd.name, attr, _PB_CONVERT[fd.type], getattr(default, attr)))
    return tuple(plan)


def _fill(proto: Message, obj: object, plan: _Plan) -> None:
    for name, attr, convert, default in plan:
        value = getattr(obj, attr)
        if value is not None and value != default:
            setattr(proto, name, convert(value))


_CONTRACT_PLAN: Final = _plan(ContractProto, Contract(), {"primaryExch": "primaryExchange"})
_COMBO_LEG_PLAN: Final = _plan(ComboLegProto, ComboLeg(), {"shortSalesSlot": "shortSaleSlot"})
_ORDER_PLAN: Final = _plan(OrderProto, Order())
_ORDER_STATE_PLAN: Final = _plan(OrderStateProto, OrderState())
_EXECUTION_PLAN: Final = _plan(
    ExecutionProto,
    Execution(),
    {"isLiquidation": "liquidation", "isPriceRevisionPending": "pendingPriceRevision"},
    skip=frozenset({"optExerciseOrLapseType"}),
)
_DETAILS_PLAN: Final = _plan(
    ContractDetailsProto,
    ContractDetails(),
    {
        "puttable": "putable",
        "bondNotes": "notes",
        "fundMinimumSubsequentPurchase": "fundSubsequentMinimumPurchase",
    },
)


def _contract_pb(contract: Contract, order: Order | None = None, ltd: str | None = None) -> Any:
    proto = ContractProto()
    _fill(proto, contract, _CONTRACT_PLAN)
    if ltd:
        proto.lastTradeDateOrContractMonth = ltd
    leg_prices = (order.orderComboLegs or []) if order is not None else []
    for n, leg in enumerate(contract.comboLegs or ()):
        leg_pb = proto.comboLegs.add()
        _fill(leg_pb, leg, _COMBO_LEG_PLAN)
        if n < len(leg_prices) and leg_prices[n].price != UNSET_DOUBLE:
            leg_pb.perLegPrice = leg_prices[n].price
    dn = contract.deltaNeutralContract
    if dn is not None:
        proto.deltaNeutralContract.conId = dn.conId
        proto.deltaNeutralContract.delta = dn.delta
        proto.deltaNeutralContract.price = dn.price
    return proto


def _order_pb(order: Order) -> Any:
    proto = OrderProto()
    _fill(proto, order, _ORDER_PLAN)
    for field, tag_values in (
        (proto.algoParams, order.algoParams),
        (proto.smartComboRoutingParams, order.smartComboRoutingParams),
        (proto.orderMiscOptions, order.orderMiscOptions),
    ):
        for tv in tag_values or ():
            field[tv.tag] = tv.value
    if order.conditions:
        proto.conditions.extend(createConditionsProto(order))
    tier = order.softDollarTier
    if tier is not None and (tier.name or tier.val or tier.displayName):
        proto.softDollarTier.name = tier.name
        proto.softDollarTier.value = tier.val
        proto.softDollarTier.displayName = tier.displayName
    return proto


_ALLOCATION_QUANTITIES: Final = (
    "position",
    "positionDesired",
    "positionAfter",
    "desiredAllocQty",
    "allowedAllocQty",
)


def _order_state_pb(state: OrderState) -> Any:
    proto = OrderStateProto()
    _fill(proto, state, _ORDER_STATE_PLAN)
    for allocation in state.orderAllocations or ():
        alloc_pb = proto.orderAllocations.add(
            account=allocation.account, isMonetary=allocation.isMonetary
        )
        for name in _ALLOCATION_QUANTITIES:
            if getattr(allocation, name) != UNSET_DECIMAL:
                setattr(alloc_pb, name, str(getattr(allocation, name)))
    return proto


def _bar_pb(bar: BarData) -> Any:
    proto = HistoricalDataBar(
        date=bar.date,
        open=bar.open,
        high=bar.high,
        low=bar.low,
        close=bar.close,
        barCount=bar.barCount,
    )
    if bar.volume != UNSET_DECIMAL:
        proto.volume = str(bar.volume)
    if bar.wap != UNSET_DECIMAL:
        proto.WAP = str(bar.wap)
    return proto


def _last_trade(details: ContractDetails) -> str:
    """``lastTradeDateOrContractMonth`` as TWS sends it: the date, a space, the time.

    Both decoders split the field on whitespace, so a time without a date cannot travel.
    """
    ltd = details.contract.lastTradeDateOrContractMonth
    return f"{ltd} {details.lastTradeTime}" if ltd and details.lastTradeTime else ltd


# -- text layouts shared by several messages ---------------------------------------------------


def _contract_fields(c: Contract) -> list[str]:
    """The 11 contract fields of openOrder, completedOrder, execDetails and position."""
    return [
        _i(c.conId),
        c.symbol,
        c.secType,
        c.lastTradeDateOrContractMonth,
        _f(c.strike),
        c.right,
        c.multiplier,
        c.exchange,
        c.currency,
        c.localSymbol,
        c.tradingClass,
    ]


def _combo_fields(c: Contract, o: Order) -> list[str]:
    out = [c.comboLegsDescrip, str(len(c.comboLegs or ()))]
    for leg in c.comboLegs or ():
        out += [
            _i(leg.conId),
            _i(leg.ratio),
            leg.action,
            leg.exchange,
            _i(leg.openClose),
            _i(leg.shortSaleSlot),
            leg.designatedLocation,
            _i(leg.exemptCode),
        ]
    out.append(str(len(o.orderComboLegs or ())))
    out += [_f(leg.price) for leg in o.orderComboLegs or ()]
    return out


def _scale_hedge_fields(o: Order) -> list[str]:
    out = [_i(o.scaleInitLevelSize), _i(o.scaleSubsLevelSize), _f(o.scalePriceIncrement)]
    if o.scalePriceIncrement != UNSET_DOUBLE and o.scalePriceIncrement > 0:
        out += [
            _f(o.scalePriceAdjustValue),
            _i(o.scalePriceAdjustInterval),
            _f(o.scaleProfitOffset),
            _b(o.scaleAutoReset),
            _i(o.scaleInitPosition),
            _i(o.scaleInitFillQty),
            _b(o.scaleRandomPercent),
        ]
    out.append(o.hedgeType)
    if o.hedgeType:
        out.append(o.hedgeParam)
    return out


def _delta_neutral_contract_fields(c: Contract) -> list[str]:
    dn = c.deltaNeutralContract
    return ["0"] if dn is None else ["1", _i(dn.conId), _f(dn.delta), _f(dn.price)]


def _algo_fields(o: Order) -> list[str]:
    return [o.algoStrategy, *_pairs(o.algoParams)] if o.algoStrategy else [""]


def _peg_bench_and_conditions_fields(o: Order) -> list[str]:
    out = []
    if isPegBenchOrder(o.orderType):
        out += [
            _i(o.referenceContractId),
            _b(o.isPeggedChangeAmountDecrease),
            _f(o.peggedChangeAmount),
            _f(o.referenceChangeAmount),
            o.referenceExchangeId,
        ]
    out.append(str(len(o.conditions or ())))
    if o.conditions:
        for condition in o.conditions:
            out.append(str(condition.type()))
            out += [f[:-1] for f in condition.make_fields()]  # make_fields NUL-terminates
        out += [_b(o.conditionsIgnoreRth), _b(o.conditionsCancelOrder)]
    return out


def _peg_best_mid_fields(o: Order) -> list[str]:
    return [
        _i(o.minTradeQty),
        _i(o.minCompeteSize),
        _f(o.competeAgainstBestOffset),
        _f(o.midOffsetAtWhole),
        _f(o.midOffsetAtHalf),
    ]


class ResponseEncoder:
    """Frames for one client connection at one negotiated server version."""

    def __init__(self, server_version: int, protobuf: bool = True) -> None:
        if not MIN_SERVER_VERSION <= server_version <= MAX_SERVER_VERSION:
            raise ValueError(
                f"server version {server_version} is outside the layouts this encoder knows "
                f"({MIN_SERVER_VERSION}..{MAX_SERVER_VERSION}); negotiate a version in that "
                "range in the handshake"
            )
        self.server_version = server_version
        self.protobuf = protobuf
        self._raw_ids = server_version >= sv.MIN_SERVER_VER_PROTOBUF
        self._proto_ids = frozenset(
            msg_id
            for msg_id, first in PROTOBUF_FROM.items()
            if protobuf and server_version >= first
        )
        self._bind_hot_path()

    def uses_protobuf(self, msg_id: int) -> bool:
        """Whether message ``msg_id`` (an ``ibapi.message.IN`` id) goes out as protobuf."""
        return msg_id in self._proto_ids

    # -- framing -------------------------------------------------------------------------------

    def _id(self, msg_id: int) -> bytes:
        return msg_id.to_bytes(4, "big") if self._raw_ids else f"{msg_id}\0".encode()

    def _text(self, msg_id: int, fields: Sequence[str]) -> bytes:
        body = self._id(msg_id) + "".join([f"{f}\0" for f in fields]).encode()
        return _LEN(len(body)) + body

    @staticmethod
    def _pb(msg_id: int, message: Message) -> bytes:
        body = (msg_id + _PROTOBUF_ID_OFFSET).to_bytes(4, "big") + message.SerializeToString()
        return _LEN(len(body)) + body

    # -- connection, ids, time, errors -----------------------------------------------------------

    def next_valid_id(self, order_id: int) -> bytes:
        if self.uses_protobuf(IN.NEXT_VALID_ID):
            return self._pb(IN.NEXT_VALID_ID, NextValidId(orderId=order_id))
        return self._text(IN.NEXT_VALID_ID, ["1", _i(order_id)])

    def market_rule(self, rule_id: int, increments: Sequence[tuple[float, float]]) -> bytes:
        """A market rule: (low edge, increment) price bands, lowest first."""
        if self.uses_protobuf(IN.MARKET_RULE):
            bands = [PriceIncrement(lowEdge=low, increment=inc) for low, inc in increments]
            return self._pb(IN.MARKET_RULE, MarketRule(marketRuleId=rule_id, priceIncrements=bands))
        fields = [_i(rule_id), _i(len(increments))]
        for low, inc in increments:
            fields += [_f(low), _f(inc)]
        return self._text(IN.MARKET_RULE, fields)

    def managed_accounts(self, accounts: Sequence[str]) -> bytes:
        joined = ",".join(accounts)
        if self.uses_protobuf(IN.MANAGED_ACCTS):
            return self._pb(IN.MANAGED_ACCTS, ManagedAccounts(accountsList=joined))
        return self._text(IN.MANAGED_ACCTS, ["1", _esc(joined)])

    def current_time(self, epoch_s: int) -> bytes:
        if self.uses_protobuf(IN.CURRENT_TIME):
            return self._pb(IN.CURRENT_TIME, CurrentTime(currentTime=epoch_s))
        return self._text(IN.CURRENT_TIME, ["1", _i(epoch_s)])

    def current_time_millis(self, epoch_ms: int) -> bytes:
        if self.server_version < sv.MIN_SERVER_VER_CURRENT_TIME_IN_MILLIS:
            raise ValueError(
                f"currentTimeInMillis (IN 109) needs server version >= "
                f"{sv.MIN_SERVER_VER_CURRENT_TIME_IN_MILLIS}, this connection negotiated "
                f"{self.server_version}; answer with current_time instead"
            )
        if self.uses_protobuf(IN.CURRENT_TIME_IN_MILLIS):
            message = CurrentTimeInMillis(currentTimeInMillis=epoch_ms)
            return self._pb(IN.CURRENT_TIME_IN_MILLIS, message)
        return self._text(IN.CURRENT_TIME_IN_MILLIS, [_i(epoch_ms)])

    def error(
        self,
        req_id: int,
        code: int,
        message: str,
        error_time_ms: int,
        advanced_order_reject_json: str = "",
    ) -> bytes:
        """An error or notice; text carries ``error_time_ms`` only from server version 194."""
        if self.uses_protobuf(IN.ERR_MSG):
            proto = ErrorMessage(
                id=req_id,
                errorTime=error_time_ms,
                errorCode=code,
                errorMsg=message,
                advancedOrderRejectJson=advanced_order_reject_json,
            )
            return self._pb(IN.ERR_MSG, proto)
        v = self.server_version
        fields = [] if v >= sv.MIN_SERVER_VER_ERROR_TIME else ["2"]
        fields += [_i(req_id), _i(code), _esc(message)]
        if v >= sv.MIN_SERVER_VER_ADVANCED_ORDER_REJECT:
            fields.append(_esc(advanced_order_reject_json))
        if v >= sv.MIN_SERVER_VER_ERROR_TIME:
            fields.append(_i(error_time_ms))
        return self._text(IN.ERR_MSG, fields)

    # -- contract details ----------------------------------------------------------------------

    def contract_data(self, req_id: int, details: ContractDetails) -> bytes:
        c = details.contract
        if self.uses_protobuf(IN.CONTRACT_DATA):
            proto = ContractData(reqId=req_id, contract=_contract_pb(c, ltd=_last_trade(details)))
            _fill(proto.contractDetails, details, _DETAILS_PLAN)
            for tv in details.secIdList or ():
                proto.contractDetails.secIdList[tv.tag] = tv.value
            for reason in details.ineligibilityReasonList or ():
                proto.contractDetails.ineligibilityReasonList.add(
                    id=reason.id_, description=reason.description
                )
            return self._pb(IN.CONTRACT_DATA, proto)

        v = self.server_version
        fields = [] if v >= sv.MIN_SERVER_VER_SIZE_RULES else ["8"]
        fields += [_i(req_id), c.symbol, c.secType, _last_trade(details)]
        if v >= sv.MIN_SERVER_VER_LAST_TRADE_DATE:
            fields.append(c.lastTradeDate)
        fields += [
            _f(c.strike),
            c.right,
            c.exchange,
            c.currency,
            c.localSymbol,
            details.marketName,
            c.tradingClass,
            _i(c.conId),
            _f(details.minTick),
        ]
        if v < sv.MIN_SERVER_VER_SIZE_RULES:
            fields.append("1")  # mdSizeMultiplier, read and dropped
        fields += [
            c.multiplier,
            details.orderTypes,
            details.validExchanges,
            _i(details.priceMagnifier),
            _i(details.underConId),
            _esc(details.longName),
            c.primaryExchange,
            details.contractMonth,
            details.industry,
            details.category,
            details.subcategory,
            details.timeZoneId,
            details.tradingHours,
            details.liquidHours,
            details.evRule,
            _i(details.evMultiplier),
            *_pairs(details.secIdList),
            _i(details.aggGroup),
            details.underSymbol,
            details.underSecType,
            details.marketRuleIds,
            details.realExpirationDate,
            details.stockType,
        ]
        if sv.MIN_SERVER_VER_FRACTIONAL_SIZE_SUPPORT <= v < sv.MIN_SERVER_VER_SIZE_RULES:
            fields.append(_d(details.sizeIncrement))  # sizeMinTick, read and dropped
        if v >= sv.MIN_SERVER_VER_SIZE_RULES:
            fields += [
                _d(details.minSize),
                _d(details.sizeIncrement),
                _d(details.suggestedSizeIncrement),
            ]
        if v >= sv.MIN_SERVER_VER_FUND_DATA_FIELDS and c.secType == "FUND":
            fields += [
                details.fundName,
                details.fundFamily,
                details.fundType,
                details.fundFrontLoad,
                details.fundBackLoad,
                details.fundBackLoadTimeInterval,
                details.fundManagementFee,
                _b(details.fundClosed),
                _b(details.fundClosedForNewInvestors),
                _b(details.fundClosedForNewMoney),
                details.fundNotifyAmount,
                details.fundMinimumInitialPurchase,
                details.fundSubsequentMinimumPurchase,
                details.fundBlueSkyStates,
                details.fundBlueSkyTerritories,
                _pb_string(details.fundDistributionPolicyIndicator),
                _pb_string(details.fundAssetType),
            ]
        if v >= sv.MIN_SERVER_VER_INELIGIBILITY_REASONS:
            reasons = details.ineligibilityReasonList or ()
            fields.append(str(len(reasons)))
            for reason in reasons:
                fields += [reason.id_, reason.description]
        return self._text(IN.CONTRACT_DATA, fields)

    def contract_data_end(self, req_id: int) -> bytes:
        if self.uses_protobuf(IN.CONTRACT_DATA_END):
            return self._pb(IN.CONTRACT_DATA_END, ContractDataEnd(reqId=req_id))
        return self._text(IN.CONTRACT_DATA_END, ["1", _i(req_id)])

    # -- market data ---------------------------------------------------------------------------

    def tick_req_params(
        self, req_id: int, min_tick: float, bbo_exchange: str, snapshot_permissions: int
    ) -> bytes:
        if self.uses_protobuf(IN.TICK_REQ_PARAMS):
            proto = TickReqParams(
                reqId=req_id,
                minTick=str(min_tick),
                bboExchange=bbo_exchange,
                snapshotPermissions=snapshot_permissions,
            )
            return self._pb(IN.TICK_REQ_PARAMS, proto)
        fields = [_i(req_id), _f(min_tick), bbo_exchange, _i(snapshot_permissions)]
        return self._text(IN.TICK_REQ_PARAMS, fields)

    def market_data_type(self, req_id: int, market_data_type: int) -> bytes:
        if self.uses_protobuf(IN.MARKET_DATA_TYPE):
            proto = MarketDataType(reqId=req_id, marketDataType=market_data_type)
            return self._pb(IN.MARKET_DATA_TYPE, proto)
        return self._text(IN.MARKET_DATA_TYPE, ["1", _i(req_id), _i(market_data_type)])

    def tick_string(self, req_id: int, tick_type: int, value: str) -> bytes:
        if self.uses_protobuf(IN.TICK_STRING):
            proto = TickString(reqId=req_id, tickType=tick_type, value=value)
            return self._pb(IN.TICK_STRING, proto)
        return self._text(IN.TICK_STRING, ["6", _i(req_id), _i(tick_type), _esc(value)])

    def tick_generic(self, req_id: int, tick_type: int, value: float) -> bytes:
        if self.uses_protobuf(IN.TICK_GENERIC):
            proto = TickGeneric(reqId=req_id, tickType=tick_type, value=value)
            return self._pb(IN.TICK_GENERIC, proto)
        return self._text(IN.TICK_GENERIC, ["6", _i(req_id), _i(tick_type), _f(value)])

    def tick_snapshot_end(self, req_id: int) -> bytes:
        if self.uses_protobuf(IN.TICK_SNAPSHOT_END):
            return self._pb(IN.TICK_SNAPSHOT_END, TickSnapshotEnd(reqId=req_id))
        return self._text(IN.TICK_SNAPSHOT_END, ["1", _i(req_id)])

    # -- hot path: one text and one protobuf form each, bound in __init__ -----------------------

    def tick_price(
        self, req_id: int, tick_type: int, price: float, size: Decimal | float, attr_mask: int
    ) -> bytes:
        """A price tick. ibapi also reports ``size`` as tickSize for bid, ask and last
        (1, 2, 4 and delayed 66-68), from the text and the protobuf form alike.
        ``attr_mask``: 1 canAutoExecute, 2 pastLimit, 4 preOpen."""
        body = self._tick_price_id + (
            f"{req_id}\0{tick_type}\0{price!s}\0{size!s}\0{attr_mask}\0".encode()
        )
        return _LEN(len(body)) + body

    def tick_size(self, req_id: int, tick_type: int, size: Decimal | float) -> bytes:
        body = self._tick_size_id + f"{req_id}\0{tick_type}\0{size!s}\0".encode()
        return _LEN(len(body)) + body

    def update_mkt_depth(
        self,
        req_id: int,
        position: int,
        operation: int,
        side: int,
        price: float,
        size: Decimal | float,
    ) -> bytes:
        """A depth row. ``operation``: 0 insert, 1 update, 2 delete; ``side``: 0 ask, 1 bid."""
        body = self._depth_id + (
            f"{req_id}\0{position}\0{operation}\0{side}\0{price!s}\0{size!s}\0".encode()
        )
        return _LEN(len(body)) + body

    def update_mkt_depth_l2(
        self,
        req_id: int,
        position: int,
        market_maker: str,
        operation: int,
        side: int,
        price: float,
        size: Decimal | float,
        is_smart_depth: bool,
    ) -> bytes:
        smart = "1" if is_smart_depth else "0"
        text = (
            f"{req_id}\0{position}\0{market_maker}\0{operation}\0{side}\0"
            f"{price!s}\0{size!s}\0{smart}\0"
        )
        body = self._depth_l2_id + text.encode()
        return _LEN(len(body)) + body

    def tick_by_tick_all_last(
        self,
        req_id: int,
        tick_type: int,
        time_s: int,
        price: float,
        size: Decimal | float,
        mask: int,
        exchange: str,
        special_conditions: str,
    ) -> bytes:
        """A trade; ``tick_type`` 1 Last or 2 AllLast, ``mask`` 1 pastLimit, 2 unreported."""
        text = (
            f"{req_id}\0{tick_type}\0{time_s}\0{price!s}\0{size!s}\0{mask}\0"
            f"{exchange}\0{special_conditions}\0"
        )
        body = self._tbt_id + text.encode()
        return _LEN(len(body)) + body

    def tick_by_tick_bid_ask(
        self,
        req_id: int,
        time_s: int,
        bid_price: float,
        ask_price: float,
        bid_size: Decimal | float,
        ask_size: Decimal | float,
        mask: int,
    ) -> bytes:
        """A quote; ``mask`` 1 bidPastLow, 2 askPastHigh."""
        text = (
            f"{req_id}\0{_TBT_BID_ASK}\0{time_s}\0{bid_price!s}\0{ask_price!s}\0"
            f"{bid_size!s}\0{ask_size!s}\0{mask}\0"
        )
        body = self._tbt_id + text.encode()
        return _LEN(len(body)) + body

    def tick_by_tick_mid_point(self, req_id: int, time_s: int, mid_point: float) -> bytes:
        text = f"{req_id}\0{_TBT_MID_POINT}\0{time_s}\0{mid_point!s}\0"
        body = self._tbt_id + text.encode()
        return _LEN(len(body)) + body

    def _tick_price_pb(
        self, req_id: int, tick_type: int, price: float, size: Decimal | float, attr_mask: int
    ) -> bytes:
        m = self._m_tick_price
        m.reqId = req_id
        m.tickType = tick_type
        m.price = price
        m.size = str(size)
        m.attrMask = attr_mask
        body = self._tick_price_pb_id + m.SerializeToString()
        return _LEN(len(body)) + body

    def _tick_size_pb(self, req_id: int, tick_type: int, size: Decimal | float) -> bytes:
        m = self._m_tick_size
        m.reqId = req_id
        m.tickType = tick_type
        m.size = str(size)
        body = self._tick_size_pb_id + m.SerializeToString()
        return _LEN(len(body)) + body

    def _update_mkt_depth_pb(
        self,
        req_id: int,
        position: int,
        operation: int,
        side: int,
        price: float,
        size: Decimal | float,
    ) -> bytes:
        self._m_depth.reqId = req_id
        row = self._m_depth_row
        row.position = position
        row.operation = operation
        row.side = side
        row.price = price
        row.size = str(size)
        body = self._depth_pb_id + self._m_depth.SerializeToString()
        return _LEN(len(body)) + body

    def _update_mkt_depth_l2_pb(
        self,
        req_id: int,
        position: int,
        market_maker: str,
        operation: int,
        side: int,
        price: float,
        size: Decimal | float,
        is_smart_depth: bool,
    ) -> bytes:
        self._m_depth_l2.reqId = req_id
        row = self._m_depth_l2_row
        row.position = position
        row.marketMaker = market_maker
        row.operation = operation
        row.side = side
        row.price = price
        row.size = str(size)
        row.isSmartDepth = is_smart_depth
        body = self._depth_l2_pb_id + self._m_depth_l2.SerializeToString()
        return _LEN(len(body)) + body

    def _tick_by_tick_all_last_pb(
        self,
        req_id: int,
        tick_type: int,
        time_s: int,
        price: float,
        size: Decimal | float,
        mask: int,
        exchange: str,
        special_conditions: str,
    ) -> bytes:
        m = self._m_tbt_last
        m.reqId = req_id
        m.tickType = tick_type
        tick = self._m_tbt_last_tick
        tick.time = time_s
        self._m_tbt_last_attrib.pastLimit = bool(mask & 1)
        self._m_tbt_last_attrib.unreported = bool(mask & 2)
        tick.price = price
        tick.size = str(size)
        tick.exchange = exchange
        tick.specialConditions = special_conditions
        body = self._tbt_pb_id + m.SerializeToString()
        return _LEN(len(body)) + body

    def _tick_by_tick_bid_ask_pb(
        self,
        req_id: int,
        time_s: int,
        bid_price: float,
        ask_price: float,
        bid_size: Decimal | float,
        ask_size: Decimal | float,
        mask: int,
    ) -> bytes:
        self._m_tbt_bid_ask.reqId = req_id
        tick = self._m_tbt_bid_ask_tick
        tick.time = time_s
        self._m_tbt_bid_ask_attrib.bidPastLow = bool(mask & 1)
        self._m_tbt_bid_ask_attrib.askPastHigh = bool(mask & 2)
        tick.priceBid = bid_price
        tick.priceAsk = ask_price
        tick.sizeBid = str(bid_size)
        tick.sizeAsk = str(ask_size)
        body = self._tbt_pb_id + self._m_tbt_bid_ask.SerializeToString()
        return _LEN(len(body)) + body

    def _tick_by_tick_mid_point_pb(self, req_id: int, time_s: int, mid_point: float) -> bytes:
        self._m_tbt_mid.reqId = req_id
        self._m_tbt_mid_tick.time = time_s
        self._m_tbt_mid_tick.price = mid_point
        body = self._tbt_pb_id + self._m_tbt_mid.SerializeToString()
        return _LEN(len(body)) + body

    def _bind_hot_path(self) -> None:
        """Precompute id prefixes and pick each hot encoder's form once per connection.

        The protobuf forms refill one message per encoder and hold references to its nested
        messages too: a nested message handle costs as much to fetch as a field to set.
        """
        self._tick_price_id = self._id(IN.TICK_PRICE) + b"6\0"
        self._tick_size_id = self._id(IN.TICK_SIZE) + b"6\0"
        self._depth_id = self._id(IN.MARKET_DEPTH) + b"1\0"
        self._depth_l2_id = self._id(IN.MARKET_DEPTH_L2) + b"1\0"
        self._tbt_id = self._id(IN.TICK_BY_TICK)

        def pb_id(msg_id: int) -> bytes:
            return (msg_id + _PROTOBUF_ID_OFFSET).to_bytes(4, "big")

        if self.uses_protobuf(IN.TICK_PRICE):
            self._m_tick_price = TickPrice()
            self._tick_price_pb_id = pb_id(IN.TICK_PRICE)
            self.tick_price = self._tick_price_pb
        if self.uses_protobuf(IN.TICK_SIZE):
            self._m_tick_size = TickSize()
            self._tick_size_pb_id = pb_id(IN.TICK_SIZE)
            self.tick_size = self._tick_size_pb
        if self.uses_protobuf(IN.MARKET_DEPTH):
            self._m_depth = MarketDepth()
            self._m_depth_row = self._m_depth.marketDepthData
            self._depth_pb_id = pb_id(IN.MARKET_DEPTH)
            self.update_mkt_depth = self._update_mkt_depth_pb
        if self.uses_protobuf(IN.MARKET_DEPTH_L2):
            self._m_depth_l2 = MarketDepthL2()
            self._m_depth_l2_row = self._m_depth_l2.marketDepthData
            self._depth_l2_pb_id = pb_id(IN.MARKET_DEPTH_L2)
            self.update_mkt_depth_l2 = self._update_mkt_depth_l2_pb
        if self.uses_protobuf(IN.TICK_BY_TICK):
            self._m_tbt_last = TickByTickData()
            self._m_tbt_last_tick = self._m_tbt_last.historicalTickLast
            self._m_tbt_last_attrib = self._m_tbt_last_tick.tickAttribLast
            self._m_tbt_bid_ask = TickByTickData(tickType=int(_TBT_BID_ASK))
            self._m_tbt_bid_ask_tick = self._m_tbt_bid_ask.historicalTickBidAsk
            self._m_tbt_bid_ask_attrib = self._m_tbt_bid_ask_tick.tickAttribBidAsk
            self._m_tbt_mid = TickByTickData(tickType=int(_TBT_MID_POINT))
            self._m_tbt_mid_tick = self._m_tbt_mid.historicalTickMidPoint
            self._tbt_pb_id = pb_id(IN.TICK_BY_TICK)
            self.tick_by_tick_all_last = self._tick_by_tick_all_last_pb
            self.tick_by_tick_bid_ask = self._tick_by_tick_bid_ask_pb
            self.tick_by_tick_mid_point = self._tick_by_tick_mid_point_pb

    # -- historical bars -----------------------------------------------------------------------

    def historical_data(self, req_id: int, bars: Sequence[BarData], start: str, end: str) -> bytes:
        """All bars of a request and its end marker: one frame below 196, two from 196 on."""
        if self.uses_protobuf(IN.HISTORICAL_DATA):
            proto = HistoricalData(reqId=req_id, historicalDataBars=[_bar_pb(b) for b in bars])
            end_pb = HistoricalDataEnd(reqId=req_id, startDateStr=start, endDateStr=end)
            return self._pb(IN.HISTORICAL_DATA, proto) + self._pb(IN.HISTORICAL_DATA_END, end_pb)
        split_end = self.server_version >= sv.MIN_SERVER_VER_HISTORICAL_DATA_END
        fields = [_i(req_id)] if split_end else [_i(req_id), start, end]
        fields.append(str(len(bars)))
        for bar in bars:
            fields += [
                bar.date,
                _f(bar.open),
                _f(bar.high),
                _f(bar.low),
                _f(bar.close),
                _d(bar.volume),
                _d(bar.wap),
                _i(bar.barCount),
            ]
        frames = self._text(IN.HISTORICAL_DATA, fields)
        if split_end:
            frames += self._text(IN.HISTORICAL_DATA_END, [_i(req_id), start, end])
        return frames

    def historical_data_update(self, req_id: int, bar: BarData) -> bytes:
        """A keepUpToDate bar; the text form orders its prices open, close, high, low."""
        if self.uses_protobuf(IN.HISTORICAL_DATA_UPDATE):
            proto = HistoricalDataUpdate(reqId=req_id, historicalDataBar=_bar_pb(bar))
            return self._pb(IN.HISTORICAL_DATA_UPDATE, proto)
        fields = [
            _i(req_id),
            _i(bar.barCount),
            bar.date,
            _f(bar.open),
            _f(bar.close),
            _f(bar.high),
            _f(bar.low),
            _d(bar.wap),
            _d(bar.volume),
        ]
        return self._text(IN.HISTORICAL_DATA_UPDATE, fields)

    # -- orders --------------------------------------------------------------------------------

    def open_order(
        self, order_id: int, contract: Contract, order: Order, order_state: OrderState
    ) -> bytes:
        """An order and its state (``processOpenOrder`` plus ``OrderDecoder``).

        The text form has no primaryExchange. ``trailStopPrice`` travels twice, in the trail
        block and again in the adjusted-order block, and ibapi keeps the second.
        """
        if self.uses_protobuf(IN.OPEN_ORDER):
            proto = OpenOrder(
                orderId=order_id,
                contract=_contract_pb(contract, order),
                order=_order_pb(order),
                orderState=_order_state_pb(order_state),
            )
            return self._pb(IN.OPEN_ORDER, proto)

        v = self.server_version
        o, st = order, order_state
        fields = [_i(order_id), *_contract_fields(contract)]
        fields += [
            o.action,
            _d(o.totalQuantity),
            o.orderType,
            _f(o.lmtPrice),
            _f(o.auxPrice),
            o.tif,
            o.ocaGroup,
            o.account,
            o.openClose,
            _i(o.origin),
            o.orderRef,
            _i(o.clientId),
            _i(o.permId),
            _b(o.outsideRth),
            _b(o.hidden),
            _f(o.discretionaryAmt),
            o.goodAfterTime,
            "",  # sharesAllocation, deprecated
            o.faGroup,
            o.faMethod,
            o.faPercentage,
        ]
        if v < sv.MIN_SERVER_VER_FA_PROFILE_DESUPPORT:
            fields.append("")  # faProfile
        fields += [
            o.modelCode,
            o.goodTillDate,
            o.rule80A,
            _f(o.percentOffset),
            o.settlingFirm,
            _i(o.shortSaleSlot),
            o.designatedLocation,
            _i(o.exemptCode),
            _i(o.auctionStrategy),
            _f(o.startingPrice),
            _f(o.stockRefPrice),
            _f(o.delta),
            _f(o.stockRangeLower),
            _f(o.stockRangeUpper),
            _i(o.displaySize),
            _b(o.blockOrder),
            _b(o.sweepToFill),
            _b(o.allOrNone),
            _i(o.minQty),
            _i(o.ocaType),
            "0",  # eTradeOnly, deprecated
            "0",  # firmQuoteOnly, deprecated
            _UNSET_DOUBLE_TEXT,  # nbboPriceCap, deprecated
            _i(o.parentId),
            _i(o.triggerMethod),
            _f(o.volatility),
            _i(o.volatilityType),
            o.deltaNeutralOrderType,
            _f(o.deltaNeutralAuxPrice),
        ]
        if o.deltaNeutralOrderType:
            fields += [
                _i(o.deltaNeutralConId),
                o.deltaNeutralSettlingFirm,
                o.deltaNeutralClearingAccount,
                o.deltaNeutralClearingIntent,
                o.deltaNeutralOpenClose,
                _b(o.deltaNeutralShortSale),
                _i(o.deltaNeutralShortSaleSlot),
                o.deltaNeutralDesignatedLocation,
            ]
        fields += [
            _b(o.continuousUpdate),
            _i(o.referencePriceType),
            _f(o.trailStopPrice),
            _f(o.trailingPercent),
            _f(o.basisPoints),
            _i(o.basisPointsType),
            *_combo_fields(contract, o),
            *_pairs(o.smartComboRoutingParams),
            *_scale_hedge_fields(o),
            _b(o.optOutSmartRouting),
            o.clearingAccount,
            o.clearingIntent,
            _b(o.notHeld),
            *_delta_neutral_contract_fields(contract),
            *_algo_fields(o),
            _b(o.solicited),
            _b(o.whatIf),
            st.status,
            st.initMarginBefore,
            st.maintMarginBefore,
            st.equityWithLoanBefore,
            st.initMarginChange,
            st.maintMarginChange,
            st.equityWithLoanChange,
            st.initMarginAfter,
            st.maintMarginAfter,
            st.equityWithLoanAfter,
            _f(st.commissionAndFees),
            _f(st.minCommissionAndFees),
            _f(st.maxCommissionAndFees),
            st.commissionAndFeesCurrency,
        ]
        if v >= sv.MIN_SERVER_VER_FULL_ORDER_PREVIEW_FIELDS:
            allocations = st.orderAllocations or ()
            fields += [
                st.marginCurrency,
                _f(st.initMarginBeforeOutsideRTH),
                _f(st.maintMarginBeforeOutsideRTH),
                _f(st.equityWithLoanBeforeOutsideRTH),
                _f(st.initMarginChangeOutsideRTH),
                _f(st.maintMarginChangeOutsideRTH),
                _f(st.equityWithLoanChangeOutsideRTH),
                _f(st.initMarginAfterOutsideRTH),
                _f(st.maintMarginAfterOutsideRTH),
                _f(st.equityWithLoanAfterOutsideRTH),
                _d(st.suggestedSize),
                st.rejectReason,
                str(len(allocations)),
            ]
            for a in allocations:
                fields += [
                    a.account,
                    _d(a.position),
                    _d(a.positionDesired),
                    _d(a.positionAfter),
                    _d(a.desiredAllocQty),
                    _d(a.allowedAllocQty),
                    _b(a.isMonetary),
                ]
        fields += [
            st.warningText,
            _b(o.randomizeSize),
            _b(o.randomizePrice),
            *_peg_bench_and_conditions_fields(o),
            o.adjustedOrderType,
            _f(o.triggerPrice),
            _f(o.trailStopPrice),
            _f(o.lmtPriceOffset),
            _f(o.adjustedStopPrice),
            _f(o.adjustedStopLimitPrice),
            _f(o.adjustedTrailingAmount),
            _i(o.adjustableTrailingUnit),
            o.softDollarTier.name,
            o.softDollarTier.val,
            o.softDollarTier.displayName,
            _f(o.cashQty),
            _b(o.dontUseAutoPriceForHedge),
            _b(o.isOmsContainer),
            _b(o.discretionaryUpToLimitPrice),
            _b(o.usePriceMgmtAlgo),
        ]
        if v >= sv.MIN_SERVER_VER_DURATION:
            fields.append(_i(o.duration))
        if v >= sv.MIN_SERVER_VER_POST_TO_ATS:
            fields.append(_i(o.postToAts))
        if v >= sv.MIN_SERVER_VER_AUTO_CANCEL_PARENT:
            fields.append(_b(o.autoCancelParent))
        if v >= sv.MIN_SERVER_VER_PEGBEST_PEGMID_OFFSETS:
            fields += _peg_best_mid_fields(o)
        if v >= sv.MIN_SERVER_VER_CUSTOMER_ACCOUNT:
            fields.append(o.customerAccount)
        if v >= sv.MIN_SERVER_VER_PROFESSIONAL_CUSTOMER:
            fields.append(_b(o.professionalCustomer))
        if v >= sv.MIN_SERVER_VER_BOND_ACCRUED_INTEREST:
            fields.append(o.bondAccruedInterest)
        if v >= sv.MIN_SERVER_VER_INCLUDE_OVERNIGHT:
            fields.append(_b(o.includeOvernight))
        if v >= sv.MIN_SERVER_VER_CME_TAGGING_FIELDS_IN_OPEN_ORDER:
            fields += [o.extOperator, _i(o.manualOrderIndicator)]
        if v >= sv.MIN_SERVER_VER_SUBMITTER:
            fields.append(o.submitter)
        if v >= sv.MIN_SERVER_VER_IMBALANCE_ONLY:
            fields.append(_b(o.imbalanceOnly))
        return self._text(IN.OPEN_ORDER, fields)

    def order_status(
        self,
        order_id: int,
        status: str,
        filled: Decimal | float,
        remaining: Decimal | float,
        avg_fill_price: float,
        perm_id: int,
        parent_id: int,
        last_fill_price: float,
        client_id: int,
        why_held: str,
        mkt_cap_price: float,
    ) -> bytes:
        if self.uses_protobuf(IN.ORDER_STATUS):
            proto = OrderStatus(
                orderId=order_id,
                status=status,
                filled=str(filled),
                remaining=str(remaining),
                avgFillPrice=avg_fill_price,
                permId=perm_id,
                parentId=parent_id,
                lastFillPrice=last_fill_price,
                clientId=client_id,
                whyHeld=why_held,
                mktCapPrice=mkt_cap_price,
            )
            return self._pb(IN.ORDER_STATUS, proto)
        fields = [
            _i(order_id),
            status,
            _d(filled),
            _d(remaining),
            _f(avg_fill_price),
            _i(perm_id),
            _i(parent_id),
            _f(last_fill_price),
            _i(client_id),
            why_held,
            _f(mkt_cap_price),
        ]
        return self._text(IN.ORDER_STATUS, fields)

    def open_order_end(self) -> bytes:
        if self.uses_protobuf(IN.OPEN_ORDER_END):
            return self._pb(IN.OPEN_ORDER_END, OpenOrdersEnd())
        return self._text(IN.OPEN_ORDER_END, ["1"])

    def completed_order(self, contract: Contract, order: Order, order_state: OrderState) -> bytes:
        """A filled, cancelled or inactive order (``processCompletedOrderMsg``).

        The text layout carries neither orderId, clientId nor parentId: TWS leaves them out.
        """
        if self.uses_protobuf(IN.COMPLETED_ORDER):
            proto = CompletedOrder(
                contract=_contract_pb(contract, order),
                order=_order_pb(order),
                orderState=_order_state_pb(order_state),
            )
            return self._pb(IN.COMPLETED_ORDER, proto)

        v = self.server_version
        o, st = order, order_state
        fields = [
            *_contract_fields(contract),
            o.action,
            _d(o.totalQuantity),
            o.orderType,
            _f(o.lmtPrice),
            _f(o.auxPrice),
            o.tif,
            o.ocaGroup,
            o.account,
            o.openClose,
            _i(o.origin),
            o.orderRef,
            _i(o.permId),
            _b(o.outsideRth),
            _b(o.hidden),
            _f(o.discretionaryAmt),
            o.goodAfterTime,
            o.faGroup,
            o.faMethod,
            o.faPercentage,
        ]
        if v < sv.MIN_SERVER_VER_FA_PROFILE_DESUPPORT:
            fields.append("")  # faProfile
        fields += [
            o.modelCode,
            o.goodTillDate,
            o.rule80A,
            _f(o.percentOffset),
            o.settlingFirm,
            _i(o.shortSaleSlot),
            o.designatedLocation,
            _i(o.exemptCode),
            _f(o.startingPrice),
            _f(o.stockRefPrice),
            _f(o.delta),
            _f(o.stockRangeLower),
            _f(o.stockRangeUpper),
            _i(o.displaySize),
            _b(o.sweepToFill),
            _b(o.allOrNone),
            _i(o.minQty),
            _i(o.ocaType),
            _i(o.triggerMethod),
            _f(o.volatility),
            _i(o.volatilityType),
            o.deltaNeutralOrderType,
            _f(o.deltaNeutralAuxPrice),
        ]
        if o.deltaNeutralOrderType:
            fields += [
                _i(o.deltaNeutralConId),
                _b(o.deltaNeutralShortSale),
                _i(o.deltaNeutralShortSaleSlot),
                o.deltaNeutralDesignatedLocation,
            ]
        fields += [
            _b(o.continuousUpdate),
            _i(o.referencePriceType),
            _f(o.trailStopPrice),
            _f(o.trailingPercent),
            *_combo_fields(contract, o),
            *_pairs(o.smartComboRoutingParams),
            *_scale_hedge_fields(o),
            o.clearingAccount,
            o.clearingIntent,
            _b(o.notHeld),
            *_delta_neutral_contract_fields(contract),
            *_algo_fields(o),
            _b(o.solicited),
            st.status,
            _b(o.randomizeSize),
            _b(o.randomizePrice),
            *_peg_bench_and_conditions_fields(o),
            _f(o.trailStopPrice),
            _f(o.lmtPriceOffset),
            _f(o.cashQty),
            _b(o.dontUseAutoPriceForHedge),
            _b(o.isOmsContainer),
            o.autoCancelDate,
            _d(o.filledQuantity),
            _i(o.refFuturesConId),
            _b(o.autoCancelParent),
            o.shareholder,
            _b(o.imbalanceOnly),
            _b(o.routeMarketableToBbo),
            _i(o.parentPermId),
            st.completedTime,
            st.completedStatus,
        ]
        if v >= sv.MIN_SERVER_VER_PEGBEST_PEGMID_OFFSETS:
            fields += _peg_best_mid_fields(o)
        if v >= sv.MIN_SERVER_VER_CUSTOMER_ACCOUNT:
            fields.append(o.customerAccount)
        if v >= sv.MIN_SERVER_VER_PROFESSIONAL_CUSTOMER:
            fields.append(_b(o.professionalCustomer))
        if v >= sv.MIN_SERVER_VER_SUBMITTER:
            fields.append(o.submitter)
        return self._text(IN.COMPLETED_ORDER, fields)

    def completed_orders_end(self) -> bytes:
        if self.uses_protobuf(IN.COMPLETED_ORDERS_END):
            return self._pb(IN.COMPLETED_ORDERS_END, CompletedOrdersEnd())
        return self._text(IN.COMPLETED_ORDERS_END, [])

    # -- executions ----------------------------------------------------------------------------

    def exec_details(self, req_id: int, contract: Contract, execution: Execution) -> bytes:
        """A fill; ``req_id`` is -1 for fills nobody asked for with reqExecutions."""
        if self.uses_protobuf(IN.EXECUTION_DATA):
            proto = ExecutionDetails(reqId=req_id, contract=_contract_pb(contract))
            _fill(proto.execution, execution, _EXECUTION_PLAN)
            return self._pb(IN.EXECUTION_DATA, proto)
        e = execution
        fields = [
            _i(req_id),
            _i(e.orderId),
            *_contract_fields(contract),
            e.execId,
            e.time,
            e.acctNumber,
            e.exchange,
            e.side,
            _d(e.shares),
            _f(e.price),
            _i(e.permId),
            _i(e.clientId),
            _i(e.liquidation),
            _d(e.cumQty),
            _f(e.avgPrice),
            e.orderRef,
            e.evRule,
            _f(e.evMultiplier),
            e.modelCode,
            _i(e.lastLiquidity),
        ]
        if self.server_version >= sv.MIN_SERVER_VER_PENDING_PRICE_REVISION:
            fields.append(_b(e.pendingPriceRevision))
        if self.server_version >= sv.MIN_SERVER_VER_SUBMITTER:
            fields.append(e.submitter)
        return self._text(IN.EXECUTION_DATA, fields)

    def exec_details_end(self, req_id: int) -> bytes:
        if self.uses_protobuf(IN.EXECUTION_DATA_END):
            return self._pb(IN.EXECUTION_DATA_END, ExecutionDetailsEnd(reqId=req_id))
        return self._text(IN.EXECUTION_DATA_END, ["1", _i(req_id)])

    def commission_and_fees_report(self, report: CommissionAndFeesReport) -> bytes:
        if self.uses_protobuf(IN.COMMISSION_AND_FEES_REPORT):
            proto = CommissionAndFeesReportProto(
                execId=report.execId,
                commissionAndFees=report.commissionAndFees,
                currency=report.currency,
                realizedPNL=report.realizedPNL,
                bondYield=report.yield_,
                yieldRedemptionDate=str(report.yieldRedemptionDate),
            )
            return self._pb(IN.COMMISSION_AND_FEES_REPORT, proto)
        fields = [
            "1",
            report.execId,
            _f(report.commissionAndFees),
            report.currency,
            _f(report.realizedPNL),
            _f(report.yield_),
            _i(report.yieldRedemptionDate),
        ]
        return self._text(IN.COMMISSION_AND_FEES_REPORT, fields)

    # -- positions and accounts ----------------------------------------------------------------

    def position(
        self, account: str, contract: Contract, position: Decimal | float, avg_cost: float
    ) -> bytes:
        if self.uses_protobuf(IN.POSITION_DATA):
            proto = Position(
                account=account,
                contract=_contract_pb(contract),
                position=str(position),
                avgCost=avg_cost,
            )
            return self._pb(IN.POSITION_DATA, proto)
        fields = ["3", account, *_contract_fields(contract), _d(position), _f(avg_cost)]
        return self._text(IN.POSITION_DATA, fields)

    def position_end(self) -> bytes:
        if self.uses_protobuf(IN.POSITION_END):
            return self._pb(IN.POSITION_END, PositionEnd())
        return self._text(IN.POSITION_END, ["1"])

    def account_summary(
        self, req_id: int, account: str, tag: str, value: str, currency: str
    ) -> bytes:
        if self.uses_protobuf(IN.ACCOUNT_SUMMARY):
            proto = AccountSummary(
                reqId=req_id, account=account, tag=tag, value=value, currency=currency
            )
            return self._pb(IN.ACCOUNT_SUMMARY, proto)
        fields = ["1", _i(req_id), _esc(account), _esc(tag), _esc(value), _esc(currency)]
        return self._text(IN.ACCOUNT_SUMMARY, fields)

    def account_summary_end(self, req_id: int) -> bytes:
        if self.uses_protobuf(IN.ACCOUNT_SUMMARY_END):
            return self._pb(IN.ACCOUNT_SUMMARY_END, AccountSummaryEnd(reqId=req_id))
        return self._text(IN.ACCOUNT_SUMMARY_END, ["1", _i(req_id)])

    def update_account_value(self, key: str, value: str, currency: str, account: str) -> bytes:
        if self.uses_protobuf(IN.ACCT_VALUE):
            proto = AccountValue(key=key, value=value, currency=currency, accountName=account)
            return self._pb(IN.ACCT_VALUE, proto)
        fields = ["2", _esc(key), _esc(value), _esc(currency), _esc(account)]
        return self._text(IN.ACCT_VALUE, fields)

    def update_portfolio(
        self,
        contract: Contract,
        position: Decimal | float,
        market_price: float,
        market_value: float,
        average_cost: float,
        unrealized_pnl: float,
        realized_pnl: float,
        account: str,
    ) -> bytes:
        """A portfolio row; the text form carries primaryExchange but not exchange."""
        if self.uses_protobuf(IN.PORTFOLIO_VALUE):
            proto = PortfolioValue(
                contract=_contract_pb(contract),
                position=str(position),
                marketPrice=market_price,
                marketValue=market_value,
                averageCost=average_cost,
                unrealizedPNL=unrealized_pnl,
                realizedPNL=realized_pnl,
                accountName=account,
            )
            return self._pb(IN.PORTFOLIO_VALUE, proto)
        c = contract
        fields = [
            "8",
            _i(c.conId),
            c.symbol,
            c.secType,
            c.lastTradeDateOrContractMonth,
            _f(c.strike),
            c.right,
            c.multiplier,
            c.primaryExchange,
            c.currency,
            c.localSymbol,
            c.tradingClass,
            _d(position),
            _f(market_price),
            _f(market_value),
            _f(average_cost),
            _f(unrealized_pnl),
            _f(realized_pnl),
            account,
        ]
        return self._text(IN.PORTFOLIO_VALUE, fields)

    def update_account_time(self, time_hhmm: str) -> bytes:
        if self.uses_protobuf(IN.ACCT_UPDATE_TIME):
            return self._pb(IN.ACCT_UPDATE_TIME, AccountUpdateTime(timeStamp=time_hhmm))
        return self._text(IN.ACCT_UPDATE_TIME, ["1", _esc(time_hhmm)])

    def account_download_end(self, account: str) -> bytes:
        if self.uses_protobuf(IN.ACCT_DOWNLOAD_END):
            return self._pb(IN.ACCT_DOWNLOAD_END, AccountDataEnd(accountName=account))
        return self._text(IN.ACCT_DOWNLOAD_END, ["1", _esc(account)])

    def account_update_multi(
        self, req_id: int, account: str, model_code: str, key: str, value: str, currency: str
    ) -> bytes:
        if self.uses_protobuf(IN.ACCOUNT_UPDATE_MULTI):
            proto = AccountUpdateMulti(
                reqId=req_id,
                account=account,
                modelCode=model_code,
                key=key,
                value=value,
                currency=currency,
            )
            return self._pb(IN.ACCOUNT_UPDATE_MULTI, proto)
        strings = [_esc(s) for s in (account, model_code, key, value, currency)]
        return self._text(IN.ACCOUNT_UPDATE_MULTI, ["1", _i(req_id), *strings])

    def account_update_multi_end(self, req_id: int) -> bytes:
        if self.uses_protobuf(IN.ACCOUNT_UPDATE_MULTI_END):
            proto = AccountUpdateMultiEnd(reqId=req_id)
            return self._pb(IN.ACCOUNT_UPDATE_MULTI_END, proto)
        return self._text(IN.ACCOUNT_UPDATE_MULTI_END, ["1", _i(req_id)])
