"""``python -m btkit.cli``."""

import sys

from btkit.cli import main

sys.exit(main())
