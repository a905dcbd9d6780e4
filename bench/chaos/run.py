"""One chaos run: start the processes, set up accounts and dialogs, run the
traffic and the faults, let the receivers catch up, audit, stop everything.

Placement: dialog ``d``'s receivers sit on nodes ``d, d+1, ...`` and its
senders on nodes ``d+1, d+2, ...`` (modulo the number of nodes), so with two
nodes every dialog has a sender on the other node from each receiver.  Each
receiver is a member of its own dialog and of the next one, so one event
stream interleaves two dialogs.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import asyncpg

import client_sdk

from . import audit
from .faults import Chaos, plan
from .nodes import Nats, Node, Postgres
from .traffic import PASSWORD, Receiver, Sender, connect

STORED_KEYS_SQL = """
SELECT d.key AS dialog, m.key FROM messages m JOIN dialogs d ON d.id = m.dialog_id WHERE d.key = ANY($1::text[])
"""


def say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


class Run:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.rng = random.Random(args.seed)
        self.workdir = Path(tempfile.mkdtemp(prefix="sessia-chaos-"))
        self.postgres = Postgres(self.workdir)
        self.nats = Nats() if args.broker == "nats" else None
        self.nodes: list[Node] = []
        self.clients: list[client_sdk.Client] = []
        self.senders: list[Sender] = []
        self.receivers: list[Receiver] = []
        self.dialogs: list[str] = []
        self.timings: dict[str, float] = {}

    # -- the whole run -------------------------------------------------------------------

    async def main(self) -> dict[str, Any]:
        try:
            return await self._run()
        finally:
            await self.close()

    async def _run(self) -> dict[str, Any]:
        args = self.args
        started = time.monotonic()
        say(f"starting PostgreSQL, {args.nodes} node(s){' and NATS' if self.nats else ''} in {self.workdir}")
        await self.postgres.start()
        if self.nats is not None:
            await self.nats.start()
        broker = self.nats.url if self.nats is not None else "postgres"
        self.nodes = [Node(i, self.workdir, self.postgres.url, broker) for i in range(args.nodes)]
        for node in self.nodes:  # one at a time: the first one migrates the schema
            await node.start()
        await self.set_up()
        self.timings["setup_s"] = time.monotonic() - started

        chaos = Chaos(self.nodes, self.postgres, self.nats, self.rng)
        faults = plan(args.kills, args.pg_crashes, args.broker_restarts, min(2.0, args.duration * 0.1),
                      args.duration * 0.85, self.rng)
        say(f"traffic for {args.duration:.0f}s: {len(self.senders)} senders, {len(self.receivers)} receivers, "
            f"{len(faults)} faults")
        t0 = time.monotonic()
        hard = t0 + args.duration * 3 + 120  # the backstop of every loop below
        sending = asyncio.Event()
        sending.set()
        receiving = [asyncio.create_task(r.run(hard)) for r in self.receivers]
        sends = [asyncio.create_task(s.run(sending, hard, args.pause)) for s in self.senders]
        faulting = asyncio.create_task(chaos.run(faults, t0))
        try:
            await asyncio.wait_for(asyncio.shield(faulting), max(1.0, hard - time.monotonic()))
            await asyncio.sleep(max(0.0, t0 + args.duration - time.monotonic()))
        finally:
            faulting.cancel()
            sending.clear()
            await asyncio.gather(faulting, return_exceptions=True)
        faulting.result()  # a node that would not restart ends the run here
        self.timings["faults_s"] = time.monotonic() - t0
        await asyncio.wait(sends, timeout=max(1.0, hard - time.monotonic()))
        for task in sends:
            task.cancel()
        await asyncio.gather(*sends, return_exceptions=True)
        self.timings["traffic_s"] = time.monotonic() - t0

        settled = time.monotonic()
        caught_up = await self.settle(settled + args.settle)
        self.timings["settle_s"] = time.monotonic() - settled
        for task in receiving:
            task.cancel()
        await asyncio.gather(*receiving, return_exceptions=True)

        users = sorted({r.user_id for r in self.receivers} | {s.client.user_id or 0 for s in self.senders})
        messages, members, events = await audit.read_database(self.postgres.url, self.dialogs, users)
        counts = audit.account(self.senders, self.receivers, messages, members, events)
        counts["caught_up_within_settle"] = caught_up
        return {
            "params": self.params(),
            "faults": {
                "kills": chaos.done["kill"], "pg_crashes": chaos.done["pg"], "broker_restarts": chaos.done["broker"],
                "kills_per_node": [n.kills for n in self.nodes],
                "failed_node_starts": sum(n.failed_starts for n in self.nodes),
                "slowest_restart_s": round(chaos.slowest_restart, 2),
                "listen_connections_terminated": chaos.listeners_terminated,
            },
            "seconds": {k: round(v, 1) for k, v in self.timings.items()},
            "counts": counts,
        }

    def params(self) -> dict[str, Any]:
        a = self.args
        return {
            "nodes": a.nodes, "broker": a.broker, "duration": a.duration, "kills": a.kills,
            "pg_crashes": a.pg_crashes, "broker_restarts": a.broker_restarts, "dialogs": a.dialogs,
            "senders_per_dialog": a.senders, "receivers_per_dialog": a.receivers, "pause": a.pause,
            "settle": a.settle, "seed": a.seed,
        }

    # -- set-up --------------------------------------------------------------------------

    async def account(self, node: int, name: str) -> tuple[client_sdk.Client, str, int]:
        target = self.nodes[node]
        client = await connect(target.host, target.port, name)
        self.clients.append(client)
        login = f"{name}{self.rng.getrandbits(32):08x}"
        result = await client.register(login, f"{login}@example.org", PASSWORD)
        return client, result.token, result.user_id

    async def set_up(self) -> None:
        args, n = self.args, len(self.nodes)
        receivers: list[list[Receiver]] = []
        senders: list[list[tuple[client_sdk.Client, str, int, int]]] = []
        for d in range(args.dialogs):
            made = await asyncio.gather(*(self.account((d + j) % n, f"r{d}n{j}") for j in range(args.receivers)))
            receivers.append([Receiver(len(self.receivers) + j, (d + j) % n, user, [], client, token)
                              for j, (client, token, user) in enumerate(made)])
            self.receivers += receivers[-1]
            made = await asyncio.gather(*(self.account((d + 1 + k) % n, f"s{d}n{k}") for k in range(args.senders)))
            senders.append([(client, token, user, (d + 1 + k) % n) for k, (client, token, user) in enumerate(made)])
        for d in range(args.dialogs):
            prev = receivers[d - 1] if args.dialogs > 1 else []
            members = [u for _, _, u, _ in senders[d][1:]] + [r.user_id for r in receivers[d] + prev]
            owner = senders[d][0][0]
            key = await owner.create_dialog(f"chaos {d}", members=members)
            self.dialogs.append(key)
            for r in receivers[d] + prev:
                r.dialogs.append(key)
            for k, (client, token, _, node) in enumerate(senders[d]):
                index = d * args.senders + k
                self.senders.append(Sender(index, node, key, index % 2 == 0, client, token))
        for r in self.receivers:
            await r.subscribe()

    # -- the end -------------------------------------------------------------------------

    async def settle(self, until: float) -> bool:
        """Wait (until ``until``) for every receiver to hold every message
        stored in its dialogs; True if they all did."""
        while True:
            try:
                conn = await asyncpg.connect(self.postgres.url, timeout=10)
                try:
                    stored = {(r["dialog"], r["key"]) for r in await conn.fetch(STORED_KEYS_SQL, self.dialogs)}
                finally:
                    await conn.close()
                if all({k for k in stored if k[0] in r.dialogs} <= r.keys() for r in self.receivers):
                    return True
            except (OSError, asyncpg.PostgresError):
                pass
            if time.monotonic() >= until:
                return False
            await asyncio.sleep(0.5)

    async def close(self) -> None:
        """Stop everything this run started, by pid, whatever state it is in."""
        for client in self.clients:
            try:
                await asyncio.wait_for(client.close(), 5)
            except Exception:
                pass
        for node in self.nodes:
            await node.stop()
        if self.nats is not None:
            await self.nats.stop()
        try:
            await self.postgres.stop()
        except Exception as exc:
            say(f"could not stop PostgreSQL: {exc}")
        if self.args.keep:
            say(f"kept {self.workdir}")
        else:
            shutil.rmtree(self.workdir, ignore_errors=True)
