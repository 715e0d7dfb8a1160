"""Circuit breakers: conditions that move the trading state or restrict orders on their own.

Three breakers watch the risk kernels' state (``hotpath.risk``'s ``gst``/``ist`` arrays, the
same numbers the pre-trade checks use), never the market data itself: ``evaluate`` runs on the
engine's timer (``[risk.breakers] interval_ms``, 100 ms by default), ``after_fill`` after each
fill and ``after_fees`` after each commission reported on its own, so their cost is off the
order path.

* **Daily loss.** Today's account P&L (realised + unrealised - fees, IB's commissions reported
  after their fills included) at or below ``-daily_loss_pct`` % of start-of-day equity: every
  open order of this engine is cancelled, each at the venue it was routed to (a shadowed one at
  its shadow venue, never a venue-wide cancel: see ``Engine.cancel_everything``), and trading is
  HALTED. It is lifted by the operator (``Engine.set_trading_state(ACTIVE, ...)`` or
  ``Breakers.reset``) or by the next trading day (``Engine.roll_day``). After an operator lifts
  it, the breaker stays quiet until the loss has recovered above the threshold or the day rolls:
  the operator has taken the decision for the rest of the loss (the kernels' own
  ``risk.daily_loss_limit`` still holds).
* **Rejection rate.** Over the last ``reject_window_s`` seconds, rejected / decided orders
  (gate rejects plus venue rejects, over gate passes plus gate rejects) above ``reject_rate``
  with at least ``reject_min_orders`` decided: new orders' quantities are scaled by
  ``size_scale`` (down to whole lots, never below one lot: see ``RiskGate.size_scale``) for
  ``scale_minutes``. A rate still too high when it would end starts the period again.
* **Concentration.** An instrument's position value (account net position at the mark) above
  ``concentration_trip`` of equity: orders on it that add exposure are refused with
  ``CONCENTRATION_BREAKER`` (the kernel's ``IL_REDUCE_ONLY`` flag; reducing orders pass) until
  it is below ``concentration_reset``.

Every trip and reset is logged and counted (``trips``, ``resets``: by breaker name).
"""

from __future__ import annotations

import logging
import math
from collections import deque
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from engine.config import BreakersConfig
from engine.risk_gate import TradingState
from hotpath import risk as rk

if TYPE_CHECKING:
    from engine.runtime import Engine

log = logging.getLogger(__name__)

DAILY_LOSS = "daily_loss"
REJECT_RATE = "reject_rate"
CONCENTRATION = "concentration"
BREAKERS = (DAILY_LOSS, REJECT_RATE, CONCENTRATION)


@dataclass(frozen=True, slots=True)
class TradingStateChange:
    """One trading-state transition: when, from what to what, why, and who asked.

    ``source`` is ``"operator"``, ``"kill_switch"``, ``"engine"`` (an internal fault such as a
    full order ring) or the name of the breaker (``"daily_loss"``)."""

    ts_ns: int
    old: TradingState
    new: TradingState
    reason: str
    source: str


class Breakers:
    """The engine's circuit breakers; see the module docstring."""

    def __init__(self, config: BreakersConfig, engine: Engine) -> None:
        self.config = config
        self._engine = engine
        self._gate = engine.risk
        a = engine.risk.arrays
        self._gst = a.gst
        self._ist = a.ist
        self._ilim = a.ilim
        self._tick_value = a.ilim[:, rk.IL_TICK_SIZE] * a.ilim[:, rk.IL_LOT_SIZE]
        self._tick_value = self._tick_value * a.ilim[:, rk.IL_MULTIPLIER]
        self.loss_tripped = False
        self._loss_armed = True
        self.scaled_until_ns = 0  # 0: sizes are not scaled
        # (time, decided, rejected) counter snapshots; the oldest is the window's base.
        self._window: deque[tuple[int, int, int]] = deque([(engine.clock.now(), 0, 0)])
        self.trips = dict.fromkeys(BREAKERS, 0)
        self.resets = dict.fromkeys(BREAKERS, 0)

    # ---- the conditions ----------------------------------------------------------------------

    def day_pnl(self) -> float:
        """Today's account P&L as the risk kernels count it."""
        g = self._gst
        return float(g[rk.GS_REALISED] + g[rk.GS_UNREAL] - g[rk.GS_FEES])

    def equity(self) -> float:
        return float(self._gst[rk.GS_EQUITY_SOD]) + self.day_pnl()

    def evaluate(self) -> None:
        """Check every breaker now (the engine's timer calls it)."""
        if not self.config.enabled:
            return
        self._check_loss()
        self._check_reject_rate(self._engine.clock.now())
        self._check_concentration_all()

    def after_fill(self, instrument_id: int) -> None:
        """A fill changed P&L and a position: the loss and that instrument's concentration."""
        if not self.config.enabled:
            return
        self._check_loss()
        if 0 <= instrument_id < self._ist.shape[0]:
            self._check_concentration(instrument_id)

    def after_fees(self) -> None:
        """A commission reported after its fill lowered today's P&L: the loss."""
        if self.config.enabled:
            self._check_loss()

    def _check_loss(self) -> None:
        equity_sod = float(self._gst[rk.GS_EQUITY_SOD])
        if not equity_sod > 0.0:
            return  # no equity to measure a loss against (risk.equity unset)
        pnl = self.day_pnl()
        threshold = -self.config.daily_loss_pct / 100.0 * equity_sod
        if pnl > threshold:
            self._loss_armed = True
            return
        if self.loss_tripped or not self._loss_armed:
            return
        self.loss_tripped = True
        self.trips[DAILY_LOSS] += 1
        reason = (
            f"daily loss breaker: today's P&L {pnl:,.2f} is at or below "
            f"-{self.config.daily_loss_pct:g}% of start-of-day equity {equity_sod:,.2f}; "
            "open orders cancelled, trading halted until the operator resets it or the day rolls"
        )
        log.error(reason)
        engine = self._engine
        engine.cancel_everything("daily loss breaker")
        engine.set_trading_state(TradingState.HALTED, reason, source=DAILY_LOSS)

    def _check_reject_rate(self, now: int) -> None:
        gate = self._gate
        gate_rejects = sum(gate.rejects)
        decided = gate.passed + gate_rejects
        rejected = gate_rejects + gate.venue_rejects
        window = self._window
        window.append((now, decided, rejected))
        start = now - round(self.config.reject_window_s * 1e9)
        while len(window) > 1 and window[1][0] <= start:
            window.popleft()
        _, base_decided, base_rejected = window[0]
        n = decided - base_decided
        bad = rejected - base_rejected
        tripped = n >= self.config.reject_min_orders and bad > self.config.reject_rate * n
        until = self.scaled_until_ns
        if tripped and now >= until:
            duration = round(self.config.scale_minutes * 60e9)
            if not until:
                self.trips[REJECT_RATE] += 1
                log.warning(
                    "rejection-rate breaker: %d of the last %d orders rejected (above %.0f%%) in "
                    "%gs: order sizes scaled by %g for %g minutes",
                    bad, n, self.config.reject_rate * 100, self.config.reject_window_s,
                    self.config.size_scale, self.config.scale_minutes,
                )  # fmt: skip
            else:
                log.warning(
                    "rejection-rate breaker: still %d of %d orders rejected: sizes stay scaled "
                    "for another %g minutes",
                    bad, n, self.config.scale_minutes,
                )  # fmt: skip
            self.scaled_until_ns = now + duration
            gate.size_scale = self.config.size_scale
        elif until and now >= until:
            self._end_scaling("the scaling period is over")

    def _end_scaling(self, why: str) -> None:
        self.scaled_until_ns = 0
        self._gate.size_scale = 1.0
        self.resets[REJECT_RATE] += 1
        log.warning("rejection-rate breaker reset (%s): order sizes back to normal", why)

    def _concentration(self, i: int, equity: float) -> float:
        value = abs(self._ist[i, rk.IS_NET_LOTS]) * self._ist[i, rk.IS_MARK_TICKS]
        value *= self._tick_value[i]
        if value == 0.0:
            return 0.0
        return value / equity if equity > 0.0 else math.inf

    def _check_concentration(self, i: int) -> None:
        ratio = self._concentration(i, self.equity())
        self._set_reduce_only(i, ratio)

    def _check_concentration_all(self) -> None:
        equity = self.equity()
        ist = self._ist
        value = np.abs(ist[:, rk.IS_NET_LOTS]) * ist[:, rk.IS_MARK_TICKS] * self._tick_value
        flagged = self._ilim[:, rk.IL_REDUCE_ONLY] > 0.0
        ratio = value / equity if equity > 0.0 else np.where(value > 0.0, math.inf, 0.0)
        change = (~flagged & (ratio > self.config.concentration_trip)) | (
            flagged & (ratio < self.config.concentration_reset)
        )
        for i in np.flatnonzero(change):
            self._set_reduce_only(int(i), float(ratio[i]))

    def _set_reduce_only(self, i: int, ratio: float) -> None:
        flagged = self._ilim[i, rk.IL_REDUCE_ONLY] > 0.0
        cfg = self.config
        symbol = self._engine.registry[i].symbol
        if not flagged and ratio > cfg.concentration_trip:
            self._ilim[i, rk.IL_REDUCE_ONLY] = 1.0
            self.trips[CONCENTRATION] += 1
            log.warning(
                "concentration breaker: %s is %.1f%% of equity (above %.0f%%): orders that add "
                "to it are refused until it is below %.0f%%",
                symbol, ratio * 100, cfg.concentration_trip * 100, cfg.concentration_reset * 100,
            )  # fmt: skip
        elif flagged and ratio < cfg.concentration_reset:
            self._ilim[i, rk.IL_REDUCE_ONLY] = 0.0
            self.resets[CONCENTRATION] += 1
            log.warning(
                "concentration breaker reset: %s is %.1f%% of equity (below %.0f%%)",
                symbol, ratio * 100, cfg.concentration_reset * 100,
            )  # fmt: skip

    def reduce_only(self, instrument_id: int) -> bool:
        """Is the concentration breaker holding this instrument to reducing orders?"""
        return bool(self._ilim[instrument_id, rk.IL_REDUCE_ONLY] > 0.0)

    # ---- resets ------------------------------------------------------------------------------

    def reset(self, reason: str, source: str = "operator") -> None:
        """Lift the daily loss halt (trading back to ACTIVE) and end size scaling now.

        The concentration breaker is a condition, not a latch: it clears itself below
        ``concentration_reset``."""
        if self.scaled_until_ns:
            self._end_scaling(f"{source}: {reason}")
        if self.loss_tripped and self._engine.trading_state is TradingState.HALTED:
            self._engine.set_trading_state(TradingState.ACTIVE, reason, source=source)
        self.loss_tripped = False

    def on_state_change(self, change: TradingStateChange) -> None:
        """A halt lifted by anyone ends the loss breaker's trip; lifted by anyone but the
        breaker itself (the new day), it stays quiet until the loss recovers."""
        if change.old is TradingState.HALTED and self.loss_tripped:
            self.loss_tripped = False
            self.resets[DAILY_LOSS] += 1
            self._loss_armed = change.source == DAILY_LOSS

    def roll_day(self) -> None:
        """A new trading day (after the kernels' daily reset): the loss breaker re-arms, and
        its halt, if any, is lifted."""
        self._loss_armed = True
        if self.loss_tripped:
            if self._engine.trading_state is TradingState.HALTED:
                self._engine.set_trading_state(
                    TradingState.ACTIVE,
                    "new trading day: the daily loss breaker is reset",
                    source=DAILY_LOSS,
                )
            self.loss_tripped = False
