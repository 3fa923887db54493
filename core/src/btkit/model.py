"""The data model: attrs records for candles, signals, signal rows, tick results and pnl.

Every timestamp is integer milliseconds UTC (candles are identified by their open time).
Records are frozen; the engine derives new ones with ``attrs.evolve``.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from typing import Any, ClassVar, Literal

import attrs
import numpy as np

Position = Literal["long", "short"]
POSITIONS: tuple[str, ...] = ("long", "short")
CloseReason = Literal["take_profit", "stop_loss", "liquidation", "time_expired", "closed"]
CLOSE_REASONS: tuple[str, ...] = ("take_profit", "stop_loss", "liquidation", "time_expired", "closed")
CancelReason = Literal["timeout", "price_reject", "user"]
CANCEL_REASONS: tuple[str, ...] = ("timeout", "price_reject", "user")

MINUTE_MS = 60_000


# ---------------------------------------------------------------- validators
def _finite_positive(inst: Any, attribute: attrs.Attribute, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{attribute.name} must be a number, got {type(value).__name__}")
    if not math.isfinite(value) or value <= 0:
        raise ValueError(f"{attribute.name} must be a finite price > 0, got {value!r}")


def _opt_finite_positive(inst: Any, attribute: attrs.Attribute, value: Any) -> None:
    if value is not None:
        _finite_positive(inst, attribute, value)


def _finite_non_negative(inst: Any, attribute: attrs.Attribute, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{attribute.name} must be a number, got {type(value).__name__}")
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"{attribute.name} must be finite and >= 0, got {value!r}")


def _finite(inst: Any, attribute: attrs.Attribute, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValueError(f"{attribute.name} must be a finite number, got {value!r}")


def _timestamp(inst: Any, attribute: attrs.Attribute, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{attribute.name} must be integer milliseconds UTC, got {value!r}")


def _opt_timestamp(inst: Any, attribute: attrs.Attribute, value: Any) -> None:
    if value is not None:
        _timestamp(inst, attribute, value)


def _position(inst: Any, attribute: attrs.Attribute, value: Any) -> None:
    if value not in POSITIONS:
        raise ValueError(f"position must be 'long' or 'short', got {value!r}")


def _opt_minutes(inst: Any, attribute: attrs.Attribute, value: Any) -> None:
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ValueError(f"{attribute.name} must be a positive whole number of minutes, got {value!r}")


# ---------------------------------------------------------------- candles
@attrs.frozen(slots=True)
class Candle:
    """One OHLCV candle; ``timestamp`` is its open time in ms UTC."""

    timestamp: int = attrs.field(validator=_timestamp)
    open: float = attrs.field(validator=_finite_positive)
    high: float = attrs.field(validator=_finite_positive)
    low: float = attrs.field(validator=_finite_positive)
    close: float = attrs.field(validator=_finite_positive)
    volume: float = attrs.field(validator=_finite_non_negative)


class Candles(Sequence[Candle]):
    """A validated, contiguous run of candles with numpy columns.

    ``len()``, indexing and iteration give :class:`Candle` objects; ``.timestamp .open .high .low .close
    .volume`` are numpy arrays (read-only views) for vectorised indicators.
    """

    __slots__ = ("close", "high", "low", "open", "timestamp", "volume")

    timestamp: np.ndarray
    open: np.ndarray
    high: np.ndarray
    low: np.ndarray
    close: np.ndarray
    volume: np.ndarray

    def __init__(
        self,
        timestamp: np.ndarray,
        open: np.ndarray,
        high: np.ndarray,
        low: np.ndarray,
        close: np.ndarray,
        volume: np.ndarray,
    ) -> None:
        self.timestamp = timestamp
        self.open = open
        self.high = high
        self.low = low
        self.close = close
        self.volume = volume

    def __len__(self) -> int:
        return len(self.timestamp)

    def _candle(self, i: int) -> Candle:
        return Candle(
            int(self.timestamp[i]),
            float(self.open[i]),
            float(self.high[i]),
            float(self.low[i]),
            float(self.close[i]),
            float(self.volume[i]),
        )

    def __getitem__(self, index: Any) -> Any:
        if isinstance(index, slice):
            return Candles(
                self.timestamp[index],
                self.open[index],
                self.high[index],
                self.low[index],
                self.close[index],
                self.volume[index],
            )
        return self._candle(range(len(self))[index])

    def __iter__(self) -> Iterator[Candle]:
        for i in range(len(self)):
            yield self._candle(i)

    def to_pandas(self) -> Any:
        """A pandas DataFrame (``pip install btkit[ta]``): ``timestamp`` (ms), ``date`` (UTC), ``open`` …
        ``volume`` as float64 copies, ready for TA-Lib or pandas rolling windows (docs/array-strategies.md)."""
        import pandas as pd

        frame = pd.DataFrame(
            {
                "timestamp": np.asarray(self.timestamp, dtype=np.int64),
                **{
                    c: np.array(getattr(self, c), dtype=np.float64)
                    for c in ("open", "high", "low", "close", "volume")
                },
            }
        )
        frame.insert(1, "date", pd.to_datetime(frame["timestamp"], unit="ms", utc=True))
        return frame

    def __repr__(self) -> str:
        if not len(self):
            return "Candles([])"
        return f"Candles(n={len(self)}, first={int(self.timestamp[0])}, last={int(self.timestamp[-1])})"


# ---------------------------------------------------------------- signals
@attrs.frozen(slots=True)
class Signal:
    """What a strategy's ``get_signal`` returns to open a position (or place a resting limit entry).

    Without ``price_open`` the position opens at the current price; with it, the signal waits
    (scheduled) until the price reaches ``price_open``.
    """

    position: Position = attrs.field(validator=_position)
    price_take_profit: float = attrs.field(validator=_finite_positive)
    price_stop_loss: float = attrs.field(validator=_finite_positive)
    minute_estimated_time: int | None = attrs.field(default=None, validator=_opt_minutes)
    price_open: float | None = attrs.field(default=None, validator=_opt_finite_positive)
    cost: float | None = attrs.field(default=None, validator=_opt_finite_positive)
    id: str | None = attrs.field(default=None)
    note: str = attrs.field(default="", validator=attrs.validators.instance_of(str))
    multiplier: float | None = attrs.field(default=None, validator=_opt_finite_positive)
    isolated: bool | None = attrs.field(default=None)


@attrs.frozen(slots=True)
class Entry:
    """One (DCA) entry of a position: the price it filled at and the dollars it put in."""

    price: float = attrs.field(validator=_finite_positive)
    cost: float = attrs.field(validator=_finite_positive)
    timestamp: int = attrs.field(validator=_timestamp)


@attrs.frozen(slots=True)
class Partial:
    """One partial close: ``percent`` of the position remaining at that time."""

    kind: Literal["profit", "loss"]
    percent: float = attrs.field(validator=_finite_positive)
    current_price: float = attrs.field(validator=_finite_positive)
    cost_basis_at_close: float = attrs.field(validator=_finite_non_negative)
    entry_count_at_close: int
    timestamp: int = attrs.field(validator=_timestamp)


@attrs.frozen(slots=True, kw_only=True)
class SignalRow:
    """The engine's record of one signal, scheduled or pending; this is what live mode persists.

    ``price_open`` / ``price_take_profit`` / ``price_stop_loss`` are the originals; trailing and breakeven
    moves live in the ``trailing_*`` fields, DCA in ``entries``, partial closes in ``partials``.
    """

    id: str = attrs.field(validator=attrs.validators.instance_of(str))
    symbol: str
    strategy_name: str
    exchange_name: str
    frame_name: str
    position: Position = attrs.field(validator=_position)
    price_open: float = attrs.field(validator=_finite_positive)
    price_take_profit: float = attrs.field(validator=_finite_positive)
    price_stop_loss: float = attrs.field(validator=_finite_positive)
    minute_estimated_time: int | None = attrs.field(validator=_opt_minutes)
    cost: float = attrs.field(validator=_finite_positive)
    note: str
    scheduled_at: int = attrs.field(validator=_timestamp)
    pending_at: int | None = attrs.field(default=None, validator=_opt_timestamp)
    multiplier: float = attrs.field(default=1.0, validator=_finite_positive)
    isolated: bool = True
    entries: tuple[Entry, ...] = ()
    partials: tuple[Partial, ...] = ()
    trailing_take_profit: float | None = attrs.field(default=None, validator=_opt_finite_positive)
    trailing_stop_loss: float | None = attrs.field(default=None, validator=_opt_finite_positive)
    breakeven: bool = False
    price_best: float | None = attrs.field(default=None, validator=_opt_finite_positive)
    price_worst: float | None = attrs.field(default=None, validator=_opt_finite_positive)

    @property
    def take_profit(self) -> float:
        """Effective take-profit (after trailing)."""
        return self.price_take_profit if self.trailing_take_profit is None else self.trailing_take_profit

    @property
    def stop_loss(self) -> float:
        """Effective stop-loss (after trailing / breakeven)."""
        return self.price_stop_loss if self.trailing_stop_loss is None else self.trailing_stop_loss

    @property
    def is_long(self) -> bool:
        return self.position == "long"


@attrs.frozen(slots=True, kw_only=True)
class SignalView:
    """Read-only view of a signal given to user code on every result (effective prices)."""

    id: str
    position: Position
    price_open: float
    price_take_profit: float
    price_stop_loss: float
    minute_estimated_time: int | None
    cost: float
    note: str
    scheduled_at: int
    pending_at: int | None
    original_price_open: float
    original_price_take_profit: float
    original_price_stop_loss: float
    multiplier: float
    isolated: bool
    entries: tuple[Entry, ...]
    partials: tuple[Partial, ...]


# ---------------------------------------------------------------- pnl
@attrs.frozen(slots=True, kw_only=True)
class Pnl:
    """Result of the pnl formula of 20-pnl-stats.md (percent units: 0.1 means 0.1 %)."""

    pnl_percentage: float = attrs.field(validator=_finite)
    pnl_cost: float = attrs.field(validator=_finite)
    pnl_entries: float = attrs.field(validator=_finite_non_negative)
    price_open: float = attrs.field(validator=_finite_positive)
    price_close: float = attrs.field(validator=_finite_positive)


# ---------------------------------------------------------------- tick results
@attrs.frozen(slots=True, kw_only=True)
class _Result:
    action: ClassVar[str] = ""
    symbol: str
    strategy_name: str
    exchange_name: str
    frame_name: str
    backtest: bool
    timestamp: int
    current_price: float
    signal: SignalView | None = None

    @property
    def time_iso(self) -> str:
        """``timestamp`` as a person reads it: ISO-8601 UTC (``2024-02-01T10:45Z``)."""
        from btkit.context import iso

        return iso(self.timestamp)


@attrs.frozen(slots=True, kw_only=True)
class Idle(_Result):
    action: ClassVar[str] = "idle"


@attrs.frozen(slots=True, kw_only=True)
class Scheduled(_Result):
    action: ClassVar[str] = "scheduled"


@attrs.frozen(slots=True, kw_only=True)
class Waiting(_Result):
    action: ClassVar[str] = "waiting"


@attrs.frozen(slots=True, kw_only=True)
class Opened(_Result):
    action: ClassVar[str] = "opened"


@attrs.frozen(slots=True, kw_only=True)
class Active(_Result):
    action: ClassVar[str] = "active"
    percent_tp: float = 0.0
    percent_sl: float = 0.0
    pnl: Pnl | None = None


@attrs.frozen(slots=True, kw_only=True)
class Closed(_Result):
    action: ClassVar[str] = "closed"
    close_reason: CloseReason
    close_timestamp: int
    pnl: Pnl
    price_best: float | None = None
    price_worst: float | None = None


@attrs.frozen(slots=True, kw_only=True)
class Cancelled(_Result):
    action: ClassVar[str] = "cancelled"
    reason: CancelReason
    close_timestamp: int


TickResult = Idle | Scheduled | Waiting | Opened | Active | Closed | Cancelled
RESULT_TYPES: dict[str, type] = {
    cls.action: cls for cls in (Idle, Scheduled, Waiting, Opened, Active, Closed, Cancelled)
}


def view_of(row: SignalRow) -> SignalView:
    """The read-only view of a row that results carry (effective entry, TP and SL)."""
    from btkit.lifecycle.pnl import effective_entry

    return SignalView(
        id=row.id,
        position=row.position,
        price_open=effective_entry(row) if row.entries else row.price_open,
        price_take_profit=row.take_profit,
        price_stop_loss=row.stop_loss,
        minute_estimated_time=row.minute_estimated_time,
        cost=sum(e.cost for e in row.entries) if row.entries else row.cost,
        note=row.note,
        scheduled_at=row.scheduled_at,
        pending_at=row.pending_at,
        original_price_open=row.price_open,
        original_price_take_profit=row.price_take_profit,
        original_price_stop_loss=row.price_stop_loss,
        multiplier=row.multiplier,
        isolated=row.isolated,
        entries=row.entries,
        partials=row.partials,
    )
