"""Abuse limits: connections per address, rate limits (429 with ``RetryAfter``),
and the read timeout against slowloris clients (docs/security.md).

The rate-limited server here runs with small limits.  Per-address limits are
told apart by connecting from different loopback addresses (127.0.0.N all
reach a server listening on 127.0.0.1), so each test has an address of its own.
"""

from __future__ import annotations

import asyncio
import itertools
import secrets
import time
from typing import Any

import pytest

import client_sdk
from client_sdk.transport import Transport
from client_sdk.types import ClientBuild, Device
from protocol.frames import FrameKind, encode_ping, encode_request
from protocol.status import TooManyRequests, Unauthorized
from server.ratelimit import Rate, RateLimiter, peer_ip

from .conftest import unique
from .support import TEST_CLIENT, ServerProcess
from .test_wire import Wire, registration

PASSWORD = "correct horse battery"
_addresses = itertools.count(2)


def fresh_ip() -> str:
    """A loopback address no other test of this module used: its own per-address buckets."""
    n = next(_addresses)
    return f"127.0.{n // 250}.{n % 250 + 2}"


# -- the token bucket itself (a fake clock: exact figures) ---------------------------------


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_rate_parse_and_text():
    assert Rate.parse("10/60") == Rate(10, 60.0)
    assert Rate.parse(" 5/0.5 ") == Rate(5, 0.5)
    assert Rate.parse("0").count == 0 and Rate.parse("off").count == 0
    assert str(Rate(10, 300.0)) == "10/300"
    for bad in ("10", "x/5", "5/0", "-1/5", "5/-1", "5/inf", "5/nan", ""):
        with pytest.raises(ValueError):
            Rate.parse(bad)


def test_bucket_allows_the_burst_then_refills_at_the_rate():
    clock = Clock()
    limiter = RateLimiter(Rate(3, 30.0), "tries", clock=clock)  # 3 at once, then one per 10 s
    assert [limiter.wait("k") for _ in range(3)] == [0.0, 0.0, 0.0]
    assert limiter.wait("k") == pytest.approx(10.0)
    clock.now += 4
    assert limiter.wait("k") == pytest.approx(6.0)  # a refused try spends nothing
    clock.now += 6
    assert limiter.wait("k") == 0.0
    assert limiter.wait("k") == pytest.approx(10.0)
    assert limiter.wait("other") == 0.0  # keys are independent
    clock.now += 1000
    assert [limiter.wait("k") for _ in range(4)][-1] > 0  # a long rest refills to the burst, not beyond


def test_check_raises_429_with_whole_retry_after_seconds():
    clock = Clock()
    limiter = RateLimiter(Rate(1, 2.5), "uploads from this account", clock=clock)
    limiter.check(7)
    with pytest.raises(TooManyRequests) as caught:
        limiter.check(7)
    assert caught.value.code == 429
    assert caught.value.extra == {"RetryAfter": 3}
    assert caught.value.message == "too many uploads from this account, try again in 3 s"


def test_zero_means_no_limit():
    limiter = RateLimiter(Rate(0, 1.0), "x")
    assert not limiter.enabled
    assert all(limiter.wait("k") == 0.0 for _ in range(10_000))
    assert len(limiter) == 0


def test_memory_is_bounded_and_idle_keys_are_forgotten():
    clock = Clock()
    limiter = RateLimiter(Rate(2, 10.0), "x", max_keys=100, clock=clock)
    for i in range(10_000):
        limiter.wait(i)
    assert len(limiter) == 100  # a flood of new keys: least recently used dropped
    clock.now += 10  # every bucket is full again: forgetting them changes nothing
    for i in range(50):
        limiter.wait(("new", i))
    assert len(limiter) == 50  # each new key swept two idle ones (amortised)


def test_a_recently_used_key_survives_eviction():
    clock = Clock()
    limiter = RateLimiter(Rate(1, 60.0), "x", max_keys=3, clock=clock)
    limiter.wait("hot")
    for i in range(10):
        limiter.wait(i)
        assert limiter.wait("hot") > 0  # still remembered: still limited
        clock.now += 0.001


def test_check_costs_about_a_microsecond():
    limiter = RateLimiter(Rate(10**9, 1.0), "x")
    n = 100_000
    started = time.perf_counter()
    for i in range(n):
        limiter.wait(i & 1023)
    per_call = (time.perf_counter() - started) / n
    assert per_call < 20e-6, per_call  # generous for slow machines; ~0.5 µs typical


def test_peer_ip():
    assert peer_ip("127.0.0.1:5000") == "127.0.0.1"
    assert peer_ip("::1:5000") == "::1"


# -- the real server -----------------------------------------------------------------------


@pytest.fixture(scope="module")
def limited_server(start_server):
    server = start_server(
        "--rate-auth-account", "3/600",
        "--rate-auth-ip", "5/600",
        "--rate-registration-account", "2/600",
        "--rate-registration-ip", "3/600",
        "--rate-email-account", "3/600",
        "--rate-email-ip", "4/600",
        "--rate-reset-account", "3/600",
        "--rate-reset-ip", "4/600",
        "--rate-send-message", "5/60",
        "--rate-media", "2/60",
        "--rate-search", "3/60",
        "--max-connections-per-ip", "256",
    )
    yield server
    server.stop()


@pytest.fixture
async def from_ip(limited_server: ServerProcess):
    """Factory: an SDK client connected to the limited server from a given loopback address."""
    opened: list[client_sdk.Client] = []

    async def open_client(ip: str, deviceid: str | None = None) -> client_sdk.Client:
        loop = asyncio.get_running_loop()
        _, transport = await loop.create_connection(
            lambda: Transport(10_000, None), limited_server.host, limited_server.port, local_addr=(ip, 0)
        )
        device = {"deviceid": deviceid or secrets.token_hex(8), "os": "Linux", "mac": "00:11", "hostname": "limits"}
        c = client_sdk.Client(transport, device=Device.coerce(device), client=ClientBuild.coerce(TEST_CLIENT))
        opened.append(c)
        return c

    yield open_client
    for c in opened:
        await c.close()


async def registered(from_ip, ip: str | None = None) -> client_sdk.Client:
    c = await from_ip(ip or fresh_ip())
    login = unique("lim")
    await c.register(login, f"{login}@example.org", PASSWORD)
    c.email = f"{login}@example.org"  # type: ignore[attr-defined]
    c.login_name = login  # type: ignore[attr-defined]
    return c


def full_width(text: str) -> str:
    """``text`` with its ASCII letters and digits in full-width forms (``a`` ->
    U+FF41), a valid address still: NFKC gives ``text`` back."""
    return "".join(chr(ord(ch) + 0xFEE0) if ch.isascii() and ch.isalnum() else ch for ch in text)


def assert_429(answer: dict[str, Any], what: str, retry_after: int) -> None:
    assert answer["Status"]["code"] == 429, answer
    assert answer["Status"]["message"] == f"too many {what}, try again in {retry_after} s"
    assert answer["RetryAfter"] == retry_after


def auth_body(c: client_sdk.Client, email: str, password: str) -> dict[str, Any]:
    return {"email": email, "password": password, "sessia": c._login_sessia()}


def reset_body(c: client_sdk.Client, email: str) -> dict[str, Any]:
    return {"email": email, "sessia": c._login_sessia()}


async def test_auth_per_account_limit_counts_every_try_and_spares_other_accounts(from_ip):
    victim = await registered(from_ip)
    other = await registered(from_ip)
    attacker = await from_ip(fresh_ip())
    for _ in range(3):
        answer = await attacker.call("Auth", auth_body(attacker, victim.email, "wrong password!"))
        assert answer["Status"] == {"code": 401, "message": "wrong email or password"}
    # 3 per 600 s: the 4th try, even with the right password and any spelling
    # of the email, waits 200 s (one try comes back every 600/3 s).
    answer = await attacker.call("Auth", auth_body(attacker, victim.email.upper(), PASSWORD))
    assert_429(answer, "password attempts for this account", 200)
    # another account from the same address is not affected
    assert (await attacker.call("Auth", auth_body(attacker, other.email, PASSWORD)))["Status"]["code"] == 200


async def test_auth_per_account_limit_holds_for_the_login_and_every_unicode_spelling(from_ip):
    victim = await registered(from_ip)
    for _ in range(3):
        attacker = await from_ip(fresh_ip())
        answer = await attacker.call("Auth", auth_body(attacker, victim.email, "wrong password!"))
        assert answer["Status"]["code"] == 401
    # The budget is the account's, not the text's: the login name, any letter
    # case and full-width letters name the same account and wait with it,
    # even with the right password.
    for spelling in (victim.login_name, victim.login_name.upper(), full_width(victim.email),
                     full_width(victim.login_name)):
        attacker = await from_ip(fresh_ip())
        answer = await attacker.call("Auth", auth_body(attacker, spelling, PASSWORD))
        assert_429(answer, "password attempts for this account", 200)
    # U+0130 (capital I with dot) is a spelling the database's lower() maps to
    # "i" but Unicode case folding does not: it names no account, so not even
    # the right password logs in through it.
    dotted = victim.email.replace("i", "\u0130", 1)
    assert dotted != victim.email
    attacker = await from_ip(fresh_ip())
    answer = await attacker.call("Auth", auth_body(attacker, dotted, PASSWORD))
    assert answer["Status"] == {"code": 401, "message": "wrong email or password"}
    assert "Tocken" not in answer


async def test_unicode_variants_of_a_registered_email_are_taken(from_ip):
    owner = await registered(from_ip)
    for variant in (full_width(owner.email), owner.email.replace("i", "\u0130", 1)):
        c = await from_ip(fresh_ip())
        body = {**registration(unique("lim")), "email": {"email": variant}, "sessia": c._login_sessia()}
        answer = await c.call("Registration", body)
        assert answer["Status"] == {"code": 409, "message": "email is already registered"}, variant


async def test_change_user_old_password_spends_the_accounts_password_attempts(from_ip):
    c = await registered(from_ip)
    change = {"oldPass": "wrong password!", "newPass": "a brand new password"}
    for _ in range(3):
        assert (await c.call("ChangeUser", change))["Status"] == {"code": 403, "message": "old password is wrong"}
    started = time.monotonic()
    answer = await c.call("ChangeUser", {**change, "oldPass": PASSWORD})  # the right one waits too
    assert_429(answer, "password attempts for this account", 200)
    assert time.monotonic() - started < 0.5  # refused before any hashing
    # One budget with Auth: the stolen session has spent the login's guesses too.
    other = await from_ip(fresh_ip())
    assert_429(await other.call("Auth", auth_body(other, c.email, PASSWORD)), "password attempts for this account", 200)
    # Nothing changed: the old password still is the password.
    assert (await c.call("ChangeUser", {"nickname": "still me"}))["Status"]["code"] == 200


async def test_change_user_email_counts_every_attempt_not_only_codes_sent(from_ip):
    c = await registered(from_ip)
    taken = await registered(from_ip)
    for _ in range(3):  # registered addresses: refused, and each refusal counts
        answer = await c.call("ChangeUser", {"email": taken.email})
        assert answer["Status"] == {"code": 409, "message": "email is already registered"}
    answer = await c.call("ChangeUser", {"email": f"{unique('free')}@example.org"})
    assert_429(answer, "email requests for this account", 200)


async def test_reset_password_per_address_limit(from_ip):
    ip = fresh_ip()
    anon = await from_ip(ip)
    for _ in range(4):
        answer = await anon.call("ResetPassword", reset_body(anon, f"{unique('nobody')}@example.org"))
        assert answer["Status"]["code"] == 200
    answer = await anon.call("ResetPassword", reset_body(anon, f"{unique('nobody')}@example.org"))
    assert_429(answer, "password reset requests from this address", 150)
    # the code step counts too; another address is not affected
    answer = await anon.call("ResetPassword", {**reset_body(anon, "x@example.org"), "code": "123456",
                                               "newPass": "a new long password"})
    assert answer["Status"]["code"] == 429
    elsewhere = await from_ip(fresh_ip())
    assert (await elsewhere.call("ResetPassword", reset_body(elsewhere, "x@example.org")))["Status"]["code"] == 200


async def test_reset_password_per_email_limit_is_the_same_for_known_and_unknown_addresses(from_ip):
    known = (await registered(from_ip)).email
    unknown = f"{unique('nobody')}@example.org"
    for address in (known, unknown):
        answers = []
        for spelling in (address, address.upper(), full_width(address), address):  # each from its own address
            anon = await from_ip(fresh_ip())
            answers.append(await anon.call("ResetPassword", reset_body(anon, spelling)))
        assert [a["Status"]["code"] for a in answers] == [200, 200, 200, 429]
        assert_429(answers[-1], "password reset requests for this email", 200)
        anon = await from_ip(fresh_ip())  # ...and so is the code step for that address
        answer = await anon.call("ResetPassword", {**reset_body(anon, address), "code": "123456",
                                                   "newPass": "a new long password"})
        assert_429(answer, "password reset requests for this email", 200)


async def test_auth_per_address_limit_stops_spraying_many_accounts(from_ip):
    ip = fresh_ip()
    sprayer = await from_ip(ip)
    for i in range(5):
        answer = await sprayer.call("Auth", auth_body(sprayer, f"nobody{i}{secrets.token_hex(4)}@example.org", "guess123!"))
        assert answer["Status"]["code"] == 401
    answer = await sprayer.call("Auth", auth_body(sprayer, "someone@example.org", "guess123!"))
    assert_429(answer, "login attempts from this address", 120)
    # ...on every connection from that address, and not from another one
    again = await from_ip(ip)
    assert (await again.call("Auth", auth_body(again, "x@example.org", "guess123!")))["Status"]["code"] == 429
    elsewhere = await from_ip(fresh_ip())
    assert (await elsewhere.call("Auth", auth_body(elsewhere, "x@example.org", "guess123!")))["Status"]["code"] == 401


async def test_the_sdk_raises_too_many_requests_with_retry_after(from_ip):
    c = await from_ip(fresh_ip())
    email = f"{unique('nobody')}@example.org"
    for _ in range(3):
        with pytest.raises(Unauthorized):
            await c.login(email, "whatever123")
    with pytest.raises(TooManyRequests) as caught:
        await c.login(email, "whatever123")
    assert caught.value.extra["RetryAfter"] == 200


async def test_registration_per_address_limit(from_ip):
    ip = fresh_ip()
    for _ in range(3):
        await registered(from_ip, ip)
    c = await from_ip(ip)
    login = unique("lim")
    answer = await c.call("Registration", {**registration(login), "sessia": c._login_sessia()})
    assert_429(answer, "registrations from this address", 200)
    await registered(from_ip)  # another address registers fine


async def test_registration_per_email_limit_stops_probing_an_address(from_ip):
    login = unique("lim")
    body = registration(login)
    codes = []
    for ip in (fresh_ip(), fresh_ip(), fresh_ip()):  # from different addresses: the email is the key
        c = await from_ip(ip)
        body["login"] = {"login": unique("lim")}
        codes.append((await c.call("Registration", {**body, "sessia": c._login_sessia()}))["Status"]["code"])
    assert codes == [200, 409, 429]


async def test_email_per_account_limit(from_ip):
    c = await registered(from_ip)
    for _ in range(3):
        answer = await c.call("Email", {"code": "123456"})
        assert answer["Status"]["code"] == 404  # no pending code
    assert_429(await c.call("Email", {"code": "123456"}), "email requests for this account", 200)


async def test_email_per_address_limit(from_ip):
    ip = fresh_ip()
    users = [await registered(from_ip, ip), await registered(from_ip, ip)]
    codes = [(await users[i % 2].call("Email", {"code": "123456"}))["Status"]["code"] for i in range(5)]
    assert codes == [404, 404, 404, 404, 429]


async def test_send_message_per_account_limit_holds_for_every_session_and_others_go_on(from_ip):
    alice = await registered(from_ip)
    dialog = await alice.create_dialog("limits")
    for i in range(5):
        await alice.send_message(dialog, f"m{i}")
    started = time.monotonic()
    answer = await alice.call("SendMessage", {"operation": "add", "message": {"infoMessage": {"pkDialog": dialog, "content": "x"}}})
    assert_429(answer, "messages from this account", 12)  # 5 per 60 s: one every 12 s
    assert time.monotonic() - started < 1  # refused at once, not queued
    # the same account on another device spends the same budget: more sessions buy no more sends
    laptop = await from_ip(fresh_ip())
    await laptop.login(alice.email, PASSWORD)
    with pytest.raises(TooManyRequests):
        await laptop.send_message(dialog, "from the laptop")
    # another account goes on
    bob = await registered(from_ip)
    await bob.send_message(await bob.create_dialog("mine"), "bob is not limited by alice")
    assert len(await alice.messages(dialog)) == 5  # nothing refused was stored


async def test_media_per_account_limit(from_ip):
    c = await registered(from_ip)
    await c.upload_media(b"one", "txt")
    await c.upload_media(b"two", "txt")
    with pytest.raises(TooManyRequests) as caught:
        await c.upload_media(b"three", "txt")
    assert caught.value.extra["RetryAfter"] == 30


async def test_search_per_account_limit_holds_for_every_session_and_others_go_on(from_ip):
    alice = await registered(from_ip)
    dialog = await alice.create_dialog("search limits")
    await alice.send_message(dialog, "needle in the hay")
    for _ in range(3):
        assert (await alice.search_dialogs("needle")).dialogs == (dialog,)
    with pytest.raises(TooManyRequests) as caught:
        await alice.search_messages("needle", dialog)
    assert caught.value.extra["RetryAfter"] == 20  # 3 per 60 s: one every 20 s
    assert "searches from this account" in str(caught.value)
    laptop = await from_ip(fresh_ip())
    await laptop.login(alice.email, PASSWORD)
    with pytest.raises(TooManyRequests):
        await laptop.search_messages("needle", dialog)
    bob = await registered(from_ip)
    assert (await bob.search_dialogs("needle")).dialogs == ()


async def test_connections_per_address_default_is_256_and_one_more_is_refused_with_429(limited_server):
    ip = fresh_ip()
    loop = asyncio.get_running_loop()
    held: list[asyncio.StreamWriter] = []

    async def open_one() -> Wire:
        reader, writer = await asyncio.open_connection(limited_server.host, limited_server.port, local_addr=(ip, 0))
        held.append(writer)
        return Wire(reader, writer)

    try:
        wires = await asyncio.gather(*(open_one() for _ in range(256)))
        for w in wires[::51]:
            await w.alive()
        refused = await open_one()
        frame, body = await refused.answer()
        assert (frame.kind, frame.request_id) == (FrameKind.ERROR, 0)
        assert body == {"Status": {"code": 429, "message": "too many connections from this address"}}
        assert await refused.closed_by_server(timeout=5) == []
        # other addresses are not affected
        reader, writer = await asyncio.open_connection(limited_server.host, limited_server.port, local_addr=(fresh_ip(), 0))
        held.append(writer)
        await Wire(reader, writer).alive()
        # a closed connection frees its place
        wires[0].writer.close()
        deadline = loop.time() + 5
        while True:
            again = await open_one()
            await again.send(encode_ping(9))
            frame = await again.frame()
            if frame.kind == FrameKind.PONG:
                break
            assert loop.time() < deadline, "the freed place was not given back"
            await asyncio.sleep(0.05)
    finally:
        for writer in held:
            writer.close()


# -- slowloris: a frame dribbled byte by byte is cut off -------------------------------------


@pytest.fixture(scope="module")
def slow_server(start_server):
    server = start_server("--read-timeout", "1")
    yield server
    server.stop()


async def test_a_frame_dribbled_one_byte_per_0_3_s_is_cut_off(slow_server):
    w = await Wire.open(slow_server)
    try:
        await w.alive()
        frame = encode_request(5, "Registration", registration())  # ~250 bytes: 75 s at this pace
        closed, sent = await dribble(w, frame, seconds=10)
        assert closed is not None, "the slow frame was never cut off"
        assert 0.9 < closed < 3.5, closed
        assert sent < len(frame)
        assert not w.events  # cut off without an answer
    finally:
        await w.close()


async def test_without_the_read_timeout_the_same_dribble_goes_on(server):
    """The control: the shared server's read timeout is 30 s, so the same
    dribble outlives the protected server's cut-off and is served."""
    w = await Wire.open(server)
    try:
        await w.alive()
        frame = encode_request(5, "Nope", {})
        closed, sent = await dribble(w, frame[:-1], seconds=2.5)
        assert closed is None
        await w.send(frame[sent:])
        answer_frame, body = await w.answer()
        assert (answer_frame.request_id, body["Status"]["code"]) == (5, 400)
    finally:
        await w.close()


async def dribble(w: Wire, data: bytes, *, seconds: float) -> tuple[float | None, int]:
    """Send ``data`` one byte every 0.3 s for at most ``seconds``; returns when
    the server closed the connection (seconds after the first byte, or None)
    and how many bytes were sent."""
    started = time.monotonic()
    sent = 0
    while sent < len(data) and time.monotonic() - started < seconds:
        try:
            await w.send(data[sent:sent + 1])
        except ConnectionError:
            return time.monotonic() - started, sent
        sent += 1
        if await _eof_within(w, 0.3):
            return time.monotonic() - started, sent
    return None, sent


async def _eof_within(w: Wire, timeout: float) -> bool:
    """True if the server closed the connection within ``timeout`` (frames it
    sent first are kept in ``w.events``)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            data = await asyncio.wait_for(w.reader.read(1 << 16), max(0.001, deadline - time.monotonic()))
        except TimeoutError:
            return False
        if not data:
            w.eof = True
            return True
        w.events.extend(w.decoder.feed(data))
