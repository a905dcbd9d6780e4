"""Rate limits: keyed token buckets, in two kinds.

A limit is written ``COUNT/SECONDS`` (``--rate-auth-account 10/300``): a key may
spend ``COUNT`` requests at once (the burst), and gets them back at
``COUNT / SECONDS`` per second.  ``0`` turns the limit off.

``SharedLimiter``: the budget lives in PostgreSQL (storage/rate_limits.py), one
for every process on the database (``--workers``, nodes), so an attacker who
spreads attempts over processes gets no more than the limit.  A check is one
statement (~0.2 ms), which the limits of rare, costly requests can afford:
password attempts (an argon2 hash costs a hundred times more), registration,
email codes, password resets, uploads and searches.

``RateLimiter``: the budget lives in this process's memory, for the hot path
(``SendMessage``, ``MarkRead``, ``Typing``), where a round trip per message
would cost more than the message's share of its group commit.  Each process
counts its own connections, so an account whose connections land on N
processes may spend up to N budgets (docs/security.md says so).  A check is
one ordered-dict lookup, a little arithmetic and a move to the end: O(1), no
allocation for a known key.  Memory is bounded two ways: a key idle long
enough for its bucket to be full again is indistinguishable from a new key,
so whenever a key is added up to two such keys (the oldest) are dropped, and
the table shrinks back to the keys in use; and past ``max_keys`` the least
recently used key is dropped whatever its state, so a flood of new keys costs
bounded memory.
"""

from __future__ import annotations

import argparse
import math
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from protocol.status import TooManyRequests
from storage import rate_limits
from storage.db import Database

if TYPE_CHECKING:
    from .config import Config

#: Keys one limiter remembers at most (one entry is ~150 bytes: a few MiB each).
MAX_KEYS = 50_000


@dataclass(frozen=True, slots=True)
class Rate:
    """``count`` requests per ``seconds``; ``count == 0`` means unlimited.

    A frozen dataclass rather than a NamedTuple, whose field ``count`` would
    shadow ``tuple.count``; repr, str and comparing two Rates are unchanged."""

    count: int
    seconds: float

    def __str__(self) -> str:
        return f"{self.count}/{self.seconds:g}"

    @classmethod
    def parse(cls, text: str) -> Rate:
        """``"10/60"`` -> Rate(10, 60.0); ``"0"`` or ``"off"`` -> unlimited."""
        text = text.strip().lower()
        if text in ("0", "off", "none"):
            return cls(0, 1.0)
        count, sep, seconds = text.partition("/")
        try:
            rate = cls(int(count), float(seconds)) if sep else None
        except ValueError:
            rate = None
        if rate is None or rate.count < 0 or not (rate.seconds > 0 and math.isfinite(rate.seconds)):
            raise ValueError(f"expected COUNT/SECONDS (e.g. 10/60) or 0 for no limit, got {text!r}")
        return rate


def rate_arg(text: str) -> Rate:
    """argparse type for ``COUNT/SECONDS`` flags."""
    try:
        return Rate.parse(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


class RateLimiter:
    """Token buckets by key.  ``check(key)`` spends a token or raises 429."""

    __slots__ = ("rate", "what", "_burst", "_per_second", "_full_after", "_buckets", "_max_keys", "_clock")

    def __init__(
        self, rate: Rate, what: str, *, max_keys: int = MAX_KEYS, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.rate = rate
        self.what = what  # for the refusal: "password attempts for this account"
        self._burst = float(rate.count)
        self._per_second = rate.count / rate.seconds if rate.count else 0.0
        self._full_after = rate.seconds  # an empty bucket is full again after this long
        # key -> [tokens, time of the last check]; the order is least recently used first.
        self._buckets: OrderedDict[Hashable, list[float]] = OrderedDict()
        self._max_keys = max_keys
        self._clock = clock

    @property
    def enabled(self) -> bool:
        return self._burst > 0

    def __len__(self) -> int:
        return len(self._buckets)

    def wait(self, key: Hashable) -> float:
        """Spend one token of ``key``: 0.0 if there was one, else the seconds
        until there will be (nothing is spent then)."""
        if not self._burst:
            return 0.0
        now = self._clock()
        buckets = self._buckets
        bucket = buckets.get(key)
        if bucket is None:
            self._evict(now)
            buckets[key] = [self._burst - 1.0, now]
            return 0.0
        buckets.move_to_end(key)
        tokens = min(self._burst, bucket[0] + (now - bucket[1]) * self._per_second)
        bucket[1] = now
        if tokens >= 1.0:
            bucket[0] = tokens - 1.0
            return 0.0
        bucket[0] = tokens
        return (1.0 - tokens) / self._per_second

    def check(self, key: Hashable) -> None:
        """Spend a token or raise ``TooManyRequests`` with ``RetryAfter`` (whole seconds)."""
        wait = self.wait(key)
        if wait:
            raise refusal(self.what, wait)

    def _evict(self, now: float) -> None:
        """Before adding a key: drop up to two of the oldest keys that are full
        again (forgetting them changes nothing), so the table shrinks back to
        the keys in use; at the bound, drop the oldest whatever its state."""
        buckets = self._buckets
        for _ in range(2):
            if not buckets:
                return
            oldest_key, oldest = next(iter(buckets.items()))
            if now - oldest[1] >= self._full_after or len(buckets) >= self._max_keys:
                del buckets[oldest_key]
            else:
                return


def refusal(what: str, wait: float) -> TooManyRequests:
    """The 429 of a spent budget, with ``RetryAfter`` in whole seconds."""
    retry = max(1, math.ceil(wait))
    return TooManyRequests(f"too many {what}, try again in {retry} s", RetryAfter=retry)


class SharedLimiter:
    """A budget by key that every process on the database spends from.
    ``await check(key)`` spends a token or raises 429."""

    __slots__ = ("rate", "what", "name", "_db", "_interval")

    def __init__(self, db: Database, name: str, rate: Rate, what: str) -> None:
        self.rate = rate
        self.what = what
        self.name = name  # the limiter's rows in the table: one name per limiter
        self._db = db
        self._interval = rate.seconds / rate.count if rate.count else 0.0

    @property
    def enabled(self) -> bool:
        return self.rate.count > 0

    async def wait(self, key: Hashable) -> float:
        """Spend one token of ``key``: 0.0 if there was one, else the seconds
        until there will be (nothing is spent then)."""
        if not self.rate.count:
            return 0.0
        return await rate_limits.spend(self._db, self.name, str(key), self._interval, self.rate.seconds)

    async def check(self, key: Hashable) -> None:
        """Spend a token or raise ``TooManyRequests`` with ``RetryAfter`` (whole seconds)."""
        wait = await self.wait(key)
        if wait:
            raise refusal(self.what, wait)


class Limits:
    """Every rate limit of one server process, built from the configuration:
    shared through the database but for the hot path (see the module).

    A per-account limit is keyed on the account's id wherever the request
    names an existing account, so that every spelling of its login or email
    spends from one budget; a text that names no account is keyed on its
    identity key (``storage.users.identity_key``), the form that would name
    the account, so that known and unknown identifiers are limited alike."""

    __slots__ = ("password_account", "password_unknown", "auth_ip", "registration_account", "registration_ip",
                 "email_account", "email_ip", "reset_account", "reset_ip", "send_message", "media", "search")

    def __init__(self, config: Config, db: Database) -> None:
        def shared(name: str, rate: Rate, what: str) -> SharedLimiter:
            return SharedLimiter(db, name, rate, what)

        # Auth by password and ChangeUser's oldPass: one budget of password guesses per account.
        self.password_account = shared("password_account", config.rate_auth_account,
                                       "password attempts for this account")
        # The same budget for texts that name no account, under a name of its
        # own: an identity key and an account id never share a row.
        self.password_unknown = shared("password_unknown", config.rate_auth_account,
                                       "password attempts for this account")
        self.auth_ip = shared("auth_ip", config.rate_auth_ip, "login attempts from this address")
        self.registration_account = shared("registration_account", config.rate_registration_account,
                                           "registration attempts for this email")
        self.registration_ip = shared("registration_ip", config.rate_registration_ip,
                                      "registrations from this address")
        self.email_account = shared("email_account", config.rate_email_account, "email requests for this account")
        self.email_ip = shared("email_ip", config.rate_email_ip, "email requests from this address")
        self.reset_account = shared("reset_account", config.rate_reset_account,
                                    "password reset requests for this email")
        self.reset_ip = shared("reset_ip", config.rate_reset_ip, "password reset requests from this address")
        self.media = shared("media", config.rate_media, "uploads from this account")
        self.search = shared("search", config.rate_search, "searches from this account")
        self.send_message = RateLimiter(config.rate_send_message, "messages from this account")


def peer_ip(peer: str) -> str:
    """The address part of a ``host:port`` peer name (IPv6 keeps its colons)."""
    host, sep, _port = peer.rpartition(":")
    return host if sep else peer
