"""Client → server TWS API requests, parsed from frames at a negotiated server version.

``parse_request(server_version, payload)`` turns one frame's payload (length prefix removed)
into one of the request types below. Contracts, orders and execution filters come back as
``ibapi`` objects so the simulator and clients share one vocabulary.

How versions are handled:

- **Message id.** Below 201 (``MIN_SERVER_VER_PROTOBUF``) the id is the first NUL-terminated
  ASCII field; from 201 it is a raw 4-byte big-endian integer, and an id above 200 means a
  protobuf body for request ``id - 200``. ``msg_id`` in ``Unsupported`` and
  ``MalformedRequest`` is the id as it appears on the wire (e.g. 203 for a protobuf
  placeOrder).
- **Text fields** are read mirroring ``ibapi.client.EClient``'s encoder for that request at
  that server version: every ``serverVersion() >= MIN_SERVER_VER_...`` gate in the encoder is a
  gate here, named with the same constant. Only versions ibapi can negotiate are accepted
  (``MIN_CLIENT_VER`` 100 to ``MAX_CLIENT_VER`` 225); gates below 100 are always open and are
  not spelled out. Empty means UNSET (``UNSET_INTEGER``, ``UNSET_DOUBLE``, ``UNSET_DECIMAL``),
  as ibapi's ``make_field_handle_empty`` writes it; "Infinity" (ibapi) and "Infinite"
  (ib_async) both mean ``math.inf``. Deprecated fields the encoder still sends
  (sharesAllocation, faProfile, eTradeOnly, ...) are read and dropped. A frame must use up
  exactly the fields its layout defines: fewer means truncated, more means it was encoded for
  another server version.
- **Protobuf bodies** are accepted whatever the version (from 201, where raw ids make them
  possible), because the id says which form it is; ibapi itself switches family by family
  (``common.PROTOBUF_MSG_IDS``). ``client_utils`` sets a field only when it holds a value, so
  an absent field is read back as what ibapi must have held to leave it out: False for
  booleans (``Order.transmit`` included), "" for strings and the UNSET sentinel for request
  numbers. Numbers of a Contract, Order or ExecutionFilter keep the ibapi constructor default
  (the UNSET sentinel wherever ibapi has one; 0 for ids such as ``conId`` and ``parentId``).

A frame that cannot be read raises ``MalformedRequest`` (carrying the message id when known)
and never any other exception; an id the simulator does not implement comes back as
``Unsupported`` so the gateway can answer it the way a real gateway does instead of failing.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from google.protobuf.message import DecodeError, Message
from ibapi.common import PROTOBUF_MSG_ID
from ibapi.const import UNSET_DECIMAL, UNSET_DOUBLE, UNSET_INTEGER
from ibapi.contract import ComboLeg, Contract, DeltaNeutralContract
from ibapi.execution import ExecutionFilter
from ibapi.message import OUT
from ibapi.order import Order, OrderComboLeg
from ibapi.order_condition import Create as create_condition
from ibapi.order_condition import OrderCondition
from ibapi.protobuf.AccountDataRequest_pb2 import AccountDataRequest as AccountDataRequestProto
from ibapi.protobuf.AccountSummaryRequest_pb2 import (
    AccountSummaryRequest as AccountSummaryRequestProto,
)
from ibapi.protobuf.AccountUpdatesMultiRequest_pb2 import (
    AccountUpdatesMultiRequest as AccountUpdatesMultiRequestProto,
)
from ibapi.protobuf.AllOpenOrdersRequest_pb2 import (
    AllOpenOrdersRequest as AllOpenOrdersRequestProto,
)
from ibapi.protobuf.AutoOpenOrdersRequest_pb2 import (
    AutoOpenOrdersRequest as AutoOpenOrdersRequestProto,
)
from ibapi.protobuf.CancelAccountSummary_pb2 import (
    CancelAccountSummary as CancelAccountSummaryProto,
)
from ibapi.protobuf.CancelAccountUpdatesMulti_pb2 import (
    CancelAccountUpdatesMulti as CancelAccountUpdatesMultiProto,
)
from ibapi.protobuf.CancelHistoricalData_pb2 import (
    CancelHistoricalData as CancelHistoricalDataProto,
)
from ibapi.protobuf.CancelMarketData_pb2 import CancelMarketData as CancelMarketDataProto
from ibapi.protobuf.CancelMarketDepth_pb2 import CancelMarketDepth as CancelMarketDepthProto
from ibapi.protobuf.CancelOrderRequest_pb2 import CancelOrderRequest as CancelOrderRequestProto
from ibapi.protobuf.CancelPositions_pb2 import CancelPositions as CancelPositionsProto
from ibapi.protobuf.CancelTickByTick_pb2 import CancelTickByTick as CancelTickByTickProto
from ibapi.protobuf.CompletedOrdersRequest_pb2 import (
    CompletedOrdersRequest as CompletedOrdersRequestProto,
)
from ibapi.protobuf.ContractDataRequest_pb2 import ContractDataRequest as ContractDataRequestProto
from ibapi.protobuf.CurrentTimeInMillisRequest_pb2 import (
    CurrentTimeInMillisRequest as CurrentTimeInMillisRequestProto,
)
from ibapi.protobuf.CurrentTimeRequest_pb2 import CurrentTimeRequest as CurrentTimeRequestProto
from ibapi.protobuf.ExecutionRequest_pb2 import ExecutionRequest as ExecutionRequestProto
from ibapi.protobuf.GlobalCancelRequest_pb2 import GlobalCancelRequest as GlobalCancelRequestProto
from ibapi.protobuf.HistoricalDataRequest_pb2 import (
    HistoricalDataRequest as HistoricalDataRequestProto,
)
from ibapi.protobuf.IdsRequest_pb2 import IdsRequest as IdsRequestProto
from ibapi.protobuf.ManagedAccountsRequest_pb2 import (
    ManagedAccountsRequest as ManagedAccountsRequestProto,
)
from ibapi.protobuf.MarketDataRequest_pb2 import MarketDataRequest as MarketDataRequestProto
from ibapi.protobuf.MarketDataTypeRequest_pb2 import (
    MarketDataTypeRequest as MarketDataTypeRequestProto,
)
from ibapi.protobuf.MarketDepthRequest_pb2 import MarketDepthRequest as MarketDepthRequestProto
from ibapi.protobuf.MarketRuleRequest_pb2 import MarketRuleRequest as MarketRuleRequestProto
from ibapi.protobuf.OpenOrdersRequest_pb2 import OpenOrdersRequest as OpenOrdersRequestProto
from ibapi.protobuf.PlaceOrderRequest_pb2 import PlaceOrderRequest as PlaceOrderRequestProto
from ibapi.protobuf.PositionsRequest_pb2 import PositionsRequest as PositionsRequestProto
from ibapi.protobuf.StartApiRequest_pb2 import StartApiRequest as StartApiRequestProto
from ibapi.protobuf.TickByTickRequest_pb2 import TickByTickRequest as TickByTickRequestProto
from ibapi.server_versions import (
    MAX_CLIENT_VER,
    MIN_CLIENT_VER,
    MIN_SERVER_VER_ADVANCED_ORDER_REJECT,
    MIN_SERVER_VER_AUTO_CANCEL_PARENT,
    MIN_SERVER_VER_AUTO_PRICE_FOR_HEDGE,
    MIN_SERVER_VER_BOND_ISSUERID,
    MIN_SERVER_VER_CASH_QTY,
    MIN_SERVER_VER_CME_TAGGING_FIELDS,
    MIN_SERVER_VER_CUSTOMER_ACCOUNT,
    MIN_SERVER_VER_D_PEG_ORDERS,
    MIN_SERVER_VER_DECISION_MAKER,
    MIN_SERVER_VER_DURATION,
    MIN_SERVER_VER_EXT_OPERATOR,
    MIN_SERVER_VER_FA_PROFILE_DESUPPORT,
    MIN_SERVER_VER_IMBALANCE_ONLY,
    MIN_SERVER_VER_INCLUDE_OVERNIGHT,
    MIN_SERVER_VER_MANUAL_ORDER_TIME,
    MIN_SERVER_VER_MIFID_EXECUTION,
    MIN_SERVER_VER_MKT_DEPTH_PRIM_EXCHANGE,
    MIN_SERVER_VER_MODELS_SUPPORT,
    MIN_SERVER_VER_ORDER_CONTAINER,
    MIN_SERVER_VER_PARAMETRIZED_DAYS_OF_EXECUTIONS,
    MIN_SERVER_VER_PEGBEST_PEGMID_OFFSETS,
    MIN_SERVER_VER_PEGGED_TO_BENCHMARK,
    MIN_SERVER_VER_POST_TO_ATS,
    MIN_SERVER_VER_PRICE_MGMT_ALGO,
    MIN_SERVER_VER_PROFESSIONAL_CUSTOMER,
    MIN_SERVER_VER_PROTOBUF,
    MIN_SERVER_VER_REQ_SMART_COMPONENTS,
    MIN_SERVER_VER_RFQ_FIELDS,
    MIN_SERVER_VER_SMART_DEPTH,
    MIN_SERVER_VER_SOFT_DOLLAR_TIER,
    MIN_SERVER_VER_SYNT_REALTIME_BARS,
    MIN_SERVER_VER_TICK_BY_TICK_IGNORE_SIZE,
    MIN_SERVER_VER_UNDO_RFQ_FIELDS,
)
from ibapi.softdollartier import SoftDollarTier
from ibapi.tag_value import TagValue
from ibapi.utils import floatMaxString, isPegBenchOrder, isPegBestOrder, isPegMidOrder


class MalformedRequest(ValueError):
    """A frame that cannot be parsed: truncated, a field of the wrong type, bad protobuf."""

    def __init__(self, msg_id: int | None, reason: str) -> None:
        super().__init__(f"message id {msg_id}: {reason}" if msg_id is not None else reason)
        self.msg_id = msg_id
        self.reason = reason


@dataclass(slots=True)
class Unsupported:
    """A well-framed message whose id the simulator does not implement."""

    msg_id: int


@dataclass(slots=True)
class StartApi:
    client_id: int
    optional_capabilities: str = ""


@dataclass(slots=True)
class ReqCurrentTime:
    pass


@dataclass(slots=True)
class ReqCurrentTimeMillis:
    pass


@dataclass(slots=True)
class ReqIds:
    num_ids: int


@dataclass(slots=True)
class ReqMarketRule:
    market_rule_id: int


@dataclass(slots=True)
class ReqContractDetails:
    req_id: int
    contract: Contract


@dataclass(slots=True)
class ReqMktData:
    req_id: int
    contract: Contract
    generic_tick_list: str = ""
    snapshot: bool = False
    regulatory_snapshot: bool = False
    market_data_options: list[TagValue] = field(default_factory=list)


@dataclass(slots=True)
class CancelMktData:
    req_id: int


@dataclass(slots=True)
class ReqMarketDataType:
    market_data_type: int


@dataclass(slots=True)
class ReqMktDepth:
    req_id: int
    contract: Contract
    num_rows: int
    is_smart_depth: bool = False
    market_depth_options: list[TagValue] = field(default_factory=list)


@dataclass(slots=True)
class CancelMktDepth:
    req_id: int
    is_smart_depth: bool = False


@dataclass(slots=True)
class ReqTickByTickData:
    req_id: int
    contract: Contract
    tick_type: str  # "Last", "AllLast", "BidAsk", "MidPoint"
    number_of_ticks: int = 0
    ignore_size: bool = False


@dataclass(slots=True)
class CancelTickByTickData:
    req_id: int


@dataclass(slots=True)
class ReqHistoricalData:
    req_id: int
    contract: Contract
    end_date_time: str
    duration: str
    bar_size: str
    what_to_show: str
    use_rth: bool
    format_date: int
    keep_up_to_date: bool
    chart_options: list[TagValue] = field(default_factory=list)


@dataclass(slots=True)
class CancelHistoricalData:
    req_id: int


@dataclass(slots=True)
class PlaceOrder:
    order_id: int
    contract: Contract
    order: Order  # order.orderId is set to order_id


@dataclass(slots=True)
class CancelOrder:
    order_id: int
    manual_order_cancel_time: str = ""
    ext_operator: str = ""
    manual_order_indicator: int = UNSET_INTEGER


@dataclass(slots=True)
class ReqGlobalCancel:
    ext_operator: str = ""
    manual_order_indicator: int = UNSET_INTEGER


@dataclass(slots=True)
class ReqOpenOrders:
    pass


@dataclass(slots=True)
class ReqAllOpenOrders:
    pass


@dataclass(slots=True)
class ReqAutoOpenOrders:
    auto_bind: bool


@dataclass(slots=True)
class ReqCompletedOrders:
    api_only: bool


@dataclass(slots=True)
class ReqPositions:
    pass


@dataclass(slots=True)
class CancelPositions:
    pass


@dataclass(slots=True)
class ReqAccountSummary:
    req_id: int
    group: str
    tags: str


@dataclass(slots=True)
class CancelAccountSummary:
    req_id: int


@dataclass(slots=True)
class ReqAccountUpdates:
    subscribe: bool
    account: str


@dataclass(slots=True)
class ReqAccountUpdatesMulti:
    req_id: int
    account: str
    model_code: str = ""
    ledger_and_nlv: bool = False


@dataclass(slots=True)
class CancelAccountUpdatesMulti:
    req_id: int


@dataclass(slots=True)
class ReqExecutions:
    req_id: int
    exec_filter: ExecutionFilter = field(default_factory=ExecutionFilter)


@dataclass(slots=True)
class ReqManagedAccts:
    pass


Request = (
    StartApi
    | ReqCurrentTime
    | ReqCurrentTimeMillis
    | ReqIds
    | ReqMarketRule
    | ReqContractDetails
    | ReqMktData
    | CancelMktData
    | ReqMarketDataType
    | ReqMktDepth
    | CancelMktDepth
    | ReqTickByTickData
    | CancelTickByTickData
    | ReqHistoricalData
    | CancelHistoricalData
    | PlaceOrder
    | CancelOrder
    | ReqGlobalCancel
    | ReqOpenOrders
    | ReqAllOpenOrders
    | ReqAutoOpenOrders
    | ReqCompletedOrders
    | ReqPositions
    | CancelPositions
    | ReqAccountSummary
    | CancelAccountSummary
    | ReqAccountUpdates
    | ReqAccountUpdatesMulti
    | CancelAccountUpdatesMulti
    | ReqExecutions
    | ReqManagedAccts
    | Unsupported
)


def parse_request(server_version: int, payload: bytes) -> Request:
    """Parse one frame's payload (no length prefix) sent by a client at ``server_version``.

    Raises ``MalformedRequest`` for a frame that cannot be read, and ``ValueError`` if
    ``server_version`` is outside what ibapi can negotiate (a caller bug, not a bad frame).
    """
    if not MIN_CLIENT_VER <= server_version <= MAX_CLIENT_VER:
        raise ValueError(
            f"server_version {server_version} is outside {MIN_CLIENT_VER}..{MAX_CLIENT_VER}, "
            "the range ibapi negotiates; negotiate the version before parsing requests"
        )
    if not payload:
        raise MalformedRequest(None, "empty frame: no message id")
    if server_version >= MIN_SERVER_VER_PROTOBUF:
        if len(payload) < 4:
            raise MalformedRequest(
                None, f"frame of {len(payload)} bytes is shorter than the 4-byte message id"
            )
        msg_id = int.from_bytes(payload[:4], "big")
        if msg_id > PROTOBUF_MSG_ID:
            return _parse_protobuf(msg_id, payload[4:])
        fields = _text_fields(msg_id, payload[4:])
    else:
        fields = _text_fields(None, payload)
        raw_id = fields.pop(0)
        if not (raw_id.isascii() and raw_id.isdigit()):
            raise MalformedRequest(None, f"message id {raw_id!r} is not a decimal number")
        msg_id = int(raw_id)
    parse = _TEXT_PARSERS.get(msg_id)
    if parse is None:
        return Unsupported(msg_id)
    cursor = _Cursor(msg_id, server_version, fields)
    request = parse(cursor)
    cursor.finish()
    return request


# --- Text frames -----------------------------------------------------------------------------


def _text_fields(msg_id: int | None, body: bytes) -> list[str]:
    """Split NUL-terminated text fields; the last one must be terminated too."""
    if not body:
        return []
    if body[-1] != 0:
        raise MalformedRequest(
            msg_id, "the last field is not NUL-terminated: the frame is truncated"
        )
    try:
        text = body.decode()
    except UnicodeDecodeError as exc:
        raise MalformedRequest(
            msg_id, f"text fields are not UTF-8 (byte {exc.start}: {exc.reason})"
        ) from None
    fields = text.split("\0")
    fields.pop()  # the empty string after the final NUL
    return fields


def _int(raw: str) -> int:
    return int(raw) if raw else UNSET_INTEGER


def _float(raw: str) -> float:
    if not raw:
        return UNSET_DOUBLE
    # ib_async writes infinity as "Infinite" where ibapi writes "Infinity" (float() reads it).
    return math.inf if raw == "Infinite" else float(raw)


def _decimal(raw: str) -> Decimal:
    if not raw:
        return UNSET_DECIMAL
    quantity = Decimal(raw)
    if not quantity.is_finite():  # sNaN would raise in the simulator's first comparison
        raise ValueError(f"{raw!r} is not a finite quantity")
    return quantity


def _bool(raw: str) -> bool:
    return raw != "" and int(raw) != 0


def _optional_bool(raw: str) -> bool | None:
    # usePriceMgmtAlgo: ibapi sends "" for None, ib_async "0"/"1".
    return None if raw == "" else int(raw) != 0


def _int_or_float(raw: str) -> int | float:
    # MarginCondition.percent: an int in ib_async and in the protobuf, str(float) in ibapi.
    try:
        return int(raw)
    except ValueError:
        return float(raw)


_Convert = Callable[[str], Any]
_Layout = tuple[tuple[str, _Convert | None, bool], ...]

_KINDS: dict[str, _Convert | None] = {
    "": None,
    "int": _int,
    "float": _float,
    "decimal": _decimal,
    "bool": _bool,
    "bool?": _optional_bool,
    "int|float": _int_or_float,
}

_EXPECTED = {
    _int: "an integer or empty",
    _float: "a number or empty",
    _decimal: "a finite decimal quantity or empty",
    _bool: "0 or 1",
    _optional_bool: "0, 1 or empty",
    _int_or_float: "a number",
}


def _layout(*specs: str) -> _Layout:
    """Field layout from "name:kind" specs; a leading "-" marks a field read and dropped."""
    entries = []
    for spec in specs:
        name, _, kind = spec.partition(":")
        entries.append((name.lstrip("-"), _KINDS[kind], not name.startswith("-")))
    return tuple(entries)


class _Cursor:
    """The text fields of one frame after the message id, read front to back."""

    __slots__ = ("_fields", "_pos", "msg_id", "version")

    def __init__(self, msg_id: int, version: int, fields: list[str]) -> None:
        self.msg_id = msg_id
        self.version = version
        self._fields = fields
        self._pos = 0

    def read(self, name: str, convert: _Convert | None = None) -> Any:
        pos = self._pos
        if pos >= len(self._fields):
            raise self._truncated(name)
        self._pos = pos + 1
        raw = self._fields[pos]
        if convert is None:
            return raw
        try:
            return convert(raw)
        except (ValueError, ArithmeticError):
            raise self._bad_value(pos, name, raw, convert) from None

    def values(self, layout: _Layout) -> list[Any]:
        """The kept fields of ``layout``, converted, in wire order."""
        start, raws = self._take(layout)
        try:
            return [
                raw if convert is None else convert(raw)
                for (_, convert, keep), raw in zip(layout, raws, strict=True)
                if keep
            ]
        except (ValueError, ArithmeticError):
            raise self._first_bad_value(start, layout, raws) from None

    def fill(self, target: object, layout: _Layout) -> None:
        """Set each kept field of ``layout`` as the attribute of the same name on ``target``."""
        start, raws = self._take(layout)
        attrs = target.__dict__  # ibapi objects are plain; this skips setattr's overhead
        try:
            for (name, convert, keep), raw in zip(layout, raws, strict=True):
                if keep:
                    attrs[name] = raw if convert is None else convert(raw)
        except (ValueError, ArithmeticError):
            raise self._first_bad_value(start, layout, raws) from None

    def count(self, name: str, width: int) -> int:
        """A list length whose items take ``width`` fields each, checked against the frame."""
        raw = self.read(name)
        remaining = len(self._fields) - self._pos
        n = int(raw) if raw.isascii() and raw.isdigit() and len(raw) < 10 else -1
        if not 0 <= n <= remaining // width:
            raise MalformedRequest(
                self.msg_id,
                f"count '{name}' is {raw!r} but {remaining} fields follow ({width} per item): "
                f"truncated, or encoded for a server version other than {self.version}",
            )
        return n

    def tag_values(self, name: str) -> list[TagValue]:
        """A count followed by that many (tag, value) field pairs."""
        pairs = self._fields
        n = self.count(name, 2)
        start = self._pos
        self._pos = start + 2 * n
        return [TagValue(pairs[i], pairs[i + 1]) for i in range(start, start + 2 * n, 2)]

    def tag_value_string(self, name: str) -> list[TagValue]:
        """One field holding "tag=value;tag=value;" (miscOptions, chartOptions, ...)."""
        raw = self.read(name)
        pairs = []
        for item in raw.split(";"):
            if not item:
                continue
            tag, sep, value = item.partition("=")
            if not sep:
                raise MalformedRequest(
                    self.msg_id, f"'{name}' is {raw!r}, expected 'tag=value;' pairs"
                )
            pairs.append(TagValue(tag, value))
        return pairs

    def finish(self) -> None:
        extra = self._fields[self._pos :]
        if extra:
            raise MalformedRequest(
                self.msg_id,
                f"{len(extra)} field(s) left over after the layout of server version "
                f"{self.version} ({extra[:3]!r}...): encoded for another server version?",
            )

    def _take(self, layout: _Layout) -> tuple[int, list[str]]:
        fields = self._fields
        start = self._pos
        end = start + len(layout)
        if end > len(fields):
            raise self._truncated(layout[len(fields) - start][0], len(fields))
        self._pos = end
        return start, fields[start:end]

    def _first_bad_value(self, start: int, layout: _Layout, raws: list[str]) -> MalformedRequest:
        for offset, ((name, convert, keep), raw) in enumerate(zip(layout, raws, strict=True)):
            if keep and convert is not None:
                try:
                    convert(raw)
                except (ValueError, ArithmeticError):
                    return self._bad_value(start + offset, name, raw, convert)
        raise AssertionError("a conversion failed once and then succeeded")

    def _truncated(self, name: str, pos: int | None = None) -> MalformedRequest:
        pos = self._pos if pos is None else pos
        return MalformedRequest(
            self.msg_id,
            f"frame ends before field {pos + 1} '{name}': truncated, or encoded for a server "
            f"version other than {self.version}",
        )

    def _bad_value(self, pos: int, name: str, raw: str, convert: _Convert) -> MalformedRequest:
        return MalformedRequest(
            self.msg_id, f"field {pos + 1} '{name}' is {raw!r}, expected {_EXPECTED[convert]}"
        )


_TextParser = Callable[[_Cursor], Request]


def _simple(make: Callable[..., Request], *specs: str) -> _TextParser:
    """A parser for a fixed layout whose kept fields are ``make``'s arguments, in order."""
    layout = _layout(*specs)

    def parse(cursor: _Cursor) -> Request:
        return make(*cursor.values(layout))

    return parse


def _gated(version: int, table: tuple[tuple[int, int, _Layout], ...]) -> _Layout:
    """The layouts of a (since, until, layout) gate table open at ``version``, joined."""
    return tuple(
        entry for since, until, part in table if since <= version < until for entry in part
    )


_ANY = MAX_CLIENT_VER + 1  # "until" for gates that never close

# conId .. tradingClass: contract12 in most requests (conId since 46/47/68, tradingClass since 68).
_CONTRACT = _layout(
    "conId:int", "symbol", "secType", "lastTradeDateOrContractMonth", "strike:float", "right",
    "multiplier", "exchange", "primaryExchange", "currency", "localSymbol", "tradingClass",
)  # fmt: skip
_DEPTH_CONTRACT = {
    True: _CONTRACT,
    False: tuple(entry for entry in _CONTRACT if entry[0] != "primaryExchange"),
}  # reqMktDepth sends primaryExchange from MIN_SERVER_VER_MKT_DEPTH_PRIM_EXCHANGE
_CONTRACT_DETAILS_TAIL = _layout("includeExpired:bool", "secIdType", "secId")
_SEC_ID = _layout("secIdType", "secId")
_DATA_LEG = _layout("conId:int", "ratio:int", "action", "exchange")
_ORDER_LEG = _layout(
    "conId:int", "ratio:int", "action", "exchange", "openClose:int", "shortSaleSlot:int",
    "designatedLocation", "exemptCode:int",
)  # fmt: skip
_DELTA_NEUTRAL_CONTRACT = _layout("conId:int", "delta:float", "price:float")


def _read_contract(cursor: _Cursor, layout: _Layout = _CONTRACT) -> Contract:
    contract = Contract()
    cursor.fill(contract, layout)
    return contract


def _read_legs(cursor: _Cursor, contract: Contract, layout: _Layout) -> None:
    n = cursor.count("comboLegs", len(layout))
    for _ in range(n):
        leg = ComboLeg()
        cursor.fill(leg, layout)
        contract.comboLegs.append(leg)


def _read_delta_neutral(cursor: _Cursor, contract: Contract) -> None:
    if cursor.read("deltaNeutralContract", _bool):
        contract.deltaNeutralContract = DeltaNeutralContract()
        cursor.fill(contract.deltaNeutralContract, _DELTA_NEUTRAL_CONTRACT)


def _req_contract_details(cursor: _Cursor) -> ReqContractDetails:
    cursor.read("version")
    req_id = cursor.read("reqId", _int)
    contract = _read_contract(cursor)
    cursor.fill(contract, _CONTRACT_DETAILS_TAIL)
    if cursor.version >= MIN_SERVER_VER_BOND_ISSUERID:
        contract.issuerId = cursor.read("issuerId")
    return ReqContractDetails(req_id, contract)


def _req_mkt_data(cursor: _Cursor) -> ReqMktData:
    cursor.read("version")
    req_id = cursor.read("reqId", _int)
    contract = _read_contract(cursor)
    if contract.secType == "BAG":
        _read_legs(cursor, contract, _DATA_LEG)
    _read_delta_neutral(cursor, contract)
    request = ReqMktData(req_id, contract, cursor.read("genericTickList"))
    request.snapshot = cursor.read("snapshot", _bool)
    if cursor.version >= MIN_SERVER_VER_REQ_SMART_COMPONENTS:
        request.regulatory_snapshot = cursor.read("regulatorySnapshot", _bool)
    request.market_data_options = cursor.tag_value_string("mktDataOptions")  # since LINKING (70)
    return request


def _req_mkt_depth(cursor: _Cursor) -> ReqMktDepth:
    cursor.read("version")
    req_id = cursor.read("reqId", _int)
    has_primary = cursor.version >= MIN_SERVER_VER_MKT_DEPTH_PRIM_EXCHANGE
    contract = _read_contract(cursor, _DEPTH_CONTRACT[has_primary])
    request = ReqMktDepth(req_id, contract, cursor.read("numRows", _int))
    if cursor.version >= MIN_SERVER_VER_SMART_DEPTH:
        request.is_smart_depth = cursor.read("isSmartDepth", _bool)
    request.market_depth_options = cursor.tag_value_string("mktDepthOptions")
    return request


def _cancel_mkt_depth(cursor: _Cursor) -> CancelMktDepth:
    cursor.read("version")
    request = CancelMktDepth(cursor.read("reqId", _int))
    if cursor.version >= MIN_SERVER_VER_SMART_DEPTH:
        request.is_smart_depth = cursor.read("isSmartDepth", _bool)
    return request


def _req_tick_by_tick(cursor: _Cursor) -> ReqTickByTickData:
    req_id = cursor.read("reqId", _int)
    request = ReqTickByTickData(req_id, _read_contract(cursor), cursor.read("tickType"))
    if cursor.version >= MIN_SERVER_VER_TICK_BY_TICK_IGNORE_SIZE:
        request.number_of_ticks = cursor.read("numberOfTicks", _int)
        request.ignore_size = cursor.read("ignoreSize", _bool)
    return request


_HISTORICAL_REQUEST = _layout(
    "endDateTime", "barSizeSetting", "durationStr", "useRTH:bool", "whatToShow", "formatDate:int",
)  # fmt: skip


def _req_historical_data(cursor: _Cursor) -> ReqHistoricalData:
    if cursor.version < MIN_SERVER_VER_SYNT_REALTIME_BARS:
        cursor.read("version")
    req_id = cursor.read("reqId", _int)
    contract = _read_contract(cursor)
    contract.includeExpired = cursor.read("includeExpired", _bool)
    end, bar_size, duration, use_rth, what_to_show, format_date = cursor.values(_HISTORICAL_REQUEST)
    if contract.secType == "BAG":
        _read_legs(cursor, contract, _DATA_LEG)
    keep_up_to_date = False
    if cursor.version >= MIN_SERVER_VER_SYNT_REALTIME_BARS:
        keep_up_to_date = cursor.read("keepUpToDate", _bool)
    return ReqHistoricalData(
        req_id, contract, end, duration, bar_size, what_to_show, use_rth, format_date,
        keep_up_to_date, cursor.tag_value_string("chartOptions"),
    )  # fmt: skip


def _order_cancel_fields(cursor: _Cursor) -> tuple[str, int]:
    """extOperator, manualOrderIndicator (MIN_SERVER_VER_CME_TAGGING_FIELDS), else defaults."""
    if cursor.version < MIN_SERVER_VER_CME_TAGGING_FIELDS:
        return "", UNSET_INTEGER
    return cursor.read("extOperator"), cursor.read("manualOrderIndicator", _int)


_RFQ_CANCEL = _layout("-rfqQuoteId", "-rfqId", "-rfqPriceType")


def _cancel_order(cursor: _Cursor) -> CancelOrder:
    version = cursor.version
    if version < MIN_SERVER_VER_CME_TAGGING_FIELDS:
        cursor.read("version")
    request = CancelOrder(cursor.read("orderId", _int))
    if version >= MIN_SERVER_VER_MANUAL_ORDER_TIME:
        request.manual_order_cancel_time = cursor.read("manualOrderCancelTime")
    if MIN_SERVER_VER_RFQ_FIELDS <= version < MIN_SERVER_VER_UNDO_RFQ_FIELDS:
        cursor.values(_RFQ_CANCEL)
    request.ext_operator, request.manual_order_indicator = _order_cancel_fields(cursor)
    return request


def _req_global_cancel(cursor: _Cursor) -> ReqGlobalCancel:
    if cursor.version < MIN_SERVER_VER_CME_TAGGING_FIELDS:
        cursor.read("version")
    return ReqGlobalCancel(*_order_cancel_fields(cursor))


_EXECUTION_FILTER = _layout(
    "clientId:int", "acctCode", "time", "symbol", "secType", "exchange", "side"
)


def _req_executions(cursor: _Cursor) -> ReqExecutions:
    cursor.read("version")
    req_id = cursor.read("reqId", _int)  # since EXECUTION_DATA_CHAIN (42)
    exec_filter = ExecutionFilter()
    cursor.fill(exec_filter, _EXECUTION_FILTER)
    if cursor.version >= MIN_SERVER_VER_PARAMETRIZED_DAYS_OF_EXECUTIONS:
        exec_filter.lastNDays = cursor.read("lastNDays", _int)
        n = cursor.count("specificDates", 1)
        if n:  # ibapi sends 0 for both None and []
            exec_filter.specificDates = [cursor.read("specificDate", _int) for _ in range(n)]
    return ReqExecutions(req_id, exec_filter)


# placeOrder, in wire order; the encoder is client.py EClient.placeOrder.
_ORDER_HEAD = _layout(
    "action", "totalQuantity:decimal", "orderType", "lmtPrice:float", "auxPrice:float",
    "tif", "ocaGroup", "account", "openClose", "origin:int", "orderRef", "transmit:bool",
    "parentId:int", "blockOrder:bool", "sweepToFill:bool", "displaySize:int",
    "triggerMethod:int", "outsideRth:bool", "hidden:bool",
)  # fmt: skip
_ORDER_ALLOCATION = _layout(
    "-sharesAllocation", "discretionaryAmt:float", "goodAfterTime", "goodTillDate", "faGroup",
    "faMethod", "faPercentage",
)  # fmt: skip
_ORDER_BODY = _layout(
    "shortSaleSlot:int", "designatedLocation", "exemptCode:int", "ocaType:int", "rule80A",
    "settlingFirm", "allOrNone:bool", "minQty:int", "percentOffset:float", "-eTradeOnly",
    "-firmQuoteOnly", "-nbboPriceCap", "auctionStrategy:int", "startingPrice:float",
    "stockRefPrice:float", "delta:float", "stockRangeLower:float", "stockRangeUpper:float",
    "overridePercentageConstraints:bool", "volatility:float", "volatilityType:int",
    "deltaNeutralOrderType", "deltaNeutralAuxPrice:float",
)  # fmt: skip
_DELTA_NEUTRAL_ORDER = _layout(
    "deltaNeutralConId:int", "deltaNeutralSettlingFirm", "deltaNeutralClearingAccount",
    "deltaNeutralClearingIntent", "deltaNeutralOpenClose", "deltaNeutralShortSale:bool",
    "deltaNeutralShortSaleSlot:int", "deltaNeutralDesignatedLocation",
)  # fmt: skip
_ORDER_TRAIL_SCALE = _layout(
    "continuousUpdate:bool", "referencePriceType:int", "trailStopPrice:float",
    "trailingPercent:float", "scaleInitLevelSize:int", "scaleSubsLevelSize:int",
    "scalePriceIncrement:float",
)  # fmt: skip
_SCALE = _layout(
    "scalePriceAdjustValue:float", "scalePriceAdjustInterval:int", "scaleProfitOffset:float",
    "scaleAutoReset:bool", "scaleInitPosition:int", "scaleInitFillQty:int",
    "scaleRandomPercent:bool",
)  # fmt: skip
_ORDER_SCALE_TABLE = _layout("scaleTable", "activeStartTime", "activeStopTime", "hedgeType")
_ORDER_ROUTING = _layout(
    "optOutSmartRouting:bool", "clearingAccount", "clearingIntent", "notHeld:bool"
)
_ORDER_ALGO_ID = _layout("algoId", "whatIf:bool")
_ORDER_RANDOMIZE = _layout("solicited:bool", "randomizeSize:bool", "randomizePrice:bool")
_PEG_BENCH = _layout(
    "referenceContractId:int", "isPeggedChangeAmountDecrease:bool", "peggedChangeAmount:float",
    "referenceChangeAmount:float", "referenceExchangeId",
)  # fmt: skip
_ORDER_ADJUSTED = _layout(
    "adjustedOrderType", "triggerPrice:float", "lmtPriceOffset:float", "adjustedStopPrice:float",
    "adjustedStopLimitPrice:float", "adjustedTrailingAmount:float", "adjustableTrailingUnit:int",
)  # fmt: skip
_SOFT_DOLLAR_TIER = _layout("name", "val")
_ORDER_TAIL_GATES = (  # after softDollarTier, up to the PEG BEST / PEG MID offsets
    (MIN_SERVER_VER_CASH_QTY, _ANY, _layout("cashQty:float")),
    (MIN_SERVER_VER_DECISION_MAKER, _ANY, _layout("mifid2DecisionMaker", "mifid2DecisionAlgo")),
    (MIN_SERVER_VER_MIFID_EXECUTION, _ANY, _layout("mifid2ExecutionTrader", "mifid2ExecutionAlgo")),
    (MIN_SERVER_VER_AUTO_PRICE_FOR_HEDGE, _ANY, _layout("dontUseAutoPriceForHedge:bool")),
    (MIN_SERVER_VER_ORDER_CONTAINER, _ANY, _layout("isOmsContainer:bool")),
    (MIN_SERVER_VER_D_PEG_ORDERS, _ANY, _layout("discretionaryUpToLimitPrice:bool")),
    (MIN_SERVER_VER_PRICE_MGMT_ALGO, _ANY, _layout("usePriceMgmtAlgo:bool?")),
    (MIN_SERVER_VER_DURATION, _ANY, _layout("duration:int")),
    (MIN_SERVER_VER_POST_TO_ATS, _ANY, _layout("postToAts:int")),
    (MIN_SERVER_VER_AUTO_CANCEL_PARENT, _ANY, _layout("autoCancelParent:bool")),
    (MIN_SERVER_VER_ADVANCED_ORDER_REJECT, _ANY, _layout("advancedErrorOverride")),
    (MIN_SERVER_VER_MANUAL_ORDER_TIME, _ANY, _layout("manualOrderTime")),
)  # fmt: skip
_ORDER_END_GATES = (  # after the PEG BEST / PEG MID offsets
    (MIN_SERVER_VER_CUSTOMER_ACCOUNT, _ANY, _layout("customerAccount")),
    (MIN_SERVER_VER_PROFESSIONAL_CUSTOMER, _ANY, _layout("professionalCustomer:bool")),
    (MIN_SERVER_VER_RFQ_FIELDS, MIN_SERVER_VER_UNDO_RFQ_FIELDS, _layout("-rfqQuoteId", "-rfqId")),
    (MIN_SERVER_VER_INCLUDE_OVERNIGHT, _ANY, _layout("includeOvernight:bool")),
    (MIN_SERVER_VER_CME_TAGGING_FIELDS, _ANY, _layout("manualOrderIndicator:int")),
    (MIN_SERVER_VER_IMBALANCE_ONLY, _ANY, _layout("imbalanceOnly:bool")),
)  # fmt: skip
_VERSIONS = range(MIN_CLIENT_VER, MAX_CLIENT_VER + 1)
_ORDER_TAIL = {version: _gated(version, _ORDER_TAIL_GATES) for version in _VERSIONS}
_ORDER_END = {version: _gated(version, _ORDER_END_GATES) for version in _VERSIONS}

# Fields after the condition type and its "a"/"o" conjunction; OrderCondition.make_fields.
_CONDITION_LAYOUTS = {
    OrderCondition.Price: _layout(
        "isMore:bool", "price:float", "conId:int", "exchange", "triggerMethod:int"
    ),
    OrderCondition.Time: _layout("isMore:bool", "time"),
    OrderCondition.Margin: _layout("isMore:bool", "percent:int|float"),
    OrderCondition.Execution: _layout("secType", "exchange", "symbol"),
    OrderCondition.Volume: _layout("isMore:bool", "volume:int", "conId:int", "exchange"),
    OrderCondition.PercentChange: _layout(
        "isMore:bool", "changePercent:float", "conId:int", "exchange"
    ),
}
_CONDITION_TYPES = "1 Price, 3 Time, 4 Margin, 5 Execution, 6 Volume, 7 PercentChange"


def _read_condition(cursor: _Cursor) -> OrderCondition:
    cond_type = cursor.read("condition type", _int)
    layout = _CONDITION_LAYOUTS.get(cond_type)
    if layout is None:
        raise MalformedRequest(
            cursor.msg_id, f"order condition type {cond_type} is unknown ({_CONDITION_TYPES})"
        )
    condition = create_condition(cond_type)
    conjunction = cursor.read("condition conjunction")
    if conjunction not in ("a", "o"):
        raise MalformedRequest(
            cursor.msg_id, f"condition conjunction is {conjunction!r}, expected 'a' or 'o'"
        )
    condition.isConjunctionConnection = conjunction == "a"
    cursor.fill(condition, layout)
    return condition


def _place_order(cursor: _Cursor) -> PlaceOrder:
    version = cursor.version
    if version < MIN_SERVER_VER_ORDER_CONTAINER:
        cursor.read("version")
    order_id = cursor.read("orderId", _int)
    contract = _read_contract(cursor)
    cursor.fill(contract, _SEC_ID)
    order = Order()
    order.orderId = order_id
    # totalQuantity is int(quantity) below FRACTIONAL_POSITIONS (101); Decimal reads both.
    cursor.fill(order, _ORDER_HEAD)
    if contract.secType == "BAG":
        _read_legs(cursor, contract, _ORDER_LEG)
        n_prices = cursor.count("orderComboLegs", 1)
        prices = [cursor.read("orderComboLeg price", _float) for _ in range(n_prices)]
        if prices:
            order.orderComboLegs = [_order_combo_leg(price) for price in prices]
        order.smartComboRoutingParams = cursor.tag_values("smartComboRoutingParams") or None
    cursor.fill(order, _ORDER_ALLOCATION)
    if version < MIN_SERVER_VER_FA_PROFILE_DESUPPORT:
        cursor.read("faProfile")
    if version >= MIN_SERVER_VER_MODELS_SUPPORT:
        order.modelCode = cursor.read("modelCode")
    cursor.fill(order, _ORDER_BODY)
    if order.deltaNeutralOrderType:
        cursor.fill(order, _DELTA_NEUTRAL_ORDER)
    cursor.fill(order, _ORDER_TRAIL_SCALE)
    if order.scalePriceIncrement != UNSET_DOUBLE and order.scalePriceIncrement > 0.0:
        cursor.fill(order, _SCALE)
    cursor.fill(order, _ORDER_SCALE_TABLE)
    if order.hedgeType:
        order.hedgeParam = cursor.read("hedgeParam")
    cursor.fill(order, _ORDER_ROUTING)
    _read_delta_neutral(cursor, contract)
    order.algoStrategy = cursor.read("algoStrategy")
    if order.algoStrategy:
        order.algoParams = cursor.tag_values("algoParams") or None
    cursor.fill(order, _ORDER_ALGO_ID)
    order.orderMiscOptions = cursor.tag_value_string("orderMiscOptions") or None
    cursor.fill(order, _ORDER_RANDOMIZE)
    if version >= MIN_SERVER_VER_PEGGED_TO_BENCHMARK:
        if isPegBenchOrder(order.orderType):
            cursor.fill(order, _PEG_BENCH)
        n_conditions = cursor.count("conditions", 4)  # a condition takes 4 fields or more
        if n_conditions:
            order.conditions = [_read_condition(cursor) for _ in range(n_conditions)]
            order.conditionsIgnoreRth = cursor.read("conditionsIgnoreRth", _bool)
            order.conditionsCancelOrder = cursor.read("conditionsCancelOrder", _bool)
        cursor.fill(order, _ORDER_ADJUSTED)
    if version >= MIN_SERVER_VER_EXT_OPERATOR:
        order.extOperator = cursor.read("extOperator")
    if version >= MIN_SERVER_VER_SOFT_DOLLAR_TIER:
        cursor.fill(order.softDollarTier, _SOFT_DOLLAR_TIER)
    cursor.fill(order, _ORDER_TAIL[version])
    if version >= MIN_SERVER_VER_PEGBEST_PEGMID_OFFSETS:
        _read_peg_offsets(cursor, contract, order)
    cursor.fill(order, _ORDER_END[version])
    return PlaceOrder(order_id, contract, order)


def _order_combo_leg(price: float) -> OrderComboLeg:
    leg = OrderComboLeg()
    leg.price = price
    return leg


def _read_peg_offsets(cursor: _Cursor, contract: Contract, order: Order) -> None:
    if contract.exchange == "IBKRATS":
        order.minTradeQty = cursor.read("minTradeQty", _int)
    mid_offsets = isPegMidOrder(order.orderType)
    if isPegBestOrder(order.orderType):
        order.minCompeteSize = cursor.read("minCompeteSize", _int)
        order.competeAgainstBestOffset = cursor.read("competeAgainstBestOffset", _float)
        # COMPETE_AGAINST_BEST_OFFSET_UP_TO_MID
        mid_offsets = order.competeAgainstBestOffset == math.inf
    if mid_offsets:
        order.midOffsetAtWhole = cursor.read("midOffsetAtWhole", _float)
        order.midOffsetAtHalf = cursor.read("midOffsetAtHalf", _float)


_TEXT_PARSERS: dict[int, _TextParser] = {
    OUT.START_API: _simple(StartApi, "-version", "clientId:int", "optCapab"),  # optCapab: v72+
    OUT.REQ_CURRENT_TIME: _simple(ReqCurrentTime, "-version"),
    OUT.REQ_CURRENT_TIME_IN_MILLIS: _simple(ReqCurrentTimeMillis),
    OUT.REQ_IDS: _simple(ReqIds, "-version", "numIds:int"),
    OUT.REQ_MARKET_RULE: _simple(ReqMarketRule, "marketRuleId:int"),  # no version field
    OUT.REQ_CONTRACT_DATA: _req_contract_details,
    OUT.REQ_MKT_DATA: _req_mkt_data,
    OUT.CANCEL_MKT_DATA: _simple(CancelMktData, "-version", "reqId:int"),
    OUT.REQ_MARKET_DATA_TYPE: _simple(ReqMarketDataType, "-version", "marketDataType:int"),
    OUT.REQ_MKT_DEPTH: _req_mkt_depth,
    OUT.CANCEL_MKT_DEPTH: _cancel_mkt_depth,
    OUT.REQ_TICK_BY_TICK_DATA: _req_tick_by_tick,
    OUT.CANCEL_TICK_BY_TICK_DATA: _simple(CancelTickByTickData, "reqId:int"),
    OUT.REQ_HISTORICAL_DATA: _req_historical_data,
    OUT.CANCEL_HISTORICAL_DATA: _simple(CancelHistoricalData, "-version", "reqId:int"),
    OUT.PLACE_ORDER: _place_order,
    OUT.CANCEL_ORDER: _cancel_order,
    OUT.REQ_GLOBAL_CANCEL: _req_global_cancel,
    OUT.REQ_OPEN_ORDERS: _simple(ReqOpenOrders, "-version"),
    OUT.REQ_ALL_OPEN_ORDERS: _simple(ReqAllOpenOrders, "-version"),
    OUT.REQ_AUTO_OPEN_ORDERS: _simple(ReqAutoOpenOrders, "-version", "autoBind:bool"),
    OUT.REQ_COMPLETED_ORDERS: _simple(ReqCompletedOrders, "apiOnly:bool"),
    OUT.REQ_POSITIONS: _simple(ReqPositions, "-version"),
    OUT.CANCEL_POSITIONS: _simple(CancelPositions, "-version"),
    OUT.REQ_ACCOUNT_SUMMARY: _simple(ReqAccountSummary, "-version", "reqId:int", "group", "tags"),
    OUT.CANCEL_ACCOUNT_SUMMARY: _simple(CancelAccountSummary, "-version", "reqId:int"),
    OUT.REQ_ACCT_DATA: _simple(ReqAccountUpdates, "-version", "subscribe:bool", "acctCode"),
    OUT.REQ_ACCOUNT_UPDATES_MULTI: _simple(
        ReqAccountUpdatesMulti,
        "-version",
        "reqId:int",
        "account",
        "modelCode",
        "ledgerAndNLV:bool",
    ),
    OUT.CANCEL_ACCOUNT_UPDATES_MULTI: _simple(CancelAccountUpdatesMulti, "-version", "reqId:int"),
    OUT.REQ_EXECUTIONS: _req_executions,
    OUT.REQ_MANAGED_ACCTS: _simple(ReqManagedAccts, "-version"),
}


# --- Protobuf frames -------------------------------------------------------------------------

_PLACE_ORDER_PB = OUT.PLACE_ORDER + PROTOBUF_MSG_ID


def _parse_protobuf(msg_id: int, body: bytes) -> Request:
    entry = _PROTOBUF_PARSERS.get(msg_id)
    if entry is None:
        return Unsupported(msg_id)
    message_type, convert = entry
    message = message_type()
    try:
        message.ParseFromString(body)
    except DecodeError as exc:
        raise MalformedRequest(
            msg_id, f"body is not a valid {message_type.DESCRIPTOR.name} protobuf: {exc}"
        ) from None
    return convert(message)


def _number(message: Any, name: str) -> int:
    """A request-level number; absent means ibapi held the UNSET sentinel."""
    return getattr(message, name) if message.HasField(name) else UNSET_INTEGER


def _tag_value_list(proto_map: Any) -> list[TagValue]:
    # Protobuf maps keep neither the client's order nor repeated tags.
    return [TagValue(tag, value) for tag, value in proto_map.items()]


def _combo_leg_from_proto(proto: Any) -> ComboLeg:
    leg = ComboLeg()
    for descriptor, value in proto.ListFields():
        name = descriptor.name
        if name == "shortSalesSlot":  # the protobuf's spelling of ComboLeg.shortSaleSlot
            leg.shortSaleSlot = value
        elif name != "perLegPrice":  # per-leg prices belong to the order (orderComboLegs)
            setattr(leg, name, value)
    return leg


def _delta_neutral_from_proto(proto: Any) -> DeltaNeutralContract:
    contract = DeltaNeutralContract()
    for descriptor, value in proto.ListFields():
        setattr(contract, descriptor.name, value)
    return contract


# Contract fields needing more than setattr(contract, name, value).
_CONTRACT_PROTO_FIELDS: dict[str, Callable[[Contract, Any], None]] = {
    "primaryExch": lambda c, v: setattr(c, "primaryExchange", v),
    "multiplier": lambda c, v: setattr(c, "multiplier", floatMaxString(v)),
    "comboLegs": lambda c, v: setattr(c, "comboLegs", [_combo_leg_from_proto(p) for p in v]),
    "deltaNeutralContract": lambda c, v: setattr(
        c, "deltaNeutralContract", _delta_neutral_from_proto(v)
    ),
}


def _contract_from_proto(proto: Any) -> Contract:
    contract = Contract()
    for descriptor, value in proto.ListFields():
        special = _CONTRACT_PROTO_FIELDS.get(descriptor.name)
        if special is None:
            setattr(contract, descriptor.name, value)
        else:
            special(contract, value)
    return contract


# Fields each condition type carries (client_utils.create*ConditionProto); others are ignored.
_CONDITION_PROTO_FIELDS = {
    cond_type: frozenset(name for name, _, _ in layout) | {"isConjunctionConnection"}
    for cond_type, layout in _CONDITION_LAYOUTS.items()
}


def _condition_from_proto(proto: Any) -> OrderCondition:
    cond_type = proto.type if proto.HasField("type") else None
    allowed = _CONDITION_PROTO_FIELDS.get(cond_type)
    if allowed is None:
        raise MalformedRequest(
            _PLACE_ORDER_PB, f"order condition type {cond_type} is unknown ({_CONDITION_TYPES})"
        )
    condition = create_condition(cond_type)
    for descriptor, value in proto.ListFields():
        if descriptor.name in allowed:
            setattr(condition, descriptor.name, value)
    return condition


def _quantity(name: str, raw: str) -> Decimal:
    try:
        return _decimal(raw)
    except (ValueError, ArithmeticError):
        raise MalformedRequest(
            _PLACE_ORDER_PB, f"Order.{name} is {raw!r}, expected a decimal quantity"
        ) from None


# Order fields needing more than setattr(order, name, value); the rest share ibapi's names.
_ORDER_PROTO_FIELDS: dict[str, Callable[[Order, Any], None]] = {
    "totalQuantity": lambda o, v: setattr(o, "totalQuantity", _quantity("totalQuantity", v)),
    "filledQuantity": lambda o, v: setattr(o, "filledQuantity", _quantity("filledQuantity", v)),
    "usePriceMgmtAlgo": lambda o, v: setattr(o, "usePriceMgmtAlgo", v != 0),
    "seekPriceImprovement": lambda o, v: setattr(o, "seekPriceImprovement", v != 0),
    "routeMarketableToBbo": lambda o, v: setattr(o, "routeMarketableToBbo", v != 0),
    "algoParams": lambda o, v: setattr(o, "algoParams", _tag_value_list(v)),
    "smartComboRoutingParams": lambda o, v: setattr(
        o, "smartComboRoutingParams", _tag_value_list(v)
    ),
    "orderMiscOptions": lambda o, v: setattr(o, "orderMiscOptions", _tag_value_list(v)),
    "conditions": lambda o, v: setattr(o, "conditions", [_condition_from_proto(c) for c in v]),
    "softDollarTier": lambda o, v: setattr(
        o, "softDollarTier", SoftDollarTier(v.name, v.value, v.displayName)
    ),
}


def _place_order_from_proto(message: Any) -> PlaceOrder:
    for required in ("orderId", "contract", "order"):
        if not message.HasField(required):
            raise MalformedRequest(
                _PLACE_ORDER_PB, f"PlaceOrderRequest has no {required}; ibapi always sends one"
            )
    order = Order()
    order.transmit = False  # createOrderProto sets transmit only when it is true
    for descriptor, value in message.order.ListFields():
        special = _ORDER_PROTO_FIELDS.get(descriptor.name)
        if special is None:
            setattr(order, descriptor.name, value)
        else:
            special(order, value)
    for descriptor, value in message.attachedOrders.ListFields():
        setattr(order, descriptor.name, value)  # slOrderId, slOrderType, ptOrderId, ptOrderType
    order.orderId = message.orderId
    legs = message.contract.comboLegs
    if any(leg.HasField("perLegPrice") for leg in legs):
        order.orderComboLegs = [
            _order_combo_leg(leg.perLegPrice if leg.HasField("perLegPrice") else UNSET_DOUBLE)
            for leg in legs
        ]
    return PlaceOrder(message.orderId, _contract_from_proto(message.contract), order)


def _cancel_order_from_proto(message: Any) -> CancelOrder:
    cancel = message.orderCancel
    return CancelOrder(
        _number(message, "orderId"),
        cancel.manualOrderCancelTime,
        cancel.extOperator,
        _number(cancel, "manualOrderIndicator"),
    )


def _global_cancel_from_proto(message: Any) -> ReqGlobalCancel:
    cancel = message.orderCancel
    return ReqGlobalCancel(cancel.extOperator, _number(cancel, "manualOrderIndicator"))


def _executions_from_proto(message: Any) -> ReqExecutions:
    exec_filter = ExecutionFilter()
    for descriptor, value in message.executionFilter.ListFields():
        is_list = descriptor.name == "specificDates"
        setattr(exec_filter, descriptor.name, list(value) if is_list else value)
    return ReqExecutions(_number(message, "reqId"), exec_filter)


_ProtobufParser = tuple[type[Message], Callable[[Any], Request]]

_PROTO_KINDS: dict[str, Callable[[Any, str], Any]] = {
    "": getattr,
    "int": _number,
    "contract": lambda message, name: _contract_from_proto(getattr(message, name)),
    "tags": lambda message, name: _tag_value_list(getattr(message, name)),
}


def _simple_pb(
    message_type: type[Message], make: Callable[..., Request], *specs: str
) -> _ProtobufParser:
    """A protobuf type and a converter passing the "field:kind" specs to ``make`` in order."""
    readers = [(name, _PROTO_KINDS[kind]) for name, _, kind in (s.partition(":") for s in specs)]

    def convert(message: Any) -> Request:
        return make(*[read(message, name) for name, read in readers])

    return message_type, convert


def _pb(out_id: int) -> int:
    return out_id + PROTOBUF_MSG_ID


_PROTOBUF_PARSERS: dict[int, _ProtobufParser] = {
    _pb(OUT.START_API): _simple_pb(
        StartApiRequestProto, StartApi, "clientId:int", "optionalCapabilities"
    ),
    _pb(OUT.REQ_CURRENT_TIME): _simple_pb(CurrentTimeRequestProto, ReqCurrentTime),
    _pb(OUT.REQ_CURRENT_TIME_IN_MILLIS): _simple_pb(
        CurrentTimeInMillisRequestProto, ReqCurrentTimeMillis
    ),
    _pb(OUT.REQ_IDS): _simple_pb(IdsRequestProto, ReqIds, "numIds:int"),
    _pb(OUT.REQ_MARKET_RULE): _simple_pb(MarketRuleRequestProto, ReqMarketRule, "marketRuleId:int"),
    _pb(OUT.REQ_CONTRACT_DATA): _simple_pb(
        ContractDataRequestProto, ReqContractDetails, "reqId:int", "contract:contract"
    ),
    _pb(OUT.REQ_MKT_DATA): _simple_pb(
        MarketDataRequestProto,
        ReqMktData,
        "reqId:int",
        "contract:contract",
        "genericTickList",
        "snapshot",
        "regulatorySnapshot",
        "marketDataOptions:tags",
    ),
    _pb(OUT.CANCEL_MKT_DATA): _simple_pb(CancelMarketDataProto, CancelMktData, "reqId:int"),
    _pb(OUT.REQ_MARKET_DATA_TYPE): _simple_pb(
        MarketDataTypeRequestProto, ReqMarketDataType, "marketDataType:int"
    ),
    _pb(OUT.REQ_MKT_DEPTH): _simple_pb(
        MarketDepthRequestProto,
        ReqMktDepth,
        "reqId:int",
        "contract:contract",
        "numRows:int",
        "isSmartDepth",
        "marketDepthOptions:tags",
    ),
    _pb(OUT.CANCEL_MKT_DEPTH): _simple_pb(
        CancelMarketDepthProto, CancelMktDepth, "reqId:int", "isSmartDepth"
    ),
    _pb(OUT.REQ_TICK_BY_TICK_DATA): _simple_pb(
        TickByTickRequestProto,
        ReqTickByTickData,
        "reqId:int",
        "contract:contract",
        "tickType",
        "numberOfTicks:int",
        "ignoreSize",
    ),
    _pb(OUT.CANCEL_TICK_BY_TICK_DATA): _simple_pb(
        CancelTickByTickProto, CancelTickByTickData, "reqId:int"
    ),
    _pb(OUT.REQ_HISTORICAL_DATA): _simple_pb(
        HistoricalDataRequestProto,
        ReqHistoricalData,
        "reqId:int",
        "contract:contract",
        "endDateTime",
        "duration",
        "barSizeSetting",
        "whatToShow",
        "useRTH",
        "formatDate:int",
        "keepUpToDate",
        "chartOptions:tags",
    ),
    _pb(OUT.CANCEL_HISTORICAL_DATA): _simple_pb(
        CancelHistoricalDataProto, CancelHistoricalData, "reqId:int"
    ),
    _pb(OUT.PLACE_ORDER): (PlaceOrderRequestProto, _place_order_from_proto),
    _pb(OUT.CANCEL_ORDER): (CancelOrderRequestProto, _cancel_order_from_proto),
    _pb(OUT.REQ_GLOBAL_CANCEL): (GlobalCancelRequestProto, _global_cancel_from_proto),
    _pb(OUT.REQ_OPEN_ORDERS): _simple_pb(OpenOrdersRequestProto, ReqOpenOrders),
    _pb(OUT.REQ_ALL_OPEN_ORDERS): _simple_pb(AllOpenOrdersRequestProto, ReqAllOpenOrders),
    _pb(OUT.REQ_AUTO_OPEN_ORDERS): _simple_pb(
        AutoOpenOrdersRequestProto, ReqAutoOpenOrders, "autoBind"
    ),
    _pb(OUT.REQ_COMPLETED_ORDERS): _simple_pb(
        CompletedOrdersRequestProto, ReqCompletedOrders, "apiOnly"
    ),
    _pb(OUT.REQ_POSITIONS): _simple_pb(PositionsRequestProto, ReqPositions),
    _pb(OUT.CANCEL_POSITIONS): _simple_pb(CancelPositionsProto, CancelPositions),
    _pb(OUT.REQ_ACCOUNT_SUMMARY): _simple_pb(
        AccountSummaryRequestProto, ReqAccountSummary, "reqId:int", "group", "tags"
    ),
    _pb(OUT.CANCEL_ACCOUNT_SUMMARY): _simple_pb(
        CancelAccountSummaryProto, CancelAccountSummary, "reqId:int"
    ),
    _pb(OUT.REQ_ACCT_DATA): _simple_pb(
        AccountDataRequestProto, ReqAccountUpdates, "subscribe", "acctCode"
    ),
    _pb(OUT.REQ_ACCOUNT_UPDATES_MULTI): _simple_pb(
        AccountUpdatesMultiRequestProto,
        ReqAccountUpdatesMulti,
        "reqId:int",
        "account",
        "modelCode",
        "ledgerAndNLV",
    ),
    _pb(OUT.CANCEL_ACCOUNT_UPDATES_MULTI): _simple_pb(
        CancelAccountUpdatesMultiProto, CancelAccountUpdatesMulti, "reqId:int"
    ),
    _pb(OUT.REQ_EXECUTIONS): (ExecutionRequestProto, _executions_from_proto),
    _pb(OUT.REQ_MANAGED_ACCTS): _simple_pb(ManagedAccountsRequestProto, ReqManagedAccts),
}
