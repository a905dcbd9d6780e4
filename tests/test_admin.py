"""``python -m server admin``: every command as a subprocess against a real
database, and its effect on running servers (revoked tokens, client builds)."""

from __future__ import annotations

import asyncio
import io
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from client_sdk.errors import Unauthorized
from server import admin
from storage.embedded import EmbeddedPostgres

from .conftest import unique
from .support import ROOT, ServerProcess, free_port

PASSWORD = "admin-chosen password"


def run_admin(*args: str, stdin: str = "", env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """``python -m server admin ARGS`` with no SESSIA_* variable but ``env``'s."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("SESSIA_")}
    return subprocess.run(
        [sys.executable, "-m", "server", "admin", *args],
        cwd=ROOT,
        input=stdin,
        capture_output=True,
        text=True,
        env={**clean, **(env or {})},
        timeout=120,
    )


async def admin_async(*args: str, **kw) -> subprocess.CompletedProcess:
    return await asyncio.to_thread(run_admin, *args, **kw)


def db_url(server: ServerProcess) -> str:
    return server.args[server.args.index("--database-url") + 1]


async def same_device(connect, who, **kw):
    """A new connection from ``who``'s device: tokens are bound to a device."""
    return await connect(device=who.device.deviceid, **kw)


async def eventually(check, timeout: float, interval: float = 0.05):
    """Run ``check`` until it stops raising; return its result and the time it took."""
    started = time.monotonic()
    while True:
        try:
            return await check(), time.monotonic() - started
        except Exception:
            if time.monotonic() - started > timeout:
                raise
            await asyncio.sleep(interval)


# -- usage --------------------------------------------------------------------------------

COMMANDS = [
    [], ["create-user"], ["reset-password"], ["revoke-sessions"], ["clients"], ["clients", "list"],
    ["clients", "add"], ["clients", "remove"], ["schema"], ["migrate"], ["stats"],
    ["users"], ["users", "list"], ["users", "show"], ["sessions"], ["sessions", "list"], ["sessions", "revoke"],
]


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: " ".join(c) or "admin")
def test_every_command_has_help(command: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        admin.main([*command, "--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith(f"usage: python -m server admin {' '.join(command)}".rstrip())


@pytest.mark.parametrize(
    "args, stdin, message",
    [
        ((), "", "required: COMMAND"),
        (("frobnicate",), "", "invalid choice: 'frobnicate'"),
        (("clients", "add", "only-a-name"), "", "required: HASHCERT"),
        (("create-user", "no spaces allowed", "x@example.org", "--password-stdin"), "", "3 to 32 letters"),
        (("create-user", "someone", "not-an-email", "--password-stdin"), "", "not a valid email address"),
        (("create-user", "someone", "x@example.org", "--password-stdin"), "", "empty password"),
        (("create-user", "someone", "x@example.org", "--password-stdin"), "short\n", "shorter than 8 characters"),
        (("create-user", "someone", "x@example.org"), "", "no terminal to ask for the password"),
        (("create-user", "someone", "x@example.org", "hunter22", "--password-stdin"), "", "unrecognized arguments"),
        (("--config", "/nonexistent/sessia.toml", "stats"), "", "config file /nonexistent/sessia.toml: No such file"),
    ],
)
def test_usage_errors_exit_2(args, stdin, message, monkeypatch, capsys) -> None:
    monkeypatch.setattr(sys, "stdin", io.StringIO(stdin))  # a pipe, not a terminal
    try:
        code = admin.main(list(args))
    except SystemExit as exc:  # argparse's own usage errors
        code = exc.code
    assert code == 2
    assert message in capsys.readouterr().err


async def test_usage_error_exit_code_from_the_command_line() -> None:
    result = await admin_async("create-user", "someone", "x@example.org", "--password-stdin", stdin="short\n")
    assert result.returncode == 2
    assert result.stderr.strip() == "python -m server admin: error: password: shorter than 8 characters"


async def test_unreachable_database_exits_1() -> None:
    result = await admin_async("--database-url", "postgresql://postgres@127.0.0.1:1/none", "stats")
    assert result.returncode == 1
    assert result.stderr.startswith("error: ")
    assert "Traceback" not in result.stderr


# -- accounts ------------------------------------------------------------------------------


async def test_create_user_can_log_in(server: ServerProcess, connect) -> None:
    login = unique()
    email = f"{login}@example.org"
    result = await admin_async("create-user", login, email, "--password-stdin", "--database-url", db_url(server),
                               stdin=PASSWORD + "\n")
    assert result.returncode == 0, result.stderr
    assert PASSWORD not in result.stdout + result.stderr
    user_id = int(re.search(r"created user \S+ <\S+> with id (\d+)", result.stdout).group(1))  # type: ignore[union-attr]
    client = await connect()
    # The server verifies the hash the command made: same argon2 parameters.
    assert (await client.login(email, PASSWORD)).user_id == user_id
    assert (await client.get_user(user_id)).nickname == login  # the nickname starts as the login

    again = await admin_async("--database-url", db_url(server), "create-user", login.upper(), f"x{email}",
                              "--password-stdin", stdin=PASSWORD + "\n")
    assert again.returncode == 1
    assert again.stderr.strip() == "error: login is already in use"
    same_email = await admin_async("--database-url", db_url(server), "create-user", unique(), email.upper(),
                                   "--password-stdin", stdin=PASSWORD + "\n")
    assert same_email.returncode == 1
    assert same_email.stderr.strip() == "error: email is already in use"


async def test_revoke_sessions_refused_at_once_by_running_server(server: ServerProcess, user, connect) -> None:
    alice = await user()
    other_device = await connect()
    await other_device.login(alice.email, alice.password)
    tokens = [alice.token, other_device.token]
    bob = await user()  # untouched

    result = await admin_async("--database-url", db_url(server), "revoke-sessions", alice.login_name)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"2 session(s) of {alice.login_name} (id {alice.user_id}) revoked"

    # The tokens were in the server's cache: the signal cleared them.
    for device, token in zip((alice, other_device), tokens, strict=True):
        with pytest.raises(Unauthorized, match="invalid or revoked token"):
            await (await same_device(connect, device)).login_with_token(token)
    assert (await (await same_device(connect, bob)).login_with_token(bob.token)).user_id == bob.user_id
    # The account itself still works.
    assert (await (await connect()).login(alice.email, alice.password)).user_id == alice.user_id


async def test_reset_password(server: ServerProcess, user, connect) -> None:
    alice = await user()
    result = await admin_async("--database-url", db_url(server), "reset-password", alice.email.upper(),
                               "--password-stdin", stdin=PASSWORD + "\r\n")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"password changed for {alice.login_name} (id {alice.user_id}); 1 session(s) revoked"
    with pytest.raises(Unauthorized, match="invalid or revoked token"):
        await (await same_device(connect, alice)).login_with_token(alice.token)
    with pytest.raises(Unauthorized, match="wrong email or password"):
        await (await connect()).login(alice.email, alice.password)
    assert (await (await connect()).login(alice.login_name, PASSWORD)).user_id == alice.user_id


async def test_unknown_account_exits_1(server: ServerProcess) -> None:
    for command in (("revoke-sessions", "nobody-here"), ("reset-password", "nobody@example.org", "--password-stdin")):
        result = await admin_async("--database-url", db_url(server), *command, stdin=PASSWORD + "\n")
        assert result.returncode == 1
        assert result.stderr.strip() == f"error: no account with login or email {command[1]!r}"


# -- client builds -------------------------------------------------------------------------


def build(name: str, hashcert: str, version: int = 1) -> dict:
    return {"nameclient": name, "hashcert": hashcert, "version": version}


async def test_clients_add_list_remove_reach_running_server(server: ServerProcess, connect) -> None:
    name, hashcert = unique("app-"), unique("cert")
    client = await connect(client=build(name, hashcert, 3))
    with pytest.raises(Unauthorized, match="unknown client build"):
        await client.register(unique(), f"{unique()}@example.org", PASSWORD)

    url = db_url(server)
    added = await admin_async("clients", "add", name, hashcert, "--min-version", "2", "--database-url", url)
    assert added.returncode == 0, added.stderr
    assert added.stdout.strip() == f"added client {name} {hashcert} (minimum version 2)"

    async def register():
        login = unique()
        return await client.register(login, f"{login}@example.org", PASSWORD)

    # The server re-reads its registry every 30 s; the broker signal is what makes it this quick.
    _, took = await eventually(register, timeout=5)
    assert took < 5

    listed = await admin_async("clients", "list", "--database-url", url)
    assert listed.returncode == 0
    assert re.search(rf"^{re.escape(name)}\s+{hashcert}\s+2$", listed.stdout, re.M)

    raised = await admin_async("clients", "add", name, hashcert, "--min-version", "4", "--database-url", url)
    assert raised.stdout.strip() == f"updated client {name} {hashcert} (minimum version 4)"

    async def refused_as_too_old():
        with pytest.raises(Unauthorized, match="older than the minimum version 4"):
            await (await same_device(connect, client, client=build(name, hashcert, 3))).login_with_token(client.token)

    await eventually(refused_as_too_old, timeout=5)

    removed = await admin_async("clients", "remove", name, "--database-url", url)
    assert removed.returncode == 0, removed.stderr
    assert removed.stdout.strip() == f"removed 1 build(s) of client {name}"

    async def refused_as_unknown():
        with pytest.raises(Unauthorized, match="unknown client build"):
            await (await same_device(connect, client, client=build(name, hashcert, 9))).login_with_token(client.token)

    await eventually(refused_as_unknown, timeout=5)
    again = await admin_async("clients", "remove", name, hashcert, "--database-url", url)
    assert again.returncode == 1
    assert again.stderr.strip() == f"error: no registered client build {name} {hashcert}"


@pytest.fixture(scope="module")
def lone_server(start_server) -> ServerProcess:
    """No broker: only the periodic reload tells it about client builds."""
    return start_server("--broker", "none", "--client-refresh-interval", "0.3")


async def test_clients_reloaded_within_refresh_interval(lone_server: ServerProcess, connect) -> None:
    name, hashcert = unique("app-"), unique("cert")
    client = await connect(target=lone_server, client=build(name, hashcert))
    result = await admin_async("--database-url", db_url(lone_server), "--broker", "none", "clients", "add", name, hashcert)
    assert result.returncode == 0, result.stderr
    assert "--broker none: running servers are not told" in result.stderr

    async def register():
        login = unique()
        return await client.register(login, f"{login}@example.org", PASSWORD)

    _, took = await eventually(register, timeout=3)
    assert took < 3


@pytest.fixture(scope="module")
def nats_url():
    binary = shutil.which("nats-server") or str(Path(sys.executable).parent / "nats-server")
    port = free_port()
    proc = subprocess.Popen([binary, "-a", "127.0.0.1", "-p", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 10
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            break
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)
    yield f"nats://127.0.0.1:{port}"
    proc.terminate()
    proc.wait(10)


async def test_signals_over_nats(start_server, nats_url: str, connect) -> None:
    target = start_server("--broker", nats_url)
    url = db_url(target)
    name, hashcert = unique("app-"), unique("cert")
    newcomer = await connect(target=target, client=build(name, hashcert))
    added = await admin_async("--database-url", url, "--broker", nats_url, "clients", "add", name, hashcert)
    assert added.returncode == 0, added.stderr
    login = unique()

    async def register():
        return await newcomer.register(login, f"{login}@example.org", PASSWORD)

    _, took = await eventually(register, timeout=5)
    assert took < 5  # not the 30 s reload: the signal
    revoked = await admin_async("--database-url", url, "--broker", nats_url, "revoke-sessions", login)
    assert revoked.returncode == 0, revoked.stderr
    again = await same_device(connect, newcomer, target=target, client=build(name, hashcert))
    with pytest.raises(Unauthorized, match="invalid or revoked token"):
        await again.login_with_token(newcomer.token)


# -- schema, stats, settings -----------------------------------------------------------------


async def test_schema_and_migrate_on_new_database(new_database) -> None:
    url = new_database()
    schema = await admin_async("--database-url", url, "schema")
    assert schema.returncode == 0, schema.stderr
    assert schema.stdout.startswith("schema version: 0\npending migrations:\n  0001_initial\n")

    stats = await admin_async("--database-url", url, "stats")
    assert stats.returncode == 1
    assert "migration(s) are pending: run `python -m server admin migrate`" in stats.stderr

    migrate = await admin_async("--database-url", url, "migrate")
    assert migrate.returncode == 0, migrate.stderr
    assert migrate.stdout.startswith("applied: 0001, ")
    schema = await admin_async("--database-url", url, "schema")
    assert "no pending migrations" in schema.stdout
    again = await admin_async("--database-url", url, "migrate")
    assert again.stdout.startswith("nothing to apply\n")

    stats = await admin_async("--database-url", url, "stats", "--json")
    assert stats.returncode == 0, stats.stderr
    assert json.loads(stats.stdout) == {
        "users": 0, "dialogs": 0, "messages": 0, "media_uploads": 0, "media_files": 0, "media_bytes": 0,
        "sessions_live": 0,
    }


async def test_stats_counts(start_server, new_database, connect) -> None:
    url = new_database()
    target = start_server(database_url=url)
    alice, bob = await connect(target=target), await connect(target=target)
    await alice.register(unique(), f"{unique()}@example.org", PASSWORD)
    await bob.register(unique(), f"{unique()}@example.org", PASSWORD)
    dialog = await alice.create_dialog("stats", members=[bob.user_id])
    await alice.send_message(dialog, "one")
    gone = await bob.send_message(dialog, "two")
    await bob.delete_message(dialog, gone)
    await alice.upload_media(b"same bytes", "txt")
    await bob.upload_media(b"same bytes", "txt")
    await bob.upload_media(b"other", "txt")
    await bob.logout()

    result = await admin_async("--database-url", url, "stats")
    assert result.returncode == 0, result.stderr
    counts = dict(re.findall(r"^(\w[\w ]*?)\s+(\d+)$", result.stdout, re.M))
    assert counts == {
        "users": "2", "dialogs": "1", "messages": "1", "media uploads": "3", "media files": "2",
        "media bytes": str(len(b"same bytes") + len(b"other")), "live sessions": "1",
    }


async def test_settings_from_config_file_and_environment(server: ServerProcess, tmp_path: Path) -> None:
    config = tmp_path / "sessia.toml"
    config.write_text(f'database_url = "{db_url(server)}"\n')
    from_file = await admin_async("--config", str(config), "schema")
    assert from_file.returncode == 0, from_file.stderr
    assert "no pending migrations" in from_file.stdout
    from_env = await admin_async("schema", env={"SESSIA_DATABASE_URL": db_url(server)})
    assert from_env.returncode == 0, from_env.stderr
    bad = tmp_path / "bad.toml"
    bad.write_text("database-uri = 'x'\n")
    wrong = await admin_async("--config", str(bad), "schema")
    assert wrong.returncode == 2
    assert f"config file {bad}: unknown setting 'database-uri'" in wrong.stderr


async def test_embedded_postgres_started_for_the_command_and_stopped(tmp_path: Path) -> None:
    data = tmp_path / "data"
    pg = EmbeddedPostgres(data, durable=False)
    await asyncio.to_thread(pg.start)  # the cluster exists (a server made it); an admin command never creates one
    await asyncio.to_thread(pg.stop)
    first = await admin_async("--data-dir", str(data), "--no-durable", "migrate")
    assert first.returncode == 0, first.stderr
    assert "starting the embedded PostgreSQL" in first.stderr
    assert "embedded PostgreSQL stopped" in first.stderr
    assert not pg.is_running()

    # A server using the embedded PostgreSQL: the command leaves it running.
    server = ServerProcess(data, ["--no-durable", "--allow-any-client", "--broker", "none"])
    try:
        await asyncio.to_thread(server.start)
        stats = await admin_async("stats", "--data-dir", str(data))
        assert stats.returncode == 0, stats.stderr
        assert "stopped" not in stats.stderr
        assert pg.is_running()
    finally:
        await asyncio.to_thread(server.stop)
        if pg.is_running():
            pg.stop()
