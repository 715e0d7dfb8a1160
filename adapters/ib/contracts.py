"""Contract qualification: what the config says about an instrument, checked against IB.

A user describes each instrument once (``ContractSpec``: sec_type, exchange, expiry, ...);
``spec_for`` fills in what follows from the asset class and says which key is missing or
malformed. IB's ``contractDetails`` answers turn into a ``Qualified`` (conId, minTick, hours,
order types) through ``qualify``, which refuses zero or several matches with an error that says
what to add to the config. ``ContractQualifier`` is the sans-I/O request side (send
``reqContractDetails``, collect the answers, resolve a future); ``ContractCache`` keeps the
results for the session and on disk between runs. ``check_against`` lists where the engine's
own instrument config disagrees with IB.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
import os
import tempfile
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from ibapi.client import EClient
from ibapi.const import UNSET_DECIMAL
from ibapi.contract import Contract, ContractDetails

from engine.instruments import AssetClass, Instrument

log = logging.getLogger("tickwire.ib.contracts")

NS = 1_000_000_000


class ContractError(LookupError):
    """IB could not resolve a ``ContractSpec`` to exactly one contract."""


class SpecError(ValueError):
    """A contract spec key is missing or malformed; ``key`` names it (the caller adds the file
    and the instrument's table and raises ``ConfigError``)."""

    def __init__(self, key: str, message: str) -> None:
        self.key = key
        self.message = message
        super().__init__(f"{key}: {message}")


# ---- the spec -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ContractSpec:
    """One instrument as the user describes it to IB (the fields of an ibapi ``Contract``)."""

    sec_type: str
    symbol: str
    exchange: str = ""
    primary_exchange: str = ""
    currency: str = ""
    local_symbol: str = ""
    #: IB's ``lastTradeDateOrContractMonth``: ``YYYYMM`` or ``YYYYMMDD``.
    last_trade_date: str = ""
    multiplier: str = ""
    right: str = ""
    strike: float = 0.0
    con_id: int = 0
    trading_class: str = ""

    def describe(self) -> str:
        """A one-line description for messages: ``FUT ES CME 202509 (conId 0)``."""
        parts = [self.sec_type, self.symbol or self.local_symbol]
        if self.local_symbol and self.symbol:
            parts.append(f"'{self.local_symbol}'")
        parts += [p for p in (self.last_trade_date, self.right, self.exchange, self.currency) if p]
        if self.strike:
            parts.append(f"strike {self.strike:g}")
        if self.multiplier:
            parts.append(f"x{self.multiplier}")
        if self.con_id:
            parts.append(f"conId {self.con_id}")
        return " ".join(parts)


_SPEC_KEYS = tuple(f.name for f in fields(ContractSpec))
SEC_TYPES = frozenset(
    {"STK", "FUT", "OPT", "FOP", "CASH", "CRYPTO", "IND", "CFD", "BOND", "WAR", "CONTFUT", "CMDTY"}
)
_RIGHTS = {"C": "C", "CALL": "C", "P": "P", "PUT": "P"}
_DEFAULT_SEC_TYPE = {
    AssetClass.STOCK: "STK",
    AssetClass.FUTURE: "FUT",
    AssetClass.OPTION: "OPT",
    AssetClass.FX: "CASH",
    AssetClass.CRYPTO: "CRYPTO",
}


def _typed(overrides: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in overrides.items():
        if key not in _SPEC_KEYS:
            raise SpecError(key, f"unknown contract key; expected one of {', '.join(_SPEC_KEYS)}")
        if key == "con_id":
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise SpecError(key, f"must be IB's integer conId, got {value!r}")
        elif key == "strike":
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise SpecError(key, f"must be a number, got {value!r}")
            if not (math.isfinite(value) and value > 0):
                raise SpecError(key, f"must be a positive price, got {value!r}")
            value = float(value)
        elif key == "multiplier" and isinstance(value, int | float) and not isinstance(value, bool):
            # As IB writes multipliers (plain digits): "{:g}" turned 12500000 into "1.25e+07"
            # and 1234567 into "1.23457e+06", another contract.
            if not math.isfinite(value):
                raise SpecError(key, f"must be a number, got {value!r}")
            value = format(Decimal(repr(value)).normalize(), "f")
        elif not isinstance(value, str):
            raise SpecError(key, f"must be a string, got {value!r}")
        out[key] = value.strip() if isinstance(value, str) else value
    return out


def _pair(symbol: str, seps: str) -> tuple[str, str] | None:
    for sep in seps:
        base, found, quote = symbol.partition(sep)
        if found and base and quote:
            return base.upper(), quote.upper()
    if len(symbol) == 6 and symbol.isalpha():
        return symbol[:3].upper(), symbol[3:].upper()
    return None


def spec_for(instrument: Instrument, overrides: dict[str, Any] | None = None) -> ContractSpec:
    """The ``ContractSpec`` for an engine instrument: defaults by asset class, then the user's
    keys (``overrides``, named as ``ContractSpec``'s fields). ``SpecError`` names a bad key."""
    o = _typed(overrides or {})
    ac = instrument.asset_class
    sec_type = o.get("sec_type", _DEFAULT_SEC_TYPE[ac]).upper()
    if sec_type not in SEC_TYPES:
        raise SpecError("sec_type", f"{sec_type!r} is not an IB security type; expected one of "
                        f"{', '.join(sorted(SEC_TYPES))}")  # fmt: skip
    base: dict[str, Any] = {"sec_type": sec_type, "symbol": instrument.symbol}
    if sec_type == "STK":
        base |= {"exchange": "SMART", "currency": instrument.currency or "USD"}
    elif sec_type in ("FUT", "FOP", "CONTFUT"):
        base |= {"currency": instrument.currency or "USD"}
    elif sec_type == "OPT":
        base |= {"exchange": "SMART", "currency": instrument.currency or "USD"}
    elif sec_type == "CASH":
        pair = _pair(o.get("symbol", instrument.symbol), "./")
        if pair is None and "symbol" in o and "currency" in o:
            pair = o["symbol"].upper(), o["currency"].upper()
        if pair is None:
            raise SpecError(
                "symbol",
                f"FX symbol {instrument.symbol!r} is not a currency pair; write it as 'EUR.USD' "
                "(or give symbol = 'EUR' and currency = 'USD')",
            )
        base |= {"symbol": pair[0], "currency": pair[1], "exchange": "IDEALPRO"}
        o.pop("symbol", None)
    elif sec_type == "CRYPTO":
        pair = _pair(o.get("symbol", instrument.symbol), "/.-")
        sym, ccy = pair if pair else (instrument.symbol.upper(), instrument.currency or "USD")
        base |= {"symbol": sym, "currency": ccy, "exchange": "PAXOS"}
        o.pop("symbol", None)
    else:
        base |= {"currency": instrument.currency or "USD"}
    fields_ = base | o
    fields_["sec_type"] = sec_type
    if "right" in fields_:
        right = _RIGHTS.get(fields_["right"].upper())
        if right is None and fields_["right"]:
            raise SpecError("right", f"must be 'C' or 'P' (call or put), got {fields_['right']!r}")
        fields_["right"] = right or ""
    spec = ContractSpec(**fields_)
    _validate(spec, o)
    return spec


def _validate(spec: ContractSpec, given: dict[str, Any]) -> None:
    d = spec.last_trade_date
    if d and not (d.isdigit() and len(d) in (6, 8) and 1 <= int(d[4:6]) <= 12):
        raise SpecError("last_trade_date", f"must be YYYYMM or YYYYMMDD (IB's "
                        f"lastTradeDateOrContractMonth), got {d!r}")  # fmt: skip
    if spec.multiplier:
        try:
            float(spec.multiplier)
        except ValueError:
            raise SpecError("multiplier", f"must be a number, got {spec.multiplier!r}") from None
    if not (spec.symbol or spec.local_symbol or spec.con_id):
        raise SpecError("symbol", "needs a symbol, a local_symbol or a con_id")
    st = spec.sec_type
    if st in ("FUT", "FOP") and not spec.exchange:
        raise SpecError("exchange", f"a {st} needs its exchange (IB does not route futures "
                        "through SMART); e.g. exchange = \"CME\"")  # fmt: skip
    if st == "FUT" and not (spec.last_trade_date or spec.local_symbol or spec.con_id):
        raise SpecError(
            "last_trade_date",
            'a future needs its expiry: last_trade_date = "YYYYMM" (contract month) or '
            '"YYYYMMDD", or local_symbol (e.g. "ESU5"), or con_id',
        )
    if st in ("OPT", "FOP") and not (spec.local_symbol or spec.con_id):
        missing = [
            k
            for k, v in (("last_trade_date", d), ("strike", spec.strike), ("right", spec.right))
            if not v
        ]
        if missing:
            raise SpecError(
                missing[0],
                f"an option needs last_trade_date, strike and right (or local_symbol or con_id); "
                f"missing {', '.join(missing)}",
            )


def to_contract(spec: ContractSpec) -> Contract:
    """The ibapi ``Contract`` to ask IB about (``reqContractDetails``)."""
    c = Contract()
    c.conId = spec.con_id
    c.symbol = spec.symbol
    c.secType = spec.sec_type
    c.lastTradeDateOrContractMonth = spec.last_trade_date
    c.strike = spec.strike
    c.right = spec.right
    c.multiplier = spec.multiplier
    c.exchange = spec.exchange
    c.primaryExchange = spec.primary_exchange
    c.currency = spec.currency
    c.localSymbol = spec.local_symbol
    c.tradingClass = spec.trading_class
    return c


# ---- qualification --------------------------------------------------------------------------

_CONTRACT_FIELDS = (
    ("conId", int),
    ("symbol", str),
    ("secType", str),
    ("lastTradeDateOrContractMonth", str),
    ("strike", float),
    ("right", str),
    ("multiplier", str),
    ("exchange", str),
    ("primaryExchange", str),
    ("currency", str),
    ("localSymbol", str),
    ("tradingClass", str),
)


@dataclass(frozen=True, slots=True)
class Qualified:
    """What IB says about one contract, and the ``contract`` to place orders with."""

    con_id: int
    min_tick: float
    multiplier: float
    trading_hours: str
    liquid_hours: str
    time_zone: str
    order_types: frozenset[str]
    valid_exchanges: tuple[str, ...]
    long_name: str
    contract: Contract = field(compare=False)
    #: IB's ``sizeIncrement``: order quantities are multiples of it (0: IB did not say).
    size_increment: float = 0.0
    #: IB's ``marketRuleIds``, one per ``valid_exchanges`` entry (the price bands of each:
    #: ``reqMarketRule``).
    market_rule_ids: tuple[int, ...] = ()

    def market_rule(self) -> int:
        """The market rule id for the exchange orders go to (``contract.exchange``), or 0."""
        ids = self.market_rule_ids
        if len(ids) == len(self.valid_exchanges) and self.contract.exchange in self.valid_exchanges:
            return ids[self.valid_exchanges.index(self.contract.exchange)]
        return ids[0] if ids and len(set(ids)) == 1 else 0

    def sessions(self, liquid: bool = False) -> list[tuple[datetime, datetime]]:
        """Trading (or liquid) sessions in UTC, from IB's hours strings."""
        return parse_sessions(self.liquid_hours if liquid else self.trading_hours, self.time_zone)

    def venue_facts(self) -> dict[str, Any]:
        """Keyword arguments for ``InstrumentRegistry.update_venue_facts``."""
        return {
            "con_id": self.con_id,
            "order_types": self.order_types,
            "sessions": tuple(
                (int(a.timestamp()) * NS, int(b.timestamp()) * NS) for a, b in self.sessions()
            ),
        }

    def to_json(self) -> dict[str, Any]:
        d = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "contract"}
        d["order_types"] = sorted(self.order_types)
        d["valid_exchanges"] = list(self.valid_exchanges)
        d["market_rule_ids"] = list(self.market_rule_ids)
        d["contract"] = {name: getattr(self.contract, name) for name, _ in _CONTRACT_FIELDS}
        return d

    @staticmethod
    def from_json(d: dict[str, Any]) -> Qualified:
        c = Contract()
        for name, typ in _CONTRACT_FIELDS:
            setattr(c, name, typ(d["contract"][name]))
        return Qualified(
            con_id=int(d["con_id"]),
            min_tick=float(d["min_tick"]),
            multiplier=float(d["multiplier"]),
            trading_hours=str(d["trading_hours"]),
            liquid_hours=str(d["liquid_hours"]),
            time_zone=str(d["time_zone"]),
            order_types=frozenset(map(str, d["order_types"])),
            valid_exchanges=tuple(map(str, d["valid_exchanges"])),
            long_name=str(d["long_name"]),
            contract=c,
            size_increment=float(d.get("size_increment", 0.0)),
            market_rule_ids=tuple(map(int, d.get("market_rule_ids", ()))),
        )


#: Keys that tell candidates apart, in the order a user would add them.
_DISAMBIGUATORS = (
    ("last_trade_date", "lastTradeDateOrContractMonth"),
    ("local_symbol", "localSymbol"),
    ("strike", "strike"),
    ("right", "right"),
    ("multiplier", "multiplier"),
    ("trading_class", "tradingClass"),
    ("primary_exchange", "primaryExchange"),
    ("exchange", "exchange"),
    ("currency", "currency"),
)


def qualify(spec: ContractSpec, details: list[ContractDetails]) -> Qualified:
    """The one contract IB returned for ``spec``; ``ContractError`` for none or several."""
    if not details:
        raise ContractError(
            f"IB knows no contract for {spec.describe()} (error 200 / no security definition): "
            + _what_to_check(spec)
        )
    by_con: dict[int, list[ContractDetails]] = {}
    for d in details:
        by_con.setdefault(d.contract.conId, []).append(d)
    if len(by_con) > 1:
        raise ContractError(_ambiguous(spec, [v[0] for v in by_con.values()]))
    # One conId, possibly once per listing exchange: prefer the listing the spec asked for.
    same = next(iter(by_con.values()))
    d = next((x for x in same if x.contract.exchange == spec.exchange), same[0])
    c = Contract()
    for name, _ in _CONTRACT_FIELDS:
        setattr(c, name, getattr(d.contract, name))
    c.exchange = spec.exchange or d.contract.exchange
    try:
        multiplier = float(c.multiplier) if c.multiplier else 1.0
    except ValueError:
        multiplier = 1.0
    return Qualified(
        con_id=c.conId,
        min_tick=float(d.minTick),
        multiplier=multiplier,
        trading_hours=d.tradingHours or "",
        liquid_hours=d.liquidHours or "",
        time_zone=d.timeZoneId or "",
        order_types=frozenset(t for t in (d.orderTypes or "").split(",") if t),
        valid_exchanges=tuple(e for e in (d.validExchanges or "").split(",") if e),
        long_name=d.longName or "",
        contract=c,
        size_increment=_size_increment(d.sizeIncrement),
        market_rule_ids=tuple(
            int(r) for r in (getattr(d, "marketRuleIds", "") or "").split(",") if r.isdigit()
        ),
    )


def _size_increment(value: Any) -> float:
    """IB's sizeIncrement as a float; 0 when unset (servers before 164 do not send it)."""
    try:
        inc = float(value)
    except (TypeError, ValueError, ArithmeticError):
        return 0.0
    return inc if math.isfinite(inc) and 0 < inc < float(UNSET_DECIMAL) else 0.0


def _ambiguous(spec: ContractSpec, candidates: list[ContractDetails]) -> str:
    shown = candidates[:10]
    lines = [
        f"  conId {d.contract.conId}: localSymbol {d.contract.localSymbol!r}, exchange "
        f"{d.contract.exchange}, expiry {d.contract.lastTradeDateOrContractMonth or '-'}"
        + (f", strike {d.contract.strike:g} {d.contract.right}" if d.contract.right else "")
        for d in shown
    ]
    if len(candidates) > len(shown):
        lines.append(f"  ... and {len(candidates) - len(shown)} more")
    keys = [
        key
        for key, attr in _DISAMBIGUATORS
        if len({getattr(d.contract, attr) for d in candidates}) > 1
        and (
            not getattr(spec, key) or (key == "last_trade_date" and len(spec.last_trade_date) == 6)
        )
    ]
    if keys and keys[0] == "last_trade_date" and spec.last_trade_date:
        keys[0] = "last_trade_date as YYYYMMDD"
    hint = " or ".join([*keys[:2], "con_id"])
    return (
        f"{spec.describe()} is ambiguous: IB returned {len(candidates)} contracts:\n"
        + "\n".join(lines)
        + f"\nadd {hint} to the instrument's contract keys to pick one"
    )


class ContractQualifier:
    """Sans-I/O ``reqContractDetails``: ``request`` sends, the ``on_*`` callbacks answer.

    ``send(fn)`` calls ``fn(client)`` on the venue's ``EClient`` (the venue paces the bytes).
    Answers found in ``cache`` for this session are returned without asking IB.
    """

    def __init__(
        self,
        send: Callable[[Callable[[EClient], None]], None],
        cache: ContractCache | None = None,
        first_req_id: int = 2_000_000_000,
    ) -> None:
        self._send = send
        self.cache = cache if cache is not None else ContractCache()
        self._next_id = first_req_id
        self._open: dict[int, tuple[ContractSpec, list[ContractDetails], asyncio.Future]] = {}

    def request(self, spec: ContractSpec) -> asyncio.Future[Qualified]:
        """A future resolving to the qualified contract, or failing with ``ContractError``."""
        fut: asyncio.Future[Qualified] = asyncio.get_running_loop().create_future()
        cached = self.cache.current(spec)
        if cached is not None:
            fut.set_result(cached)
            return fut
        req_id = self._next_id
        self._next_id += 1
        self._open[req_id] = (spec, [], fut)
        contract = to_contract(spec)
        self._send(lambda client: client.reqContractDetails(req_id, contract))
        return fut

    def on_contract_details(self, req_id: int, details: ContractDetails) -> None:
        entry = self._open.get(req_id)
        if entry is not None:
            entry[1].append(details)

    def on_contract_details_end(self, req_id: int) -> None:
        entry = self._open.pop(req_id, None)
        if entry is None:
            return
        spec, details, fut = entry
        if fut.done():
            return
        try:
            q = qualify(spec, details)
        except ContractError as e:
            fut.set_exception(e)
        else:
            self.cache.put(spec, q)
            fut.set_result(q)

    def on_error(self, req_id: int, code: int, msg: str) -> bool:
        """Fail the request ``req_id`` (True) or leave the error to others (False)."""
        entry = self._open.pop(req_id, None)
        if entry is None:
            return False
        spec, _, fut = entry
        if not fut.done():
            if code == 200:
                fut.set_exception(ContractError(_no_definition(spec, msg)))
            else:
                fut.set_exception(
                    ContractError(f"IB error {code} qualifying {spec.describe()}: {msg}")
                )
        return True

    def fail_all(self, reason: str) -> None:
        """The connection went: fail every open request (re-qualify after reconnecting)."""
        for spec, _, fut in self._open.values():
            if not fut.done():
                fut.set_exception(ContractError(f"qualifying {spec.describe()}: {reason}"))
        self._open.clear()


def _no_definition(spec: ContractSpec, msg: str) -> str:
    return (
        f"IB knows no contract for {spec.describe()} (error 200 / no security definition: "
        f"{msg}): " + _what_to_check(spec)
    )


def _what_to_check(spec: ContractSpec, today: date | None = None) -> str:
    """What to fix after error 200: an expiry already past first (IB does not qualify expired
    contracts for trading: a config left on last quarter's future reads just like a typo)."""
    d = spec.last_trade_date
    today = today or datetime.now(UTC).date()
    if d and (d < f"{today:%Y%m}" if len(d) == 6 else d < f"{today:%Y%m%d}"):
        return (
            f"its last_trade_date {d} has passed, so the contract has expired; set "
            "last_trade_date (or local_symbol, con_id) to a contract still trading in the "
            "instrument's contract keys"
        )
    return "check symbol, sec_type, exchange, currency and expiry in the instrument's contract keys"


# ---- the cache ------------------------------------------------------------------------------


class ContractCache:
    """Qualified contracts by spec: in memory for the session, on disk between runs.

    An entry ``put`` in this session is ``current``; entries read by ``load`` (or kept across
    ``new_session``, i.e. a reconnect) are only ``get``-able until qualified again, so the
    caller decides whether to trust them (e.g. when IB does not answer) or ask IB.
    """

    VERSION = 1

    def __init__(self) -> None:
        self._entries: dict[ContractSpec, Qualified] = {}
        self._current: set[ContractSpec] = set()

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, spec: object) -> bool:
        return spec in self._entries

    def get(self, spec: ContractSpec) -> Qualified | None:
        """The cached answer, from this session or an earlier one."""
        return self._entries.get(spec)

    def current(self, spec: ContractSpec) -> Qualified | None:
        """The answer qualified in this session, if any."""
        return self._entries[spec] if spec in self._current else None

    def put(self, spec: ContractSpec, q: Qualified) -> None:
        self._entries[spec] = q
        self._current.add(spec)

    def new_session(self) -> None:
        """After a reconnect: keep the entries, but let the next request re-qualify them."""
        self._current.clear()

    def load(self, path: str | os.PathLike[str]) -> int:
        """Merge entries from ``path`` (as earlier-session entries); how many were read.

        A missing file is a first run; an unreadable one is logged and ignored.
        """
        p = Path(path)
        try:
            doc = json.loads(p.read_text(encoding="utf-8"))
            if doc.get("version") != self.VERSION:
                raise ValueError(f"version {doc.get('version')!r}, expected {self.VERSION}")
            loaded = {
                ContractSpec(**e["spec"]): Qualified.from_json(e["qualified"])
                for e in doc["entries"]
            }
        except FileNotFoundError:
            log.info("contract cache %s does not exist yet; starting empty", p)
            return 0
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as e:
            log.warning("contract cache %s is unreadable (%s); starting empty", p, e)
            return 0
        for spec, q in loaded.items():
            self._entries[spec] = q
            self._current.discard(spec)
        return len(loaded)

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write every entry to ``path`` atomically (temp file, fsync, rename)."""
        p = Path(path)
        doc = {
            "version": self.VERSION,
            "entries": [
                {"spec": asdict(s), "qualified": q.to_json()} for s, q in self._entries.items()
            ],
        }
        p.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{p.name}.", suffix=".tmp", dir=p.parent)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                json.dump(doc, f, indent=1, sort_keys=True)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, p)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
        with contextlib.suppress(OSError):  # make the rename itself durable
            dir_fd = os.open(p.parent, os.O_RDONLY)
            try:
                os.fsync(dir_fd)
            finally:
                os.close(dir_fd)


# ---- sessions -------------------------------------------------------------------------------

#: IB zone ids that zoneinfo lacks or reads differently. IB's short US names mean the
#: exchange's civil time, daylight saving included (zoneinfo's "EST" is a fixed -05:00); the
#: others are Java's short ids, which TWS is written in.
_ZONE_ALIASES = {
    "EST": "America/New_York",
    "EDT": "America/New_York",
    "CST": "America/Chicago",
    "CDT": "America/Chicago",
    "PST": "America/Los_Angeles",
    "CTT": "Asia/Shanghai",
    "JST": "Asia/Tokyo",
    "IST": "Asia/Kolkata",
    "AET": "Australia/Sydney",
    "HKT": "Asia/Hong_Kong",
}
_zones: dict[str, ZoneInfo] = {}


def ib_zone(name: str) -> ZoneInfo:
    """The ``ZoneInfo`` for an IB ``timeZoneId`` ("US/Eastern", "EST5EDT", "MET", "GB", ...)."""
    z = _zones.get(name)
    if z is not None:
        return z
    key = name.split("(")[0].strip()  # "EST (Eastern Standard Time)"
    key = _ZONE_ALIASES.get(key, key)
    try:
        z = ZoneInfo(key)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(
            f"IB time zone {name!r} is not known to zoneinfo; add it to "
            "adapters.ib.contracts._ZONE_ALIASES (or install the tzdata package)"
        ) from None
    _zones[name] = z
    return z


def _at(day: date, hhmm: str, tz: ZoneInfo) -> datetime:
    if len(hhmm) != 4 or not hhmm.isdigit() or int(hhmm[:2]) > 24 or int(hhmm[2:]) > 59:
        raise ValueError(f"{hhmm!r} is not HHMM")
    wall = datetime(day.year, day.month, day.day) + timedelta(hours=int(hhmm[:2]),
                                                              minutes=int(hhmm[2:]))  # fmt: skip
    return wall.replace(tzinfo=tz)


def _day(text: str) -> date:
    return datetime.strptime(text, "%Y%m%d").date()


def parse_sessions(trading_hours: str, time_zone: str) -> list[tuple[datetime, datetime]]:
    """IB's hours string as UTC ``(start, end)`` sessions, earliest first.

    Both of IB's formats: ``20261123:0930-20261123:1600;20261124:CLOSED`` and the older
    ``20261123:0930-1600`` (several ranges may follow one date, comma-separated; an end at or
    before the start is the next day).
    """
    tz = ib_zone(time_zone)
    out: list[tuple[datetime, datetime]] = []
    for segment in (s.strip() for s in trading_hours.split(";")):
        if not segment:
            continue
        try:
            day_text, _, ranges = segment.partition(":")
            day = _day(day_text)
            if ranges.upper() == "CLOSED":
                continue
            for rng in ranges.split(","):
                a, dash, b = rng.partition("-")
                if not dash:
                    raise ValueError("expected START-END")
                start = _at(day, a, tz)
                if ":" in b:  # the dated form: 20261123:1600
                    end_day, _, end_hhmm = b.partition(":")
                    end = _at(_day(end_day), end_hhmm, tz)
                else:
                    end = _at(day, b, tz)
                    if end <= start:
                        end = _at(day + timedelta(days=1), b, tz)
                if end <= start:
                    raise ValueError("the session ends before it starts")
                out.append((start.astimezone(UTC), end.astimezone(UTC)))
        except ValueError as e:
            raise ValueError(
                f"cannot read IB trading hours segment {segment!r}: {e} (expected "
                "'YYYYMMDD:HHMM-YYYYMMDD:HHMM', 'YYYYMMDD:HHMM-HHMM' or 'YYYYMMDD:CLOSED')"
            ) from None
    out.sort()
    return out


# ---- config against IB ----------------------------------------------------------------------


def _multiple_of(value: float, step: float) -> bool:
    ratio = value / step
    return ratio >= 1 - 1e-9 and abs(ratio - round(ratio)) <= 1e-6 * max(1.0, ratio)


def check_against(instrument: Instrument, q: Qualified) -> list[str]:
    """Where the engine's instrument config disagrees with IB, one sentence per problem."""
    problems = []
    name = f"instrument {instrument.key} (IB conId {q.con_id})"
    if q.contract.secType == "CONTFUT":
        problems.append(
            f"{name}: CONTFUT is IB's continuous future, for market data only (IB takes no "
            'orders for it); to trade, name the contract month: sec_type = "FUT" with '
            f'last_trade_date = "{q.contract.lastTradeDateOrContractMonth[:6] or "YYYYMM"}" '
            "in its contract keys"
        )
    if q.min_tick > 0 and not _multiple_of(instrument.tick_size, q.min_tick):
        problems.append(
            f"{name}: tick_size {instrument.tick_size:g} is not a multiple of IB's minTick "
            f"{q.min_tick:g}; orders would be rejected (error 110). Set tick_size = "
            f"{q.min_tick:g} (or a multiple) in its [[instruments]] entry"
        )
    if q.size_increment > 0 and not _multiple_of(instrument.lot_size, q.size_increment):
        problems.append(
            f"{name}: lot_size {instrument.lot_size:g} is not a multiple of IB's size increment "
            f"{q.size_increment:g}; orders for part of an increment would be rejected (error "
            f"201). Set lot_size = {q.size_increment:g} (or a multiple) in its [[instruments]] "
            "entry"
        )
    if not math.isclose(instrument.multiplier, q.multiplier, rel_tol=1e-9):
        problems.append(
            f"{name}: multiplier {instrument.multiplier:g} but IB says {q.multiplier:g}; "
            f"P&L and exposure would be off by x{q.multiplier / instrument.multiplier:g}. Set "
            f"multiplier = {q.multiplier:g} in its [[instruments]] entry"
        )
    ccy = q.contract.currency
    if ccy and instrument.currency and ccy != instrument.currency:
        problems.append(
            f"{name}: currency {instrument.currency} but IB trades it in {ccy}; set "
            f'currency = "{ccy}" in its [[instruments]] entry'
        )
    return problems


__all__ = [
    "ContractCache",
    "ContractError",
    "ContractQualifier",
    "ContractSpec",
    "Qualified",
    "SpecError",
    "check_against",
    "ib_zone",
    "parse_sessions",
    "qualify",
    "spec_for",
    "to_contract",
]
