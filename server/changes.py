"""The unit of work: the one way a handler changes something and tells the
people it concerns.

    async with call.app.changes("messages.edit") as ch:
        row = await message_store.edit_message(ch.db, ...)      # the change
        await ch.emit_to_dialog(row.dialog_id, MessageEdited(...))  # its event

Inside the block, ``ch.db`` is one transaction; ``emit`` appends the event to
the log of every recipient in that same transaction, so an event is stored
exactly when its change is.  When the block ends, the transaction commits and
only then are the logged events handed to the push hub (which pushes them on
this node and signals the other nodes) and the ``after_commit`` steps run (a
revocation's cache and connection clean-up, for instance).  If the block
raises, the transaction rolls back and nothing is sent: a push never tells of
a change that did not happen, and a change never happens without its event.

Who receives an event is decided here too (``emit`` to users,
``emit_to_dialog`` to a dialog's members), which is where a different fan-out
for large dialogs would be chosen.  The other half of the spine, messages
sent through group commit, lives beside this module (server/group_commit.py)
and hands its events to the same push hub after its own commit.

Typing indicators are not changes (nothing is stored): ``typing`` pushes them
to the members connected now and forgets them.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from typing import TYPE_CHECKING

from protocol.events import Event, FollowDialog, Typing
from storage import dialog_log, event_log
from storage import dialogs as dialog_store
from storage.db import Database, Transaction

if TYPE_CHECKING:
    from .connection import Connection
    from .push import PushHub


#: Members above which a dialog keeps its own log (``--large-dialog-members``):
#: about 40 µs of PostgreSQL and 0.4 KB of WAL per member per message in the
#: members' own logs (docs/performance.md), so 8 ms a message at 200.
LARGE_FROM = 200

log = logging.getLogger("sessia.changes")


class Change:
    """One transaction and what it has logged so far."""

    __slots__ = ("db", "logged", "dialog_logged", "_after", "large_from")

    def __init__(self, db: Transaction, large_from: int = LARGE_FROM) -> None:
        self.db = db
        self.large_from = large_from
        self.logged: list[event_log.EventRow] = []
        self.dialog_logged: list[dialog_log.DialogEventRow] = []
        self._after: list[Callable[[], Awaitable[None]]] = []

    async def emit(self, user_ids: Iterable[int], event: Event) -> None:
        """Log ``event`` for each of ``user_ids`` (duplicates count once) in
        this transaction; it is pushed after the commit."""
        # An event that carries a message is stored as a reference to it (read
        # back as the message is now: server/push.py ``shown``), not a copy.
        rows = await event_log.append(
            self.db, set(user_ids), event.KIND, event.to_payload(), stored=event.message is None,
            dialog_key=event.dialog, message_key=event.message, subject_id=event.subject,
        )
        self.logged.extend(rows)

    async def emit_to_dialog(self, dialog_id: int, event: Event, *, also: Iterable[int] = ()) -> None:
        """Log ``event`` for every member of the dialog as the transaction sees
        them now, and for ``also`` (a member just removed, who must learn it)."""
        # A large dialog keeps one log of its own: one row, whatever its size
        # (its members follow it by pts; a removed member reads their own
        # removal there).  A small one: a row in each member's log.
        row = await dialog_log.append(
            self.db, dialog_id, event.KIND, event.to_payload(), stored=event.message is None,
            message_key=event.message, subject_id=event.subject,
        )
        if row is not None:
            self.dialog_logged.append(row)
            return
        members = await dialog_store.members(self.db, dialog_id)
        await self.emit([*(m.user_id for m in members), *also], event)

    async def members_added(self, dialog_id: int, dialog_key: str, added: Iterable[int]) -> None:
        """Members were just added (before their ``MembersAdded`` is emitted):
        a dialog that now has more than ``large_from`` members starts its own
        log, and every member is told to follow it (``FollowDialog``, once); in
        a dialog that already has one, the new members are told where their
        reading starts.  Order of locks as everywhere: member rows, then event
        counters, then the dialog row."""
        added = list(added)
        state = await dialog_log.size_state(self.db, dialog_id)
        if state.large:
            await dialog_log.set_joined(self.db, dialog_id, added)
            await self.emit(added, FollowDialog(dialog_key, state.last_pts))
        elif state.members > self.large_from:
            everyone = [m.user_id for m in await dialog_store.members(self.db, dialog_id)]
            await self.emit(everyone, FollowDialog(dialog_key, state.last_pts))
            await dialog_log.make_large(self.db, dialog_id)

    def after_commit(self, step: Callable[[], Awaitable[None]]) -> None:
        """Run ``step`` once the transaction has committed (never on rollback)."""
        self._after.append(step)

    async def committed(self, push: PushHub) -> None:
        """The transaction has committed: push what it logged, run the steps.
        The change is a fact now: a step that fails is logged, and neither
        stops the others nor turns the committed request into an error."""
        try:
            push.deliver(self.logged)
            push.deliver_dialog(self.dialog_logged)
        except Exception:
            log.exception("could not hand %d committed events to the push hub", len(self.logged))
        for step in self._after:
            try:
                await step()
            except Exception:
                log.exception("a step after a commit failed")


class Changes:
    """``app.changes(name)``: a ``Change`` as an async context manager."""

    def __init__(self, db: Database, push: PushHub, *, large_from: int = LARGE_FROM) -> None:
        self.db = db
        self.push = push
        self.large_from = large_from

    @contextlib.asynccontextmanager
    async def __call__(self, name: str) -> AsyncIterator[Change]:
        async with self.db.atomic(name) as tx:
            change = Change(tx, self.large_from)
            yield change
        await change.committed(self.push)  # from here on, a fact others may learn of

    def typing(self, user_ids: list[int], typing: Typing, *, origin: Connection | None = None) -> None:
        """Push a typing indicator to the connected ``user_ids`` (not ``origin``)."""
        self.push.typing(user_ids, typing.to_payload(), origin=origin)
