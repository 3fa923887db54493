"""The portfolio backtest: several symbols (and strategies) of one run in lockstep, minute by minute.

``Backtest.run`` resolves each signal of one symbol at once with the vectorised fast path; that is only
right while nothing outside the symbol can matter. Risk profiles shared by several symbols can: a slot
taken by ETHUSDT at 10:00 must be seen by BTCUSDT at 10:05 and freed when ETHUSDT closes, not before.
Here every instance of the run shares one risk book and time advances one minute at a time for all of
them, as the live runner does on a replay clock:

- an instance with a scheduled or open signal ticks at the first minute its signal can change state: that
  minute is found with the same numpy scans the fast path uses (nothing outside the symbol can move a
  TP, SL, expiry or fill), and the tick there is the ordinary one-candle tick, so the risk book sees the
  fill or the close at its own minute. With listeners or callbacks that need every candle, it ticks every
  minute;
- an idle instance ticks on frame timestamps only, skipping throttle buckets it has used up;
- within one minute, instances holding a signal tick first (exits before entries, so a slot freed at
  minute t is free for an entry at minute t), then the idle ones, each group in the order given; an
  instance whose signal ended at t decides in the second group when it was not asked yet in the bucket of
  its interval holding t (close, then decide, within one instant).

Every rule is the single-symbol one: with no shared limit, each symbol's results equal its own
``Backtest.run`` (tested).
"""

from __future__ import annotations

import threading
from collections.abc import AsyncIterator, Sequence
from typing import Any

import attrs

from btkit import events
from btkit.engine import fastpath
from btkit.engine.backtest import RunKey, _params, _rejections, _results, emit_done, emit_progress, new_run
from btkit.engine.instance import StrategyInstance
from btkit.lifecycle import machine
from btkit.model import MINUTE_MS, Cancelled, Closed, Opened, Scheduled, TickResult

REPORTED = (Scheduled, Opened, Closed, Cancelled)


def _busy(inst: StrategyInstance) -> bool:
    st = inst.state
    return st.pending is not None or st.scheduled is not None or st.strategy.intent is not None


async def _wake(inst: StrategyInstance, t: int) -> int:
    """The first minute ≥ ``t`` at which the busy instance's signal can change state (its next tick)."""
    if fastpath.needs_per_candle(inst):
        return t
    first = t - MINUTE_MS  # the tick at minute t observes the candle opening a minute earlier
    row = inst.state.pending
    if row is not None:
        met = row.minute_estimated_time
        ts, vw, lo, hi = await fastpath.candles_from(
            inst, first, met + 5 if met is not None else fastpath.SCAN_CHUNK
        )
        hit = machine.scan_pending(row, ts, vw, lo, hi, inst.cfg, inst.run.frame_end)
    else:
        row = inst.state.scheduled
        assert row is not None
        count = inst.cfg.schedule_await_minutes + (row.minute_estimated_time or 0) + 1
        ts, vw, lo, hi = await fastpath.candles_from(inst, first, count)
        hit = machine.scan_scheduled(row, ts, vw, lo, hi, inst.cfg, inst.run.frame_end)
    if hit is not None:
        return int(ts[hit[0]]) + MINUTE_MS
    return int(ts[-1]) + 2 * MINUTE_MS  # nothing within these candles: tick after them, then look again


async def _fold_extremes(inst: StrategyInstance, since: int, until: int) -> None:
    """Fold the prices of the skipped candles opening in ``[since, until)`` into the open position's best
    and worst — only up to the tick that actually comes, which may be earlier than the scan foresaw."""
    row = inst.state.pending
    count = (until - since) // MINUTE_MS
    if row is None or count <= 0:
        return
    # only lows and highs: the candles the wake-up scan already read, without its VWAP window
    _ts, _o, hi, lo, _c, _v = await inst.market.block(inst.symbol, since, count)
    best, worst = machine.extremes(row, lo, hi)
    inst.state = attrs.evolve(inst.state, pending=attrs.evolve(row, price_best=best, price_worst=worst))


def _next_minute(
    t: int,
    start: int,
    end: int,
    step: int,
    instances: Sequence[StrategyInstance],
    wake: dict[StrategyInstance, int],
    shown: int,
    total: int,
) -> int:
    """The next minute at which anything can happen, so the lockstep loop jumps over quiet minutes instead
    of visiting each: a busy instance's next tick (``wake``), an idle one's next decision (the first frame
    minute of a bucket it has not decided in), the next progress percent. Any doubt (a busy instance
    without its wake-up worked out yet, per-minute listeners) is the next minute."""
    after = t + MINUTE_MS
    if events.has_listeners("idle_ping"):
        return after
    listened = fastpath.per_candle_listened()
    nxt = end + MINUTE_MS if t <= end else after  # past the frame end only busy instances tick
    idle_at: dict[int, int] = {}  # bucket start → the next undecided minute, per interval
    for inst in instances:
        st = inst.state
        if st.pending is not None or st.scheduled is not None or st.strategy.intent is not None:
            when = wake.get(inst)
            if when is None or fastpath.needs_per_candle(inst, listened):
                return after
            if when < nxt:
                nxt = when
        elif t < end:
            interval = inst.interval
            bucket = (t // interval) * interval
            candidate = bucket + interval if st.strategy.last_bucket == bucket else after
            if candidate < nxt:
                at = idle_at.get(candidate)
                if at is None:  # the frame minute at or after it
                    at = idle_at[candidate] = start + -(-(candidate - start) // step) * step
                if at < nxt:
                    nxt = at
    if total and t < end and events.has_listeners("backtest_progress"):
        pct_at = start + -(-(shown + 1) * total // 100) * step
        nxt = min(nxt, max(pct_at, after))
    return max(nxt, after)


async def run_portfolio(
    symbols: Sequence[str],
    *,
    strategy: str | Sequence[str],
    exchange: str,
    frame: str,
    stop: threading.Event | None = None,
    risks: tuple[str, ...] = (),
    params: Any = None,
) -> AsyncIterator[TickResult]:
    """The async generator behind ``Backtest.run_portfolio``: results of every instance, in time order.
    ``params``: ``{strategy: {name: value}}`` (docs/parameters.md)."""
    strategies = [strategy] if isinstance(strategy, str) else list(strategy)
    pairs = [(sym, strat) for strat in strategies for sym in symbols]
    if not pairs or len(set(pairs)) != len(pairs):
        raise ValueError("run_portfolio needs at least one symbol and no symbol or strategy named twice")
    run, start, end, step = new_run(frame, risks, params)
    instances: list[StrategyInstance] = []
    collected: dict[StrategyInstance, list[TickResult]] = {}
    for sym, strat in pairs:
        key: RunKey = (sym, strat, exchange, frame)
        _rejections[key] = run.rejections
        inst = run.instance(sym, strat, exchange, frame)
        _params[key] = dict(inst.params)
        instances.append(inst)
        collected[inst] = _results[key] = []
    total = max(0, (end - start) // step + 1)
    wake: dict[StrategyInstance, int] = {}  # busy instance → the minute of its next tick
    unfolded: dict[StrategyInstance, int] = {}  # open position → first skipped candle not yet in its extremes
    shown = -1
    error: BaseException | None = None
    try:
        t = start
        while not (stop is not None and stop.is_set()):
            busy = [inst for inst in instances if _busy(inst)]
            if t > end and not busy:
                break
            on_frame = t <= end and (t - start) % step == 0
            if on_frame and events.has_listeners("backtest_progress"):
                done = (t - start) // step
                if done * 100 // max(total, 1) != shown:
                    shown = done * 100 // max(total, 1)
                    for inst in instances:
                        await emit_progress(inst, total, done)
            due = []
            listened = fastpath.per_candle_listened() if busy else False
            for inst in busy:
                when = wake.get(inst)
                if when is None or fastpath.needs_per_candle(
                    inst, listened
                ):  # e.g. a listener queued a command
                    if inst.state.pending is not None:
                        unfolded.setdefault(inst, t - MINUTE_MS)
                    when = wake[inst] = await _wake(inst, t)
                if when <= t:
                    due.append(inst)
            ended: set[StrategyInstance] = set()  # closed or cancelled at t
            for inst in due:
                wake.pop(inst, None)  # ticked: a busy instance gets its next minute worked out again
                if inst in unfolded:  # the tick itself tracks the candle it observes (opening at t - 1m)
                    await _fold_extremes(inst, unfolded.pop(inst), t - MINUTE_MS)
                result = await inst.tick(t)
                if isinstance(result, REPORTED):
                    collected[inst].append(result)
                    yield result
                if isinstance(result, (Closed, Cancelled)):
                    ended.add(inst)
            if on_frame:  # then the entries: idle instances, and those whose signal just ended at t
                idle_pings = events.has_listeners("idle_ping")
                held = set(busy)
                for inst in instances:
                    if inst in ended:  # close, then decide, within one instant (10-lifecycle.md §3.1)
                        decided = await inst.decide_after_close(t)
                        if isinstance(decided, REPORTED):
                            collected[inst].append(decided)
                            yield decided
                        continue
                    if inst in held:
                        continue
                    interval = inst.interval
                    if idle_pings or inst.state.strategy.last_bucket != (t // interval) * interval:
                        result = await inst.tick(t)
                        if isinstance(result, REPORTED):
                            collected[inst].append(result)
                            yield result
            t = _next_minute(t, start, end, step, instances, wake, shown, total)
        if events.has_listeners("backtest_progress") and not (stop is not None and stop.is_set()):
            for inst in instances:
                await emit_progress(inst, total, total)
    except Exception as exc:
        error = exc
        await run.report(exc, f"portfolio backtest {', '.join(symbols)} on {exchange}/{frame}")
        raise
    finally:
        await run.aclose()
        for inst in instances:
            await emit_done(inst, error)
