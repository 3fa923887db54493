"""From the command line through real ccxt against the fake server: ``btkit data download`` fills the local
candle store, then ``btkit backtest --offline`` runs on the stored candles with the exchange gone."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np

from btkit.store import CandleStore
from btkit_binance_futures.testing import FakeBinanceFutures

DAY_MS = 86_400_000
START_MS = 1_703_894_400_000  # 2023-12-30: the store needs warm-up candles before the backtest starts


def btkit(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("BTKIT", "BINANCE_"))}
    return subprocess.run(
        [sys.executable, "-m", "btkit.cli", *args, "--config", "btkit.toml"],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_download_into_the_store_then_backtest_offline(tmp_path: Path) -> None:
    with FakeBinanceFutures(kline_start_ms=START_MS, kline_end_ms=START_MS + 14 * DAY_MS) as fake:
        (tmp_path / "btkit.toml").write_text(f'[exchange.binance-futures]\napi_base_url = "{fake.url}"\n')
        got = btkit(tmp_path, "data", "download", "--exchange", "binance-futures", "--symbol", "BTCUSDT")
        assert got.returncode == 2 and "--timerange" in got.stderr  # a required option, named
        got = btkit(
            tmp_path, "data", "download", "--exchange", "binance-futures", "--symbol", "BTCUSDT",
            "--timerange", "20231231-20240112",
        )  # fmt: skip
        assert got.returncode == 0, got.stderr
        assert got.stderr == ""  # the ccxt client was closed: no "Unclosed connector" at exit
        klines = fake.requests_to("/fapi/v1/klines")
        again = btkit(
            tmp_path, "data", "download", "--exchange", "binance-futures", "--symbol", "BTCUSDT",
            "--timerange", "20231231-20240112",
        )  # fmt: skip
        assert again.returncode == 0 and "BTCUSDT: 0 new candles" in again.stdout, again.stdout
        assert len(fake.requests_to("/fapi/v1/klines")) == len(klines)  # resumable: nothing fetched twice
    stored = CandleStore(tmp_path / "data").read("binance-futures", "BTCUSDT", "1m")
    assert len(stored) == 12 * 1440
    assert np.all(np.diff(stored[:, 0]) == 60_000)

    done = btkit(
        tmp_path,
        "backtest",
        "--offline",
        "--exchange",
        "binance-futures",
        "--symbol",
        "BTCUSDT",
        "--timerange",
        "20240101-20240110",
    )  # fmt: skip  (the fake server is stopped: every candle comes from the store)
    assert done.returncode == 0, done.stderr
    report = next(
        Path(line.split("report: ", 1)[1]) for line in done.stdout.splitlines() if "report: " in line
    )
    assert report.name.startswith("BTCUSDT_smacross_store-binance-futures_20240101-20240110"), report
    assert (tmp_path / report).read_text(encoding="utf-8").startswith("# Backtest BTCUSDT")
