"""Copy persisted live state from one backend to another (``btkit persistence copy --from A --to B``)."""

from __future__ import annotations

from collections.abc import Sequence

from btkit.persist.backend import DOMAINS, Backend, Change


def copy_state(src: Backend, dst: Backend, domains: Sequence[str] = DOMAINS) -> int:
    """Copy every document of ``domains`` from ``src`` to ``dst``; return how many were copied.

    Both backends must already be open (``src`` may be non-exclusive; open ``dst`` with
    ``exclusive=True`` so no live process writes to it meanwhile). Everything is read first, so a
    corrupt source document (:class:`btkit.errors.CorruptStateError`, quarantined in ``src``) aborts
    the copy before anything is written; then all documents go to ``dst`` in one ``write`` batch —
    one transaction on backends with ``atomic_batches``, document by document on the file backend.
    Documents already in ``dst`` under other keys are left alone; same keys are overwritten.
    """
    changes: list[Change] = []
    for domain in domains:
        for key in sorted(src.keys(domain)):
            document = src.read(domain, key)
            if document is not None:  # deleted between keys() and read()
                changes.append(Change(domain, key, document))
    if changes:
        dst.write(changes)
    return len(changes)
