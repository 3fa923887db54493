"""The same smacross rules as a plain-Python loop over the same .npy file (the speed reference).

Same lifecycle semantics as btkit's backtest (10-lifecycle.md, 20-pnl-stats.md §1):
- decisions on a 1-minute frame, at most one per 15-minute bucket (the bucket is used even when there is no
  signal); the decision at minute ``t`` sees the 31 closed 15-minute candles before ``floor(t/15m)``;
- long when SMA(10) crosses above SMA(30): previous SMA(10) <= previous SMA(30) and now SMA(10) > SMA(30);
- entry at the VWAP of the 5 one-minute candles before ``t`` (typical = (h+l+c)/3; mean of closes when the
  volume is 0); TP = entry·1.02, SL = entry·0.99;
- from the candle opening at ``t`` on, each candle ``k`` is observed at ``ts[k] + 1m`` with the VWAP of the 5
  candles ending with it: first expiry (observed − t ≥ 1440 min, or the candle opens after the frame end) at
  that VWAP, then SL by low ≤ SL at the SL price, then TP by VWAP ≥ TP at the TP price;
- close, then decide, within one instant: the next decision is at the close minute itself when the strategy
  was not asked yet in its bucket (backtest-kit's throttle), else at the next bucket;
- pnl with 0.1 % slippage and 0.1 % fee: O = E·(1+s), C = P·(1−s), raw = (C−O)/O·100, fees = f·(1 + C/O).
Usage: ``uv run python benchmarks/baseline_plain.py``.
"""

from __future__ import annotations

import time

T_PROCESS = time.perf_counter()

from typing import Any  # noqa: E402

import numpy as np  # noqa: E402 - only to read the .npy file
from _common import (  # noqa: E402
    COST,
    FAST,
    FEE_PERCENT,
    FRAME_END,
    FRAME_START,
    INTERVAL_MS,
    LIFETIME_MIN,
    MINUTE_MS,
    NPY,
    SL_PERCENT,
    SLIPPAGE_PERCENT,
    SLOW,
    TP_PERCENT,
    VWAP_CANDLES,
    emit,
    frame_minutes,
    ms,
    peak_rss_mb,
    require_data,
    write_trades,
)


def pnl_percent(entry: float, close: float) -> float:
    s = SLIPPAGE_PERCENT / 100
    o = entry * (1 + s)
    c = close * (1 - s)
    raw = (c - o) / o * 100
    return raw - FEE_PERCENT * (1 + c / o)


def run() -> dict[str, Any]:
    t0 = time.perf_counter()  # loading the file counts as part of the run, as in btkit
    rows = np.load(NPY).tolist()
    ts = [int(r[0]) for r in rows]
    high = [r[2] for r in rows]
    low = [r[3] for r in rows]
    close = [r[4] for r in rows]
    vol = [r[5] for r in rows]
    first = ts[0]
    for i in range(1, len(ts)):
        if ts[i] - ts[i - 1] != MINUTE_MS:
            raise SystemExit(f"benchmark data is not contiguous at {ts[i]}")

    def idx(t: int) -> int:
        return (t - first) // MINUTE_MS

    def vwap(lo_i: int, hi_i: int) -> float:  # candles [lo_i, hi_i)
        pv = 0.0
        vv = 0.0
        for k in range(lo_i, hi_i):
            typical = (high[k] + low[k] + close[k]) / 3
            pv += typical * vol[k]
            vv += vol[k]
        if vv == 0:
            return sum(close[lo_i:hi_i]) / (hi_i - lo_i)
        return pv / vv

    frame_start = ms(FRAME_START) // MINUTE_MS * MINUTE_MS
    frame_end = ms(FRAME_END)
    lifetime_ms = LIFETIME_MIN * MINUTE_MS
    trades: list[dict[str, Any]] = []
    used_bucket = None
    t = frame_start
    while t <= frame_end:
        bucket = t // INTERVAL_MS * INTERVAL_MS
        if bucket == used_bucket:
            t = bucket + INTERVAL_MS
            continue
        used_bucket = bucket
        # closes of the 31 closed 15-minute candles before the bucket
        last_minutes = range(bucket - 31 * INTERVAL_MS + INTERVAL_MS - MINUTE_MS, bucket, INTERVAL_MS)
        closes = [close[idx(m)] for m in last_minutes]
        fast_now = sum(closes[-FAST:]) / FAST
        slow_now = sum(closes[-SLOW:]) / SLOW
        fast_prev = sum(closes[-FAST - 1 : -1]) / FAST
        slow_prev = sum(closes[-SLOW - 1 : -1]) / SLOW
        if not (fast_prev <= slow_prev and fast_now > slow_now):
            t = bucket + INTERVAL_MS
            continue
        i0 = idx(t)
        entry = vwap(i0 - VWAP_CANDLES, i0)
        tp = entry * (1 + TP_PERCENT / 100)
        sl = entry * (1 - SL_PERCENT / 100)
        k = i0
        while True:
            observed = ts[k] + MINUTE_MS
            current = vwap(k - VWAP_CANDLES + 1, k + 1)
            if observed - t >= lifetime_ms or ts[k] > frame_end:
                reason, price = "time_expired", current
            elif low[k] <= sl:
                reason, price = "stop_loss", sl
            elif current >= tp:
                reason, price = "take_profit", tp
            else:
                k += 1
                continue
            break
        pct = pnl_percent(entry, price)
        trades.append(
            {
                "pending_at": t,
                "close_timestamp": observed,
                "reason": reason,
                "price_open": entry,
                "price_close": price,
                "pnl_percentage": pct,
                "pnl_cost": pct / 100 * COST,
            }
        )
        t = observed  # close, then decide, within one instant: the bucket of the close may still be unasked
    run_s = time.perf_counter() - t0
    write_trades("baseline", trades)
    return {
        "impl": "baseline",
        "startup_s": t0 - T_PROCESS,
        "run_s": run_s,
        "wall_in_process_s": time.perf_counter() - T_PROCESS,
        "frame_candles": frame_minutes(),
        "candles_per_s": frame_minutes() / run_s,
        "peak_rss_mb": peak_rss_mb(),
        "trades": len(trades),
        "total_pnl_percent": sum(tr["pnl_percentage"] for tr in trades),
        "total_pnl_cost": sum(tr["pnl_cost"] for tr in trades),
    }


if __name__ == "__main__":
    require_data()
    emit(run())
