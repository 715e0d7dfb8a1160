"""Positions and P&L per strategy and instrument, from fills, marked to the book."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from engine.instruments import InstrumentRegistry


@dataclass(slots=True)
class BrokerAccount:
    """What a broker (IB) reports about the account, kept beside the engine's own figures.

    ``positions`` are in the broker's units (shares, contracts) by engine instrument id;
    ``other_positions`` are contracts the registry does not list (``symbol secType conId``).
    ``values`` are the account values as reported: (key, currency) -> text.
    """

    venue: str
    account: str = ""
    positions: dict[int, tuple[float, float]] = field(default_factory=dict)  # qty, avg cost
    other_positions: dict[str, tuple[float, float]] = field(default_factory=dict)
    values: dict[tuple[str, str], str] = field(default_factory=dict)
    updated_ns: int = 0

    def value(self, key: str, currency: str = "USD") -> float | None:
        """A numeric account value (``NetLiquidation``, ``BuyingPower``...), None if absent."""
        text = self.values.get((key, currency))
        try:
            return float(text) if text is not None else None
        except ValueError:
            return None


class Position:
    """Net position in lots, average cost in ticks, realised P&L and fees in currency."""

    __slots__ = ("avg_ticks", "commission", "fills", "instrument_id", "lots", "realised")

    def __init__(self, instrument_id: int) -> None:
        self.instrument_id = instrument_id
        self.lots = 0
        self.avg_ticks = 0.0
        self.realised = 0.0
        self.commission = 0.0
        self.fills = 0

    def apply_fill(self, side: int, lots: int, price_ticks: int, tick_value: float) -> None:
        signed = lots * side
        old = self.lots
        new = old + signed
        if old == 0 or (old > 0) == (signed > 0):
            # Opening or adding: weighted average cost.
            self.avg_ticks = (self.avg_ticks * abs(old) + price_ticks * lots) / abs(new)
        else:
            closed = min(abs(signed), abs(old))
            direction = 1 if old > 0 else -1
            self.realised += (price_ticks - self.avg_ticks) * closed * direction * tick_value
            if new == 0:
                self.avg_ticks = 0.0
            elif (new > 0) != (old > 0):
                # Flipped through zero: the remainder opens at the fill price.
                self.avg_ticks = float(price_ticks)
        self.lots = new
        self.fills += 1

    def unrealised(self, mark_ticks: float | None, tick_value: float) -> float:
        if self.lots == 0 or mark_ticks is None:
            return 0.0
        return (mark_ticks - self.avg_ticks) * self.lots * tick_value


class Portfolio:
    """All positions, keyed by (strategy id, instrument id); ``mark`` gives a price in ticks."""

    def __init__(self, registry: InstrumentRegistry, mark: Callable[[int], float | None]) -> None:
        self._registry = registry
        self._mark = mark
        self._positions: dict[tuple[int, int], Position] = {}
        self._tick_value = [i.tick_value for i in registry]
        #: The brokers' own view, by venue name (filled by venue adapters that have one).
        self.broker: dict[str, BrokerAccount] = {}

    def broker_account(self, venue: str) -> BrokerAccount:
        account = self.broker.get(venue)
        if account is None:
            account = self.broker[venue] = BrokerAccount(venue)
        return account

    def position(self, strategy_id: int, instrument_id: int) -> Position:
        key = (strategy_id, instrument_id)
        pos = self._positions.get(key)
        if pos is None:
            pos = self._positions[key] = Position(instrument_id)
        return pos

    def apply_fill(
        self,
        strategy_id: int,
        instrument_id: int,
        side: int,
        lots: int,
        price_ticks: int,
        commission: float,
    ) -> Position:
        pos = self.position(strategy_id, instrument_id)
        pos.apply_fill(side, lots, price_ticks, self._tick_value[instrument_id])
        pos.commission += commission
        return pos

    def net_lots(self, instrument_id: int) -> int:
        """Position across all strategies."""
        return sum(p.lots for (_, i), p in self._positions.items() if i == instrument_id)

    def pnl(self, strategy_id: int | None = None) -> tuple[float, float, float]:
        """(realised, unrealised, commission) for one strategy or for everything."""
        realised = unrealised = fees = 0.0
        for (sid, iid), pos in self._positions.items():
            if strategy_id is not None and sid != strategy_id:
                continue
            realised += pos.realised
            fees += pos.commission
            unrealised += pos.unrealised(self._mark(iid), self._tick_value[iid])
        return realised, unrealised, fees

    def total_pnl(self, strategy_id: int | None = None) -> float:
        realised, unrealised, fees = self.pnl(strategy_id)
        return realised + unrealised - fees

    def positions(self) -> dict[tuple[int, int], Position]:
        return self._positions
