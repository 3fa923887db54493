"""The array form of a strategy (docs/array-strategies.md): one ``populate`` call, many decisions.

A strategy with ``StrategySpec.array`` computes the requests of every bar at once. Both modes go through
:func:`evaluate` (candles in → validated per-bar requests out) and :func:`signal_at` (one row → the signal
dict the per-tick form would have returned):

* backtest: :func:`prepare` calls ``populate`` once over the whole run (``window`` bars of warm-up before the
  frame) and keeps the table; every tick looks its row up, and the driver jumps straight to the next bar that
  requests something (:func:`skip_to`) instead of ticking idle buckets;
* live: every tick calls ``populate`` over the latest ``window`` closed bars and uses the last row.

The row of a tick at ``when`` is the last bar closed at ``when`` — the very candles ``btkit.get_candles``
would give a per-tick strategy — and higher-timeframe columns are aligned so a bar sees a higher-timeframe
bar only once it has closed. Decisions still go through the ``btkit_get_signal`` hook (the built-in
implementation calls :func:`array_signal`), risk checks and the lifecycle exactly like the per-tick form.
"""

from __future__ import annotations

import math
import weakref
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import attrs
import numpy as np

from btkit.components import ArrayForm, StrategySpec, interval_ms
from btkit.context import current
from btkit.errors import BtkitError, InsufficientDataError
from btkit.params import populating, resolve_params
from btkit.position import Position

if TYPE_CHECKING:
    from btkit.engine.instance import StrategyInstance
    from btkit.market import Market

__all__ = [
    "PRICE_COLUMNS",
    "SIGNAL_COLUMNS",
    "ArrayOutputError",
    "Table",
    "align",
    "array_signal",
    "evaluate",
    "make_input",
    "prepare",
    "signal_at",
    "skip_to",
]

BASE_COLUMNS = ("open", "high", "low", "close", "volume")
PRICE_COLUMNS = (
    "price_open",
    "price_take_profit",
    "price_stop_loss",
    "percent_take_profit",
    "percent_stop_loss",
    "minute_estimated_time",
    "cost",
)
SIGNAL_COLUMNS = ("enter", *PRICE_COLUMNS)


class ArrayOutputError(BtkitError):
    """The array function of a strategy returned something that is not a valid per-bar table."""


@attrs.frozen(kw_only=True)
class Table:
    """Validated output of one ``populate`` call: bar open times, ``enter`` (int8: 1 / -1 / 0), the price
    columns the strategy gave and its numeric indicator columns (for ``btkit check``)."""

    ts: np.ndarray
    enter: np.ndarray
    prices: dict[str, np.ndarray]
    indicators: dict[str, np.ndarray]

    def __len__(self) -> int:
        return len(self.ts)


# ---------------------------------------------------------------- inputs
def align(htf_ts: np.ndarray, htf_step: int, base_ts: np.ndarray, base_step: int) -> np.ndarray:
    """For each base bar, the index of the last higher-timeframe bar closed when the base bar closes
    (``htf_open + htf_step <= base_open + base_step``), or -1 when none has closed yet."""
    htf_close = np.asarray(htf_ts, dtype=np.int64) + htf_step
    base_close = np.asarray(base_ts, dtype=np.int64) + base_step
    return np.searchsorted(htf_close, base_close, side="right").astype(np.int64) - 1


def make_input(
    form: ArrayForm,
    interval: str,
    base: Mapping[str, np.ndarray],
    informative: Mapping[str, Mapping[str, np.ndarray]] | None = None,
) -> Any:
    """What ``populate`` receives: a dict of contiguous float64 columns (``timestamp`` int64), the
    informative columns aligned as ``<col>_<interval>``; a pandas DataFrame (with ``date``) if asked."""
    ts = np.ascontiguousarray(base["timestamp"], dtype=np.int64)
    cols: dict[str, np.ndarray] = {"timestamp": ts}
    for name in BASE_COLUMNS:
        cols[name] = np.array(base[name], dtype=np.float64)  # a fresh writable copy: user code may mutate
    step = interval_ms(interval)
    for iv, htf in (informative or {}).items():
        idx = align(htf["timestamp"], interval_ms(iv), ts, step)
        ok = idx >= 0
        safe = np.where(ok, idx, 0)
        for name in BASE_COLUMNS:
            src = np.asarray(htf[name], dtype=np.float64)
            col = src[safe] if len(src) else np.zeros(len(ts))
            cols[f"{name}_{iv}"] = np.where(ok, col, np.nan)
    if not form.pandas:
        return cols
    import pandas as pd

    frame = pd.DataFrame(cols)
    frame.insert(1, "date", pd.to_datetime(ts, unit="ms", utc=True))
    return frame


# ---------------------------------------------------------------- validation
def _columns_of(name: str, out: Any, n: int) -> dict[str, Any]:
    if out is None:
        raise ArrayOutputError(
            f"strategy {name!r}: the array function returned None; return a DataFrame, a dict of columns "
            "or an 'enter' array with one value per candle"
        )
    if hasattr(out, "columns") and hasattr(out, "__getitem__") and not isinstance(out, Mapping):
        return {str(c): out[c].to_numpy() for c in out.columns}  # a pandas DataFrame
    if isinstance(out, Mapping):
        return {str(k): v for k, v in out.items()}
    if hasattr(out, "to_numpy"):  # a pandas Series: the enter column
        return {"enter": out.to_numpy()}
    if isinstance(out, (np.ndarray, list, tuple)):
        return {"enter": out}
    raise ArrayOutputError(
        f"strategy {name!r}: the array function returned {type(out).__name__}; return a DataFrame, a dict of "
        "columns or an 'enter' array with one value per candle"
    )


def _first(mask: np.ndarray) -> int:
    return int(np.argmax(mask))


def _enter_of(name: str, raw: Any, ts: np.ndarray) -> np.ndarray:
    arr = np.asarray(raw)
    if arr.dtype == np.bool_:
        return arr.astype(np.int8)
    if arr.dtype.kind not in "iuf":
        raise ArrayOutputError(
            f"strategy {name!r}: column 'enter' has dtype {arr.dtype}; use bool or numbers "
            "(1 long, -1 short, 0 nothing)"
        )
    if arr.dtype.kind == "f":
        bad = np.isnan(arr)
        if bad.any():
            i = _first(bad)
            raise ArrayOutputError(
                f"strategy {name!r}: column 'enter' is NaN in {int(bad.sum())} row(s), first at {_when(ts, i)}; "
                "use 0 for no signal (fillna(0))"
            )
    wrong = (arr != 0) & (arr != 1) & (arr != -1)
    if wrong.any():
        i = _first(wrong)
        raise ArrayOutputError(
            f"strategy {name!r}: column 'enter' is {arr[i].item()!r} at {_when(ts, i)}; use 1 (long), "
            "-1 (short) or 0 (nothing)"
        )
    return arr.astype(np.int8)


def _when(ts: np.ndarray, i: int) -> str:
    from btkit.context import ms_to_datetime

    return f"row {i} ({ms_to_datetime(int(ts[i])):%Y-%m-%d %H:%M} UTC)"


def validate_output(spec: StrategySpec, out: Any, ts: np.ndarray) -> Table:
    """Turn what ``populate`` returned into a :class:`Table`, or raise one :class:`ArrayOutputError`
    naming the strategy and the first bad row."""
    name = spec.name
    n = len(ts)
    cols = _columns_of(name, out, n)
    if "enter" not in cols:
        raise ArrayOutputError(
            f"strategy {name!r}: the array function returned no 'enter' column (1 long, -1 short, 0 nothing); "
            f"it returned {', '.join(sorted(cols)) or 'no columns'}"
        )
    for col, values in cols.items():
        length = len(values) if hasattr(values, "__len__") else None
        if length != n:
            raise ArrayOutputError(
                f"strategy {name!r}: column {col!r} has {length} rows for {n} candles; return one value per "
                "candle (do not drop warm-up rows: use NaN or 0)"
            )
    enter = _enter_of(name, cols["enter"], ts)
    requested = enter != 0
    prices: dict[str, np.ndarray] = {}
    for col in PRICE_COLUMNS:
        if col not in cols:
            continue
        arr = np.asarray(cols[col])
        if arr.dtype.kind not in "iuf":
            raise ArrayOutputError(f"strategy {name!r}: column {col!r} has dtype {arr.dtype}; use numbers")
        arr = arr.astype(np.float64)
        bad = requested & ~(np.isfinite(arr) & (arr > 0))
        if bad.any():
            i = _first(bad)
            raise ArrayOutputError(
                f"strategy {name!r}: column {col!r} is {arr[i].item()!r} at {_when(ts, i)}, a bar that requests a "
                "signal; give a finite number > 0 on every bar with enter != 0"
            )
        prices[col] = arr
    indicators: dict[str, np.ndarray] = {}
    inputs = {"timestamp", "date", *BASE_COLUMNS}
    assert spec.array is not None
    inputs.update(f"{c}_{iv}" for iv in spec.array.informative for c in BASE_COLUMNS)
    for col, values in cols.items():
        if col in SIGNAL_COLUMNS or col in inputs:  # the candles handed in are not indicators
            continue
        arr = np.asarray(values)
        if arr.dtype.kind in "biuf":
            indicators[col] = arr.astype(np.float64)
    return Table(ts=np.asarray(ts, dtype=np.int64), enter=enter, prices=prices, indicators=indicators)


def evaluate(
    spec: StrategySpec,
    base: Mapping[str, np.ndarray],
    informative: Mapping[str, Mapping[str, np.ndarray]] | None = None,
    params: Mapping[str, Any] | None = None,
) -> Table:
    """Call the strategy's array function over ``base`` candles (and aligned informative candles) and
    validate what it returns. The one code path of backtest, live and ``btkit check``. ``btkit.get_params()``
    inside ``populate`` gives ``params`` (default: the running instance's values, else the declared defaults)."""
    form = spec.array
    assert form is not None
    data = make_input(form, spec.interval, base, informative)
    with populating(params if params is not None else _params_here(spec)):
        out = form.populate(data)
    return validate_output(spec, out, np.asarray(base["timestamp"], dtype=np.int64))


def _params_here(spec: StrategySpec) -> Mapping[str, Any]:
    try:
        return current().instance.params
    except BtkitError:
        return resolve_params(spec.name, spec.params, None)


def signal_at(spec: StrategySpec, table: Table, i: int, current_price: float) -> dict[str, Any] | None:
    """The signal row ``i`` requests at ``current_price`` (a dict as ``get_signal`` returns), or None."""
    side = int(table.enter[i])
    if side == 0:
        return None
    form = spec.array
    assert form is not None
    fields: dict[str, Any] = dict(form.defaults)
    for col, arr in table.prices.items():
        fields[col] = float(arr[i])
    position = "long" if side > 0 else "short"
    price_open = fields.pop("price_open", None)
    base = price_open if price_open is not None else current_price
    tp = fields.pop("price_take_profit", None)
    sl = fields.pop("price_stop_loss", None)
    ptp = fields.pop("percent_take_profit", None)
    psl = fields.pop("percent_stop_loss", None)
    if tp is None or sl is None:
        if (tp is None and ptp is None) or (sl is None and psl is None):
            raise ArrayOutputError(
                f"strategy {spec.name!r}: a requested signal needs a take profit and a stop loss: give "
                "price_take_profit / price_stop_loss columns or percent_take_profit / percent_stop_loss "
                "(columns or ArrayForm.defaults)"
            )
        bracket = Position.bracket(
            position=position,
            current_price=base,
            percent_take_profit=ptp if ptp is not None else 1.0,
            percent_stop_loss=psl if psl is not None else 1.0,
        )
        tp = bracket["price_take_profit"] if tp is None else tp
        sl = bracket["price_stop_loss"] if sl is None else sl
    signal: dict[str, Any] = {"position": position, "price_take_profit": tp, "price_stop_loss": sl}
    if price_open is not None:
        signal["price_open"] = price_open
    met = fields.pop("minute_estimated_time", None)
    if met is not None:
        signal["minute_estimated_time"] = int(met)
    signal.update(fields)
    return signal


# ---------------------------------------------------------------- candles from the market
async def _range(market: Market, symbol: str, interval: str, since: int, stop: int) -> dict[str, np.ndarray]:
    """The candles of ``interval`` opening in ``[since, stop)`` the exchange has (contiguous)."""
    step = interval_ms(interval)
    count = max(0, (stop - since) // step)
    seg = await market._ensure(symbol, interval, since, count) if count else None
    if seg is None:
        return {"timestamp": np.empty(0, dtype=np.int64), **{c: np.empty(0) for c in BASE_COLUMNS}}
    i = max(0, (since - seg.start) // step)
    j = max(i, min(len(seg.ts), (stop - seg.start) // step))
    cols = {"timestamp": seg.ts[i:j]}
    for c in BASE_COLUMNS:
        cols[c] = getattr(seg, c)[i:j]
    return cols


async def _informative(
    market: Market, spec: StrategySpec, symbol: str, since: int, stop: int
) -> dict[str, dict[str, np.ndarray]]:
    """Higher-timeframe candles closed by ``stop`` covering base bars from ``since``."""
    form = spec.array
    assert form is not None
    out: dict[str, dict[str, np.ndarray]] = {}
    for iv in form.informative:
        step = interval_ms(iv)
        first = (since // step) * step - step
        out[iv] = await _range(market, symbol, iv, first, (stop // step) * step)
    return out


async def run_table(
    market: Market,
    spec: StrategySpec,
    symbol: str,
    since: int,
    stop: int,
    params: Mapping[str, Any] | None = None,
) -> Table:
    """``evaluate`` over the strategy-interval bars opening in ``[since, stop)`` (what the exchange has);
    informative bars are those closed by ``stop``."""
    base = await _range(market, symbol, spec.interval, since, stop)
    informative = await _informative(market, spec, symbol, since, stop)
    return evaluate(spec, base, informative, params=params)


# ---------------------------------------------------------------- backtest: one table per instance
@attrs.define
class _Prepared:
    table: Table | None
    step: int
    first_valid: int  # rows before this lack `window` bars of history (live could not compute them)
    requests: np.ndarray  # decision buckets (bar open + step) of the valid requesting rows
    error: BaseException | None = None


_PREPARED: weakref.WeakKeyDictionary[Any, _Prepared] = weakref.WeakKeyDictionary()


async def prepare(inst: StrategyInstance, first_tick: int) -> None:
    """Backtest: compute the whole run's table once (raises :class:`ArrayOutputError` on bad output)."""
    spec = inst.strategy
    if spec.array is None or not inst.backtest or inst in _PREPARED:
        return
    step = inst.interval
    first_bucket = (first_tick // step) * step
    window = spec.array.effective_window(inst.params)
    since = first_bucket - window * step
    end = inst.run.frame_end if inst.run.frame_end is not None else inst.run.now_ms()
    stop = (end // step) * step
    try:
        table = await run_table(inst.market, spec, inst.symbol, since, stop, params=inst.params)
    except BaseException as exc:
        _PREPARED[inst] = _Prepared(None, step, 0, np.empty(0, dtype=np.int64), exc)
        raise
    first_valid = 0
    if len(table):
        have_before = (int(table.ts[0]) - since) // step  # 0 when the exchange covers the warm-up
        first_valid = max(0, window - 1 - have_before)
    rows = np.flatnonzero(table.enter != 0)
    rows = rows[rows >= first_valid]
    _PREPARED[inst] = _Prepared(table, step, first_valid, table.ts[rows] + step)


def skip_to(inst: StrategyInstance, bucket: int) -> int:
    """Backtest: the first decision bucket at or after ``bucket`` whose bar requests a signal (the idle
    buckets in between would all answer None); ``bucket`` itself for per-tick strategies."""
    prepared = _PREPARED.get(inst)
    if prepared is None or prepared.table is None:
        return bucket
    req = prepared.requests
    k = int(np.searchsorted(req, bucket, side="left"))
    if k >= len(req):
        end = inst.run.frame_end if inst.run.frame_end is not None else bucket
        return max(bucket, end + prepared.step)  # nothing more is requested in this run
    return max(bucket, int(req[k]))


async def _backtest_signal(inst: StrategyInstance, when: int, price: float) -> dict[str, Any] | None:
    prepared = _PREPARED.get(inst)
    if prepared is None:
        await prepare(inst, when)  # a driver that did not prepare (e.g. a portfolio run)
        prepared = _PREPARED[inst]
    if prepared.error is not None or prepared.table is None:
        return None  # reported once when it happened
    table = prepared.table
    bar = (when // prepared.step) * prepared.step - prepared.step  # the last bar closed at `when`
    if not len(table):
        return None
    i = (bar - int(table.ts[0])) // prepared.step
    if i < prepared.first_valid or i >= len(table) or int(table.ts[i]) != bar:
        return None
    return signal_at(inst.strategy, table, int(i), price)


async def _live_signal(inst: StrategyInstance, when: int, price: float) -> dict[str, Any] | None:
    spec = inst.strategy
    form = spec.array
    assert form is not None
    step = inst.interval
    stop = (when // step) * step
    bars = form.effective_window(inst.params)
    since = stop - bars * step
    market = inst.market
    window = await market.window(inst.symbol, spec.interval, when, bars)  # exact or an error
    base = {"timestamp": window.timestamp, **{c: getattr(window, c) for c in BASE_COLUMNS}}
    informative: dict[str, dict[str, np.ndarray]] = {}
    for iv in form.informative:
        hstep = interval_ms(iv)
        count = math.ceil(bars * step / hstep) + 1
        try:
            htf = await market.window(inst.symbol, iv, when, count)
        except InsufficientDataError:
            htf_cols = await _range(market, inst.symbol, iv, (since // hstep) * hstep - hstep, stop)
        else:
            htf_cols = {"timestamp": htf.timestamp, **{c: getattr(htf, c) for c in BASE_COLUMNS}}
        informative[iv] = htf_cols
    table = evaluate(spec, base, informative, params=inst.params)
    return signal_at(spec, table, len(table) - 1, price)


async def _signal(when: int, price: float) -> dict[str, Any] | None:
    inst = current().instance
    if inst.backtest:
        return await _backtest_signal(inst, when, price)
    return await _live_signal(inst, when, price)


def array_signal(strategy: StrategySpec, symbol: str, when_ms: int, current_price: float) -> Any:
    """What the built-in ``btkit_get_signal`` returns for an array-form strategy: an awaitable of the
    signal of the bar closed at ``when`` (the engine awaits it inside the execution context)."""
    return _signal(when_ms, current_price)
