"""A deliberately simple, independent reference of btkit's signal lifecycle: one loop, minute by minute.

It does not import btkit. It restates the rules of docs/lifecycle.md in the most direct way, so that the
engine (vectorised fast path, skipping of idle buckets, the portfolio lockstep, the live runner) can be
checked against it:

- every minute ``t`` first *observes* the candle that just closed (the one opening at ``t − 1m``): its low,
  its high and the VWAP of the 5 candles ending with it (typical price (h+l+c)/3 weighted by volume; the
  mean of the closes when the volume is 0);
- an open position: expiry first (``t − pending_at ≥ lifetime`` or the candle opens after the frame end)
  at the VWAP, then the stop by touch (long low ≤ SL, short high ≥ SL) at the SL, then the take-profit by
  VWAP (long VWAP ≥ TP, short ≤) at the TP;
- a resting entry: timeout first (``t − scheduled_at ≥ schedule_await`` or past the frame end), then the
  price reject by touch of the SL, then the fill by touch of ``price_open`` (the position opens at ``t``);
- then, when nothing is open or resting, ``t`` is a frame timestamp and the strategy has not been asked in
  the bucket ``floor(t / interval)·interval`` yet (backtest-kit's throttle), it is asked, with the VWAP of
  the 5 candles before ``t``: close, then decide, within one instant;
- a new position or resting entry is first observed one minute later (the candle opening at ``t``).

pnl: slipped prices against the trader, ``O = E·(1±s)``, ``C = P·(1∓s)``, raw = ±(C−O)/O·100, fees
``f·(1 + C/O)`` (20-pnl-stats.md §1).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

MINUTE_MS = 60_000


@dataclass(frozen=True)
class Rules:
    frame_start: int  # ms, floored to the minute
    frame_end: int  # ms
    interval_ms: int  # the strategy's throttle interval
    frame_step_ms: int = MINUTE_MS
    vwap_candles: int = 5
    schedule_await_minutes: int = 120
    slippage_percent: float = 0.1
    fee_percent: float = 0.1
    cost: float = 100.0


@dataclass(frozen=True)
class Order:
    """What the strategy answers: absolute TP/SL prices, an optional resting entry price, a lifetime."""

    id: str
    position: str  # "long" or "short"
    take_profit: float
    stop_loss: float
    minute_estimated_time: int
    price_open: float | None = None


# decide(when_ms, vwap_before_when) -> Order | None
Decide = Callable[[int, float], Order | None]


def pnl_percent(position: str, entry: float, close: float, rules: Rules) -> float:
    s = rules.slippage_percent / 100
    if position == "long":
        o, c = entry * (1 + s), close * (1 - s)
        raw = (c - o) / o * 100
    else:
        o, c = entry * (1 - s), close * (1 + s)
        raw = (o - c) / o * 100
    return raw - rules.fee_percent * (1 + c / o)


def run_reference(candles: Any, decide: Decide, rules: Rules) -> list[dict[str, Any]]:
    """Every lifecycle event, in order: dicts with ``action`` ∈ scheduled/opened/closed/cancelled.

    ``candles`` is a sequence of contiguous 1-minute rows ``[ts, open, high, low, close, volume]`` (a
    list of lists of floats is used as it is).
    """
    rows = candles if isinstance(candles, list) else [[float(x) for x in r] for r in candles]
    first = int(rows[0][0])
    for k in range(1, len(rows)):
        if int(rows[k][0]) - int(rows[k - 1][0]) != MINUTE_MS:
            raise ValueError(f"candles are not contiguous at {int(rows[k][0])}")

    def vwap(lo: int, hi: int) -> float:  # candles [lo, hi)
        if lo < 0 or hi > len(rows):
            raise ValueError("not enough candles for the VWAP window")
        pv = vol = 0.0
        for k in range(lo, hi):
            _, _, h, low, c, v = rows[k]
            pv += (h + low + c) / 3 * v
            vol += v
        if vol == 0:
            return sum(rows[k][4] for k in range(lo, hi)) / (hi - lo)
        return pv / vol

    w = rules.vwap_candles
    start = rules.frame_start // MINUTE_MS * MINUTE_MS
    last_frame = start + (rules.frame_end - start) // rules.frame_step_ms * rules.frame_step_ms
    events: list[dict[str, Any]] = []
    pending: dict[str, Any] | None = None
    scheduled: dict[str, Any] | None = None
    asked_bucket: int | None = None

    t = start
    while t <= last_frame or pending is not None or scheduled is not None:
        # 1. observe the candle that closed at t (opened at t − 1m)
        k = (t - MINUTE_MS - first) // MINUTE_MS
        if pending is not None or scheduled is not None:
            if k >= len(rows):
                raise ValueError(f"candles end before the signal open at {t} resolved")
            low, high = rows[k][3], rows[k][2]
            now = vwap(k - w + 1, k + 1)
            past_frame = t - MINUTE_MS > rules.frame_end
        if pending is not None:
            long = pending["position"] == "long"
            hit: tuple[str, float] | None = None
            if t - pending["pending_at"] >= pending["minute_estimated_time"] * MINUTE_MS or past_frame:
                hit = ("time_expired", now)
            elif (low <= pending["stop_loss"]) if long else (high >= pending["stop_loss"]):
                hit = ("stop_loss", pending["stop_loss"])
            elif (now >= pending["take_profit"]) if long else (now <= pending["take_profit"]):
                hit = ("take_profit", pending["take_profit"])
            if hit is not None:
                reason, price = hit
                pct = pnl_percent(pending["position"], pending["price_open"], price, rules)
                events.append(
                    {
                        "action": "closed",
                        "id": pending["id"],
                        "position": pending["position"],
                        "pending_at": pending["pending_at"],
                        "close_timestamp": t,
                        "reason": reason,
                        "price_open": pending["price_open"],
                        "price_close": price,
                        "pnl_percentage": pct,
                        "pnl_cost": pct / 100 * rules.cost,
                    }
                )
                pending = None
        elif scheduled is not None:
            long = scheduled["position"] == "long"
            waited = t - scheduled["scheduled_at"] >= rules.schedule_await_minutes * MINUTE_MS
            if waited or past_frame:
                events.append(_cancel(scheduled, t, "timeout"))
                scheduled = None
            elif (low <= scheduled["stop_loss"]) if long else (high >= scheduled["stop_loss"]):
                events.append(_cancel(scheduled, t, "price_reject"))
                scheduled = None
            elif (low <= scheduled["price_open"]) if long else (high >= scheduled["price_open"]):
                pending = dict(scheduled, pending_at=t)
                scheduled = None
                events.append({"action": "opened", "id": pending["id"], "timestamp": t})
        # 2. decide, when free, on a frame timestamp, once per bucket of the strategy's interval
        on_frame = t <= last_frame and (t - start) % rules.frame_step_ms == 0
        bucket = t // rules.interval_ms * rules.interval_ms
        if pending is None and scheduled is None and on_frame and bucket != asked_bucket:
            asked_bucket = bucket
            i = (t - first) // MINUTE_MS
            price = vwap(i - w, i)
            order = decide(t, price)
            if order is not None:
                row = {
                    "id": order.id,
                    "position": order.position,
                    "take_profit": order.take_profit,
                    "stop_loss": order.stop_loss,
                    "minute_estimated_time": order.minute_estimated_time,
                    "scheduled_at": t,
                }
                long = order.position == "long"
                if order.price_open is None:
                    pending = dict(row, price_open=price, pending_at=t)
                elif (price <= order.price_open) if long else (price >= order.price_open):
                    pending = dict(row, price_open=order.price_open, pending_at=t)
                else:
                    scheduled = dict(row, price_open=order.price_open)
                if pending is not None:
                    events.append({"action": "opened", "id": order.id, "timestamp": t})
                else:
                    events.append({"action": "scheduled", "id": order.id, "timestamp": t})
        t += MINUTE_MS
    return events


def _cancel(row: dict[str, Any], t: int, reason: str) -> dict[str, Any]:
    return {
        "action": "cancelled",
        "id": row["id"],
        "scheduled_at": row["scheduled_at"],
        "close_timestamp": t,
        "reason": reason,
    }


def trades(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The closed trades of an event list."""
    return [e for e in events if e["action"] == "closed"]


def events_of_results(results: Any) -> list[dict[str, Any]]:
    """btkit's scheduled/opened/closed/cancelled results as the reference's event dicts (duck-typed: this
    module does not import btkit)."""
    out: list[dict[str, Any]] = []
    for r in results:
        action = getattr(r, "action", None)
        if action in ("scheduled", "opened"):
            out.append({"action": action, "id": r.signal.id, "timestamp": r.timestamp})
        elif action == "closed":
            out.append(
                {
                    "action": "closed",
                    "id": r.signal.id,
                    "position": r.signal.position,
                    "pending_at": r.signal.pending_at,
                    "close_timestamp": r.close_timestamp,
                    "reason": r.close_reason,
                    "price_open": r.pnl.price_open,
                    "price_close": r.pnl.price_close,
                    "pnl_percentage": r.pnl.pnl_percentage,
                    "pnl_cost": r.pnl.pnl_cost,
                }
            )
        elif action == "cancelled":
            out.append(
                {
                    "action": "cancelled",
                    "id": r.signal.id,
                    "scheduled_at": r.signal.scheduled_at,
                    "close_timestamp": r.close_timestamp,
                    "reason": r.reason,
                }
            )
    return out


def differences(expected: list[dict[str, Any]], got: list[dict[str, Any]], tol: float = 1e-9) -> list[str]:
    """Where two event lists differ (floats compared to ``tol``, relative for prices); empty when equal."""
    out: list[str] = []
    for n, (a, b) in enumerate(zip(expected, got, strict=False)):
        for key in sorted(set(a) | set(b)):
            x, y = a.get(key), b.get(key)
            if isinstance(x, float) and isinstance(y, float):
                scale = max(1.0, abs(x), abs(y)) if key.startswith("price") else 1.0
                same = abs(x - y) <= tol * scale
            else:
                same = x == y
            if not same:
                out.append(f"event {n} ({a.get('action')} {a.get('id')}): {key} reference {x!r} != {y!r}")
        if out:
            return out
    if len(expected) != len(got):
        extra = expected[len(got)] if len(expected) > len(got) else got[len(expected)]
        out.append(f"{len(expected)} reference events != {len(got)}; first unmatched: {extra}")
    return out
