"""``python -m nstyle``: the same command as ``nstyle``."""

import sys

from .cli import main

sys.exit(main())
