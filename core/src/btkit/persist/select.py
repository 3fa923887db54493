"""Help for choosing a persistence backend by name: which package provides which backend."""

from __future__ import annotations

#: First-party backends that live in their own distribution (``file`` ships with btkit itself).
KNOWN_BACKEND_PACKAGES: dict[str, str] = {"sqlite": "btkit-sqlite", "redis": "btkit-redis"}


def missing_backend_message(name: str) -> str:
    """The one-line error for a configured persistence backend that no installed plugin offers."""
    package = KNOWN_BACKEND_PACKAGES.get(name)
    if package is not None:
        return f"persistence backend {name!r} is not installed; pip install {package}"
    known = ", ".join(["file", *sorted(KNOWN_BACKEND_PACKAGES)])
    return (
        f"persistence backend {name!r} is not installed; install the plugin package that provides it "
        f"(first-party backends: {known}) and check `btkit plugins`"
    )
