"""Password reset by email (ResetPassword), with real mail through a real SMTP server."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

import pytest
from aiosmtpd.controller import Controller

import client_sdk
from client_sdk import BadRequest, Unauthorized, Unprocessable

from .conftest import unique
from .support import MailBox, code_from, free_port, mail_text

PASSWORD = "correct horse battery"
NEW_PASSWORD = "a fresh new password"
SENT = "if this address belongs to an account and is confirmed, a reset code has been mailed to it"
WRONG = "wrong or expired code: check it or request a new one"


async def confirmed(user, smtp, **kw) -> client_sdk.Client:
    """A registered user whose email is confirmed (codes go only to such addresses)."""
    c = await user(**kw)
    before = smtp.count()
    await c.request_email_code(c.email)
    await c.confirm_email(code_from(await smtp.wait_for(c.email, after=before)))
    return c


async def reset_code(anon: client_sdk.Client, smtp, address: str) -> str:
    before = smtp.count()
    await anon.request_password_reset(address)
    msg = await smtp.wait_for(address, after=before)
    assert msg["Subject"] == "Your sessia password reset code"
    return code_from(msg)


def mails_to(smtp: MailBox, address: str, after: int) -> int:
    return sum(address.lower() in m["X-Envelope-To"].lower() for m in smtp.messages[after:])


async def test_a_mailed_code_sets_the_password_and_logs_every_session_out(user, connect, smtp):
    alice = await confirmed(user, smtp)
    phone = await connect()
    await phone.login(alice.email, PASSWORD)
    tokens = [(alice.device.deviceid, alice.token), (phone.device.deviceid, phone.token)]
    await phone.get_user(alice.user_id)

    anon = await connect()
    code = await reset_code(anon, smtp, alice.email.upper())  # any case of the address
    await anon.reset_password(alice.email, code, NEW_PASSWORD)

    # Every session is revoked and its connections closed; no token was given.
    for c in (alice, phone):
        await asyncio.wait_for(c.transport.wait_closed(), 5)
    for device, token in tokens:
        fresh = await connect(device=device)
        with pytest.raises(Unauthorized, match="invalid or revoked token"):
            await fresh.login_with_token(token)
    assert anon.token is None
    with pytest.raises(Unauthorized, match="wrong email or password"):
        await anon.login(alice.email, PASSWORD)
    assert (await anon.login(alice.email, NEW_PASSWORD)).user_id == alice.user_id
    # The code is spent.
    other = await connect()
    with pytest.raises(Unprocessable, match=f"^{WRONG}$"):
        await other.reset_password(alice.email, code, "yet another password")


async def test_the_mail_carries_only_the_code(user, connect, smtp, server):
    alice = await confirmed(user, smtp)
    anon = await connect()
    before = smtp.count()
    await anon.request_password_reset(alice.email)
    msg = await smtp.wait_for(alice.email, after=before)
    code = code_from(msg)
    assert msg["To"] == alice.email
    text = mail_text(msg)
    assert text.count(code) == 1 and "reset" in text
    assert code not in "\n".join(server.log)


async def test_unknown_and_unconfirmed_addresses_get_the_same_answer_and_no_mail(user, connect, smtp):
    known = await confirmed(user, smtp)
    unconfirmed = await user()
    unknown = f"{unique()}@example.org"
    anon = await connect()
    before = smtp.count()
    answers = [await anon.call("ResetPassword", {"email": a, "sessia": anon._login_sessia()})
               for a in (unknown, unconfirmed.email, known.email)]
    assert answers == [{"Status": {"code": 200, "message": SENT}}] * 3
    await smtp.wait_for(known.email, after=before)  # the last one asked is mailed...
    await asyncio.sleep(0.2)
    assert mails_to(smtp, unknown, before) == 0  # ...the others never
    assert mails_to(smtp, unconfirmed.email, before) == 0
    # With a code, an address without one is refused like a wrong code.
    for address in (unknown, unconfirmed.email):
        with pytest.raises(Unprocessable, match=f"^{WRONG}$"):
            await anon.reset_password(address, "123456", NEW_PASSWORD)


async def test_wrong_codes_are_counted_and_then_even_the_right_one_is_refused(user, connect, smtp):
    alice = await confirmed(user, smtp)
    anon = await connect()
    code = await reset_code(anon, smtp, alice.email)
    wrong = f"{(int(code) + 1) % 10**6:06d}"
    for _ in range(4):  # --email-code-max-attempts is 5
        with pytest.raises(Unprocessable, match=f"^{WRONG}$"):
            await anon.reset_password(alice.email, wrong, NEW_PASSWORD)
    # The fifth guess is right: the code still works...
    await anon.reset_password(alice.email, code, NEW_PASSWORD)

    bob = await confirmed(user, smtp)
    code = await reset_code(anon, smtp, bob.email)
    wrong = f"{(int(code) + 1) % 10**6:06d}"
    for _ in range(5):
        with pytest.raises(Unprocessable, match=f"^{WRONG}$"):
            await anon.reset_password(bob.email, wrong, NEW_PASSWORD)
    # ...but after five wrong guesses even the right code is refused.
    with pytest.raises(Unprocessable, match=f"^{WRONG}$"):
        await anon.reset_password(bob.email, code, NEW_PASSWORD)
    assert (await anon.login(bob.email, PASSWORD)).user_id == bob.user_id


async def test_a_second_request_within_the_resend_interval_sends_nothing(user, connect, smtp):
    alice, bob = await confirmed(user, smtp), await confirmed(user, smtp)
    anon = await connect()
    code = await reset_code(anon, smtp, alice.email)
    before = smtp.count()
    await anon.request_password_reset(alice.email)  # answered alike, but not mailed
    await reset_code(anon, smtp, bob.email)
    await asyncio.sleep(0.2)
    assert mails_to(smtp, alice.email, before) == 0
    # The first code is still the one that works.
    await anon.reset_password(alice.email, code, NEW_PASSWORD)


async def test_a_reset_code_is_not_an_email_confirmation_code(user, connect, smtp):
    alice = await confirmed(user, smtp)
    anon = await connect()
    code = await reset_code(anon, smtp, alice.email)
    with pytest.raises(client_sdk.NotFound, match="no pending code"):
        await alice.confirm_email(code)
    await anon.reset_password(alice.email, code, NEW_PASSWORD)


async def test_an_expired_code_is_refused(start_server, user, connect, smtp):
    server = start_server("--email-code-ttl", "1")
    alice = await confirmed(user, smtp, target=server)
    anon = await connect(target=server)
    code = await reset_code(anon, smtp, alice.email)
    await asyncio.sleep(1.3)
    with pytest.raises(Unprocessable, match=f"^{WRONG}$"):
        await anon.reset_password(alice.email, code, NEW_PASSWORD)
    assert (await anon.login(alice.email, PASSWORD)).user_id == alice.user_id


@dataclass
class SlowMailBox(MailBox):
    delay: float = 0.0

    async def handle_DATA(self, server, session, envelope):
        await asyncio.sleep(self.delay)
        return await super().handle_DATA(server, session, envelope)


async def test_the_answer_does_not_wait_for_the_mail(start_server, user, connect):
    box = SlowMailBox()
    port = free_port()
    controller = Controller(box, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        server = start_server("--smtp-url", f"smtp://127.0.0.1:{port}")
        alice = await confirmed(user, box, target=server)
        box.delay = 2.0
        anon = await connect(target=server)
        timings = {}
        for address in (alice.email, f"{unique()}@example.org"):
            started = time.monotonic()
            await anon.request_password_reset(address)
            timings[address] = time.monotonic() - started
        assert max(timings.values()) < 1.0  # the mail takes 2 s to be accepted
        assert code_from(await box.wait_for(alice.email, after=1, timeout=10))
    finally:
        controller.stop()


@pytest.mark.parametrize(
    ("body", "code", "message"),
    [
        ({}, 400, "email: field is required"),
        ({"email": "nope"}, 422, "email: not a valid email address"),
        ({"email": "a@example.org", "newPass": NEW_PASSWORD}, 400, "code is required with newPass"),
        ({"email": "a@example.org", "code": "123456"}, 400, "newPass is required with code"),
        ({"email": "a@example.org", "code": "12", "newPass": NEW_PASSWORD}, 422, "code: 6 digits expected"),
        ({"email": "a@example.org", "code": "123456", "newPass": "short"}, 422,
         "newPass: shorter than 8 characters"),
    ],
)
async def test_reset_password_refuses_malformed_bodies(connect, body, code, message):
    anon = await connect()
    answer = await anon.call("ResetPassword", {**body, "sessia": anon._login_sessia()})
    assert answer["Status"] == {"code": code, "message": message}


async def test_reset_password_needs_a_verified_client(connect):
    anon = await connect(client={"nameclient": "unknown-app", "hashcert": "00", "version": 1})
    with pytest.raises(Unauthorized, match="unknown client build 'unknown-app': unverified client"):
        await anon.request_password_reset("a@example.org")
    with pytest.raises(BadRequest, match="sessia: field is required"):
        await anon.request("ResetPassword", {"email": "a@example.org"}, needs_session=False)


@dataclass
class HeldMailBox(MailBox):
    """Accepts mail only while ``held`` is false: until then every send waits."""

    held: bool = False

    async def handle_DATA(self, server, session, envelope):
        while self.held:
            await asyncio.sleep(0.05)
        return await super().handle_DATA(server, session, envelope)


async def test_pending_reset_mails_are_bounded_and_the_refusal_is_the_same_for_every_address(
    start_server, user, connect
):
    box = HeldMailBox()
    port = free_port()
    controller = Controller(box, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        server = start_server("--smtp-url", f"smtp://127.0.0.1:{port}", "--smtp-timeout", "60",
                              "--max-pending-resets", "2")
        alice, bob, carol = [await confirmed(user, box, target=server) for _ in range(3)]
        box.held = True  # the mail server stalls: reset jobs stay pending
        anon = await connect(target=server)
        before = box.count()
        for c in (alice, bob):
            await anon.request_password_reset(c.email)
        busy = {"Status": {"code": 503, "message": "too many password resets in progress, try again later"}}
        for address in (carol.email, f"{unique()}@example.org"):  # known or not: the same refusal
            assert await anon.call("ResetPassword", {"email": address, "sessia": anon._login_sessia()}) == busy
        box.held = False  # the pending mails go out, and their places are free again
        for c in (alice, bob):
            await box.wait_for(c.email, after=before)
        deadline = time.monotonic() + 10
        while (answer := await anon.call("ResetPassword", {"email": carol.email, "sessia": anon._login_sessia()})) == busy:
            assert time.monotonic() < deadline, "the finished jobs never freed their places"
            await asyncio.sleep(0.05)
        assert answer == {"Status": {"code": 200, "message": SENT}}
        assert code_from(await box.wait_for(carol.email, after=before))
        assert mails_to(box, carol.email, before) == 1  # the refused requests left nothing behind
    finally:
        box.held = False
        controller.stop()
