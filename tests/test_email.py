"""Email confirmation end to end: real mail through a real SMTP server (or the
outbox), codes read out of the received message."""

from __future__ import annotations

import asyncio
import email
import re
import secrets
import socket
import time
from pathlib import Path

import pytest

from client_sdk import (
    BadRequest,
    Codec,
    Conflict,
    Gone,
    NotFound,
    TooManyRequests,
    Unauthorized,
    Unavailable,
    Unprocessable,
)

from .conftest import unique
from .support import ServerProcess, code_from, free_port, mail_text

PASSWORD = "correct horse battery"


async def request_code(c, smtp, address: str) -> str:
    """Ask for a code to ``address`` and read it out of the mail that arrives."""
    before = smtp.count()
    await c.request_email_code(address)
    return code_from(await smtp.wait_for(address, after=before))


def other_code(code: str) -> str:
    return f"{(int(code) + 1) % 10**6:06d}"


async def register_on(connect, server: ServerProcess, **kw):
    c = await connect(target=server, **kw)
    login = unique()
    await c.register(login, f"{login}@example.org", PASSWORD)
    c.email = f"{login}@example.org"
    return c


async def test_code_from_the_mail_confirms_the_address(user, smtp, server):
    alice = await user()
    before = smtp.count()
    await alice.request_email_code(alice.email)
    msg = await smtp.wait_for(alice.email, after=before)
    code = code_from(msg)
    assert msg["To"] == alice.email
    assert msg["Subject"] == "Your sessia confirmation code"
    assert "no-reply@localhost" in msg["From"]
    assert re.findall(r"\b\d{6}\b", mail_text(msg)) == [code]

    await alice.confirm_email(code)
    # The code is spent, and a confirmed address needs no second code.
    with pytest.raises(NotFound, match="no pending code"):
        await alice.confirm_email(code)
    with pytest.raises(Conflict, match="email is already confirmed"):
        await alice.request_email_code(alice.email.upper())
    # Codes never reach the log.
    assert not re.search(rf"\b{code}\b", "\n".join(server.log))


async def test_a_new_address_becomes_the_email_only_when_confirmed(user, connect, smtp):
    alice = await user()
    new = f"{unique()}@example.org"
    code = await request_code(alice, smtp, new)
    other = await connect()
    with pytest.raises(Unauthorized):
        await other.login(new, PASSWORD)
    assert (await other.login(alice.email, PASSWORD)).user_id == alice.user_id

    await alice.confirm_email(code)
    assert (await other.login(new, PASSWORD)).user_id == alice.user_id
    with pytest.raises(Unauthorized):
        await other.login(alice.email, PASSWORD)
    # The new address is confirmed: asking again is refused.
    with pytest.raises(Conflict, match="email is already confirmed"):
        await alice.request_email_code(new)


async def test_wrong_codes_are_counted_until_the_code_is_dead(user, smtp):
    alice = await user()
    code = await request_code(alice, smtp, alice.email)
    wrong = other_code(code)
    for left in (4, 3, 2):
        with pytest.raises(Unprocessable, match=rf"^wrong code, {left} attempts left$"):
            await alice.confirm_email(wrong)
    with pytest.raises(Unprocessable, match="^wrong code, 1 attempt left$"):
        await alice.confirm_email(wrong)
    with pytest.raises(Unprocessable, match="^wrong code, no attempts left: request a new code$"):
        await alice.confirm_email(wrong)
    # Now even the right code is refused.
    answer = await alice.call("Email", {"code": code})
    assert answer["Status"] == {"code": 429, "message": "too many attempts, request a new code"}


async def test_resend_too_soon_is_429_with_retry_after(user, smtp):
    alice = await user()
    await request_code(alice, smtp, alice.email)
    received = smtp.count()
    with pytest.raises(TooManyRequests, match="a code was sent recently") as refused:
        await alice.request_email_code(alice.email)
    assert 1 <= refused.value.extra["RetryAfter"] <= 60
    # Another address is held back too: the interval is per account.
    answer = await alice.call("Email", {"email": f"{unique()}@example.org"})
    assert answer["Status"]["code"] == 429
    assert isinstance(answer["RetryAfter"], int) and 1 <= answer["RetryAfter"] <= 60
    await asyncio.sleep(0.3)
    assert smtp.count() == received


async def test_confirming_without_a_code_sent_is_404(user):
    alice = await user()
    with pytest.raises(NotFound, match=r"^no pending code: request one first$"):
        await alice.confirm_email("123456")


@pytest.mark.parametrize(
    ("body", "status"),
    [
        ({}, {"code": 400, "message": "email or code is required"}),
        ({"email": "", "code": ""}, {"code": 400, "message": "email or code is required"}),
        ({"email": "not-an-address"}, {"code": 422, "message": "email: not a valid email address"}),
        ({"email": ["a@example.org"]}, {"code": 400, "message": "email: must be a string"}),
        ({"code": "12a456"}, {"code": 422, "message": "code: 6 digits expected"}),
        ({"code": "1234567"}, {"code": 422, "message": "code: 6 digits expected"}),
        ({"code": 1234567}, {"code": 422, "message": "code: 6 digits expected"}),
    ],
)
async def test_malformed_email_requests(user, body, status):
    alice = await user()
    assert (await alice.call("Email", body))["Status"] == status


async def test_email_and_code_together_only_send(user, smtp):
    """The original: filling both fields only requests a code."""
    alice = await user()
    before = smtp.count()
    answer = await alice.call("Email", {"email": alice.email, "code": "000000"})
    assert answer["Status"] == {"code": 200, "message": "code sent to the email"}
    code = code_from(await smtp.wait_for(alice.email, after=before))
    await alice.confirm_email(code)


async def test_address_of_another_account_is_409(user):
    alice = await user()
    bob = await user()
    with pytest.raises(Conflict, match="^email is already registered$"):
        await alice.request_email_code(bob.email.upper())


async def test_address_taken_before_confirmation_is_409(user, connect, smtp):
    alice = await user()
    contested = f"{unique()}@example.org"
    code = await request_code(alice, smtp, contested)
    carol = await connect()
    await carol.register(unique(), contested, PASSWORD)
    with pytest.raises(Conflict, match="^email is already registered$"):
        await alice.confirm_email(code)
    assert (await (await connect()).login(alice.email, PASSWORD)).user_id == alice.user_id


async def test_original_json_bodies_and_a_numeric_code(user, smtp):
    alice = await user(codec=Codec.JSON)
    before = smtp.count()
    answer = await alice.call("Email", {"EMAIL": alice.email})
    assert answer["Status"] == {"code": 200, "message": "code sent to the email"}
    code = code_from(await smtp.wait_for(alice.email, after=before))
    # JSON clients may send the code as a number (leading zeros lost): still accepted.
    answer = await alice.call("Email", {"Code": int(code)})
    assert answer["Status"] == {"code": 200, "message": "email confirmed"}


async def test_expired_code_is_410(start_server, connect, smtp):
    server = start_server("--email-code-ttl", "1")
    alice = await register_on(connect, server)
    before = smtp.count()
    await alice.request_email_code(alice.email)
    msg = await smtp.wait_for(alice.email, after=before)
    assert "valid for 1 second(s)" in mail_text(msg)
    await asyncio.sleep(1.5)
    with pytest.raises(Gone, match="^code expired, request a new code$"):
        await alice.confirm_email(code_from(msg))


async def test_a_new_code_replaces_the_old_one(start_server, connect, smtp):
    server = start_server("--email-code-resend-interval", "0", "--email-code-max-attempts", "2")
    alice = await register_on(connect, server)
    first = await request_code(alice, smtp, alice.email)
    second = await request_code(alice, smtp, alice.email)
    while second == first:  # one chance in a million
        second = await request_code(alice, smtp, alice.email)
    with pytest.raises(Unprocessable, match="^wrong code, 1 attempt left$"):
        await alice.confirm_email(first)
    await alice.confirm_email(second)

    # A code used up by wrong guesses is replaced by asking again.
    new = f"{unique()}@example.org"
    code = await request_code(alice, smtp, new)
    for _ in range(2):
        with pytest.raises(Unprocessable):
            await alice.confirm_email(other_code(code))
    with pytest.raises(TooManyRequests, match="too many attempts"):
        await alice.confirm_email(code)
    await alice.confirm_email(await request_code(alice, smtp, new))


async def test_unreachable_smtp_server_is_503_and_a_retry_works(start_server, new_database, connect, smtp):
    database = new_database()
    closed_port = f"smtp://127.0.0.1:{free_port()}"
    broken = start_server("--smtp-url", closed_port, database_url=database)
    alice = await register_on(connect, broken)
    started = time.monotonic()
    with pytest.raises(Unavailable, match="^could not send mail, try again$"):
        await alice.request_email_code(alice.email)
    assert time.monotonic() - started < 5
    assert await broken.logged("could not send mail to")
    broken.stop()

    # The SMTP server is back: the retry is not held back by the resend interval.
    fixed = start_server(database_url=database)
    again = await connect(target=fixed, device=alice.device.deviceid)
    await again.login_with_token(alice.token)
    code = await request_code(again, smtp, alice.email)
    fixed.stop()

    # A later failure leaves the code already mailed valid.
    broken = start_server("--smtp-url", closed_port, "--email-code-resend-interval", "0", database_url=database)
    third = await connect(target=broken, device=alice.device.deviceid)
    await third.login_with_token(alice.token)
    with pytest.raises(Unavailable):
        await third.request_email_code(f"{unique()}@example.org")
    await third.confirm_email(code)
    with pytest.raises(Conflict, match="email is already confirmed"):
        await third.request_email_code(alice.email)


async def test_stalled_smtp_server_times_out(start_server, connect):
    """A server that accepts the connection but never greets: the request ends
    within --smtp-timeout instead of hanging."""
    with socket.socket() as stalled:
        stalled.bind(("127.0.0.1", 0))
        stalled.listen(8)
        port = stalled.getsockname()[1]
        server = start_server("--smtp-url", f"smtp://127.0.0.1:{port}", "--smtp-timeout", "1")
        alice = await register_on(connect, server)
        started = time.monotonic()
        with pytest.raises(Unavailable, match="^could not send mail, try again$"):
            await alice.request_email_code(alice.email)
        assert time.monotonic() - started < 4
        # Nothing was kept: the next request is not "too soon" but tries the mail again.
        with pytest.raises(Unavailable):
            await alice.request_email_code(alice.email)


async def test_without_smtp_mail_goes_to_the_outbox(tmp_path: Path, new_database, clients_file, connect):
    server = ServerProcess(tmp_path, ["--database-url", new_database(), "--clients", str(clients_file)])
    server.start()
    try:
        alice = await register_on(connect, server)
        await alice.request_email_code(alice.email)
        outbox = tmp_path / "outbox"
        files = list(outbox.iterdir())
        assert len(files) == 1 and files[0].suffix == ".eml"  # and no temporary file left behind
        msg = email.message_from_bytes(files[0].read_bytes())
        assert msg["To"] == alice.email
        code = code_from(msg)
        assert any(str(files[0]) in line for line in server.log)
        assert not re.search(rf"\b{code}\b", "\n".join(server.log))
        await alice.confirm_email(code)
    finally:
        server.stop()


async def test_email_requires_a_session(connect):
    c = await connect()
    answer = await c.call("Email", {"email": f"{secrets.token_hex(4)}@example.org"})
    assert answer["Status"] == {"code": 400, "message": "sessia: field is required"}
    with pytest.raises(BadRequest):
        await c.request("Email", {"email": "x@example.org"}, needs_session=False)
