"""Load: N symbols live in one process against the fake Binance USD-M server, ccxt's rate limiter on.

Every symbol runs one strategy with the ``binance-futures`` exchange and broker on one replay clock, minute
by minute (6 minutes): all N enter at minute 1 (a limit entry at the engine's price, then a stop-loss and a
take-profit on the exchange), are checked by the broker every minute while open, and are closed by the
engine at take-profit at minute 4, after a candle whose spike lifts the engine's price over the target;
minutes 0 and 5 are idle. The clock records, per minute, the time from handing the minute out to the last
symbol finishing its tick (broker calls included): every minute must end well within 60 s.

The fake enforces Binance's budgets (2400 request weight per minute, 300 orders per 10 s: 429, then 418)
and every run reports how many requests it refused. Two modes, measured in the same run:

- ``before``: ccxt's own limiter on every client (it spaces the requests of one client by their weight ×
  ``rateLimit``, ccxt's unit for Binance being 50 ms: a position read weighs 5 → 250 ms) and one
  position / conditional-order read per symbol (``rate_limiter = "ccxt"``, ``account_reads =
  "per_symbol"``);
- ``after``: btkit's process-wide weight limiter (requests go out at once while the budget allows) and the
  account-wide reads shared by the symbols of a tick (the defaults).

The broker's start-up (markets, position mode, start-up reconciliation) happens before the first minute
and is reported separately. "REST calls per entry": the entry minute's requests minus the idle minute 0's
(the candles), per entering symbol. ``--entering K``: only the first K symbols enter (the others have an
ordinary minute). The fake's budget windows and btkit's limiter run on live time (each replay minute
starts 60 s after the previous one, see ``BudgetClock``), not on the compressed replay.

Usage: ``uv run python benchmarks/live_binance_load.py [--symbols 50,200] [--modes before,after]``
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

import attrs

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests" / "e2e"))

from e2e_helpers import SteppedReplayClock, broker_options, write_btkit_toml

T0 = 1_709_251_200_000  # 2024-03-01 00:00 UTC
MINUTE_MS = 60_000
HISTORY = 10
OPEN_MINUTE, SPIKE_MINUTE, LAST_MINUTE = 1, 3, 5
STRATEGY = "load-tp"
COST = 50.0  # USDT per position (the fake's SYM<i>USDT at 10 + i: min notional 5, step 0.1 — 0.2 at 209)
TP, SL = 1.02, 0.98  # of the base price


def base_price(symbol: str) -> float:
    return 10.0 + int(symbol.removeprefix("SYM").removesuffix("USDT"))  # the fake's extra symbols


def rows(base: float) -> list[list[Any]]:
    """Flat candles, then at SPIKE_MINUTE a spike (high +6 %, heavy volume, close +1 %), then flat above."""
    out = []
    for i in range(-HISTORY, LAST_MINUTE + 3):
        if i < SPIKE_MINUTE:
            o, h, lo, c, v = base, base * 1.0004, base * 0.9998, base, 10.0
        elif i == SPIKE_MINUTE:
            o, h, lo, c, v = base, base * 1.06, base, base * 1.01, 1000.0
        else:
            o, h, lo, c, v = base * 1.01, base * 1.0104, base * 1.0098, base * 1.01, 10.0
        out.append([T0 + i * MINUTE_MS, *(f"{x:.4f}" for x in (o, h, lo, c, v))])
    return out


def close_of(base: float, index: int) -> float:
    row = rows(base)[index + HISTORY]
    return float(row[4])


ENTERING: list[int | None] = [None]  # how many symbols (the first ones) enter at OPEN_MINUTE; None: all


def symbol_index(symbol: str) -> int:
    return int(symbol.removeprefix("SYM").removesuffix("USDT"))


def get_signal(symbol: str, when: Any, current_price: float) -> dict[str, Any] | None:
    if int(when.timestamp() * 1000) != T0 + OPEN_MINUTE * MINUTE_MS:
        return None
    if ENTERING[0] is not None and symbol_index(symbol) >= ENTERING[0]:
        return None
    base = base_price(symbol)
    return {
        "id": f"load-{symbol}",
        "position": "long",
        "price_take_profit": base * TP,
        "price_stop_loss": base * SL,
        "cost": COST,
        "minute_estimated_time": 60,
    }


MODES: dict[str, dict[str, Any]] = {
    "before": {"rate_limiter": "ccxt", "account_reads": "per_symbol"},
    "after": {},
}


class BudgetClock:
    """Seconds as the exchange would see them live: each replay minute starts 60 s after the previous one
    and runs on the wall clock. The stepped replay hands out the next minute as soon as the last one is
    done, which would otherwise squeeze several minutes' requests into one of Binance's 60 s windows."""

    def __init__(self) -> None:
        self._base = 0.0
        self._real = time.monotonic()

    def __call__(self) -> float:
        return self._base + (time.monotonic() - self._real)

    def minute(self, index: int) -> None:
        now = self()
        self._base, self._real = max(now, index * 60.0), time.monotonic()


def use_mode(mode: str) -> dict[str, Any]:
    """Set the process default limiter for ``mode`` (the candle clients follow it); the broker options."""
    from btkit_ccxt import pacing

    pacing.reset_pacers()
    pacing.set_default_limiter("ccxt" if mode == "before" else "binance")
    return dict(MODES[mode])


@attrs.frozen
class LoadResult:
    symbols: int
    entering: int
    mode: str
    rate_limit_ms: int | None
    startup_s: float  # from the first Live.background to the first minute handed out
    minutes: dict[int, float]  # minute index → seconds until every symbol finished it
    opened: int
    closed: Counter[str]
    errors: tuple[str, ...]
    requests: int
    placements: int
    max_per_client_id: int
    positions_left: int
    wall_s: float
    entry_calls: float
    refused: tuple[int, int]  # 429s, 418s
    peak_weight: int
    peak_orders_10s: int
    breakdown: dict[int, Counter[str]]  # minute → weight per "METHOD path"

    def line(self) -> str:
        per = sorted(self.minutes.values())
        p50 = statistics.median(per)
        p99 = per[min(len(per) - 1, round(0.99 * (len(per) - 1)))]
        cells = " ".join(f"m{m}={s:.2f}" for m, s in sorted(self.minutes.items()))
        return (
            f"N={self.symbols:<3} entering {self.entering:<3} {self.mode:<6}: per minute p50 {p50:.2f}s p99 {p99:.2f}s "
            f"max {max(per):.2f}s [{cells}]; start-up {self.startup_s:.2f}s; opened {self.opened}, closed "
            f"{dict(self.closed)}; {self.requests} requests, REST calls per entry {self.entry_calls:.1f}, "
            f"{self.placements} orders; 429s {self.refused[0]}, 418s {self.refused[1]} (peak weight "
            f"{self.peak_weight}/min, orders {self.peak_orders_10s}/10s); errors {len(self.errors)}"
        )


def weight_by_minute(requests: list[Any], marks: dict[int, int]) -> dict[int, Counter[str]]:
    """Binance weight per endpoint in each minute (requests between two minute marks)."""
    from btkit_ccxt.limits import spot_cost, usdm_cost

    out: dict[int, Counter[str]] = {}
    bounds = sorted(marks.items())
    for i, (minute, start) in enumerate(bounds):
        end = bounds[i + 1][1] if i + 1 < len(bounds) else len(requests)
        counter: Counter[str] = Counter()
        for r in requests[start:end]:
            cost = (usdm_cost if r.path.startswith("/fapi") else spot_cost)(r.method, r.path, r.params)
            counter[f"{r.method} {r.path}{'' if r.params.get('symbol') else ' (all)'}"] += max(cost.weight, 0)
        out[minute] = counter
    return out


def run_load(
    n: int,
    workdir: Path,
    *,
    mode: str = "after",
    rate_limit_ms: int | None = None,
    entering: int | None = None,
) -> LoadResult:
    """One live run of ``n`` symbols (see the module docstring). Changes the working directory and the
    BINANCE_API_* environment for the run and restores both; btkit's process state is left to the caller
    (``btkit.testing.reset_btkit``)."""
    import btkit
    from btkit.engine import live
    from btkit_binance_futures.testing import FakeBinanceFutures

    ENTERING[0] = entering

    saved_env = {k: os.environ.get(k) for k in ("BINANCE_API_KEY", "BINANCE_API_SECRET")}
    saved_cwd = Path.cwd()
    started = time.perf_counter()
    from btkit_ccxt import pacing
    from btkit_ccxt.limits import USDM, ServerLimits, usdm_cost

    extra = use_mode(mode)
    budget_clock = BudgetClock()
    with FakeBinanceFutures(symbols=[], extra_symbols=n, balance="1000000", enforce_limits=True) as fake:
        fake.limits = ServerLimits(USDM, usdm_cost, clock=budget_clock)
        host = fake.url.split("://", 1)[1]
        pacing.configure("binanceusdm", host, pacing.Pacer(USDM, usdm_cost, clock=budget_clock))
        symbols = list(fake.symbols)
        for s in symbols:
            fake.set_klines(s, "1m", rows(base_price(s)))
        os.environ["BINANCE_API_KEY"], os.environ["BINANCE_API_SECRET"] = fake.api_key, fake.api_secret
        try:
            os.chdir(workdir)
            write_btkit_toml(workdir, fake.url)
            live.SETTINGS.broker = "binance-futures"
            live.SETTINGS.broker_options = broker_options(fake.url, rate_limit_ms=rate_limit_ms, **extra)
            btkit.use_persistence("file", root=str(workdir / "dump"))
            btkit.add_strategy(STRATEGY, get_signal, interval="1m")
            opened: list[str] = []
            closed: Counter[str] = Counter()
            errors: list[str] = []

            def on_result(result: Any) -> None:
                if result.action == "opened":
                    opened.append(result.symbol)
                elif result.action == "closed":
                    closed[result.close_reason] += 1

            btkit.listen_signal_live(on_result)
            btkit.listen_error(lambda event: errors.append(str(event)))

            marks: dict[int, int] = {}

            def before_minute(when: int) -> None:  # the fake's mark follows the replay
                marks[(when - T0) // MINUTE_MS] = len(fake.requests)
                budget_clock.minute((when - T0) // MINUTE_MS)
                index = (when - T0) // MINUTE_MS - 1
                for s in symbols:
                    fake.set_price(f"{close_of(base_price(s), index):.3f}", s)

            clock = SteppedReplayClock(T0, end=T0 + LAST_MINUTE * MINUTE_MS, before_minute=before_minute)
            launched = time.perf_counter()
            handles = [
                btkit.Live.background(s, strategy=STRATEGY, exchange="binance-futures", clock=clock)
                for s in symbols
            ]
            for h in handles:
                if not h.join(600):
                    raise RuntimeError(f"{h.instance.symbol} did not finish within 600 s")
            btkit.Live.shutdown()
            errors.extend(f"{h.instance.symbol}: {h.error}" for h in handles if h.error is not None)
            first = min(clock.handed.values())
            placed = Counter(o.client_id for o in fake.orders_log)
            in_minute = {
                m: marks.get(m + 1, len(fake.requests)) - start for m, start in marks.items()
            }  # requests per minute
            k = entering if entering is not None else n
            entry_calls = (in_minute.get(OPEN_MINUTE, 0) - in_minute.get(0, 0)) / max(1, k)
            return LoadResult(
                entering=entering if entering is not None else n,
                symbols=n,
                mode=mode,
                rate_limit_ms=rate_limit_ms,
                startup_s=first - launched,
                minutes={(m - T0) // MINUTE_MS: s for m, s in clock.durations().items()},
                opened=len(opened),
                closed=closed,
                errors=tuple(errors),
                requests=len(fake.requests),
                placements=sum(placed.values()),
                max_per_client_id=max(placed.values(), default=0),
                positions_left=sum(1 for s in symbols if fake.position(s) != 0),
                wall_s=time.perf_counter() - started,
                entry_calls=entry_calls,
                refused=(fake.limits.refused_429, fake.limits.refused_418),
                peak_weight=fake.limits.peak_weight,
                peak_orders_10s=fake.limits.peak_orders_10s,
                breakdown=weight_by_minute(fake.requests, marks),
            )
        finally:
            pacing.set_default_limiter("binance")  # the process default again
            os.chdir(saved_cwd)
            for key, value in saved_env.items():
                if value is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = value


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--symbols", default="50,200", help="comma-separated symbol counts (default 50,200)")
    parser.add_argument("--modes", default="before,after", help="before, after or both (default both)")
    parser.add_argument("--rate-limit-ms", type=int, help="ccxt's rateLimit for the broker in 'before' mode")
    parser.add_argument("--entering", type=int, help="only the first K symbols enter (default: all)")
    parser.add_argument("--breakdown", action="store_true", help="print the weight per endpoint and minute")
    args = parser.parse_args()
    from btkit.testing import reset_btkit

    for n in (int(x) for x in args.symbols.split(",")):
        for mode in args.modes.split(","):
            if mode not in MODES:
                parser.error(f"unknown mode {mode!r}; use before and/or after")
            reset_btkit()
            cpu = time.process_time()
            with tempfile.TemporaryDirectory() as tmp:
                result = run_load(
                    n, Path(tmp), mode=mode, rate_limit_ms=args.rate_limit_ms, entering=args.entering
                )
            reset_btkit()
            print(f"{result.line()}; CPU {time.process_time() - cpu:.1f}s", flush=True)
            for line in result.errors[:5]:
                print(f"  error: {line}")
            if args.breakdown:
                for minute, counter in sorted(result.breakdown.items()):
                    top = ", ".join(f"{k} {v}" for k, v in counter.most_common(8))
                    print(f"  m{minute} weight {sum(counter.values())}: {top}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
