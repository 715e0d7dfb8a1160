"""adapters.ib.wire against ibapi's own EClient, byte for byte, at every framing it uses.

The reference is ``EClient.placeOrder`` / ``cancelOrder`` as IB ships them, with the connection
swapped for a stand-in that keeps the frame and an ``EWrapper`` that raises on ``error`` (an
encoder refusal). Orders come from a few dozen random *profiles* (contract, order type, TIF,
algo, account, flags...) so shapes repeat and templates are reused, with random per-order
values (ids, quantities, prices, refs...) on top: the cache statistics prove that most frames
were rendered from templates, not by ibapi.
"""

from __future__ import annotations

import copy
import logging
import math
import random
import string
from collections.abc import Callable
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from ibapi import comm
from ibapi.client import EClient
from ibapi.const import UNSET_DECIMAL, UNSET_DOUBLE, UNSET_INTEGER
from ibapi.contract import Contract
from ibapi.order import Order
from ibapi.order_cancel import OrderCancel
from ibapi.order_condition import Create as create_condition
from ibapi.order_condition import OrderCondition, PriceCondition
from ibapi.server_versions import MAX_CLIENT_VER
from ibapi.tag_value import TagValue
from ibapi.wrapper import EWrapper

from adapters.ib import wire
from adapters.ib.gateway_sim.requests import CancelOrder, PlaceOrder, parse_request
from adapters.ib.wire import IbEncodeError, encode_cancel_order, encode_place_order
from tests.ib_sim_support import SentFrames

VERSIONS = (176, 200, 201, 203, 213, MAX_CLIENT_VER)
SEEDED_CASES = 2500  # per version


# --- The reference: ibapi's EClient ---------------------------------------------------------------


class Refused(Exception):
    def __init__(self, code: int, text: str) -> None:
        super().__init__(code, text)
        self.code = code


class _RaiseOnError(EWrapper):
    def error(self, reqId, errorTime, errorCode, errorString, advancedOrderRejectJson=""):
        raise Refused(errorCode, errorString)


def _client(version: int) -> tuple[EClient, SentFrames]:
    client = EClient(_RaiseOnError())
    client.conn = SentFrames()
    client.serverVersion_ = version
    client.setConnState(EClient.CONNECTED)
    return client, client.conn


def ibapi_place(version: int, order_id: Any, contract: Contract, order: Order) -> bytes:
    client, conn = _client(version)
    client.placeOrder(order_id, contract, order)
    [frame] = conn.sent
    return frame


def ibapi_cancel(version: int, order_id: Any, order_cancel: OrderCancel) -> bytes:
    client, conn = _client(version)
    client.cancelOrder(order_id, order_cancel)
    [frame] = conn.sent
    return frame


def same_as_ibapi(version: int, order_id: Any, contract: Contract, order: Order) -> bytes:
    """Our frame, asserted equal to ibapi's (or the same refusal / the same exception)."""
    try:
        expected = ibapi_place(version, order_id, contract, order)
    except Refused as refusal:
        with pytest.raises(IbEncodeError) as err:
            encode_place_order(version, order_id, contract, order)
        assert err.value.code == refusal.code
        return b""
    except Exception as exc:  # ibapi lets some errors escape (e.g. out-of-range int32)
        with pytest.raises(type(exc)):
            encode_place_order(version, order_id, contract, order)
        return b""
    got = encode_place_order(version, order_id, contract, order)
    assert got == expected, _diff(got, expected)
    return got


def _diff(got: bytes, expected: bytes) -> str:
    for i, (a, b) in enumerate(zip(got, expected, strict=False)):
        if a != b:
            window = slice(max(i - 20, 0), i + 20)
            return f"first difference at byte {i}: {got[window]!r} != {expected[window]!r}"
    return f"lengths {len(got)} != {len(expected)}"


@pytest.fixture(autouse=True)
def _fresh_cache():
    wire.clear_cache()
    yield
    wire.clear_cache()


# --- Random profiles (the shape) and per-order values ---------------------------------------------


def stock(symbol: str = "AAPL", con_id: int = 265598) -> Contract:
    c = Contract()
    c.conId, c.symbol, c.secType, c.exchange = con_id, symbol, "STK", "SMART"
    c.primaryExchange, c.currency = "NASDAQ", "USD"
    return c


def future() -> Contract:
    c = Contract()
    c.symbol, c.secType, c.exchange, c.currency = "ES", "FUT", "CME", "USD"
    c.lastTradeDateOrContractMonth, c.multiplier = "202512", "50"
    c.localSymbol, c.tradingClass = "ESZ5", "ES"
    return c


def option() -> Contract:
    c = Contract()
    c.symbol, c.secType, c.exchange, c.currency = "AAPL", "OPT", "SMART", "USD"
    c.lastTradeDateOrContractMonth, c.strike, c.right = "20251219", 200.0, "C"
    c.multiplier, c.tradingClass = "100", "AAPL"
    return c


def cash() -> Contract:
    c = Contract()
    c.symbol, c.secType, c.exchange, c.currency = "EUR", "CASH", "IDEALPRO", "USD"
    return c


def crypto() -> Contract:
    c = Contract()
    c.symbol, c.secType, c.exchange, c.currency = "BTC", "CRYPTO", "PAXOS", "USD"
    return c


CONTRACTS: tuple[Callable[[], Contract], ...] = (stock, future, option, cash, crypto)
ORDER_TYPES = ("MKT", "LMT", "STP", "STP LMT", "MOC", "LOC", "TRAIL", "TRAIL LIMIT")
TIFS = ("DAY", "GTC", "IOC", "FOK", "GTD", "OPG")
ALGOS: dict[str, list[tuple[str, str]]] = {
    "": [],
    "Vwap": [
        ("maxPctVol", "0.1"),
        ("startTime", "09:30:00 US/Eastern"),
        ("endTime", "16:00:00 US/Eastern"),
        ("allowPastEndTime", "1"),
        ("noTakeLiq", "0"),
    ],
    "Twap": [
        ("strategyType", "Marketable"),
        ("startTime", "09:30:00 US/Eastern"),
        ("endTime", "16:00:00 US/Eastern"),
        ("allowPastEndTime", "1"),
    ],
    "Adaptive": [("adaptivePriority", "Normal")],
}
PRINTABLE = string.ascii_letters + string.digits + string.punctuation + " "


def random_profile(rng: random.Random) -> dict[str, Any]:
    """Everything that is not patched per order: contract, type, TIF, algo, flags."""
    algo = rng.choice(list(ALGOS))
    params = ALGOS[algo]
    if algo == "Adaptive":
        params = [("adaptivePriority", rng.choice(("Urgent", "Normal", "Patient")))]
    return {
        "contract": rng.choice(CONTRACTS),
        "orderType": rng.choice(ORDER_TYPES),
        "tif": rng.choice(TIFS),
        "action": rng.choice(("BUY", "SELL")),
        "algoStrategy": algo,
        "algoParams": list(params) if params or rng.random() < 0.5 else None,
        "account": rng.choice(("", "DU123456", "U7654321")),
        "outsideRth": rng.random() < 0.3,
        "transmit": rng.random() < 0.8,
        "ocaType": rng.choice((0, 1, 3)),
        "hidden": rng.random() < 0.1,
        "lmtPriceOffset": rng.choice((UNSET_DOUBLE, 0.05)),
        "fractional": rng.random() < 0.5,
    }


def random_price(rng: random.Random) -> Any:
    pick = rng.random()
    if pick < 0.15:
        return UNSET_DOUBLE
    if pick < 0.55:
        return round(rng.uniform(0.0001, 10_000), rng.randint(0, 12))
    if pick < 0.75:
        return rng.uniform(-5, 5) * 10 ** rng.randint(-9, 9)
    if pick < 0.9:
        return rng.randint(0, 100_000)
    return rng.choice((0.0, -0.0, 1e-7, 1e22, 123456789.123456789, math.inf, float(UNSET_INTEGER)))


def random_quantity(rng: random.Random, fractional: bool) -> Any:
    if fractional:
        digits = rng.randint(0, 12)
        return Decimal(f"{rng.uniform(0, 50):.{digits}f}")
    pick = rng.random()
    if pick < 0.6:
        return Decimal(rng.randint(1, 10_000))
    if pick < 0.75:
        return rng.randint(1, 10_000)
    if pick < 0.9:
        return rng.choice((Decimal("1E+2"), Decimal("0.00012345"), Decimal("-0"), Decimal("5.000")))
    return float(rng.randint(1, 1000))  # ibapi's Decimal(str(x)) path: ours hands it over


def random_id(rng: random.Random) -> int:
    return rng.choice(
        (
            rng.randint(0, 127),
            rng.randint(128, 20_000),
            rng.randint(1, 2**31 - 2),
            -rng.randint(1, 9),
        )
    )


def random_text(rng: random.Random, max_len: int = 30) -> str:
    return "".join(rng.choice(PRINTABLE) for _ in range(rng.randint(1, max_len)))


def build_order(profile: dict[str, Any], rng: random.Random) -> tuple[Contract, Order]:
    """A fresh Contract and Order of the profile, with random per-order values."""
    o = Order()
    o.action, o.orderType, o.tif = profile["action"], profile["orderType"], profile["tif"]
    o.account, o.outsideRth, o.transmit = (
        profile["account"],
        profile["outsideRth"],
        profile["transmit"],
    )
    o.ocaType, o.hidden = profile["ocaType"], profile["hidden"]
    o.algoStrategy = profile["algoStrategy"]
    if profile["algoParams"] is not None:
        o.algoParams = [TagValue(t, v) for t, v in profile["algoParams"]]
    o.totalQuantity = random_quantity(rng, profile["fractional"])
    kind = o.orderType
    if kind in ("LMT", "STP LMT", "LOC") or rng.random() < 0.1:
        o.lmtPrice = random_price(rng)
    if kind in ("STP", "STP LMT", "TRAIL", "TRAIL LIMIT") or rng.random() < 0.1:
        o.auxPrice = random_price(rng)
    if kind in ("TRAIL", "TRAIL LIMIT"):
        o.lmtPriceOffset = profile["lmtPriceOffset"]
        if rng.random() < 0.5:
            o.trailingPercent = random_price(rng)
        if rng.random() < 0.5:
            o.trailStopPrice = random_price(rng)
    if o.tif == "GTD" or rng.random() < 0.05:
        o.goodTillDate = f"2030{rng.randint(1, 12):02d}{rng.randint(1, 28):02d} 16:00:00 US/Eastern"
    if rng.random() < 0.7:
        o.orderRef = random_text(rng)
    if rng.random() < 0.2:
        o.ocaGroup = random_text(rng, 12)
    if rng.random() < 0.3:
        o.parentId = random_id(rng)
    if rng.random() < 0.2:
        o.displaySize = rng.randint(1, 5000)
    return profile["contract"](), o


# --- Differential tests ---------------------------------------------------------------------------


@pytest.mark.parametrize("version", VERSIONS)
def test_place_order_matches_ibapi_on_seeded_random_orders(version: int) -> None:
    rng = random.Random(version)
    profiles = [random_profile(rng) for _ in range(40)]
    for _ in range(SEEDED_CASES):
        contract, order = build_order(rng.choice(profiles), rng)
        same_as_ibapi(version, random_id(rng), contract, order)
    stats = wire.cache_stats()
    assert 0 < stats.templates_built <= len(profiles) * 4
    # Only the first order of each shape and the values only ibapi formats (float
    # quantities, at 203+) go to ibapi; everything else was rendered from a template.
    assert stats.ibapi_encodes < SEEDED_CASES * 0.25, stats


@pytest.mark.parametrize("version", VERSIONS)
def test_place_order_reuses_one_order_object_mutated_per_order(version: int) -> None:
    """The engine pattern: one Order per strategy slot, patched fields rewritten each time."""
    rng = random.Random(1000 + version)
    contract, order = stock(), Order()
    order.action, order.orderType, order.tif, order.account = "BUY", "LMT", "DAY", "DU123456"
    for i in range(300):
        order.totalQuantity = Decimal(rng.randint(1, 500))
        order.lmtPrice = round(rng.uniform(100, 200), 2)
        order.orderRef = f"mm-{i}"
        same_as_ibapi(version, 10_000 + i, contract, order)
    stats = wire.cache_stats()
    assert (stats.templates_built, stats.ibapi_encodes) == (1, 1)


prices = st.one_of(
    st.just(UNSET_DOUBLE),
    st.floats(allow_nan=True, allow_infinity=True),
    st.integers(min_value=-(2**40), max_value=2**40),
    st.sampled_from((0.0, -0.0, float(UNSET_INTEGER), UNSET_INTEGER)),
)
quantities = st.one_of(
    st.decimals(allow_nan=False, allow_infinity=False, places=None),
    st.decimals(min_value=0, max_value=100, places=8),
    st.integers(min_value=0, max_value=10**12),
    st.just(UNSET_DECIMAL),
    st.floats(min_value=0, max_value=1e6),
)
int32s = st.one_of(
    st.integers(min_value=-(2**31), max_value=2**31 - 1),
    st.sampled_from((0, 1, 127, 128, 16383, 16384, UNSET_INTEGER)),
)
texts = st.one_of(st.just(""), st.text(alphabet=PRINTABLE, max_size=40), st.text(max_size=5))


@pytest.mark.parametrize("version", VERSIONS)
@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    profile_seed=st.integers(0, 15),
    order_id=int32s,
    qty=quantities,
    lmt=prices,
    aux=prices,
    tstop=prices,
    tpct=prices,
    parent=int32s,
    display=int32s,
    ref=texts,
    oca=texts,
    gtd=texts,
)
def test_place_order_matches_ibapi_on_any_patched_values(
    version, profile_seed, order_id, qty, lmt, aux, tstop, tpct, parent, display, ref, oca, gtd
) -> None:
    profile = random_profile(random.Random(profile_seed))
    contract, order = build_order(profile, random.Random(profile_seed))
    same_as_ibapi(version, order_id, contract, order)  # the template comes from here
    values = {
        "totalQuantity": qty,
        "lmtPrice": lmt,
        "auxPrice": aux,
        "trailStopPrice": tstop,
        "trailingPercent": tpct,
        "parentId": parent,
        "displaySize": display,
        "orderRef": ref,
        "ocaGroup": oca,
        "goodTillDate": gtd,
    }
    for name, value in values.items():
        setattr(order, name, value)
    same_as_ibapi(version, order_id, contract, order)


hot_ids = st.one_of(
    int32s,
    st.sampled_from((0x1FFFFF, 0x200000, 0xFFFFFFF, 0x10000000, -1, -(2**31))),
)
hot_quantities = st.one_of(
    quantities,
    st.integers(min_value=0, max_value=10**40),
    st.sampled_from(
        (Decimal(0), Decimal("-0"), Decimal(10**37), Decimal(10**38), Decimal("1E+2"), 0, True)
    ),
)
hot_prices = st.one_of(
    prices,
    st.sampled_from((0.1 + 0.2, 1 / 3, 5e-324, -1e-300, 2.0**53 + 1, math.nan, -math.inf)),
)


@pytest.mark.parametrize("version", VERSIONS)
@settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    profile_seed=st.integers(0, 15),
    ref=texts,
    hot=st.lists(st.tuples(hot_ids, hot_quantities, hot_prices), min_size=1, max_size=6),
)
def test_place_order_matches_ibapi_when_only_id_quantity_and_price_change(
    version, profile_seed, ref, hot
) -> None:
    """The market maker's case: one shape, every other patched slot the first order's objects.

    That is the renderer's fast case (cached bytes around the id, quantity and price), so the
    edge values go through it: ids at varint length boundaries, negative and UNSET ids,
    quantities of every length up to and past UNSET_DECIMAL's, prices that need repr's
    precision, signed zeros, NaN, infinities and UNSET.
    """
    profile = random_profile(random.Random(profile_seed))
    contract, order = build_order(profile, random.Random(profile_seed))
    order.orderRef = ref  # unicode included: it is the template's memo, written as UTF-8
    same_as_ibapi(version, 1, contract, order)
    for order_id, qty, lmt in hot:
        order.totalQuantity, order.lmtPrice = qty, lmt
        same_as_ibapi(version, order_id, contract, order)


EDGE_IDS = (
    0,
    1,
    127,
    128,
    0x3FFF,
    0x4000,
    0x1FFFFF,
    0x200000,
    0xFFFFFFF,
    0x10000000,
    UNSET_INTEGER,
    -1,
    -(2**31),
)
EDGE_QUANTITIES = (
    Decimal(0),
    Decimal(7),
    7,
    0,
    Decimal(10**37),
    Decimal(10**38),
    10**38 - 1,
    10**38,
    Decimal("-0"),
    Decimal("1E+2"),
    Decimal("2.50"),
    UNSET_DECIMAL,
    True,
)
EDGE_PRICES = (
    UNSET_DOUBLE,
    0.0,
    -0.0,
    0.1 + 0.2,
    1 / 3,
    5e-324,
    1e22,
    101.25,
    math.nan,
    math.inf,
    -math.inf,
    7,
    float(UNSET_INTEGER),
)


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("ref", ["mm-AAPL", "r\u00e9f \u6ce8\u6587"])
def test_edge_ids_quantities_and_prices_in_one_shape(version: int, ref: str) -> None:
    """Every combination of edge values, each order otherwise the first one's objects."""
    contract, order = stock(), Order()
    order.action, order.orderType, order.tif, order.orderRef = "BUY", "LMT", "DAY", ref
    order.totalQuantity, order.lmtPrice = Decimal(1), 1.5
    same_as_ibapi(version, 1, contract, order)
    for order_id in EDGE_IDS:
        for order.totalQuantity in EDGE_QUANTITIES:
            for order.lmtPrice in EDGE_PRICES:
                same_as_ibapi(version, order_id, contract, order)


@pytest.mark.parametrize("version", VERSIONS)
def test_equal_but_not_identical_values_in_usually_constant_slots(version: int) -> None:
    """A slot equal to the first order's value but not the same object is formatted afresh."""
    order = Order()
    order.action, order.orderType, order.tif = "BUY", "STP LMT", "DAY"
    order.totalQuantity, order.lmtPrice, order.auxPrice = Decimal(5), 10.5, 0.0
    order.parentId, order.displaySize, order.orderRef = 0, 0, "r\u00e9f"
    same_as_ibapi(version, 1, stock(), order)
    for name, value in (
        ("auxPrice", -0.0),
        ("auxPrice", 0),
        ("parentId", False),
        ("parentId", 0.0),
        ("displaySize", Decimal(0)),
        ("orderRef", "".join(("r\u00e9", "f"))),  # a new str object
    ):
        changed = copy.copy(order)
        setattr(changed, name, value)
        for order_id, qty, lmt in ((2, Decimal(6), 10.75), (20_000, 7, UNSET_DOUBLE)):
            changed.totalQuantity, changed.lmtPrice = qty, lmt
            same_as_ibapi(version, order_id, stock(), changed)


@pytest.mark.parametrize("version", VERSIONS)
def test_cancel_order_matches_ibapi(version: int) -> None:
    rng = random.Random(7 * version)
    cancels = []
    for time_, operator, indicator in [
        ("", "", UNSET_INTEGER),
        ("20250101 12:00:00", "", UNSET_INTEGER),
        ("", "trader7", 1),
        ("20250101-12:00:00", "op", 0),
    ]:
        oc = OrderCancel()
        oc.manualOrderCancelTime, oc.extOperator, oc.manualOrderIndicator = (
            time_,
            operator,
            indicator,
        )
        cancels.append(oc)
    accepted = set()
    for _ in range(400):
        oc, order_id = rng.choice(cancels), random_id(rng)
        try:
            expected = ibapi_cancel(version, order_id, oc)
        except Refused as refusal:  # extOperator / manualOrderIndicator before 192
            with pytest.raises(IbEncodeError) as err:
                encode_cancel_order(version, order_id, oc)
            assert err.value.code == refusal.code
            continue
        assert encode_cancel_order(version, order_id, oc) == expected
        accepted.add(id(oc))
    stats = wire.cache_stats()
    assert stats.cancel_shapes == stats.templates_built == len(accepted) >= 2


@pytest.mark.parametrize("version", VERSIONS)
@settings(max_examples=100, deadline=None)
@given(order_id=st.one_of(int32s, st.integers(), st.booleans()), indicator=int32s, op=texts)
def test_cancel_order_matches_ibapi_on_any_values(version, order_id, indicator, op) -> None:
    oc = OrderCancel()
    oc.extOperator, oc.manualOrderIndicator = op, indicator
    for _ in range(2):  # the first builds the template, the second renders it
        try:
            expected = ibapi_cancel(version, order_id, oc)
        except Refused as refusal:
            with pytest.raises(IbEncodeError) as err:
                encode_cancel_order(version, order_id, oc)
            assert err.value.code == refusal.code
        except Exception as exc:
            with pytest.raises(type(exc)):
                encode_cancel_order(version, order_id, oc)
        else:
            assert encode_cancel_order(version, order_id, oc) == expected


# --- Templates never leak and never alias the caller's objects ------------------------------------


@pytest.mark.parametrize("version", VERSIONS)
def test_template_reuse_never_leaks_previous_values(version: int) -> None:
    def order(qty: str, price: float, ref: str, parent: int, display: int, gtd: str) -> Order:
        o = Order()
        o.action, o.orderType, o.tif = "SELL", "STP LMT", "GTD"
        o.totalQuantity, o.lmtPrice, o.auxPrice = Decimal(qty), price, price + 1
        o.orderRef, o.parentId, o.displaySize, o.goodTillDate = ref, parent, display, gtd
        return o

    a = order("100", 10.25, "alpha", 0, 0, "20300101 16:00:00 UTC")
    b = order("0.5", 99999.125, "", 123456, 50, "")
    frames = [same_as_ibapi(version, oid, stock(), o) for oid, o in ((1, a), (2, b), (1, a))]
    assert frames[0] == frames[2] != frames[1]
    assert wire.cache_stats().templates_built == 1


@pytest.mark.parametrize("version", VERSIONS)
def test_mutating_the_callers_objects_after_encoding_is_seen_and_harmless(version: int) -> None:
    contract = stock()
    order = Order()
    order.action, order.orderType, order.tif = "BUY", "LMT", "DAY"
    order.totalQuantity, order.lmtPrice = Decimal(10), 101.5
    order.algoStrategy = "Vwap"
    order.algoParams = [TagValue("maxPctVol", "0.1"), TagValue("noTakeLiq", "0")]
    original = (copy.deepcopy(contract), copy.deepcopy(order))
    same_as_ibapi(version, 5, contract, order)

    order.algoParams[0].value = "0.25"  # an object inside a list
    same_as_ibapi(version, 6, contract, order)
    order.algoParams.append(TagValue("startTime", "10:00:00 US/Eastern"))  # the list itself
    same_as_ibapi(version, 7, contract, order)
    order.softDollarTier.name = "tier"
    same_as_ibapi(version, 8, contract, order)
    order.conditions.append(create_condition(OrderCondition.Price))
    cond: PriceCondition = order.conditions[0]
    cond.conId, cond.exchange, cond.price = 265598, "SMART", 150.0
    same_as_ibapi(version, 9, contract, order)
    cond.price = 151.0
    same_as_ibapi(version, 10, contract, order)
    contract.exchange, order.tif, order.outsideRth = "ISLAND", "GTC", True
    same_as_ibapi(version, 11, contract, order)

    # The first shape's template, reused (not rebuilt), still renders what it did before.
    built = wire.cache_stats().templates_built
    same_as_ibapi(version, 12, *original)
    assert wire.cache_stats().templates_built == built


def test_equal_values_of_another_type_in_a_patched_field_are_formatted_per_order() -> None:
    """0 vs 0.0 vs True in a patched field: formatted per order, exactly as ibapi."""
    for version in VERSIONS:
        for lmt in (5, 5.0, UNSET_INTEGER, float(UNSET_INTEGER)):
            for parent in (0, 1, True):
                o = Order()
                o.action, o.orderType, o.totalQuantity = "BUY", "LMT", Decimal(1)
                o.lmtPrice, o.parentId = lmt, parent
                same_as_ibapi(version, 3, stock(), o)


# --- The cache is bounded ------------------------------------------------------------------------


def test_cache_is_bounded_and_evicts_least_recently_used_shapes() -> None:
    def order(account: str) -> Order:
        o = Order()
        o.action, o.orderType, o.totalQuantity, o.lmtPrice = "BUY", "LMT", Decimal(1), 2.5
        o.account = account
        return o

    # One cheap key (version, LMT, BUY, AAPL), more accounts than a bucket holds.
    accounts = [f"DU{i:06d}" for i in range(12)]
    for _ in range(2):
        for account in accounts:
            same_as_ibapi(MAX_CLIENT_VER, 1, stock(), order(account))
    assert wire.cache_stats().place_shapes < len(accounts)

    # More cheap keys than the cache holds: the oldest go, the newest stay.
    wire.clear_cache()
    symbols = [f"S{i}" for i in range(600)]
    for symbol in symbols:
        same_as_ibapi(MAX_CLIENT_VER, 1, stock(symbol), order(""))
    assert wire.cache_stats().place_shapes < len(symbols)
    built = wire.cache_stats().templates_built
    same_as_ibapi(MAX_CLIENT_VER, 2, stock(symbols[-1]), order(""))
    assert wire.cache_stats().templates_built == built
    same_as_ibapi(MAX_CLIENT_VER, 2, stock(symbols[0]), order(""))
    assert wire.cache_stats().templates_built == built + 1


def test_ibapi_logs_nothing_for_the_frames_it_encodes_for_templates(caplog) -> None:
    order = Order()
    order.action, order.orderType, order.totalQuantity = "BUY", "MKT", Decimal(1)
    with caplog.at_level(logging.DEBUG, logger="ibapi"):
        encode_place_order(MAX_CLIENT_VER, 1, stock(), order)
        encode_place_order(176, 1, stock(), order)
    assert not [r for r in caplog.records if "placeOrder" in r.getMessage()]


# --- Refusals -------------------------------------------------------------------------------------


def _refusal(version: int, order_id: int, contract: Contract, order: Order) -> IbEncodeError:
    with pytest.raises(Refused) as ref:
        ibapi_place(version, order_id, contract, order)
    with pytest.raises(IbEncodeError) as err:
        encode_place_order(version, order_id, contract, order)
    assert err.value.code == ref.value.code
    assert err.value.order_id == order_id and err.value.server_version == version
    assert str(ref.value.args[1]) in str(err.value)
    return err.value


@pytest.mark.parametrize(
    ("version", "attribute", "value", "code", "words"),
    [
        (176, "customerAccount", "C1", 503, "customer account"),
        (176, "includeOvernight", True, 503, "include overnight"),
        (176, "manualOrderIndicator", 1, 503, "manual order indicator"),
        (200, "lmtPrice", None, 512, "Cannot send None"),
        (176, "orderRef", "réf", 579, "Invalid symbol"),
        (201, "ocaGroup", "groupé", 579, "Invalid symbol"),
        (213, "postOnly", True, 503, "postOnly"),
        (216, "seekPriceImprovement", True, 503, "seekPriceImprovement"),
        (222, "hedgeMaxSize", 5, 503, "hedgeMaxSize"),
    ],
)
def test_ibapi_refusals_raise_with_ibs_code_and_text(
    version, attribute, value, code, words
) -> None:
    order = Order()
    order.action, order.orderType, order.totalQuantity, order.lmtPrice = "BUY", "LMT", 1, 10.0
    same_as_ibapi(version, 1, stock(), order)  # the shape without the refused field is fine
    setattr(order, attribute, value)
    err = _refusal(version, 2, stock(), order)
    assert err.code == code and words in err.text
    assert f"order 2 at server version {version}" in str(err)
    setattr(order, attribute, copy.copy(Order().__dict__[attribute]))
    same_as_ibapi(version, 3, stock(), order)  # and nothing bad was cached


def test_cancel_refusal_before_cme_tagging_fields() -> None:
    oc = OrderCancel()
    oc.extOperator = "op"
    with pytest.raises(IbEncodeError) as err:
        encode_cancel_order(176, 9, oc)
    assert err.value.code == 503 and err.value.request == "cancelOrder"


def test_values_ibapi_rejects_outright_raise_the_same_exception() -> None:
    order = Order()
    order.action, order.orderType, order.totalQuantity = "BUY", "LMT", Decimal("sNaN")
    same_as_ibapi(MAX_CLIENT_VER, 1, stock(), order)  # decimal.InvalidOperation from ibapi
    order.totalQuantity, order.parentId = Decimal(1), 2**31  # out of int32: ValueError in upb
    same_as_ibapi(MAX_CLIENT_VER, 1, stock(), order)


# --- Odd inputs go to ibapi untouched -------------------------------------------------------------


def test_odd_orders_are_still_exact() -> None:
    class TaggedOrder(Order):
        def __init__(self) -> None:
            super().__init__()
            self.strategy = "mm"  # one attribute more than ibapi's Order

    for version in VERSIONS:
        o = TaggedOrder()
        o.action, o.orderType, o.totalQuantity, o.lmtPrice = "BUY", "LMT", Decimal(3), 1.5
        same_as_ibapi(version, 4, stock(), o)
        o.softDollarTier = None  # ibapi fails on it in text, ignores it in protobuf
        same_as_ibapi(version, 4, stock(), o)
        plain = Order()
        plain.action, plain.orderType, plain.totalQuantity = "SELL", "MKT", Decimal(1)
        plain.orderRef = "tab\there"  # ibapi's ASCII check lets \t through
        same_as_ibapi(version, 5, stock(), plain)
        same_as_ibapi(version, 5, stock(), plain)


def test_versions_below_fractional_positions_are_delegated() -> None:
    order = Order()
    order.action, order.orderType, order.totalQuantity, order.lmtPrice = "BUY", "LMT", 7, 1.0
    for _ in range(3):
        same_as_ibapi(100, 1, stock(), order)
    assert wire.cache_stats().templates_built == 0


# --- An independent reader agrees -----------------------------------------------------------------


@pytest.mark.parametrize("version", VERSIONS)
def test_gateway_simulator_parser_reads_back_the_patched_fields(version: int) -> None:
    rng = random.Random(99)
    order = Order()
    order.action, order.orderType, order.tif = "BUY", "STP LMT", "GTC"
    for i in range(20):
        order.totalQuantity = Decimal(rng.randint(1, 900))
        order.lmtPrice, order.auxPrice = round(rng.uniform(1, 99), 2), round(rng.uniform(1, 99), 2)
        order.orderRef, order.parentId = f"ref{i}", i
        frame = encode_place_order(version, 500 + i, stock(), order)
        size, payload, rest = comm.read_msg(frame)
        assert size == len(payload) and rest == b""
        parsed = parse_request(version, payload)
        assert isinstance(parsed, PlaceOrder) and parsed.order_id == 500 + i
        got = parsed.order
        assert (got.totalQuantity, got.lmtPrice, got.auxPrice) == (
            order.totalQuantity,
            order.lmtPrice,
            order.auxPrice,
        )
        assert (got.orderRef, got.parentId, got.tif) == (f"ref{i}", i, "GTC")
        cancel = parse_request(
            version, comm.read_msg(encode_cancel_order(version, i, OrderCancel()))[1]
        )
        assert isinstance(cancel, CancelOrder) and cancel.order_id == i


# --- The prepared template: only id, quantity, price and orderRef change -------------------------

PREPARED_VERSIONS = (176, 200, 201, 203, 225)


def prepared_same_as_ibapi(
    version: int, template: wire.PlaceOrderTemplate, contract: Contract, order: Order, *values: Any
) -> bytes:
    """``template.encode(*values)``, asserted equal to ibapi's frame for the prepared order with
    those four fields replaced (or the same refusal / the same exception)."""
    order_id, order.totalQuantity, order.lmtPrice, order.orderRef = values
    try:
        expected = ibapi_place(version, order_id, contract, order)
    except Refused as refusal:
        with pytest.raises(IbEncodeError) as err:
            template.encode(*values)
        assert err.value.code == refusal.code
        return b""
    except Exception as exc:
        with pytest.raises(type(exc)):
            template.encode(*values)
        return b""
    got = template.encode(*values)
    assert got == expected, _diff(got, expected)
    return got


def lots(step: str) -> st.SearchStrategy[Decimal]:
    """Quantities as the venue makes them: Decimal(lots) * lot size."""
    return st.integers(min_value=0, max_value=10**7).map(lambda n: Decimal(n) * Decimal(step))


venue_refs = st.integers(min_value=0, max_value=2**64).map(str)  # str(client_order_id)
any_refs = st.one_of(venue_refs, texts, st.text(max_size=140), st.just("x" * 200))
prepared_quantities = st.one_of(hot_quantities, lots("0.001"), lots("1"), lots("0.01"))
prepared_ids = st.one_of(hot_ids, st.integers(min_value=-(2**40), max_value=2**40))


@pytest.mark.parametrize("version", PREPARED_VERSIONS)
@settings(
    max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    profile_seed=st.integers(0, 40),
    calls=st.lists(
        st.tuples(prepared_ids, prepared_quantities, hot_prices, any_refs), min_size=1, max_size=8
    ),
)
def test_prepared_template_matches_ibapi_on_random_shapes_and_values(
    version, profile_seed, calls
) -> None:
    """Random contract / order type / TIF / algo / flags, then random per-order values."""
    rng = random.Random(profile_seed)
    contract, order = build_order(random_profile(rng), rng)
    template = wire.prepare_place_order(version, contract, order)
    for values in calls:
        prepared_same_as_ibapi(version, template, contract, order, *values)


PREPARED_EDGE_QUANTITIES = (
    *EDGE_QUANTITIES,
    Decimal("0.001"),
    Decimal("0.001") * 7,
    Decimal("0.001") * 1000,
    Decimal("0.001") * 123456789,
    Decimal("0.01") * 0,
    Decimal("1E-7"),
    5.0,
)
PREPARED_EDGE_REFS = ("", "0", "7", "123456789", str(2**63), "x" * 127, "x" * 128, "é", "a\tb")


@pytest.mark.parametrize("version", PREPARED_VERSIONS)
@pytest.mark.parametrize("kind", ["LMT", "MKT"])
def test_prepared_template_edge_grid(version: int, kind: str) -> None:
    """Every combination of edge ids, quantities, prices and refs in one plain shape."""
    contract, order = stock(), Order()
    order.action, order.orderType, order.tif, order.account = "BUY", kind, "DAY", "DU123456"
    template = wire.prepare_place_order(version, contract, order)
    assert template.templated
    for order_id in EDGE_IDS:
        for qty in PREPARED_EDGE_QUANTITIES:
            for lmt in EDGE_PRICES:
                for ref in PREPARED_EDGE_REFS:
                    prepared_same_as_ibapi(
                        version, template, contract, order, order_id, qty, lmt, ref
                    )


@pytest.mark.parametrize("version", PREPARED_VERSIONS)
def test_prepared_template_serves_the_venues_orders_without_ibapi(version: int) -> None:
    """Digit refs, lot-size quantities and tick prices never reach ibapi after preparing, so the
    differential tests above went through the templates, not through the fallback."""
    rng = random.Random(version)
    for _ in range(10):
        contract, order = build_order(random_profile(rng), rng)
        template = wire.prepare_place_order(version, contract, order)
        assert template.templated
        before = wire.cache_stats().ibapi_encodes
        frames = [
            template.encode(4096 + i, Decimal(rng.randint(1, 900)) * Decimal("0.01"),
                            round(rng.uniform(1, 500), 2), str(10**12 + i))
            for i in range(50)
        ]  # fmt: skip
        assert wire.cache_stats().ibapi_encodes == before
        assert len(set(frames)) == 50


@pytest.mark.parametrize("version", PREPARED_VERSIONS)
def test_prepared_template_keeps_the_shape_it_was_given(version: int) -> None:
    """The shape is snapshotted: changing the caller's objects afterwards changes nothing
    (the documented contract: a new shape needs a new template)."""
    contract, order = stock(), Order()
    order.action, order.orderType, order.tif = "BUY", "LMT", "DAY"
    order.algoStrategy, order.algoParams = "Adaptive", [TagValue("adaptivePriority", "Normal")]
    original = (copy.deepcopy(contract), copy.deepcopy(order))
    template = wire.prepare_place_order(version, contract, order)
    order.tif, contract.exchange = "GTC", "ISLAND"
    order.algoParams[0].value = "Urgent"
    prepared_same_as_ibapi(version, template, *original, 9, Decimal(3), 10.5, "77")


def test_prepared_template_below_fractional_positions_goes_to_ibapi() -> None:
    contract, order = stock(), Order()
    order.action, order.orderType = "BUY", "LMT"
    template = wire.prepare_place_order(100, contract, order)
    assert not template.templated
    for qty in (7, Decimal("7.5"), Decimal(3)):
        prepared_same_as_ibapi(100, template, contract, order, 1, qty, 1.25, "5")


@pytest.mark.parametrize("version", PREPARED_VERSIONS)
def test_prepared_template_of_a_shape_ibapi_refuses_refuses_every_call(version: int) -> None:
    contract, order = stock(), Order()
    order.action, order.orderType, order.account = "BUY", "LMT", "compte-é"
    template = wire.prepare_place_order(version, contract, order)
    for values in ((1, Decimal(1), 1.5, "1"), (2, Decimal(2), 2.5, "2")):
        prepared_same_as_ibapi(version, template, contract, order, *values)
