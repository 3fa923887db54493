"""Issue 10: the state directory cannot be reached twice, escaped or poisoned (file backend)."""

from __future__ import annotations

from pathlib import Path

import pytest

from btkit.errors import StateLockedError
from btkit.persist.file import FileBackend


# ---------------------------------------------------------------- #2: one lock per state, whatever the path
@pytest.mark.parametrize("alias", ["symlink", "dotdot", "relative"])
def test_one_live_owner_per_state_directory_whatever_the_path(
    tmp_path: Path, alias: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = tmp_path / "dump"
    owner = FileBackend(root)
    owner.open(exclusive=True)
    try:
        if alias == "symlink":
            (tmp_path / "link").symlink_to(root, target_is_directory=True)
            other = tmp_path / "link"
        elif alias == "dotdot":
            (tmp_path / "sub").mkdir()
            other = tmp_path / "sub" / ".." / "dump"
        else:
            monkeypatch.chdir(tmp_path)
            other = Path("dump")
        second = FileBackend(other)
        with pytest.raises(StateLockedError, match="another btkit live process owns"):
            second.open(exclusive=True)
        second.close()
    finally:
        owner.close()
