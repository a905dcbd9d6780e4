"""Session checks: every request but Registration and Auth-by-password.

A token is ``<64 hex>?<user id>`` (the original's shape).  Only its SHA-256
is stored.  Known sessions are cached in memory so that a request costs no
database round trip once its session has been seen; logout, password change
and revocation invalidate the cache explicitly.

A cache of authorization must never bring back what was revoked.  A load
reads the session row, awaits, then caches it: if a revocation committed in
between, the row it read is stale.  So every revocation bumps a generation
counter after its commit, and a load that sees the counter move while it
waited reads the row again instead of caching what it read.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass

from protocol.fields import Fields
from protocol.session import ClientInfo, Sessia, parse_sessia
from protocol.status import Unauthorized
from storage import sessions as session_store
from storage.clients import KnownClient
from storage.db import Database


@dataclass(frozen=True, slots=True)
class Session:
    id: int
    user_id: int
    device_id: str
    token_hash: bytes


def new_token(user_id: int) -> str:
    return f"{secrets.token_hex(32)}?{user_id}"


def token_hash(token: str) -> bytes:
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).digest()


class ClientRegistry:
    """Known client builds (spec decision 11), held in memory."""

    def __init__(self, allow_any: bool) -> None:
        self.allow_any = allow_any
        self._known: dict[tuple[str, str], int] = {}

    def load(self, clients: list[KnownClient]) -> None:
        self._known = {(c.nameclient, c.hashcert): c.min_version for c in clients}

    def check(self, client: ClientInfo | None) -> None:
        if self.allow_any:
            return
        if client is None:
            raise Unauthorized("sessia.client is required: unverified client")
        min_version = self._known.get((client.nameclient, client.hashcert))
        if min_version is None:
            raise Unauthorized(f"unknown client build {client.nameclient!r}: unverified client")
        version = client.version_number()
        if min_version and (version is None or version < min_version):
            raise Unauthorized(f"client {client.nameclient!r} is older than the minimum version {min_version}")


class SessionCache:
    """token hash -> Session, with a per-user index for bulk invalidation."""

    def __init__(self, db: Database, clients: ClientRegistry, max_size: int) -> None:
        self._db = db
        self._clients = clients
        self._max_size = max_size
        self._by_hash: dict[bytes, Session] = {}
        self._by_user: dict[int, set[bytes]] = {}
        self._seen: set[int] = set()  # session ids used since the last flush_seen
        #: Bumped by every revocation (after its commit): a load that spans a
        #: bump may have read a row that is revoked by now.
        self.generation = 0

    def __len__(self) -> int:
        return len(self._by_hash)

    async def authenticate(self, body: Fields) -> tuple[Session, Sessia]:
        sessia = parse_sessia(body, need_token=True)
        assert sessia.tocken is not None  # need_token: parse_sessia refuses a sessia without one
        self._clients.check(sessia.client)
        digest = token_hash(sessia.tocken)
        session = self._by_hash.get(digest)
        if session is None:
            session = await self._load(digest)
        if session.device_id != sessia.device.deviceid:
            raise Unauthorized("token was issued to another device")
        self._seen.add(session.id)
        return session, sessia

    async def confirm(self, session: Session) -> None:
        """Return only when ``session`` is live as of now (cached, or read
        again): for a request that awaited since it was authenticated and is
        about to bind something lasting to the session.  Raises Unauthorized
        if it was revoked meanwhile."""
        if session.token_hash not in self._by_hash:
            await self._load(session.token_hash)

    async def flush_seen(self) -> None:
        """Write "last seen" of the sessions used since the last flush, in one
        statement: activity is recorded in batches, never per request."""
        ids, self._seen = list(self._seen), set()
        try:
            await session_store.touch(self._db, ids)
        except BaseException:
            self._seen.update(ids)
            raise

    async def _load(self, digest: bytes) -> Session:
        while True:
            generation = self.generation
            row = await session_store.find_by_token_hash(self._db, digest)
            if row is None or row.revoked_at is not None:
                raise Unauthorized("invalid or revoked token")
            if generation == self.generation:
                break
            # A revocation committed while the row was read: read it again.
        session = Session(id=row.id, user_id=row.user_id, device_id=row.device_id, token_hash=digest)
        self.add(session)
        return session

    def add(self, session: Session) -> None:
        if len(self._by_hash) >= self._max_size:
            oldest = next(iter(self._by_hash))
            self.forget(oldest)
        self._by_hash[session.token_hash] = session
        self._by_user.setdefault(session.user_id, set()).add(session.token_hash)

    def forget(self, digest: bytes) -> None:
        session = self._by_hash.pop(digest, None)
        if session is not None:
            hashes = self._by_user.get(session.user_id)
            if hashes is not None:
                hashes.discard(digest)
                if not hashes:
                    del self._by_user[session.user_id]

    def revoked(self, revocation: Revocation, token_digest: bytes | None = None) -> None:
        """Sessions were revoked and the revocation has committed: drop them
        from the cache, and make every load in progress read again."""
        self.generation += 1
        if revocation.session_id is None:
            if revocation.user_id is not None:
                self.forget_user(revocation.user_id, revocation.keep)
        elif token_digest is not None:
            self.forget(token_digest)
        else:
            for digest in [d for d, s in self._by_hash.items() if s.id == revocation.session_id]:
                self.forget(digest)

    def forget_user(self, user_id: int, except_session_id: int | None = None) -> None:
        for digest in list(self._by_user.get(user_id, ())):
            session = self._by_hash.get(digest)
            if session is not None and session.id != except_session_id:
                self.forget(digest)


def parse_revocations(payload: str) -> list[tuple[Revocation, bytes | None]]:
    """A ``sessions`` signal from another node: ``t:<token hash hex>:<session
    id>`` or ``u:<user id>:<session id kept or empty>``, comma-separated; each
    with the token hash it names, if any."""
    revoked: list[tuple[Revocation, bytes | None]] = []
    for item in payload.split(","):
        kind, _, rest = item.partition(":")
        if kind == "t":
            digest, _, session_id = rest.partition(":")
            revoked.append((Revocation(session_id=int(session_id) if session_id else None), bytes.fromhex(digest)))
        elif kind == "u":
            user, _, keep = rest.partition(":")
            revoked.append((Revocation(user_id=int(user), keep=int(keep) if keep else None), None))
    return revoked


@dataclass(frozen=True, slots=True)
class Revocation:
    """Which sessions were revoked: one (``session_id``; ``user_id``, when
    known, is its user's), or every session of ``user_id`` but ``keep``."""

    session_id: int | None = None
    user_id: int | None = None
    keep: int | None = None

    def covers(self, session_id: int, user_id: int) -> bool:
        if self.session_id is not None:
            return session_id == self.session_id
        return user_id == self.user_id and session_id != self.keep


def forget_token_signal(digest: bytes, session_id: int) -> str:
    return f"t:{digest.hex()}:{session_id}"


def forget_user_signal(user_id: int, except_session_id: int | None) -> str:
    return f"u:{user_id}:{'' if except_session_id is None else except_session_id}"
