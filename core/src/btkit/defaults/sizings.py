"""The built-in position sizing methods (fixed, percent, risk, kelly, atr) as an ordinary plugin."""

from __future__ import annotations

from btkit.accounting.sizing import BUILTIN, SizingSpec
from btkit.hookspecs import hookimpl


@hookimpl
def btkit_sizings() -> list[SizingSpec]:
    return list(BUILTIN)
