"""Entry point of ``python -m bench.chaos``."""

import sys

from .cli import main

sys.exit(main())
