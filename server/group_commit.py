"""Group commit of sends: the scheduling around ``storage.messages.add_batch``.

``MessageWriter.add`` queues a message and returns once the statement that
stored it has committed, so an answer still means "durable".  While one batch
is in the database the next one gathers: under load many sends share a
statement, a transaction and a WAL flush, and the locks on dialogs and
recipients' event counters are taken once per batch instead of once per
message.  An idle server runs a lone send at once (the batch starts on the
next loop iteration, after the requests that arrived together have queued
theirs).

The writer also hands the ``NewMessage`` events it committed to the push hub
itself (``deliver``), whether or not the sender is still waiting for its
answer: a send whose request was cancelled after the commit is pushed all the
same.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Callable
from typing import Any

from protocol import events as ev
from storage import messages as message_store
from storage.db import Database
from storage.dialog_log import DialogEventRow
from storage.errors import StorageBusy
from storage.event_log import EventRow
from storage.messages import MessageInsert, Sent

log = logging.getLogger("sessia.group_commit")

#: A queued send: the message, the payload of its ``NewMessage`` event (the
#: dict pushed; the log stores a reference to the message), the caller's
#: future and the tries so far.
_Item = tuple[MessageInsert, dict[str, Any], "asyncio.Future[Sent]", int]


class MessageWriter:
    """Group commit of sends (see the module docstring).

    One batch at a time: batches then never wait for each other's locks, and
    message ids, event seqs and commit order agree.  A batch never holds two
    messages with the same dialog and key (the later one waits for the next
    batch), so a retried send is answered as a retry, not as a conflict.
    """

    #: Times a message is tried again when its key was committed concurrently
    #: by another statement, or its batch was chosen as a deadlock victim.
    RETRIES = 3

    def __init__(
        self, db: Database, *, deliver: Callable[[list[EventRow]], None],
        deliver_dialog: Callable[[list[DialogEventRow]], None] | None = None, max_batch: int = 512,
    ) -> None:
        self.db = db
        self.deliver = deliver
        self.deliver_dialog = deliver_dialog
        self.max_batch = max_batch
        self._queue: deque[_Item] = deque()
        self._running = False

    async def add(self, message: MessageInsert, payload: dict[str, Any]) -> Sent:
        """Store ``message`` (see ``MessageInsert``) and push its events with
        ``payload``; an existing key is not inserted again: the answer names
        the earlier message's author so a retried send is recognised (same
        author) and a foreign key refused."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Sent] = loop.create_future()
        self._queue.append((message, payload, future, 0))
        if not self._running:
            self._running = True
            loop.call_soon(self._start)
        return await future

    def _start(self) -> None:
        task = asyncio.ensure_future(self._drain())
        task.add_done_callback(self._drained)

    def _drained(self, task: asyncio.Task) -> None:
        self._running = False
        if task.cancelled():
            return
        if self._queue:  # queued while the last batch was finishing, or after an error
            self._running = True
            self._start()

    async def _drain(self) -> None:
        while self._queue:
            batch = self._take()
            try:
                outcomes = await message_store.add_batch(
                    self.db, [m for m, _, _, _ in batch], ev.NewMessage.KIND
                )
            except StorageBusy as exc:
                self._retry(batch, exc)
                continue
            except Exception as exc:
                for _, _, future, _ in batch:
                    if not future.done():
                        future.set_exception(exc)
                continue
            except BaseException:
                for _, _, future, _ in batch:
                    future.cancel()
                raise
            again = []
            pushed: list[EventRow] = []
            logged: list[DialogEventRow] = []
            for item, sent in zip(batch, outcomes, strict=True):
                message, payload, future, _ = item
                if sent is None:
                    again.append(item)
                    continue
                kind, created_at = ev.NewMessage.KIND, message.created_at
                pushed += [EventRow(user, seq, kind, payload, created_at, None, message.dialog_key, sent.dialog_id)
                           for user, seq in sent.events]
                if sent.pts is not None and sent.dialog_id is not None:  # a large dialog: one event
                    logged.append(DialogEventRow(sent.dialog_id, sent.pts, kind, payload, created_at, None,
                                                 message.dialog_key))
                if not future.done():
                    future.set_result(sent)
            # In the same step as the futures are resolved: when a sender's
            # request resumes, its pushes are with the hub, and the hub's
            # fan-out (its next loop iteration) still comes after the answers.
            self._deliver(pushed)
            if logged and self.deliver_dialog is not None:
                self.deliver_dialog(logged)
            if again:
                self._retry(again, RuntimeError("message key neither inserted nor found"))

    def _deliver(self, rows: list[EventRow]) -> None:
        if not rows:
            return
        try:
            self.deliver(rows)
        except Exception:  # the events are in the log: subscribers catch up
            log.exception("could not deliver %d committed events", len(rows))

    def _take(self) -> list[_Item]:
        batch: list[_Item] = []
        held = []
        seen: set[tuple[str, str]] = set()
        queue = self._queue
        while queue and len(batch) < self.max_batch:
            item = queue.popleft()
            if item[2].done():  # the caller went away (cancelled)
                continue
            ident = (item[0].dialog_key, item[0].key)
            if ident in seen:
                held.append(item)
            else:
                seen.add(ident)
                batch.append(item)
        queue.extendleft(reversed(held))
        return batch

    def _retry(self, items: list[_Item], exc: BaseException) -> None:
        for message, payload, future, tries in reversed(items):
            if future.done():
                continue
            if tries + 1 >= self.RETRIES:
                future.set_exception(exc)
            else:
                self._queue.appendleft((message, payload, future, tries + 1))
