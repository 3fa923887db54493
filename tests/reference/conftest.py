"""The reference tests: btkit's pytest fixtures, and this folder on ``sys.path`` for ``reference_loop``
(the suite runs with ``--import-mode=importlib``)."""

from __future__ import annotations

import sys
from pathlib import Path

if str(Path(__file__).parent) not in sys.path:
    sys.path.insert(0, str(Path(__file__).parent))
