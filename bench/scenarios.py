"""The load scenarios of ``python -m bench.load`` and the set-up they need.

Every simulated user is an account; every connection is one device session
of one of them (sessions are dealt round-robin, so with more connections than
users a user is online on several devices, and with fewer a connection
carries the requests of several users and subscribes as the first of them).
Requests go through the SDK's transport with frames pre-encoded once per
session (``Transport.request_raw``), so the load generator spends its CPU on
the wire, not on building bodies.

Set-up writes accounts, sessions, dialogs and history straight into
PostgreSQL when the database is reachable (the server this harness starts,
or ``--database-url``): registering through the API costs one argon2 hash
(~40 ms of a core) per account and one per extra device, which would make a
1 000-user run spend most of its time in set-up.  Against a running server
without ``--database-url`` the API is used instead (``Registration``,
``Auth`` by password for extra devices, ``CreateDialog``, ``SendMessage``).
"""

from __future__ import annotations

import asyncio
import hashlib
import random
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg

import client_sdk
from client_sdk.errors import ConnectionClosed, ProtocolError, RequestTimeout
from client_sdk.transport import Transport
from protocol import requests as R
from protocol.codecs import Codec, decode_body, encode_body
from protocol.events import NEW_MESSAGE, PUSH_DIALOG_EVENT, PUSH_EVENT
from protocol.frames import HEADER, MAGIC, VERSION, Frame, FrameKind
from protocol.requests.sync import SUBSCRIBE
from server.changes import LARGE_FROM

from .report import Recorder
from .seed import WORDS

PASSWORD = "load-test password"
CLIENT = {"nameclient": "sessia-load", "hashcert": "10ad10ad10ad10ad10ad10ad10ad10ad", "version": 1}
CONTENT = "Hello, how are you doing today?"


# -- sessions and connections ------------------------------------------------------------


@dataclass(slots=True)
class Sess:
    """One device session of one account."""

    user_id: int
    login: str
    deviceid: str
    token: str

    @property
    def sessia(self) -> dict[str, Any]:
        return {"tocken": self.token, "device": {"deviceid": self.deviceid}, "client": CLIENT}


class LoadTransport(Transport):
    """The SDK transport, with pushes counted (and optionally handed to a
    callback) instead of queued: a load run does not read them one by one."""

    def __init__(self) -> None:
        super().__init__(push_queue_size=1)
        self.push_count = 0
        self.on_push: Callable[[LoadTransport, Frame], None] | None = None

    def _on_frame(self, frame: Frame) -> None:
        if frame.kind == FrameKind.PUSH:
            self.push_count += 1
            if self.on_push is not None:
                self.on_push(self, frame)
            return
        super()._on_frame(frame)


@dataclass(eq=False)
class Conn:
    transport: LoadTransport
    sessions: list[Sess]
    #: pre-encoded request payloads (name + body), one per session
    payloads: list[bytes] = field(default_factory=list)
    _next: int = 0

    def next_index(self) -> int:
        i = self._next
        self._next = (i + 1) % len(self.sessions)
        return i


async def open_transport(host: str, port: int, local_host: str | None = None) -> LoadTransport:
    loop = asyncio.get_running_loop()
    try:
        _, protocol = await asyncio.wait_for(
            loop.create_connection(LoadTransport, host, port, local_addr=(local_host, 0) if local_host else None), 15
        )
    except TimeoutError:
        raise RequestTimeout(f"could not connect to {host}:{port} within 15s") from None
    return protocol


def payload(name: str, body: dict[str, Any], codec: int) -> bytes:
    """A REQUEST frame's payload: name length, name, encoded body."""
    raw = name.encode("ascii")
    return bytes((len(raw),)) + raw + encode_body(Codec(codec), body)


def frame(request_id: int, data: bytes, codec: int) -> bytes:
    return HEADER.pack(MAGIC, VERSION, FrameKind.REQUEST, codec, 0, request_id, len(data)) + data


async def timed_call(
    transport: LoadTransport, data: bytes, codec: int, rec: Recorder, timeout: float,
    scheduled: float | None = None,
) -> dict[str, Any] | None:
    """One request; its latency or its failure goes to ``rec``.  Returns the
    answer, or None on a refusal or time-out; raises ConnectionClosed.
    ``scheduled``: the time the request was due (open loop); its latency is
    counted from then, not from when it could actually be sent, so a stall
    is charged to every request it delayed (no coordinated omission)."""
    request_id = transport.next_id()
    started = time.perf_counter() if scheduled is None else scheduled
    try:
        answer = await transport.request_raw(request_id, frame(request_id, data, codec), timeout)
    except ProtocolError as exc:
        rec.errors[str(exc.code)] += 1
        return None
    except RequestTimeout:
        rec.errors["timeout"] += 1
        return None
    except ConnectionClosed:
        rec.errors["closed"] += 1
        raise
    code = int((answer.get("Status") or {}).get("code", 200))
    if code != 200:
        rec.errors[str(code)] += 1
        return None
    rec.latencies.append(time.perf_counter() - started)
    return answer


async def bounded_gather(limit: int, coros: list) -> list:
    """Run coroutines with at most ``limit`` at a time."""
    gate = asyncio.Semaphore(limit)

    async def one(coro):
        async with gate:
            return await coro

    return await asyncio.gather(*(one(c) for c in coros))


def token_hash(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


def password_hash() -> str:
    """A real argon2id hash of PASSWORD with the server's default parameters,
    made once and given to every seeded account (Auth by password works)."""
    from argon2 import PasswordHasher, Type

    from server.config import Config

    d = Config()
    return PasswordHasher(
        time_cost=d.argon2_time_cost, memory_cost=d.argon2_memory_kib, parallelism=d.argon2_parallelism, type=Type.ID
    ).hash(PASSWORD)


# -- set-up --------------------------------------------------------------------------------


def deal(user_ids: list[int], logins: list[str], sessions: int, tag: str, *,
         every_user: bool = True) -> list[tuple[int, str, str]]:
    """(user id, login, device id) of each session: users round-robin, at
    least one each unless ``every_user`` is false (offline members)."""
    n = max(sessions, len(user_ids)) if every_user else sessions
    return [(user_ids[i % len(user_ids)], logins[i % len(user_ids)], f"load{tag}d{i}") for i in range(n)]


class DirectSetup:
    """Set-up by writing into the database (see the module docstring)."""

    def __init__(self, database_url: str, tag: str) -> None:
        self.url = database_url
        self.tag = tag
        self.conn: asyncpg.Connection | None = None
        self.user_ids: list[int] = []  # every account of the last ``accounts`` call, with a session or not

    async def open(self) -> asyncpg.Connection:
        if self.conn is None:
            self.conn = await asyncpg.connect(self.url, timeout=30)
        return self.conn

    async def close(self) -> None:
        if self.conn is not None:
            await self.conn.close()
            self.conn = None

    async def accounts(self, users: int, sessions: int, *, every_user: bool = True) -> list[Sess]:
        conn = await self.open()
        pw = await asyncio.to_thread(password_hash)
        rows = await conn.fetch(
            "INSERT INTO users (login, email, nickname, password_hash)"
            " SELECT 'load' || $1 || 'u' || g, 'load' || $1 || 'u' || g || '@example.org', 'Load ' || g, $3"
            " FROM generate_series(1, $2::int) AS g ORDER BY g RETURNING id, login",
            self.tag, users, pw,
        )
        ids = [r["id"] for r in rows]
        self.user_ids = ids
        logins = [r["login"] for r in rows]
        out = []
        for user_id, login, device in deal(ids, logins, sessions, self.tag, every_user=every_user):
            out.append(Sess(user_id, login, device, f"{secrets.token_hex(32)}?{user_id}"))
        await conn.copy_records_to_table(
            "sessions",
            records=[(s.user_id, token_hash(s.token), s.deviceid, CLIENT["nameclient"], CLIENT["hashcert"], "1")
                     for s in out],
            columns=["user_id", "token_hash", "device_id", "client_name", "client_hashcert", "client_version"],
        )
        return out

    async def dialogs(self, groups: list[list[int]], owner_sessions: dict[int, Sess]) -> list[tuple[int, str]]:
        """One private dialog per group, its first member the owner; returns (id, key)."""
        conn = await self.open()
        keys = [secrets.token_hex(16) for _ in groups]
        # A dialog past the server's default limit keeps its own log, as one
        # grown through the API would (server/changes.py LARGE_FROM).
        rows = await conn.fetch(
            "INSERT INTO dialogs (key, name, private, owner_id, large)"
            " SELECT k, 'load ' || k, true, o, n > $3 FROM unnest($1::text[], $2::bigint[], $4::int[]) AS u(k, o, n)"
            " RETURNING id, key",
            keys, [g[0] for g in groups], LARGE_FROM, [len(g) for g in groups],
        )
        by_key = {r["key"]: r["id"] for r in rows}
        members = []
        for key, group in zip(keys, groups, strict=True):
            members += [(by_key[key], uid, "owner" if i == 0 else "member") for i, uid in enumerate(group)]
        await conn.copy_records_to_table("dialog_members", records=members, columns=["dialog_id", "user_id", "role"])
        return [(by_key[k], k) for k in keys]

    async def history(self, dialogs: list[tuple[int, str]], groups: list[list[int]], per_dialog: int) -> None:
        """``per_dialog`` messages in each dialog, over the last day."""
        conn = await self.open()
        rng = random.Random(11)
        start = datetime.now(UTC) - timedelta(days=1)
        step = timedelta(days=1) / max(per_dialog, 1)
        records = []
        for (dialog_id, _), group in zip(dialogs, groups, strict=True):
            for n in range(per_dialog):
                records.append((dialog_id, secrets.token_hex(16), rng.choice(group),
                                " ".join(rng.choice(WORDS) for _ in range(rng.randint(3, 12))), start + step * n))
        await conn.copy_records_to_table(
            "messages", records=records, columns=["dialog_id", "key", "author_id", "content", "created_at"]
        )
        await conn.execute(
            "UPDATE dialogs d SET last_message_at = now() WHERE id = ANY($1::bigint[])", [d[0] for d in dialogs]
        )
        await conn.execute("ANALYZE messages, dialogs, dialog_members")


class ApiSetup:
    """Set-up through the API, for a running server whose database is not reachable."""

    def __init__(self, host: str, port: int, tag: str) -> None:
        self.host = host
        self.port = port
        self.tag = tag
        self.user_ids: list[int] = []

    async def _client(self, deviceid: str) -> client_sdk.Client:
        return await client_sdk.connect(
            self.host, self.port, device={"deviceid": deviceid, "os": "load", "hostname": "load"}, client=CLIENT
        )

    async def open(self) -> None:
        raise RuntimeError("this scenario seeds the database directly: pass --database-url with --target")

    async def close(self) -> None:
        pass

    async def accounts(self, users: int, sessions: int, *, every_user: bool = True) -> list[Sess]:
        async def register(i: int) -> Sess:
            login = f"load{self.tag}u{i}"
            c = await self._client(f"load{self.tag}d{i}")
            try:
                done = await c.register(login, f"{login}@example.org", PASSWORD)
            finally:
                await c.close()
            return Sess(done.user_id, login, f"load{self.tag}d{i}", done.token)

        first = await bounded_gather(8, [register(i) for i in range(users)])
        self.user_ids = [s.user_id for s in first]
        if not every_user:
            return first[:sessions]

        async def device(i: int) -> Sess:
            owner = first[i % users]
            c = await self._client(f"load{self.tag}d{i}")
            try:
                done = await c.login(f"{owner.login}@example.org", PASSWORD)
            finally:
                await c.close()
            return Sess(done.user_id, owner.login, f"load{self.tag}d{i}", done.token)

        more = await bounded_gather(8, [device(i) for i in range(users, sessions)])
        return first + more

    async def dialogs(self, groups: list[list[int]], owner_sessions: dict[int, Sess]) -> list[tuple[int, str]]:
        async def create(group: list[int]) -> tuple[int, str]:
            owner = owner_sessions[group[0]]
            c = await self._client(owner.deviceid)
            try:
                await c.login_with_token(owner.token)
                key = await c.create_dialog("load", members=group[1:])
            finally:
                await c.close()
            return (0, key)

        return await bounded_gather(16, [create(g) for g in groups])

    async def history(self, dialogs: list[tuple[int, str]], groups: list[list[int]], per_dialog: int,
                      owner_sessions: dict[int, Sess] | None = None) -> None:
        assert owner_sessions is not None

        async def fill(key: str, group: list[int]) -> None:
            owner = owner_sessions[group[0]]
            c = await self._client(owner.deviceid)
            try:
                await c.login_with_token(owner.token)
                for n in range(per_dialog):
                    await c.send_message(key, f"{CONTENT} {n}")
            finally:
                await c.close()

        await bounded_gather(16, [fill(k, g) for (_, k), g in zip(dialogs, groups, strict=True)])


# -- the scenarios --------------------------------------------------------------------------


def groups_of(user_ids: list[int], sizes: tuple[int, int], rng: random.Random) -> list[list[int]]:
    """Split users into dialogs of ``sizes[0]``..``sizes[1]`` members, each user in one."""
    out: list[list[int]] = []
    i = 0
    while i < len(user_ids):
        n = rng.randint(*sizes)
        out.append(user_ids[i : i + n])
        i += n
    if len(out) > 1 and len(out[-1]) < max(2, sizes[0]):
        out[-2].extend(out.pop())
    return out


class Scenario:
    """Base: ``prepare`` (set-up, connect, subscribe, warm up), ``measure``
    (until ``run.deadline``), then the figures."""

    name = ""
    #: defaults for options left unset: users, connections, inflight, dialog size
    defaults: dict[str, Any] = {}

    def __init__(self, run: Any) -> None:
        self.run = run
        self.args = run.args
        self.codec = run.codec
        self.conns: list[Conn] = []
        self.recorders: dict[str, Recorder] = {}
        self.push_base = 0
        self.extra: dict[str, Any] = {}

    def recorder(self, name: str, request: bool = True) -> Recorder:
        rec = Recorder(name)
        rec.request = request  # type: ignore[attr-defined]
        self.recorders[name] = rec
        return rec

    @property
    def primary(self) -> Recorder:
        return next(iter(self.recorders.values()))

    async def prepare(self) -> None:
        raise NotImplementedError

    async def measure(self) -> None:
        raise NotImplementedError

    async def before_measure(self) -> None:
        """Just before the measured seconds (after set-up)."""

    async def after_measure(self) -> None:
        """Just after them."""

    def pushes(self) -> dict[str, Any] | None:
        return None

    def status(self) -> str:
        rec = self.primary
        errors = sum(rec.errors.values())
        text = f"{rec.name} {rec.ok} ok, {errors} errors"
        push = self.pushes()
        if push is not None:
            text += f", {push['received']} pushes"
        return text

    async def close(self) -> None:
        for conn in self.conns:
            conn.transport.close()

    # -- shared steps ---------------------------------------------------------------

    async def connect(self, sessions: list[Sess], count: int) -> list[Conn]:
        """``count`` connections; session i goes to connection i % count."""
        per: list[list[Sess]] = [[] for _ in range(count)]
        for i, s in enumerate(sessions):
            per[i % count].append(s)
        transports = await bounded_gather(
            200, [open_transport(self.run.host, self.run.port, _local_host(i, count)) for i in range(count)]
        )
        self.conns = [Conn(t, p) for t, p in zip(transports, per, strict=True)]
        return self.conns

    async def subscribe(self) -> None:
        """Each connection subscribes as its first session: it gets pushes from now on."""
        rec = Recorder("Subscribe")

        async def one(conn: Conn) -> None:
            body = payload(SUBSCRIBE, {"sessia": conn.sessions[0].sessia}, self.codec)
            if await timed_call(conn.transport, body, self.codec, rec, self.args.timeout) is None:
                raise RuntimeError(f"Subscribe refused: {dict(rec.errors)}")

        await bounded_gather(200, [one(c) for c in self.conns])

    async def loops(self, rec: Recorder, conns: list[Conn], inflight: int,
                    on_ok: Callable[[Conn, int], None] | None = None) -> None:
        """Closed loop: ``inflight`` request loops per connection over its
        pre-encoded payloads, until the deadline.  With ``--rate``, open loop
        instead (``open_loop``)."""
        if self.args.rate:
            await self.open_loop(rec, conns, self.args.rate, on_ok)
            return

        async def loop(conn: Conn) -> None:
            deadline = self.run.deadline
            timeout = self.args.timeout
            codec = self.codec
            while time.perf_counter() < deadline:
                i = conn.next_index()
                try:
                    answer = await timed_call(conn.transport, conn.payloads[i], codec, rec, timeout)
                except ConnectionClosed:
                    return
                if answer is not None and on_ok is not None:
                    on_ok(conn, i)

        await asyncio.gather(*(loop(c) for c in conns for _ in range(inflight)))

    async def open_loop(self, rec: Recorder, conns: list[Conn], rate: float,
                        on_ok: Callable[[Conn, int], None] | None = None) -> None:
        """Requests start on a fixed schedule, ``rate`` per second in all, one
        connection after another (pipelined: a connection does not wait for
        its answers), whatever the answers do, as wrk2 does; each latency is
        measured from the request's scheduled start.  Requests that fall due
        while the generator is busy are sent at once when it gets to them,
        still timed from when they were due."""
        timeout = self.args.timeout
        codec = self.codec
        pending: set[asyncio.Task[None]] = set()

        async def one(conn: Conn, due: float) -> None:
            i = conn.next_index()
            try:
                answer = await timed_call(conn.transport, conn.payloads[i], codec, rec, timeout, scheduled=due)
            except ConnectionClosed:
                return
            if answer is not None and on_ok is not None:
                on_ok(conn, i)

        start = time.perf_counter()
        deadline = self.run.deadline
        interval = 1.0 / rate
        n = 0
        while True:
            now = time.perf_counter()
            due = start + n * interval
            if due >= deadline:
                break
            if due > now:
                await asyncio.sleep(due - now)
                continue
            while due <= now and due < deadline:  # everything due by now
                task = asyncio.ensure_future(one(conns[n % len(conns)], due))
                pending.add(task)
                task.add_done_callback(pending.discard)
                n += 1
                due = start + n * interval
        self.extra["scheduled"] = n
        if pending:
            await asyncio.gather(*pending)

    async def warm_up(self, rec_name: str = "warm-up") -> None:
        """One request per session, not measured: caches and prepared statements."""
        rec = Recorder(rec_name)

        async def one(conn: Conn) -> None:
            for i in range(len(conn.sessions)):
                await timed_call(conn.transport, conn.payloads[i], self.codec, rec, self.args.timeout)

        await bounded_gather(100, [one(c) for c in self.conns])
        refused = {k: v for k, v in rec.errors.items() if k != "timeout"}
        if refused:
            raise RuntimeError(f"warm-up requests refused: {refused}")
        if rec.errors:
            self.extra["warm_up_timeouts"] = rec.errors["timeout"]


def _local_host(i: int, count: int) -> str | None:
    """Beyond ~25 000 connections the ephemeral ports of one source address
    run out: spread the sources over 127.0.0.x (the target stays 127.0.0.1)."""
    if count <= 25_000:
        return None
    return f"127.0.0.{1 + i // 25_000}"


class Send(Scenario):
    """SendMessage ``add`` into dialogs of 2-10 members, all online and
    subscribed; counts the pushes that arrive."""

    name = "send"
    defaults = {"users": 200, "connections": 200, "inflight": 4, "dialog_size": "2-10"}

    async def prepare(self) -> None:
        a = self.args
        setup = self.run.setup
        sessions = await setup.accounts(a.users, max(a.users, a.connections))
        users = list(dict.fromkeys(s.user_id for s in sessions))
        self.groups = groups_of(users, a.dialog_sizes, random.Random(5))
        owners = {}
        for s in sessions:
            owners.setdefault(s.user_id, s)
        self.dialogs = await setup.dialogs(self.groups, owners)
        dialog_of = {}
        for (_, key), group in zip(self.dialogs, self.groups, strict=True):
            for uid in group:
                dialog_of[uid] = key
        await self.history_setup(setup, owners)
        conns = await self.connect(sessions, a.connections)
        for conn in conns:
            conn.payloads = [self.body(s, dialog_of[s.user_id]) for s in conn.sessions]
        if self.subscribes:
            await self.subscribe()
            # Pushes each send should cause: every subscribed connection of the
            # dialog's members (the author's own devices too: they sync).
            online: dict[int, int] = {}
            for conn in conns:
                online[conn.sessions[0].user_id] = online.get(conn.sessions[0].user_id, 0) + 1
            members = {key: group for (_, key), group in zip(self.dialogs, self.groups, strict=True)}
            per_dialog = {key: sum(online.get(u, 0) for u in group) for key, group in members.items()}
            self.fan = [[per_dialog[dialog_of[s.user_id]] for s in conn.sessions] for conn in conns]
        self.expected = 0
        await self.warm_up()
        if self.subscribes:
            # The warm-up sends' pushes leave after their answers: let them all
            # arrive before counting starts, or they would be counted as extra.
            warm = sum(sum(f) for f in self.fan)
            end = time.perf_counter() + 5.0
            while time.perf_counter() < end and sum(c.transport.push_count for c in conns) < warm:
                await asyncio.sleep(0.02)
        self.push_base = sum(c.transport.push_count for c in conns)
        self.recorder(R.SEND_MESSAGE if self.name == "send" else R.GET_MESSAGES)
        self.extra["dialogs"] = len(self.groups)
        self.extra["dialog_sizes"] = f"{min(map(len, self.groups))}-{max(map(len, self.groups))}"

    subscribes = True

    async def history_setup(self, setup: Any, owners: dict[int, Sess]) -> None:
        pass

    def body(self, s: Sess, key: str) -> bytes:
        return payload(
            R.SEND_MESSAGE,
            {"operation": "add", "message": {"infoMessage": {"pkDialog": key, "content": CONTENT}}, "sessia": s.sessia},
            self.codec,
        )

    async def measure(self) -> None:
        index = {id(c): n for n, c in enumerate(self.conns)}

        def count(conn: Conn, i: int) -> None:
            self.expected += self.fan[index[id(conn)]][i]

        await self.loops(self.primary, self.conns, self.args.inflight, count if self.subscribes else None)
        self.run.requests_ended = time.perf_counter()
        # Pushes of the last sends may still be on their way.
        end = time.perf_counter() + (2.0 if self.subscribes else 0.0)
        while time.perf_counter() < end and self.pushes()["received"] < self.expected:  # type: ignore[index]
            await asyncio.sleep(0.05)

    def pushes(self) -> dict[str, Any] | None:
        if not self.subscribes:
            return None
        received = sum(c.transport.push_count for c in self.conns) - self.push_base
        return {"received": received, "expected": self.expected}


class History(Send):
    """GetMessages: the 50 newest of a dialog with a longer history, warm."""

    name = "history"
    defaults = {"users": 200, "connections": 50, "inflight": 4, "dialog_size": "2-10"}
    subscribes = False

    async def history_setup(self, setup: Any, owners: dict[int, Sess]) -> None:
        if isinstance(setup, ApiSetup):
            await setup.history(self.dialogs, self.groups, self.args.history, owners)
        else:
            await setup.history(self.dialogs, self.groups, self.args.history)
        self.extra["messages_per_dialog"] = self.args.history

    def body(self, s: Sess, key: str) -> bytes:
        return payload(
            R.GET_MESSAGES, {"pkDialog": key, "date": "-1", "take": 50, "skip": 0, "sessia": s.sessia}, self.codec
        )


class Search(Scenario):
    """Search ``inDialogs`` and ``everyWhere`` over a store seeded by bench.seed."""

    name = "search"
    defaults = {"users": 50, "connections": 20, "inflight": 2, "dialog_size": "2-10"}
    MY_DIALOGS = 50

    async def prepare(self) -> None:
        from .seed import seed

        a = self.args
        setup = self.run.setup
        conn = await setup.open()
        sessions = await setup.accounts(a.users, max(a.users, a.connections))
        users = sorted({s.user_id for s in sessions})
        dialogs = max(1000, a.messages // 200)
        seeded = await seed(
            conn, users=min(5000, max(100, a.messages // 100)), dialogs=dialogs, messages=a.messages,
            idle_dialogs=dialogs * 10, extra_members=tuple(users), extra_dialogs=self.MY_DIALOGS,
        )
        # Settle the store as a running server's would be: otherwise autovacuum
        # takes on the million new rows in the middle of the measurement.
        await conn.execute("VACUUM (ANALYZE) messages, message_hidden, message_media, dialogs, dialog_members")
        mine = list(seeded.dialog_keys[: self.MY_DIALOGS])
        self.extra["store"] = {
            "messages": seeded.messages, "dialogs": len(seeded.dialog_ids), "users": len(seeded.user_ids),
            "my_dialogs": len(mine), "seed_seconds": round(seeded.seconds, 1),
        }
        rng = random.Random(3)
        conns = await self.connect(sessions, a.connections)
        self.everywhere = self.recorder("everyWhere")
        self.in_dialogs = self.recorder("inDialogs")
        for c in conns:
            c.payloads = []
            for s in c.sessions:
                c.payloads.append(payload(R.SEARCH, {"operation": "everyWhere", "search": rng.choice(WORDS),
                                                     "takedialogs": 50, "sessia": s.sessia}, self.codec))
                c.payloads.append(payload(R.SEARCH, {"operation": "inDialogs", "search": rng.choice(WORDS),
                                                     "dialogs": rng.sample(mine, 10), "take": 50,
                                                     "sessia": s.sessia}, self.codec))
            c.sessions = c.sessions * 2  # two payloads per session
        await self.warm_up()

    async def measure(self) -> None:
        async def loop(conn: Conn) -> None:
            while time.perf_counter() < self.run.deadline:
                i = conn.next_index()
                rec = self.everywhere if i % 2 == 0 else self.in_dialogs
                try:
                    await timed_call(conn.transport, conn.payloads[i], self.codec, rec, self.args.timeout)
                except ConnectionClosed:
                    return

        await asyncio.gather(*(loop(c) for c in self.conns for _ in range(self.args.inflight)))

    def status(self) -> str:
        ok = self.everywhere.ok + self.in_dialogs.ok
        errors = sum(self.everywhere.errors.values()) + sum(self.in_dialogs.errors.values())
        return f"Search {ok} ok, {errors} errors"


class Login(Scenario):
    """A login storm (Auth by password on --connections connections) while
    --probes other connections send Auth by token every --probe-interval:
    the probes' latency is the event loop's lag."""

    name = "login"
    defaults = {"users": 50, "connections": 8, "inflight": 4, "dialog_size": "2"}

    async def prepare(self) -> None:
        a = self.args
        setup = self.run.setup
        sessions = await setup.accounts(a.users, max(a.users, a.probes))
        probes = await self.connect(sessions[: a.probes], a.probes)
        for c in probes:
            c.payloads = [payload(R.AUTH, {"sessia": s.sessia}, self.codec) for s in c.sessions]
        self.probe_conns = probes
        await self.warm_up()
        storm = await bounded_gather(
            200, [open_transport(self.run.host, self.run.port) for _ in range(a.connections)]
        )
        users = list({s.user_id: s for s in sessions}.values())
        self.storm_conns = []
        for n, t in enumerate(storm):
            mine = users[n::a.connections] or users
            conn = Conn(t, mine)
            conn.payloads = [
                payload(R.AUTH, {"email": f"{s.login}@example.org", "password": PASSWORD,
                                 "sessia": {"device": {"deviceid": f"storm{n}", "os": "load"}, "client": CLIENT}},
                        self.codec)
                for s in mine
            ]
            self.storm_conns.append(conn)
        self.conns = probes + self.storm_conns
        self.extra["argon2_verify_ms_here_one_thread"] = await asyncio.to_thread(_argon2_verify_ms)
        # The probes alone first: the lag of an idle server, for comparison.
        baseline = Recorder("baseline")
        self.run.deadline = time.perf_counter() + 1.0
        await asyncio.gather(*(self._probe(c, baseline) for c in probes))
        self.extra["probe_before_storm_ms"] = baseline.summary(1.0)["latency_ms"]
        self.logins = self.recorder("Auth password")
        self.probe = self.recorder("Auth token (probe)")

    async def _probe(self, conn: Conn, rec: Recorder) -> None:
        while time.perf_counter() < self.run.deadline:
            try:
                await timed_call(conn.transport, conn.payloads[conn.next_index()], self.codec, rec, self.args.timeout)
            except ConnectionClosed:
                return
            await asyncio.sleep(self.args.probe_interval)

    async def measure(self) -> None:
        await asyncio.gather(
            self.loops(self.logins, self.storm_conns, self.args.inflight),
            *(self._probe(c, self.probe) for c in self.probe_conns),
        )


def _argon2_verify_ms() -> float:
    """Median of a few argon2 verifies with the server's parameters, here, on one thread."""
    from argon2 import PasswordHasher

    h = password_hash()
    hasher = PasswordHasher()
    took = []
    for _ in range(5):
        t0 = time.perf_counter()
        hasher.verify(h, PASSWORD)
        took.append((time.perf_counter() - t0) * 1000)
    return round(sorted(took)[2], 1)


@dataclass(eq=False, slots=True)
class _Waiter:
    started: float
    remaining: int
    done: asyncio.Future
    own: int = 0


class Fanout(Scenario):
    """One dialog of --dialog-size members, --online of them (default all)
    each on its own subscribed connection, the rest offline; one member sends,
    and each message's time until every other online member has its push is
    measured (--inflight messages at a time).  Besides CPU, the report gives
    server CPU per online recipient and the bytes the database wrote per
    message (WAL, and table plus index growth), read around the measured
    seconds when the harness can reach the database."""

    name = "fanout"
    defaults = {"users": None, "connections": None, "inflight": 1, "dialog_size": "100"}

    async def prepare(self) -> None:
        a = self.args
        k = a.dialog_sizes[1]
        online = a.online
        setup = self.run.setup
        sessions = await setup.accounts(k, online, every_user=False)
        members = setup.user_ids
        owner = {sessions[0].user_id: sessions[0]}
        self.dialog = (await setup.dialogs([[sessions[0].user_id, *(u for u in members if u != sessions[0].user_id)]],
                                           owner))[0][1]
        conns = await self.connect(sessions, online)
        for c in conns:
            c.transport.on_push = self._on_push
        await self.subscribe()
        if getattr(setup, "url", None) is not None:
            # Settle the bulk-loaded rows as a running server's would be:
            # otherwise autovacuum and a checkpoint take them on in the middle
            # of the measurement and count as PostgreSQL CPU per message.
            conn = await setup.open()
            await conn.execute("VACUUM (ANALYZE) users, sessions, dialogs, dialog_members, user_event_seq")
            await conn.execute("CHECKPOINT")
        self.sender = conns[0]
        self.waiting: dict[str, _Waiter] = {}
        self.sent = self.recorder(R.SEND_MESSAGE)
        self.delivery = self.recorder("push (each member)", request=False)
        self.complete = self.recorder("push (all members)", request=False)
        self.members = online
        self.push_base = sum(c.transport.push_count for c in conns)
        self.extra["members"] = k
        self.extra["online"] = online
        self._bytes_before: tuple[int, int] | None = None
        self._keys: dict[bytes, str | None] = {}

    async def _db_bytes(self) -> tuple[int, int] | None:
        """(WAL position, bytes of every table and index) now, or None when
        the database is not reachable from here."""
        url = getattr(self.run.setup, "url", None)
        if url is None:
            return None
        conn = await asyncpg.connect(url, timeout=30)
        try:
            row = await conn.fetchrow(
                "SELECT pg_current_wal_insert_lsn() - '0/0'::pg_lsn AS wal,"
                " (SELECT sum(pg_total_relation_size(c.oid)) FROM pg_class c"
                "  WHERE c.relkind IN ('r', 'm') AND c.relnamespace = 'public'::regnamespace) AS tables"
            )
        finally:
            await conn.close()
        return int(row["wal"]), int(row["tables"])

    async def before_measure(self) -> None:
        self._bytes_before = await self._db_bytes()

    async def after_measure(self) -> None:
        after = await self._db_bytes()
        if self._bytes_before is not None and after is not None:
            self.extra["_db_bytes"] = (after[0] - self._bytes_before[0], after[1] - self._bytes_before[1])

    def _message_key(self, frame: Frame) -> str | None:
        """The key of the message a push carries (None: not a new message).
        Every follower of a large dialog gets the very same bytes, so they are
        decoded once: the harness, one process reading every push of every
        member, must not be what limits the run."""
        if frame.body in self._keys:
            return self._keys[frame.body]
        body = decode_body(frame.codec, frame.body)
        key = None
        if body.get("Kind") == NEW_MESSAGE:
            key = ((body.get("Msg") or {}).get("infoMessage") or {}).get("msgKey")
        if frame.name == PUSH_DIALOG_EVENT:
            if len(self._keys) > 10_000:
                self._keys.clear()
            self._keys[frame.body] = key
        return key

    def _on_push(self, transport: LoadTransport, frame: Frame) -> None:
        if frame.name not in (PUSH_EVENT, PUSH_DIALOG_EVENT):
            return
        key = self._message_key(frame)
        if key is None:
            return
        waiter = self.waiting.get(key)
        if waiter is None:
            return
        if transport is self.sender.transport:
            waiter.own += 1
            return
        now = time.perf_counter()
        self.delivery.latencies.append(now - waiter.started)
        waiter.remaining -= 1
        if waiter.remaining == 0 and not waiter.done.done():
            waiter.done.set_result(now)

    async def _send_loop(self) -> None:
        sess = self.sender.sessions[0]
        loop = asyncio.get_running_loop()
        while time.perf_counter() < self.run.deadline:
            key = secrets.token_hex(16)
            body = payload(R.SEND_MESSAGE, {"operation": "add", "message": {"infoMessage": {
                "pkDialog": self.dialog, "content": CONTENT, "msgkey": key}}, "sessia": sess.sessia}, self.codec)
            waiter = _Waiter(time.perf_counter(), self.members - 1, loop.create_future())
            self.waiting[key] = waiter
            try:
                answer = await timed_call(self.sender.transport, body, self.codec, self.sent, self.args.timeout)
            except ConnectionClosed:
                return
            if answer is None:
                del self.waiting[key]
                continue
            try:
                finished = await asyncio.wait_for(asyncio.shield(waiter.done), self.args.timeout)
                self.complete.latencies.append(finished - waiter.started)
            except TimeoutError:
                self.delivery.errors["missing"] += waiter.remaining
                self.complete.errors["incomplete"] += 1
            del self.waiting[key]

    async def measure(self) -> None:
        await asyncio.gather(*(self._send_loop() for _ in range(self.args.inflight)))

    def pushes(self) -> dict[str, Any] | None:
        received = sum(c.transport.push_count for c in self.conns) - self.push_base
        # Every member's connection, the sender's own included (its other devices sync).
        return {"received": received, "expected": self.sent.ok * self.members}

    def status(self) -> str:
        return (f"{self.sent.ok} messages, {self.delivery.ok} member pushes,"
                f" {sum(self.delivery.errors.values())} missing")


class Idle(Scenario):
    """Open and authenticate --connections idle connections, hold them for
    --duration seconds; the server's RSS growth per connection."""

    name = "idle"
    defaults = {"users": 200, "connections": 2000, "inflight": 1, "dialog_size": "2"}

    async def prepare(self) -> None:
        a = self.args
        self.sessions = await self.run.setup.accounts(min(a.users, a.connections), a.connections)
        self.opened = 0
        self.auth = self.recorder("connect + Auth token")
        self.holding = False

    async def open_all(self) -> None:
        """Open and authenticate every connection (the first part of ``measure``)."""

        async def one(i: int, s: Sess) -> Conn | None:
            started = time.perf_counter()
            try:
                t = await open_transport(self.run.host, self.run.port, _local_host(i, len(self.sessions)))
            except OSError as exc:
                self.auth.errors[type(exc).__name__] += 1
                return None
            conn = Conn(t, [s], [payload(R.AUTH, {"sessia": s.sessia}, self.codec)])
            rec = Recorder("x")
            try:
                answer = await timed_call(t, conn.payloads[0], self.codec, rec, self.args.timeout)
            except ConnectionClosed:
                answer = None
            if answer is None:
                self.auth.errors.update(rec.errors)
                return conn
            self.auth.latencies.append(time.perf_counter() - started)
            self.opened += 1
            return conn

        results = await bounded_gather(200, [one(i, s) for i, s in enumerate(self.sessions)])
        self.conns = [c for c in results if c is not None]

    async def measure(self) -> None:
        started = time.perf_counter()
        await self.open_all()
        self.extra["open_seconds"] = round(time.perf_counter() - started, 2)
        self.holding = True
        # Hold as long as asked, from when the last one opened.
        self.run.deadline = time.perf_counter() + self.args.duration
        self.run.hold_started = time.perf_counter()
        while time.perf_counter() < self.run.deadline:
            await asyncio.sleep(0.1)

    def status(self) -> str:
        return f"{self.opened}/{len(self.sessions)} connections open" + (", holding" if self.holding else "")


SCENARIOS: dict[str, type[Scenario]] = {s.name: s for s in (Send, History, Search, Login, Fanout, Idle)}
