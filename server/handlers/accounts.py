"""Registration, Auth (by password or by token) and disable (log out)."""

from __future__ import annotations

from typing import Any

from protocol.requests import AUTH, DISABLE, REGISTRATION
from protocol.requests.accounts import PasswordAuth, Registration, is_password_auth
from protocol.status import Conflict, Unauthorized, ok
from storage import users

from .. import accounts
from ..routes import Call, route


@route(REGISTRATION, session=False)
async def registration(call: Call) -> dict[str, Any]:
    req = Registration.parse(call.body, call.app.config.min_password_length)
    await call.app.limits.registration_ip.check(call.conn.ip)
    await call.app.limits.registration_account.check(users.identity_key(req.email))
    call.app.clients.check(req.sessia.client)
    taken = await users.identity_taken(call.app.db, req.login, req.email)
    if taken == "email":
        raise Conflict("email is already registered")
    if taken == "login":
        raise Conflict("login is already taken")
    password_hash = await call.app.passwords.hash(req.password)
    async with call.app.changes("registration") as ch:
        user = await accounts.create_account(ch.db, req.login, req.email, password_hash)
        token, session = await accounts.open_session(ch.db, user.id, req.sessia)
    call.app.sessions.add(session)
    return ok("Operation done", Tocken=token, Id=user.id)


@route(AUTH, session=False)
async def auth(call: Call) -> dict[str, Any]:
    if not is_password_auth(call.body):
        session, sessia = await call.app.sessions.authenticate(call.body)
        return ok("Session is valid", Tocken=sessia.tocken, Id=session.user_id)
    req = PasswordAuth.parse(call.body)
    await call.app.limits.auth_ip.check(call.conn.ip)
    call.app.clients.check(req.sessia.client)
    user = await users.find_for_login(call.app.db, req.email)
    if user is not None:
        await call.app.limits.password_account.check(user.id)
    else:
        await call.app.limits.password_unknown.check(users.identity_key(req.email))
    verified = await call.app.passwords.verify(user.password_hash if user else None, req.password)
    if not verified or user is None:
        raise Unauthorized("wrong email or password")
    rehashed = await call.app.passwords.hash(req.password) if call.app.passwords.needs_rehash(user.password_hash) else None
    async with call.app.changes("auth.open_session") as ch:
        # The password was checked against the hash read before the verify;
        # a password change or reset that committed since then wins: the
        # session opens only while the account's hash is still that one (and
        # a change that comes second revokes the session made here).
        now = await users.lock_for_update(ch.db, user.id)
        if now is None or now.password_hash != user.password_hash:
            raise Unauthorized("wrong email or password")
        if rehashed is not None:
            await users.set_password_hash(ch.db, user.id, rehashed)
        token, session = await accounts.open_session(ch.db, user.id, req.sessia)
    call.app.sessions.add(session)
    return ok("Operation done", Tocken=token, Id=user.id)


@route(DISABLE)
async def disable(call: Call) -> dict[str, Any]:
    session = call.session
    assert session is not None
    async with call.app.changes("sessions.disable") as ch:
        revoked = await accounts.revoke_session(ch.db, session)
        ch.after_commit(lambda: call.app.sessions_ended(revoked, call.conn, token_digest=session.token_hash))
    return ok("Session closed")
