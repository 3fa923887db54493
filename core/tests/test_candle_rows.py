"""Issue 10 item 10: ``btkit data import`` holds a file to strict rules; each bad row is refused with its
row number and the rule broken, and nothing is stored."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from btkit.errors import CandleDataError
from btkit.store import CandleStore, import_file

T0 = 1_704_067_200_000  # 2024-01-01T00:00:00Z
GOOD = [T0, 100.0, 101.0, 99.0, 100.5, 3.0]


def rows_with(bad: list[object]) -> list[list[object]]:
    """Two good rows, then the bad one as row 3."""
    return [GOOD, [T0 + 60_000, 100.5, 102.0, 100.0, 101.0, 2.0], bad]


T2 = T0 + 120_000


@pytest.mark.parametrize(
    ("bad", "rule"),
    [
        ([T2 * 1000, 1, 2, 0.5, 1.5, 1], "micro- or nanoseconds"),
        ([T2 + 30_000, 1, 2, 0.5, 1.5, 1], "not on the 1-minute grid"),
        ([T2 + 0.5, 1, 2, 0.5, 1.5, 1], "not a whole millisecond"),
        ([T2, 1, 2, 0.5, 2.5, 1], "above high"),
        ([T2, 0.4, 2, 0.5, 1.5, 1], "below low"),
        ([-60_000, 1, 2, 0.5, 1.5, 1], "before 2009"),
        ([T2, "1", 2, 0.5, 1.5, 1], "not a number"),
        ([T2, True, 2, 0.5, 1.5, 1], "not a number"),
        ([T2, 1e308, 1e308, 0.5, 1.5, 1], "price is above"),
        ([T2, 1, 2, 0.5, 1.5, -1], "volume"),
        ([T2, 1, 2, 0.5, 1.5], "expected [timestamp"),
        ([T0 + 60_000, 100.5, 102.0, 100.0, 101.0, 2.0], "repeats the timestamp of row 2"),
        ([T0, 100.0, 101.0, 99.0, 100.5, 3.0], "is earlier than row 2"),
    ],
)
def test_each_bad_row_is_named_with_its_rule_and_nothing_is_stored(
    tmp_path: Path, bad: list, rule: str
) -> None:
    path = tmp_path / "c.json"
    path.write_text(json.dumps(rows_with(bad)))
    store = CandleStore(tmp_path / "data")
    with pytest.raises(CandleDataError) as info:
        import_file(path, "ex", "S", "1m", store)
    message = str(info.value)
    assert "c.json row 3:" in message and rule in message, message
    assert "\n" not in message and "np.float64" not in message
    stored = [p for p in (tmp_path / "data").rglob("*") if p.is_file() and not p.name.endswith(".lock")]
    assert stored == [], "a refused file stored candles"


def test_a_clean_file_still_imports(tmp_path: Path) -> None:
    path = tmp_path / "c.json"
    path.write_text(json.dumps([GOOD, [T0 + 60_000, 100.5, 102.0, 100.0, 101.0, 2.0]]))
    assert import_file(path, "ex", "S", "1m", CandleStore(tmp_path / "data")) == 2


def test_the_cli_prints_the_row_and_the_rule_on_one_line(tmp_path: Path) -> None:
    (tmp_path / "c.json").write_text(json.dumps(rows_with([T2, 1, 2, 0.5, 2.5, 1])))
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "btkit.cli",
            "data",
            "import",
            "c.json",
            "--exchange",
            "sim",
            "--symbol",
            "X",
            "--data-dir",
            "d",
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode != 0
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and "row 3" in lines[0] and "above high" in lines[0], out.stderr
