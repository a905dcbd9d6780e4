"""Schema migrations: numbered files applied in order, once each.

``NNNN_name.sql`` files in ``storage/migrations`` are applied inside one
transaction each, under a PostgreSQL advisory lock, so two servers starting at
the same moment never both apply a migration: the second waits, then finds
nothing left to do.

A migration that must compute values by the server's own rules (which SQL
cannot repeat exactly, such as ``users.identity_key``) is an ``NNNN_name.py``
module instead, with ``async def apply(conn)``; it runs the same way, in its
own transaction under the lock.
"""

from __future__ import annotations

import importlib.util
import logging
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

from .db import Connection

log = logging.getLogger("sessia.migrate")

MIGRATIONS_DIR = Path(__file__).parent / "migrations"
_LOCK_KEY = 0x5E5510  # any constant shared by every sessia process
_NAME_RE = re.compile(r"^(\d{4})_([a-z0-9_]+)\.(?:sql|py)$")


@dataclass(frozen=True, slots=True)
class Migration:
    version: int
    name: str
    path: Path


def available() -> list[Migration]:
    found = []
    for path in sorted(MIGRATIONS_DIR.iterdir()):
        match = _NAME_RE.match(path.name)
        if match:
            found.append(Migration(int(match.group(1)), match.group(2), path))
    versions = [m.version for m in found]
    if len(set(versions)) != len(versions):
        raise RuntimeError("two migrations share a version number")
    return found


async def current_version(conn: Connection) -> int:
    exists = await conn.fetchval("SELECT to_regclass('schema_version') IS NOT NULL")
    if not exists:
        return 0
    return await conn.fetchval("SELECT coalesce(max(version), 0) FROM schema_version")


async def applied_versions(conn: Connection) -> set[int]:
    """The versions recorded as applied (empty on a new database)."""
    if await current_version(conn) == 0:
        return set()
    return {r["version"] for r in await conn.fetch("SELECT version FROM schema_version")}


async def pending(conn: Connection) -> list[Migration]:
    """Migrations the next start (or ``admin migrate``) would apply, in order."""
    done = await applied_versions(conn)
    return [m for m in available() if m.version not in done]


async def migrate(conn: Connection) -> list[int]:
    """Apply every pending migration; returns the versions applied."""
    applied: list[int] = []
    await conn.execute("SELECT pg_advisory_lock($1)", _LOCK_KEY)
    try:
        await conn.execute(
            "CREATE TABLE IF NOT EXISTS schema_version ("
            " version integer PRIMARY KEY, name text NOT NULL,"
            " applied_at timestamptz NOT NULL DEFAULT now())"
        )
        # Every version not yet recorded is applied, in order: a migration
        # merged with a lower number than one already applied still runs.
        done = {r["version"] for r in await conn.fetch("SELECT version FROM schema_version")}
        for migration in available():
            if migration.version in done:
                continue
            async with conn.transaction():
                await _apply(conn, migration)
                await conn.execute(
                    "INSERT INTO schema_version (version, name) VALUES ($1, $2)",
                    migration.version,
                    migration.name,
                )
            log.info("applied migration %04d_%s", migration.version, migration.name)
            applied.append(migration.version)
    finally:
        await conn.execute("SELECT pg_advisory_unlock($1)", _LOCK_KEY)
    return applied


async def _apply(conn: Connection, migration: Migration) -> None:
    if migration.path.suffix == ".sql":
        await conn.execute(migration.path.read_text(encoding="utf-8"))
    else:
        await _python_step(migration)(conn)


def _python_step(migration: Migration) -> Callable[[Connection], Awaitable[None]]:
    """The ``apply`` function of a Python migration, loaded from its file (its
    name starts with a digit: it is not importable by name)."""
    spec = importlib.util.spec_from_file_location(f"sessia_migration_{migration.version:04d}", migration.path)
    if spec is None or spec.loader is None:
        raise RuntimeError(f"cannot load migration {migration.path.name}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    step: Callable[[Connection], Awaitable[None]] = module.apply
    return step
