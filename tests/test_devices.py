"""Device sessions: GetSessions lists them, RevokeSession logs them out and
closes their connections at once, on this node and on others."""

from __future__ import annotations

import asyncio
import secrets
from datetime import UTC, datetime, timedelta

import pytest

import client_sdk
from client_sdk import BadRequest, ConnectionClosed, NotFound, Unauthorized, Unprocessable

from .support import TEST_CLIENT

CLOSE_TIMEOUT = 5.0
PASSWORD = "correct horse battery"


async def second_device(connect, owner, *, device: str | None = None, **kw) -> client_sdk.Client:
    """The same account logged in on another device (a new session)."""
    c = await connect(device=device or f"phone-{secrets.token_hex(4)}", **kw)
    await c.login(owner.email, owner.password)
    return c


async def closed_by_server(c: client_sdk.Client) -> None:
    """Wait until the server has closed ``c``'s connection; then a request fails."""
    await asyncio.wait_for(c.transport.wait_closed(), CLOSE_TIMEOUT)
    with pytest.raises(ConnectionClosed):
        await c.get_user(c.user_id)


async def token_is_dead(connect, c: client_sdk.Client, token: str) -> None:
    fresh = await connect(device=c.device.deviceid)
    with pytest.raises(Unauthorized, match="invalid or revoked token"):
        await fresh.login_with_token(token)


async def test_sessions_lists_each_device_login(user, connect):
    alice = await user()
    phone = await second_device(connect, alice, device="alice-phone")
    sessions = await alice.sessions()
    assert len(sessions) == 2
    by_device = {s.device_id: s for s in sessions}
    mine, other = by_device[alice.device.deviceid], by_device["alice-phone"]
    assert (mine.current, other.current) == (True, False)
    assert (other.os, other.hostname) == ("Linux", "test-host")
    assert (other.client_name, other.client_version) == (TEST_CLIENT["nameclient"], str(TEST_CLIENT["version"]))
    now = datetime.now(UTC)
    for s in sessions:
        assert now - timedelta(minutes=1) < s.created_at <= s.last_seen_at <= now + timedelta(seconds=5)
    # Seen from the phone, the phone is the current one.
    assert [s.device_id for s in await phone.sessions() if s.current] == ["alice-phone"]


async def test_last_seen_follows_the_sessions_requests(user, connect):
    alice = await user()
    phone = await second_device(connect, alice)
    before = {s.id: s for s in await alice.sessions()}
    await asyncio.sleep(0.05)
    await phone.get_user(alice.user_id)
    after = {s.id: s for s in await alice.sessions()}
    (phone_id,) = [i for i, s in after.items() if s.device_id == phone.device.deviceid]
    assert after[phone_id].last_seen_at > before[phone_id].last_seen_at
    # Most recently seen first: the listing request itself made alice's the newest.
    assert [s.current for s in await alice.sessions()] == [True, False]


async def test_sessions_are_paged(user, connect):
    alice = await user()
    for _ in range(2):
        await second_device(connect, alice)
    everything = await alice.sessions()
    assert len(everything) == 3
    assert [s.id for s in await alice.sessions(take=2)] == [s.id for s in everything[:2]]
    assert [s.id for s in await alice.sessions(take=2, skip=2)] == [everything[2].id]
    with pytest.raises(Unprocessable, match="take: must be at most 100"):
        await alice.sessions(take=101)


async def test_revoking_a_session_closes_its_connection_at_once(user, connect):
    alice = await user()
    phone = await second_device(connect, alice)
    stream = await phone.events().start()  # a live push subscription on the phone
    token = phone.token
    (phone_session,) = [s for s in await alice.sessions() if not s.current]
    await alice.revoke_session(phone_session.id)
    # The phone's event stream ends: it reconnects, and the token is refused.
    with pytest.raises(Unauthorized, match="invalid or revoked token"):
        await asyncio.wait_for(stream.__anext__(), CLOSE_TIMEOUT)
    await token_is_dead(connect, phone, token)
    # The revoking session is untouched.
    assert [s.current for s in await alice.sessions()] == [True]


async def test_a_revoked_connection_sees_end_of_stream(user, connect):
    alice = await user()
    phone = await second_device(connect, alice)
    await phone.get_user(alice.user_id)
    phone_id = next(s.id for s in await alice.sessions() if not s.current)
    await alice.revoke_session(phone_id)
    await closed_by_server(phone)
    # The revoking connection is open and its session alive.
    assert (await alice.call("GetUser", {"id": alice.user_id}))["Status"]["code"] == 200


async def test_revoke_all_keeps_the_current_session(user, connect):
    alice = await user()
    phone, tablet = await second_device(connect, alice), await second_device(connect, alice)
    for c in (alice, phone):
        await c.get_user(alice.user_id)
    ids = {s.device_id: s.id for s in await alice.sessions()}
    revoked = await tablet.revoke_other_sessions()
    assert revoked == sorted([ids[alice.device.deviceid], ids[phone.device.deviceid]])
    for c in (alice, phone):
        await closed_by_server(c)
        await token_is_dead(connect, c, c.token)
    remaining = await tablet.sessions()
    assert [(s.device_id, s.current) for s in remaining] == [(tablet.device.deviceid, True)]
    # Nothing left to revoke.
    assert await tablet.revoke_other_sessions() == []


async def test_another_users_session_is_not_found(user):
    alice, bob = await user(), await user()
    (bob_session,) = await bob.sessions()
    with pytest.raises(NotFound, match="no such session"):
        await alice.revoke_session(bob_session.id)
    with pytest.raises(NotFound, match="no such session"):
        await alice.revoke_session(2**62)
    assert (await bob.get_user(bob.user_id)).id == bob.user_id


async def test_a_revoked_session_cannot_be_revoked_again(user, connect):
    alice = await user()
    phone = await second_device(connect, alice)
    phone_id = next(s.id for s in await alice.sessions() if not s.current)
    await alice.revoke_session(phone_id)
    with pytest.raises(NotFound, match="no such session"):
        await alice.revoke_session(phone_id)
    await token_is_dead(connect, phone, phone.token)


async def test_revoking_the_current_session_logs_out_but_keeps_the_connection(user):
    alice = await user()
    (mine,) = await alice.sessions()
    await alice.revoke_session(mine.id)
    answer = await alice.call("GetSessions", {})
    assert answer["Status"] == {"code": 401, "message": "invalid or revoked token"}
    # The connection is still usable: log in again on it.
    await alice.login(alice.email, alice.password)
    assert [s.current for s in await alice.sessions()] == [True]


async def test_logout_closes_the_other_connections_of_the_session(user, connect):
    alice = await user()
    same_device = await connect(device=alice.device.deviceid)
    await same_device.login_with_token(alice.token)
    await same_device.get_user(alice.user_id)
    await alice.logout()
    await closed_by_server(same_device)
    # The connection that logged out stays open.
    await alice.login(alice.email, alice.password)


async def test_password_change_closes_the_other_sessions_connections(user, connect):
    alice = await user()
    phone = await second_device(connect, alice)
    await phone.get_user(alice.user_id)
    await alice.change_user(old_password=alice.password, new_password="a brand new password")
    await closed_by_server(phone)
    assert len(await alice.sessions()) == 1


@pytest.mark.parametrize(
    ("body", "code", "message"),
    [
        ({}, 400, "id or all is required"),
        ({"all": False}, 400, "id or all is required"),
        ({"id": 1, "all": True}, 400, "id and all: send one of them"),
        ({"id": 0}, 422, "id: must be at least 1"),
        ({"id": "x"}, 400, "id: must be an integer"),
        ({"all": "yes"}, 400, "all: must be a boolean (true/false, 1/0)"),
    ],
)
async def test_revoke_session_refuses_malformed_bodies(user, body, code, message):
    alice = await user()
    answer = await alice.call("RevokeSession", body)
    assert answer["Status"] == {"code": code, "message": message}
    assert len(await alice.sessions()) == 1


async def test_sessions_need_a_session(connect):
    c = await connect()
    answer = await c.call("GetSessions", {})
    assert answer["Status"] == {"code": 400, "message": "sessia: field is required"}
    with pytest.raises(BadRequest):
        await c.request("RevokeSession", {"all": True}, needs_session=False)


async def test_revocation_closes_connections_on_other_nodes(start_server, new_database):
    url = new_database()
    node_a, node_b = start_server(database_url=url), start_server(database_url=url)
    opened: list[client_sdk.Client] = []

    async def open_on(node, device: str) -> client_sdk.Client:
        c = await client_sdk.connect(node.host, node.port, device={"deviceid": device}, client=TEST_CLIENT)
        opened.append(c)
        return c

    try:
        alice = await open_on(node_a, "laptop")
        login = f"x{secrets.token_hex(5)}"
        await alice.register(login, f"{login}@example.org", PASSWORD)
        phone = await open_on(node_b, "phone")
        await phone.login(login, PASSWORD)
        stream = await phone.events().start()  # subscribed on node B
        tablet = await open_on(node_b, "tablet")
        await tablet.login(login, PASSWORD)
        await tablet.get_user(alice.user_id)

        phone_id = next(s.id for s in await alice.sessions() if s.device_id == "phone")
        await alice.revoke_session(phone_id)  # one session, revoked on node A
        with pytest.raises(Unauthorized):
            await asyncio.wait_for(stream.__anext__(), CLOSE_TIMEOUT)
        assert (await tablet.call("GetUser", {"id": alice.user_id}))["Status"]["code"] == 200

        await alice.revoke_other_sessions()  # every other session, revoked on node A
        await asyncio.wait_for(tablet.transport.wait_closed(), CLOSE_TIMEOUT)
    finally:
        for c in opened:
            await c.close()


async def test_two_devices_revoking_each_other_at_once_leave_one_of_them(user, connect):
    """Each sends "log out every other device" at the same moment: one wins,
    the other is refused (its session ended first), and the winner stays
    logged in; never both out, never both obeyed."""
    for _ in range(3):
        alice = await user()
        phone = await second_device(connect, alice)
        outcomes = await asyncio.gather(
            alice.call("RevokeSession", {"all": True}), phone.call("RevokeSession", {"all": True}),
            return_exceptions=True,
        )
        # The loser is told 401, or its connection is closed with its session first.
        codes = [str(o["Status"]["code"]) if isinstance(o, dict) else "closed" for o in outcomes
                 if not isinstance(o, BaseException) or isinstance(o, ConnectionClosed)]
        assert len(codes) == 2 and codes.count("200") == 1 and set(codes) <= {"200", "401", "closed"}, outcomes
        winner = alice if isinstance(outcomes[0], dict) and outcomes[0]["Status"]["code"] == 200 else phone
        assert [s.current for s in await winner.sessions()] == [True]
