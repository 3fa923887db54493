"""The ccxt exchange ids, listed without importing ccxt (importing it takes seconds)."""

from __future__ import annotations

import importlib.util
from functools import cache
from pathlib import Path


@cache
def exchange_ids() -> tuple[str, ...]:
    """Every exchange id of the installed ccxt (the module names of ``ccxt.async_support``)."""
    spec = importlib.util.find_spec("ccxt")
    names: set[str] = set()
    for location in (spec.submodule_search_locations or []) if spec else []:
        folder = Path(location) / "async_support"
        names.update(p.stem for p in folder.glob("*.py") if not p.stem.startswith("_"))
    if not names:  # an unusual installation (zip, frozen): ask ccxt itself
        import ccxt

        names.update(ccxt.exchanges)
    return tuple(sorted(names))
