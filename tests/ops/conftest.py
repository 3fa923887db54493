"""Tests of running a bot (issue 17): actions, Telegram, btkit serve, the dashboard, deployment files.

The suite runs with ``--import-mode=importlib``, so this folder is put on ``sys.path`` for
``serve_helpers``.
"""

from __future__ import annotations

import sys
from pathlib import Path

from btkit.testing import btkit_clean  # noqa: F401

if str(Path(__file__).parent) not in sys.path:
    sys.path.insert(0, str(Path(__file__).parent))
