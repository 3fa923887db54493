"""The broker transaction (40-broker-risk.md §2): call the selected broker, classify its verdict.

The engine persists the intent first, then calls :meth:`BrokerGate.call`, then applies the state change
only on ``confirmed``. ``transient`` (False, ``OrderTransientError``, any other exception, or no answer
within ``timeout_seconds``) changes nothing and is retried next tick with the same client order id;
``rejected`` (``OrderRejectedError``) is final; ``deleted`` (``OrderDeletedError``) means the order or
position is gone on the exchange. Broker code never runs in backtests.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from typing import Any, Literal

import attrs

from btkit.broker_payloads import BrokerCall, CommitPayload, ExchangeFill
from btkit.components import BrokerSpec
from btkit.errors import OrderDeletedError, OrderRejectedError, OrderTransientError

log = logging.getLogger("btkit.broker")

VerdictKind = Literal["confirmed", "transient", "rejected", "deleted"]
DEFAULT_TIMEOUT_SECONDS = 60.0


@attrs.frozen
class Verdict:
    kind: VerdictKind
    error: BaseException | None = None
    #: the exchange's fill when the broker reported one (a returned ``ExchangeFill``, or the ``fill`` of
    #: an ``OrderDeletedError``): the price and time the engine books
    fill: ExchangeFill | None = None

    @property
    def confirmed(self) -> bool:
        return self.kind == "confirmed"


class BrokerGate:
    """Calls one broker object through the ``btkit_broker_commit`` hook and classifies the outcome."""

    def __init__(self, pm: Any, broker: Any, *, timeout_seconds: float = DEFAULT_TIMEOUT_SECONDS) -> None:
        self.pm = pm
        self.broker = broker
        self.timeout = timeout_seconds
        self._init_done = False
        self._init_lock = asyncio.Lock()

    async def _init(self) -> None:
        if self._init_done:
            return
        async with self._init_lock:
            if self._init_done:
                return
            fn = getattr(self.broker, "wait_for_init", None)
            if fn is not None:
                # a sync wait_for_init runs in a worker thread, like every sync broker method
                out = fn() if inspect.iscoroutinefunction(fn) else await asyncio.to_thread(fn)
                if inspect.isawaitable(out):
                    await out
            self._init_done = True

    async def call(self, method: str, payload: CommitPayload) -> Verdict:
        call = BrokerCall(method=method, payload=payload)
        try:
            await asyncio.wait_for(self._init(), self.timeout)
            out = self.pm.hook.btkit_broker_commit(broker=self.broker, call=call)
            if inspect.isawaitable(out):
                out = await asyncio.wait_for(out, self.timeout)
        except OrderRejectedError as exc:
            return self._failed(call, exc, "rejected")
        except OrderDeletedError as exc:
            verdict = self._failed(call, exc, "deleted")
            fill = getattr(exc, "fill", None)
            return attrs.evolve(verdict, fill=fill) if isinstance(fill, ExchangeFill) else verdict
        except TimeoutError as exc:
            err = OrderTransientError(f"broker {method} gave no answer within {self.timeout:g}s")
            err.__cause__ = exc
            return self._failed(call, err, "transient")
        except Exception as exc:  # OrderTransientError and anything unexpected: retry next tick
            return self._failed(call, exc, "transient")
        if out is False:
            return self._failed(call, OrderTransientError(f"broker {method} returned False"), "transient")
        return Verdict("confirmed", fill=out if isinstance(out, ExchangeFill) else None)

    def _failed(self, call: BrokerCall, exc: BaseException, kind: VerdictKind) -> Verdict:
        log.warning(
            "broker %s for %s %s: %s (%s)",
            call.method,
            call.payload.symbol,
            call.payload.signal_id,
            kind,
            exc,
        )
        try:
            self.pm.hook.btkit_commit_failed(call=call, error=exc, verdict=kind)
        except Exception:  # observers must not change the verdict
            log.exception("a btkit_commit_failed observer raised")
        return Verdict(kind, exc)


# ---------------------------------------------------------------- in-code selection
_ADAPTER_NAME = "adapter"


class Broker:
    """``Broker.use_adapter(cls_or_obj)`` registers an in-code broker; ``Broker.enable()`` selects it."""

    _enabled = False

    @staticmethod
    def use_adapter(adapter: Any) -> BrokerSpec:
        from btkit.registry import CODE

        factory = adapter if inspect.isclass(adapter) else (lambda **_: adapter)
        spec = BrokerSpec(name=_ADAPTER_NAME, factory=factory)
        CODE.brokers[_ADAPTER_NAME] = spec
        return spec

    @classmethod
    def enable(cls) -> None:
        cls._enabled = True

    @classmethod
    def disable(cls) -> None:
        cls._enabled = False

    @classmethod
    def selected_name(cls, configured: str | None) -> str:
        from btkit.registry import CODE

        if configured:
            return configured
        if cls._enabled and _ADAPTER_NAME in CODE.brokers:
            return _ADAPTER_NAME
        if _ADAPTER_NAME in CODE.brokers and not cls._enabled:
            log.warning("Broker.use_adapter() was called without Broker.enable(): using the paper broker")
        return "paper"
