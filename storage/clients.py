"""The registry of known client builds (spec decision 11)."""

from __future__ import annotations

from dataclasses import dataclass

from .db import Database


@dataclass(frozen=True, slots=True)
class KnownClient:
    nameclient: str
    hashcert: str
    min_version: int


async def list_clients(db: Database) -> list[KnownClient]:
    rows = await db.fetch("clients.list", "SELECT nameclient, hashcert, min_version FROM clients ORDER BY nameclient, hashcert")
    return [KnownClient(**dict(r)) for r in rows]


async def register_client(db: Database, client: KnownClient) -> None:
    """Add a build, or update its minimum version if it is already known."""
    await db.execute(
        "clients.register",
        "INSERT INTO clients (nameclient, hashcert, min_version) VALUES ($1, $2, $3)"
        " ON CONFLICT (nameclient, hashcert) DO UPDATE SET min_version = EXCLUDED.min_version",
        client.nameclient,
        client.hashcert,
        client.min_version,
    )


async def remove_client(db: Database, nameclient: str, hashcert: str | None = None) -> int:
    """Forget one build of a client, or every build of it without ``hashcert``;
    returns how many were removed."""
    status = await db.execute(
        "clients.remove",
        "DELETE FROM clients WHERE nameclient = $1 AND ($2::text IS NULL OR hashcert = $2)",
        nameclient,
        hashcert,
    )
    return int(status.split()[-1])
