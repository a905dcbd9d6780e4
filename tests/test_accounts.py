"""Accounts end to end: Registration, Auth by password and by token, disable."""

from __future__ import annotations

import secrets

import pytest

import client_sdk
from client_sdk import Codec, Conflict, Unauthorized, Unprocessable

from .conftest import unique
from .support import TEST_CLIENT

PASSWORD = "correct horse battery"


async def test_register_login_token_logout(connect):
    login = unique()
    email = f"{login}@example.org"
    first = await connect()
    registered = await first.register(login, email, PASSWORD)
    assert registered.user_id > 0
    assert registered.token.endswith(f"?{registered.user_id}")

    # A second device logs in by password and gets its own session.
    second = await connect()
    logged_in = await second.login(email, PASSWORD)
    assert logged_in.user_id == registered.user_id
    assert logged_in.token != registered.token

    # Log in by token on a third connection from the first device.
    again = await connect(device=first.device.deviceid)
    resumed = await again.login_with_token(registered.token)
    assert resumed == registered

    # Log out the first session: its token is dead, the second one lives on.
    await first.logout()
    answer = await again.call("Auth", {})
    assert answer["Status"]["code"] == 401
    assert "revoked" in answer["Status"]["message"]
    assert (await second.call("Auth", {}))["Status"]["code"] == 200


async def test_login_accepts_login_name_and_any_email_case(connect):
    login = unique("Mixed")
    c = await connect()
    await c.register(login, f"{login}@Example.org", PASSWORD)
    other = await connect()
    assert (await other.login(f"{login.upper()}@EXAMPLE.ORG", PASSWORD)).user_id == c.user_id
    assert (await other.login(login.lower(), PASSWORD)).user_id == c.user_id


async def test_token_from_another_device_is_refused(connect, user):
    alice = await user()
    thief = await connect(device="another-device")
    answer = await thief.call(
        "Auth", {"sessia": {"tocken": alice.token, "device": {"deviceid": "another-device"}, "client": TEST_CLIENT}}
    )
    assert answer["Status"] == {"code": 401, "message": "token was issued to another device"}


async def test_unknown_client_build_is_refused(connect):
    c = await connect(client={"nameclient": "PirateApp", "hashcert": "ffff", "version": 9})
    with pytest.raises(Unauthorized, match="unknown client build 'PirateApp'"):
        await c.register(unique(), f"{unique()}@example.org", PASSWORD)


async def test_outdated_client_build_is_refused(connect):
    c = await connect(client={**TEST_CLIENT, "version": 1})
    with pytest.raises(Unauthorized, match="older than the minimum version 2"):
        await c.register(unique(), f"{unique()}@example.org", PASSWORD)


async def test_unknown_client_is_accepted_when_server_allows_any(start_server):
    server = start_server("--allow-any-client")
    assert any("--allow-any-client is set" in line for line in server.log)
    c = await client_sdk.connect(
        server.host, server.port, device={"deviceid": "d"}, client={"nameclient": "Anything", "hashcert": "x"}
    )
    try:
        result = await c.register(unique(), f"{unique()}@example.org", PASSWORD)
        assert result.user_id > 0
    finally:
        await c.close()


async def test_login_and_email_are_unique(connect):
    login = unique()
    a = await connect()
    await a.register(login, f"{login}@example.org", PASSWORD)
    b = await connect()
    with pytest.raises(Conflict, match="login is already taken"):
        await b.register(login.upper(), f"{unique()}@example.org", PASSWORD)
    with pytest.raises(Conflict, match="email is already registered"):
        await b.register(unique(), f"{login.upper()}@EXAMPLE.org", PASSWORD)


async def test_wrong_password_and_unknown_email_answer_alike(connect, user):
    alice = await user()
    c = await connect()
    with pytest.raises(Unauthorized) as wrong:
        await c.login(alice.email, "not the password")
    with pytest.raises(Unauthorized) as unknown:
        await c.login(f"{unique()}@example.org", "not the password")
    assert wrong.value.message == unknown.value.message == "wrong email or password"


@pytest.mark.parametrize(
    ("login", "email", "password", "message"),
    [
        ("ab", "x@example.org", PASSWORD, "login.login: 3 to 32"),
        ("good_login", "not-an-email", PASSWORD, "email.email: not a valid email address"),
        ("good_login", "x@example.org", "short", "password.password: shorter than 8 characters"),
    ],
)
async def test_registration_validates_fields(connect, login, email, password, message):
    c = await connect()
    with pytest.raises(Unprocessable, match=message):
        await c.register(login, email, password)


async def test_original_json_examples_are_understood(connect):
    """The bodies from the original API description, sent as JSON."""
    c = await connect(codec=Codec.JSON)
    login = unique("KrTv")
    device = {"deviceid": secrets.token_hex(16), "os": "Windows 10", "mac": "2cab5f8c00125bcc", "hostname": "DESKTOP-G123VB"}
    registration = {
        "login": {"login": login},
        "password": {"password": "DisTet"},
        "email": {"email": f"{login}@inbox.ru"},
        "sessia": {"device": device, "client": TEST_CLIENT},
    }
    # Verbatim, the example's 6-character password is below today's minimum...
    answer = await c.call("Registration", registration)
    assert answer["Status"] == {"code": 422, "message": "password.password: shorter than 8 characters"}
    # ...and with a longer one the same shape registers.
    registration["password"] = {"password": "DisTet-2023"}
    answer = await c.call("Registration", registration)
    assert answer["Status"]["code"] == 200
    assert answer["Tocken"].endswith(f"?{answer['Id']}")

    auth = {
        "email": f"{login}@inbox.ru",
        "password": "DisTet-2023",
        "sessia": {
            "client": {"hashcert": TEST_CLIENT["hashcert"], "nameclient": TEST_CLIENT["nameclient"], "version": "3"},
            "device": device,
        },
    }
    answer = await c.call("Auth", auth)
    assert answer["Status"]["code"] == 200
    assert answer["Id"] > 0
    token_auth = {"sessia": {"tocken": answer["Tocken"], "device": {"deviceid": device["deviceid"]}, "client": TEST_CLIENT}}
    answer = await c.call("Auth", token_auth)
    assert answer["Status"] == {"code": 200, "message": "Session is valid"}
    # Field names are matched case-insensitively (spec decision 1).
    shouting = {"EMAIL": f"{login}@inbox.ru", "Password": "DisTet-2023", "SESSIA": auth["sessia"]}
    assert (await c.call("Auth", shouting))["Status"]["code"] == 200


async def test_session_required_everywhere_but_login(connect):
    c = await connect()
    answer = await c.call("disable", {})
    assert answer["Status"] == {"code": 400, "message": "sessia: field is required"}
    answer = await c.call(
        "disable", {"sessia": {"tocken": "deadbeef?1", "device": {"deviceid": "x"}, "client": TEST_CLIENT}}
    )
    assert answer["Status"] == {"code": 401, "message": "invalid or revoked token"}
