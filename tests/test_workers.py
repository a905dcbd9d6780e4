"""``--workers N``: N server processes on one port act as one server.

The real ``python -m server --workers 2`` as a subprocess.  Which worker a
connection landed on is read from the kernel, not guessed: the worker whose
process holds the server's end of the connection's socket (psutil).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import psutil
import pytest
from prometheus_client.parser import text_string_to_metric_families

import client_sdk
from client_sdk import ConnectionClosed
from protocol.events import NewMessage
from server.config import parse_args

from .conftest import unique
from .support import ROOT, TEST_CLIENT, ServerProcess

PASSWORD = "correct horse battery"
AUTH_BUDGET = 4  # --rate-auth-account of the module's server, per 600 s


@pytest.fixture(scope="module")
def workers(start_server) -> ServerProcess:
    """Two workers on one database (the session's PostgreSQL), one port."""
    return start_server("--workers", "2", "--rate-auth-account", f"{AUTH_BUDGET}/600", "--metrics-port", "0")


def worker_pids(server: ServerProcess) -> set[int]:
    """The supervisor's worker processes alive now."""
    assert server.proc is not None
    return {
        child.pid for child in psutil.Process(server.proc.pid).children()
        if "worker" in child.cmdline() and child.status() != psutil.STATUS_ZOMBIE
    }


def worker_of(server: ServerProcess, client: client_sdk.Client) -> int:
    """The pid of the worker that accepted ``client``'s connection."""
    sockname = client.transport._transport.get_extra_info("sockname")
    for pid in worker_pids(server):
        for conn in psutil.Process(pid).net_connections(kind="tcp"):
            if conn.raddr and (conn.raddr.ip, conn.raddr.port) == tuple(sockname[:2]):
                return pid
    raise AssertionError(f"no worker holds the connection from {sockname}")


@pytest.fixture
async def dial(workers: ServerProcess) -> AsyncIterator[Callable[..., Awaitable[client_sdk.Client]]]:
    """Factory: a connection to the workers, on the worker ``on`` if given
    (connections are opened until the kernel hands one to it)."""
    opened: list[client_sdk.Client] = []

    async def open_client(on: int | None = None, device: dict | None = None) -> client_sdk.Client:
        for _ in range(64):
            c = await client_sdk.connect(
                workers.host, workers.port, device=device or {"deviceid": secrets.token_hex(8)}, client=TEST_CLIENT
            )
            opened.append(c)
            await c.ping()  # accepted, not only queued: a worker's socket holds it now
            if on is None or worker_of(workers, c) == on:
                return c
        raise AssertionError(f"64 connections and none reached worker {on}")

    yield open_client
    for c in opened:
        await c.close()


async def registered(dial, on: int | None = None) -> client_sdk.Client:
    c = await dial(on)
    login = unique("wk")
    await c.register(login, f"{login}@example.org", PASSWORD)
    c.email = f"{login}@example.org"  # type: ignore[attr-defined]
    return c


async def test_connections_spread_over_the_workers(workers, dial):
    pids = worker_pids(workers)
    assert len(pids) == 2
    clients = [await dial() for _ in range(16)]
    landed = [worker_of(workers, c) for c in clients]
    # Each worker accepts some (16 connections on one worker: 1 chance in 32,768).
    assert set(landed) == pids, landed
    for c in clients:
        await c.ping()


def connections_gauge(url: str) -> float:
    with urllib.request.urlopen(url, timeout=5) as response:
        text = response.read().decode()
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "sessia_connections":
                return sample.value
    raise AssertionError(f"no sessia_connections at {url}")


async def test_each_worker_has_its_own_metrics_listener_counting_its_own_connections(workers, dial):
    urls = dict(re.findall(r"worker (\d+) metrics on (http://\S+/metrics)", "\n".join(workers.log)))
    assert sorted(urls) == ["0", "1"]
    by_pid = {}  # the worker that listens on each metrics port
    for pid in worker_pids(workers):
        for conn in psutil.Process(pid).net_connections(kind="tcp"):
            for url in urls.values():
                if conn.status == psutil.CONN_LISTEN and url.endswith(f":{conn.laddr.port}/metrics"):
                    by_pid[pid] = url
    assert len(by_pid) == 2
    await asyncio.sleep(0.5)  # connections of earlier tests closed
    before = {pid: await asyncio.to_thread(connections_gauge, url) for pid, url in by_pid.items()}
    landed = [worker_of(workers, await dial()) for _ in range(12)]
    after = {pid: await asyncio.to_thread(connections_gauge, url) for pid, url in by_pid.items()}
    assert {pid: after[pid] - before[pid] for pid in by_pid} == {pid: landed.count(pid) for pid in by_pid}


def test_the_number_of_workers_is_one_or_more() -> None:
    assert parse_args([]).workers == 1
    assert parse_args(["--workers", "3"]).workers == 3
    for bad in ("0", "-1", "two"):
        with pytest.raises(SystemExit) as exited:
            parse_args(["--workers", bad])
        assert exited.value.code == 2


async def test_a_message_sent_on_one_worker_is_pushed_to_a_subscriber_on_the_other(workers, dial):
    first, second = sorted(worker_pids(workers))
    alice = await registered(dial, on=first)
    bob = await registered(dial, on=second)
    stream = await bob.events(after=0).start()
    dialog = await alice.create_dialog("across workers", members=[bob.user_id])
    key = await alice.send_message(dialog, "from the other worker")
    while True:
        update = await asyncio.wait_for(stream.__anext__(), 10)
        if isinstance(update.event, NewMessage):
            break
    assert update.event.dialog_key == dialog
    assert (update.event.item.key, update.event.item.content) == (key, "from the other worker")


async def test_a_logout_on_one_worker_is_refused_at_once_on_the_other(workers, dial):
    first, second = sorted(worker_pids(workers))
    carol = await registered(dial, on=first)
    on_other = await dial(on=second, device=carol.device.full())
    token = carol.token
    await on_other.login_with_token(token)  # the other worker now has the session cached
    await carol.logout()
    await asyncio.sleep(0.3)  # the signal's way through the broker, as between nodes
    # Its cache forgot the session: the token is refused there on a new connection too.
    fresh = await dial(on=second, device=carol.device.full())
    fresh.token = token
    answer = await fresh.call("Auth", {})
    assert answer["Status"] == {"code": 401, "message": "invalid or revoked token"}


async def test_the_password_budget_of_an_account_holds_across_workers(workers, dial):
    """An attacker who spreads guesses over both workers gets the account's
    budget once, not once per worker."""
    victim = await registered(dial)
    first, second = sorted(worker_pids(workers))
    attackers = [await dial(on=pid) for pid in (first, second) * AUTH_BUDGET]
    codes = []
    for attacker in attackers:
        answer = await attacker.call("Auth", {"email": victim.email, "password": "wrong password!",
                                              "sessia": attacker._login_sessia()})
        codes.append(answer["Status"]["code"])
    assert codes.count(401) == AUTH_BUDGET and codes.count(429) == AUTH_BUDGET, codes
    assert codes[:AUTH_BUDGET] == [401] * AUTH_BUDGET
    # ...and the right password waits with the guesses, on either worker.
    for pid in (first, second):
        late = await dial(on=pid)
        answer = await late.call("Auth", {"email": victim.email, "password": PASSWORD, "sessia": late._login_sessia()})
        assert answer["Status"]["code"] == 429


async def test_a_kill_of_a_worker_loses_no_acknowledged_message_and_it_is_started_again(workers, dial):
    victim = min(worker_pids(workers))
    alice = await registered(dial, on=victim)
    bob = await registered(dial, on=victim)
    dialog = await alice.create_dialog("kill -9", members=[bob.user_id])
    stream = await bob.events(after=0).start()
    acknowledged: list[str] = []
    since = len(workers.log)

    async def send_until(count: int) -> None:
        n = 0
        while len(acknowledged) < count:
            n += 1
            try:
                acknowledged.append(await alice.send_message(dialog, f"message {n}"))
            except (ConnectionClosed, OSError):
                # In flight when the worker died: it may or may not be stored;
                # the SDK reconnects, resumes the session, and sending goes on.
                await reconnect(alice)

    sender = asyncio.create_task(send_until(60))
    while len(acknowledged) < 20:
        await asyncio.sleep(0.01)
    os.kill(victim, signal.SIGKILL)
    await asyncio.wait_for(sender, 60)

    # Every acknowledged message is in the history, and Bob's stream (which
    # reconnected by itself) delivers each stored message once, in order.
    stored = [m.key for m in await alice.messages(dialog, take=100)]
    assert 100 > len(stored) >= len(acknowledged) >= 60
    assert set(acknowledged) <= set(stored)
    received: list[str] = []
    while len(received) < len(stored):
        update = await asyncio.wait_for(stream.__anext__(), 30)
        if isinstance(update.event, NewMessage):
            received.append(update.event.item.key)
    assert sorted(received) == sorted(stored)
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(stream.__anext__(), 1)

    # The supervisor noticed, said so, and started the worker again.
    deadline = time.monotonic() + 30
    while len(worker_pids(workers)) < 2 and time.monotonic() < deadline:
        await asyncio.sleep(0.1)
    assert len(worker_pids(workers)) == 2 and victim not in worker_pids(workers)
    lines = workers.log[since:]
    assert any(f"(pid {victim}) was killed by SIGKILL" in line and "starting it again" in line for line in lines)
    assert any("started again" in line for line in lines)
    assert not workers.alarms(since)


async def reconnect(c: client_sdk.Client) -> None:
    for _ in range(100):
        try:
            await c.reconnect()
            return
        except (ConnectionClosed, OSError):
            await asyncio.sleep(0.1)
    raise AssertionError("could not reconnect")


# -- starting and stopping ------------------------------------------------------------------


def start_embedded_workers(tmp_path: Path, *extra: str) -> ServerProcess:
    """Two workers on an embedded PostgreSQL of their own (the supervisor starts it)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SESSIA_")}
    return ServerProcess(
        tmp_path / "data", ["--workers", "2", "--no-durable", "--allow-any-client", *extra], env=env
    ).start()


def descendants(server: ServerProcess) -> list[psutil.Process]:
    assert server.proc is not None
    return psutil.Process(server.proc.pid).children(recursive=True)


def gone(processes: list[psutil.Process], timeout: float) -> bool:
    _, alive = psutil.wait_procs(processes, timeout=timeout)
    return not alive


async def test_a_clean_stop_leaves_no_process_and_no_ready_file(tmp_path):
    ready = tmp_path / "sessia.ready"
    server = start_embedded_workers(tmp_path, "--ready-file", str(ready))
    try:
        deadline = time.monotonic() + 10
        while not ready.exists() and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        assert ready.read_text() == f"127.0.0.1:{server.port}\n"
        family = descendants(server)
        for pid in worker_pids(server):  # written once every worker listens
            assert any(c.status == psutil.CONN_LISTEN and c.laddr.port == server.port
                       for c in psutil.Process(pid).net_connections(kind="tcp"))
        assert sum("worker" in p.cmdline() for p in family) == 2
        assert any("postgres" in p.name() for p in family)
        async with await client_sdk.connect(server.host, server.port, device={"deviceid": "d1"},
                                            client=TEST_CLIENT) as c:
            await c.register(unique(), f"{unique()}@example.org", PASSWORD)
        assert server.stop(signal.SIGTERM) == 0
        assert gone(family, 10)
        assert not ready.exists()
        assert not server.alarms()
    finally:
        server.stop(signal.SIGKILL)


async def test_nothing_outlives_a_kill_of_the_supervisor(tmp_path):
    server = start_embedded_workers(tmp_path)
    try:
        family = descendants(server)
        assert sum("worker" in p.cmdline() for p in family) == 2
        server.kill()
        # The workers drain (their parent-death signal is SIGTERM), the
        # database stops fast (SIGINT): the port is free again.
        assert gone(family, 30), [p.cmdline() for p in family if p.is_running()]
        with contextlib.closing(socket.socket()) as s:
            s.bind(("127.0.0.1", server.port))
    finally:
        server.stop(signal.SIGKILL)


def test_workers_without_a_broker_is_a_start_up_error(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("SESSIA_")}
    result = subprocess.run(
        [sys.executable, "-m", "server", "--workers", "2", "--broker", "none", "--port", "0",
         "--data-dir", str(tmp_path / "data")],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=60,
    )
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].endswith(
        "cannot start: --workers 2 needs a broker for the workers to act as one server:"
        " use --broker postgres (the default) or nats://host:port, not none"
    ), result.stderr
    assert not (tmp_path / "data").exists()  # checked before anything was made
