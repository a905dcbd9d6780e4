"""Races of accounts and forwards: a login, a password change or a forward
arriving in the middle of the change that should stop it.

Each test plays the attacker against the real server and asserts what the
account owner (or another member) sees: the rule holds.
"""

from __future__ import annotations

import asyncio
import secrets
from typing import Any

import client_sdk

from .support import TEST_CLIENT
from .test_trust import events_of, no_tracebacks  # noqa: F401  (an autouse fixture here too)

PASSWORD = "correct horse battery"


def token_body(token: str, device: str) -> dict[str, Any]:
    return {"sessia": {"tocken": token, "device": {"deviceid": device}, "client": TEST_CLIENT}}


# -- 1. a login with the old password outlives the password change ---------------------------


async def test_a_login_with_the_old_password_racing_a_password_change_does_not_survive_it(user, connect):
    """The owner changes the password because it leaked.  The attacker, who
    knows the old one, logs in while the change is being made.  Every login
    that was let in with the old password must be logged out by the change:
    afterwards, no token obtained with the old password works."""
    owner = await user()
    new_password = PASSWORD + " changed"
    attackers = [await connect() for _ in range(6)]

    async def change() -> None:
        await owner.change_user(old_password=PASSWORD, new_password=new_password)

    async def login(c: client_sdk.Client, delay: float) -> str | None:
        await asyncio.sleep(delay)
        answer = await c.call(
            "Auth",
            {"email": owner.email, "password": PASSWORD,  # type: ignore[attr-defined]
             "sessia": {"device": c.device.full(), "client": TEST_CLIENT}},
        )
        return answer.get("Tocken") if answer["Status"]["code"] == 200 else None

    results = await asyncio.gather(
        change(), *(login(c, 0.005 + 0.01 * i) for i, c in enumerate(attackers))
    )
    tokens = [(t, c.device.deviceid) for t, c in zip(results[1:], attackers, strict=True) if t]
    survivors = []
    for token, device in tokens:
        probe = await connect(device=device)
        answer = await probe.call("Auth", token_body(token, device))
        if answer["Status"]["code"] == 200:
            survivors.append(token[:8])
    assert not survivors, (
        f"{len(survivors)} of {len(tokens)} sessions opened with the old password are still live after the"
        " password change answered 'password changed'"
    )


# -- 2. two password changes with the same old password --------------------------------------


async def test_two_password_changes_with_the_same_old_password_cannot_both_win(user, connect):
    """The attacker holds a stolen session and the old password; the owner
    changes the password to lock them out, and at the same moment the
    attacker changes it too.  Both verify the old password against the hash
    read before either commits; the one that commits second must be refused
    (its old password is no longer the account's, and its session was
    revoked by the first), never silently replace the other's password."""
    owner = await user()
    thief = await connect()
    await thief.login(owner.email, PASSWORD)  # type: ignore[attr-defined]
    mine, theirs = PASSWORD + " owner", PASSWORD + " thief"

    async def change(c: client_sdk.Client, new: str) -> int | str:
        try:
            answer = await c.call("ChangeUser", {"oldPass": PASSWORD, "newPass": new})
        except client_sdk.ClientError as exc:  # its connection was closed by the other change
            return type(exc).__name__
        return answer["Status"]["code"]

    sessions = [(owner.token, owner.device.deviceid), (thief.token, thief.device.deviceid)]
    codes = await asyncio.gather(change(owner, mine), change(thief, theirs))
    await asyncio.sleep(0.2)
    live = []
    for token, device in sessions:
        probe = await connect(device=device)
        live.append((await probe.call("Auth", token_body(token, device)))["Status"]["code"] == 200)
    passwords = {}
    for label, password in (("owner's", mine), ("thief's", theirs)):
        probe = await connect()
        answer = await probe.call("Auth", {"email": owner.email, "password": password,  # type: ignore[attr-defined]
                                           "sessia": {"device": probe.device.full(), "client": TEST_CLIENT}})
        passwords[label] = answer["Status"]["code"] == 200
    # Exactly one change may take effect, and the session that made it stays live.
    assert any(live), (
        f"both password changes committed (answers owner/thief: {codes}): each revoked the other's session,"
        f" so the second was made by a session already revoked; the password that works now: {passwords}"
    )


# -- 3. forwarding the text of a message that is being deleted --------------------------------


async def _busy_writer(user) -> tuple[list[client_sdk.Client], str]:
    """Users in a dialog of their own whose sends keep the message writer busy."""
    fillers = [await user() for _ in range(4)]
    key = await fillers[0].create_dialog("filler", members=[f.user_id for f in fillers[1:]])
    return fillers, key


async def test_a_forward_racing_a_delete_for_everyone_does_not_carry_the_deleted_text(user):
    """Bob deletes a message for everyone; Alice, a member of that dialog,
    forwards it into a dialog with Eve at the same moment, while the message
    writer is busy.  The forward copies the source (text and media) before it
    waits for the writer; a forward that commits after the delete must not
    carry the deleted text to Eve, who was never a member of the source
    dialog.  Seen in Alice's log: no NewMessage of a forward after the
    source's MessageDeleted holds the text."""
    alice, bob, eve = await user(), await user(), await user()
    source = await bob.create_dialog("source", members=[alice.user_id])
    target = await alice.create_dialog("target", members=[eve.user_id])
    fillers, filler_key = await _busy_writer(user)

    leaked: list[str] = []
    for trial in range(6):
        secret = f"secret {trial} {secrets.token_hex(4)}"
        msgkey = await bob.send_message(source, secret)

        async def fill(c: client_sdk.Client) -> None:
            await asyncio.gather(*(c.send_message(filler_key, "x" * 2000) for _ in range(20)))

        async def forward(msgkey: str) -> Any:
            await asyncio.sleep(0.004)
            return await alice.call(
                "SendMessage",
                {"operation": "add", "message": {"infoMessage": {"pkDialog": target, "forwardedKey": msgkey,
                                                                  "content": ""}}},
            )

        async def delete(msgkey: str) -> None:
            await asyncio.sleep(0.004)
            await bob.delete_message(source, msgkey)

        await asyncio.gather(*(fill(f) for f in fillers), forward(msgkey), delete(msgkey))
        log = await events_of(alice)
        deleted_at = next(e["Seq"] for e in log if e["Kind"] == "MessageDeleted" and e.get("msgKey") == msgkey)
        for e in log:
            info = (e.get("Msg") or {}).get("infoMessage") or {}
            if e["Kind"] == "NewMessage" and info.get("forwardedKey") == msgkey and e["Seq"] > deleted_at:
                if secret in info.get("content", ""):
                    leaked.append(secret)
        await asyncio.sleep(1.2)  # the fillers' send budget (100 per 10 s per account)
    eve_sees = [m.content for m in await eve.messages(target, take=50)]
    assert not leaked, (
        f"forwards committed after the delete for everyone carry the deleted text in {len(leaked)} of 6"
        f" trials; Eve reads: {[c for c in eve_sees if c in leaked]}"
    )
