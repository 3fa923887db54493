"""A real headless Chromium opens the HTML report: no console errors, the bokeh charts are drawn (canvases
inside their shadow DOM, the entry/exit markers are the trades), the trade table has one row per trade,
and a screenshot of the page is not blank."""

from __future__ import annotations

import csv
import json
import re
from pathlib import Path

import numpy as np
from report_helpers import Run, run_chromium

# A page that opens the report in an iframe and, once bokeh says its document is idle, writes what it
# finds into its own DOM (file:// pages may read each other with --allow-file-access-from-files).
PROBE = """<!DOCTYPE html><html><body><pre id="result">pending</pre>
<iframe id="f" src="REPORT" style="width:1300px;height:1000px"></iframe>
<script>
function deep(root, sel, out) {
  root.querySelectorAll(sel).forEach(function (e) { out.push(e); });
  root.querySelectorAll('*').forEach(function (e) { if (e.shadowRoot) deep(e.shadowRoot, sel, out); });
  return out;
}
function probe() {
  var w = document.getElementById('f').contentWindow, d = w.document;
  if (!w.Bokeh || !w.Bokeh.documents || !w.Bokeh.documents.length) { return setTimeout(probe, 100); }
  var doc = w.Bokeh.documents[0];
  var canvases = deep(d, 'canvas', []);
  if (canvases.length < 3) { return setTimeout(probe, 100); }
  function n(name) { var m = doc.get_model_by_name(name); return m ? m.data_source.data.t.length : -1; }
  var tip = doc.get_model_by_name('exits');
  document.getElementById('result').textContent = JSON.stringify({
    canvases: canvases.length,
    figures: ['candles', 'equity', 'drawdown'].map(function (k) { return !!doc.get_model_by_name(k); }),
    entries: n('entries'), exits: n('exits'),
    exit_reasons: tip ? Array.from(tip.data_source.data.reason) : [],
    trade_rows: d.querySelectorAll('#trades tbody tr').length,
    stat_rows: d.querySelectorAll('#statistics tbody tr').length,
    tabs: d.querySelectorAll('nav button').length,
    meta: JSON.parse(d.getElementById('btkit-report-meta').textContent)
  });
}
window.addEventListener('load', function () { setTimeout(probe, 50); });
</script></body></html>
"""


def console_errors(stderr: str) -> list[str]:
    lines = [ln for ln in stderr.splitlines() if ":CONSOLE" in ln]
    return [ln for ln in lines if re.search(r"error|uncaught|failed|refused", ln, re.IGNORECASE)]


def test_chromium_shows_the_chart_with_every_trade_and_no_console_errors(
    demo_run: Run, tmp_path: Path
) -> None:
    page = demo_run.one(".html")
    with demo_run.one(".csv").open(newline="", encoding="utf-8") as fh:
        trades = list(csv.DictReader(fh))
    assert trades, "the demo made no trades"
    probe = tmp_path / "probe.html"
    probe.write_text(PROBE.replace("REPORT", page.as_uri()), encoding="utf-8")
    out = run_chromium(
        "--allow-file-access-from-files",
        "--virtual-time-budget=20000",
        "--dump-dom",
        probe.as_uri(),
        cwd=tmp_path,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    m = re.search(r'<pre id="result">(.*?)</pre>', out.stdout, re.DOTALL)
    assert m and m.group(1) != "pending", out.stdout[:500] + out.stderr[-2000:]
    found = json.loads(m.group(1).replace("&quot;", '"'))
    assert found["canvases"] >= 3 and all(found["figures"]), found
    assert found["trade_rows"] == len(trades) == found["entries"] == found["exits"] == found["meta"]["trades"]
    assert sorted(found["exit_reasons"]) == sorted(t["close_reason"] for t in trades)
    assert found["stat_rows"] > 30 and found["tabs"] >= 8
    assert not console_errors(out.stderr), console_errors(out.stderr)
    assert any("document idle" in ln for ln in out.stderr.splitlines()), "bokeh never finished rendering"


def test_screenshot_of_the_report_is_not_blank(demo_run: Run, tmp_path: Path) -> None:
    from PIL import Image

    shot = tmp_path / "shot.png"
    out = run_chromium(
        "--window-size=1300,1000", "--virtual-time-budget=5000", f"--screenshot={shot}",
        demo_run.one(".html").as_uri(), cwd=tmp_path,
    )  # fmt: skip
    assert out.returncode == 0 and shot.is_file(), out.stderr[-2000:]
    assert not console_errors(out.stderr), console_errors(out.stderr)
    img = np.asarray(Image.open(shot).convert("RGB")).astype(int)
    assert img.shape[:2] == (1000, 1300)
    chart = img[150:600, 50:1200]  # where the candlestick figure is drawn
    r, g, b = chart[..., 0], chart[..., 1], chart[..., 2]
    green = ((g > 120) & (g - r > 60) & (g - b > 40)).sum()  # up candles #16a34a
    red = ((r > 180) & (r - g > 100) & (r - b > 100)).sum()  # down candles #dc2626
    assert green > 2000 and red > 2000, (green, red)
    assert len(np.unique(chart.reshape(-1, 3), axis=0)) > 50  # anti-aliased drawing, not a flat page
