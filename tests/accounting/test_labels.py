"""Statistics labels (issue 11, item 9): per-trade sums labelled as such, the compounded return first,
and nothing below −100 % presented as a return."""

from __future__ import annotations

from btkit.reporting import STAT_ROWS, render_markdown
from btkit.stats import Statistics


def test_the_compounded_return_leads_and_sums_of_percentages_say_they_are_not_returns() -> None:
    assert STAT_ROWS[0][0] == "total_return"
    labels = dict((name, label) for name, label, _ in STAT_ROWS)
    for name in ("total_pnl", "expected_yearly_returns"):
        assert "not a return" in labels[name]
    for name in ("long_pnl", "short_pnl"):
        assert "sum of per-trade" in labels[name]
    for name, label in labels.items():
        if "return" in label.lower() and "not a return" not in label:
            assert name == "total_return", (name, label)


def test_a_sum_below_minus_100_is_never_called_a_return() -> None:
    stats = Statistics(total_signals=40, total_pnl=-115.0, expected_yearly_returns=-207.0, total_return=-69.0)
    text = render_markdown("x", stats)
    for line in text.splitlines():
        if "-115.00%" in line or "-207.00%" in line:
            assert "not a return" in line, line
    assert "| Compounded return (trades one after another) | -69.00% |" in text
