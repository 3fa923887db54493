"""Running a bot (issue 17): actions (per-strategy event sinks), the status API and dashboard.

``btkit.ops.actions`` dispatches the engine's events to actions on worker threads; ``btkit.ops.serve``
(``btkit serve``, needs aiohttp: ``pip install btkit[serve]``) serves the persisted live state over HTTP;
``btkit.ops.control`` is the stop / force-close request the live runner honours.
"""
