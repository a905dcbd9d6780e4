"""The newest page of recently read dialogs, kept in memory while the dialog's
messages do not change.

Almost every history read is ``GetMessages`` for the newest page, and a
dialog's newest page changes far less often than it is read.  This keeps, per
dialog, the newest ``PAGE`` stored messages as every member sees them; what
differs between readers is worked out per request from the reader's row
(membership, read marks), and a reader who has hidden any message of the
dialog is served from the database as before.

Exactness rests on two rules:
- Every change to a dialog's messages (new, edited, deleted for everyone) is
  delivered through the push hub after its commit, and the hub calls
  ``changed`` for the dialog at once, on this node and, through the broker
  (``h<id>``), on the others.  A node whose broker reconnects forgets
  everything (signals may have been lost).
- A page read from the database is kept only if no change of its dialog was
  seen since the read began (``version``): a read that raced a commit is
  served, but never kept.
- A page is kept at most ``MAX_AGE`` seconds, so a signal lost on its way
  from another node (the broker's publish failed) delays a change, never
  hides it.

Between a commit on one node and its signal reaching another, that other
node may still serve the page before the change, as it would have if the
request had arrived a moment earlier.
"""

from __future__ import annotations

import time
from collections import OrderedDict

from storage.messages import MessageRow

#: Messages kept per dialog: the default page (``take`` 50).
PAGE = 50
#: Seconds a page is kept at most: a change signalled by another node whose
#: signal was lost (a failed publish) is seen within this, not never.
MAX_AGE = 10.0


def page_bytes(rows: list[MessageRow]) -> int:
    """About what a kept page holds in memory: a row's fixed part, its text
    (up to 4 bytes a character in a Python string) and its media keys."""
    return sum(400 + 4 * len(r.content) + 80 * len(r.media) for r in rows)


class PageCache:
    """Newest pages by dialog id, at most ``max_bytes`` of them (about),
    least recently read dropped first.

    Versions come from one clock: a dialog's version is the clock at its last
    change, or ``_floor`` (the clock when versions were last forgotten) if
    none is remembered; so a read that began before any forgotten change
    holds an older number and its page is not kept."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self.bytes = 0
        self._pages: OrderedDict[int, tuple[list[MessageRow], int, float]] = OrderedDict()
        self._versions: dict[int, int] = {}
        self._clock = 0
        self._floor = 0
        self.hits = 0
        self.misses = 0

    @property
    def enabled(self) -> bool:
        return self.max_bytes > 0

    @property
    def dialogs(self) -> int:
        return len(self._pages)

    def get(self, dialog_id: int) -> list[MessageRow] | None:
        kept = self._pages.get(dialog_id)
        if kept is None or time.monotonic() - kept[2] > MAX_AGE:
            self.misses += 1
            return None
        self._pages.move_to_end(dialog_id)
        self.hits += 1
        return kept[0]

    def version(self, dialog_id: int) -> int:
        """Take before reading the page from the database; give to ``put``."""
        return self._versions.get(dialog_id, self._floor)

    def put(self, dialog_id: int, version: int, rows: list[MessageRow]) -> None:
        if not self.enabled or self.version(dialog_id) != version:
            return  # the dialog changed while its page was read
        size = page_bytes(rows)
        self._drop(dialog_id)
        self._pages[dialog_id] = (rows, size, time.monotonic())
        self.bytes += size
        while self.bytes > self.max_bytes and self._pages:
            _, (_, dropped, _) = self._pages.popitem(last=False)
            self.bytes -= dropped

    def _drop(self, dialog_id: int) -> None:
        kept = self._pages.pop(dialog_id, None)
        if kept is not None:
            self.bytes -= kept[1]

    def changed(self, dialog_id: int) -> None:
        """A message of the dialog changed (committed): its page is stale."""
        if not self.enabled:
            return
        self._drop(dialog_id)
        self._clock += 1
        self._versions[dialog_id] = self._clock
        if len(self._versions) > 4 * len(self._pages) + 1000:  # forget the changes of dialogs nobody reads
            self._floor = self._clock
            self._versions = {d: self._versions[d] for d in self._pages if d in self._versions}

    def clear(self) -> None:
        """Everything may be stale (signals from other nodes may have been lost)."""
        self._clock += 1
        self._floor = self._clock
        self._versions.clear()
        self._pages.clear()
        self.bytes = 0
