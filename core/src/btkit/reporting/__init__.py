"""Reports of a run: markdown (always), an interactive HTML page (bokeh) and PNG charts (matplotlib),
CSV/JSON trade exports and the report family (schedule, partials/breakeven, per-signal extremes,
performance, heat). The plotting libraries are imported only when an HTML or PNG report is written
(extra ``btkit[plot]``). docs/reports.md describes every part.
"""

from btkit.reporting.dump import (
    DEFAULT_FORMATS,
    REPORT_FORMATS,
    dump_portfolio_report,
    dump_report,
    fetch_chart_candles,
    newest_report,
    parse_formats,
)
from btkit.reporting.family import Family, backtest_family, family_data
from btkit.reporting.files import (
    CSV_COLUMNS,
    DEFAULT_DUMP_DIR,
    EXPORT_FORMATS,
    default_report_dir,
    export_trades,
    report_filename,
    safe_name,
    trade_record,
    write_report,
)
from btkit.reporting.markdown import (
    NA,
    SIGNAL_COLUMNS,
    STAT_ROWS,
    fmt_duration,
    fmt_money,
    fmt_pct,
    fmt_price,
    fmt_time,
    format_stat,
    render_markdown,
    statistics_lines,
)

__all__ = [
    "CSV_COLUMNS",
    "DEFAULT_DUMP_DIR",
    "DEFAULT_FORMATS",
    "EXPORT_FORMATS",
    "NA",
    "REPORT_FORMATS",
    "SIGNAL_COLUMNS",
    "STAT_ROWS",
    "Family",
    "backtest_family",
    "default_report_dir",
    "dump_portfolio_report",
    "dump_report",
    "export_trades",
    "family_data",
    "fetch_chart_candles",
    "fmt_duration",
    "fmt_money",
    "fmt_pct",
    "fmt_price",
    "fmt_time",
    "format_stat",
    "newest_report",
    "parse_formats",
    "render_markdown",
    "report_filename",
    "safe_name",
    "statistics_lines",
    "trade_record",
    "write_report",
]
