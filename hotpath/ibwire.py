"""IB TWS API receive path: cut a socket read into frames and decode the hot market-data
messages into numpy rows, one kernel call per read.

``decode_batch`` walks the receive buffer once: it cuts length-prefixed frames (``cut_frames``
on its own does only that), reads each frame's message id and, for the hot messages, writes
``HOT_ROW`` rows exactly as ``ibapi``'s ``Decoder`` (10.46) would call the ``EWrapper``:

=========================  ======  ========  =================================================
message                    text    protobuf  rows
=========================  ======  ========  =================================================
tickPrice                  1       201       ``TICK_PRICE``, then ``TICK_SIZE`` for bid, ask,
                                             last (1, 2, 4 -> 0, 3, 5) and delayed 66-68 ->
                                             69-71, as ``processTickPriceMsg`` does
tickSize                   2       202       ``TICK_SIZE`` unless the tick type is 111, which
                                             ibapi's ``TickTypeEnum.NOT_SET`` happens to be
updateMktDepth             12      212       ``MKT_DEPTH``
updateMktDepthL2           13      213       ``MKT_DEPTH_L2``
tickByTick                 99      299       ``TBT_LAST`` (types 1 Last, 2 AllLast),
                                             ``TBT_BID_ASK`` (3), ``TBT_MID_POINT`` (4); none
                                             for other types
=========================  ======  ========  =================================================

Every other frame is *cold*: the frame table marks it and the adapter hands it to ``ibapi``.
A hot frame ``ibapi`` would reject (a missing field, a number ``int()``/``float()``/
``Decimal()`` refuses, a protobuf ``ParseFromString`` refuses) is *malformed*: no rows, a
reason code, and the kernel carries on with the next frame.

Text semantics are those of ``ibapi.utils.decode`` over ``comm.read_fields``: a field counts
only when NUL-terminated; an empty int or float field is 0; a size (``Decimal``) is unset when
empty or one of IB's sentinels (``2147483647``, ``9223372036854775807``,
``-9223372036854775808``, ``1.7976931348623157E308``, byte for byte); numbers follow Python's
grammars (surrounding ASCII whitespace, ``_`` between digits, ``inf``/``nan``; ``Decimal`` also
drops every ``_`` and takes ``sNaN`` and NaN payloads). Floats are correctly rounded: exact
arithmetic when the digits allow it (every price TWS prints), C's ``strtod`` otherwise.
Protobuf semantics are those of the upb parser behind ``ParseFromString``: last value wins,
repeated sub-messages merge, a oneof keeps its last member, unknown fields (groups included)
are skipped, strings must be valid UTF-8; absent fields take the defaults the
``process*ProtoBuf`` methods give them (``reqId`` -1, ``UNSET_INTEGER``, ``UNSET_DOUBLE``, unset
size; an absent ``attrMask`` is ``UNSET_INTEGER``, so all three tickPrice attributes are set).

Known differences, none of which TWS sends: an integer field beyond its column's range
(int32, int64 for ``time``) is malformed where Python would take a big int; a size with
non-ASCII digits or whitespace (which ``Decimal`` reads) is malformed; a string longer than its
fixed column is cut and the row flagged ``FLAG_STRING_CUT``; the unset size is
``UNSET_SIZE = float(UNSET_DECIMAL)``, so a size written as 2**127 - 1 reads as unset too (it is
the same number).
"""

from __future__ import annotations

import numba
import numpy as np
from numba import njit, types

from hotpath.jit import kernel

MAX_MSG_LEN = 0xFFFFFF
"""``ibapi.const.MAX_MSG_LEN``: a longer frame is error 507 BAD_LENGTH and ends the session."""
PROTOBUF_MSG_ID = 200
MIN_SERVER_VER_PAST_LIMIT = 109
MIN_SERVER_VER_PRE_OPEN_BID_ASK = 132
MIN_SERVER_VER_SMART_DEPTH = 146
MIN_SERVER_VER_PROTOBUF = 201

UNSET_INTEGER = 2**31 - 1
UNSET_DOUBLE = float(np.finfo(np.float64).max)
UNSET_SIZE = float(2**127 - 1)
"""``float(ibapi.const.UNSET_DECIMAL)``: the size column's "no size"."""
NO_VALID_ID = -1
TICK_TYPE_NOT_SET = 111
"""``ibapi.ticktype.TickTypeEnum.NOT_SET``: the enum's index of its name, not IB's -1."""

# IN message ids of the hot messages (text form; protobuf is + PROTOBUF_MSG_ID).
TICK_PRICE = 1
TICK_SIZE = 2
MARKET_DEPTH = 12
MARKET_DEPTH_L2 = 13
TICK_BY_TICK = 99

# ---- rows ------------------------------------------------------------------------------------

STRING_WIDTH = 16

HOT_ROW = np.dtype(
    [
        ("price", "f8"),  # TICK_PRICE, MKT_DEPTH*, TBT_LAST
        ("size", "f8"),  # TICK_PRICE (the size it carries), TICK_SIZE, MKT_DEPTH*, TBT_LAST
        ("bid_price", "f8"),  # TBT_BID_ASK
        ("ask_price", "f8"),
        ("bid_size", "f8"),
        ("ask_size", "f8"),
        ("mid_point", "f8"),  # TBT_MID_POINT
        ("time", "i8"),  # TBT_*: epoch seconds
        ("frame", "i4"),  # index of the frame in the batch's frame table
        ("req_id", "i4"),
        ("tick_type", "i4"),  # TICK_*; TBT_LAST: 1 Last, 2 AllLast (3, 4 for the others)
        ("position", "i4"),  # MKT_DEPTH*
        ("operation", "i4"),  # MKT_DEPTH*: 0 insert, 1 update, 2 delete
        ("side", "i4"),  # MKT_DEPTH*: 0 ask, 1 bid (IB's numbering)
        ("kind", "u1"),  # KIND_*
        ("attrib", "u1"),  # attribute bits as ibapi reads them, see ATTRIB_*
        ("is_smart_depth", "?"),  # MKT_DEPTH_L2
        ("flags", "u1"),  # FLAG_*
        ("market_maker", f"S{STRING_WIDTH}"),  # MKT_DEPTH_L2
        ("exchange", f"S{STRING_WIDTH}"),  # TBT_LAST
        ("special_conditions", f"S{STRING_WIDTH}"),  # TBT_LAST
    ],
    align=True,
)
"""One EWrapper callback's values. Columns a kind does not use are 0 (empty strings).
Strings are the raw bytes (``ibapi`` decodes text ones as UTF-8 with ``backslashreplace``)."""

KIND_TICK_PRICE = 1  # tickPrice(req_id, tick_type, price, attrib); size is the size it carried
KIND_TICK_SIZE = 2  # tickSize(req_id, tick_type, size)
KIND_MKT_DEPTH = 3  # updateMktDepth(req_id, position, operation, side, price, size)
KIND_MKT_DEPTH_L2 = 4  # updateMktDepthL2(... market_maker ..., is_smart_depth)
KIND_TBT_LAST = 5  # tickByTickAllLast(req_id, tick_type, time, price, size, attrib, exch, cond)
KIND_TBT_BID_ASK = 6  # tickByTickBidAsk(req_id, time, bid, ask, bid_size, ask_size, attrib)
KIND_TBT_MID_POINT = 7  # tickByTickMidPoint(req_id, time, mid_point)

# ``attrib`` bits, per kind: TickAttrib / TickAttribLast / TickAttribBidAsk.
ATTRIB_CAN_AUTO_EXECUTE = 1  # TICK_PRICE
ATTRIB_PAST_LIMIT = 2  # TICK_PRICE
ATTRIB_PRE_OPEN = 4  # TICK_PRICE
ATTRIB_LAST_PAST_LIMIT = 1  # TBT_LAST
ATTRIB_LAST_UNREPORTED = 2  # TBT_LAST
ATTRIB_BID_PAST_LOW = 1  # TBT_BID_ASK
ATTRIB_ASK_PAST_HIGH = 2  # TBT_BID_ASK

FLAG_PROTOBUF = 1  # the frame was protobuf
FLAG_STRING_CUT = 2  # a string did not fit its column (or ended in NUL bytes numpy drops)

# ---- frame table (int64 columns) ---------------------------------------------------------------

F_OFFSET = 0  # payload start in the buffer (after the 4-byte length)
F_LENGTH = 1  # payload length
F_MSG_ID = 2  # message id as on the wire (> 200: protobuf), -1 when unreadable
F_STATUS = 3  # FRAME_*
F_ROW = 4  # rows written before this frame (the frame's first row, if any)
F_ROWS = 5  # rows this frame wrote (0 to 2)
F_ERROR = 6  # ERR_* for a malformed frame
F_PAYLOAD = 7  # where the fields (text) or the protobuf bytes start, after the id
N_FRAME_COLUMNS = 8

FRAME_HOT = 0
FRAME_COLD = 1
FRAME_MALFORMED = 2

ERR_NONE = 0
ERR_BAD_ID = 1
ERR_MISSING_FIELD = 2
ERR_BAD_INT = 3
ERR_INT_RANGE = 4
ERR_BAD_FLOAT = 5
ERR_BAD_DECIMAL = 6
ERR_BAD_PROTOBUF = 7
ERROR_NAMES = (
    "ok",
    "message id unreadable (no NUL-terminated integer before the fields)",
    "a field is missing (ibapi: BadMessage 'no more fields')",
    "an integer field is not an integer",
    "an integer field is out of its column's range",
    "a price field is not a number",
    "a size field is not a decimal",
    "the protobuf body does not parse",
)

# ``decode_batch`` / ``cut_frames`` status.
CUT_DONE = 0  # every complete frame was taken
CUT_FULL = 1  # the frame table filled up; call again for the rest
CUT_BAD_LENGTH = 2  # a length prefix > MAX_MSG_LEN: the stream is broken, close the connection

# ---- helpers (compiled into the kernels that call them) ----------------------------------------
#
# Without Numba's reference counting, as in ``hotpath.book``: they borrow the kernel's arrays.

_helper = njit(_nrt=False)

_strtod = types.ExternalFunction("strtod", types.float64(types.voidptr, types.voidptr))
"""C ``strtod`` (correctly rounded in glibc, musl and macOS) for the digits exact arithmetic
cannot round; it only ever sees the canonical ``[-]digits'e'exponent`` this module writes. It
follows ``LC_NUMERIC``, which Python leaves at "C": should an application switch it to a
decimal-comma locale, such a number stops short, and the frame is flagged malformed (the
end pointer is checked), never misread."""

_POW10 = np.array([10.0**k for k in range(23)])  # exact doubles
_TWO53 = 1 << 53
_W_DIGITS = 18  # significant digits gathered in an int64 (19 could overflow it)
_KEEP_DIGITS = 780  # more significant digits than ever decide the rounding of a double
_SCRATCH = 1024  # canonical number text: sign, _KEEP_DIGITS + 1 digits, 'e', exponent
_DEC_MAX_ADJ_EXP = 999_999_999_999_999_999  # libmpdec MPD_MAX_EMAX (64-bit)
_DEC_MIN_EXP = -1_999_999_999_999_999_997  # libmpdec MPD_MIN_ETINY
_EXP_EXACT = 9 * 10**17  # exponent literals are exact up to here (int64 holds 10 times more)

_W_INFINITY = np.frombuffer(b"infinity", dtype=np.uint8).copy()
_W_INF = np.frombuffer(b"inf", dtype=np.uint8).copy()
_W_NAN = np.frombuffer(b"nan", dtype=np.uint8).copy()
_W_SNAN = np.frombuffer(b"snan", dtype=np.uint8).copy()

_UNSET_TEXTS = (b"2147483647", b"9223372036854775807", b"-9223372036854775808")
_UNSET_TEXTS += (b"1.7976931348623157E308",)
_UNSET_LEN = np.array([len(t) for t in _UNSET_TEXTS], dtype=np.int64)
_UNSET_BYTES = np.zeros((len(_UNSET_TEXTS), 32), dtype=np.uint8)
for _k, _t in enumerate(_UNSET_TEXTS):
    _UNSET_BYTES[_k, : len(_t)] = np.frombuffer(_t, dtype=np.uint8)

_OFF_MM = HOT_ROW.fields["market_maker"][1]
_OFF_EXCH = HOT_ROW.fields["exchange"][1]
_OFF_COND = HOT_ROW.fields["special_conditions"][1]
_ITEMSIZE = HOT_ROW.itemsize


@_helper
def _is_digit(c):  # pragma: no cover
    return 48 <= c <= 57


@_helper
def _is_space(c, decimal):  # pragma: no cover
    """ASCII whitespace as int() and float() strip it; str.strip (Decimal) adds 0x1c-0x1f."""
    return c == 32 or 9 <= c <= 13 or (decimal and 28 <= c <= 31)


@_helper
def _strip(buf, s, e, decimal):  # pragma: no cover
    while s < e and _is_space(np.int64(buf[s]), decimal):
        s += 1
    while e > s and _is_space(np.int64(buf[e - 1]), decimal):
        e -= 1
    return s, e


@_helper
def _underscores_between_digits(buf, s, e):  # pragma: no cover
    """Python's int() and float(): every ``_`` sits between two digits."""
    for i in range(s, e):
        if buf[i] == 95 and (
            i == s
            or i + 1 == e
            or not _is_digit(np.int64(buf[i - 1]))
            or not _is_digit(np.int64(buf[i + 1]))
        ):
            return False
    return True


@_helper
def _parse_int(buf, s, e):  # pragma: no cover
    """``int(field or 0)``: ``(ok, value mod 2**64 as int64, fits in int64)``."""
    if s == e:
        return True, np.int64(0), True
    s, e = _strip(buf, s, e, False)
    if s == e or not _underscores_between_digits(buf, s, e):
        return False, np.int64(0), True
    neg = False
    c = np.int64(buf[s])
    if c == 43 or c == 45:
        neg = c == 45
        s += 1
    lim = 922337203685477580
    last = 8 if neg else 7
    m = np.int64(0)
    fits = True
    digits = 0
    for i in range(s, e):
        c = np.int64(buf[i])
        if _is_digit(c):
            d = c - 48
            if m > lim or (m == lim and d > last) or m < 0:
                fits = False
            m = m * 10 + d  # wraps past int64: the low 64 bits stay exact
            digits += 1
        elif c != 95:
            return False, np.int64(0), True
    if digits == 0:
        return False, np.int64(0), True
    return True, -m if neg else m, fits


@_helper
def _match_word(buf, i, e, word, skip_us):  # pragma: no cover
    """Index after ``word`` (case-insensitive) at ``i``, or -1."""
    for k in range(word.shape[0]):
        while skip_us and i < e and buf[i] == 95:
            i += 1
        if i >= e or (np.int64(buf[i]) | 32) != word[k]:
            return -1
        i += 1
    return i


@_helper
def _special(buf, i, e, decimal, neg):  # pragma: no cover
    """inf / infinity / nan (float and Decimal), nan<digits> / snan<digits> (Decimal only)."""
    j = _match_word(buf, i, e, _W_INFINITY, decimal)
    if j < 0:
        j = _match_word(buf, i, e, _W_INF, decimal)
    if j >= 0:
        while decimal and j < e and buf[j] == 95:
            j += 1
        if j == e:
            return True, -np.inf if neg else np.inf
        return False, 0.0
    j = _match_word(buf, i, e, _W_NAN, decimal)
    if j < 0 and decimal:
        j = _match_word(buf, i, e, _W_SNAN, decimal)
    if j < 0:
        return False, 0.0
    if decimal:  # NaN payload digits
        while j < e and (_is_digit(np.int64(buf[j])) or buf[j] == 95):
            j += 1
    return j == e, np.nan


@_helper
def _write_int(out, k, v):  # pragma: no cover
    """Decimal text of ``v`` at ``out[k:]``; returns the index after it."""
    if v < 0:
        out[k] = 45
        k += 1
        v = -v
    n = 1
    t = v
    while t >= 10:
        t //= 10
        n += 1
    for j in range(n - 1, -1, -1):
        out[k + j] = 48 + v % 10
        v //= 10
    return k + n


@_helper
def _slow_real(buf, ms, me, neg, nsig, e10, iw, fb):  # pragma: no cover
    """Correctly rounded value of the digits in ``buf[ms:me]`` times 10**e10 via strtod."""
    text = fb[_TEXT:]
    k = 0
    if neg:
        text[0] = 45
        k = 1
    kept = 0
    sticky = False
    for i in range(ms, me):
        c = np.int64(buf[i])
        if not _is_digit(c) or (kept == 0 and c == 48):
            continue
        if kept < _KEEP_DIGITS:
            text[k] = c
            k += 1
            kept += 1
        elif c != 48:
            sticky = True
            break
    if sticky:
        text[k] = 49
        k += 1
        kept += 1
    text[k] = 101
    k = _write_int(text, k + 1, e10 + nsig - kept)
    text[k] = 0
    end = iw[_ENDP:]
    v = _strtod(text.ctypes.data, end.ctypes.data)
    return end[0] == np.int64(text.ctypes.data) + k, v


@_helper
def _parse_real(buf, s, e, decimal, iw, fb):  # pragma: no cover
    """``float(bytes)`` (``decimal`` False) or ``float(Decimal(str))`` of a non-empty field:
    ``(ok, value)``."""
    s, e = _strip(buf, s, e, decimal)
    if s == e:
        return False, 0.0
    for i in range(s, e):
        if buf[i] >= 128:
            return False, 0.0
    if not decimal and not _underscores_between_digits(buf, s, e):
        return False, 0.0
    i = s
    while i < e and buf[i] == 95:
        i += 1
    neg = False
    if i < e and (buf[i] == 43 or buf[i] == 45):
        neg = buf[i] == 45
        i += 1
        while i < e and buf[i] == 95:
            i += 1
    if i < e and (np.int64(buf[i]) | 32) >= 97:
        return _special(buf, i, e, decimal, neg)
    ms = i
    w = np.int64(0)
    nsig = 0
    ndrop = 0
    dropped_nonzero = False
    nfrac = 0
    ndig = 0
    in_frac = False
    while i < e:
        c = np.int64(buf[i])
        if _is_digit(c):
            d = c - 48
            ndig += 1
            if in_frac:
                nfrac += 1
            if nsig > 0 or d != 0:
                if nsig < _W_DIGITS:
                    w = w * 10 + d
                else:
                    ndrop += 1
                    dropped_nonzero = dropped_nonzero or d != 0
                nsig += 1
        elif c == 46 and not in_frac:
            in_frac = True
        elif c != 95:
            break
        i += 1
    me = i
    if ndig == 0:
        return False, 0.0
    exp = np.int64(0)
    eover = False  # the exponent has more digits than any real one
    if i < e and (buf[i] == 101 or buf[i] == 69):
        i += 1
        while i < e and buf[i] == 95:
            i += 1
        eneg = False
        if i < e and (buf[i] == 43 or buf[i] == 45):
            eneg = buf[i] == 45
            i += 1
        edig = 0
        while i < e:
            c = np.int64(buf[i])
            if _is_digit(c):
                if exp > _EXP_EXACT:
                    eover = True
                else:
                    exp = exp * 10 + (c - 48)
                edig += 1
            elif c != 95:
                break
            i += 1
        if edig == 0:
            return False, 0.0
        if eneg:
            exp = -exp
    if i != e:
        return False, 0.0
    if eover:
        if decimal:
            return False, 0.0  # libmpdec refuses the exponent: Decimal() raises
        big = nsig > 0 and exp > 0
        return True, (-np.inf if neg else np.inf) if big else (-0.0 if neg else 0.0)
    e10 = exp - nfrac  # value = (all significant digits) * 10**e10
    if decimal and (e10 + max(nsig, 1) - 1 > _DEC_MAX_ADJ_EXP or e10 < _DEC_MIN_EXP):
        return False, 0.0  # libmpdec refuses the exponent: Decimal() raises
    if nsig == 0:
        return True, -0.0 if neg else 0.0
    q = e10
    if nsig > _W_DIGITS and not dropped_nonzero:
        q = e10 + ndrop
    if nsig <= _W_DIGITS or not dropped_nonzero:
        if w <= _TWO53 and -22 <= q <= 22:
            v = w * _POW10[q] if q >= 0 else w / _POW10[-q]
            return True, -v if neg else v
        if 22 < q <= 22 + 15 and w <= _TWO53:
            t = w
            k = q - 22
            while k > 0 and t <= _TWO53:
                t *= 10
                k -= 1
            if t <= _TWO53:
                v = t * _POW10[22]
                return True, -v if neg else v
    if nsig + e10 > 310:
        return True, -np.inf if neg else np.inf
    if nsig + e10 < -324:
        return True, -0.0 if neg else 0.0
    return _slow_real(buf, ms, me, neg, nsig, e10, iw, fb)


@_helper
def _is_unset_size(buf, s, e):  # pragma: no cover
    n = e - s
    for k in range(_UNSET_LEN.shape[0]):
        if _UNSET_LEN[k] == n:
            same = True
            for j in range(n):
                if buf[s + j] != _UNSET_BYTES[k, j]:
                    same = False
                    break
            if same:
                return True
    return False


@_helper
def _text_size(buf, s, e, iw, fb):  # pragma: no cover
    """``decode(Decimal, fields)``: the sentinels and the empty field are unset."""
    if s == e or _is_unset_size(buf, s, e):
        return True, UNSET_SIZE
    return _parse_real(buf, s, e, True, iw, fb)


@_helper
def _field_end(buf, p, b):  # pragma: no cover
    """The NUL ending the field at ``p``, or -1: ``read_fields`` drops an unterminated tail."""
    for i in range(p, b):
        if buf[i] == 0:
            return i
    return -1


@_helper
def _next_int(buf, p, b, lo, hi):  # pragma: no cover
    """``(err, value, next)`` for an int field whose value must lie in ``[lo, hi]``."""
    e = _field_end(buf, p, b)
    if e < 0:
        return ERR_MISSING_FIELD, np.int64(0), p
    ok, v, fits = _parse_int(buf, p, e)
    if not ok:
        return ERR_BAD_INT, np.int64(0), p
    if not fits or v < lo or v > hi:
        return ERR_INT_RANGE, np.int64(0), p
    return ERR_NONE, v, e + 1


@_helper
def _next_bits(buf, p, b):  # pragma: no cover
    """``(err, value mod 2**64, nonzero, next)`` for a mask or a bool: only its bits count."""
    e = _field_end(buf, p, b)
    if e < 0:
        return ERR_MISSING_FIELD, np.int64(0), False, p
    ok, v, fits = _parse_int(buf, p, e)
    if not ok:
        return ERR_BAD_INT, np.int64(0), False, p
    return ERR_NONE, v, v != 0 or not fits, e + 1


@_helper
def _next_float(buf, p, b, iw, fb):  # pragma: no cover
    e = _field_end(buf, p, b)
    if e < 0:
        return ERR_MISSING_FIELD, 0.0, p
    if e == p:
        return ERR_NONE, 0.0, e + 1
    ok, v = _parse_real(buf, p, e, False, iw, fb)
    if not ok:
        return ERR_BAD_FLOAT, 0.0, p
    return ERR_NONE, v, e + 1


@_helper
def _next_size(buf, p, b, iw, fb):  # pragma: no cover
    e = _field_end(buf, p, b)
    if e < 0:
        return ERR_MISSING_FIELD, 0.0, p
    ok, v = _text_size(buf, p, e, iw, fb)
    if not ok:
        return ERR_BAD_DECIMAL, 0.0, p
    return ERR_NONE, v, e + 1


@_helper
def _next_str(buf, p, b):  # pragma: no cover
    """``(err, start, end, next)`` of a string field."""
    e = _field_end(buf, p, b)
    if e < 0:
        return ERR_MISSING_FIELD, p, p, p
    return ERR_NONE, p, e, e + 1


# ---- rows -------------------------------------------------------------------------------------


@_helper
def _row(rows, raw, r, kind, frame, flags, req_id):  # pragma: no cover
    for j in range(_ITEMSIZE):
        raw[r, j] = 0
    row = rows[r]
    row.kind = kind
    row.frame = frame
    row.flags = flags
    row.req_id = req_id
    return row


@_helper
def _put_str(rows, raw, r, off, buf, s, e):  # pragma: no cover
    """Copy ``buf[s:e]`` into the fixed string at byte ``off`` of row ``r``; flag a cut."""
    n = min(e - s, STRING_WIDTH)
    for j in range(n):
        raw[r, off + j] = buf[s + j]
    if e - s > STRING_WIDTH or (n > 0 and buf[s + n - 1] == 0):
        rows[r].flags |= FLAG_STRING_CUT


@_helper
def _size_tick_type(tick_type):  # pragma: no cover
    """The tickSize ``processTickPriceMsg`` adds after a price, or -1 for none."""
    if tick_type == 1:
        return 0
    if tick_type == 2:
        return 3
    if tick_type == 4:
        return 5
    if 66 <= tick_type <= 68:
        return tick_type + 3
    return -1


@_helper
def _emit_tick_price(rows, raw, r, fi, flags, req, tt, price, size, attrib):  # pragma: no cover
    row = _row(rows, raw, r, KIND_TICK_PRICE, fi, flags, req)
    row.tick_type = tt
    row.price = price
    row.size = size
    row.attrib = attrib
    st = _size_tick_type(tt)
    if st < 0:
        return 1
    row = _row(rows, raw, r + 1, KIND_TICK_SIZE, fi, flags, req)
    row.tick_type = st
    row.size = size
    return 2


@_helper
def _emit_depth(rows, raw, r, fi, flags, kind, req, pos, op, side, price, size):  # pragma: no cover
    row = _row(rows, raw, r, kind, fi, flags, req)
    row.position = pos
    row.operation = op
    row.side = side
    row.price = price
    row.size = size
    return row


# ---- text messages ----------------------------------------------------------------------------

_I32_MIN = -(2**31)
_I32_MAX = 2**31 - 1
_I64_MIN = -(2**63)
_I64_MAX = 2**63 - 1


@_helper
def _text_tick_price(buf, p, b, version, rows, raw, r, fi, iw, fb):  # pragma: no cover
    err, _, _, p = _next_bits(buf, p, b)  # version
    if err:
        return err, 0
    err, req, p = _next_int(buf, p, b, _I32_MIN, _I32_MAX)
    if err:
        return err, 0
    err, tt, p = _next_int(buf, p, b, _I32_MIN, _I32_MAX)
    if err:
        return err, 0
    err, price, p = _next_float(buf, p, b, iw, fb)
    if err:
        return err, 0
    err, size, p = _next_size(buf, p, b, iw, fb)
    if err:
        return err, 0
    err, mask, _, p = _next_bits(buf, p, b)
    if err:
        return err, 0
    if version >= MIN_SERVER_VER_PAST_LIMIT:
        attrib = mask & 3
        if version >= MIN_SERVER_VER_PRE_OPEN_BID_ASK:
            attrib |= mask & 4
    else:
        attrib = 1 if mask == 1 else 0
    return ERR_NONE, _emit_tick_price(rows, raw, r, fi, 0, req, tt, price, size, attrib)


@_helper
def _text_tick_size(buf, p, b, rows, raw, r, fi, iw, fb):  # pragma: no cover
    err, _, _, p = _next_bits(buf, p, b)  # version
    if err:
        return err, 0
    err, req, p = _next_int(buf, p, b, _I32_MIN, _I32_MAX)
    if err:
        return err, 0
    err, tt, p = _next_int(buf, p, b, _I32_MIN, _I32_MAX)
    if err:
        return err, 0
    err, size, p = _next_size(buf, p, b, iw, fb)
    if err:
        return err, 0
    if tt == TICK_TYPE_NOT_SET:  # ibapi calls nothing
        return ERR_NONE, 0
    row = _row(rows, raw, r, KIND_TICK_SIZE, fi, 0, req)
    row.tick_type = tt
    row.size = size
    return ERR_NONE, 1


@_helper
def _text_depth(buf, p, b, l2, version, rows, raw, r, fi, iw, fb):  # pragma: no cover
    err, _, _, p = _next_bits(buf, p, b)  # version
    if err:
        return err, 0
    err, req, p = _next_int(buf, p, b, _I32_MIN, _I32_MAX)
    if err:
        return err, 0
    err, pos, p = _next_int(buf, p, b, _I32_MIN, _I32_MAX)
    if err:
        return err, 0
    mm_s = mm_e = p
    if l2:
        err, mm_s, mm_e, p = _next_str(buf, p, b)
        if err:
            return err, 0
    err, op, p = _next_int(buf, p, b, _I32_MIN, _I32_MAX)
    if err:
        return err, 0
    err, side, p = _next_int(buf, p, b, _I32_MIN, _I32_MAX)
    if err:
        return err, 0
    err, price, p = _next_float(buf, p, b, iw, fb)
    if err:
        return err, 0
    err, size, p = _next_size(buf, p, b, iw, fb)
    if err:
        return err, 0
    smart = False
    if l2 and version >= MIN_SERVER_VER_SMART_DEPTH:
        err, _, smart, p = _next_bits(buf, p, b)
        if err:
            return err, 0
    kind = KIND_MKT_DEPTH_L2 if l2 else KIND_MKT_DEPTH
    row = _emit_depth(rows, raw, r, fi, 0, kind, req, pos, op, side, price, size)
    if l2:
        row.is_smart_depth = smart
        _put_str(rows, raw, r, _OFF_MM, buf, mm_s, mm_e)
    return ERR_NONE, 1


@_helper
def _text_tick_by_tick(buf, p, b, rows, raw, r, fi, iw, fb):  # pragma: no cover
    err, req, p = _next_int(buf, p, b, _I32_MIN, _I32_MAX)
    if err:
        return err, 0
    err, tt, p = _next_int(buf, p, b, _I32_MIN, _I32_MAX)
    if err:
        return err, 0
    err, t, p = _next_int(buf, p, b, _I64_MIN, _I64_MAX)
    if err:
        return err, 0
    if tt == 1 or tt == 2:
        err, price, p = _next_float(buf, p, b, iw, fb)
        if err:
            return err, 0
        err, size, p = _next_size(buf, p, b, iw, fb)
        if err:
            return err, 0
        err, mask, _, p = _next_bits(buf, p, b)
        if err:
            return err, 0
        err, ex_s, ex_e, p = _next_str(buf, p, b)
        if err:
            return err, 0
        err, sc_s, sc_e, p = _next_str(buf, p, b)
        if err:
            return err, 0
        row = _row(rows, raw, r, KIND_TBT_LAST, fi, 0, req)
        row.tick_type = tt
        row.time = t
        row.price = price
        row.size = size
        row.attrib = mask & 3
        _put_str(rows, raw, r, _OFF_EXCH, buf, ex_s, ex_e)
        _put_str(rows, raw, r, _OFF_COND, buf, sc_s, sc_e)
        return ERR_NONE, 1
    if tt == 3:
        err, bid, p = _next_float(buf, p, b, iw, fb)
        if err:
            return err, 0
        err, ask, p = _next_float(buf, p, b, iw, fb)
        if err:
            return err, 0
        err, bid_size, p = _next_size(buf, p, b, iw, fb)
        if err:
            return err, 0
        err, ask_size, p = _next_size(buf, p, b, iw, fb)
        if err:
            return err, 0
        err, mask, _, p = _next_bits(buf, p, b)
        if err:
            return err, 0
        row = _row(rows, raw, r, KIND_TBT_BID_ASK, fi, 0, req)
        row.tick_type = 3
        row.time = t
        row.bid_price = bid
        row.ask_price = ask
        row.bid_size = bid_size
        row.ask_size = ask_size
        row.attrib = mask & 3
        return ERR_NONE, 1
    if tt == 4:
        err, mid, p = _next_float(buf, p, b, iw, fb)
        if err:
            return err, 0
        row = _row(rows, raw, r, KIND_TBT_MID_POINT, fi, 0, req)
        row.tick_type = 4
        row.time = t
        row.mid_point = mid
        return ERR_NONE, 1
    return ERR_NONE, 0  # 0 (None) and unknown types: ibapi calls nothing


# ---- protobuf ---------------------------------------------------------------------------------
#
# One table-driven parser for the five messages and their nested types. Every field of every
# type owns a *slot* (has-flag, int, double, string span); a type's slots, its nested types'
# included, form one contiguous range, so starting a message (or switching a oneof member)
# clears a range. ``_PB_FIELD[type, field number] = (kind, slot, nested type, oneof lo, hi)``.
# tests/test_ib_hot_decode.py checks the table against ibapi's _pb2 descriptors.

PB_INT32 = 1
PB_INT64 = 2
PB_BOOL = 3
PB_DOUBLE = 4
PB_STRING = 5
PB_MESSAGE = 6

PB_TICK_PRICE = 0
PB_TICK_SIZE = 1
PB_MARKET_DEPTH = 2  # MarketDepth and MarketDepthL2 share their layout
PB_MARKET_DEPTH_DATA = 3
PB_TICK_BY_TICK = 4
PB_HISTORICAL_TICK_LAST = 5
PB_TICK_ATTRIB_LAST = 6
PB_HISTORICAL_TICK_BID_ASK = 7
PB_TICK_ATTRIB_BID_ASK = 8
PB_HISTORICAL_TICK = 9

PB_SCHEMA = {
    # type: (protobuf name, slot range, {field number: (name, kind, slot, nested type)})
    PB_TICK_PRICE: (
        "TickPrice",
        (0, 5),
        {
            1: ("reqId", PB_INT32, 0, -1),
            2: ("tickType", PB_INT32, 1, -1),
            3: ("price", PB_DOUBLE, 2, -1),
            4: ("size", PB_STRING, 3, -1),
            5: ("attrMask", PB_INT32, 4, -1),
        },
    ),
    PB_TICK_SIZE: (
        "TickSize",
        (5, 8),
        {
            1: ("reqId", PB_INT32, 5, -1),
            2: ("tickType", PB_INT32, 6, -1),
            3: ("size", PB_STRING, 7, -1),
        },
    ),
    PB_MARKET_DEPTH: (
        "MarketDepth",
        (8, 17),
        {
            1: ("reqId", PB_INT32, 8, -1),
            2: ("marketDepthData", PB_MESSAGE, 9, PB_MARKET_DEPTH_DATA),
        },
    ),
    PB_MARKET_DEPTH_DATA: (
        "MarketDepthData",
        (10, 17),
        {
            1: ("position", PB_INT32, 10, -1),
            2: ("operation", PB_INT32, 11, -1),
            3: ("side", PB_INT32, 12, -1),
            4: ("price", PB_DOUBLE, 13, -1),
            5: ("size", PB_STRING, 14, -1),
            6: ("marketMaker", PB_STRING, 15, -1),
            7: ("isSmartDepth", PB_BOOL, 16, -1),
        },
    ),
    PB_TICK_BY_TICK: (
        "TickByTickData",
        (17, 41),
        {
            1: ("reqId", PB_INT32, 17, -1),
            2: ("tickType", PB_INT32, 18, -1),
            3: ("historicalTickLast", PB_MESSAGE, 19, PB_HISTORICAL_TICK_LAST),
            4: ("historicalTickBidAsk", PB_MESSAGE, 20, PB_HISTORICAL_TICK_BID_ASK),
            5: ("historicalTickMidPoint", PB_MESSAGE, 21, PB_HISTORICAL_TICK),
        },
    ),
    PB_HISTORICAL_TICK_LAST: (
        "HistoricalTickLast",
        (22, 30),
        {
            1: ("time", PB_INT64, 22, -1),
            2: ("tickAttribLast", PB_MESSAGE, 23, PB_TICK_ATTRIB_LAST),
            3: ("price", PB_DOUBLE, 26, -1),
            4: ("size", PB_STRING, 27, -1),
            5: ("exchange", PB_STRING, 28, -1),
            6: ("specialConditions", PB_STRING, 29, -1),
        },
    ),
    PB_TICK_ATTRIB_LAST: (
        "TickAttribLast",
        (24, 26),
        {1: ("pastLimit", PB_BOOL, 24, -1), 2: ("unreported", PB_BOOL, 25, -1)},
    ),
    PB_HISTORICAL_TICK_BID_ASK: (
        "HistoricalTickBidAsk",
        (30, 38),
        {
            1: ("time", PB_INT64, 30, -1),
            2: ("tickAttribBidAsk", PB_MESSAGE, 31, PB_TICK_ATTRIB_BID_ASK),
            3: ("priceBid", PB_DOUBLE, 34, -1),
            4: ("priceAsk", PB_DOUBLE, 35, -1),
            5: ("sizeBid", PB_STRING, 36, -1),
            6: ("sizeAsk", PB_STRING, 37, -1),
        },
    ),
    PB_TICK_ATTRIB_BID_ASK: (
        "TickAttribBidAsk",
        (32, 34),
        {1: ("bidPastLow", PB_BOOL, 32, -1), 2: ("askPastHigh", PB_BOOL, 33, -1)},
    ),
    PB_HISTORICAL_TICK: (
        "HistoricalTick",
        (38, 41),
        {
            1: ("time", PB_INT64, 38, -1),
            2: ("price", PB_DOUBLE, 39, -1),
            3: ("size", PB_STRING, 40, -1),
        },
    ),
}
PB_ONEOF = {PB_TICK_BY_TICK: (3, 4, 5)}  # TickByTickData's oneof ``tick``
_N_SLOTS = 41
_MAX_DEPTH = 100  # upb's default recursion limit: messages and groups nested deeper fail


def _pb_tables() -> tuple[np.ndarray, np.ndarray]:
    field = np.zeros((len(PB_SCHEMA), 8, 5), dtype=np.int64)
    span = np.zeros((len(PB_SCHEMA), 2), dtype=np.int64)
    for t, (_, (lo, hi), fields) in PB_SCHEMA.items():
        span[t] = lo, hi
        members = PB_ONEOF.get(t, ())
        for number, (_, kind, slot, nested) in fields.items():
            field[t, number, :3] = kind, slot, nested
            if number in members:
                field[t, number, 3] = fields[members[0]][2]
                field[t, number, 4] = fields[members[-1]][2] + 1
    return field, span


_PB_FIELD, _PB_SPAN = _pb_tables()

# The kernel's working memory: two arrays (and a byte view), so that calls between helpers stay
# cheap: every array argument is seven machine words through Numba's calling convention, and
# passing a dozen arrays down three levels of calls cost more than decoding the message.
# ``iw`` (int64): per slot a has-flag and an int; per slot a string span (start, end); per
# nesting depth the end and type of the message being parsed; the unknown-group stack; the end
# pointer strtod returns. ``fw`` (float64): per slot a double, one double to reinterpret a
# fixed64's bytes, then the text handed to strtod (written through ``fb``, its bytes).
_HAS = 0
_INT = _HAS + _N_SLOTS
_SPAN = _INT + _N_SLOTS
_ENDS = _SPAN + 2 * _N_SLOTS
_TYPES = _ENDS + _MAX_DEPTH + 2
_GROUPS = _TYPES + _MAX_DEPTH + 2
_ENDP = _GROUPS + _MAX_DEPTH + 2
_IW_SIZE = _ENDP + 1
_F64 = _N_SLOTS
_TEXT = 8 * (_F64 + 1)
_FW_SIZE = _F64 + 1 + _SCRATCH // 8


@_helper
def _pb_varint(buf, p, b):  # pragma: no cover
    """``(ok, value as int64, next)``: at most 10 bytes, bits past 64 ignored (as upb)."""
    v = np.int64(0)
    shift = 0
    for _ in range(10):
        if p >= b:
            return False, np.int64(0), p
        c = np.int64(buf[p])
        p += 1
        v |= (c & 0x7F) << shift
        if c < 0x80:
            return True, v, p
        shift += 7
    return False, np.int64(0), p


@_helper
def _pb_tag(buf, p, b):  # pragma: no cover
    """``(ok, field number, wire type, next)``: a tag is at most 5 bytes and 32 bits."""
    v = np.int64(0)
    shift = 0
    for _ in range(5):
        if p >= b:
            break
        c = np.int64(buf[p])
        p += 1
        v |= (c & 0x7F) << shift
        if c < 0x80:
            if v > 0xFFFFFFFF or (v >> 3) == 0:
                break
            return True, v >> 3, v & 7, p
        shift += 7
    return False, np.int64(0), np.int64(0), p


@_helper
def _pb_skip_value(buf, p, b, wire):  # pragma: no cover
    """Skip an unknown field's value (not a group); ``(ok, next)``."""
    if wire == 0:
        ok, _, p = _pb_varint(buf, p, b)
        return ok, p
    if wire == 1:
        return b - p >= 8, p + 8
    if wire == 5:
        return b - p >= 4, p + 4
    if wire == 2:
        ok, n, p = _pb_varint(buf, p, b)
        return ok and 0 <= n <= b - p, p + n
    return False, p


@_helper
def _pb_skip_group(buf, p, b, number, depth, iw):  # pragma: no cover
    """Skip an unknown group up to its matching end tag; ``(ok, next)``."""
    iw[_GROUPS] = number
    n = 1
    while True:
        if depth + n > _MAX_DEPTH:
            return False, p
        ok, fn, wire, p = _pb_tag(buf, p, b)
        if not ok:
            return False, p
        if wire == 3:
            iw[_GROUPS + n] = fn
            n += 1
        elif wire == 4:
            if iw[_GROUPS + n - 1] != fn:
                return False, p
            n -= 1
            if n == 0:
                return True, p
        else:
            ok, p = _pb_skip_value(buf, p, b, wire)
            if not ok:
                return False, p


@_helper
def _utf8_ok(buf, s, e):  # pragma: no cover
    """Strict UTF-8 (no overlongs, surrogates or code points past U+10FFFF), as upb checks."""
    i = s
    while i < e:
        c = np.int64(buf[i])
        if c < 0x80:
            i += 1
            continue
        if 0xC2 <= c <= 0xDF:
            n, lo, hi = 1, 0x80, 0xBF
        elif c == 0xE0:
            n, lo, hi = 2, 0xA0, 0xBF
        elif 0xE1 <= c <= 0xEC or 0xEE <= c <= 0xEF:
            n, lo, hi = 2, 0x80, 0xBF
        elif c == 0xED:
            n, lo, hi = 2, 0x80, 0x9F
        elif c == 0xF0:
            n, lo, hi = 3, 0x90, 0xBF
        elif 0xF1 <= c <= 0xF3:
            n, lo, hi = 3, 0x80, 0xBF
        elif c == 0xF4:
            n, lo, hi = 3, 0x80, 0x8F
        else:
            return False
        if e - i <= n:
            return False
        c1 = np.int64(buf[i + 1])
        if c1 < lo or c1 > hi:
            return False
        for j in range(2, n + 1):
            if not 0x80 <= buf[i + j] <= 0xBF:
                return False
        i += n + 1
    return True


@_helper
def _pb_parse(buf, a, b, top, iw, fw, fb):  # pragma: no cover
    """Parse a protobuf body into the slots of type ``top``; False where upb raises."""
    for k in range(_PB_SPAN[top, 0], _PB_SPAN[top, 1]):
        iw[_HAS + k] = 0
    depth = 0
    iw[_ENDS] = b
    iw[_TYPES] = top
    p = a
    while True:
        end = iw[_ENDS + depth]
        if p == end:
            if depth == 0:
                return True
            depth -= 1
            continue
        ok, fn, wire, p = _pb_tag(buf, p, end)
        if not ok:
            return False
        t = iw[_TYPES + depth]
        kind = slot = nested = 0
        if fn < 8:
            kind = _PB_FIELD[t, fn, 0]
            slot = _PB_FIELD[t, fn, 1]
            nested = _PB_FIELD[t, fn, 2]
        if wire == 0 and kind in (PB_INT32, PB_INT64, PB_BOOL):
            ok, v, p = _pb_varint(buf, p, end)
            if not ok:
                return False
            if kind == PB_INT32:
                v = ((v & 0xFFFFFFFF) ^ 0x80000000) - 0x80000000
            elif kind == PB_BOOL:
                v = 1 if v != 0 else 0
            iw[_INT + slot] = v
            iw[_HAS + slot] = 1
        elif wire == 1 and kind == PB_DOUBLE:
            if end - p < 8:
                return False
            for j in range(8):  # little-endian, as the host (see HotDecoder)
                fb[8 * _F64 + j] = buf[p + j]
            fw[slot] = fw[_F64]
            iw[_HAS + slot] = 1
            p += 8
        elif wire == 2 and kind in (PB_STRING, PB_MESSAGE):
            ok, n, p = _pb_varint(buf, p, end)
            if not ok or n < 0 or n > end - p:
                return False
            if kind == PB_STRING:
                if not _utf8_ok(buf, p, p + n):
                    return False
                iw[_SPAN + 2 * slot] = p
                iw[_SPAN + 2 * slot + 1] = p + n
                iw[_HAS + slot] = 1
                p += n
            else:
                if depth + 1 > _MAX_DEPTH:
                    return False
                if iw[_HAS + slot] == 0:  # first sight, or a oneof switching to this member
                    for k in range(_PB_FIELD[t, fn, 3], _PB_FIELD[t, fn, 4]):
                        iw[_HAS + k] = 0
                    for k in range(_PB_SPAN[nested, 0], _PB_SPAN[nested, 1]):
                        iw[_HAS + k] = 0
                iw[_HAS + slot] = 1
                depth += 1
                iw[_ENDS + depth] = p + n
                iw[_TYPES + depth] = nested
        elif wire == 3:
            ok, p = _pb_skip_group(buf, p, end, fn, depth, iw)
            if not ok:
                return False
        else:
            ok, p = _pb_skip_value(buf, p, end, wire)
            if not ok:
                return False


@_helper
def _pb_size(buf, iw, slot, fb):  # pragma: no cover
    """``Decimal(proto.size)`` if present (no sentinels, empty is an error), else unset."""
    if iw[_HAS + slot] == 0:
        return True, UNSET_SIZE
    s = iw[_SPAN + 2 * slot]
    e = iw[_SPAN + 2 * slot + 1]
    if s == e:
        return False, 0.0
    return _parse_real(buf, s, e, True, iw, fb)


@_helper
def _has(iw, slot):  # pragma: no cover
    return iw[_HAS + slot] != 0


@_helper
def _int_or(iw, slot, default):  # pragma: no cover
    return iw[_INT + slot] if iw[_HAS + slot] else np.int64(default)


@_helper
def _float_or(iw, fw, slot, default):  # pragma: no cover
    return fw[slot] if iw[_HAS + slot] else default


@_helper
def _put_pb_str(rows, raw, r, off, buf, iw, slot):  # pragma: no cover
    if iw[_HAS + slot]:
        _put_str(rows, raw, r, off, buf, iw[_SPAN + 2 * slot], iw[_SPAN + 2 * slot + 1])


@_helper
def _pb_hot(buf, a, b, msg, rows, raw, r, fi, iw, fw, fb):  # pragma: no cover
    """Decode a hot protobuf body ``buf[a:b]`` as ``process*ProtoBuf``: ``(err, rows)``."""
    if msg == TICK_PRICE:
        top = PB_TICK_PRICE
    elif msg == TICK_SIZE:
        top = PB_TICK_SIZE
    elif msg == TICK_BY_TICK:
        top = PB_TICK_BY_TICK
    else:
        top = PB_MARKET_DEPTH
    if not _pb_parse(buf, a, b, top, iw, fw, fb):
        return ERR_BAD_PROTOBUF, 0
    flags = FLAG_PROTOBUF
    if msg == TICK_PRICE:
        ok, size = _pb_size(buf, iw, 3, fb)
        if not ok:
            return ERR_BAD_DECIMAL, 0
        req = _int_or(iw, 0, NO_VALID_ID)
        tt = _int_or(iw, 1, UNSET_INTEGER)
        price = _float_or(iw, fw, 2, UNSET_DOUBLE)
        attrib = _int_or(iw, 4, UNSET_INTEGER) & 7
        return ERR_NONE, _emit_tick_price(rows, raw, r, fi, flags, req, tt, price, size, attrib)
    if msg == TICK_SIZE:
        ok, size = _pb_size(buf, iw, 7, fb)
        if not ok:
            return ERR_BAD_DECIMAL, 0
        tt = _int_or(iw, 6, UNSET_INTEGER)
        if tt == TICK_TYPE_NOT_SET:
            return ERR_NONE, 0
        row = _row(rows, raw, r, KIND_TICK_SIZE, fi, flags, _int_or(iw, 5, NO_VALID_ID))
        row.tick_type = tt
        row.size = size
        return ERR_NONE, 1
    if msg in (MARKET_DEPTH, MARKET_DEPTH_L2):
        if not _has(iw, 9):  # no marketDepthData: ibapi calls nothing
            return ERR_NONE, 0
        ok, size = _pb_size(buf, iw, 14, fb)
        if not ok:
            return ERR_BAD_DECIMAL, 0
        req = _int_or(iw, 8, NO_VALID_ID)
        l2 = msg == MARKET_DEPTH_L2
        pos = _int_or(iw, 10, 0 if l2 else UNSET_INTEGER)
        op = _int_or(iw, 11, UNSET_INTEGER)
        side = _int_or(iw, 12, UNSET_INTEGER)
        price = _float_or(iw, fw, 13, UNSET_DOUBLE)
        kind = KIND_MKT_DEPTH_L2 if l2 else KIND_MKT_DEPTH
        row = _emit_depth(rows, raw, r, fi, flags, kind, req, pos, op, side, price, size)
        if l2:
            row.is_smart_depth = _int_or(iw, 16, 0) != 0
            _put_pb_str(rows, raw, r, _OFF_MM, buf, iw, 15)
        return ERR_NONE, 1
    req = _int_or(iw, 17, NO_VALID_ID)
    tt = _int_or(iw, 18, 0)
    if (tt == 1 or tt == 2) and _has(iw, 19):
        ok, size = _pb_size(buf, iw, 27, fb)
        if not ok:
            return ERR_BAD_DECIMAL, 0
        row = _row(rows, raw, r, KIND_TBT_LAST, fi, flags, req)
        row.tick_type = tt
        row.time = _int_or(iw, 22, 0)
        row.price = _float_or(iw, fw, 26, 0.0)
        row.size = size
        if _has(iw, 23):
            row.attrib = _int_or(iw, 24, 0) | (_int_or(iw, 25, 0) << 1)
        _put_pb_str(rows, raw, r, _OFF_EXCH, buf, iw, 28)
        _put_pb_str(rows, raw, r, _OFF_COND, buf, iw, 29)
        return ERR_NONE, 1
    if tt == 3 and _has(iw, 20):
        ok, bid_size = _pb_size(buf, iw, 36, fb)
        if not ok:
            return ERR_BAD_DECIMAL, 0
        ok, ask_size = _pb_size(buf, iw, 37, fb)
        if not ok:
            return ERR_BAD_DECIMAL, 0
        row = _row(rows, raw, r, KIND_TBT_BID_ASK, fi, flags, req)
        row.tick_type = 3
        row.time = _int_or(iw, 30, 0)
        row.bid_price = _float_or(iw, fw, 34, 0.0)
        row.ask_price = _float_or(iw, fw, 35, 0.0)
        row.bid_size = bid_size
        row.ask_size = ask_size
        if _has(iw, 31):
            row.attrib = _int_or(iw, 32, 0) | (_int_or(iw, 33, 0) << 1)
        return ERR_NONE, 1
    if tt == 4 and _has(iw, 21):
        ok, _ = _pb_size(buf, iw, 40, fb)  # decodeHistoricalTick reads it too
        if not ok:
            return ERR_BAD_DECIMAL, 0
        row = _row(rows, raw, r, KIND_TBT_MID_POINT, fi, flags, req)
        row.tick_type = 4
        row.time = _int_or(iw, 38, 0)
        row.mid_point = _float_or(iw, fw, 39, 0.0)
        return ERR_NONE, 1
    return ERR_NONE, 0


# ---- frames -----------------------------------------------------------------------------------


@_helper
def _is_hot(msg):  # pragma: no cover
    return msg in (TICK_PRICE, TICK_SIZE, MARKET_DEPTH, MARKET_DEPTH_L2, TICK_BY_TICK)


@_helper
def _cut(buf, start, stop, frames, cap):  # pragma: no cover
    """Frames of ``buf[start:stop]`` into ``frames[:, F_OFFSET/F_LENGTH]``:
    ``(end, n, status, bad length)``."""
    p = start
    n = 0
    while stop - p >= 4:
        length = (
            (np.int64(buf[p]) << 24)
            | (np.int64(buf[p + 1]) << 16)
            | (np.int64(buf[p + 2]) << 8)
            | np.int64(buf[p + 3])
        )
        if length > MAX_MSG_LEN:
            return p, n, CUT_BAD_LENGTH, length
        if stop - p - 4 < length:
            break
        if n == cap:
            return p, n, CUT_FULL, 0
        frames[n, F_OFFSET] = p + 4
        frames[n, F_LENGTH] = length
        n += 1
        p += 4 + length
    return p, n, CUT_DONE, 0


@_helper
def _frame_id(buf, a, b, version):  # pragma: no cover
    """``(ok, msg id, payload start)`` as ``EClient.run`` reads them."""
    if version >= MIN_SERVER_VER_PROTOBUF:
        k = min(4, b - a)  # ``int.from_bytes(text[:4])``, even of a shorter frame
        v = np.int64(0)
        for j in range(k):
            v = (v << 8) | np.int64(buf[a + j])
        return True, v, a + k
    e = _field_end(buf, a, b)
    if e < 0:
        return False, np.int64(-1), a
    ok, v, fits = _parse_int(buf, a, e)
    if not ok or not fits:
        return False, np.int64(-1), a
    return True, v, e + 1


@_helper
def _decode_frame(buf, a, b, version, rows, raw, r, fi, iw, fw, fb):  # pragma: no cover
    """``(status, msg id, payload start, rows written, error)`` for the frame ``buf[a:b]``."""
    ok, msg_id, p = _frame_id(buf, a, b, version)
    if not ok:
        return FRAME_MALFORMED, msg_id, p, 0, ERR_BAD_ID
    if msg_id > PROTOBUF_MSG_ID:
        msg = msg_id - PROTOBUF_MSG_ID
        if not _is_hot(msg):
            return FRAME_COLD, msg_id, p, 0, ERR_NONE
        err, k = _pb_hot(buf, p, b, msg, rows, raw, r, fi, iw, fw, fb)
    elif msg_id == TICK_PRICE:
        err, k = _text_tick_price(buf, p, b, version, rows, raw, r, fi, iw, fb)
    elif msg_id == TICK_SIZE:
        err, k = _text_tick_size(buf, p, b, rows, raw, r, fi, iw, fb)
    elif msg_id in (MARKET_DEPTH, MARKET_DEPTH_L2):
        l2 = msg_id == MARKET_DEPTH_L2
        err, k = _text_depth(buf, p, b, l2, version, rows, raw, r, fi, iw, fb)
    elif msg_id == TICK_BY_TICK:
        err, k = _text_tick_by_tick(buf, p, b, rows, raw, r, fi, iw, fb)
    else:
        return FRAME_COLD, msg_id, p, 0, ERR_NONE
    if err != ERR_NONE:
        return FRAME_MALFORMED, msg_id, p, 0, err
    return FRAME_HOT, msg_id, p, k, ERR_NONE


# ---- kernels ----------------------------------------------------------------------------------

_i64 = types.int64
_BUF = types.Array(types.uint8, 1, "C")
_RAW = types.Array(types.uint8, 2, "C")
_FRAMES = types.Array(_i64, 2, "C")
_ROWS = types.Array(numba.from_dtype(HOT_ROW), 1, "C")


@kernel([types.UniTuple(_i64, 4)(_BUF, _i64, _i64, _FRAMES)])
def cut_frames(buf, start, stop, frames):  # pragma: no cover
    """Cut ``buf[start:stop]`` into frames: ``(end, n, status, bad_length)``.

    ``frames[:n, F_OFFSET]`` / ``F_LENGTH`` locate each complete frame's payload; ``end`` is
    where the first frame not taken starts (a partial one, or the rest when ``status`` is
    ``CUT_FULL``: the table held ``len(frames)``). ``CUT_BAD_LENGTH``: the length prefix at
    ``end`` is ``bad_length`` > ``MAX_MSG_LEN``, and the stream cannot be resynchronised.
    """
    return _cut(buf, start, stop, frames, frames.shape[0])


_IDS = types.Array(types.uint8, 1, "C")
_PICKED = types.Array(_i64, 1, "C")


@kernel([types.UniTuple(_i64, 5)(_BUF, _i64, _i64, _i64, _IDS, _FRAMES, _PICKED)])
def pick_frames(buf, start, stop, server_version, wanted, frames, picked):  # pragma: no cover
    """The frames of ``buf[start:stop]`` whose message id ``wanted`` marks, found without
    decoding any: ``(end, n_frames, status, bad_length, n_picked)``.

    Cuts like ``decode_batch`` with ``len(frames)`` as its capacity, so its frames are the ones
    a ``decode_batch`` from the same ``start`` with that capacity takes, in the same positions.
    ``wanted[id]`` non-zero marks an id (as on the wire: > 200 protobuf); ids past its end and
    unreadable ones are not wanted. ``picked[:n_picked]`` gets the marked frames' positions
    (at most ``len(picked)``; the first ones), and those rows of ``frames`` their ``F_MSG_ID``
    and ``F_PAYLOAD`` besides ``F_OFFSET`` and ``F_LENGTH``.
    """
    end, n, status, bad = _cut(buf, start, stop, frames, frames.shape[0])
    k = 0
    for fi in range(n):
        if k == picked.shape[0]:
            break
        a = frames[fi, F_OFFSET]
        ok, msg_id, p = _frame_id(buf, a, a + frames[fi, F_LENGTH], server_version)
        if ok and 0 <= msg_id < wanted.shape[0] and wanted[msg_id]:
            frames[fi, F_MSG_ID] = msg_id
            frames[fi, F_PAYLOAD] = p
            picked[k] = fi
            k += 1
    return end, n, status, bad, k


@kernel([types.UniTuple(_i64, 6)(_BUF, _i64, _i64, _i64, _ROWS, _RAW, _FRAMES)])
def decode_batch(buf, start, stop, server_version, rows, raw, frames):  # pragma: no cover
    """Cut ``buf[start:stop]`` into frames and decode the hot ones into ``rows``:
    ``(end, n_frames, n_rows, n_other, status, bad_length)``.

    ``raw`` is ``rows`` viewed as ``uint8[len(rows), HOT_ROW.itemsize]`` (the fixed strings are
    written through it). Takes at most ``min(len(frames), len(rows) // 2)`` frames (a frame
    writes at most two rows). ``frames[:n_frames]`` gets every column (``F_*``); ``n_other``
    counts the cold and malformed frames. ``end``, ``status`` and ``bad_length`` are those of
    ``cut_frames``.
    """
    cap = min(frames.shape[0], rows.shape[0] // 2)
    end, n, status, bad = _cut(buf, start, stop, frames, cap)
    iw = np.zeros(_IW_SIZE, dtype=np.int64)
    fw = np.zeros(_FW_SIZE, dtype=np.float64)
    fb = fw.view(np.uint8)
    r = 0
    other = 0
    for fi in range(n):
        a = frames[fi, F_OFFSET]
        b = a + frames[fi, F_LENGTH]
        status_f, msg_id, p, k, err = _decode_frame(
            buf, a, b, server_version, rows, raw, r, fi, iw, fw, fb
        )
        frames[fi, F_MSG_ID] = msg_id
        frames[fi, F_STATUS] = status_f
        frames[fi, F_ROW] = r
        frames[fi, F_ROWS] = k
        frames[fi, F_ERROR] = err
        frames[fi, F_PAYLOAD] = p
        r += k
        if status_f != FRAME_HOT:
            other += 1
    return end, n, r, other, status, bad
