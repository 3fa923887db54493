"""The simulated exchange ``sim``: deterministic, seeded, offline candles for demos, tests and benchmarks.

Design (random access: a candle depends only on ``(seed, symbol, timestamp)``, never on what was asked
before):

- **Daily anchors.** For each symbol one RNG (seeded from the exchange seed and a SHA-256 of the symbol
  name) draws, once, a mean-reverting walk of daily log-prices ``a[d]`` over a fixed range of days
  (``EPOCH`` … ``EPOCH + RANGE_DAYS``) around a symbol-dependent base price, and a per-day volatility factor.
- **Intraday bridge.** Day ``d`` is generated from its own RNG seeded with ``(seed, symbol, d)``: a
  Brownian bridge of 1-minute log-price steps from ``a[d]`` to ``a[d+1]`` (volatility ≈ 0.07 %/min scaled by
  the day's factor and a UTC session profile). Minute ``i`` opens at point ``i`` and closes at point ``i+1``
  of the path, so a day's last close is exactly the next day's first open.
- **Wicks and volume.** Highs/lows extend beyond the body by exponentially distributed wicks; volume is
  log-normal, larger in the busy session and on large moves.
- **Higher intervals** are exact aggregates of the 1-minute candles (:func:`btkit.candles.resample`); every
  interval divides a day, so no bucket spans two generated days.

Prices are rounded to a symbol tick. Candles that have not finished by "now" are never returned: a window
that runs past now is cut at the last finished candle, and a window with no finished candle (or starting
before ``EPOCH``) raises :class:`btkit.errors.CandleDataError`.
"""

from __future__ import annotations

import hashlib
import math
import time
from collections.abc import Callable
from datetime import UTC, datetime
from functools import lru_cache

import numpy as np

from btkit.candles import CLOSE, HIGH, LOW, OPEN, TS, VOLUME, empty, resample
from btkit.components import INTERVAL_MS, ExchangeSpec, interval_ms
from btkit.errors import CandleDataError
from btkit.hookspecs import hookimpl

__all__ = [
    "DEFAULT_SEED",
    "EPOCH",
    "SYMBOLS",
    "SimExchange",
    "btkit_exchanges",
    "check_symbols",
    "make_sim_exchange",
]

DAY_MS = 86_400_000
MINUTE_MS = 60_000
MINUTES_PER_DAY = 1440
EPOCH = datetime(2017, 1, 1, tzinfo=UTC)
EPOCH_MS = int(EPOCH.timestamp() * 1000)
RANGE_DAYS = 365 * 30 + 8  # through 2046
DEFAULT_SEED = 20240101

SIGMA_MINUTE = 0.0007  # ≈ 0.07 % per minute, like BTC 1m
ANCHOR_STATIONARY_STD = 0.45  # log-price std of the daily anchors around the base price
DAY_VOL_STD = 0.35  # log-std of the per-day volatility factor
DAY_VOL_PERSISTENCE = 0.9  # AR(1) persistence of the per-day volatility (volatility clusters)
WICK_SCALE = 0.55  # mean wick beyond the body, in units of the minute's sigma


# ---------------------------------------------------------------- per-symbol constants
def _symbol_hash(symbol: str) -> int:
    """A stable 64-bit hash of the symbol name (never Python's randomised ``hash()``)."""
    return int.from_bytes(hashlib.sha256(symbol.encode("utf-8")).digest()[:8], "big")


def _base_asset(symbol: str) -> str:
    return symbol.upper().replace("/", "").replace(":", "").replace("-", "").replace("_", "")


def base_price(symbol: str) -> float:
    """Where a symbol's price lives: BTC ≈ 40k, ETH ≈ 2.5k, any other symbol ≈ 1–100 (from its hash)."""
    asset = _base_asset(symbol)
    if asset.startswith(("BTC", "XBT")):
        return 40_000.0
    if asset.startswith("ETH"):
        return 2_500.0
    return float(10 ** ((_symbol_hash(symbol) % 10_000) / 5_000.0))  # 1 … 100


def _tick(symbol: str) -> float:
    return 10.0 ** (math.floor(math.log10(base_price(symbol))) - 6)


def _price_decimals(symbol: str) -> int:
    return max(0, 6 - math.floor(math.log10(base_price(symbol))))


def _quantity_decimals(symbol: str) -> int:
    return max(0, math.floor(math.log10(base_price(symbol))) - 1)


def _base_volume(symbol: str) -> float:
    """Mean 1-minute volume in base units: about $1M/min for BTC, $0.5M for ETH, $50k otherwise."""
    asset = _base_asset(symbol)
    if asset.startswith(("BTC", "XBT")):
        notional = 1_000_000.0
    elif asset.startswith("ETH"):
        notional = 500_000.0
    else:
        notional = 50_000.0
    return notional / base_price(symbol)


def _session_profile() -> np.ndarray:
    """Relative volatility by minute of the UTC day: busier around the US/EU overlap."""
    hours = (np.arange(MINUTES_PER_DAY) + 0.5) / 60.0
    prof = 0.8 + 0.6 * np.exp(-(((hours - 14.5) / 3.0) ** 2)) + 0.2 * np.exp(-(((hours - 2.0) / 2.5) ** 2))
    return prof / np.sqrt(np.mean(prof**2))  # unit mean variance


_PROFILE = _session_profile()
_PROFILE.setflags(write=False)
_T = np.arange(MINUTES_PER_DAY + 1, dtype=np.float64) / MINUTES_PER_DAY


@lru_cache(maxsize=64)
def _anchors(seed: int, symbol: str) -> tuple[np.ndarray, np.ndarray]:
    """Daily anchor log-prices (``RANGE_DAYS + 1``) and per-day volatility factors (``RANGE_DAYS``)."""
    h = _symbol_hash(symbol)
    rng = np.random.default_rng([seed & 0xFFFFFFFF, seed >> 32, h & 0xFFFFFFFF, h >> 32, 0xA11C])
    # per-day volatility factor: AR(1) in log space → volatility regimes
    eps = rng.standard_normal(RANGE_DAYS)
    logvol = np.empty(RANGE_DAYS)
    phi = DAY_VOL_PERSISTENCE
    innov = DAY_VOL_STD * math.sqrt(1 - phi * phi)
    x = eps[0] * DAY_VOL_STD
    for d in range(RANGE_DAYS):
        x = phi * x + innov * eps[d] if d else x
        logvol[d] = x
    dayvol = np.clip(np.exp(logvol - DAY_VOL_STD**2 / 2), 0.35, 3.5)
    # daily log-price: mean-reverting (Ornstein-Uhlenbeck) around log(base) with day σ = σ_min·√1440·vol
    sig_day = SIGMA_MINUTE * math.sqrt(MINUTES_PER_DAY) * dayvol
    theta = float(np.mean(sig_day**2)) / (2 * ANCHOR_STATIONARY_STD**2)
    z = rng.standard_normal(RANGE_DAYS)
    a = np.empty(RANGE_DAYS + 1)
    mu = math.log(base_price(symbol))
    cur = mu + ANCHOR_STATIONARY_STD * 0.5 * rng.standard_normal()
    a[0] = cur
    keep = 1.0 - theta
    for d in range(RANGE_DAYS):
        cur = mu + keep * (cur - mu) + sig_day[d] * z[d]
        a[d + 1] = cur
    a.setflags(write=False)
    dayvol.setflags(write=False)
    return a, dayvol


# 1024 days (~70 MB at most): a 20-symbol lockstep portfolio reads each symbol's recent days again while
# the others advance; with 512 it regenerated ~45 % more days than the same symbols run one by one.
@lru_cache(maxsize=1024)
def _day(seed: int, symbol: str, day: int) -> np.ndarray:
    """The 1440 one-minute candles of day ``day`` (days since EPOCH), as a read-only (1440, 6) array."""
    anchors, dayvol = _anchors(seed, symbol)
    h = _symbol_hash(symbol)
    rng = np.random.default_rng([seed & 0xFFFFFFFF, seed >> 32, h & 0xFFFFFFFF, h >> 32, day])
    vol = dayvol[day]
    sig = SIGMA_MINUTE * vol * _PROFILE
    # stochastic minute volatility (fat tails): σ_i · exp(N(0, 0.35) − 0.35²/2·…)
    sv = np.exp(0.35 * rng.standard_normal(MINUTES_PER_DAY) - 0.35**2)
    sig_i = sig * sv
    steps = rng.standard_normal(MINUTES_PER_DAY) * sig_i
    walk = np.empty(MINUTES_PER_DAY + 1)
    walk[0] = 0.0
    np.cumsum(steps, out=walk[1:])
    a0, a1 = anchors[day], anchors[day + 1]
    path = a0 + walk - _T * walk[-1] + _T * (a1 - a0)  # Brownian bridge a0 → a1
    prices = np.exp(path)
    o = prices[:-1]
    c = prices[1:]
    wick_up = rng.exponential(WICK_SCALE, MINUTES_PER_DAY) * sig_i
    wick_dn = rng.exponential(WICK_SCALE, MINUTES_PER_DAY) * sig_i
    hi = np.maximum(o, c) * np.exp(wick_up)
    lo = np.minimum(o, c) * np.exp(-wick_dn)
    move = np.abs(steps) / sig_i
    volume = (
        _base_volume(symbol)
        * vol
        * _PROFILE
        * rng.lognormal(-0.5 * 0.6**2, 0.6, MINUTES_PER_DAY)
        * (0.6 + 0.5 * move)
    )
    tick = _tick(symbol)
    out = np.empty((MINUTES_PER_DAY, 6))
    out[:, TS] = EPOCH_MS + day * DAY_MS + np.arange(MINUTES_PER_DAY, dtype=np.float64) * MINUTE_MS
    out[:, OPEN] = np.round(o / tick) * tick
    out[:, HIGH] = np.round(hi / tick) * tick
    out[:, LOW] = np.round(lo / tick) * tick
    out[:, CLOSE] = np.round(c / tick) * tick
    out[:, VOLUME] = np.round(volume, 5)
    out.setflags(write=False)
    return out


def _to_ms(since: datetime | int | float) -> int:
    if isinstance(since, datetime):
        if since.tzinfo is None:
            raise CandleDataError(f"sim: since={since!r} must be a timezone-aware datetime (UTC)")
        return round(since.timestamp() * 1000)
    return int(since)


#: The symbols ``sim`` offers by name (``btkit backtest --exchange sim`` refuses others). The Python API
#: serves any name (tests use made-up symbols); every name gets its own deterministic series.
_BASES = (
    "BTC", "ETH", "SOL", "BNB", "XRP", "ADA", "DOGE", "AVAX", "DOT", "LINK", "MATIC", "LTC", "TRX",
    "ATOM", "UNI", "ETC", "XLM", "NEAR", "FIL", "APT", "ARB", "OP", "INJ", "SUI", "SEI", "TIA", "AAVE",
    "MKR", "RUNE", "ALGO",
)
SYMBOLS = (*(f"{base}USDT" for base in _BASES), "BTCUSD", "ETHUSD", "ETHBTC")


def check_symbols(symbols: list[str] | tuple[str, ...], name: str = "sim") -> None:
    """Refuse a symbol ``sim`` does not offer, with the nearest one it does (a typo must not backtest a
    made-up series). Raises :class:`btkit.errors.ConfigError`."""
    import difflib

    from btkit.errors import ConfigError

    squashed = {s.replace("USDT", "").replace("USD", ""): s for s in SYMBOLS}
    for symbol in symbols:
        if symbol in SYMBOLS:
            continue
        plain = "".join(ch for ch in symbol.upper() if ch.isalnum())
        near = plain if plain in SYMBOLS else None
        near = near or (difflib.get_close_matches(plain, SYMBOLS, n=1, cutoff=0.6) or [None])[0]
        near = near or squashed.get(plain)
        hint = f"did you mean {near}? " if near else ""
        shown = symbol if symbol.isprintable() else symbol.encode("unicode_escape").decode("ascii")
        raise ConfigError(
            f"{name} has no symbol {shown!r}; {hint}it offers {', '.join(SYMBOLS[:6])}, … "
            f"({len(SYMBOLS)} symbols, see docs/cli.md)"
        )


def _fmt(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, tz=UTC).strftime("%Y-%m-%d %H:%M UTC")


class SimExchange:
    """A seeded simulated exchange. ``get_candles`` is random access and needs no network."""

    def __init__(self, seed: int = DEFAULT_SEED, *, clock: Callable[[], float] = time.time) -> None:
        if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
            raise ValueError(f"sim exchange seed must be an integer >= 0, got {seed!r}")
        self.seed = seed
        self._clock = clock

    def minutes(self, symbol: str, start_ms: int, count: int) -> np.ndarray:
        """``count`` one-minute candles from ``start_ms`` (a minute boundary), ignoring the clock."""
        if count <= 0:
            return empty()
        first_day = (start_ms - EPOCH_MS) // DAY_MS
        end_ms = start_ms + count * MINUTE_MS
        last_day = (end_ms - 1 - EPOCH_MS) // DAY_MS
        if first_day < 0:
            raise CandleDataError(
                f"sim: no candles before {_fmt(EPOCH_MS)} (asked for {_fmt(start_ms)}); start later"
            )
        if last_day >= RANGE_DAYS:
            raise CandleDataError(f"sim: no candles after the simulated range (asked for {_fmt(end_ms)})")
        days = [_day(self.seed, symbol, d) for d in range(first_day, last_day + 1)]
        block = days[0] if len(days) == 1 else np.concatenate(days)
        off = (start_ms - (EPOCH_MS + first_day * DAY_MS)) // MINUTE_MS
        return block[off : off + count]

    def get_candles(self, symbol: str, interval: str, since: datetime, limit: int) -> np.ndarray:
        """``limit`` candles of ``interval`` opening at ``since`` (rounded up to the interval grid),
        ``since + step``, …; cut at the last candle finished by now."""
        if not isinstance(symbol, str) or not symbol:
            raise CandleDataError(f"sim: symbol must be a non-empty string, got {symbol!r}")
        step = interval_ms(interval)
        if isinstance(limit, bool) or not isinstance(limit, int) or limit < 0:
            raise CandleDataError(f"sim: limit must be a whole number >= 0, got {limit!r}")
        start = _to_ms(since)
        start = -(-start // step) * step  # first candle opening at or after since
        if start < EPOCH_MS:
            raise CandleDataError(
                f"sim: no candles before {_fmt(EPOCH_MS)} (asked for {_fmt(start)}); start later"
            )
        if limit == 0:
            return empty()
        now_ms = int(self._clock() * 1000)
        finished = (now_ms - start) // step  # candles opening at start … that have closed by now
        if finished <= 0:
            raise CandleDataError(
                f"sim: candle {_fmt(start)} ({interval}) is in the future (now {_fmt(now_ms)}); "
                "ask for an earlier time"
            )
        count = min(limit, finished)
        k = step // MINUTE_MS
        ones = self.minutes(symbol, start, count * k)
        return ones if k == 1 else resample(ones, step)

    def format_price(self, symbol: str, price: float) -> str:
        return f"{price:.{_price_decimals(symbol)}f}"

    def format_quantity(self, symbol: str, quantity: float) -> str:
        d = _quantity_decimals(symbol)
        q = math.floor(quantity * 10**d + 1e-9) / 10**d
        return f"{q:.{d}f}"

    def spec(self, name: str = "sim", dist: str = "btkit") -> ExchangeSpec:
        return ExchangeSpec(
            name=name,
            get_candles=self.get_candles,
            format_price=self.format_price,
            format_quantity=self.format_quantity,
            dist=dist,
        )


def make_sim_exchange(
    seed: int = DEFAULT_SEED,
    name: str = "sim",
    *,
    clock: Callable[[], float] = time.time,
    dist: str = "<code>",
) -> ExchangeSpec:
    """An :class:`ExchangeSpec` for a simulated exchange with its own seed (and optionally its own clock,
    a callable returning epoch seconds), e.g. for tests: ``btkit.add_exchange`` its fields or return it
    from a plugin's ``btkit_exchanges``."""
    return SimExchange(seed, clock=clock).spec(name=name, dist=dist)


_DEFAULT = SimExchange(DEFAULT_SEED)


@hookimpl
def btkit_exchanges() -> list[ExchangeSpec]:
    """The default plugin: the ``sim`` exchange (seed ``DEFAULT_SEED``)."""
    return [_DEFAULT.spec()]


# every interval divides a day: buckets never span two generated days
assert all(DAY_MS % ms == 0 for ms in INTERVAL_MS.values())
