"""Every exception btkit raises on purpose. Messages say what went wrong and what to do, in one line."""

from __future__ import annotations


class BtkitError(Exception):
    """Base class of btkit's own errors."""


class ConfigError(BtkitError, ValueError):
    """An engine constant, config file or environment override is invalid."""


class SignalValidationError(BtkitError, ValueError):
    """A signal returned by a strategy breaks a validation rule (10-lifecycle.md §6)."""


class CandleDataError(BtkitError):
    """An exchange returned candles that cannot be used: gaps, NaN, unsorted, too few."""


class InsufficientDataError(CandleDataError):
    """Too few candles to decide how a signal ends."""


class PluginError(BtkitError):
    """A plugin failed to load, registered a duplicate name, or a required component is missing."""


class UnknownComponentError(PluginError, LookupError):
    """A run names an exchange, strategy, frame, risk, broker or backend nobody registered."""


class PersistenceError(BtkitError):
    """A state document could not be written durably; the change did not happen."""


class CorruptStateError(PersistenceError):
    """A persisted document does not parse or validate; it was quarantined, never silently reset."""


class StateLockedError(PersistenceError):
    """Another live process already owns this state directory."""


class OrderRejectedError(BtkitError):
    """Broker verdict: the exchange definitively refused the action. Final, never retried."""


class OrderTransientError(BtkitError):
    """Broker verdict: the action did not happen this time; the engine retries it next tick."""


class OrderDeletedError(BtkitError):
    """Broker verdict from a check: the order/position no longer exists on the exchange.

    ``fill`` (a ``btkit.broker_payloads.ExchangeFill``) carries the exchange's closing fill when the
    broker knows it; the engine then books that price and time instead of the candle's."""

    def __init__(self, *args: object, fill: object = None) -> None:
        super().__init__(*args)
        self.fill = fill
