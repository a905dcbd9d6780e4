"""Read receipts and typing indicators (beyond the original API).

``MarkRead`` moves the caller's read mark in a dialog up to a message; the
other members get a ``MessagesRead`` event and ``GetDialogs`` counts unread
messages after the mark.  ``Typing`` is ephemeral: pushed to the members who
are connected, never stored.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..fields import Fields
from .dialogs import dialog_key
from .messages import check_msgkey

MARK_READ = "MarkRead"
TYPING = "Typing"


@dataclass(frozen=True, slots=True)
class MarkRead:
    dialog: str
    msgkey: str

    @classmethod
    def parse(cls, body: Fields) -> MarkRead:
        key = body.str("msgkey", max_len=256, strip=True)
        return cls(dialog_key(body), check_msgkey(key, "msgkey"))


@dataclass(frozen=True, slots=True)
class Typing:
    dialog: str

    @classmethod
    def parse(cls, body: Fields) -> Typing:
        return cls(dialog_key(body))
