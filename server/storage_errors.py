"""The one place that decides what a client is told when storage refuses or
fails (storage/errors.py): each storage exception becomes a ``SessiaError``
with its Status code, message and extra fields."""

from __future__ import annotations

from protocol.status import Conflict, Gone, InternalError, SessiaError, TooLarge, Unavailable
from storage.errors import (
    BlobStoreUnavailable,
    DialogLogTrimmed,
    IdentityTaken,
    LogTrimmed,
    QuotaExceeded,
    StorageBusy,
    StorageError,
    StorageUnavailable,
    TooManyUploads,
)

#: What a taken login or email is called in the answer (registration and email changes).
TAKEN_MESSAGES = {
    "email": "email is already registered",
    "login": "login is already taken",
}


def status_for(exc: StorageError) -> SessiaError:
    """The answer to a request that ``exc`` ended."""
    if isinstance(exc, StorageUnavailable):
        return Unavailable("storage unavailable, try again shortly")
    if isinstance(exc, BlobStoreUnavailable):
        return Unavailable("media store unavailable, try again shortly")
    if isinstance(exc, StorageBusy):
        return Unavailable("storage busy, try again")
    if isinstance(exc, LogTrimmed):
        return Gone(
            f"events up to {exc.trimmed_through} are no longer kept: resync and continue from {exc.last_seq}",
            LastSeq=exc.last_seq,
        )
    if isinstance(exc, DialogLogTrimmed):
        return Gone(
            f"events of this dialog up to {exc.trimmed_through} are no longer kept:"
            f" reload its messages and continue from {exc.last_pts}",
            LastPts=exc.last_pts,
        )
    if isinstance(exc, IdentityTaken):
        return Conflict(TAKEN_MESSAGES[exc.field])
    if isinstance(exc, QuotaExceeded):
        return TooLarge(
            f"media quota exceeded: {exc.used} of {exc.quota} bytes are used, this file needs {exc.size} more",
            QuotaBytes=exc.quota,
            UsedBytes=exc.used,
        )
    if isinstance(exc, TooManyUploads):
        return Conflict(f"already {exc.limit} unfinished uploads: finish one or let it expire")
    return InternalError("internal error")
