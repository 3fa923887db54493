"""Research (issue 14): the Walker, the optimiser, out-of-sample / walk-forward, executors as plugins.

Docs: docs/walker.md, docs/optimizer.md, docs/walk-forward.md, docs/executors.md. Heavy parts (Optuna,
matplotlib, process pools) are imported only when used.
"""

from __future__ import annotations

from typing import Any

from btkit.research.walker import Walker, add_walker

__all__ = ["Walker", "add_walker", "optimize", "walk_forward"]


def optimize(strategy: str, **kw: Any) -> Any:
    """See :func:`btkit.research.optimizer.optimize`."""
    from btkit.research.optimizer import optimize as run

    return run(strategy, **kw)


def walk_forward(strategy: str, **kw: Any) -> Any:
    """See :func:`btkit.research.walkforward.walk_forward`."""
    from btkit.research.walkforward import walk_forward as run

    return run(strategy, **kw)
