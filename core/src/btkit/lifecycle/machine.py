"""The signal state machine as pure functions: (row, observation, config) → decision.

An :class:`Observation` is what one step sees: ``time`` (the decision instant, ms), the 5-candle VWAP
and the low/high ("touch") of the last *closed* 1-minute candle. Live builds it at tick time ``T`` from
the candles opening ``T−5m … T−1m``; the backtest builds it for candle ``i`` with ``time = ts[i] + 1m``
(the instant that candle closed) from candles ``i−4 … i``. Same candles → same observation → same
decision, which is why a backtest and a live replay agree.

Order of checks (10-lifecycle.md §4):
- pending: expiry (or frame end) at VWAP → stop by touch at the stop level (SL, or the liquidation price
  when it is closer) → take-profit by VWAP at the TP level → hold;
- scheduled: timeout (or frame end) → stop-loss by touch cancels (beats activation) → entry touched
  activates at ``price_open`` → wait.

:func:`scan_pending` / :func:`scan_scheduled` evaluate the same rules over whole candle arrays with numpy
(the backtest fast path); property tests check they equal stepping :func:`decide_pending` /
:func:`decide_scheduled` candle by candle.
"""

from __future__ import annotations

import uuid
from typing import Literal

import attrs
import numpy as np

from btkit.config import EngineConfig
from btkit.lifecycle import pnl as pnl_math
from btkit.lifecycle.validation import validate
from btkit.model import MINUTE_MS, Entry, Signal, SignalRow


@attrs.frozen(slots=True)
class Observation:
    time: int
    vwap: float
    low: float
    high: float


@attrs.frozen(slots=True)
class CloseDecision:
    reason: Literal["take_profit", "stop_loss", "liquidation", "time_expired", "closed"]
    price: float
    time: int


@attrs.frozen(slots=True)
class CancelDecision:
    reason: Literal["timeout", "price_reject", "user"]
    price: float
    time: int


@attrs.frozen(slots=True)
class ActivateDecision:
    price: float
    time: int


# ---------------------------------------------------------------- creation
def build_row(
    signal: Signal,
    *,
    symbol: str,
    strategy_name: str,
    exchange_name: str,
    frame_name: str,
    when: int,
    current_price: float,
    cfg: EngineConfig,
) -> SignalRow:
    """Turn a validated candidate into a scheduled or pending row (§3 steps 5–6); raises on invalid."""
    if signal.price_open is None:
        entry, opens_now = current_price, True
    else:
        reached = (
            current_price <= signal.price_open
            if signal.position == "long"
            else current_price >= signal.price_open
        )
        entry, opens_now = signal.price_open, reached
    validate(signal, price_open=entry, current_price=current_price, opens_now=opens_now, cfg=cfg)
    met = signal.minute_estimated_time
    if met is None and not cfg.lifetime_is_infinite:
        met = int(cfg.max_signal_lifetime_minutes)
    cost = signal.cost if signal.cost is not None else cfg.position_entry_cost
    row = SignalRow(
        id=signal.id if signal.id is not None else uuid.uuid4().hex,
        symbol=symbol,
        strategy_name=strategy_name,
        exchange_name=exchange_name,
        frame_name=frame_name,
        position=signal.position,
        price_open=entry,
        price_take_profit=signal.price_take_profit,
        price_stop_loss=signal.price_stop_loss,
        minute_estimated_time=met,
        cost=cost,
        note=signal.note,
        scheduled_at=when,
        multiplier=signal.multiplier if signal.multiplier is not None else cfg.signal_leverage_multiplier,
        isolated=signal.isolated if signal.isolated is not None else cfg.signal_isolated_margin,
    )
    return activate(row, entry, when) if opens_now else row


def activate(row: SignalRow, price: float, when: int) -> SignalRow:
    """The row as an open position: filled at ``price`` at ``when`` (first entry recorded)."""
    return attrs.evolve(
        row,
        pending_at=when,
        price_open=price,
        entries=(Entry(price, row.cost, when),),
        price_best=price,
        price_worst=price,
    )


# ---------------------------------------------------------------- stop level
def stop_level(row: SignalRow, cfg: EngineConfig) -> tuple[float, Literal["stop_loss", "liquidation"]]:
    """The stop that fires first: the effective SL, or the liquidation price when it is closer."""
    sl = row.stop_loss
    if row.multiplier == 1.0 or not row.isolated:
        return sl, "stop_loss"
    liq = pnl_math.liquidation_price(row, slippage_pct=cfg.percent_slippage, fee_pct=cfg.percent_fee)
    if liq is None:
        return sl, "stop_loss"
    if row.is_long and liq > sl:
        return liq, "liquidation"
    if not row.is_long and liq < sl:
        return liq, "liquidation"
    return sl, "stop_loss"


def _expired(row: SignalRow, time: int) -> bool:
    met = row.minute_estimated_time
    return met is not None and row.pending_at is not None and time - row.pending_at >= met * MINUTE_MS


def _past_frame(time: int, frame_end: int | None) -> bool:
    """The observed candle (which opened at ``time − 1m``) lies after the frame's last timestamp."""
    return frame_end is not None and time - MINUTE_MS > frame_end


# ---------------------------------------------------------------- one step
def decide_pending(
    row: SignalRow, obs: Observation, cfg: EngineConfig, frame_end: int | None = None
) -> CloseDecision | None:
    if _expired(row, obs.time) or _past_frame(obs.time, frame_end):
        return CloseDecision("time_expired", obs.vwap, obs.time)
    level, reason = stop_level(row, cfg)
    if (obs.low <= level) if row.is_long else (obs.high >= level):
        return CloseDecision(reason, level, obs.time)
    tp = row.take_profit
    if (obs.vwap >= tp) if row.is_long else (obs.vwap <= tp):
        return CloseDecision("take_profit", tp, obs.time)
    return None


def decide_scheduled(
    row: SignalRow, obs: Observation, cfg: EngineConfig, frame_end: int | None = None
) -> CancelDecision | ActivateDecision | None:
    if obs.time - row.scheduled_at >= cfg.schedule_await_minutes * MINUTE_MS or _past_frame(
        obs.time, frame_end
    ):
        return CancelDecision("timeout", obs.vwap, obs.time)
    if row.is_long:
        if obs.low <= row.price_stop_loss:
            return CancelDecision("price_reject", row.price_stop_loss, obs.time)
        if obs.low <= row.price_open:
            return ActivateDecision(row.price_open, obs.time)
    else:
        if obs.high >= row.price_stop_loss:
            return CancelDecision("price_reject", row.price_stop_loss, obs.time)
        if obs.high >= row.price_open:
            return ActivateDecision(row.price_open, obs.time)
    return None


def progress(row: SignalRow, price: float) -> tuple[float, float]:
    """(percent of the way to TP, percent of the way to SL), each clipped to 0–100."""
    entry = pnl_math.effective_entry(row)
    tp, sl = row.take_profit, row.stop_loss
    to_tp = (price - entry) / (tp - entry) * 100.0 if tp != entry else 0.0
    to_sl = (price - entry) / (sl - entry) * 100.0 if sl != entry else 0.0
    return max(0.0, min(100.0, to_tp)), max(0.0, min(100.0, to_sl))


# ---------------------------------------------------------------- vectorised scans
def _first(mask: np.ndarray) -> int:
    """Index of the first True, or len(mask) when there is none."""
    i = int(mask.argmax()) if len(mask) else 0
    return i if len(mask) and mask[i] else len(mask)


def scan_pending(
    row: SignalRow,
    ts: np.ndarray,
    vwap: np.ndarray,
    low: np.ndarray,
    high: np.ndarray,
    cfg: EngineConfig,
    frame_end: int | None = None,
) -> tuple[int, CloseDecision] | None:
    """First candle (index into the arrays) at which the position closes, or None within these arrays.

    ``ts`` are candle open times; candle ``i`` is observed at ``ts[i] + 1m`` with ``vwap[i]`` (the VWAP of
    the 5 candles ending with it) and its own ``low``/``high``.
    """
    n = len(ts)
    if n == 0:
        return None
    obs_time = ts + MINUTE_MS
    end = n
    met = row.minute_estimated_time
    t_idx = n
    if met is not None and row.pending_at is not None:
        t_idx = _first(obs_time - row.pending_at >= met * MINUTE_MS)
    if frame_end is not None:
        t_idx = min(t_idx, _first(ts > frame_end))
    end = min(end, t_idx + 1)
    level, reason = stop_level(row, cfg)
    s_idx = _first(low[:end] <= level) if row.is_long else _first(high[:end] >= level)
    tp = row.take_profit
    p_idx = _first(vwap[:end] >= tp) if row.is_long else _first(vwap[:end] <= tp)
    first = min(t_idx, s_idx, p_idx)
    if first >= n:
        return None
    time = int(obs_time[first])
    if first == t_idx:
        return first, CloseDecision("time_expired", float(vwap[first]), time)
    if first == s_idx:
        return first, CloseDecision(reason, level, time)
    return first, CloseDecision("take_profit", tp, time)


def scan_scheduled(
    row: SignalRow,
    ts: np.ndarray,
    vwap: np.ndarray,
    low: np.ndarray,
    high: np.ndarray,
    cfg: EngineConfig,
    frame_end: int | None = None,
) -> tuple[int, CancelDecision | ActivateDecision] | None:
    """First candle at which a scheduled signal is cancelled or activated, or None within these arrays."""
    n = len(ts)
    if n == 0:
        return None
    obs_time = ts + MINUTE_MS
    t_idx = _first(obs_time - row.scheduled_at >= cfg.schedule_await_minutes * MINUTE_MS)
    if frame_end is not None:
        t_idx = min(t_idx, _first(ts > frame_end))
    end = min(n, t_idx + 1)
    if row.is_long:
        r_idx = _first(low[:end] <= row.price_stop_loss)
        a_idx = _first(low[:end] <= row.price_open)
    else:
        r_idx = _first(high[:end] >= row.price_stop_loss)
        a_idx = _first(high[:end] >= row.price_open)
    first = min(t_idx, r_idx, a_idx)
    if first >= n:
        return None
    time = int(obs_time[first])
    if first == t_idx:
        return first, CancelDecision("timeout", float(vwap[first]), time)
    if first == r_idx:
        return first, CancelDecision("price_reject", row.price_stop_loss, time)
    return first, ActivateDecision(row.price_open, time)


def extremes(row: SignalRow, low: np.ndarray, high: np.ndarray) -> tuple[float, float]:
    """(best, worst) price seen while open over these candles, merged with what the row saw before."""
    lo, hi = float(low.min()), float(high.max())
    best, worst = (hi, lo) if row.is_long else (lo, hi)
    if row.price_best is not None:
        best = max(best, row.price_best) if row.is_long else min(best, row.price_best)
    if row.price_worst is not None:
        worst = min(worst, row.price_worst) if row.is_long else max(worst, row.price_worst)
    return best, worst
