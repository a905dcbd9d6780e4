"""Shared fixtures: one embedded PostgreSQL per test run, one SMTP server, one
S3 server (SeaweedFS, started on first use), and one shared server process;
tests that restart or kill a server start their own (each on its own database
of the same PostgreSQL)."""

from __future__ import annotations

import concurrent.futures
import itertools
import secrets
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import asyncpg
import pytest

import client_sdk
from storage.embedded import EmbeddedPostgres

from .fuzz_schema import TALLY
from .seaweedfs import SeaweedFS
from .support import TEST_CLIENT, MailBox, ServerProcess, start_smtp

_db_numbers = itertools.count(1)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """How many hostile examples the fuzz searches sent (``make fuzz`` promises a number)."""
    if TALLY:
        statuses = ", ".join(f"{code}: {n:,}" for code, n in sorted(TALLY.items()))
        terminalreporter.write_line(f"fuzz: {TALLY.total():,} examples sent ({statuses})")


@pytest.fixture(scope="session")
def pg(tmp_path_factory: pytest.TempPathFactory):
    # Every test server opens up to --db-pool-size connections, and many live
    # at once (session-wide servers beside each test's own): room for them all.
    pg = EmbeddedPostgres(tmp_path_factory.mktemp("pg"), durable=False, max_connections=1000)
    pg.start()
    yield pg
    pg.stop(mode="immediate")


@pytest.fixture(scope="session")
def new_database(pg: EmbeddedPostgres) -> Callable[[], str]:
    """Create an empty database on the session's PostgreSQL; returns its URL."""
    import asyncio

    def create() -> str:
        name = f"sessia_test_{next(_db_numbers)}"

        async def run() -> None:
            conn = await asyncpg.connect(pg.url)
            try:
                await conn.execute(f'CREATE DATABASE "{name}"')
            finally:
                await conn.close()

        # Runs in its own thread: callers may be inside a running event loop.
        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            pool.submit(asyncio.run, run()).result()
        return pg.url.replace("/postgres?", f"/{name}?")

    return create


@pytest.fixture(scope="session")
def s3():
    """A real S3 server (SeaweedFS) with one bucket, for the whole run; its
    ``args()`` are the server flags that keep media there."""
    store = SeaweedFS().start()
    yield store
    store.stop()


@pytest.fixture(scope="session")
def smtp():
    controller, box, port = start_smtp()
    box.port = port  # type: ignore[attr-defined]
    yield box
    controller.stop()


@pytest.fixture(scope="session")
def clients_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("conf") / "clients.toml"
    path.write_text(
        "[[client]]\n"
        f'nameclient = "{TEST_CLIENT["nameclient"]}"\n'
        f'hashcert = "{TEST_CLIENT["hashcert"]}"\n'
        "min_version = 2\n"
    )
    return path


@pytest.fixture(scope="session")
def start_server(tmp_path_factory, new_database, smtp: MailBox, clients_file: Path):
    """Factory: a new server process on a fresh database and data dir."""
    started: list[ServerProcess] = []

    def start(*extra: str, database_url: str | None = None, data_dir: Path | None = None) -> ServerProcess:
        server = ServerProcess(
            data_dir or tmp_path_factory.mktemp("data"),
            [
                "--database-url", database_url or new_database(),
                "--clients", str(clients_file),
                "--smtp-url", f"smtp://127.0.0.1:{smtp.port}",  # type: ignore[attr-defined]
                "--log-level", "INFO",
                # Every test client connects from 127.0.0.1: per-address rate
                # limits would throttle the suite (tests/test_limits.py sets its own).
                "--rate-auth-ip", "0", "--rate-registration-ip", "0", "--rate-email-ip", "0", "--rate-reset-ip", "0",
                *extra,
            ],
        )
        started.append(server)
        return server.start()

    yield start
    for server in started:
        server.ask_to_stop()
    for server in started:
        server.stop()


@pytest.fixture(scope="session")
def server(start_server) -> ServerProcess:
    """The shared server most tests talk to."""
    return start_server()


def unique(prefix: str = "u") -> str:
    return f"{prefix}{uuid.uuid4().hex[:10]}"


@pytest.fixture
async def connect(server: ServerProcess) -> AsyncIterator[Callable[..., Awaitable[client_sdk.Client]]]:
    """Factory for SDK clients on the shared server, closed after the test."""
    opened: list[client_sdk.Client] = []

    async def open_client(*, target: ServerProcess | None = None, device: str | None = None, **kw) -> client_sdk.Client:
        target = target or server
        c = await client_sdk.connect(
            target.host,
            target.port,
            device={"deviceid": device or secrets.token_hex(8), "os": "Linux", "mac": "00:11", "hostname": "test-host"},
            client=kw.pop("client", TEST_CLIENT),
            **kw,
        )
        opened.append(c)
        return c

    yield open_client
    for c in opened:
        await c.close()


@pytest.fixture
async def user(connect) -> Callable[..., Awaitable[client_sdk.Client]]:
    """Factory: a freshly registered user, logged in on its own connection."""

    async def make(**kw) -> client_sdk.Client:
        c = await connect(**kw)
        login = unique()
        await c.register(login, f"{login}@example.org", "correct horse battery")
        c.login_name = login  # type: ignore[attr-defined]
        c.email = f"{login}@example.org"  # type: ignore[attr-defined]
        c.password = "correct horse battery"  # type: ignore[attr-defined]
        return c

    return make
