"""What one real ``btkit backtest --report html,md,png --export csv,json`` wrote: the numbers agree across
HTML, markdown, CSV and JSON (each parsed back), the PNG is a real chart, the family sections are there,
and ``btkit report open`` links the newest HTML."""

from __future__ import annotations

import csv
import json
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
from report_helpers import Run, btkit_cli


class Tables(HTMLParser):
    """Every ``<table id=…>`` of a page as rows of cell texts (header row first)."""

    def __init__(self) -> None:
        super().__init__()
        self.tables: dict[str, list[list[str]]] = {}
        self._id: str | None = None
        self._row: list[str] | None = None
        self._cell: list[str] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "table":
            self._id = dict(attrs).get("id") or f"anon{len(self.tables)}"
            self.tables[self._id] = []
        elif tag == "tr" and self._id:
            self._row = []
        elif tag in ("td", "th") and self._row is not None:
            self._cell = []

    def handle_endtag(self, tag: str) -> None:
        if tag in ("td", "th") and self._cell is not None and self._row is not None:
            self._row.append("".join(self._cell).strip())
            self._cell = None
        elif tag == "tr" and self._row is not None and self._id:
            self.tables[self._id].append(self._row)
            self._row = None
        elif tag == "table":
            self._id = None

    def handle_data(self, data: str) -> None:
        if self._cell is not None:
            self._cell.append(data)


def md_table(text: str, heading: str) -> list[list[str]]:
    section = text.split(f"\n## {heading}\n", 1)[1].split("\n## ", 1)[0]
    rows = []
    for ln in section.splitlines():
        if ln.startswith("|"):
            rows.append(ln)
        elif rows:
            break  # the first table of the section only
    cells = [[c.strip().replace("\\|", "|") for c in _split(r)] for r in rows]
    return [cells[0], *cells[2:]]  # header, then the body (without the |---| line)


def _split(row: str) -> list[str]:
    out, cur, esc = [], "", False
    for ch in row.strip()[1:-1]:
        if esc:
            cur += ch
            esc = False
        elif ch == "\\":
            cur += ch
            esc = True
        elif ch == "|":
            out.append(cur)
            cur = ""
        else:
            cur += ch
    return [*out, cur]


def test_html_markdown_csv_and_json_show_the_same_numbers(demo_run: Run) -> None:
    page = Tables()
    page.feed(demo_run.one(".html").read_text(encoding="utf-8"))
    md = demo_run.one(".md").read_text(encoding="utf-8")
    with demo_run.one(".csv").open(newline="", encoding="utf-8") as fh:
        csv_rows = {r["id"]: r for r in csv.DictReader(fh)}
    json_rows = {d["id"]: d for d in json.loads(demo_run.one(".json").read_text(encoding="utf-8"))}
    html_trades, md_trades = page.tables["trades"], md_table(md, "Signals (newest first)")
    assert html_trades[0] == md_trades[0]  # the same columns
    assert html_trades[1:] == md_trades[1:]  # the same cells, the same order (newest first)
    cols = html_trades[0]
    assert len(html_trades) - 1 == len(csv_rows) == len(json_rows) > 0
    for row in html_trades[1:]:
        r = dict(zip(cols, row, strict=True))
        c, j = csv_rows[r["ID"]], json_rows[r["ID"]]
        pnl = float(r["PnL %"].rstrip("%"))
        assert abs(pnl - float(c["pnl_percentage"])) < 0.006 and abs(pnl - j["pnl_percentage"]) < 0.006
        assert r["Close reason"] == c["close_reason"] == j["close_reason"]
        assert r["Opened (UTC)"] == c["opened_at_utc"] == j["opened_at_utc"]
        assert abs(float(r["Close"].replace(",", "")) - j["price_close"]) <= 1e-6 * j["price_close"]
    # the statistics table: identical in both, and its sum of pnl is the exports' sum
    html_stats = dict(tuple(r) for r in page.tables["statistics"][1:])
    md_stats = dict(tuple(r) for r in md_table(md, "Statistics")[1:])
    assert html_stats == md_stats
    total = sum(float(c["pnl_percentage"]) for c in csv_rows.values())
    assert abs(float(html_stats["Sum of per-trade pnl % (not a return)"].rstrip("%")) - total) < 0.006
    assert int(html_stats["Closed signals"]) == len(json_rows)
    # the family: the same sections in both formats
    for tab, heading in (
        ("extremes", "Highest profit and max drawdown per signal"),
        ("heat", "Heat (per symbol)"),
    ):
        assert f"## {heading}" in md and len(page.tables[tab]) - 1 == len(md_table(md, heading)) - 1
    assert (
        "## Schedule" in md
        and "## Partials and breakeven" in md
        and "## Performance (timing per phase)" in md
    )
    phases = [r[0] for r in md_table(md, "Performance (timing per phase)")[1:]]
    assert "backtest: run per symbol" in phases and "report: html" in phases


def test_the_png_is_a_dated_chart_with_a_drawdown_panel(demo_run: Run) -> None:
    from PIL import Image

    png = demo_run.one(".md").with_suffix(".png")
    assert f"![Equity curve]({png.name})" in demo_run.one(".md").read_text(encoding="utf-8")
    img = np.asarray(Image.open(png).convert("RGB")).astype(int)
    assert img.shape == (500, 1000, 3)
    r, g, b = img[..., 0], img[..., 1], img[..., 2]
    blue = (b > 150) & (r < 80) & (g > 90) & (g < 150)  # the equity line (#1f77b4)
    red = (r > 200) & (g < 120) & (b < 120)  # the drawdown line (#d62728)
    rows_blue, rows_red = np.nonzero(blue.any(axis=1))[0], np.nonzero(red.any(axis=1))[0]
    assert blue.sum() > 300 and red.sum() > 100, (blue.sum(), red.sum())
    assert rows_red.mean() > rows_blue.mean()  # drawdown panel under the equity panel
    cols = np.nonzero(blue.any(axis=0))[0]
    assert cols.max() - cols.min() > 500  # the curve spans the time axis
    dark = ((r < 60) & (g < 60) & (b < 60)).sum()
    assert dark > 2000  # title, tick labels and dates are drawn text


def test_report_open_prints_a_file_link_to_the_newest_html(demo_run: Run) -> None:
    out = btkit_cli(demo_run.cwd, "report", "open", "--no-open")
    assert out.returncode == 0, out.stderr
    # the run's last HTML is its portfolio page (written after the per-symbol one, a later -<ts>)
    last = next(ln for ln in reversed(demo_run.stdout.splitlines()) if ln.startswith("portfolio report: "))
    newest = (demo_run.cwd / last.split(": ", 1)[1]).resolve()
    assert newest.suffix == ".html" and newest.name.startswith("portfolio_")
    assert out.stdout.strip() == newest.as_uri()
    html = demo_run.one(".html")
    stem, _, _ts = html.stem.rpartition("-")
    later = html.with_name(f"{stem}-9999999999999.html")
    later.write_bytes(html.read_bytes())  # a newer run's report: now that one
    again = btkit_cli(demo_run.cwd, "report", "open", "--no-open")
    later.unlink()
    assert again.stdout.strip() == later.resolve().as_uri()
    empty = btkit_cli(demo_run.cwd, "report", "open", "--no-open", "--dump-dir", "nothing-here")
    assert empty.returncode == 2 and empty.stderr.count("\n") == 1 and "no report under" in empty.stderr


def test_the_summary_is_a_table_and_progress_is_plain_when_not_a_tty(demo_run: Run) -> None:
    header = next(ln for ln in demo_run.stdout.splitlines() if ln.startswith("symbol") and "win rate" in ln)
    assert header.split()[:3] == ["symbol", "trades", "win"]
    progress = [ln for ln in demo_run.stderr.splitlines() if ln.startswith("progress ")]
    assert progress[0].startswith("progress BTCUSDT 0%") and progress[-1].startswith(
        "progress BTCUSDT 100% eta"
    )
    assert "\r" not in demo_run.stderr and "\x1b[" not in demo_run.stderr + demo_run.stdout


def test_bad_report_formats_are_a_usage_error(tmp_path: Path) -> None:
    out = btkit_cli(tmp_path, "backtest", "--report", "html,pdf")
    assert out.returncode == 2 and out.stderr.count("\n") == 1 and "--report takes" in out.stderr
    assert not (tmp_path / "dump").exists()


def test_live_reports_show_the_same_family(tmp_path: Path) -> None:
    paper = btkit_cli(tmp_path, "paper", "--replay-from", "20240101", "--replay-to", "20240103")
    assert paper.returncode == 0, paper.stderr[-2000:]
    state = "dump/replay/20240101-20240103"  # a replay keeps its state apart (issue 11)
    out = btkit_cli(tmp_path, "report", "--dump-dir", state, "--report", "html,md", "--out", "live-reports")
    assert out.returncode == 0, out.stderr[-2000:]
    mds = list((tmp_path / "live-reports").glob("*_live-*.md"))
    assert len(mds) == 1, out.stdout
    md = mds[0].read_text(encoding="utf-8")
    for heading in ("Statistics", "Schedule", "Partials and breakeven", "Heat (per symbol)"):
        assert f"\n## {heading}\n" in md
    page = Tables()
    page.feed(mds[0].with_suffix(".html").read_text(encoding="utf-8"))
    closed = int(dict(tuple(r) for r in page.tables["statistics"][1:])["Closed signals"])
    assert closed > 0 and len(page.tables["trades"]) - 1 == closed
    assert dict(tuple(r) for r in page.tables["statistics"][1:]) == dict(
        tuple(r) for r in md_table(md, "Statistics")[1:]
    )
