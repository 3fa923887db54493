"""The live process the wallet crash test kills: a sized paper replay (``percent:30`` of a 1,000 wallet)
of the crash-loop strategy over three sim symbols, file persistence in ``argv[1]``.

Usage: ``python wallet_child.py DUMP_DIR START_MS MINUTES [BALANCE]``.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "live"))

import crash_child

import btkit
from btkit.engine import live

SIZING = "percent:30"
BALANCE = 1_000.0


def main() -> None:
    dump, start, minutes = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    balance = float(sys.argv[4]) if len(sys.argv) > 4 else BALANCE
    btkit.set_config(**crash_child.ENGINE_CONFIG)
    btkit.set_wallet(balance=balance, sizing=SIZING)
    btkit.use_persistence("file", root=dump)
    btkit.add_strategy(crash_child.STRATEGY, crash_child.get_signal, interval="1m")
    clock = btkit.ReplayClock(start, end=start + (minutes - 1) * 60_000)
    handles = [
        btkit.Live.background(s, strategy=crash_child.STRATEGY, exchange="sim", clock=clock)
        for s in crash_child.SYMBOLS
    ]
    for h in handles:
        h.join()
        if h.error is not None:
            raise h.error
    live.Live.shutdown()


if __name__ == "__main__":
    main()
