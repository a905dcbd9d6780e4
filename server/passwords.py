"""Password hashing with argon2id, always off the event loop.

Hashing is deliberately slow, so it runs in a thread pool bounded to the
cores: a storm of logins queues there instead of stalling every other
connection.  argon2-cffi releases the GIL while hashing.
"""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor

from argon2 import PasswordHasher, Type
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError


class Passwords:
    def __init__(self, *, time_cost: int, memory_kib: int, parallelism: int, threads: int) -> None:
        self._hasher = PasswordHasher(
            time_cost=time_cost, memory_cost=memory_kib, parallelism=parallelism, type=Type.ID
        )
        self._pool = ThreadPoolExecutor(max_workers=max(1, threads), thread_name_prefix="argon2")
        # Verified when an account does not exist, so that "unknown email" and
        # "wrong password" take the same time.
        self._dummy_hash = self._hasher.hash("sessia-timing-equaliser")

    async def hash(self, password: str) -> str:
        return await asyncio.get_running_loop().run_in_executor(self._pool, self._hasher.hash, password)

    async def verify(self, password_hash: str | None, password: str) -> bool:
        """True if ``password`` matches; ``None`` burns the same time and fails."""
        target = password_hash or self._dummy_hash
        ok = await asyncio.get_running_loop().run_in_executor(self._pool, self._check, target, password)
        return ok and password_hash is not None

    def _check(self, password_hash: str, password: str) -> bool:
        try:
            return self._hasher.verify(password_hash, password)
        except (VerifyMismatchError, VerificationError, InvalidHashError):
            return False

    def needs_rehash(self, password_hash: str) -> bool:
        return self._hasher.check_needs_rehash(password_hash)

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
