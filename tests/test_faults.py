"""Faults: nothing acknowledged is ever lost.

- the server process is killed (SIGKILL) while clients send: every message
  whose key a client received is there after a restart;
- PostgreSQL goes away and comes back while a client sends: requests in the
  outage get 503, the server reconnects by itself and never dies or hangs;
- SIGTERM while many sends are in flight: they finish, their answers arrive,
  connections close cleanly, and everything acknowledged is stored.
"""

from __future__ import annotations

import asyncio
import secrets
import signal
import time
from collections import Counter

import pytest

import client_sdk
from client_sdk.errors import ClientError
from protocol.codecs import decode_body
from protocol.events import NewMessage
from protocol.frames import Frame, FrameKind, encode_request
from protocol.status import SessiaError
from storage.embedded import EmbeddedPostgres

from .conftest import unique
from .support import TEST_CLIENT, ServerProcess
from .test_wire import Wire

PASSWORD = "correct horse battery"


async def connect(server: ServerProcess, deviceid: str | None = None, timeout: float = 10.0) -> client_sdk.Client:
    return await client_sdk.connect(
        server.host,
        server.port,
        device={"deviceid": deviceid or secrets.token_hex(8), "os": "Linux", "hostname": "faults"},
        client=TEST_CLIENT,
        timeout=timeout,
    )


async def owner_with_dialog(server: ServerProcess) -> tuple[client_sdk.Client, str]:
    c = await connect(server)
    login = unique("f")
    await c.register(login, f"{login}@example.org", PASSWORD)
    c.email = f"{login}@example.org"  # type: ignore[attr-defined]
    return c, await c.create_dialog("faults")


async def stored_keys(c: client_sdk.Client, dialog: str) -> set[str]:
    """Every message key of the dialog (all pages)."""
    keys: set[str] = set()
    skip = 0
    while True:
        page = await c.messages(dialog, take=100, skip=skip)
        keys.update(m.key for m in page)
        if len(page) < 100:
            return keys
        skip += 100


async def resume(server: ServerProcess, c: client_sdk.Client) -> client_sdk.Client:
    """The same session, on a new connection to the (restarted) server."""
    again = await connect(server, c.device.deviceid)
    assert c.token is not None
    await again.login_with_token(c.token)
    return again


def new_key() -> str:
    return "k" + secrets.token_hex(12)


# -- kill -9 --------------------------------------------------------------------------------


async def test_acknowledged_messages_survive_kill_9_and_restart(start_server):
    server = start_server("--rate-send-message", "0")
    try:
        owner, dialog = await owner_with_dialog(server)
        senders = [await resume(server, owner) for _ in range(4)]
        acked: set[str] = set()
        enough = asyncio.Event()

        async def send_forever(c: client_sdk.Client) -> None:
            while True:
                key = new_key()
                try:
                    await c.send_message(dialog, f"message {key}", msgkey=key)
                except (ClientError, SessiaError, OSError):
                    return  # the server is gone: this one may or may not be stored
                acked.add(key)
                if len(acked) >= 300:
                    enough.set()

        tasks = [asyncio.create_task(send_forever(c)) for c in senders for _ in range(4)]  # 16 in flight
        await asyncio.wait_for(enough.wait(), 60)
        await asyncio.to_thread(server.kill)
        await asyncio.wait_for(asyncio.gather(*tasks), 30)
        assert server.proc is not None and server.proc.returncode == -signal.SIGKILL
        killed_with = len(acked)

        server.start()
        reader = await resume(server, owner)
        stored = await stored_keys(reader, dialog)
        assert acked <= stored, f"{len(acked - stored)} acknowledged messages lost"
        assert killed_with >= 300
        for c in (owner, reader, *senders):
            await c.close()
    finally:
        server.stop()


# -- PostgreSQL restarted under load ----------------------------------------------------------


@pytest.fixture
def own_postgres(tmp_path):
    """A PostgreSQL of this test's own, durable (fsync and synchronous commit on):
    an immediate stop is a crash, and a commit it acknowledged must survive it."""
    pg = EmbeddedPostgres(tmp_path / "pg", durable=True)
    pg.start()
    yield pg
    pg.stop(mode="immediate")


async def test_postgres_restart_under_load_gives_503_then_recovers(start_server, own_postgres):
    pg = own_postgres
    server = start_server("--rate-send-message", "0", database_url=pg.url)
    try:
        owner, dialog = await owner_with_dialog(server)
        sender = await resume(server, owner)
        sender.timeout = 15.0  # a hang would show as RequestTimeout, which fails the test
        codes: Counter[int] = Counter()
        timeline: list[tuple[str, int]] = []
        acked: set[str] = set()
        phase = "before"
        stop = asyncio.Event()

        async def send_until_stopped() -> None:
            while not stop.is_set():
                key = new_key()
                answer = await sender.call(
                    "SendMessage",
                    {"operation": "add", "message": {"infoMessage": {"pkDialog": dialog, "content": key, "msgkey": key}}},
                )
                code = answer["Status"]["code"]
                codes[code] += 1
                timeline.append((phase, code))
                if code == 200:
                    acked.add(key)
                else:
                    assert answer["Status"]["message"] == "storage unavailable, try again shortly"
                    await asyncio.sleep(0.02)

        task = asyncio.create_task(send_until_stopped())
        await asyncio.sleep(0.5)
        phase = "down"
        await asyncio.to_thread(pg.stop, "immediate")
        await asyncio.sleep(1.5)
        phase = "restarting"
        await asyncio.to_thread(pg.start)
        phase = "up"
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and sum(1 for p, c in timeline if p == "up" and c == 200) < 20:
            assert not task.done(), task
            await asyncio.sleep(0.1)
        stop.set()
        await asyncio.wait_for(task, 20)

        print("answers:", dict(codes), "phases:", Counter(timeline))
        assert set(codes) <= {200, 503}, codes
        assert not [line for line in server.log if "unhandled error" in line]
        assert codes[503] > 0, "the outage was not noticed"
        assert any(p == "before" and c == 200 for p, c in timeline)
        assert sum(1 for p, c in timeline if p == "up" and c == 200) >= 20, "no recovery after PostgreSQL restarted"
        assert server.proc is not None and server.proc.poll() is None, "the server died"
        assert acked <= await stored_keys(sender, dialog)
        # other requests recover too: a new login (password hash check + session insert)
        fresh = await connect(server)
        assert (await fresh.login(owner.email, PASSWORD)).user_id == owner.user_id  # type: ignore[attr-defined]
        await fresh.close()
        for c in (owner, sender):
            await c.close()
    finally:
        server.stop()


async def test_event_stream_waits_out_a_database_outage(start_server, own_postgres):
    """The SDK's ``events()`` reconnects while the server is up and its
    database is not: the 503s of Auth and Subscribe are waited out, the
    session is kept, and the stream resumes from its seq when PostgreSQL is back."""
    pg = own_postgres
    server = start_server(database_url=pg.url)
    try:
        alice, dialog = await owner_with_dialog(server)
        bob = await connect(server)
        login = unique("f")
        await bob.register(login, f"{login}@example.org", PASSWORD)
        await alice.change_dialog(dialog, add_members=[bob.user_id])
        stream = await alice.events(max_backoff=0.5).start()
        await bob.send_message(dialog, "before")
        assert isinstance((await asyncio.wait_for(stream.__anext__(), 10)).event, NewMessage)

        await asyncio.to_thread(pg.stop, "immediate")
        alice.transport.close()  # the connection drops while the database is down
        waiting = asyncio.create_task(asyncio.wait_for(stream.__anext__(), 60))
        await asyncio.sleep(2.0)
        assert not waiting.done(), waiting  # retrying, not raising 503 to the caller
        await asyncio.to_thread(pg.start)
        for _ in range(100):
            try:
                await bob.send_message(dialog, "after", msgkey="after-the-outage")
                break
            except SessiaError as exc:
                assert exc.code == 503, exc
                await asyncio.sleep(0.1)
        event = (await waiting).event
        assert isinstance(event, NewMessage) and event.item.content == "after"
        assert alice.token is not None
        for c in (alice, bob):
            await c.close()
    finally:
        server.stop()


# -- graceful shutdown under load ------------------------------------------------------------


async def test_sigterm_under_load_finishes_inflight_sends_and_loses_nothing(start_server):
    server = start_server("--rate-send-message", "0")
    try:
        owner, dialog = await owner_with_dialog(server)
        sessia = owner.sessia()
        wires = [await Wire.open(server) for _ in range(6)]
        sent: dict[int, str] = {}
        ids = iter(range(1, 1 << 30))
        stop_sending = asyncio.Event()

        async def pump(w: Wire) -> None:
            """Keep ~32 pipelined sends outstanding until the server stops reading."""
            while not stop_sending.is_set():
                batch = b""
                for _ in range(16):
                    request_id, key = next(ids), new_key()
                    sent[request_id] = key
                    info = {"pkDialog": dialog, "content": key, "msgkey": key}
                    batch += encode_request(request_id, "SendMessage",
                                            {"operation": "add", "message": {"infoMessage": info}, "sessia": sessia})
                try:
                    await asyncio.wait_for(w.send(batch), 1)
                except (ConnectionError, TimeoutError):
                    return
                await asyncio.sleep(0.01)

        pumps = [asyncio.create_task(pump(w)) for w in wires]
        await asyncio.sleep(1.0)
        assert server.proc is not None
        server.proc.send_signal(signal.SIGTERM)
        await asyncio.sleep(0.2)
        stop_sending.set()
        await asyncio.gather(*pumps)

        acked: set[str] = set()
        codes: Counter[int] = Counter()
        for w in wires:
            # a clean close: every frame whole, then end-of-stream (no reset)
            events = await w.closed_by_server(timeout=20)
            assert not w.decoder.pending, "the stream ended inside a frame"
            for event in events:
                assert isinstance(event, Frame) and event.kind == FrameKind.RESPONSE
                body = decode_body(event.codec, event.body)
                codes[body["Status"]["code"]] += 1
                if body["Status"]["code"] == 200:
                    assert body["msgkey"] == sent[event.request_id]
                    acked.add(body["msgkey"])
            await w.close()
        assert server.proc.wait(20) == 0
        assert set(codes) == {200}, codes  # in-flight requests finished normally, none cut short
        assert len(acked) > 100

        server.start()
        reader = await resume(server, owner)
        assert acked <= await stored_keys(reader, dialog)
        await reader.close()
        await owner.close()
    finally:
        server.stop()
