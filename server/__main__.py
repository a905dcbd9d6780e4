"""``python -m server``: run the server (see ``--help``)."""

from .cli import main

raise SystemExit(main())
