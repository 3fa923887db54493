"""The plugin host: a fresh pluggy manager per engine/run, defaults first, then entry points one by one.

Loading never crashes the host: a plugin that fails to import, to register (bad hook signature) or has
a misspelled ``btkit_*`` hook is recorded with its distribution, version and error, unregistered, and
skipped (``btkit plugins`` shows it). Components are then collected *by name* from the registry hooks;
a name offered twice is an error naming both distributions.

Two more guards (docs/writing-a-plugin.md):

- **API version.** The host publishes :data:`PLUGIN_API_VERSION`; a plugin module declares the range it
  supports as ``btkit_api = ">=1,<2"`` (a PEP 440 specifier). A plugin whose range excludes this host is
  *refused*: imported but never registered, so none of its hooks is ever called, and listed with one line
  saying which API versions it fits.
- **Bounded import.** Each entry point is imported in a worker thread and waited for at most
  ``BTKIT_PLUGIN_TIMEOUT`` seconds (default :data:`LOAD_TIMEOUT_SECONDS`); a plugin that does not finish
  is listed as failed with the time waited, abandoned (its thread is a daemon), and not tried again in the
  same process, so ``btkit plugins`` and every command always answer.
"""

from __future__ import annotations

import contextlib
import contextvars
import importlib
import os
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from importlib.metadata import EntryPoint, entry_points
from typing import Any

import attrs
import pluggy

from btkit import hookspecs
from btkit.accounting.sizing import SizingSpec
from btkit.components import (
    ActionSpec,
    BrokerSpec,
    ExchangeSpec,
    FrameSpec,
    PersistenceBackendSpec,
    RiskSpec,
    StrategySpec,
)
from btkit.errors import ConfigError, PluginError, UnknownComponentError

GROUP = hookspecs.PROJECT
PLUGIN_API_VERSION = "1"
"""The plugin API this host implements; bumped (major) when a hookspec or component record breaks."""
API_ATTRIBUTE = "btkit_api"
LOAD_TIMEOUT_SECONDS = 10.0
TIMEOUT_ENV = "BTKIT_PLUGIN_TIMEOUT"
DEFAULT_PLUGINS: tuple[str, ...] = (
    "btkit.defaults.runtime",
    "btkit.defaults.paper_broker",
    "btkit.defaults.file_persistence",
    "btkit.defaults.sim_exchange",
    "btkit.defaults.smacross",
    "btkit.defaults.smacross_array",  # the demo in the array form (issue 13)
    "btkit.defaults.sizings",
    "btkit.ops.actions",  # broker outcomes for actions (btkit_commit_failed), docs/actions.md
    "btkit.defaults.executors",  # research executors serial/process (issue 14)
)


TEST_PLUGINS: list[object] = []  # filled by btkit.testing's ``btkit_plugin`` fixture, always emptied after


@attrs.frozen
class PluginRecord:
    """What ``btkit plugins`` shows for one plugin."""

    name: str
    dist: str
    version: str
    status: str  # "loaded" | "failed" | "refused" | "disabled"
    error: str = ""
    hooks: tuple[str, ...] = ()
    api: str = ""  # the plugin's declared ``btkit_api`` range, "" when it declares none


class PluginManager(pluggy.PluginManager):
    """pluggy's manager plus the load records of this run."""

    def __init__(self) -> None:
        super().__init__(GROUP)
        self.add_hookspecs(hookspecs)
        self.records: list[PluginRecord] = []
        self.dist_of: dict[int, str] = {}

    def failed(self) -> list[PluginRecord]:
        """Plugins that are installed and enabled but not in use: failed to load, or refused."""
        return [r for r in self.records if r.status in ("failed", "refused")]


def _hooks_of(pm: PluginManager, plugin: object) -> tuple[str, ...]:
    return tuple(sorted(c.name for c in (pm.get_hookcallers(plugin) or [])))


def _unknown_hooks(plugin: object) -> list[str]:
    known = {n for n in dir(hookspecs) if n.startswith("btkit_")} | {API_ATTRIBUTE}
    names = dir(plugin) if not isinstance(plugin, dict) else []
    return [n for n in names if n.startswith("btkit_") and n not in known]


def declared_api(plugin: object, module_name: str = "") -> str | None:
    """The plugin's ``btkit_api`` range: on the object, else on the module it came from; None if absent."""
    value = getattr(plugin, API_ATTRIBUTE, None) if not isinstance(plugin, dict) else None
    if value is None and module_name:
        value = getattr(sys.modules.get(module_name), API_ATTRIBUTE, None)
    return None if value is None else str(value) if isinstance(value, str) else repr(value)


def api_problem(declared: str | None, dist: str, version: str = "") -> str:
    """Why a plugin declaring ``declared`` cannot run on this host ("" when it can)."""
    if declared is None:
        return ""
    from packaging.specifiers import InvalidSpecifier, SpecifierSet

    from btkit import __version__

    try:
        fits = SpecifierSet(declared)
    except InvalidSpecifier:
        return (
            f"{API_ATTRIBUTE} = {declared!r} is not a version range (write e.g. \">=1,<2\"); "
            f"ask the author of {dist} for a fixed release"
        )
    if fits.contains(PLUGIN_API_VERSION, prereleases=True):
        return ""
    who = f"{dist} {version}".strip()
    return (
        f"{who} supports btkit plugin API {declared}, this btkit {__version__} provides API "
        f"{PLUGIN_API_VERSION}; install a {dist} release for API {PLUGIN_API_VERSION} or a btkit whose API "
        f"fits {declared}"
    )


def register_plugin(
    pm: PluginManager, plugin: object, *, name: str, dist: str, version: str, module_name: str = ""
) -> bool:
    """Register one plugin object safely; record the outcome. Returns True when loaded."""
    api = declared_api(plugin, module_name) or ""
    problem = api_problem(api or None, dist, version)
    if problem:  # refused before registration: none of its hooks can ever run
        pm.records.append(PluginRecord(name, dist, version, "refused", problem, api=api))
        return False
    try:
        unknown = _unknown_hooks(plugin)
        if unknown:
            raise PluginError(
                f"unknown hook(s) {', '.join(unknown)}; check the spelling against btkit.hookspecs"
            )
        pm.register(plugin, name=name)
    except Exception as exc:  # a broken plugin must never take the host down
        if pm.is_registered(plugin):
            pm.unregister(plugin)
        pm.records.append(
            PluginRecord(name, dist, version, "failed", f"{type(exc).__name__}: {exc}", api=api)
        )
        return False
    pm.dist_of[id(plugin)] = dist
    pm.records.append(PluginRecord(name, dist, version, "loaded", hooks=_hooks_of(pm, plugin), api=api))
    return True


def _switch(environ: Mapping[str, str], name: str) -> set[str] | None:
    if name not in environ:
        return None
    return {p.strip() for p in environ[name].split(",") if p.strip()}


def _ep_dist(ep: EntryPoint) -> tuple[str, str]:
    dist = getattr(ep, "dist", None)
    if dist is None:
        return ("<unknown>", "?")
    return (dist.metadata["Name"] or "<unknown>", dist.version or "?")


def load_timeout(environ: Mapping[str, str]) -> float:
    """Seconds to wait for one entry point's import (``BTKIT_PLUGIN_TIMEOUT``, default 10)."""
    raw = environ.get(TIMEOUT_ENV, "").strip()
    if not raw:
        return LOAD_TIMEOUT_SECONDS
    try:
        value = float(raw)
    except ValueError:
        value = float("nan")
    if not (0 < value <= 3600):  # also rejects nan and inf
        from btkit.errors import ConfigError

        raise ConfigError(f"{TIMEOUT_ENV}={raw!r} must be a number of seconds between 0 and 3600, e.g. 10")
    return value


_HUNG: dict[tuple[str, str, str], str] = {}  # entry points abandoned in this process -> their error line


def _load_bounded(ep: EntryPoint, timeout: float) -> tuple[object | None, str]:
    """``ep.load()`` in a daemon thread, waited for at most ``timeout`` s: (plugin, "") or (None, error)."""
    key = (ep.group, ep.name, ep.value)
    if key in _HUNG:  # its import still holds the module lock: waiting again would hang again
        return None, _HUNG[key]
    box: dict[str, Any] = {}

    def target() -> None:
        try:
            box["plugin"] = ep.load()
        except BaseException as exc:  # SystemExit from a plugin too: recorded, never raised here
            box["error"] = exc

    started = time.monotonic()
    worker = threading.Thread(target=target, name=f"btkit-plugin-load:{ep.name}", daemon=True)
    worker.start()
    worker.join(timeout)
    took = time.monotonic() - started
    if worker.is_alive():
        error = (
            f"import did not finish in {took:.1f} s (hung; abandoned); fix or uninstall it, disable it with "
            f"BTKIT_DISABLE_PLUGINS or raise {TIMEOUT_ENV}"
        )
        _HUNG[key] = error
        return None, error
    if "error" in box:
        exc = box["error"]
        if isinstance(exc, KeyboardInterrupt):
            raise exc
        return None, f"import failed: {type(exc).__name__}: {exc}"
    return box["plugin"], ""


def load_entry_points(pm: PluginManager, environ: Mapping[str, str]) -> None:
    disabled = _switch(environ, "BTKIT_DISABLE_PLUGINS") or set()
    allowed = _switch(environ, "BTKIT_LOAD_PLUGINS")
    timeout = load_timeout(environ)
    seen: set[tuple[str, str]] = set()
    for ep in sorted(entry_points(group=GROUP), key=lambda e: e.name):
        dist, version = _ep_dist(ep)
        if (ep.name, dist) in seen:  # the same distribution found twice on sys.path
            continue
        seen.add((ep.name, dist))
        if (
            ep.name in disabled
            or dist in disabled
            or (allowed is not None and ep.name not in allowed and dist not in allowed)
        ):
            pm.records.append(PluginRecord(ep.name, dist, version, "disabled"))
            continue
        plugin, error = _load_bounded(ep, timeout)
        if error:
            pm.records.append(PluginRecord(ep.name, dist, version, "failed", error))
            continue
        register_plugin(pm, plugin, name=ep.name, dist=dist, version=version, module_name=ep.module)


_PINNED: contextvars.ContextVar[PluginManager | None] = contextvars.ContextVar("btkit_pinned_pm", default=None)


@contextlib.contextmanager
def pinned_plugin_manager(pm: PluginManager) -> Iterator[PluginManager]:
    """Within the block (this context only), ``get_plugin_manager()`` with its default arguments returns
    ``pm`` instead of loading every plugin again: a research worker builds one manager per study, not one
    per trial. In-code registrations stay live (the registry is read at each call)."""
    token = _PINNED.set(pm)
    try:
        yield pm
    finally:
        _PINNED.reset(token)


def get_plugin_manager(
    *,
    entrypoints: bool = True,
    environ: Mapping[str, str] | None = None,
    extra: Iterable[object] = (),
) -> PluginManager:
    """A fresh manager: default plugins, the in-code registry, installed entry points, ``extra`` (or the
    manager pinned by :func:`pinned_plugin_manager`, for the default arguments)."""
    pinned = _PINNED.get()
    if pinned is not None and entrypoints and environ is None and extra == ():
        return pinned
    from btkit import registry  # the in-process add_* registrations

    env = os.environ if environ is None else environ
    pm = PluginManager()
    from btkit import __version__

    for module_name in DEFAULT_PLUGINS:
        try:
            module = importlib.import_module(module_name)
        except Exception as exc:
            pm.records.append(PluginRecord(module_name, "btkit", __version__, "failed", str(exc)))
            continue
        register_plugin(pm, module, name=module_name, dist="btkit", version=__version__)
    register_plugin(pm, registry.CODE, name="btkit.code", dist="<code>", version=__version__)
    if entrypoints:
        load_entry_points(pm, env)
    for i, plugin in enumerate((*TEST_PLUGINS, *extra)):
        register_plugin(pm, plugin, name=f"extra-{i}", dist="<extra>", version="")
    pm.check_pending()
    return pm


# ---------------------------------------------------------------- component collection
_KINDS: dict[str, tuple[str, type]] = {
    "exchange": ("btkit_exchanges", ExchangeSpec),
    "strategy": ("btkit_strategies", StrategySpec),
    "frame": ("btkit_frames", FrameSpec),
    "risk": ("btkit_risks", RiskSpec),
    "broker": ("btkit_brokers", BrokerSpec),
    "persistence": ("btkit_persistence_backends", PersistenceBackendSpec),
    "sizing": ("btkit_sizings", SizingSpec),
    "action": ("btkit_actions", ActionSpec),
}


@attrs.define
class Components:
    """Every registered component, by kind and name, plus the registry problems found."""

    by_kind: dict[str, dict[str, Any]]
    problems: list[str]
    failed: list[PluginRecord] = attrs.Factory(list)

    def get(self, kind: str, name: str) -> Any:
        table = self.by_kind[kind]
        if name in table:
            return table[name]
        hint = _missing_hint(kind, name, sorted(table))
        if self.failed:
            broken = "; ".join(f"{r.dist} {_outcome(r)} ({r.error})" for r in self.failed)
            hint += f"; note: plugin {broken}"
        names = sorted(table)
        ccxt = [n for n in names if n.startswith("ccxt:")]
        if len(ccxt) > 3:
            names = [n for n in names if not n.startswith("ccxt:")] + [
                f"ccxt:<id> ({len(ccxt)} ccxt exchanges)"
            ]
        known = ", ".join(names) or "none"
        raise UnknownComponentError(f"no {kind} named {name!r} is registered (known: {known}){hint}")

    def names(self, kind: str) -> list[str]:
        return sorted(self.by_kind[kind])


def _outcome(record: PluginRecord) -> str:
    return "was refused" if record.status == "refused" else "failed to load"


# strategies of this repository's contrib/ packages (not published on an index): how to install them
CONTRIB_STRATEGIES = {
    "dca": "btkit-strategy-dca",
    "dca-ladder": "btkit-strategy-dca",
    "partials": "btkit-strategy-partials",
    "partials-trailing": "btkit-strategy-partials",
    "rsi-bb": "btkit-strategy-rsi-bb",
}


def _nearest(name: str, known: list[str]) -> str:
    import difflib

    near = difflib.get_close_matches(name, known, n=1, cutoff=0.6)
    return f"; did you mean {near[0]}?" if near else ""


def _missing_hint(kind: str, name: str, known: list[str] | tuple[str, ...] = ()) -> str:
    known = list(known)
    if kind == "persistence":
        try:
            from btkit.persist.select import missing_backend_message

            return "; " + missing_backend_message(name)
        except ImportError:  # pragma: no cover
            return ""
    if kind in ("exchange", "broker") and name.startswith("ccxt:"):
        ccxt = [n for n in known if n.startswith("ccxt:")]
        if ccxt:  # btkit-ccxt is installed: the id is what is wrong
            return f"; ccxt has no exchange id {name[5:]!r}{_nearest(name, ccxt)}"
        return "; pip install btkit-ccxt"
    if kind in ("exchange", "broker") and name.startswith("binance") and not any(
        n.startswith("binance") for n in known
    ):
        return "; pip install btkit-binance-futures"
    if kind == "strategy" and name in CONTRIB_STRATEGIES:
        dist = CONTRIB_STRATEGIES[name]
        return f"; it ships in this repository: pip install ./contrib/{dist} (from a clone of btkit)"
    if kind == "strategy":
        near = _nearest(name, known)
        how = "install its package or call btkit.add_strategy first (CLI: --strategy-file FILE.py)"
        return f"{near} or {how}" if near else f"; {how}"
    return _nearest(name, known)


def collect_components(pm: PluginManager) -> Components:
    """Call every registry hook implementation separately, so bad records name their plugin."""
    by_kind: dict[str, dict[str, Any]] = {k: {} for k in _KINDS}
    problems: list[str] = []
    owners: dict[tuple[str, str], str] = {}
    for kind, (hook_name, record_type) in _KINDS.items():
        caller = getattr(pm.hook, hook_name)
        for impl in reversed(caller.get_hookimpls()):  # registration order
            dist = pm.dist_of.get(id(impl.plugin), impl.plugin_name)
            try:
                records = impl.function() or ()
                records = list(records)
            except Exception as exc:
                problems.append(f"{dist}: {hook_name}() raised {type(exc).__name__}: {exc}")
                continue
            for record in records:
                if not isinstance(record, record_type):
                    problems.append(
                        f"{dist}: {hook_name}() returned {type(record).__name__}, expected {record_type.__name__}"
                    )
                    continue
                key = (kind, record.name)
                if key in owners:
                    raise PluginError(
                        f"{kind} {record.name!r} is offered by both {owners[key]} and {dist}; "
                        f"uninstall one or disable it with BTKIT_DISABLE_PLUGINS"
                    )
                owners[key] = dist
                by_kind[kind][record.name] = record
    return Components(by_kind, problems, pm.failed())


def require_loaded(pm: PluginManager, dist_of_component: str) -> None:
    """Abort a live run when the plugin distribution that should provide a component failed to load."""
    for record in pm.failed():
        if record.dist == dist_of_component:
            raise PluginError(f"plugin {record.dist} {_outcome(record)} ({record.error}); fix or reinstall it")


HookCallback = Callable[..., Any]


def check_factory_options(kind: str, spec: Any, options: Mapping[str, Any], where: str | None = None) -> None:
    """An option a component's factory does not take is a :class:`ConfigError` naming it and the ones it
    does, before anything is built or connects (a factory taking ``**options`` checks its own, e.g.
    binance-futures)."""
    import difflib
    import inspect

    try:
        params = inspect.signature(spec.factory).parameters
    except (TypeError, ValueError):  # a builtin or C callable: nothing to check against
        return
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return
    accepted = [n for n, p in params.items() if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]
    for key in options:
        if key not in accepted and key != "expected_positions":
            near = difflib.get_close_matches(key, accepted, n=1)
            hint = f"; did you mean {near[0]}?" if near else ""
            raise ConfigError(
                f"{where or f'[{kind}]'}: {kind} {spec.name!r} has no option {key!r}{hint} "
                f"(its options: {', '.join(accepted) or 'none'})"
            )
