"""Registration, Auth (by password or by token) and disable (log out)."""

from __future__ import annotations

from typing import Any

from protocol.requests import AUTH, DISABLE, REGISTRATION
from protocol.requests.accounts import PasswordAuth, Registration, is_password_auth
from protocol.session import Sessia
from protocol.status import Conflict, Unauthorized, ok
from storage import sessions as session_store
from storage import users

from ..routes import Call, route
from ..sessions import Session, new_token, token_hash


async def open_session(call: Call, conn: Any, user_id: int, sessia: Sessia) -> str:
    """Create a session row for this device and cache it; returns the token."""
    token = new_token(user_id)
    digest = token_hash(token)
    client = sessia.client
    row = await session_store.create_session(
        conn,
        user_id=user_id,
        token_hash=digest,
        device_id=sessia.device.deviceid,
        device_os=sessia.device.os,
        device_mac=sessia.device.mac,
        device_hostname=sessia.device.hostname,
        client_name=client.nameclient if client else "",
        client_hashcert=client.hashcert if client else "",
        client_version=client.version if client else "",
    )
    call.app.sessions.add(Session(row.id, user_id, sessia.device.deviceid, digest))
    return token


@route(REGISTRATION, session=False)
async def registration(call: Call) -> dict[str, Any]:
    req = Registration.parse(call.body, call.app.config.min_password_length)
    call.app.limits.registration_ip.check(call.conn.ip)
    call.app.limits.registration_account.check(users.identity_key(req.email))
    call.app.clients.check(req.sessia.client)
    taken = await users.identity_taken(call.app.db, req.login, req.email)
    if taken == "email":
        raise Conflict("email is already registered")
    if taken == "login":
        raise Conflict("login is already taken")
    password_hash = await call.app.passwords.hash(req.password)
    async with call.app.db.transaction("registration") as conn:
        user = await users.create_user(conn, req.login, req.email, password_hash)
        token = await open_session(call, conn, user.id, req.sessia)
    return ok("Operation done", Tocken=token, Id=user.id)


@route(AUTH, session=False)
async def auth(call: Call) -> dict[str, Any]:
    if not is_password_auth(call.body):
        session, sessia = await call.app.sessions.authenticate(call.body)
        return ok("Session is valid", Tocken=sessia.tocken, Id=session.user_id)
    req = PasswordAuth.parse(call.body)
    call.app.limits.auth_ip.check(call.conn.ip)
    call.app.clients.check(req.sessia.client)
    user = await users.find_for_login(call.app.db, req.email)
    call.app.limits.password_account.check(account_key(user, req.email))
    verified = await call.app.passwords.verify(user.password_hash if user else None, req.password)
    if not verified or user is None:
        raise Unauthorized("wrong email or password")
    if call.app.passwords.needs_rehash(user.password_hash):
        await users.set_password_hash(call.app.db, user.id, await call.app.passwords.hash(req.password))
    token = await open_session(call, call.app.db, user.id, req.sessia)
    return ok("Operation done", Tocken=token, Id=user.id)


def account_key(user: users.User | None, email_or_login: str) -> int | str:
    """The per-account rate-limit key of the account a login names: its id,
    whichever identifier or spelling named it; for an unknown identifier its
    identity key, so that it is limited like an account."""
    return user.id if user is not None else users.identity_key(email_or_login)


@route(DISABLE)
async def disable(call: Call) -> dict[str, Any]:
    assert call.session is not None
    await call.app.revoke_session(call.session, spare=call.conn)
    return ok("Session closed")
