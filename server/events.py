"""Push delivery: from committed events to every subscribed connection.

A connection subscribes with the last seq its client has seen; the hub first
replays the log after that seq, then pushes live events as they commit, on this
node (``deliver``) or another (a broker signal, then a read of the log).

Each subscription pushes strictly in seq order with no gaps: an event that
arrives ahead of its turn (a concurrent commit published first, or a signal
from another node) triggers a read of the log from the subscription's position
instead of being sent early.  A client that does not read its socket cannot
grow server memory without bound: when a connection's unsent bytes pass
``buffer_limit`` the hub sends one small ``Resync`` push and drops the
subscription; the client catches up by subscribing again from its last seq.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from protocol.codecs import Codec
from protocol.events import PUSH_EVENT, PUSH_RESYNC, PUSH_TYPING
from protocol.frames import PushTemplate, encode_push
from storage import events as event_store
from storage.db import Database

from .broker import Broker, chunk_items

if TYPE_CHECKING:
    from .connection import Connection

log = logging.getLogger("sessia.events")

EVENT = PUSH_EVENT
RESYNC = PUSH_RESYNC
TYPING = PUSH_TYPING
CATCH_UP_PAGE = 500
REORDER_WAIT = 0.05  # seconds an early event waits for the ones before it
MAX_EARLY = 64


@dataclass(eq=False, slots=True)
class Subscription:
    conn: Connection
    user_id: int
    after: int
    codec: int = Codec.MSGPACK
    catching_up: bool = False
    again: bool = False
    dropped: bool = False
    early: dict[int, bytes] | None = None  # seq -> frame that arrived before its turn
    replay: asyncio.Future[None] | None = None  # the connection's latest catch-up task


def event_body(row: event_store.EventRow) -> dict[str, Any]:
    return {"Seq": row.seq, "Kind": row.kind, **row.payload}


class _Encoded:
    """Frames of one delivery, encoding each payload once per codec: a message
    to a large dialog differs between recipients only by ``Seq``."""

    __slots__ = ("_templates",)

    def __init__(self) -> None:
        self._templates: dict[tuple[int, int], PushTemplate] = {}

    def frame(self, row: event_store.EventRow, codec: int) -> bytes:
        key = (id(row.payload), codec)
        template = self._templates.get(key)
        if template is None:
            template = self._templates[key] = PushTemplate(EVENT, row.kind, row.payload, codec)
        return template.frame(row.seq)


class EventHub:
    def __init__(self, db: Database, broker: Broker, *, buffer_limit: int = 1 << 20) -> None:
        self.db = db
        self.broker = broker
        self.buffer_limit = buffer_limit
        self._by_user: dict[int, set[Subscription]] = {}
        self._by_conn: dict[Connection, Subscription] = {}
        self._signals: list[str] = []
        self._outbox: list[event_store.EventRow] = []  # committed here, pushed on the next loop iteration
        self._flush_scheduled = False
        self._tasks: set[asyncio.Task] = set()
        self.pushed = 0

    # -- subscriptions -------------------------------------------------------------

    def subscribe(self, conn: Connection, user_id: int, after: int, codec: int) -> Subscription:
        old = self._by_conn.get(conn)
        self.unsubscribe(conn)
        sub = Subscription(conn, user_id, after, codec)
        if old is not None:
            sub.replay = old.replay  # its catch-up ends before this one reads
        self._by_conn[conn] = sub
        self._by_user.setdefault(user_id, set()).add(sub)
        self._start_catch_up(sub)
        return sub

    def unsubscribe(self, conn: Connection) -> None:
        sub = self._by_conn.pop(conn, None)
        if sub is None:
            return
        sub.dropped = True
        subs = self._by_user.get(sub.user_id)
        if subs is not None:
            subs.discard(sub)
            if not subs:
                del self._by_user[sub.user_id]

    def unsubscribe_user(self, user_id: int, keep: Connection | None = None) -> list[Connection]:
        """Drop every subscription of a user but ``keep``'s; returns their connections."""
        conns = [s.conn for s in list(self._by_user.get(user_id, ())) if s.conn is not keep]
        for conn in conns:
            self.unsubscribe(conn)
        return conns

    def connections_of(self, user_id: int) -> list[Connection]:
        return [s.conn for s in self._by_user.get(user_id, ())]

    @property
    def subscriptions(self) -> int:
        return len(self._by_conn)

    # -- delivery --------------------------------------------------------------------

    def deliver(self, rows: list[event_store.EventRow]) -> None:
        """Events this node has just committed: push them here, signal the others.

        The fan-out runs as a callback on the next loop iteration, so the
        request that caused the events gets its answer written first and a
        large dialog's fan-out does not delay it.  Everything delivered during
        one iteration goes out in that one callback, in the order delivered
        (deliveries stay in commit order)."""
        if rows:
            if not self._outbox:
                asyncio.get_running_loop().call_soon(self._deliver_now)
            self._outbox.extend(rows)

    def _deliver_now(self) -> None:
        rows, self._outbox = self._outbox, []
        encoded = _Encoded()
        for row in rows:
            subs = self._by_user.get(row.user_id)
            if subs:
                for sub in list(subs):
                    self._push(sub, row, encoded)
        self._signals.extend(f"{row.user_id}:{row.seq}" for row in rows)
        if not self._flush_scheduled:
            self._flush_scheduled = True
            asyncio.get_running_loop().call_soon(self._flush_signals)

    def _flush_signals(self) -> None:
        """One NOTIFY for everything committed in this loop iteration."""
        self._flush_scheduled = False
        items, self._signals = self._signals, []
        for payload in chunk_items("", items):
            self._spawn(self.broker.publish("events", payload))

    def on_signal(self, channel: str, payload: str) -> None:
        if channel == "events":
            self._on_remote_events(payload)
        elif channel == "typing":
            self._on_remote_typing(payload)

    def _on_remote_events(self, payload: str) -> None:
        for item in payload.split(","):
            user, _, seq = item.partition(":")
            subs = self._by_user.get(int(user))
            if not subs:
                continue
            for sub in list(subs):
                if int(seq) > sub.after:
                    self._start_catch_up(sub)

    async def catch_up_all(self) -> None:
        """After a broker reconnect signals may have been missed: re-read the log."""
        for sub in list(self._by_conn.values()):
            self._start_catch_up(sub)

    def _push(self, sub: Subscription, row: event_store.EventRow, encoded: _Encoded) -> None:
        if sub.dropped or row.seq <= sub.after:
            return
        if sub.catching_up:
            self._start_catch_up(sub)
            return
        if row.seq != sub.after + 1:
            # Not its turn: a concurrent commit for the same user is being
            # delivered a moment later.  Hold this one briefly; if the gap is
            # still there, read the log (which has both: they committed).
            if sub.early is None:
                sub.early = {}
                asyncio.get_running_loop().call_later(REORDER_WAIT, self._gap_check, sub)
            if len(sub.early) < MAX_EARLY:
                sub.early[row.seq] = encoded.frame(row, sub.codec)
            else:
                self._start_catch_up(sub)
            return
        if self._send_frame(sub, row.seq, encoded.frame(row, sub.codec)):
            self._flush_early(sub)

    def _flush_early(self, sub: Subscription) -> None:
        early = sub.early
        while early:
            frame = early.pop(sub.after + 1, None)
            if frame is None or not self._send_frame(sub, sub.after + 1, frame):
                break

    def _gap_check(self, sub: Subscription) -> None:
        early, sub.early = sub.early, None
        if early and not sub.dropped and max(early) > sub.after:
            self._start_catch_up(sub)

    def _send_frame(self, sub: Subscription, seq: int, frame: bytes) -> bool:
        conn = sub.conn
        transport = conn.transport
        if transport is None or transport.is_closing():
            self.unsubscribe(conn)
            return False
        if conn.write_buffer_size > self.buffer_limit:
            log.info("push buffer of %s over %d bytes: asking it to resync", conn.peer, self.buffer_limit)
            conn.send(encode_push(RESYNC, {"LastSeq": sub.after}, sub.codec))
            self.unsubscribe(conn)
            return False
        conn.send(frame)
        sub.after = seq
        self.pushed += 1
        return True

    def _send(self, sub: Subscription, row: event_store.EventRow) -> bool:
        return self._send_frame(sub, row.seq, encode_push(EVENT, event_body(row), sub.codec))

    def _start_catch_up(self, sub: Subscription) -> None:
        if sub.dropped:
            return
        if sub.catching_up:
            sub.again = True
            return
        sub.catching_up = True
        sub.replay = self._spawn(self._catch_up(sub, sub.replay))

    async def _catch_up(self, sub: Subscription, before: asyncio.Future[None] | None) -> None:
        try:
            # One replay per connection at a time: a client that subscribes
            # again and again makes the server read the log once, not once
            # per Subscribe (each read holds a page of events).
            if before is not None and not before.done():
                await asyncio.wait([before])
            while not sub.dropped:
                sub.again = False
                rows, _ = await event_store.read_after(self.db, sub.user_id, sub.after, CATCH_UP_PAGE)
                for row in rows:
                    await self._paced(sub)
                    if sub.dropped or row.seq <= sub.after:
                        continue
                    if not self._send(sub, row):  # still over the limit: Resync
                        return
                if len(rows) < CATCH_UP_PAGE and not sub.again:
                    return
        except Exception as exc:
            log.warning("catch-up for user %d failed: %s", sub.user_id, exc)
            if not sub.dropped:
                sub.conn.send(encode_push(RESYNC, {"LastSeq": sub.after}, sub.codec))
                self.unsubscribe(sub.conn)
        finally:
            sub.catching_up = False

    async def _paced(self, sub: Subscription, patience: float = 2.0) -> None:
        """Replay at the reader's pace: while its buffer is over half the limit,
        wait (up to ``patience`` seconds) for it to read."""
        transport = sub.conn.transport
        waited = 0.0
        while (
            waited < patience
            and not sub.dropped
            and transport is not None
            and not transport.is_closing()
            and sub.conn.write_buffer_size > self.buffer_limit // 2
        ):
            await asyncio.sleep(0.02)
            waited += 0.02

    # -- ephemeral signals -------------------------------------------------------------

    def typing(self, user_ids: list[int], body: dict[str, Any], *, origin: Connection | None = None) -> None:
        """Typing indicators: pushed to connected members, never stored."""
        self._push_ephemeral(user_ids, body, origin)
        uids = ",".join(str(u) for u in user_ids)
        self._spawn(self.broker.publish("typing", f"{uids};{body['PkDialog']};{body['Id']}"))

    def _on_remote_typing(self, payload: str) -> None:
        uids, dialog_key, typer = payload.split(";")
        self._push_ephemeral([int(u) for u in uids.split(",") if u], {"PkDialog": dialog_key, "Id": int(typer)}, None)

    def _push_ephemeral(self, user_ids: list[int], body: dict[str, Any], origin: Connection | None) -> None:
        for uid in user_ids:
            for sub in list(self._by_user.get(uid, ())):
                transport = sub.conn.transport
                if sub.conn is origin or transport is None or sub.conn.write_buffer_size > self.buffer_limit:
                    continue  # ephemeral: dropping is fine
                sub.conn.send(encode_push(TYPING, body, sub.codec))

    # -- plumbing ----------------------------------------------------------------------

    def _spawn(self, coro: Any) -> asyncio.Future[None]:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def close(self) -> None:
        if self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)
