"""The backtest fast path: resolve a scheduled or open signal over a batch of following candles.

When nothing but TP/SL/expiry can happen, the whole signal is decided with numpy in one pass
(``lifecycle.machine.scan_pending`` / ``scan_scheduled``, property-tested to equal stepping the
one-candle rule). When listeners, callbacks or queued commands need every candle, the same candles
are fed one by one through the instance's live tick instead — same rules, slower.
"""

from __future__ import annotations

import attrs
import numpy as np

from btkit import candles as ca
from btkit import events
from btkit.context import ms_to_datetime
from btkit.engine.announce import LEVEL_STREAMS
from btkit.engine.instance import StrategyInstance
from btkit.errors import InsufficientDataError
from btkit.lifecycle import machine
from btkit.lifecycle.machine import CancelDecision, Observation
from btkit.model import MINUTE_MS, Cancelled, Closed, Opened, TickResult

SCAN_CHUNK = 10_000  # candles per chunk when a signal has no lifetime limit
PER_CANDLE_STREAMS = ("active_ping", "schedule_ping", *LEVEL_STREAMS)


def per_candle_listened() -> bool:
    """Someone listens to a stream emitted on every candle of a held signal (pings, level events)."""
    return any(events.has_listeners(s) for s in PER_CANDLE_STREAMS)


def per_candle_callbacks(inst: StrategyInstance) -> bool:
    """The strategy has ``on_active`` / ``on_waiting`` callbacks (called on every candle)."""
    cb = inst.strategy.callbacks
    if cb is None:
        return False
    return any(
        (getattr(cb, n, None) or (cb.get(n) if isinstance(cb, dict) else None))
        for n in ("on_active", "on_waiting")
    )


def needs_per_candle(inst: StrategyInstance, listened: bool | None = None) -> bool:
    """Must the held signal be fed candle by candle? ``listened``: :func:`per_candle_listened`, when the
    caller already knows it (the lockstep loop asks once per minute for every instance)."""
    # a queued position command or close/cancel request (e.g. from a listener of the "opened" result)
    # applies on the next tick
    if inst.pending_commands or inst.state.strategy.deferred:
        return True
    if listened if listened is not None else per_candle_listened():
        return True
    return per_candle_callbacks(inst)


async def resolve(inst: StrategyInstance) -> list[TickResult]:
    """Backtest: resolve the scheduled/open signal over following candles; return what happened."""
    out: list[TickResult] = []
    while inst.state.scheduled is not None or inst.state.pending is not None:
        if inst.state.scheduled is not None:
            out.append(await _resolve_scheduled(inst))
        else:
            out.append(await _resolve_pending(inst))
    return out


async def candles_from(inst: StrategyInstance, first_examined: int, count: int) -> tuple[np.ndarray, ...]:
    """1m candles so that index ``w-1`` is the candle opening at ``first_examined`` (VWAP window)."""
    w = inst.cfg.avg_price_candles_count
    ts, _o, h, lo, c, v = await inst.market.block(
        inst.symbol, first_examined - (w - 1) * MINUTE_MS, count + w - 1
    )
    if len(ts) < w or int(ts[w - 1]) != first_examined:
        raise InsufficientDataError(
            f"insufficient candle data: no 1m candles for {inst.symbol} at "
            f"{ms_to_datetime(first_examined):%Y-%m-%d %H:%M} on exchange {inst.exchange_name} to resolve the "
            "signal; extend the data or shorten the frame"
        )
    vw = ca.rolling_vwap(h, lo, c, v, w)
    return ts[w - 1 :], vw[w - 1 :], lo[w - 1 :], h[w - 1 :]


async def _per_candle(
    inst: StrategyInstance, ts: np.ndarray, vw: np.ndarray, lo: np.ndarray, hi: np.ndarray
) -> TickResult | None:
    """The slow path: the live tick, candle by candle (listeners or callbacks may act on each)."""
    for i in range(len(ts)):
        obs = Observation(int(ts[i]) + MINUTE_MS, float(vw[i]), float(lo[i]), float(hi[i]))
        result = await inst.tick(obs.time, obs)
        if isinstance(result, (Closed, Cancelled, Opened)):
            return result
    return None


async def _resolve_pending(inst: StrategyInstance) -> TickResult:
    row = inst.state.pending
    assert row is not None and row.pending_at is not None
    met = row.minute_estimated_time
    start = row.pending_at
    while True:
        count = (met + 5) if met is not None else SCAN_CHUNK
        ts, vw, lo, hi = await candles_from(inst, start, count)
        if needs_per_candle(inst):
            result = await _per_candle(inst, ts, vw, lo, hi)
            if result is not None:
                return result
        else:
            row = inst.state.pending
            assert row is not None
            hit = machine.scan_pending(row, ts, vw, lo, hi, inst.cfg, inst.run.frame_end)
            if hit is not None:
                idx, decision = hit
                best, worst = machine.extremes(row, lo[: idx + 1], hi[: idx + 1])
                row = attrs.evolve(row, price_best=best, price_worst=worst)
                return await inst._close(decision, row)
            best, worst = machine.extremes(row, lo, hi)
            inst.state = attrs.evolve(
                inst.state, pending=attrs.evolve(row, price_best=best, price_worst=worst)
            )
        if met is not None and len(ts) >= count:
            raise InsufficientDataError(
                f"signal {row.id} on {inst.symbol} did not resolve within its lifetime"
            )
        if len(ts) < count:
            raise InsufficientDataError(
                f"insufficient candle data: exchange {inst.exchange_name} ends at "
                f"{ms_to_datetime(int(ts[-1])):%Y-%m-%d %H:%M} before signal {row.id} on {inst.symbol} closed; "
                "extend the data or end the frame earlier"
            )
        start = int(ts[-1]) + MINUTE_MS


async def _resolve_scheduled(inst: StrategyInstance) -> TickResult:
    row = inst.state.scheduled
    assert row is not None
    lifetime = row.minute_estimated_time or 0
    count = inst.cfg.schedule_await_minutes + lifetime + 1
    ts, vw, lo, hi = await candles_from(inst, row.scheduled_at, count)
    if needs_per_candle(inst):
        result = await _per_candle(inst, ts, vw, lo, hi)
        if result is not None:
            return result
    else:
        hit = machine.scan_scheduled(row, ts, vw, lo, hi, inst.cfg, inst.run.frame_end)
        if hit is not None:
            idx, decision = hit
            if isinstance(decision, CancelDecision):
                return await inst._cancel(decision, row)
            return await inst._activate(decision, row, float(vw[idx]))
    raise InsufficientDataError(
        f"insufficient candle data: scheduled signal {row.id} on {inst.symbol} neither filled nor timed out "
        "within the candles the exchange has; extend the data or end the frame earlier"
    )
