"""Load, spot twin of live_binance_load.py: N symbols live in one process with ``--broker ccxt:binance``
against the fake spot exchange (``btkit_ccxt.testing.FakeSpotExchange``), ccxt's rate limiter on.

Every symbol runs one strategy with the ``ccxt:binance`` exchange and the spot broker on one replay clock,
minute by minute (6 minutes): all N enter at minute 1 (a limit buy at the engine's price, then a native
stop-loss sell on the exchange), are checked by the broker every minute while open, and are sold by the
engine at take-profit (emulated) after the spike candle of minute 3; minutes 0 and 5 are idle. Reported per
minute: the time from handing the minute out to the last symbol finishing it (broker calls included), and
the REST calls per entry (requests to the fake during the entry minute / N, candles included).

The fake enforces Binance spot's budgets (6000 request weight per minute, 50 orders per 10 s: 429, then
418) on live time (``BudgetClock``: each replay minute starts 60 s after the previous one). Modes, in the
same run: ``before`` — ccxt's own limiter on every client (``rate_limiter = "ccxt"``); ``after`` — btkit's
process-wide weight limiter (the default). ``--entering K``: only the first K symbols enter.

Usage: ``uv run python benchmarks/live_spot_load.py [--symbols 50,200] [--modes before,after] [--entering K]``
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

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests" / "e2e"))

from e2e_helpers import SteppedReplayClock
from live_binance_load import (
    ENTERING,
    LAST_MINUTE,
    MINUTE_MS,
    OPEN_MINUTE,
    STRATEGY,
    T0,
    BudgetClock,
    base_price,
    close_of,
    get_signal,
    rows,
)


def write_toml(directory: Path, url: str) -> None:
    if not url.startswith("http://127.0.0.1:"):
        raise ValueError(f"refusing to point a benchmark at {url}: only the local fake is allowed")
    (directory / "btkit.toml").write_text(
        '[exchange."ccxt:binance"]\n'
        f'api_base_url = "{url}"\n'
        "timeout_ms = 5000\n"
        'options = { fetchMarkets = { types = ["spot"] }, fetchMargins = false }\n',
        encoding="utf-8",
    )


def run_load(
    n: int,
    workdir: Path,
    *,
    mode: str = "after",
    rate_limit_ms: int | None = None,
    entering: int | None = None,
) -> str:
    import btkit
    from btkit.engine import live
    from btkit_ccxt import pacing
    from btkit_ccxt.limits import SPOT, ServerLimits, spot_cost
    from btkit_ccxt.testing import FakeSpotExchange

    ENTERING[0] = entering
    pacing.reset_pacers()
    pacing.set_default_limiter("ccxt" if mode == "before" else "binance")
    budget_clock = BudgetClock()

    saved_env = {k: os.environ.get(k) for k in ("BINANCE_API_KEY", "BINANCE_API_SECRET")}
    saved_cwd = Path.cwd()
    with FakeSpotExchange(
        symbols=[], extra_symbols=n, balances={"USDT": "1000000"}, fee_rate="0.001", enforce_limits=True
    ) as fake:
        fake.limits = ServerLimits(SPOT, spot_cost, clock=budget_clock)
        host = fake.url.split("://", 1)[1]
        pacing.configure("binance", host, pacing.Pacer(SPOT, spot_cost, clock=budget_clock))
        symbols = list(fake.symbols)
        for s in symbols:
            fake.set_klines(s, "1m", rows(base_price(s)))
        os.environ["BINANCE_API_KEY"], os.environ["BINANCE_API_SECRET"] = fake.api_key, fake.api_secret
        try:
            os.chdir(workdir)
            write_toml(workdir, fake.url)
            live.SETTINGS.broker = "ccxt:binance"
            options: dict[str, Any] = {
                "api_base_url": fake.url,
                "entry_timeout_seconds": 5.0,
                "poll_interval_seconds": 0.05,
                "retry_delay_seconds": 0.02,
                "request_timeout_ms": 5000,
                "rate_limiter": "ccxt" if mode == "before" else "binance",
            }
            if rate_limit_ms:
                options["rate_limit_ms"] = rate_limit_ms
            live.SETTINGS.broker_options = options
            btkit.use_persistence("file", root=str(workdir / "dump"))
            btkit.add_strategy(STRATEGY, get_signal, interval="1m")
            opened: list[str] = []
            closed: Counter[str] = Counter()
            errors: list[str] = []
            btkit.listen_signal_live(
                lambda r: (
                    opened.append(r.symbol)
                    if r.action == "opened"
                    else (closed.update([r.close_reason]) if r.action == "closed" else None)
                )
            )
            btkit.listen_error(lambda event: errors.append(str(event)))
            marks: dict[int, int] = {}

            def before_minute(when: int) -> None:
                marks[(when - T0) // MINUTE_MS] = len(fake.requests)
                budget_clock.minute((when - T0) // MINUTE_MS)
                index = (when - T0) // MINUTE_MS - 1
                for s in symbols:
                    fake.set_price(f"{close_of(base_price(s), index):.3f}", s)

            clock = SteppedReplayClock(T0, end=T0 + LAST_MINUTE * MINUTE_MS, before_minute=before_minute)
            handles = [
                btkit.Live.background(s, strategy=STRATEGY, exchange="ccxt:binance", clock=clock)
                for s in symbols
            ]
            for h in handles:
                if not h.join(600):
                    raise RuntimeError(f"{h.instance.symbol} did not finish within 600 s")
            btkit.Live.shutdown()
            errors.extend(f"{h.instance.symbol}: {h.error}" for h in handles if h.error is not None)
            per_minute = {(m - T0) // MINUTE_MS: s for m, s in clock.durations().items()}
            per = sorted(per_minute.values())
            p99 = per[min(len(per) - 1, round(0.99 * (len(per) - 1)))]
            k = entering if entering is not None else n
            entry_minute = marks.get(OPEN_MINUTE + 1, len(fake.requests)) - marks.get(OPEN_MINUTE, 0)
            entry_calls = (entry_minute - (n - k)) / max(1, k)  # the others' candle reads taken out
            cells = " ".join(f"m{m}={s:.2f}" for m, s in sorted(per_minute.items()))
            placed = Counter(fake.placed)
            return (
                f"spot N={n:<3} entering {k:<3} {mode:<6}: per minute p50 {statistics.median(per):.2f}s p99 {p99:.2f}s "
                f"max {max(per):.2f}s [{cells}]; REST calls per entry {entry_calls:.1f} (candles included); "
                f"opened {len(opened)}, closed {dict(closed)}; {len(fake.requests)} requests, "
                f"{sum(placed.values())} orders (max {max(placed.values(), default=0)} per client id); "
                f"429s {fake.limits.refused_429}, 418s {fake.limits.refused_418} (peak weight "
                f"{fake.limits.peak_weight}/min, orders {fake.limits.peak_orders_10s}/10s); "
                f"errors {len(errors)}" + "".join(f"\n  error: {e}" for e in errors[:5])
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
    parser.add_argument("--entering", type=int, help="only the first K symbols enter (default: all)")
    parser.add_argument("--rate-limit-ms", type=int, help="ccxt's rateLimit for the broker in 'before' mode")
    args = parser.parse_args()
    from btkit.testing import reset_btkit

    for n in (int(x) for x in args.symbols.split(",")):
        for mode in args.modes.split(","):
            if mode not in ("before", "after"):
                parser.error(f"unknown mode {mode!r}; use before and/or after")
            reset_btkit()
            cpu = time.process_time()
            with tempfile.TemporaryDirectory() as tmp:
                line = run_load(
                    n, Path(tmp), mode=mode, rate_limit_ms=args.rate_limit_ms, entering=args.entering
                )
            reset_btkit()
            print(f"{line}; CPU {time.process_time() - cpu:.1f}s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
