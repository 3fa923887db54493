"""The report family (backtest-kit's markdown services): schedule, partials/breakeven, per-signal extremes,
performance timings and heat — each a ``*_data`` function returning plain records (the ``get_data`` API),
a markdown section (:func:`markdown_sections`) and an HTML tab (``btkit.reporting.html``).

:func:`family_data` gathers all five from a run's results (backtest: every ``TickResult``; live: the closed
history plus the handle's ``event_list``). :data:`PERFORMANCE` collects phase timings (``timed(phase)``);
docs/reports.md lists every field.
"""

from __future__ import annotations

import contextlib
import math
import threading
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any

import attrs
import numpy as np

from btkit.model import Cancelled, Closed, Opened, Scheduled
from btkit.reporting.markdown import _cell, _table, fmt_duration, fmt_money, fmt_pct, fmt_price, fmt_time
from btkit.stats import drawdown_pnl, peak_pnl


# ---------------------------------------------------------------- schedule
@attrs.frozen(kw_only=True)
class ScheduleRow:
    id: str
    symbol: str
    position: str
    price_open: float
    scheduled_at: int
    outcome: str  # "activated" | "cancelled" | "waiting"
    resolved_at: int | None
    cancel_reason: str | None


@attrs.frozen(kw_only=True)
class ScheduleData:
    scheduled: int
    activated: int
    cancelled: int
    waiting: int
    activation_rate: float | None  # % of scheduled signals that opened
    cancellation_rate: float | None
    avg_wait_minutes: float | None  # scheduled → activated
    rows: tuple[ScheduleRow, ...]


def schedule_data(results: Iterable[Any]) -> ScheduleData:
    """Scheduled (limit-entry) signals and what became of them: activated, cancelled or still waiting.

    A closed trade whose ``pending_at`` is later than its ``scheduled_at`` counts as scheduled and activated
    even without its ``Scheduled`` event (live history keeps only closed trades)."""
    rows: dict[str, dict[str, Any]] = {}
    for r in results:
        v = getattr(r, "signal", None)
        if v is None:
            continue
        if isinstance(r, Scheduled) or (
            isinstance(r, Closed) and v.pending_at is not None and v.pending_at > v.scheduled_at
        ):
            rows.setdefault(
                v.id,
                dict(
                    id=v.id,
                    symbol=r.symbol,
                    position=v.position,
                    price_open=v.original_price_open,
                    scheduled_at=v.scheduled_at,
                    outcome="waiting",
                    resolved_at=None,
                    cancel_reason=None,
                ),
            )
        row = rows.get(v.id)
        if row is None:
            continue
        if isinstance(r, (Opened, Closed)) and v.pending_at is not None and row["outcome"] == "waiting":
            row.update(outcome="activated", resolved_at=v.pending_at)
        elif isinstance(r, Cancelled):
            row.update(outcome="cancelled", resolved_at=r.close_timestamp, cancel_reason=str(r.reason))
    out = tuple(
        ScheduleRow(**row) for row in sorted(rows.values(), key=lambda x: (x["scheduled_at"], x["id"]))
    )
    n = len(out)
    act = [r for r in out if r.outcome == "activated"]
    can = sum(1 for r in out if r.outcome == "cancelled")
    waits = [(r.resolved_at - r.scheduled_at) / 60_000 for r in act if r.resolved_at is not None]
    return ScheduleData(
        scheduled=n,
        activated=len(act),
        cancelled=can,
        waiting=n - len(act) - can,
        activation_rate=len(act) * 100.0 / n if n else None,
        cancellation_rate=can * 100.0 / n if n else None,
        avg_wait_minutes=math.fsum(waits) / len(waits) if waits else None,
        rows=out,
    )


# ---------------------------------------------------------------- partials and breakeven
@attrs.frozen(kw_only=True)
class PartialEvent:
    id: str
    symbol: str
    kind: str  # "partial profit" | "partial loss" | "breakeven"
    percent: float | None  # of the remaining position (partials)
    price: float
    timestamp: int | None  # breakeven: the trade's close (the move's own time is not recorded)


@attrs.frozen(kw_only=True)
class PartialsData:
    partial_profits: int
    partial_losses: int
    breakevens: int
    rows: tuple[PartialEvent, ...]


def _same(a: float, b: float) -> bool:
    return abs(a - b) <= 1e-9 * max(1.0, abs(a), abs(b))


def partials_data(closed: Iterable[Closed]) -> PartialsData:
    """Every partial close, and every trade whose stop loss ended at its entry (a breakeven move)."""
    rows: list[PartialEvent] = []
    for c in closed:
        v = c.signal
        if v is None:
            continue
        for p in v.partials:
            rows.append(
                PartialEvent(
                    id=v.id,
                    symbol=c.symbol,
                    kind=f"partial {p.kind}",
                    percent=p.percent,
                    price=p.current_price,
                    timestamp=p.timestamp,
                )
            )
        if _same(v.price_stop_loss, v.price_open) and not _same(v.original_price_stop_loss, v.price_open):
            rows.append(
                PartialEvent(
                    id=v.id,
                    symbol=c.symbol,
                    kind="breakeven",
                    percent=None,
                    price=v.price_stop_loss,
                    timestamp=c.close_timestamp,
                )
            )
    rows.sort(key=lambda e: (e.timestamp or 0, e.id, e.kind))
    return PartialsData(
        partial_profits=sum(1 for e in rows if e.kind == "partial profit"),
        partial_losses=sum(1 for e in rows if e.kind == "partial loss"),
        breakevens=sum(1 for e in rows if e.kind == "breakeven"),
        rows=tuple(rows),
    )


# ---------------------------------------------------------------- highest profit / max drawdown per signal
@attrs.frozen(kw_only=True)
class ExtremeRow:
    id: str
    symbol: str
    position: str
    pnl: float  # final pnl %
    peak_pnl: float | None  # pnl % at the best price seen while open
    drawdown_pnl: float | None  # pnl % at the worst price seen
    given_back: float | None  # peak − final (how much of the best moment was lost)
    close_reason: str


def extremes_data(closed: Iterable[Closed], *, slippage_pct: float, fee_pct: float) -> tuple[ExtremeRow, ...]:
    """Highest profit and max drawdown of each signal, highest peak first."""
    out = []
    for c in closed:
        if c.signal is None:
            continue
        peak = peak_pnl(c, slippage_pct=slippage_pct, fee_pct=fee_pct)
        out.append(
            ExtremeRow(
                id=c.signal.id,
                symbol=c.symbol,
                position=c.signal.position,
                pnl=c.pnl.pnl_percentage,
                peak_pnl=peak,
                drawdown_pnl=drawdown_pnl(c, slippage_pct=slippage_pct, fee_pct=fee_pct),
                given_back=None if peak is None else peak - c.pnl.pnl_percentage,
                close_reason=str(c.close_reason),
            )
        )
    return tuple(sorted(out, key=lambda r: -(r.peak_pnl if r.peak_pnl is not None else -math.inf)))


# ---------------------------------------------------------------- performance (phase timings)
@attrs.frozen(kw_only=True)
class TimingRow:
    phase: str
    count: int
    total_ms: float
    mean_ms: float
    p95_ms: float
    p99_ms: float
    max_ms: float


class Timings:
    """Durations per phase (thread-safe). ``timed(phase)`` measures a block; ``rows()`` summarises."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._samples: dict[str, list[float]] = {}

    def record(self, phase: str, seconds: float) -> None:
        with self._lock:
            self._samples.setdefault(phase, []).append(seconds)

    @contextlib.contextmanager
    def timed(self, phase: str) -> Iterator[None]:
        t0 = time.perf_counter()
        try:
            yield
        finally:
            self.record(phase, time.perf_counter() - t0)

    def clear(self) -> None:
        with self._lock:
            self._samples.clear()

    def rows(self) -> tuple[TimingRow, ...]:
        with self._lock:
            items = [(k, np.asarray(v, dtype=float) * 1000.0) for k, v in self._samples.items() if v]
        return tuple(
            TimingRow(
                phase=k,
                count=len(a),
                total_ms=float(a.sum()),
                mean_ms=float(a.mean()),
                p95_ms=float(np.percentile(a, 95)),
                p99_ms=float(np.percentile(a, 99)),
                max_ms=float(a.max()),
            )
            for k, a in items
        )


PERFORMANCE = Timings()


def performance_data(timings: Timings | None = None) -> tuple[TimingRow, ...]:
    """Timing per phase recorded in this process (count, total, mean, p95, p99, max in ms)."""
    return (timings or PERFORMANCE).rows()


# ---------------------------------------------------------------- heat (per symbol)
def heat_data(closed: Sequence[Closed], *, balance: float) -> tuple[Any, ...]:
    """Per-symbol heat rows (trades, pnl, win rate, sharpe, max drawdown) from ``btkit.accounting``."""
    from btkit.accounting.portfolio import heat_rows

    return tuple(heat_rows(list(closed), balance=balance))


# ---------------------------------------------------------------- the family
@attrs.frozen(kw_only=True)
class Family:
    schedule: ScheduleData
    partials: PartialsData
    extremes: tuple[ExtremeRow, ...]
    performance: tuple[TimingRow, ...]
    heat: tuple[Any, ...]


def family_data(
    closed: Sequence[Closed],
    events: Iterable[Any] = (),
    *,
    slippage_pct: float,
    fee_pct: float,
    balance: float | None = None,
    timings: Timings | None = None,
) -> Family:
    """All five reports of one run: ``events`` are its other results (``Scheduled``/``Opened``/``Cancelled``)."""
    if balance is None:
        from btkit.accounting.wallet import get_wallet

        balance = get_wallet().balance
    everything = [*events, *closed]
    return Family(
        schedule=schedule_data(everything),
        partials=partials_data(closed),
        extremes=extremes_data(closed, slippage_pct=slippage_pct, fee_pct=fee_pct),
        performance=performance_data(timings),
        heat=heat_data(closed, balance=balance),
    )


def backtest_family(symbol: str, *, strategy: str, exchange: str, frame: str) -> Family:
    """:func:`family_data` of the last backtest of this (symbol, strategy, exchange, frame)."""
    from btkit.config import get_config
    from btkit.engine.backtest import Backtest

    cfg = get_config()
    results = Backtest.results(symbol, strategy=strategy, exchange=exchange, frame=frame)
    closed = [r for r in results if isinstance(r, Closed)]
    others = [r for r in results if not isinstance(r, Closed)]
    return family_data(closed, others, slippage_pct=cfg.percent_slippage, fee_pct=cfg.percent_fee)


# ---------------------------------------------------------------- markdown
def _ms(x: float) -> str:
    return f"{x:,.3f}"


def schedule_markdown(d: ScheduleData) -> str:
    head = (
        f"{d.scheduled} scheduled · {d.activated} activated ({fmt_pct(d.activation_rate, signed=False)}) · "
        f"{d.cancelled} cancelled ({fmt_pct(d.cancellation_rate, signed=False)}) · {d.waiting} waiting · "
        f"average wait {fmt_duration(d.avg_wait_minutes)}"
    )
    if not d.rows:
        return head
    table = _table(
        ("ID", "Symbol", "Position", "Entry", "Scheduled (UTC)", "Outcome", "At (UTC)", "Cancel reason"),
        [
            (
                r.id,
                r.symbol,
                r.position,
                fmt_price(r.price_open),
                fmt_time(r.scheduled_at),
                r.outcome,
                fmt_time(r.resolved_at),
                r.cancel_reason or "",
            )
            for r in d.rows
        ],
        "lllrllll",
    )
    return "\n".join([head, "", *table])


def partials_markdown(d: PartialsData) -> str:
    head = f"{d.partial_profits} partial profit(s) · {d.partial_losses} partial loss(es) · {d.breakevens} breakeven(s)"
    if not d.rows:
        return head
    table = _table(
        ("ID", "Symbol", "Event", "Percent", "Price", "Time (UTC)"),
        [
            (
                e.id,
                e.symbol,
                e.kind,
                fmt_pct(e.percent, signed=False),
                fmt_price(e.price),
                fmt_time(e.timestamp),
            )
            for e in d.rows
        ],
        "lllrrl",
    )
    return "\n".join([head, "", *table])


#: the columns of the highest-profit / max-drawdown table, in markdown and in the HTML tab
EXTREMES_COLUMNS = (
    "ID",
    "Symbol",
    "Position",
    "Highest profit %",
    "Max drawdown %",
    "Final pnl %",
    "Given back",
    "Reason",
)


def extremes_markdown(rows: Sequence[ExtremeRow]) -> str:
    if not rows:
        return "No closed signals."
    return "\n".join(
        _table(
            EXTREMES_COLUMNS,
            [
                (
                    r.id,
                    r.symbol,
                    r.position,
                    fmt_pct(r.peak_pnl),
                    fmt_pct(r.drawdown_pnl),
                    fmt_pct(r.pnl),
                    fmt_pct(r.given_back, signed=False),
                    r.close_reason,
                )
                for r in rows
            ],
            "lllrrrrl",
        )
    )


def performance_markdown(rows: Sequence[TimingRow]) -> str:
    if not rows:
        return "No timings recorded."
    return "\n".join(
        _table(
            ("Phase", "Count", "Total ms", "Mean ms", "p95 ms", "p99 ms", "Max ms"),
            [
                (
                    r.phase,
                    r.count,
                    _ms(r.total_ms),
                    _ms(r.mean_ms),
                    _ms(r.p95_ms),
                    _ms(r.p99_ms),
                    _ms(r.max_ms),
                )
                for r in rows
            ],
            "lrrrrrr",
        )
    )


def heat_markdown(rows: Sequence[Any]) -> str:
    if not rows:
        return "No closed signals."
    return "\n".join(
        _table(
            ("Symbol", "Trades", "PnL $", "Win rate", "Sharpe (per trade)", "Max DD $", "Max DD %"),
            [
                (
                    _cell(h.symbol),
                    h.trades,
                    fmt_money(h.pnl),
                    fmt_pct(h.win_rate, signed=False),
                    "N/A" if h.sharpe is None else f"{h.sharpe:,.3f}",
                    fmt_money(h.max_drawdown),
                    fmt_pct(h.max_drawdown_pct, signed=False),
                )
                for h in rows
            ],
            "lrrrrrr",
        )
    )


SECTION_TITLES: Mapping[str, str] = {
    "schedule": "Schedule",
    "partials": "Partials and breakeven",
    "extremes": "Highest profit and max drawdown per signal",
    "performance": "Performance (timing per phase)",
    "heat": "Heat (per symbol)",
}


def markdown_sections(f: Family) -> dict[str, str]:
    """The five sections as ``{title: markdown body}`` (what ``render_markdown(sections=…)`` takes)."""
    return {
        SECTION_TITLES["schedule"]: schedule_markdown(f.schedule),
        SECTION_TITLES["partials"]: partials_markdown(f.partials),
        SECTION_TITLES["extremes"]: extremes_markdown(f.extremes),
        SECTION_TITLES["performance"]: performance_markdown(f.performance),
        SECTION_TITLES["heat"]: heat_markdown(f.heat),
    }
