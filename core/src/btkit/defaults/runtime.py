"""The built-in runtime hook implementations, registered like any other plugin.

They delegate to the component the run selected: ``btkit_get_signal`` calls the strategy (and runs last,
so other plugins can pre-empt it), persistence hooks call the selected backend, and
``btkit_broker_commit`` calls the method on the selected broker. ``btkit_risk_check`` has no built-in
implementation: risk profiles run their own validations (see btkit.risk).
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from btkit.broker_payloads import BrokerCall
from btkit.components import StrategySpec
from btkit.hookspecs import hookimpl
from btkit.persist.backend import Backend, Change


@hookimpl(trylast=True)
def btkit_get_signal(strategy: StrategySpec, symbol: str, when: datetime, current_price: float) -> Any:
    if strategy.array is not None:  # the array form (docs/array-strategies.md): an awaitable of the bar's row
        from btkit.engine.arrays import array_signal

        return array_signal(strategy, symbol, round(when.timestamp() * 1000), current_price)
    assert strategy.get_signal is not None
    return strategy.get_signal(symbol, when, current_price)


@hookimpl(trylast=True)
def btkit_persist_read(backend: Backend, domain: str, key: tuple[str, ...]) -> Any:
    doc = backend.read(domain, key)
    return doc if doc is not None else _ABSENT


@hookimpl(trylast=True)
def btkit_persist_write(backend: Backend, changes: Sequence[Change]) -> bool:
    backend.write(changes)
    return True


@hookimpl(trylast=True)
def btkit_persist_delete(backend: Backend, domain: str, key: tuple[str, ...]) -> bool:
    backend.write([Change(domain, key, None)])
    return True


@hookimpl(trylast=True)
def btkit_broker_commit(broker: Any, call: BrokerCall) -> Any:
    method = getattr(broker, call.method, None)
    if method is None:
        return True  # every broker method is optional
    if inspect.iscoroutinefunction(method):
        return _confirm_none(method(call.payload))
    return _confirm_none(asyncio.to_thread(method, call.payload))


async def _confirm_none(awaitable: Any) -> Any:
    out = await awaitable
    return True if out is None else out


class _Absent:
    """Marks "no document" so the first-result hook stops here instead of returning None."""

    def __repr__(self) -> str:
        return "<absent>"


_ABSENT = _Absent()
ABSENT = _ABSENT
