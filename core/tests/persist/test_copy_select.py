"""copy_state, the missing-backend message and the default file persistence plugin."""

from __future__ import annotations

from pathlib import Path

import pluggy
import pytest

from btkit import hookspecs
from btkit.components import PersistenceBackendSpec
from btkit.defaults import file_persistence
from btkit.errors import CorruptStateError
from btkit.persist.backend import DOMAINS, Change
from btkit.persist.copy import copy_state
from btkit.persist.file import FileBackend
from btkit.persist.select import KNOWN_BACKEND_PACKAGES, missing_backend_message
from btkit.testing.persistence_contract import HOSTILE_PARTS, SAMPLE


def opened(root: Path, *, exclusive: bool = False) -> FileBackend:
    b = FileBackend(root)
    b.open(exclusive=exclusive)
    return b


def test_copy_state_copies_every_domain_and_key(tmp_path: Path) -> None:
    src, dst = opened(tmp_path / "a"), opened(tmp_path / "b", exclusive=True)
    changes = [
        Change(d, ("s", part), {**SAMPLE, "d": d, "p": part}) for d in DOMAINS for part in HOSTILE_PARTS
    ]
    src.write(changes)
    dst.write(
        [Change("signal", ("other",), {"kept": True}), Change("signal", ("s", "BTC/USDT:USDT"), {"old": 1})]
    )
    assert copy_state(src, dst) == len(changes)
    for c in changes:
        assert dst.read(c.domain, c.key) == c.document
    assert dst.read("signal", ("other",)) == {"kept": True}
    assert copy_state(opened(tmp_path / "empty"), dst) == 0
    src.close()
    dst.close()


def test_copy_state_only_the_given_domains(tmp_path: Path) -> None:
    src, dst = opened(tmp_path / "a"), opened(tmp_path / "b")
    src.write([Change("signal", ("s",), {"v": 1}), Change("risk", ("r",), {"v": 2})])
    assert copy_state(src, dst, domains=("risk",)) == 1
    assert dst.keys("signal") == [] and dst.read("risk", ("r",)) == {"v": 2}


def test_copy_state_aborts_before_writing_when_a_source_document_is_corrupt(tmp_path: Path) -> None:
    src, dst = opened(tmp_path / "a"), opened(tmp_path / "b")
    src.write([Change("signal", ("a",), {"v": 1}), Change("signal", ("z",), {"v": 2})])
    (tmp_path / "a" / "signal" / "z.json").write_text("{broken")
    with pytest.raises(CorruptStateError):
        copy_state(src, dst)
    assert dst.keys("signal") == []


def test_missing_backend_message_names_the_package() -> None:
    assert missing_backend_message("redis") == (
        "persistence backend 'redis' is not installed; pip install btkit-redis"
    )
    assert missing_backend_message("sqlite").endswith("pip install btkit-sqlite")
    assert KNOWN_BACKEND_PACKAGES == {"sqlite": "btkit-sqlite", "redis": "btkit-redis"}
    other = missing_backend_message("mongo")
    assert "'mongo'" in other and "btkit plugins" in other and "\n" not in other


def test_default_plugin_offers_the_file_backend(tmp_path: Path) -> None:
    pm = pluggy.PluginManager(hookspecs.PROJECT)
    pm.add_hookspecs(hookspecs)
    pm.register(file_persistence)
    pm.check_pending()
    specs = [s for group in pm.hook.btkit_persistence_backends() for s in group]
    assert specs == [PersistenceBackendSpec(name="file", factory=FileBackend, dist="btkit")]
    backend = specs[0].factory(root=tmp_path / "dump")
    backend.open()
    backend.write([Change("signal", ("s",), {"v": 1})])
    assert backend.read("signal", ("s",)) == {"v": 1}
    backend.close()
