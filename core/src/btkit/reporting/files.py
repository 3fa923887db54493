"""Report files on disk: safe names, atomic writes, the trade exports (CSV/JSON, ``--export``)."""

from __future__ import annotations

import csv
import io
import json
import math
import os
import re
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

from btkit.model import Closed
from btkit.reporting.markdown import _view, fmt_time
from btkit.stats import chronological, drawdown_pnl, duration_ms, opened_at, peak_pnl

DEFAULT_DUMP_DIR = "./dump"
ExportFormat = Literal["csv", "json"]
EXPORT_FORMATS: tuple[str, ...] = ("csv", "json")


# ---------------------------------------------------------------- files
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def safe_name(s: str) -> str:
    """A filesystem-safe file-name part: ``BTC/USDT:USDT`` → ``BTC-USDT-USDT``; never empty or dot-led."""
    cleaned = _UNSAFE.sub("-", s).strip("-.")
    return cleaned or "_"


def report_filename(symbol: str, strategy: str, exchange: str, frame: str, mode: str, ts_ms: int) -> str:
    """``<symbol>_<strategy>_<exchange>_<frame>_<mode>-<ts>.md`` with every part made filesystem-safe."""
    parts = "_".join(safe_name(p) for p in (symbol, strategy, exchange, frame, mode))
    return f"{parts}-{int(ts_ms)}.md"


def default_report_dir(mode: str, base: str | os.PathLike[str] = DEFAULT_DUMP_DIR) -> Path:
    """``./dump/backtest`` or ``./dump/live`` (``base`` replaces ``./dump``)."""
    return Path(base) / safe_name(mode)


def _atomic_write(path: Path, data: bytes) -> None:
    """Write via a temporary file in the same directory and rename (readers never see half a file).

    The file is created with ordinary permissions (subject to the umask): reports hold no secrets. Missing
    directories are created 0700, like the live state directory that may later share ``./dump``.
    """
    from btkit.persist.file import make_private_dirs

    make_private_dirs(path.parent)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex}.tmp")
    try:
        with open(tmp, "xb") as fh:
            fh.write(data)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _plain_filename(filename: str) -> str:
    if not filename or filename in (".", "..") or "/" in filename or "\\" in filename or "\0" in filename:
        raise ValueError(f"report file name must be a plain name without directories, got {filename!r}")
    return filename


def write_report(directory: str | os.PathLike[str], filename: str, text: str) -> Path:
    """Write ``text`` (UTF-8) to ``directory/filename`` atomically, creating directories. Returns the path."""
    path = Path(directory) / _plain_filename(filename)
    _atomic_write(path, text.encode("utf-8"))
    return path


# ---------------------------------------------------------------- trade export
CSV_COLUMNS: tuple[str, ...] = (
    "id",
    "symbol",
    "strategy_name",
    "exchange_name",
    "frame_name",
    "backtest",
    "position",
    "price_open",
    "price_close",
    "price_take_profit",
    "price_stop_loss",
    "original_price_open",
    "original_price_take_profit",
    "original_price_stop_loss",
    "pnl_percentage",
    "pnl_cost",
    "pnl_entries",
    "close_reason",
    "opened_at",
    "closed_at",
    "opened_at_utc",
    "closed_at_utc",
    "duration_minutes",
    "multiplier",
    "isolated",
    "entries_count",
    "partials_count",
    "price_best",
    "price_worst",
    "peak_pnl_percentage",
    "drawdown_pnl_percentage",
    "note",
)


def trade_record(c: Closed, *, slippage_pct: float = 0.1, fee_pct: float = 0.1) -> dict[str, Any]:
    """One closed trade as a flat dict (the CSV columns, in order)."""
    v = _view(c)
    kw = {"slippage_pct": slippage_pct, "fee_pct": fee_pct}
    return {
        "id": v.id,
        "symbol": c.symbol,
        "strategy_name": c.strategy_name,
        "exchange_name": c.exchange_name,
        "frame_name": c.frame_name,
        "backtest": c.backtest,
        "position": v.position,
        "price_open": v.price_open,
        "price_close": c.pnl.price_close,
        "price_take_profit": v.price_take_profit,
        "price_stop_loss": v.price_stop_loss,
        "original_price_open": v.original_price_open,
        "original_price_take_profit": v.original_price_take_profit,
        "original_price_stop_loss": v.original_price_stop_loss,
        "pnl_percentage": c.pnl.pnl_percentage,
        "pnl_cost": c.pnl.pnl_cost,
        "pnl_entries": c.pnl.pnl_entries,
        "close_reason": c.close_reason,
        "opened_at": opened_at(c),
        "closed_at": c.close_timestamp,
        "opened_at_utc": fmt_time(opened_at(c)),
        "closed_at_utc": fmt_time(c.close_timestamp),
        "duration_minutes": duration_ms(c) / 60_000,
        "multiplier": v.multiplier,
        "isolated": v.isolated,
        "entries_count": max(1, len(v.entries)),
        "partials_count": len(v.partials),
        "price_best": c.price_best,
        "price_worst": c.price_worst,
        "peak_pnl_percentage": peak_pnl(c, **kw),
        "drawdown_pnl_percentage": drawdown_pnl(c, **kw),
        "note": v.note,
    }


def _json_safe(x: Any) -> Any:
    if isinstance(x, float) and not math.isfinite(x):
        return None
    return x


def export_trades(
    closed: Sequence[Closed],
    path: str | os.PathLike[str],
    fmt: str,
    *,
    slippage_pct: float = 0.1,
    fee_pct: float = 0.1,
) -> Path:
    """Write the trades, oldest first, as ``csv`` (one flat row each) or ``json`` (a list of objects that
    also carry their ``entries`` and ``partials``). Directories are created; JSON never contains NaN.
    """
    if fmt not in EXPORT_FORMATS:
        raise ValueError(f"export format must be 'csv' or 'json', got {fmt!r}")
    trades = chronological(closed)
    records = [trade_record(c, slippage_pct=slippage_pct, fee_pct=fee_pct) for c in trades]
    out = Path(path)
    if fmt == "csv":
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=CSV_COLUMNS, lineterminator="\n")
        writer.writeheader()
        for r in records:
            writer.writerow({k: "" if r[k] is None else r[k] for k in CSV_COLUMNS})
        data = buf.getvalue()
    else:
        docs = []
        for c, r in zip(trades, records, strict=True):
            v = _view(c)
            doc = {k: _json_safe(val) for k, val in r.items()}
            doc["entries"] = [{"price": e.price, "cost": e.cost, "timestamp": e.timestamp} for e in v.entries]
            doc["partials"] = [
                {
                    "kind": p.kind,
                    "percent": p.percent,
                    "current_price": p.current_price,
                    "cost_basis_at_close": p.cost_basis_at_close,
                    "entry_count_at_close": p.entry_count_at_close,
                    "timestamp": p.timestamp,
                }
                for p in v.partials
            ]
            docs.append(doc)
        data = json.dumps(docs, indent=2, allow_nan=False) + "\n"
    _atomic_write(out, data.encode("utf-8"))
    return out
