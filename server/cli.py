"""Command line entry point: ``python -m server [flags]`` runs the server,
``python -m server admin <command>`` runs an operator command (server/admin.py)."""

from __future__ import annotations

import asyncio
import logging
import ssl
import sys
from collections.abc import Sequence

from .app import serve
from .config import parse_args


def setup_logging(level: str) -> None:
    logging.basicConfig(
        stream=sys.stderr,
        level=getattr(logging, level),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )


def main(argv: Sequence[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["admin"]:
        from . import admin

        logging.basicConfig(stream=sys.stderr, level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
        return admin.main(argv[1:])
    config = parse_args(argv)
    setup_logging(config.log_level)
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dependency on POSIX
        runner = asyncio.run
    else:
        runner = uvloop.run
    try:
        runner(serve(config))
    except KeyboardInterrupt:
        pass
    except (OSError, ValueError, ssl.SSLError) as exc:
        logging.getLogger("sessia.server").error("cannot start: %s", exc)
        return 1
    return 0
