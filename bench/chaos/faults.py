"""The faults of a chaos run, spread over its duration and applied one at a time.

- kill: SIGKILL of a node (in turn), restarted at once on the same port, as a
  supervisor would;
- pg: ``pg_ctl stop -m immediate`` (a crash: no checkpoint, WAL recovery at
  the next start), one second down, started again;
- broker: with NATS, SIGKILL of nats-server, one second down, restarted on
  the same port; with the PostgreSQL broker, every node's LISTEN connection
  is terminated (``pg_terminate_backend``), the database itself stays up.

One fault at a time: a node restarted while PostgreSQL or NATS is down could
not start, and the run would test the supervisor rather than the server.
"""

from __future__ import annotations

import asyncio
import random
import time
from dataclasses import dataclass, field

import asyncpg

from .nodes import Nats, Node, Postgres

KILL, PG, BROKER = "kill", "pg", "broker"
#: Seconds a node's restart may take (retried while it fails) before the run is abandoned.
RESTART_BOUND = 90.0
LISTENERS_SQL = """
SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity
WHERE pid <> pg_backend_pid() AND query LIKE 'LISTEN%'
"""


@dataclass(frozen=True, slots=True)
class Fault:
    at: float  # seconds after the start of the traffic
    kind: str


def plan(kills: int, pg_crashes: int, broker_restarts: int, start: float, end: float, rng: random.Random) -> list[Fault]:
    """Each kind spread evenly over [start, end], with jitter within its slot."""
    faults = []
    for kind, count in ((KILL, kills), (PG, pg_crashes), (BROKER, broker_restarts)):
        slot = (end - start) / count if count else 0.0
        faults += [Fault(start + slot * (i + rng.uniform(0.2, 0.8)), kind) for i in range(count)]
    return sorted(faults, key=lambda f: f.at)


@dataclass(eq=False)
class Chaos:
    nodes: list[Node]
    postgres: Postgres
    nats: Nats | None
    rng: random.Random
    done: dict[str, int] = field(default_factory=lambda: {KILL: 0, PG: 0, BROKER: 0})
    listeners_terminated: int = 0
    slowest_restart: float = 0.0

    async def run(self, faults: list[Fault], t0: float) -> None:
        for fault in faults:
            delay = t0 + fault.at - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            await self.apply(fault.kind)
            self.done[fault.kind] += 1

    async def apply(self, kind: str) -> None:
        if kind == KILL:
            node = self.nodes[self.done[KILL] % len(self.nodes)]
            await node.kill()
            await asyncio.sleep(self.rng.uniform(0.0, 0.3))
            started = time.monotonic()
            await node.start_until(started + RESTART_BOUND)
            self.slowest_restart = max(self.slowest_restart, time.monotonic() - started)
        elif kind == PG:
            await self.postgres.crash()
            await asyncio.sleep(1.0)
            await self.postgres.start()
        elif self.nats is not None:
            await self.nats.restart(down=1.0)
        else:
            conn = await asyncpg.connect(self.postgres.url, timeout=30)
            try:
                self.listeners_terminated += await conn.fetchval(LISTENERS_SQL)
            finally:
                await conn.close()
