"""The live process the crash tests kill and restart: the e2e strategy on BTCUSDT, exchange and broker
``binance-futures`` against the fake server, file persistence in ``--dump-dir``.

The working directory must hold the ``btkit.toml`` that points ``[exchange.binance-futures]`` at the fake
(the exchange reads it at first use); the keys come from the environment. The replay clock is stepped by
the test: before each minute the child prints ``minute <ms>`` and waits for ``go`` on stdin, so the test
can move the fake's mark price first (and kill the child at a point it chooses). Other lines on stdout:
``expected <json>`` (what the engine told the broker it holds), ``event <action> <reason>`` per opened /
closed result, ``error <text>`` per error event, ``done <error or ->`` at the end.

Usage: ``python live_child.py --dump-dir D --fake-url URL [--request-timeout-ms N] [--report-dir R]``
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from e2e_helpers import (
    LAST_MINUTE,
    STRATEGY,
    SYMBOL,
    T0,
    SteppedReplayClock,
    broker_options,
    get_signal,
    minute,
)

_out = threading.Lock()


def say(line: str) -> None:
    with _out:
        sys.stdout.write(line + "\n")
        sys.stdout.flush()


def wait_for_go(when: int) -> None:
    say(f"minute {when}")
    answer = sys.stdin.readline().strip()
    if answer != "go":
        raise SystemExit(f"live_child: expected 'go' for minute {when}, got {answer!r}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dump-dir", required=True)
    parser.add_argument("--fake-url", required=True)
    parser.add_argument("--request-timeout-ms", type=int, default=5000)
    parser.add_argument("--report-dir")
    args = parser.parse_args()

    import btkit
    from btkit.engine import live

    live.SETTINGS.broker = "binance-futures"
    live.SETTINGS.broker_options = broker_options(args.fake_url, request_timeout_ms=args.request_timeout_ms)
    btkit.use_persistence("file", root=args.dump_dir)
    btkit.add_strategy(STRATEGY, get_signal, interval="1m")

    def on_result(result: Any) -> None:
        if result.action in ("opened", "closed", "cancelled"):
            say(f"event {result.action} {getattr(result, 'close_reason', None) or '-'} {result.timestamp}")

    btkit.listen_signal_live(on_result)
    btkit.listen_error(lambda event: say(f"error {event}"))
    clock = SteppedReplayClock(T0, end=minute(LAST_MINUTE), before_minute=wait_for_go)
    handle = btkit.Live.background(SYMBOL, strategy=STRATEGY, exchange="binance-futures", clock=clock)
    say(f"expected {json.dumps(handle.session.broker.config.expected_positions)}")
    handle.join()
    if args.report_dir:
        btkit.Live.dump(SYMBOL, strategy=STRATEGY, exchange="binance-futures", path=args.report_dir)
    btkit.Live.shutdown()
    say(f"done {handle.error or '-'}")
    return 0 if handle.error is None else 1


if __name__ == "__main__":
    sys.exit(main())
