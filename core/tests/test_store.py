"""The local candle store: write/read/coverage, resumable download, JSON import, store_exchange."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest

from btkit import candles as ca
from btkit.components import ExchangeSpec
from btkit.context import iso
from btkit.defaults.sim_exchange import SimExchange
from btkit.errors import CandleDataError
from btkit.store import CandleStore, DownloadProgress, download, download_async, import_file, store_exchange

SHARED = Path(__file__).resolve().parents[3] / "shared" / "data"
M = 60_000
JAN = datetime(2024, 1, 1, tzinfo=UTC)
T0 = int(JAN.timestamp() * 1000)
DAY = 86_400_000
SIM = SimExchange()


def sim_rows(start: int, n: int, symbol: str = "BTCUSDT") -> np.ndarray:
    return np.array(SIM.minutes(symbol, start, n))


class ArrayExchange:
    """A real exchange function over an in-memory array (what a plugin's get_candles does), counting calls.

    ``page`` caps how many candles one call returns (real exchanges have page sizes).
    """

    def __init__(self, arr: np.ndarray, *, page: int = 10_000, fail_first: int = 0) -> None:
        self.arr = arr
        self.page = page
        self.calls: list[tuple[int, int]] = []
        self.fail_first = fail_first

    def get_candles(self, symbol: str, interval: str, since: datetime, limit: int) -> list[list[float]]:
        start = int(since.timestamp() * 1000)
        self.calls.append((start, limit))
        if len(self.calls) <= self.fail_first:
            raise ConnectionError("exchange unavailable")
        step = {"1m": M, "15m": 15 * M}[interval]
        ts = self.arr[:, 0]
        sel = self.arr[(ts >= start) & (ts < start + limit * step)][: min(limit, self.page)]
        return sel.tolist()

    def spec(self, name: str = "arr") -> ExchangeSpec:
        return ExchangeSpec(name=name, get_candles=self.get_candles)


def far_future() -> float:
    return (JAN + timedelta(days=3650)).timestamp()


# ---------------------------------------------------------------- CandleStore
def test_write_read_roundtrip_and_layout(tmp_path: Path) -> None:
    store = CandleStore(tmp_path)
    arr = sim_rows(T0, 100)
    assert store.write("binance", "BTC/USDT:USDT", "1m", arr) == 100
    path = tmp_path / "binance" / "BTC%2FUSDT%3AUSDT" / "1m.npy"
    assert path.is_file()
    np.testing.assert_array_equal(np.load(path), arr)
    np.testing.assert_array_equal(store.read("binance", "BTC/USDT:USDT", "1m"), arr)
    assert store.entries() == [("binance", "BTC/USDT:USDT", "1m")]
    assert not [p for p in path.parent.iterdir() if p.suffix == ".tmp"]


def test_read_range_is_half_open(tmp_path: Path) -> None:
    store = CandleStore(tmp_path)
    store.write("x", "S", "1m", sim_rows(T0, 100))
    part = store.read("x", "S", "1m", T0 + 10 * M, T0 + 20 * M)
    assert list(part[:, 0]) == [T0 + k * M for k in range(10, 20)]
    assert len(store.read("x", "S", "1m", start_ms=T0 + 95 * M)) == 5
    assert len(store.read("x", "S", "1m", end_ms=T0 + 5 * M)) == 5
    assert store.read("x", "NOPE", "1m").shape == (0, 6)


def test_write_merges_incrementally_sorted_and_deduplicated(tmp_path: Path) -> None:
    store = CandleStore(tmp_path)
    arr = sim_rows(T0, 300)
    assert store.write("x", "S", "1m", arr[200:]) == 100
    assert store.write("x", "S", "1m", arr[:150]) == 150
    assert store.write("x", "S", "1m", arr[100:250]) == 50  # overlaps both sides, fills the hole
    assert store.write("x", "S", "1m", arr[::-1]) == 0  # unsorted input to write is merged, not rejected
    np.testing.assert_array_equal(store.read("x", "S", "1m"), arr)


def test_conflicting_write_changes_nothing_unless_replace(tmp_path: Path) -> None:
    store = CandleStore(tmp_path)
    arr = sim_rows(T0, 10)
    store.write("x", "S", "1m", arr)
    changed = arr[3:5].copy()
    changed[:, ca.VOLUME] += 1
    with pytest.raises(CandleDataError, match=rf"conflicting duplicate.*{T0 + 3 * M}"):
        store.write("x", "S", "1m", changed)
    np.testing.assert_array_equal(store.read("x", "S", "1m"), arr)
    store.write("x", "S", "1m", changed, on_conflict="replace")
    np.testing.assert_array_equal(store.read("x", "S", "1m")[3:5], changed)


def test_write_validates_and_checks_the_grid(tmp_path: Path) -> None:
    store = CandleStore(tmp_path)
    bad = sim_rows(T0, 10)
    bad[4, ca.LOW] = -1
    with pytest.raises(CandleDataError, match="price <= 0"):
        store.write("x", "S", "1m", bad)
    with pytest.raises(CandleDataError, match="15-minute grid"):
        store.write("x", "S", "15m", sim_rows(T0 + M, 3))
    assert store.read("x", "S", "1m").shape == (0, 6)


def test_coverage_reports_gaps(tmp_path: Path) -> None:
    store = CandleStore(tmp_path)
    assert store.coverage("x", "S", "1m") == (None, None, [])
    arr = np.delete(sim_rows(T0, 50), [10, 11, 30], axis=0)
    store.write("x", "S", "1m", arr)
    assert store.coverage("x", "S", "1m") == (T0, T0 + 49 * M, [(T0 + 10 * M, 2), (T0 + 30 * M, 1)])


def test_a_second_store_object_sees_writes(tmp_path: Path) -> None:
    a, b = CandleStore(tmp_path), CandleStore(tmp_path)
    a.write("x", "S", "1m", sim_rows(T0, 5))
    assert len(b.read("x", "S", "1m")) == 5
    a.write("x", "S", "1m", sim_rows(T0 + 5 * M, 5))
    assert len(b.read("x", "S", "1m")) == 10  # cache invalidated by the file change


def test_unreadable_file_is_a_clear_error(tmp_path: Path) -> None:
    store = CandleStore(tmp_path)
    path = store.path("x", "S", "1m")
    path.parent.mkdir(parents=True)
    path.write_bytes(b"not numpy")
    with pytest.raises(CandleDataError, match=r"unreadable.*download again"):
        store.read("x", "S", "1m")


# ---------------------------------------------------------------- download
def test_download_from_sim_matches_sim_and_resumes(tmp_path: Path) -> None:
    store = CandleStore(tmp_path)
    src = ArrayExchange(sim_rows(T0 - DAY, 4 * 1440), page=1000)
    progress: list[DownloadProgress] = []
    n = download(src.spec(), "BTCUSDT", "1m", T0, T0 + 2 * DAY, store=store, on_progress=progress.append)
    assert n == 2880
    np.testing.assert_array_equal(store.read("arr", "BTCUSDT", "1m"), sim_rows(T0, 2880))
    assert all(limit <= 1000 for _, limit in src.calls)
    last = progress[-1]
    assert last.finished and last.gaps == () and last.done == last.total == 2880
    assert [p.done for p in progress] == sorted(p.done for p in progress)
    # resume: a wider range fetches only the missing day
    src.calls.clear()
    n = download(src.spec(), "BTCUSDT", "1m", T0 - DAY // 2, T0 + 3 * DAY, store=store)
    assert n == 720 + 1440
    fetched = sorted(s for s, _ in src.calls)
    assert fetched[0] == T0 - DAY // 2 and all(s < T0 or s >= T0 + 2 * DAY for s in fetched)
    # nothing missing: no call at all
    src.calls.clear()
    assert download(src.spec(), "BTCUSDT", "1m", T0, T0 + 3 * DAY, store=store) == 0
    assert src.calls == []


def test_download_reports_exchange_gaps_and_never_fabricates(tmp_path: Path) -> None:
    store = CandleStore(tmp_path)
    full = sim_rows(T0, 3000)
    holed = np.delete(full, list(range(500, 508)) + list(range(999, 1003)) + [2999], axis=0)
    src = ArrayExchange(holed, page=1000)
    progress: list[DownloadProgress] = []
    n = download(src.spec(), "S", "1m", T0, T0 + 3000 * M, store=store, on_progress=progress.append)
    assert n == len(holed)
    np.testing.assert_array_equal(store.read("arr", "S", "1m"), holed)
    assert progress[-1].gaps == ((T0 + 500 * M, 8), (T0 + 999 * M, 4), (T0 + 2999 * M, 1))
    assert store.coverage("arr", "S", "1m")[2] == [(T0 + 500 * M, 8), (T0 + 999 * M, 4)]


def test_download_never_stores_unfinished_candles(tmp_path: Path) -> None:
    store = CandleStore(tmp_path)
    now = JAN + timedelta(minutes=90, seconds=30)
    src = ArrayExchange(sim_rows(T0, 200))  # the array has "future" rows the exchange would show as forming
    n = download(src.spec(), "S", "1m", T0, T0 + 200 * M, store=store, clock=now.timestamp)
    assert n == 90 and store.coverage("arr", "S", "1m")[1] == T0 + 89 * M


def test_download_async_exchange_and_async_progress(tmp_path: Path) -> None:
    store = CandleStore(tmp_path)
    rows = sim_rows(T0, 2500)
    seen: list[int] = []

    async def get_candles(symbol: str, interval: str, since: datetime, limit: int) -> np.ndarray:
        await asyncio.sleep(0)
        start = int(since.timestamp() * 1000)
        return rows[(rows[:, 0] >= start) & (rows[:, 0] < start + limit * M)]

    async def on_progress(p: DownloadProgress) -> None:
        seen.append(p.done)

    closed: list[bool] = []

    async def close() -> None:
        closed.append(True)

    spec = ExchangeSpec(name="aio", get_candles=get_candles, close=close)
    n = download(
        spec, "S", "1m", T0, T0 + 2500 * M, store=store, on_progress=on_progress, close_exchange=True
    )
    assert n == 2500 and seen[-1] == 2500 and closed == [True]

    async def inside_loop() -> int:
        with pytest.raises(RuntimeError, match="download_async"):
            download(spec, "S", "1m", T0, T0 + M, store=store)
        return await download_async(spec, "S2", "1m", T0, T0 + 10 * M, store=store)

    assert asyncio.run(inside_loop()) == 10


def test_download_validates_every_batch_and_keeps_what_was_good(tmp_path: Path) -> None:
    store = CandleStore(tmp_path)
    rows = sim_rows(T0, 3000)
    rows[2500, ca.CLOSE] = float("nan")
    src = ArrayExchange(rows, page=1000)
    with pytest.raises(CandleDataError, match=rf"bad candle at {T0 + 2500 * M}.*non-finite"):
        download(src.spec(), "S", "1m", T0, T0 + 3000 * M, store=store, batch=1000)
    # the two good batches before the bad one were flushed: a re-run resumes from there
    assert store.coverage("arr", "S", "1m")[:2] == (T0, T0 + 1999 * M)


def test_download_rejects_unsorted_batches(tmp_path: Path) -> None:
    rows = sim_rows(T0, 10)

    def get_candles(symbol: str, interval: str, since: datetime, limit: int) -> np.ndarray:
        return rows[::-1]

    with pytest.raises(CandleDataError, match="unsorted"):
        download(
            ExchangeSpec(name="u", get_candles=get_candles),
            "S",
            "1m",
            T0,
            T0 + 10 * M,
            store=CandleStore(tmp_path),
        )


def test_download_retries_then_fails_loudly(tmp_path: Path) -> None:
    store = CandleStore(tmp_path)
    flaky = ArrayExchange(sim_rows(T0, 100), fail_first=2)
    quick = {"store": store, "retries": 3, "retry_delay_ms": 0}
    assert download(flaky.spec(), "S", "1m", T0, T0 + 100 * M, **quick) == 100
    dead = ArrayExchange(sim_rows(T0, 100), fail_first=99)
    with pytest.raises(CandleDataError, match=r"failed 3 times.*ConnectionError"):
        download(dead.spec("dead"), "S", "1m", T0, T0 + 100 * M, **quick)
    assert len(dead.calls) == 3


def test_download_through_the_sim_exchange_spec(tmp_path: Path) -> None:
    from btkit.defaults.sim_exchange import make_sim_exchange

    store = CandleStore(tmp_path)
    spec = make_sim_exchange(name="sim")
    assert download(spec, "ETHUSDT", "15m", T0, T0 + DAY, store=store) == 96
    np.testing.assert_array_equal(
        store.read("sim", "ETHUSDT", "15m"), SIM.get_candles("ETHUSDT", "15m", JAN, 96)
    )


# ---------------------------------------------------------------- import
def test_import_both_json_shapes(tmp_path: Path) -> None:
    store = CandleStore(tmp_path / "data")
    rows = sim_rows(T0, 20)
    objs = [dict(zip(ca.COLUMNS, r, strict=True)) for r in rows[:10].tolist()]
    (tmp_path / "objs.json").write_text(json.dumps(objs))
    (tmp_path / "arrs.json").write_text(json.dumps(rows[8:].tolist()))
    assert import_file(tmp_path / "objs.json", "ex", "S", "1m", store) == 10
    assert import_file(tmp_path / "arrs.json", "ex", "S", "1m", store) == 10  # 2 overlap, identical
    np.testing.assert_array_equal(store.read("ex", "S", "1m"), rows)


def test_import_rejects_unsorted_and_bad_files(tmp_path: Path) -> None:
    store = CandleStore(tmp_path / "data")
    (tmp_path / "u.json").write_text(json.dumps(sim_rows(T0, 5)[::-1].tolist()))
    with pytest.raises(CandleDataError, match=r"u\.json row 2: .* is earlier than row 1"):
        import_file(tmp_path / "u.json", "ex", "S", "1m", store)
    (tmp_path / "b.json").write_text("{not json")
    with pytest.raises(CandleDataError, match="not valid JSON"):
        import_file(tmp_path / "b.json", "ex", "S", "1m", store)
    with pytest.raises(CandleDataError, match="cannot read"):
        import_file(tmp_path / "missing.json", "ex", "S", "1m", store)


@pytest.mark.skipif(not SHARED.is_dir(), reason="needs ../shared/data (real candle samples, not in the repo)")
def test_import_real_samples(tmp_path: Path) -> None:
    store = CandleStore(tmp_path)
    assert import_file(SHARED / "binance-btcusdt-1m-sample.json", "binance", "BTCUSDT", "1m", store) == 1980
    first, last, gaps = store.coverage("binance", "BTCUSDT", "1m")
    assert gaps == [] and (last - first) // M == 1979
    assert import_file(SHARED / "gapped-1m-sample.json", "old", "X/BTC", "1m", store) == 13681
    assert len(store.coverage("old", "X/BTC", "1m")[2]) == 538


# ---------------------------------------------------------------- store_exchange
@pytest.fixture
def filled_store(tmp_path: Path) -> CandleStore:
    store = CandleStore(tmp_path)
    store.write("sim", "BTCUSDT", "1m", sim_rows(T0, 2 * 1440))
    return store


def test_store_exchange_serves_what_the_exchange_served(filled_store: CandleStore) -> None:
    ex = store_exchange("sim", filled_store.root)
    assert ex.name == "sim"
    np.testing.assert_array_equal(
        ex.get_candles("BTCUSDT", "1m", JAN + timedelta(hours=3), 500),
        SIM.get_candles("BTCUSDT", "1m", JAN + timedelta(hours=3), 500),
    )
    # 15m is not stored: aggregated from 1m, identical to the exchange's own 15m candles
    np.testing.assert_array_equal(
        ex.get_candles("BTCUSDT", "15m", JAN + timedelta(hours=5), 31),
        SIM.get_candles("BTCUSDT", "15m", JAN + timedelta(hours=5), 31),
    )


def test_store_exchange_prefers_a_stored_interval(filled_store: CandleStore) -> None:
    hourly = SIM.get_candles("BTCUSDT", "1h", JAN, 48)
    filled_store.write("sim", "BTCUSDT", "1h", hourly)
    ex = store_exchange("sim", store=filled_store, name="local")
    assert ex.name == "local"
    np.testing.assert_array_equal(ex.get_candles("BTCUSDT", "1h", JAN, 48), hourly)


def test_store_exchange_cuts_at_the_end_of_stored_data(filled_store: CandleStore) -> None:
    ex = store_exchange("sim", store=filled_store)
    tail = ex.get_candles("BTCUSDT", "1m", JAN + timedelta(days=2) - timedelta(minutes=10), 100)
    assert len(tail) == 10
    # past the end of the stored data: nothing more (like an exchange at "now"); the engine then reports
    # insufficient data only if it really needed those candles
    assert len(ex.get_candles("BTCUSDT", "1m", JAN + timedelta(days=3), 5)) == 0
    with pytest.raises(CandleDataError, match="has no 1m candles for NOPE"):
        ex.get_candles("NOPE", "1m", JAN, 5)


def test_store_exchange_rejects_gaps_naming_the_first_missing_candle(tmp_path: Path) -> None:
    store = CandleStore(tmp_path)
    rows = np.delete(sim_rows(T0, 100), [40, 41, 70], axis=0)
    store.write("ex", "S", "1m", rows)
    ex = store_exchange("ex", store=store)
    hint = r"btkit data download.*gaps='fill'"
    with pytest.raises(CandleDataError, match=rf"missing candle at {iso(T0 + 40 * M)}.*{hint}"):
        ex.get_candles("S", "1m", JAN + timedelta(minutes=30), 50)
    with pytest.raises(CandleDataError, match=rf"missing candle at {iso(T0 - 5 * M)}"):
        ex.get_candles("S", "1m", JAN - timedelta(minutes=5), 10)  # before the first stored candle
    with pytest.raises(CandleDataError, match=rf"missing candle at {iso(T0 + 40 * M)}"):
        ex.get_candles("S", "15m", JAN, 4)  # resampling never hides a hole either
    ok = ex.get_candles("S", "1m", JAN, 40)
    assert len(ok) == 40


def test_store_exchange_fill_is_explicit_forward_fill(tmp_path: Path) -> None:
    store = CandleStore(tmp_path)
    full = sim_rows(T0, 100)
    rows = np.delete(full, [40, 41, 70], axis=0)
    store.write("ex", "S", "1m", rows)
    ex = store_exchange("ex", store=store, gaps="fill")
    got = ex.get_candles("S", "1m", JAN + timedelta(minutes=40), 40)  # starts inside a hole
    assert list(got[:, 0]) == [T0 + k * M for k in range(40, 80)]
    for k in (40, 41):
        assert list(got[k - 40, 1:]) == [full[39, ca.CLOSE]] * 4 + [0.0]
    assert list(got[30, 1:]) == [full[69, ca.CLOSE]] * 4 + [0.0]
    np.testing.assert_array_equal(got[2:30], full[42:70])


def test_store_exchange_without_data_says_how_to_get_it(tmp_path: Path) -> None:
    ex = store_exchange("binance", tmp_path)
    with pytest.raises(CandleDataError, match="btkit data download"):
        ex.get_candles("BTCUSDT", "1m", JAN, 5)
    with pytest.raises(CandleDataError, match="gaps must be"):
        store_exchange("binance", tmp_path, gaps="ignore")  # type: ignore[arg-type]
