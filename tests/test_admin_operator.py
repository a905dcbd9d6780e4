"""The operator's first questions, as ``python -m server admin`` subprocesses
against a real database and a running server: who is registered
(``users list``), one account with its devices (``users show``), its
sessions (``sessions list``), logging one device out (``sessions revoke``,
refused at once by the running server), and a mistyped ``--data-dir``
(no database is created there)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from client_sdk.errors import Unauthorized

from .test_admin import admin_async, db_url, same_device


def session_ids(listing: str) -> list[int]:
    return [int(m.group(1)) for m in re.finditer(r"^\s*(\d+)\s+\d{4}-\d\d-\d\d ", listing, re.M)]


async def test_users_list_search_and_show(server, user, connect) -> None:
    alice, bob = await user(), await user()
    second_device = await connect()
    await second_device.login(alice.login_name, alice.password)
    url = db_url(server)

    listed = await admin_async("--database-url", url, "users", "list", "--search", alice.login_name.upper())
    assert listed.returncode == 0, listed.stderr
    lines = listed.stdout.splitlines()
    assert lines[0].split() == ["ID", "LOGIN", "EMAIL", "CREATED", "SESSIONS"]
    assert len(lines) == 2 and lines[1].split()[:2] == [str(alice.user_id), alice.login_name]
    assert lines[1].split()[-1] == "2"  # two devices logged in
    everyone = await admin_async("users", "list", "--database-url", url)
    assert bob.login_name in everyone.stdout and alice.login_name in everyone.stdout
    nobody = await admin_async("--database-url", url, "users", "list", "--search", "no-such-account-%_")
    assert (nobody.returncode, nobody.stdout.strip()) == (0, "no accounts match")

    shown = await admin_async("--database-url", url, "users", "show", alice.email)
    assert shown.returncode == 0, shown.stderr
    assert f"id:       {alice.user_id}\nlogin:    {alice.login_name}\n" in shown.stdout
    assert "live sessions: 2" in shown.stdout
    assert len(session_ids(shown.stdout)) == 2
    unknown = await admin_async("--database-url", url, "users", "show", "nobody-here")
    assert (unknown.returncode, unknown.stderr.strip()) == (1, "error: no account with login or email 'nobody-here'")


async def test_sessions_revoke_one_refused_at_once_by_running_server(server, user, connect) -> None:
    alice = await user()
    phone = await connect()
    await phone.login(alice.email, alice.password)
    url = db_url(server)
    # Both tokens are in the running server's session cache now.
    mine = {s.id for s in await alice.sessions()}

    listed = await admin_async("--database-url", url, "sessions", "list", alice.login_name)
    assert listed.returncode == 0, listed.stderr
    assert set(session_ids(listed.stdout)) == mine
    phone_session = next(s.id for s in await phone.sessions() if s.current)

    revoked = await admin_async("--database-url", url, "sessions", "revoke", str(phone_session))
    assert revoked.returncode == 0, revoked.stderr
    assert revoked.stdout.strip() == f"session {phone_session} of {alice.login_name} (id {alice.user_id}) revoked"
    # The server's own revocation path told the running server: the cached token is refused at once.
    with pytest.raises(Unauthorized, match="invalid or revoked token"):
        await (await same_device(connect, phone)).login_with_token(phone.token)
    # The other device stays logged in.
    assert (await (await same_device(connect, alice)).login_with_token(alice.token)).user_id == alice.user_id
    after = await admin_async("--database-url", url, "sessions", "list", alice.login_name)
    assert set(session_ids(after.stdout)) == mine - {phone_session}

    again = await admin_async("--database-url", url, "sessions", "revoke", str(phone_session))
    assert (again.returncode, again.stderr.strip()) == (1, f"error: no live session with id {phone_session}")


async def test_wrong_data_dir_creates_nothing(tmp_path: Path) -> None:
    wrong = tmp_path / "typo"
    for command in (("stats",), ("migrate",), ("users", "list")):
        result = await admin_async("--data-dir", str(wrong), *command)
        assert result.returncode == 1
        assert result.stderr.count("\n") == 1, result.stderr  # one line
        assert result.stderr.startswith(f"error: no database in {wrong} ")
    assert not (wrong / "postgres" / "PG_VERSION").exists()
    assert not wrong.exists() or not any(wrong.iterdir())
