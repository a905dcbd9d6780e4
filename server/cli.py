"""Command line entry point."""

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
