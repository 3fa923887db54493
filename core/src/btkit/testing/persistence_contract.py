"""The contract test suite every persistence backend passes (the built-in file backend included).

A backend package subclasses :class:`PersistenceContract` in its tests and overrides three fixtures::

    from btkit.testing import PersistenceContract

    class TestMyBackendContract(PersistenceContract):
        @pytest.fixture
        def make_backend(self, tmp_path):
            # a factory: every call returns a NEW, not yet opened backend over the SAME store
            return lambda: MyBackend(path=tmp_path / "state.db")

        @pytest.fixture
        def corrupt_document(self, tmp_path):
            def corrupt(domain, key):
                ...  # make the stored document for (domain, key) unparseable, bypassing the backend
            return corrupt

        @pytest.fixture
        def raw_document(self, tmp_path):
            def store(domain, key, raw: bytes):
                ...  # store exactly these bytes as the document for (domain, key), bypassing the backend
            return store

Every test is generic: it uses only the :class:`btkit.persist.Backend` protocol plus those three
fixtures. Nothing here may be skipped by a backend; a backend that cannot pass a test is not a
btkit persistence backend.
"""

from __future__ import annotations

import logging
import math
import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from btkit.errors import CorruptStateError, PersistenceError, StateLockedError
from btkit.persist.backend import Backend, Change, Key
from btkit.persist.file import MAX_DOCUMENT_BYTES, MAX_DOCUMENT_DEPTH
from btkit.persist.keys import MAX_PART_CHARS

MakeBackend = Callable[[], Backend]
CorruptDocument = Callable[[str, Key], None]
RawDocument = Callable[[str, Key, bytes], None]


def _nested(levels: int) -> bytes:
    return b'{"v": ' + b"[" * levels + b"]" * levels + b"}"


#: Stored bytes that are not a usable document although each is, or looks like, JSON (issue 10 #5):
#: reading any of them must quarantine it (CorruptStateError), never raise anything else.
UNREASONABLE_DOCUMENTS: dict[str, bytes] = {
    "nested-5000-levels": _nested(5000),  # RecursionError in a naive json.loads
    "nested-past-the-cap": _nested(MAX_DOCUMENT_DEPTH + 1),
    "larger-than-the-cap": b'{"pad": "' + b"x" * MAX_DOCUMENT_BYTES + b'"}',
    "top-level-list": b"[1, 2]",
    "duplicate-keys": b'{"v": 1, "v": 2}',
    "huge-exponent": b'{"v": 1e999}',
}

#: Key parts that break naive backends: path traversal, separators, ccxt futures symbols, unicode,
#: already-encoded-looking text, Redis separators.
HOSTILE_PARTS: tuple[str, ...] = (
    "../x",
    "a/b",
    "BTC/USDT:USDT",
    "ビットコイン/€",
    ".",
    "..",
    "a b",
    "%41",
    "x:y",
    "back\\slash",
    "-",
    "_",
    "new\nline",
)

SAMPLE: dict[str, Any] = {
    "schema_version": 1,
    "id": "sig-1",
    "position": "long",
    "price_open": 42123.5,
    "price_take_profit": 43000.0,
    "big": 2**62,
    "negative": -1.25e-9,
    "flag": True,
    "nothing": None,
    "note": 'ünïcødé ✓ "quoted" \\ back',
    "entries": [{"price": 42000.0, "cost": 100}, {"price": 41000.25, "cost": 50}],
    "nested": {"a": {"b": [1, 2.5, "three", None, False]}},
}

_LIST_DOMAINS = ("signal", "risk")


def _json_values() -> st.SearchStrategy[Any]:
    scalars = (
        st.none()
        | st.booleans()
        | st.integers(min_value=-(2**63), max_value=2**63)
        | st.floats(allow_nan=False, allow_infinity=False)
        | st.text(max_size=8)
    )
    return st.recursive(
        scalars,
        lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner, max_size=3),
        max_leaves=6,
    )


_parts = st.sampled_from((*HOSTILE_PARTS, "s1", "BTCUSDT"))
_keys = st.tuples(_parts) | st.tuples(_parts, _parts)
_documents = st.dictionaries(st.text(max_size=5), _json_values(), max_size=4)
_changes = st.builds(
    Change, domain=st.sampled_from(_LIST_DOMAINS), key=_keys, document=st.none() | _documents
)
_batches = st.lists(st.lists(_changes, min_size=1, max_size=4), min_size=1, max_size=6)


def _clear(backend: Backend, domains: tuple[str, ...] = _LIST_DOMAINS) -> None:
    changes = [Change(d, k, None) for d in domains for k in backend.keys(d)]
    if changes:
        backend.write(changes)


class PersistenceContract:
    """Generic tests of the :class:`btkit.persist.Backend` protocol. Subclass it; override
    ``make_backend`` and ``corrupt_document`` (see the module docstring)."""

    # ------------------------------------------------------------ fixtures to override
    @pytest.fixture
    def make_backend(self) -> MakeBackend:
        pytest.fail(
            "override the `make_backend` fixture: return a factory of fresh, unopened backends over one store"
        )

    @pytest.fixture
    def corrupt_document(self) -> CorruptDocument:
        pytest.fail("override the `corrupt_document` fixture: return corrupt(domain, key) for your store")

    @pytest.fixture
    def raw_document(self) -> RawDocument:
        pytest.fail(
            "override the `raw_document` fixture: return store(domain, key, raw_bytes) that stores exactly "
            "those bytes as the document, bypassing the backend"
        )

    # ------------------------------------------------------------ fixtures provided
    @pytest.fixture
    def backend(self, make_backend: MakeBackend) -> Iterator[Backend]:
        """An exclusively opened backend, as the live engine uses it; closed after the test."""
        b = make_backend()
        b.open(exclusive=True)
        try:
            yield b
        finally:
            b.close()

    @pytest.fixture
    def reopen(self, make_backend: MakeBackend) -> Iterator[Callable[[], Backend]]:
        """Open a second, non-exclusive instance over the same store (closed after the test)."""
        opened: list[Backend] = []

        def _reopen() -> Backend:
            b = make_backend()
            b.open()
            opened.append(b)
            return b

        yield _reopen
        for b in opened:
            b.close()

    # ------------------------------------------------------------ shape
    def test_satisfies_the_protocol(self, backend: Backend) -> None:
        assert isinstance(backend, Backend)
        assert isinstance(backend.name, str) and backend.name
        assert isinstance(backend.atomic_batches, bool)

    # ------------------------------------------------------------ basic documents
    def test_roundtrip(self, backend: Backend) -> None:
        backend.write([Change("signal", ("smacross", "BTCUSDT"), SAMPLE)])
        assert backend.read("signal", ("smacross", "BTCUSDT")) == SAMPLE

    def test_missing_document_reads_none(self, backend: Backend) -> None:
        assert backend.read("signal", ("nobody", "NOTHING")) is None
        assert backend.keys("schedule") == []

    def test_overwrite(self, backend: Backend) -> None:
        key = ("s", "ETHUSDT")
        backend.write([Change("signal", key, {"v": 1, "extra": "gone later"})])
        backend.write([Change("signal", key, {"v": 2})])
        assert backend.read("signal", key) == {"v": 2}
        assert backend.keys("signal") == [key]

    def test_delete(self, backend: Backend) -> None:
        key = ("s", "ETHUSDT")
        backend.write([Change("signal", key, {"v": 1}), Change("signal", ("s", "KEEP"), {"v": 9})])
        backend.write([Change("signal", key, None)])
        assert backend.read("signal", key) is None
        assert backend.keys("signal") == [("s", "KEEP")]
        backend.write([Change("signal", key, None)])  # deleting a missing document is a no-op
        assert backend.read("signal", ("s", "KEEP")) == {"v": 9}

    def test_empty_batch_is_a_noop(self, backend: Backend) -> None:
        backend.write([])
        assert backend.keys("signal") == []

    def test_batch_of_several_changes(self, backend: Backend) -> None:
        backend.write([Change("signal", ("s", "OLD"), {"v": 0})])
        backend.write(
            [
                Change("signal", ("s", "A"), {"v": 1}),
                Change("schedule", ("s", "A"), {"v": 2}),
                Change("strategy", ("s",), {"paused": False}),
                Change("signal", ("s", "OLD"), None),
                Change("risk", ("default",), {"positions": []}),
                Change("signal", ("s", "A"), {"v": 3}),  # a later change of the same key wins
            ]
        )
        assert backend.read("signal", ("s", "A")) == {"v": 3}
        assert backend.read("schedule", ("s", "A")) == {"v": 2}
        assert backend.read("strategy", ("s",)) == {"paused": False}
        assert backend.read("risk", ("default",)) == {"positions": []}
        assert backend.read("signal", ("s", "OLD")) is None
        assert backend.keys("signal") == [("s", "A")]

    def test_domains_are_separate(self, backend: Backend) -> None:
        backend.write(
            [Change("signal", ("s", "X"), {"d": "signal"}), Change("schedule", ("s", "X"), {"d": "sch"})]
        )
        backend.write([Change("schedule", ("s", "X"), None)])
        assert backend.read("signal", ("s", "X")) == {"d": "signal"}
        assert backend.keys("schedule") == []
        assert backend.keys("levels") == []

    # ------------------------------------------------------------ keys
    def test_keys_with_hostile_parts_roundtrip(self, backend: Backend) -> None:
        expected: set[Key] = set()
        for i, part in enumerate(HOSTILE_PARTS):
            for key in ((part,), ("strat/../x", part), (part, "BTC/USDT:USDT")):
                backend.write([Change("signal", key, {"i": i, "key": list(key)})])
                expected.add(key)
        listed = backend.keys("signal")
        assert len(listed) == len(set(listed))
        assert set(listed) == expected
        for key in expected:
            doc = backend.read("signal", key)
            assert doc is not None and tuple(doc["key"]) == key
        assert backend.keys("schedule") == []

    def test_keys_that_prefix_each_other(self, backend: Backend) -> None:
        backend.write(
            [
                Change("levels", ("a",), {"n": 1}),
                Change("levels", ("a", "b"), {"n": 2}),
                Change("levels", ("a", "b", "c"), {"n": 3}),
            ]
        )
        assert sorted(backend.keys("levels")) == [("a",), ("a", "b"), ("a", "b", "c")]
        backend.write([Change("levels", ("a",), None)])
        assert backend.read("levels", ("a", "b")) == {"n": 2}
        assert sorted(backend.keys("levels")) == [("a", "b"), ("a", "b", "c")]

    @pytest.mark.parametrize(
        "bad_key",
        [("s", "BTC\x00USDT"), ("s", "x" * (MAX_PART_CHARS + 1)), ("s", ""), ()],
        ids=["nul", "too-long", "empty-part", "empty-key"],
    )
    def test_bad_key_parts_are_rejected_and_nothing_is_written(self, backend: Backend, bad_key: Key) -> None:
        with pytest.raises(PersistenceError):
            backend.write([Change("signal", ("s", "GOOD"), {"v": 1}), Change("signal", bad_key, {"v": 2})])
        assert backend.keys("signal") == []
        with pytest.raises(PersistenceError):
            backend.read("signal", bad_key)

    def test_longest_allowed_part_works(self, backend: Backend) -> None:
        keys = [("s", "x" * MAX_PART_CHARS), ("é" * 30, "BTC/USDT:USDT")]  # é encodes to %C3%A9
        backend.write([Change("signal", key, {"v": 1}) for key in keys])
        for key in keys:
            assert backend.read("signal", key) == {"v": 1}
        assert sorted(backend.keys("signal")) == sorted(keys)

    # ------------------------------------------------------------ strict documents
    @pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf], ids=["nan", "inf", "-inf"])
    def test_nan_and_infinity_are_refused_and_nothing_is_written(self, backend: Backend, bad: float) -> None:
        backend.write([Change("signal", ("s", "BAD"), {"v": "before"})])
        with pytest.raises(PersistenceError) as err:
            backend.write(
                [
                    Change("signal", ("s", "GOOD"), {"v": 1}),
                    Change("signal", ("s", "BAD"), {"nested": {"price": [1.0, bad]}}),
                ]
            )
        assert "\n" not in str(err.value)
        assert backend.read("signal", ("s", "GOOD")) is None
        assert backend.read("signal", ("s", "BAD")) == {"v": "before"}

    @pytest.mark.parametrize(
        "bad", [[1, 2], "text", 3, {"v": object()}], ids=["list", "str", "int", "object"]
    )
    def test_non_json_documents_are_refused(self, backend: Backend, bad: Any) -> None:
        with pytest.raises(PersistenceError):
            backend.write([Change("signal", ("s", "GOOD"), {"v": 1}), Change("signal", ("s", "X"), bad)])
        assert backend.keys("signal") == []

    # ------------------------------------------------------------ corruption and quarantine
    def test_corrupt_document_is_quarantined_never_read_as_missing(
        self, backend: Backend, corrupt_document: CorruptDocument, caplog: pytest.LogCaptureFixture
    ) -> None:
        key = ("s", "BTC/USDT:USDT")
        backend.write([Change("signal", key, {"v": 1}), Change("signal", ("s", "OTHER"), {"v": 2})])
        corrupt_document("signal", key)
        with caplog.at_level(logging.ERROR), pytest.raises(CorruptStateError) as err:
            backend.read("signal", key)
        message = str(err.value)
        assert "\n" not in message and message
        assert any(r.levelno >= logging.ERROR for r in caplog.records), "quarantine must log an ERROR"
        # moved aside: no longer there, no longer listed, the rest untouched, and the key is writable again
        assert backend.read("signal", key) is None
        assert backend.keys("signal") == [("s", "OTHER")]
        assert backend.read("signal", ("s", "OTHER")) == {"v": 2}
        backend.write([Change("signal", key, {"v": 3})])
        assert backend.read("signal", key) == {"v": 3}

    def test_a_reader_without_the_lock_reports_a_corrupt_document_and_leaves_it(
        self, backend: Backend, corrupt_document: CorruptDocument, reopen: Callable[[], Backend]
    ) -> None:
        """btkit serve / btkit report read the owner's state without its lock: they never move its documents."""
        key = ("s", "BTC/USDT:USDT")
        backend.write([Change("signal", key, {"v": 1})])
        corrupt_document("signal", key)
        reader = reopen()
        for _ in range(2):  # still there the second time: nothing was moved
            with pytest.raises(CorruptStateError, match="left in place"):
                reader.read("signal", key)
        assert reader.keys("signal") == [key]
        with pytest.raises(CorruptStateError, match=r"moved|renamed"):  # the owner quarantines it
            backend.read("signal", key)

    @pytest.mark.parametrize("name", sorted(UNREASONABLE_DOCUMENTS))
    def test_unreasonable_documents_are_quarantined(
        self, backend: Backend, raw_document: RawDocument, name: str
    ) -> None:
        """Issue 10 #5: deep nesting, oversized, not an object, ...: corrupt, quarantined, and the key
        usable again — never a RecursionError, never a document read as missing without a trace."""
        key = ("s", "BTCUSDT")
        backend.write([Change("signal", key, {"v": 0}), Change("signal", ("s", "OTHER"), {"v": 2})])
        raw_document("signal", key, UNREASONABLE_DOCUMENTS[name])
        with pytest.raises(CorruptStateError) as err:
            backend.read("signal", key)
        assert "\n" not in str(err.value) and len(str(err.value)) < 2000
        assert backend.read("signal", key) is None
        assert backend.keys("signal") == [("s", "OTHER")]
        backend.write([Change("signal", key, {"v": 3})])
        assert backend.read("signal", key) == {"v": 3}

    @pytest.mark.parametrize("what", ["too-deep", "too-large"])
    def test_documents_that_could_not_be_read_back_are_refused(self, backend: Backend, what: str) -> None:
        deep: Any = 1
        for _ in range(5000 if what == "too-deep" else 0):
            deep = [deep]
        document = {"v": deep} if what == "too-deep" else {"pad": "x" * MAX_DOCUMENT_BYTES}
        with pytest.raises(PersistenceError) as err:
            backend.write([Change("signal", ("s", "GOOD"), {"v": 1}), Change("signal", ("s", "X"), document)])
        assert "\n" not in str(err.value)
        assert backend.keys("signal") == []

    def test_quarantine_moves_a_document_aside(self, backend: Backend) -> None:
        key = ("s", "ETH/USDT")
        backend.write([Change("risk", key, {"v": 1}), Change("risk", ("s", "KEEP"), {"v": 2})])
        where = backend.quarantine("risk", key, "failed validation: unknown field 'x'")
        assert isinstance(where, str) and where
        assert backend.read("risk", key) is None
        assert backend.keys("risk") == [("s", "KEEP")]
        # quarantining twice at different times keeps both copies
        backend.write([Change("risk", key, {"v": 3})])
        assert backend.quarantine("risk", key, "again") != where

    def test_quarantine_of_a_missing_document_raises(self, backend: Backend) -> None:
        with pytest.raises(PersistenceError):
            backend.quarantine("risk", ("s", "NONE"), "nothing there")

    # ------------------------------------------------------------ lifecycle
    def test_exclusive_open_is_refused_while_held_and_the_holder_keeps_working(
        self, make_backend: MakeBackend
    ) -> None:
        first = make_backend()
        first.open(exclusive=True)
        try:
            second = make_backend()
            with pytest.raises(StateLockedError) as err:
                second.open(exclusive=True)
            assert "\n" not in str(err.value)
            second.close()  # closing a backend whose open failed is safe
            first.write([Change("signal", ("s", "A"), {"v": 1})])
            assert first.read("signal", ("s", "A")) == {"v": 1}
        finally:
            first.close()
        third = make_backend()
        third.open(exclusive=True)  # released by close()
        try:
            assert third.read("signal", ("s", "A")) == {"v": 1}
        finally:
            third.close()

    def test_open_again_is_harmless(self, backend: Backend) -> None:
        backend.write([Change("signal", ("s", "A"), {"v": 1})])
        backend.open(exclusive=True)
        backend.open()
        assert backend.read("signal", ("s", "A")) == {"v": 1}

    def test_non_exclusive_open_coexists_with_the_owner(
        self, backend: Backend, reopen: Callable[[], Backend]
    ) -> None:
        backend.write([Change("signal", ("s", "A"), {"v": 1})])
        reader = reopen()
        assert reader.read("signal", ("s", "A")) == {"v": 1}
        assert reader.keys("signal") == [("s", "A")]

    def test_close_and_reopen_keeps_data(self, make_backend: MakeBackend) -> None:
        docs = {("s", "BTC/USDT:USDT"): SAMPLE, ("s", ".."): {"v": 2}, ("t",): {"v": 3}}
        b = make_backend()
        b.open(exclusive=True)
        b.write([Change("signal", k, v) for k, v in docs.items()])
        b.close()
        b.close()  # idempotent
        again = make_backend()
        again.open(exclusive=True)
        try:
            assert sorted(again.keys("signal")) == sorted(docs)
            for k, v in docs.items():
                assert again.read("signal", k) == v
        finally:
            again.close()

    def test_threads_writing_different_keys(self, backend: Backend) -> None:
        errors: list[BaseException] = []

        def worker(n: int) -> None:
            try:
                for i in range(15):
                    backend.write([Change("signal", (f"t{n}", f"SYM{i}"), {"n": n, "i": i})])
                    assert backend.read("signal", (f"t{n}", f"SYM{i}")) == {"n": n, "i": i}
            except BaseException as exc:  # reported below
                errors.append(exc)

        threads = [threading.Thread(target=worker, args=(n,)) for n in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert not errors, f"concurrent writes failed: {errors!r}"
        assert len(backend.keys("signal")) == 4 * 15

    # ------------------------------------------------------------ model-based
    @settings(
        max_examples=25,
        deadline=None,
        # each backend's subclass runs this one method: different executors on purpose
        suppress_health_check=[
            HealthCheck.function_scoped_fixture,
            HealthCheck.too_slow,
            HealthCheck.differing_executors,
        ],
    )
    @given(batches=_batches)
    def test_random_writes_and_deletes_match_a_dict_model(
        self, backend: Backend, make_backend: MakeBackend, batches: list[list[Change]]
    ) -> None:
        _clear(backend)
        model: dict[tuple[str, Key], dict[str, Any]] = {}
        for batch in batches:
            backend.write(batch)
            for change in batch:
                if change.document is None:
                    model.pop((change.domain, change.key), None)
                else:
                    model[(change.domain, change.key)] = change.document
            for change in batch:
                assert backend.read(change.domain, change.key) == model.get((change.domain, change.key))
        other = make_backend()
        other.open()
        try:
            for domain in _LIST_DOMAINS:
                expected = sorted(k for d, k in model if d == domain)
                assert sorted(backend.keys(domain)) == expected
                assert sorted(other.keys(domain)) == expected
                for key in expected:
                    assert other.read(domain, key) == model[(domain, key)]
        finally:
            other.close()
