"""Command line entry point: ``python -m server [flags]`` runs the server,
``python -m server --check`` checks its settings and database and exits,
``python -m server admin <command>`` runs an operator command (server/admin.py).

A start that fails prints one line naming what failed, never a traceback
(``--log-level DEBUG`` adds it, for a bug), and exits 1; a usage error exits 2."""

from __future__ import annotations

import asyncio
import logging
import pickle
import sys
from collections.abc import Coroutine, Sequence
from typing import Any, TypeVar

from .app import StartupError, check, serve
from .config import parse_command_line
from .workers import read_assignment, supervise, work

log = logging.getLogger("sessia.server")
T = TypeVar("T")


def setup_logging(level: str, whose: str = "") -> None:
    """``whose``: what a line says after its level ("worker 1 "), where several processes share one stderr."""
    logging.basicConfig(
        stream=sys.stderr,
        level=getattr(logging, level),
        format=f"%(asctime)s %(levelname)s {whose}%(name)s: %(message)s",
    )


def run(coro: Coroutine[Any, Any, T]) -> T:
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dependency on POSIX
        return asyncio.run(coro)
    return uvloop.run(coro)


def main(argv: Sequence[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["admin"]:
        from . import admin

        logging.basicConfig(stream=sys.stderr, level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
        return admin.main(argv[1:])
    if argv[:1] == ["worker"]:
        return run_worker()
    config, check_only = parse_command_line(argv)
    if check_only:
        # Only warnings from the parts it touches: the check's own lines are the report.
        setup_logging("WARNING" if config.log_level in ("DEBUG", "INFO") else config.log_level)
        lines: list[str] = []
        try:
            passed = run(check(config, lines))
        except Exception as exc:  # a bug in a check: still one line
            log.debug("check failed", exc_info=True)
            lines.append(f"FAIL check: {type(exc).__name__}: {exc}")
            passed = False
        print("\n".join(lines), flush=True)
        return 0 if passed else 1
    setup_logging(config.log_level)
    return run_server(serve(config) if config.workers == 1 else supervise(config))


def run_worker() -> int:
    """``python -m server worker``: one of the processes of ``--workers N``,
    started by its supervisor (server/workers.py), which writes its settings
    on its stdin."""
    try:
        config, index = read_assignment(sys.stdin.buffer)
    except (StartupError, EOFError, pickle.UnpicklingError) as exc:
        setup_logging("INFO")
        log.error("cannot start: %s", exc if isinstance(exc, StartupError) else "no settings on stdin")
        return 2
    setup_logging(config.log_level, f"worker {index} ")
    return run_server(work(config, index))


def run_server(coro: Coroutine[Any, Any, None]) -> int:
    """Run the server (a lone one, a supervisor or a worker); a start that
    fails is one line and exit code 1."""
    try:
        run(coro)
    except KeyboardInterrupt:
        pass
    except StartupError as exc:
        log.error("cannot start: %s", exc)
        return 1
    except Exception as exc:
        # Not foreseen by a StartupError: still one line; the traceback only when debugging.
        log.error("cannot start: %s: %s", type(exc).__name__, exc, exc_info=log.isEnabledFor(logging.DEBUG))
        return 1
    return 0
