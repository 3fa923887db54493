"""Suite-wide set-up, loaded before any test package's conftest.

Many tests run btkit as a real subprocess (the CLI, live children killed with SIGKILL, crash loops). With
``PYTHONDONTWRITEBYTECODE`` set in the environment, each of those processes compiles every module it imports
(btkit, bokeh, ccxt, numpy's Python parts) from source again: about 0.7 s of CPU per process. The suite lets
Python cache bytecode as usual instead; that changes nothing but speed.
"""

import os
import sys

os.environ.pop("PYTHONDONTWRITEBYTECODE", None)
sys.dont_write_bytecode = False
