"""What storage raises: its own exceptions, one catalogue (as asyncpg has one
error module).

Storage knows nothing of the wire: these say what happened in the database,
and the server decides what a client is told (server/storage_errors.py maps
each to a Status).  Anything else a storage function raises is a bug.
"""

from __future__ import annotations


class StorageError(Exception):
    """Base of every refusal or failure storage reports on purpose."""


class StorageUnavailable(StorageError):
    """The database could not be reached, or the connection was lost: nothing
    the request asked for can be assumed done, and trying again shortly is
    expected to work."""

    def __init__(self, operation: str) -> None:
        self.operation = operation
        super().__init__(f"database unavailable during {operation}")


class StorageBusy(StorageError):
    """PostgreSQL rolled the transaction back (deadlock, serialization
    failure): the work had no effect, and the same work tried again is
    expected to succeed."""

    def __init__(self, operation: str) -> None:
        self.operation = operation
        super().__init__(f"{operation} rolled back by the database; try again")


class LogTrimmed(StorageError):
    """A read of a user's event log from a position older than the log keeps:
    the events up to ``trimmed_through`` are gone, and ``last_seq`` is the
    user's newest event now (where a reader that resyncs continues from)."""

    def __init__(self, last_seq: int, trimmed_through: int) -> None:
        self.last_seq = last_seq
        self.trimmed_through = trimmed_through
        super().__init__(f"events up to {trimmed_through} are no longer kept (newest is {last_seq})")


class IdentityTaken(StorageError):
    """A login or an email that another account already has (by identity key,
    or case-insensitively for the database).  ``field``: ``"login"`` or
    ``"email"``."""

    def __init__(self, field: str) -> None:
        self.field = field
        super().__init__(f"{field} is already taken")


class DialogLogTrimmed(StorageError):
    """A read of a large dialog's log from a position older than the log
    keeps: the events up to ``trimmed_through`` are gone, and ``last_pts`` is
    the dialog's newest event now (where a reader that reloads the dialog
    continues from)."""

    def __init__(self, dialog_key: str, last_pts: int, trimmed_through: int) -> None:
        self.dialog_key = dialog_key
        self.last_pts = last_pts
        self.trimmed_through = trimmed_through
        super().__init__(f"events of dialog {dialog_key} up to {trimmed_through} are no longer kept")


class BlobMissing(StorageError):
    """The bytes of a stored file are not in the blob store (removed by hand,
    or a store that lost them): a row points at content that is not there."""

    def __init__(self, sha256: bytes) -> None:
        self.sha256 = sha256
        super().__init__(f"blob {sha256.hex()} is missing from the store")


class BlobStoreUnavailable(StorageError):
    """The blob store could not be used (not reachable, credentials refused,
    no such bucket): nothing the request asked for can be assumed done.
    ``reason`` says which, in words safe to log: never a credential."""

    def __init__(self, operation: str, reason: str) -> None:
        self.operation = operation
        self.reason = reason
        super().__init__(f"blob store unavailable during {operation}: {reason}")


class QuotaExceeded(StorageError):
    """Storing ``size`` more bytes would take an owner past ``quota``: they
    hold ``used`` bytes already (their files and their unfinished uploads)."""

    def __init__(self, used: int, size: int, quota: int) -> None:
        self.used = used
        self.size = size
        self.quota = quota
        super().__init__(f"{used} + {size} bytes exceed the quota of {quota} bytes")


class TooManyUploads(StorageError):
    """An owner already has ``limit`` unfinished uploads."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        super().__init__(f"already {limit} unfinished uploads")
