"""Account and session changes shared by the request handlers and the admin CLI.

Each function runs inside its caller's transaction (``db`` is a
``storage.db.Transaction``, from ``app.changes(...)`` or the admin's
``db.atomic(...)``) and returns what the caller must announce once that
transaction has committed: the ``Revocation`` of the sessions it ended.  The
server announces it with ``App.sessions_ended`` (this node's cache,
connections and subscriptions, then the other nodes); the admin CLI, which has
no connections of its own, sends ``announcement(...)`` to the running servers.
Both therefore revoke, and tell, exactly the same way.
"""

from __future__ import annotations

from protocol.session import Sessia
from protocol.status import Unauthorized
from storage import sessions as session_store
from storage import users
from storage.db import Database

from .sessions import Revocation, Session, forget_token_signal, forget_user_signal, new_token, token_hash


async def create_account(db: Database, login: str, email: str, password_hash: str, *,
                         confirmed: bool = False) -> users.User:
    """A new account; ``confirmed``: its email needs no code (admin-made accounts)."""
    user = await users.create_user(db, login, email, password_hash)
    if confirmed:
        await users.set_confirmed_email(db, user.id, email)
    return user


async def open_session(db: Database, user_id: int, sessia: Sessia) -> tuple[str, Session]:
    """A session row for this device; returns the token and the session, which
    the caller caches once the transaction has committed."""
    token = new_token(user_id)
    digest = token_hash(token)
    client = sessia.client
    row = await session_store.create_session(
        db,
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
    return token, Session(row.id, user_id, sessia.device.deviceid, digest)


async def lock_account(db: Database, session: Session) -> users.User:
    """Inside a transaction that changes an account's sessions or credentials:
    the account's row first, then the session's (the order every such change
    takes), and both still there.  Until the commit no other such change of
    the account runs, and the session making this one cannot be revoked: a
    change that came first is seen (401), one that comes second waits."""
    locked = await users.lock_for_update(db, session.user_id)
    if locked is None:
        raise Unauthorized("account no longer exists")
    if not await session_store.lock_live(db, session.id):
        raise Unauthorized("invalid or revoked token")
    return locked


async def revoke_sessions(db: Database, user_id: int, *, keep: int | None = None) -> tuple[list[int], Revocation]:
    """Revoke every live session of the account but ``keep``; the revoked ids."""
    revoked = await session_store.revoke_all_for_user(db, user_id, keep)
    return revoked, Revocation(user_id=user_id, keep=keep)


async def revoke_session(db: Database, session: Session) -> Revocation:
    """Revoke one session (a logout)."""
    await session_store.revoke(db, session.id)
    return Revocation(session_id=session.id, user_id=session.user_id)


async def replace_password(db: Database, user_id: int, password_hash: str, *,
                           keep: int | None = None) -> tuple[list[int], Revocation]:
    """A new password hash, and every session but ``keep`` logged out: whoever
    knew the old password keeps no way in."""
    await users.set_password_hash(db, user_id, password_hash)
    return await revoke_sessions(db, user_id, keep=keep)


def announcement(revoked: Revocation, token_digest: bytes | None = None) -> str | None:
    """What the other nodes are told of ``revoked`` (the ``sessions`` channel),
    or None when there is nothing they could hold (a single session whose token
    digest is unknown)."""
    if revoked.session_id is not None:
        return None if token_digest is None else forget_token_signal(token_digest, revoked.session_id)
    if revoked.user_id is not None:
        return forget_user_signal(revoked.user_id, revoked.keep)
    return None
