"""Restarts: what a server stores outlives the process.

Accounts and sessions live in PostgreSQL (the session cache is only a cache),
so after a stop and a start on the same data, a password still logs in, a kept
token still works, and a token revoked before the restart stays revoked.  Both
with an external PostgreSQL (``--database-url``) and with the embedded one the
server runs itself under ``--data-dir``.
"""

from __future__ import annotations

import secrets
from pathlib import Path

import pytest

import client_sdk
from client_sdk import Unauthorized

from .conftest import unique
from .support import TEST_CLIENT, ServerProcess

PASSWORD = "correct horse battery"


async def connect(server: ServerProcess, deviceid: str | None = None) -> client_sdk.Client:
    return await client_sdk.connect(
        server.host,
        server.port,
        device={"deviceid": deviceid or secrets.token_hex(8), "os": "Linux", "hostname": "restart-test"},
        client=TEST_CLIENT,
    )


async def register_and_keep(server: ServerProcess) -> tuple[str, str, client_sdk.LoginResult, str, str]:
    """Register an account; also open and log out a second session.  Returns
    (email, device of the live session, its login result, the dead token, its device)."""
    login = unique("r")
    email = f"{login}@example.org"
    first = await connect(server)
    registered = await first.register(login, email, PASSWORD)
    second = await connect(server)
    await second.login(email, PASSWORD)
    dead_token, dead_device = second.token, second.device.deviceid
    await second.logout()
    await first.close()
    await second.close()
    assert dead_token is not None
    return email, first.device.deviceid, registered, dead_token, dead_device


async def check_after_restart(server: ServerProcess, kept: tuple[str, str, client_sdk.LoginResult, str, str]) -> None:
    email, deviceid, registered, dead_token, dead_device = kept
    same_device = await connect(server, deviceid)
    try:
        assert await same_device.login_with_token(registered.token) == registered
    finally:
        await same_device.close()
    new_device = await connect(server)
    try:
        logged_in = await new_device.login(email, PASSWORD)
        assert logged_in.user_id == registered.user_id and logged_in.token != registered.token
    finally:
        await new_device.close()
    revoked = await connect(server, dead_device)
    try:
        with pytest.raises(Unauthorized, match="invalid or revoked token"):
            await revoked.login_with_token(dead_token)
    finally:
        await revoked.close()


async def test_accounts_and_sessions_survive_a_restart(start_server):
    server = start_server()
    kept = await register_and_keep(server)
    port = server.port
    server.restart()  # same data dir, same database, same port
    assert server.port == port
    await check_after_restart(server, kept)


async def test_embedded_postgres_keeps_accounts_across_restarts(tmp_path: Path, monkeypatch):
    monkeypatch.delenv("SESSIA_DATABASE_URL", raising=False)
    data_dir = tmp_path / "data"
    server = ServerProcess(data_dir, ["--allow-any-client", "--no-durable"])
    try:
        server.start()
        assert any("initialising embedded PostgreSQL" in line for line in server.log)
        kept = await register_and_keep(server)
        assert server.stop() == 0
        # A new process on the same data dir finds the same cluster.
        server = ServerProcess(data_dir, ["--allow-any-client", "--no-durable"])
        server.start()
        assert not any("initialising embedded PostgreSQL" in line for line in server.log)
        assert any("embedded PostgreSQL started" in line for line in server.log)
        await check_after_restart(server, kept)
    finally:
        server.stop()
    # Stopping the server stopped the PostgreSQL it started.
    assert not (data_dir / "postgres" / "postmaster.pid").exists()
