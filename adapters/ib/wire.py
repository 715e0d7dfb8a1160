"""Byte-exact placeOrder / cancelOrder frames for IB, rendered from templates ibapi encoded.

``encode_place_order(server_version, order_id, contract, order)`` and
``encode_cancel_order(server_version, order_id, order_cancel)`` return exactly the bytes that
``ibapi.client.EClient.placeOrder`` / ``cancelOrder`` hand to their connection for the same
arguments, 4-byte length prefix included: text with an ASCII message id below 201, text with a
raw 4-byte id from 201 (``MIN_SERVER_VER_PROTOBUF``), a protobuf ``PlaceOrderRequest`` /
``CancelOrderRequest`` from 203 (``MIN_SERVER_VER_PROTOBUF_PLACE_ORDER``). Where ibapi would
refuse (it calls ``EWrapper.error`` instead of sending, e.g. for a field the server version
does not support) they raise ``IbEncodeError`` carrying IB's code and text; where ibapi lets an
exception escape (an int32 out of range, a signalling NaN) the same exception comes out. Not
thread-safe: call them from the one thread that owns the connection.

Template design
---------------
ibapi walks ~150 Order attributes per order (12-35 µs). Orders of one kind differ only in a few
per-order scalars, ``PATCHED_FIELDS`` plus the order id; everything else is the *shape*.

1. **Shape.** The server version and every other attribute of the Order and the Contract, read
   by position (``[*obj.__dict__.values()]``, in the order ``Order.__init__`` /
   ``Contract.__init__`` create them; a subclass must have that layout), with the patched slots
   and ``orderId`` (ibapi takes the id from the argument) blanked and softDollarTier read as
   its ``__dict__``. The shape is compared with ``==`` against the most recently used
   template, then against an LRU of buckets keyed by (version, orderType, action, symbol).
   A template keeps a private copy of its shape in which lists (algoParams, conditions,
   comboLegs...) are frozen into tuples, so mutating an Order, its lists or a Contract after
   encoding cannot change a template, and the next encode sees the mutation.
2. **Template.** The first order of a shape is encoded by ibapi itself (an ``EClient`` whose
   connection keeps the frame) and that frame is returned. Two more ibapi encodes of the same
   shape, with different probe values in every patched field, locate them. Text: the
   NUL-separated fields that differ between the two probes are the slots, the bytes between
   them literal chunks. Protobuf: the ``order`` sub-message is split into its fields, the
   patched field numbers are removed and the rest kept as chunks in field-number order, the
   order upb serializes in (an absent field is then simply an empty slot).
3. **Patch.** A cached shape is rendered by joining its chunks with the freshly formatted
   patched values, recomputing the length prefix (and the order sub-message's length). A slot
   holding the very object the template's first order held (the usual UNSET, "" and 0) reuses
   its encoding. In protobuf, when only the id, the quantity and the limit price are new (a
   non-negative id below 2**28, a digits-only quantity, a float price), the frame is one
   ``struct`` pack whose bytes around those three fields are cached per their lengths.

Why it is byte-exact: the chunks are ibapi's own bytes for that shape, and the patched values
are formatted as ibapi formats them. Text ``comm.make_field`` is ``str(value)``;
``make_field_handle_empty`` (prices) also writes "" for ``UNSET_INTEGER`` / ``UNSET_DOUBLE`` and
"Infinity" for ``math.inf``. Protobuf follows ``client_utils.createOrderProto``: a field is
written only when it holds a value (an int not ``UNSET_INTEGER``, a float not ``UNSET_DOUBLE``,
a truthy string, a Decimal not ``UNSET_DECIMAL`` written as ``decimalMaxString``), with
protobuf's varint / fixed64 / length-delimited encodings. Map fields (algoParams) are part of
the shape, so their bytes are ibapi's; upb's map order depends on insertion order, which the
shape preserves. Every new template must reproduce ibapi's frames for both probes (every slot
present) and for the first order (slots absent where it left them unset) or it is not used. A
patched value of a type the fast path does not format itself (None, bool, float quantities in
protobuf, str subclasses, text that fails ibapi's ASCII check, ints outside int32...) goes to
ibapi, which encodes or refuses it. Below server version 101
(``MIN_SERVER_VER_FRACTIONAL_POSITIONS``) ibapi writes ``int(totalQuantity)``, a format that
depends on the value, so those versions always go through ibapi.

Prepared templates
------------------
``encode_place_order`` pays ~1.1 µs per call to copy and compare ~170 values against the
template: the price of accepting any Order. A caller that sends many orders of one shape and
changes only the order id, the quantity, the limit price and the orderRef (``IBVenue``: the ref
carries its client order id, so it changes on every order) calls
``prepare_place_order(server_version, contract, order)`` once and
``template.encode(order_id, quantity, limit_price, order_ref)`` per order. The template is cut
from ibapi's probe frames as above, with the other patched fields fixed to the prepared order's
values, and checked against ibapi before use; ``encode`` does no shape check (the shape is a
snapshot taken when preparing) and formats four values, in protobuf mostly one ``struct`` pack.

Limits: shape attributes are compared by value, as any tuple key would be. An attribute that
holds ``1`` in one order and ``1.0`` in a later order of the same shape is encoded as the first
(ibapi prints "1" vs "1.0" in text, and refuses a float in an int32 field in protobuf); checking
every attribute's type would double the cost of a call. Patched fields are formatted per order
and are exact for any type. Deleting an attribute of an Order and setting it again moves it to
the end of ``__dict__``, which the positional read does not expect.
"""

from __future__ import annotations

import copy
import logging
import math
import struct
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from operator import itemgetter
from typing import Any, Final

from ibapi.client import EClient
from ibapi.common import PROTOBUF_MSG_ID, PROTOBUF_MSG_IDS
from ibapi.const import DOUBLE_INFINITY, INFINITY_STR, UNSET_DECIMAL, UNSET_DOUBLE, UNSET_INTEGER
from ibapi.contract import Contract
from ibapi.message import OUT
from ibapi.order import Order
from ibapi.order_cancel import OrderCancel
from ibapi.protobuf.CancelOrderRequest_pb2 import CancelOrderRequest as CancelOrderRequestProto
from ibapi.protobuf.Order_pb2 import Order as OrderProto
from ibapi.protobuf.PlaceOrderRequest_pb2 import PlaceOrderRequest as PlaceOrderRequestProto
from ibapi.server_versions import MIN_SERVER_VER_FRACTIONAL_POSITIONS, MIN_SERVER_VER_PROTOBUF
from ibapi.tag_value import TagValue
from ibapi.wrapper import EWrapper

__all__ = [
    "PATCHED_FIELDS",
    "CacheStats",
    "IbEncodeError",
    "PlaceOrderTemplate",
    "cache_stats",
    "clear_cache",
    "encode_cancel_order",
    "encode_place_order",
    "prepare_place_order",
]

#: Order attributes patched into a template per order (with the ``order_id`` argument), in the
#: order the text frame carries them; every other attribute belongs to the shape.
PATCHED_FIELDS: Final = (
    "totalQuantity",
    "lmtPrice",
    "auxPrice",
    "ocaGroup",
    "orderRef",
    "parentId",
    "displaySize",
    "goodTillDate",
    "trailStopPrice",
    "trailingPercent",
)

#: Templates kept per cheap key, and cheap keys kept, least recently used evicted first.
_BUCKET_SIZE: Final = 8
_MAX_BUCKETS: Final = 512
_MAX_CANCEL_SHAPES: Final = 256


class IbEncodeError(Exception):
    """ibapi refused to encode the request: it reported ``code``/``text`` instead of sending."""

    def __init__(self, request: str, order_id: int, server_version: int, code: int, text: str):
        self.request = request
        self.order_id = order_id
        self.server_version = server_version
        self.code = code
        self.text = text
        super().__init__(
            f"ibapi refused {request} for order {order_id} at server version {server_version}: "
            f"IB error {code}: {text}"
        )


@dataclass(frozen=True, slots=True)
class CacheStats:
    """How the encoders have been served since the last ``clear_cache()``."""

    place_shapes: int  #: placeOrder shapes cached (templated or marked as ibapi-only)
    cancel_shapes: int  #: cancelOrder shapes cached
    templates_built: int  #: new shapes, each one costing three ibapi encodes
    ibapi_encodes: int  #: calls answered by ibapi alone (no template could serve them)


# --- ibapi as the reference encoder -------------------------------------------------------------


class _IbapiRefusal(Exception):
    def __init__(self, code: int, text: str) -> None:
        self.code = code
        self.text = text


class _RaisingWrapper(EWrapper):
    """Turns EClient's error callback (an encoder refusal) into an exception."""

    def error(self, reqId, errorTime, errorCode, errorString, advancedOrderRejectJson=""):
        raise _IbapiRefusal(errorCode, errorString)


class FrameCapture:
    """A connection for ``EClient``: it keeps the frames ibapi encodes instead of sending them."""

    def __init__(self) -> None:
        self.frames: list[bytes] = []

    def sendMsg(self, msg: bytes) -> int:
        self.frames.append(msg)
        return len(msg)

    def isConnected(self) -> bool:
        return True


class _Quiet(logging.Filter):
    """Drops ibapi's REQUEST / SENDING log lines while it encodes frames for us (never sent)."""

    active = False

    def filter(self, record: logging.LogRecord) -> bool:
        return not self.active


class _Ibapi:
    """One EClient, connected to a recorder, encoding at whatever version it is asked."""

    def __init__(self) -> None:
        self._recorder = FrameCapture()
        self._client = EClient(_RaisingWrapper())
        self._client.conn = self._recorder
        self._client.setConnState(EClient.CONNECTED)
        self._quiet = _Quiet()
        for name in ("ibapi.client", "ibapi.utils"):  # EClient.sendMsg and utils.log_
            logging.getLogger(name).addFilter(self._quiet)

    def place_order(self, sv: int, order_id: int, contract: Contract, order: Order) -> bytes:
        return self._capture("placeOrder", sv, order_id, self._client.placeOrder, contract, order)

    def cancel_order(self, sv: int, order_id: int, order_cancel: OrderCancel) -> bytes:
        return self._capture("cancelOrder", sv, order_id, self._client.cancelOrder, order_cancel)

    def _capture(self, request: str, sv: int, order_id: int, call: Callable, *args: Any) -> bytes:
        self._client.serverVersion_ = sv
        frames = self._recorder.frames
        frames.clear()
        self._quiet.active = True
        try:
            call(order_id, *args)
        except _IbapiRefusal as refusal:
            raise IbEncodeError(request, order_id, sv, refusal.code, refusal.text) from None
        finally:
            self._quiet.active = False
        if len(frames) != 1:
            raise RuntimeError(f"ibapi {request} sent {len(frames)} frames instead of one")
        return frames[0]


_IBAPI: Final = _Ibapi()
_stats = {"templates_built": 0, "ibapi_encodes": 0}


def _ibapi_place(sv: int, order_id: int, contract: Contract, order: Order) -> bytes:
    _stats["ibapi_encodes"] += 1
    return _IBAPI.place_order(sv, order_id, contract, order)


def _ibapi_cancel(sv: int, order_id: int, order_cancel: OrderCancel) -> bytes:
    _stats["ibapi_encodes"] += 1
    return _IBAPI.cancel_order(sv, order_id, order_cancel)


# --- Formatting patched values the way ibapi does -----------------------------------------------


class _NotTemplatable(Exception):
    """A value or shape the fast path does not reproduce: ibapi encodes this one."""


_U32: Final = struct.Struct(">I").pack
_F64: Final = struct.Struct("<d").pack
_BYTE: Final = tuple(bytes((i,)) for i in range(256))
_LOW_7: Final = tuple(bytes((i | 0x80,)) for i in range(0x80))  # a 7-bit group, more follow
_VARINT_14: Final = tuple(  # every varint below 2**14 (ids, lengths), built once
    _BYTE[i] if i < 0x80 else _LOW_7[i & 0x7F] + _BYTE[i >> 7] for i in range(0x4000)
)
_INT32_MIN: Final = -(2**31)
_UINT64: Final = 2**64 - 1
_UNSET_DECIMAL_INT: Final = int(UNSET_DECIMAL)
_ATOMS: Final = frozenset({str, int, float, bool, type(None), Decimal})
_NUMBERS: Final = frozenset({int, float, Decimal})


def _t_int(x: Any) -> str:
    """``comm.make_field`` of an int."""
    if x.__class__ is not int:
        raise _NotTemplatable
    return str(x)


def _t_price(x: Any) -> str:
    """``comm.make_field_handle_empty`` of an int or float."""
    cls = x.__class__
    if cls is not float and cls is not int:
        raise _NotTemplatable
    if x in (UNSET_INTEGER, UNSET_DOUBLE):
        return ""
    if x == DOUBLE_INFINITY:
        return INFINITY_STR
    return str(x)


def _t_str(x: Any) -> str:
    """``comm.make_field`` of a string that passes ibapi's ASCII check."""
    if x.__class__ is not str or not (x.isascii() and x.isprintable()):
        raise _NotTemplatable  # ibapi also accepts \t \n \r, or refuses: let it decide
    return x


def _varint(n: int) -> bytes:
    """The protobuf varint of ``n >= 0``."""
    if n < 0x4000:
        return _VARINT_14[n]
    if n < 0x200000:
        return _LOW_7[n & 0x7F] + _VARINT_14[n >> 7]
    if n < 0x10000000:
        return _LOW_7[n & 0x7F] + _LOW_7[n >> 7 & 0x7F] + _VARINT_14[n >> 14]
    out = bytearray()
    while n >= 0x80:
        out.append(n & 0x7F | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def _p_int32(tag: bytes, x: Any) -> bytes:
    """An int32 field, set by ``client_utils`` when ``isValidIntValue``."""
    if x.__class__ is not int:
        raise _NotTemplatable
    if 0 <= x < 0x80:
        return tag + _BYTE[x]
    if x == UNSET_INTEGER:
        return b""
    if _INT32_MIN <= x < UNSET_INTEGER:
        return tag + _varint(x & _UINT64)
    raise _NotTemplatable  # out of int32 range: upb raises, ibapi lets that through


def _p_double(tag: bytes, x: Any) -> bytes:
    """A double field, set when ``isValidFloatValue``."""
    cls = x.__class__
    if cls is not float and cls is not int:
        raise _NotTemplatable
    return b"" if x == UNSET_DOUBLE else tag + _F64(x)


def _p_string(tag: bytes, x: Any) -> bytes:
    """A string field, set when the attribute is truthy."""
    if not x:
        return b""
    if x.__class__ is not str:
        raise _NotTemplatable
    raw = x.encode()
    return tag + _varint(len(raw)) + raw


def _p_quantity(tag: bytes, x: Any) -> bytes:
    """totalQuantity: set when ``isValidDecimalValue``, written as ``decimalMaxString``."""
    cls = x.__class__
    if cls is Decimal:
        s = str(x)  # a plain finite number reads the same as f"{x:f}", and costs less
        if len(s) > 38 or not s[-1].isdigit() or "E" in s or "e" in s:
            # maybe UNSET_DECIMAL, an exponent, NaN or Infinity: ibapi's exact steps (a
            # signalling NaN raises InvalidOperation here as it does in ibapi)
            if x == UNSET_DECIMAL:
                return b""
            s = f"{x:f}"
    elif cls is int:
        if x == _UNSET_DECIMAL_INT:
            return b""
        s = str(x)  # f"{Decimal(n):f}" == str(n) for every int
    else:
        raise _NotTemplatable  # ibapi goes through Decimal(str(x)) for floats: let it
    raw = s.encode()
    return tag + _varint(len(raw)) + raw


# --- Shapes -------------------------------------------------------------------------------------

_ORDER_KEYS: Final = tuple(vars(Order()))
_CONTRACT_KEYS: Final = tuple(vars(Contract()))
_ORDER_WIDTH: Final = len(_ORDER_KEYS)
_CONTRACT_WIDTH: Final = len(_CONTRACT_KEYS)
_o = _ORDER_KEYS.index
_c = _CONTRACT_KEYS.index

_GET_PATCHED: Final = itemgetter(*map(_o, PATCHED_FIELDS))
(_I_QTY, _I_LMT, _I_AUX, _I_OCA, _I_REF, _I_PARENT, _I_DISPLAY, _I_GTD, _I_TSTOP, _I_TPCT) = map(
    _o, PATCHED_FIELDS
)
_I_ORDER_ID: Final = _o("orderId")
_I_TIER: Final = _o("softDollarTier")
_I_ORDER_TYPE: Final = _o("orderType")
_I_ACTION: Final = _o("action")
_I_CONDITIONS: Final = _o("conditions")
_ORDER_LISTS: Final = tuple(
    map(_o, ("algoParams", "smartComboRoutingParams", "orderComboLegs", "orderMiscOptions"))
)
_GET_ORDER_LISTS: Final = itemgetter(*_ORDER_LISTS)
_NO_LISTS: Final = (None,) * len(_ORDER_LISTS)
_I_SYMBOL: Final = _c("symbol")
_I_COMBO_LEGS: Final = _c("comboLegs")
_I_DELTA_NEUTRAL: Final = _c("deltaNeutralContract")


def _freeze(x: Any) -> Any:
    """An immutable copy of a value ibapi walks into (lists, TagValues, legs, conditions)."""
    cls = x.__class__
    if cls in _ATOMS:
        return x
    if cls is TagValue and x.tag.__class__ is str and x.value.__class__ is str:
        return (TagValue, x.tag, x.value)
    if cls is list or cls is tuple:
        return (cls, *map(_freeze, x))
    state = getattr(x, "__dict__", None)
    if state is None:
        raise _NotTemplatable
    return (cls, *[(name, _freeze(value)) for name, value in state.items()])


def _freeze_lists(values: list, positions: tuple[int, ...]) -> None:
    for i in positions:
        if values[i]:
            values[i] = _freeze(values[i])


def _is_frozen(x: Any) -> bool:
    cls = x.__class__
    if cls in _ATOMS or cls is type:
        return True
    return cls is tuple and all(map(_is_frozen, x))


def _private_copy(values: list) -> list | None:
    """A copy of shape values that shares nothing mutable with the caller; None if impossible."""
    out = []
    for x in values:
        cls = x.__class__
        if cls is list and not x:
            x = []
        elif cls is dict and all(map(_is_frozen, x.values())):
            x = dict(x)
        elif not _is_frozen(x):
            return None
        out.append(x)
    return out


# --- Probes -------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Probe:
    order_id: int
    values: tuple  # in PATCHED_FIELDS order; all present, each unlike the other probe's


_PROBES: Final = (
    _Probe(
        9_100_001,
        (Decimal("1.25"), 10.5, 11.75, "OCAPROBE1", "REFPROBE1", 9_100_002, 9_100_003,
         "20300101 10:00:00 UTC", 12.125, 1.5),
    ),
    _Probe(
        9_200_001,
        (Decimal("2.5"), 20.25, 21.5, "OCAPROBE2", "REFPROBE2", 9_200_002, 9_200_003,
         "20300202 11:00:00 UTC", 22.375, 2.25),
    ),
)  # fmt: skip


def _probe_order(order: Order, probe: _Probe) -> Order:
    probed = copy.copy(order)
    for name, value in zip(PATCHED_FIELDS, probe.values, strict=True):
        setattr(probed, name, value)
    return probed


Renderer = Callable[[Any, tuple], bytes]


# --- Text placeOrder (server version < 203) ------------------------------------------------------

_PRICE_TEXT: dict[float, str] = {}  # str() of recent non-zero limit prices
_PRICE_TEXT_SIZE: Final = 4096


def _price_text_miss(price_text: dict[float, str], price: float) -> str:
    """``str(price)``, as ibapi's make_field writes a float, remembered in ``price_text``
    (the callers look it up inline first: prices repeat, and str() of a float is the dearest
    step of a templated frame). 0.0 and -0.0 are equal keys with different text: not kept."""
    text = str(price)
    if price:
        if len(price_text) >= _PRICE_TEXT_SIZE:
            price_text.clear()
        price_text[price] = text
    return text


def _split_text(frame: bytes, raw_id: bool) -> tuple[str, list[str]]:
    """A text frame as (message id with its separator, the NUL-separated fields after it)."""
    payload = frame[4:].decode("latin-1")
    if raw_id:
        return payload[:4], payload[4:].split("\0")
    text_id, _, body = payload.partition("\0")
    return text_id + "\0", body.split("\0")


def _text_renderer(frames: list[bytes], raw_id: bool, first: tuple) -> Renderer | None:
    """Locate the 11 patched fields from two probe frames; chunks are the bytes between them."""
    chunks = _text_chunks(frames, raw_id)
    return None if chunks is None else _text_place(chunks, first)


def _text_chunks(frames: list[bytes], raw_id: bool) -> list[str] | None:
    """The 12 literal chunks around the order id and the patched fields, from two probes."""
    (head, fields_1), (head_2, fields_2) = (_split_text(frame, raw_id) for frame in frames)
    if head != head_2 or len(fields_1) != len(fields_2) or fields_1[-1] != "":
        return None
    slots = [i for i, (a, b) in enumerate(zip(fields_1, fields_2, strict=True)) if a != b]
    if len(slots) != 1 + len(PATCHED_FIELDS):
        return None
    chunks, start = [], 0
    for i in slots:
        chunks.append("".join(f + "\0" for f in fields_1[start:i]))
        start = i + 1
    chunks.append("".join(f + "\0" for f in fields_1[start:-1]))
    chunks[0] = head + chunks[0]
    chunks[1:] = ["\0" + chunk for chunk in chunks[1:]]
    return chunks


def _text_place(chunks: list[str], first: tuple) -> Renderer:
    """Render text frames. An order whose usually constant slots hold the very objects the
    template's first order held takes the prepared encoder's path (``_text_prepared``): only
    the id, quantity, limit price and ref are formatted. Any other order is rendered slot by
    slot."""
    c0, c1, c2, c3, c4, c5, c6, c7, c8, c9, c10, c11 = chunks

    def render(oid: Any, patched: tuple) -> bytes:
        qty, lmt, aux, oca, ref, parent, display, gtd, tstop, tpct = patched
        if oid.__class__ is not int or qty.__class__ not in _NUMBERS:
            raise _NotTemplatable
        body = "".join((
            c0, str(oid), c1, str(qty), c2, _t_price(lmt), c3, _t_price(aux), c4, _t_str(oca),
            c5, _t_str(ref), c6, _t_int(parent), c7, _t_int(display), c8, _t_str(gtd), c9,
            _t_price(tstop), c10, _t_price(tpct), c11,
        )).encode()  # fmt: skip
        return _U32(len(body)) + body

    try:
        fast = _text_prepared(chunks, first, _refuse)
    except Exception:  # a first-order value only ibapi formats: every order slot by slot
        return render
    return _first_shape_fast(first, fast, render)


def _first_shape_fast(first: tuple, fast: Encoder, other: Renderer) -> Renderer:
    """A renderer that sends an order whose usually constant slots (every patched field but
    the quantity, the limit price and the ref) hold the very objects the template's first
    order held to ``fast``, a prepared encoder built with those values; any other to ``other``.
    Identity, not equality: ``0`` and ``0.0`` are equal but ibapi writes them differently."""
    _, _, aux_1, oca_1, _, parent_1, display_1, gtd_1, tstop_1, tpct_1 = first

    def render(oid: Any, patched: tuple) -> bytes:
        qty, lmt, aux, oca, ref, parent, display, gtd, tstop, tpct = patched
        if (
            aux is aux_1
            and oca is oca_1
            and parent is parent_1
            and display is display_1
            and gtd is gtd_1
            and tstop is tstop_1
            and tpct is tpct_1
        ):
            return fast(oid, qty, lmt, ref)
        return other(oid, patched)

    return render


# --- Protobuf placeOrder (server version >= 203) -------------------------------------------------


def _pb_fields(buf: bytes) -> list[tuple[int, bytes]]:
    """The top-level fields of a serialized message: (field number, raw bytes incl. the tag)."""
    out, i, n = [], 0, len(buf)
    while i < n:
        start = i
        key, i = _read_varint(buf, i)
        wire_type = key & 7
        if wire_type == 0:
            _, i = _read_varint(buf, i)
        elif wire_type == 1:
            i += 8
        elif wire_type == 2:
            length, i = _read_varint(buf, i)
            i += length
        elif wire_type == 5:
            i += 4
        else:
            raise ValueError(f"unexpected wire type {wire_type}")
        if i > n:
            raise ValueError("truncated field")
        out.append((key >> 3, buf[start:i]))
    return out


def _read_varint(buf: bytes, i: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        b = buf[i]
        i += 1
        value |= (b & 0x7F) << shift
        shift += 7
        if b < 0x80:
            return value, i


def _tag(descriptor: Any, name: str, wire_type: int) -> tuple[int, bytes]:
    number = descriptor.fields_by_name[name].number
    return number, _varint(number << 3 | wire_type)


_PLACE_PROTO_ID: Final = (OUT.PLACE_ORDER + PROTOBUF_MSG_ID).to_bytes(4, "big")
_CANCEL_PROTO_ID: Final = (OUT.CANCEL_ORDER + PROTOBUF_MSG_ID).to_bytes(4, "big")
_PROTO_PLACE_FROM: Final = PROTOBUF_MSG_IDS[OUT.PLACE_ORDER]
_PROTO_CANCEL_FROM: Final = PROTOBUF_MSG_IDS[OUT.CANCEL_ORDER]
_N_ORDER_ID, _T_ORDER_ID = _tag(PlaceOrderRequestProto.DESCRIPTOR, "orderId", 0)
_N_ORDER, _T_ORDER = _tag(PlaceOrderRequestProto.DESCRIPTOR, "order", 2)
_N_CANCEL_ORDER_ID, _T_CANCEL_ORDER_ID = _tag(CancelOrderRequestProto.DESCRIPTOR, "orderId", 0)
# The patched fields of Order.proto in field-number order, which the renderer writes them in.
_PROTO_SLOTS: Final = (
    ("parentId", 0),
    ("totalQuantity", 2),
    ("displaySize", 0),
    ("lmtPrice", 1),
    ("auxPrice", 1),
    ("trailingPercent", 1),
    ("trailStopPrice", 1),
    ("goodTillDate", 2),
    ("ocaGroup", 2),
    ("orderRef", 2),
)
_PROTO_SLOT_TAGS: Final = tuple(_tag(OrderProto.DESCRIPTOR, n, wt) for n, wt in _PROTO_SLOTS)
_PROTO_SLOT_NUMBERS: Final = [number for number, _ in _PROTO_SLOT_TAGS]
_PROTO_SLOTS_SORTED: Final = sorted(set(_PROTO_SLOT_NUMBERS)) == _PROTO_SLOT_NUMBERS


def _proto_renderer(frame: bytes, first: tuple) -> Renderer | None:
    """Split ibapi's PlaceOrderRequest around the patched fields (upb writes by field number)."""
    parts = _proto_parts(frame)
    return None if parts is None else _proto_place(*parts, first)


def _proto_parts(frame: bytes) -> tuple[bytes, bytes, list[bytes]] | None:
    """(fields between orderId and order, fields after order, the 11 order chunks)."""
    payload = frame[4:]
    if payload[:4] != _PLACE_PROTO_ID or not _PROTO_SLOTS_SORTED:
        return None
    top = _pb_fields(payload[4:])
    numbers = [number for number, _ in top]
    if numbers != sorted(numbers) or numbers.count(_N_ORDER) != 1 or min(numbers) < _N_ORDER_ID:
        return None
    middle = b"".join(raw for number, raw in top if _N_ORDER_ID < number < _N_ORDER)
    tail = b"".join(raw for number, raw in top if number > _N_ORDER)
    order_raw = next(raw for number, raw in top if number == _N_ORDER)
    _, start = _read_varint(order_raw, len(_T_ORDER))
    inner = _pb_fields(order_raw[start:])
    inner_numbers = [number for number, _ in inner]
    if inner_numbers != sorted(inner_numbers):
        return None
    lows, highs = [0, *_PROTO_SLOT_NUMBERS], [*_PROTO_SLOT_NUMBERS, math.inf]
    chunks = [
        b"".join(raw for number, raw in inner if low < number < high)
        for low, high in zip(lows, highs, strict=True)
    ]
    return middle, tail, chunks


def _proto_place(middle: bytes, tail: bytes, chunks: list[bytes], first: tuple) -> Renderer:
    """Render PlaceOrderRequest frames. An order whose usually constant slots hold the very
    objects the template's first order held takes the prepared encoder's path
    (``_proto_prepared``: one ``struct`` pack in the usual case). Any other order is rendered
    field by field."""
    c0, c1, c2, c3, c4, c5, c6, c7, c8, c9, c10 = chunks
    t_parent, t_qty, t_display, t_lmt, t_aux, t_tpct, t_tstop, t_gtd, t_oca, t_ref = (
        tag for _, tag in _PROTO_SLOT_TAGS
    )
    msg_id, t_oid, head = _PLACE_PROTO_ID, _T_ORDER_ID, middle + _T_ORDER

    def render(oid: Any, patched: tuple) -> bytes:
        qty, lmt, aux, oca, ref, parent, display, gtd, tstop, tpct = patched
        body = b"".join((
            c0, _p_int32(t_parent, parent), c1, _p_quantity(t_qty, qty), c2,
            _p_int32(t_display, display), c3, _p_double(t_lmt, lmt), c4, _p_double(t_aux, aux),
            c5, _p_double(t_tpct, tpct), c6, _p_double(t_tstop, tstop), c7,
            _p_string(t_gtd, gtd), c8, _p_string(t_oca, oca), c9, _p_string(t_ref, ref), c10,
        ))  # fmt: skip
        msg = b"".join((msg_id, _p_int32(t_oid, oid), head, _varint(len(body)), body, tail))
        return _U32(len(msg)) + msg

    try:
        fast = _proto_prepared(middle, tail, chunks, first, _refuse)
    except Exception:  # a first-order value only ibapi formats: every order field by field
        return render
    return _first_shape_fast(first, fast, render)


# --- placeOrder: the cache ----------------------------------------------------------------------


def _ibapi_only(oid: Any, patched: tuple) -> bytes:
    raise _NotTemplatable


class _Template:
    __slots__ = ("contract_values", "order_values", "render", "server_version")

    def __init__(self, sv: int, order_values: Any, contract_values: Any, render: Renderer):
        self.server_version = sv
        self.order_values = order_values
        self.contract_values = contract_values
        self.render = render


_place_buckets: OrderedDict[tuple, list[_Template]] = OrderedDict()
_NO_TEMPLATE: Final = _Template(-1, None, None, _ibapi_only)
_mru = _NO_TEMPLATE


def encode_place_order(
    server_version: int, order_id: int, contract: Contract, order: Order
) -> bytes:
    """The frame ``EClient.placeOrder(order_id, contract, order)`` sends at ``server_version``.

    Raises ``IbEncodeError`` where ibapi would report an error instead of sending.
    """
    if (order.__class__ is not Order or contract.__class__ is not Contract) and not (
        _canonical_layout(order, contract)
    ):
        return _ibapi_place(server_version, order_id, contract, order)
    v = [*order.__dict__.values()]
    c = [*contract.__dict__.values()]
    try:
        patched = _GET_PATCHED(v)
        v[_I_ORDER_ID] = v[_I_QTY] = v[_I_LMT] = v[_I_AUX] = v[_I_OCA] = v[_I_REF] = None
        v[_I_PARENT] = v[_I_DISPLAY] = v[_I_GTD] = v[_I_TSTOP] = v[_I_TPCT] = None
        v[_I_TIER] = v[_I_TIER].__dict__
    except Exception:  # not an Order as ibapi makes them: let ibapi judge it
        return _ibapi_place(server_version, order_id, contract, order)
    # The most recent template first. Lists are compared as the caller holds them: an empty one
    # equals the template's private empty list, a non-empty one never equals the frozen tuple
    # a template keeps, so it takes the slower path below, which freezes it.
    tpl = _mru
    if tpl.server_version == server_version and tpl.order_values == v and tpl.contract_values == c:
        try:
            return tpl.render(order_id, patched)
        except Exception:  # a value only ibapi formats exactly (or refuses)
            return _ibapi_place(server_version, order_id, contract, order)
    return _place_from_buckets(server_version, order_id, contract, order, v, c, patched)


def _canonical_layout(order: Order, contract: Contract) -> bool:
    """A subclass whose attributes sit where ``Order.__init__`` / ``Contract.__init__`` put them.

    The fast path reads attributes by position; ibapi's own classes create them in one order
    (the count is checked later), a subclass may not.
    """
    try:
        return tuple(vars(order)) == _ORDER_KEYS and tuple(vars(contract)) == _CONTRACT_KEYS
    except TypeError:  # no __dict__
        return False


def _place_from_buckets(
    sv: int, order_id: int, contract: Contract, order: Order, v: list, c: list, patched: tuple
) -> bytes:
    try:
        if v[_I_CONDITIONS] or _GET_ORDER_LISTS(v) != _NO_LISTS:
            _freeze_lists(v, (_I_CONDITIONS, *_ORDER_LISTS))
        if c[_I_COMBO_LEGS] or c[_I_DELTA_NEUTRAL] is not None:
            _freeze_lists(c, (_I_COMBO_LEGS, _I_DELTA_NEUTRAL))
        tpl = _find_place_template(sv, v, c)
    except Exception:  # a list holding objects that cannot be copied: ibapi only
        return _ibapi_place(sv, order_id, contract, order)
    if tpl is None:
        return _new_place_shape(sv, order_id, contract, order, v, c, patched)
    try:
        return tpl.render(order_id, patched)
    except Exception:
        return _ibapi_place(sv, order_id, contract, order)


def _place_key(sv: int, v: list, c: list) -> tuple:
    return (sv, v[_I_ORDER_TYPE], v[_I_ACTION], c[_I_SYMBOL])


def _find_place_template(sv: int, v: list, c: list) -> _Template | None:
    global _mru
    key = _place_key(sv, v, c)
    bucket = _place_buckets.get(key)  # TypeError if orderType, action or symbol is unhashable
    if bucket is None:
        return None
    for i, tpl in enumerate(bucket):
        if tpl.order_values == v and tpl.contract_values == c:
            _place_buckets.move_to_end(key)
            if i:
                bucket.insert(0, bucket.pop(i))
            _mru = tpl
            return tpl
    return None


def _new_place_shape(
    sv: int, order_id: int, contract: Contract, order: Order, v: list, c: list, patched: tuple
) -> bytes:
    global _mru
    frame = _ibapi_place(sv, order_id, contract, order)
    order_values, contract_values = _private_copy(v), _private_copy(c)
    if (
        order_values is None
        or contract_values is None
        or len(v) != _ORDER_WIDTH
        or len(c) != _CONTRACT_WIDTH
    ):
        return frame  # not a plain ibapi Order/Contract, or it holds objects we cannot copy
    render = _place_renderer(sv, order_id, contract, order, patched, frame)
    if render is None:
        render = _ibapi_only
    else:
        _stats["templates_built"] += 1
    tpl = _Template(sv, order_values, contract_values, render)
    key = _place_key(sv, v, c)
    try:
        bucket = _place_buckets.get(key)
    except TypeError:
        return frame
    if bucket is None:
        if len(_place_buckets) >= _MAX_BUCKETS:
            _place_buckets.popitem(last=False)
        _place_buckets[key] = [tpl]
    else:
        bucket.insert(0, tpl)
        del bucket[_BUCKET_SIZE:]
        _place_buckets.move_to_end(key)
    _mru = tpl
    return frame


def _place_renderer(
    sv: int, order_id: int, contract: Contract, order: Order, patched: tuple, frame: bytes
) -> Renderer | None:
    """A shape's renderer, from two probe encodes; None unless it reproduces all three frames."""
    if sv < MIN_SERVER_VER_FRACTIONAL_POSITIONS:
        return None  # ibapi writes int(totalQuantity) there: the value changes the format
    try:
        probe_frames = [
            _IBAPI.place_order(sv, probe.order_id, contract, _probe_order(order, probe))
            for probe in _PROBES
        ]
        if sv >= _PROTO_PLACE_FROM:
            render = _proto_renderer(probe_frames[0], patched)
        else:
            render = _text_renderer(probe_frames, sv >= MIN_SERVER_VER_PROTOBUF, patched)
        if render is None or any(
            render(probe.order_id, probe.values) != probe_frame
            for probe, probe_frame in zip(_PROBES, probe_frames, strict=True)
        ):
            return None
    except Exception:  # ibapi refused a probe, or a frame we cannot split: no template
        return None
    try:
        if render(order_id, patched) != frame:
            return None
    except Exception:
        pass  # this order's own values need ibapi; the probes proved the template
    return render


# --- placeOrder: a prepared shape ---------------------------------------------------------------

#: (order id, quantity, limit price, orderRef) every new prepared template must encode exactly as
#: ibapi does before it is used: ids of each varint length and a negative one, whole, lot-size,
#: int and exponent quantities, prices present, signed zero and UNSET_DOUBLE, refs empty, short,
#: and too long for the fast case's one-byte length.
_PREPARE_CHECKS: Final = (
    (1, Decimal(1), 101.25, "1"),
    (200, Decimal("0.007"), UNSET_DOUBLE, "123456789012"),
    (20_000, 12, 0.5, ""),
    (3_000_000, Decimal(123456), 99.99, "x" * 130),
    (2**28 + 5, Decimal("1E+2"), 1e22, "r"),
    (-3, Decimal("2.50"), -0.0, "42"),
)

#: ``PlaceOrderTemplate.encode``'s signature: (order_id, quantity, limit_price, order_ref).
Encoder = Callable[[Any, Any, Any, Any], bytes]


class PlaceOrderTemplate:
    """placeOrder frames for one fixed shape; ``encode`` formats only the four per-order fields.

    Made by ``prepare_place_order``. ``encode(order_id, quantity, limit_price, order_ref)``
    returns what ``EClient.placeOrder(order_id, contract, order')`` sends at ``server_version``,
    where ``order'`` is the order as it was when prepared with ``totalQuantity``, ``lmtPrice``
    and ``orderRef`` replaced; it raises what ``encode_place_order`` would for that order.
    """

    __slots__ = ("contract", "encode", "order", "server_version", "templated")

    def __init__(
        self, sv: int, contract: Contract, order: Order, encode: Encoder, templated: bool
    ) -> None:
        self.server_version = sv
        self.contract = contract  #: the private snapshot frames are made from
        self.order = order  #: the private snapshot; its four per-order fields are scratch
        #: The encoder itself (an attribute, not a method: a call skips the bound-method step).
        self.encode = encode
        #: False when no template reproduced ibapi for this shape: every call goes to ibapi.
        self.templated = templated


def prepare_place_order(
    server_version: int, contract: Contract, order: Order
) -> PlaceOrderTemplate:
    """A template for orders that differ from ``order`` only in id, quantity, price and ref.

    The contract for the caller: the shape is what ``contract`` and ``order`` hold *now*
    (both are deep-copied here), and ``encode`` never looks at them again, so it cannot notice
    a later change to any other attribute (an account, a TIF, an algo parameter, an extra such
    as ``auxPrice`` or ``parentId``). A caller whose shape changes must prepare a new template;
    one that cannot promise a fixed shape uses ``encode_place_order``, which compares the shape
    on every call. The price of that check (~1.1 µs) is what this API saves.

    The template is built from ibapi's own frames for probe values, then checked against ibapi
    on ``_PREPARE_CHECKS``; a shape it cannot reproduce (or a server version below 101, where
    ibapi writes ``int(totalQuantity)``) gives a template whose every call goes to ibapi. So do
    per-call values the fast formatting does not cover (other types, ints outside int32,
    non-printable or, in text, non-ASCII refs...), so ``encode`` is exact for any input.
    """
    sv = server_version
    snap_contract, snap_order = copy.deepcopy(contract), copy.deepcopy(order)

    def slow(order_id: Any, quantity: Any, limit_price: Any, order_ref: Any) -> bytes:
        o = snap_order
        o.totalQuantity, o.lmtPrice, o.orderRef = quantity, limit_price, order_ref
        return _ibapi_place(sv, order_id, snap_contract, o)

    build = _prepared_builder(sv, snap_contract, snap_order)
    if build is None:
        return PlaceOrderTemplate(sv, snap_contract, snap_order, slow, False)
    _stats["templates_built"] += 1
    return PlaceOrderTemplate(sv, snap_contract, snap_order, build(slow), True)


def _refuse(*args: Any) -> bytes:
    raise _NotTemplatable


def _prepared_builder(
    sv: int, contract: Contract, order: Order
) -> Callable[[Encoder], Encoder] | None:
    """A maker of fast encoders for this shape (given their fallback), or None.

    The encoder checked against ibapi falls back to ``_refuse``, so a check that would have
    passed only because ibapi answered it fails instead.
    """
    if sv < MIN_SERVER_VER_FRACTIONAL_POSITIONS:
        return None
    try:
        fixed = tuple(getattr(order, name) for name in PATCHED_FIELDS)
        frames = [
            _IBAPI.place_order(sv, probe.order_id, contract, _probe_order(order, probe))
            for probe in _PROBES
        ]
        build: Callable[[Encoder], Encoder]
        if sv >= _PROTO_PLACE_FROM:
            parts = _proto_parts(frames[0])
            if parts is None:
                return None
            build = lambda slow: _proto_prepared(*parts, fixed, slow)  # noqa: E731
        else:
            chunks = _text_chunks(frames, sv >= MIN_SERVER_VER_PROTOBUF)
            if chunks is None:
                return None
            build = lambda slow: _text_prepared(chunks, fixed, slow)  # noqa: E731
        check = build(_refuse)
        for order_id, quantity, limit_price, order_ref in _PREPARE_CHECKS:
            order.totalQuantity, order.lmtPrice, order.orderRef = quantity, limit_price, order_ref
            if check(order_id, quantity, limit_price, order_ref) != _IBAPI.place_order(
                sv, order_id, contract, order
            ):
                return None
    except Exception:  # ibapi refused, a frame we cannot split, a fixed value we cannot format
        return None
    return build


def _text_prepared(chunks: list[str], fixed: tuple, slow: Encoder) -> Encoder:
    """The text encoder: one f-string between the chunks, the fixed slots pre-joined."""
    c0, c1, c2, c3, c4, c5, c6, c7, c8, c9, c10, c11 = chunks
    _, _, aux, oca, _, parent, display, gtd, tstop, tpct = fixed
    mid = c3 + _t_price(aux) + c4 + _t_str(oca) + c5
    end = "".join((
        c6, _t_int(parent), c7, _t_int(display), c8, _t_str(gtd), c9, _t_price(tstop), c10,
        _t_price(tpct), c11,
    ))  # fmt: skip
    unset_double, unset_int = UNSET_DOUBLE, float(UNSET_INTEGER)
    price_text = _PRICE_TEXT

    def encode(order_id: Any, quantity: Any, limit_price: Any, order_ref: Any) -> bytes:
        if not (
            order_id.__class__ is int
            and (quantity.__class__ is Decimal or quantity.__class__ is int)
            and order_ref.__class__ is str
            and order_ref.isascii()
            and order_ref.isprintable()  # inside what ibapi's isAsciiPrintable accepts
        ):
            return slow(order_id, quantity, limit_price, order_ref)
        if (
            limit_price.__class__ is float
            and limit_price < unset_double  # not UNSET, Infinity or NaN
            and limit_price != unset_int
        ):
            lmt = price_text.get(limit_price)  # str() of a float is the dearest step here
            if lmt is None:
                lmt = _price_text_miss(price_text, limit_price)
        else:
            try:
                lmt = _t_price(limit_price)  # UNSET, Infinity, NaN, ints
            except _NotTemplatable:
                return slow(order_id, quantity, limit_price, order_ref)
        body = f"{c0}{order_id!s}{c1}{quantity!s}{c2}{lmt}{mid}{order_ref}{end}".encode()
        return _U32(len(body)) + body

    return encode


def _proto_prepared(
    middle: bytes, tail: bytes, chunks: list[bytes], fixed: tuple, slow: Encoder
) -> Encoder:
    """The protobuf encoder: one ``struct`` pack per call in the usual case.

    The usual case is a non-negative id below 2**28, a quantity whose ``decimalMaxString`` is
    its ``str`` (no exponent, under 39 characters, so never UNSET_DECIMAL), a float price and
    an ASCII ref under 128 characters. Their lengths fix the order sub-message's length and
    the frame's, so a pack format and the bytes around the four fields are cached per
    (id varint length, quantity length, ref length, price present). Anything else is rendered
    field by field, and what that cannot format goes to ``slow``.
    """
    c0, c1, c2, c3, c4, c5, c6, c7, c8, c9, c10 = chunks
    t_parent, t_qty, t_display, t_lmt, t_aux, t_tpct, t_tstop, t_gtd, t_oca, t_ref = (
        tag for _, tag in _PROTO_SLOT_TAGS
    )
    _, _, aux, oca, _, parent, display, gtd, tstop, tpct = fixed
    before_qty = c0 + _p_int32(t_parent, parent) + c1
    after_qty = c2 + _p_int32(t_display, display) + c3
    after_lmt = b"".join((
        c4, _p_double(t_aux, aux), c5, _p_double(t_tpct, tpct), c6, _p_double(t_tstop, tstop),
        c7, _p_string(t_gtd, gtd), c8, _p_string(t_oca, oca), c9,
    ))  # fmt: skip
    msg_id, t_oid = _PLACE_PROTO_ID, _T_ORDER_ID
    head = middle + _T_ORDER
    end = c10 + tail
    fixed_len = len(before_qty) + len(t_qty) + 1 + len(after_qty) + len(after_lmt) + len(c10)
    layouts: dict[int, tuple[Callable[..., bytes], bytes, bytes, bytes, bytes]] = {}

    def layout(key: int) -> tuple[Callable[..., bytes], bytes, bytes, bytes, bytes]:
        """(pack, bytes before the id, id to quantity, quantity to price, price to ref)."""
        id_len, qty_len, ref_len, has_lmt = key >> 16, key >> 8 & 0xFF, key >> 1 & 0x7F, key & 1
        lmt_len = len(t_lmt) + 8 if has_lmt else 0
        ref_head = t_ref + _BYTE[ref_len] if ref_len else b""
        n = fixed_len + qty_len + lmt_len + len(ref_head) + ref_len
        size_n = _varint(n)
        total = len(msg_id) + len(t_oid) + id_len + len(head) + len(size_n) + n + len(tail)
        pre = _U32(total) + msg_id + t_oid
        mid = head + size_n + before_qty + t_qty + _BYTE[qty_len]
        to_lmt = after_qty + t_lmt if has_lmt else after_qty
        to_ref = after_lmt + ref_head
        fmt = (
            f"<{len(pre)}s{id_len}s{len(mid)}s{qty_len}s{len(to_lmt)}s{'d' if has_lmt else ''}"
            f"{len(to_ref)}s{ref_len}s{len(end)}s"
        )
        layouts[key] = found = (struct.Struct(fmt).pack, pre, mid, to_lmt, to_ref)
        return found

    unset = UNSET_DOUBLE

    def encode(order_id: Any, quantity: Any, limit_price: Any, order_ref: Any) -> bytes:
        if (
            order_id.__class__ is int
            and 0 <= order_id < 0x10000000
            and limit_price.__class__ is float
            and order_ref.__class__ is str
            and order_ref.isascii()
            and len(order_ref) < 0x80
        ):
            s = str(quantity)
            if len(s) < 39 and (
                quantity.__class__ is int
                or (quantity.__class__ is Decimal and s[-1].isdigit() and "E" not in s)
            ):
                i = _VARINT_14[order_id] if order_id < 0x4000 else _varint(order_id)
                key = len(i) << 16 | len(s) << 8 | len(order_ref) << 1
                if limit_price != unset:
                    pack, pre, mid, to_lmt, to_ref = layouts.get(key | 1) or layout(key | 1)
                    return pack(
                        pre, i, mid, s.encode(), to_lmt, limit_price, to_ref, order_ref.encode(),
                        end,
                    )  # fmt: skip
                pack, pre, mid, to_lmt, to_ref = layouts.get(key) or layout(key)
                return pack(pre, i, mid, s.encode(), to_lmt, to_ref, order_ref.encode(), end)
        try:
            body = b"".join((
                before_qty, _p_quantity(t_qty, quantity), after_qty,
                _p_double(t_lmt, limit_price), after_lmt, _p_string(t_ref, order_ref), c10,
            ))  # fmt: skip
            msg = b"".join(
                (msg_id, _p_int32(t_oid, order_id), head, _varint(len(body)), body, tail)
            )
        except Exception:  # a value only ibapi formats exactly (or refuses)
            return slow(order_id, quantity, limit_price, order_ref)
        return _U32(len(msg)) + msg

    return encode


# --- cancelOrder --------------------------------------------------------------------------------

_CANCEL_PROBE_IDS: Final = (9_300_001, 9_400_001)
_cancel_shapes: OrderedDict[tuple, Callable[[Any], bytes]] = OrderedDict()


def encode_cancel_order(server_version: int, order_id: int, order_cancel: OrderCancel) -> bytes:
    """The frame ``EClient.cancelOrder(order_id, order_cancel)`` sends at ``server_version``.

    Raises ``IbEncodeError`` where ibapi would report an error instead of sending.
    """
    try:
        if order_cancel.__class__ is not OrderCancel:
            raise _NotTemplatable
        t = order_cancel.manualOrderCancelTime
        e = order_cancel.extOperator
        m = order_cancel.manualOrderIndicator
        key = (server_version, t.__class__, t, e.__class__, e, m.__class__, m)
        render = _cancel_shapes.get(key)
    except Exception:  # not an OrderCancel ibapi would take as is: let ibapi judge it
        return _ibapi_cancel(server_version, order_id, order_cancel)
    if render is None:
        return _new_cancel_shape(server_version, order_id, order_cancel, key)
    _cancel_shapes.move_to_end(key)
    try:
        return render(order_id)
    except Exception:
        return _ibapi_cancel(server_version, order_id, order_cancel)


def _ibapi_only_cancel(oid: Any) -> bytes:
    raise _NotTemplatable


def _new_cancel_shape(sv: int, order_id: int, order_cancel: OrderCancel, key: tuple) -> bytes:
    frame = _ibapi_cancel(sv, order_id, order_cancel)
    if not _is_frozen(key):
        return frame
    render = _cancel_renderer(sv, order_id, order_cancel, frame)
    if render is None:
        render = _ibapi_only_cancel
    else:
        _stats["templates_built"] += 1
    if len(_cancel_shapes) >= _MAX_CANCEL_SHAPES:
        _cancel_shapes.popitem(last=False)
    _cancel_shapes[key] = render
    return frame


def _cancel_renderer(
    sv: int, order_id: int, order_cancel: OrderCancel, frame: bytes
) -> Callable[[Any], bytes] | None:
    try:
        probe_frames = [_IBAPI.cancel_order(sv, oid, order_cancel) for oid in _CANCEL_PROBE_IDS]
        if sv >= _PROTO_CANCEL_FROM:
            render = _proto_cancel_renderer(probe_frames[0])
        else:
            render = _text_cancel_renderer(probe_frames, sv >= MIN_SERVER_VER_PROTOBUF)
        checks = list(zip(_CANCEL_PROBE_IDS, probe_frames, strict=True))
        if order_id.__class__ is int:
            checks.append((order_id, frame))
        if render is None or any(render(oid) != expected for oid, expected in checks):
            return None
    except Exception:  # ibapi refused a probe, or a frame we cannot split: no template
        return None
    return render


def _text_cancel_renderer(frames: list[bytes], raw_id: bool) -> Callable[[Any], bytes] | None:
    (head, fields_1), (head_2, fields_2) = (_split_text(frame, raw_id) for frame in frames)
    if head != head_2 or len(fields_1) != len(fields_2):
        return None
    slots = [i for i, (a, b) in enumerate(zip(fields_1, fields_2, strict=True)) if a != b]
    if len(slots) != 1:
        return None
    before = head + "".join(f + "\0" for f in fields_1[: slots[0]])
    after = "\0" + "\0".join(fields_1[slots[0] + 1 :])

    def render(oid: Any) -> bytes:
        body = (before + _t_int(oid) + after).encode()
        return _U32(len(body)) + body

    return render


def _proto_cancel_renderer(frame: bytes) -> Callable[[Any], bytes] | None:
    payload = frame[4:]
    if payload[:4] != _CANCEL_PROTO_ID:
        return None
    top = _pb_fields(payload[4:])
    numbers = [number for number, _ in top]
    if numbers != sorted(numbers) or min(numbers, default=0) < _N_CANCEL_ORDER_ID:
        return None
    msg_id = _CANCEL_PROTO_ID
    tail = b"".join(raw for number, raw in top if number != _N_CANCEL_ORDER_ID)
    tag = _T_CANCEL_ORDER_ID

    def render(oid: Any) -> bytes:
        msg = msg_id + _p_int32(tag, oid) + tail
        return _U32(len(msg)) + msg

    return render


# --- Introspection ------------------------------------------------------------------------------


def cache_stats() -> CacheStats:
    """Counters since the last ``clear_cache()``: shapes cached, templates built, ibapi calls."""
    return CacheStats(
        place_shapes=sum(map(len, _place_buckets.values())),
        cancel_shapes=len(_cancel_shapes),
        templates_built=_stats["templates_built"],
        ibapi_encodes=_stats["ibapi_encodes"],
    )


def clear_cache() -> None:
    """Forget every template and reset the counters."""
    global _mru
    _place_buckets.clear()
    _cancel_shapes.clear()
    _PRICE_TEXT.clear()
    _mru = _NO_TEMPLATE
    _stats["templates_built"] = _stats["ibapi_encodes"] = 0
