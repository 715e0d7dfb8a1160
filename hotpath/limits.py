"""The risk kernels' arrays: allocated with safe defaults, filled with limits, validated.

Plain Python, called at start-up and on a config reload, never per order; the layouts (column
indices) and the kernels that read and keep these arrays are in ``hotpath.risk``. The gate fills
the limit arrays from its config and instrument registry (tick and lot size, multiplier, the
``risk.*`` limits), sets buckets with ``set_bucket`` and hours with ``set_trading_hours``, calls
``validate`` once, and then passes ``RiskArrays`` to every kernel in field order.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np

from hotpath import risk as r

IB_MESSAGES_PER_S = 50
"""IB Gateway answers error 100 (and may disconnect) beyond about 50 messages per second."""
IB_PACING = (40.0, 10)
"""(rate per second, burst) for an IB venue bucket: a bucket admits at most ``burst + rate * T``
messages in any window of T seconds, so this stays within 50 in every second."""


class RiskArrays(NamedTuple):
    """Everything the risk kernels read and keep, in the order every kernel takes them."""

    ilim: np.ndarray  # (instruments, N_IL) float64: IL_* limits and facts
    slim: np.ndarray  # (strategies, N_SL) float64: SL_* limits
    glim: np.ndarray  # (N_GL,) float64: GL_* account limits
    ist: np.ndarray  # (instruments, N_IS) float64: IS_* state
    sst: np.ndarray  # (strategies, N_SS) float64: SS_* state
    pst: np.ndarray  # (strategies, instruments, N_PS) float64: PS_* positions
    gst: np.ndarray  # (N_GS,) float64: GS_* account state
    buckets: np.ndarray  # (1 + strategies + venues, N_B) int64: B_* token buckets


def new_risk_arrays(n_instruments: int, n_strategies: int, n_venues: int) -> RiskArrays:
    """Arrays with every limit off, no instrument tradable yet, buckets off, state ACTIVE and
    empty; buying power is unlimited until the gate writes the broker's figure."""
    ilim = np.zeros((n_instruments, r.N_IL), dtype=np.float64)
    ilim[:, r.IL_TICK_SIZE] = 1.0
    ilim[:, r.IL_LOT_SIZE] = 1.0
    ilim[:, r.IL_MULTIPLIER] = 1.0
    ilim[:, r.IL_MARGIN] = 1.0
    for col in (
        r.IL_MAX_ORDER_QTY,
        r.IL_MAX_ORDER_NOTIONAL,
        r.IL_MAX_POSITION,
        r.IL_MAX_OPEN_ORDERS,
        r.IL_COLLAR_PCT,
        r.IL_COLLAR_TICKS,
        r.IL_MAX_CONCENTRATION,
    ):
        ilim[:, col] = math.inf
    slim = np.full((n_strategies, r.N_SL), math.inf, dtype=np.float64)
    glim = np.full(r.N_GL, math.inf, dtype=np.float64)
    glim[r.GL_ALLOW_LIST] = 0.0
    glim[r.GL_PDT_MIN_EQUITY] = 25_000.0
    gst = np.zeros(r.N_GS, dtype=np.float64)
    gst[r.GS_TRADING_STATE] = r.STATE_ACTIVE
    gst[r.GS_BUYING_POWER] = math.inf
    return RiskArrays(
        ilim=ilim,
        slim=slim,
        glim=glim,
        ist=np.zeros((n_instruments, r.N_IS), dtype=np.float64),
        sst=np.zeros((n_strategies, r.N_SS), dtype=np.float64),
        pst=np.zeros((n_strategies, n_instruments, r.N_PS), dtype=np.float64),
        gst=gst,
        buckets=np.zeros((1 + n_strategies + n_venues, r.N_B), dtype=np.int64),
    )


def strategy_bucket(strategy_id: int) -> int:
    """Row of a strategy's order-rate bucket."""
    return 1 + strategy_id


def venue_bucket(arrays: RiskArrays, venue: int) -> int:
    """Row of a venue's message-pacing bucket (``ilim[i, IL_VENUE]`` names the venue)."""
    return 1 + arrays.slim.shape[0] + venue


def set_bucket(buckets: np.ndarray, row: int, rate_per_s: float, burst: int, now: int) -> None:
    """Make ``row`` a full bucket of ``burst`` messages refilling at ``rate_per_s``;
    a rate of ``inf`` turns it off."""
    if not rate_per_s > 0 or burst < 1:
        raise ValueError(
            f"bucket {row}: rate must be > 0 and burst >= 1, got {rate_per_s}, {burst}"
        )
    interval = 0 if math.isinf(rate_per_s) else round(1e9 / rate_per_s)
    buckets[row, r.B_INTERVAL_NS] = interval
    buckets[row, r.B_CAPACITY_NS] = burst * interval
    buckets[row, r.B_CREDIT_NS] = burst * interval
    buckets[row, r.B_LAST_NS] = now


def set_trading_hours(
    ilim: np.ndarray, instrument_id: int, utc_offset_s: int, windows: list[tuple[int, int]]
) -> None:
    """Trading windows ``(open, close)`` in seconds of the instrument's local day (a close
    before the open wraps past midnight); no windows trades around the clock."""
    if len(windows) > r.MAX_WINDOWS:
        raise ValueError(
            f"instrument {instrument_id}: {len(windows)} trading windows, at most {r.MAX_WINDOWS}"
        )
    for opens, closes in windows:
        if not (0 <= opens < 86_400 and 0 <= closes <= 86_400):
            raise ValueError(
                f"instrument {instrument_id}: window ({opens}, {closes}) is not within a day"
            )
    ilim[instrument_id, r.IL_UTC_OFFSET_S] = utc_offset_s
    ilim[instrument_id, r.IL_N_WINDOWS] = len(windows)
    cols = slice(r.IL_WINDOWS, r.IL_WINDOWS + 2 * r.MAX_WINDOWS)
    ilim[instrument_id, cols] = 0.0
    for w, (opens, closes) in enumerate(windows):
        ilim[instrument_id, r.IL_WINDOWS + 2 * w] = opens
        ilim[instrument_id, r.IL_WINDOWS + 2 * w + 1] = closes


_ILIM_NAMES = {v: k for k, v in vars(r).items() if k.startswith("IL_") and isinstance(v, int)}
_POSITIVE = (r.IL_TICK_SIZE, r.IL_LOT_SIZE, r.IL_MULTIPLIER)
_FINITE = (r.IL_MARGIN, r.IL_UTC_OFFSET_S, r.IL_N_WINDOWS, r.IL_VENUE)


def validate(arrays: RiskArrays) -> None:
    """Raise ValueError naming the row and column of a limit the kernels cannot work with."""
    a = arrays
    n_inst, n_strat = a.ilim.shape[0], a.slim.shape[0]
    shapes = {
        "ilim": (a.ilim.shape, (n_inst, r.N_IL)),
        "slim": (a.slim.shape, (n_strat, r.N_SL)),
        "glim": (a.glim.shape, (r.N_GL,)),
        "ist": (a.ist.shape, (n_inst, r.N_IS)),
        "sst": (a.sst.shape, (n_strat, r.N_SS)),
        "pst": (a.pst.shape, (n_strat, n_inst, r.N_PS)),
        "gst": (a.gst.shape, (r.N_GS,)),
    }
    for name, (got, want) in shapes.items():
        if got != want:
            raise ValueError(f"risk array {name} has shape {got}, expected {want}")
    n_venues = a.buckets.shape[0] - 1 - n_strat
    if a.buckets.shape[1:] != (r.N_B,) or n_venues < 0:
        raise ValueError(f"risk buckets have shape {a.buckets.shape}: need 1 + {n_strat} + venues")
    for i in range(n_inst):
        row = a.ilim[i]
        for col in _POSITIVE:
            if not (math.isfinite(row[col]) and row[col] > 0):
                raise ValueError(f"instrument {i}: {_ILIM_NAMES[col]} must be > 0, got {row[col]}")
        for col in _FINITE:
            if not math.isfinite(row[col]):
                raise ValueError(f"instrument {i}: {_ILIM_NAMES[col]} must be finite")
        if row[r.IL_TRADABLE] > 0 and not 0 <= row[r.IL_VENUE] < n_venues:
            raise ValueError(
                f"instrument {i}: IL_VENUE {row[r.IL_VENUE]:g} has no pacing bucket "
                f"({n_venues} venues)"
            )
        if not 0 <= row[r.IL_N_WINDOWS] <= r.MAX_WINDOWS:
            raise ValueError(f"instrument {i}: IL_N_WINDOWS must be 0..{r.MAX_WINDOWS}")
