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
from typing import TYPE_CHECKING, Any, TypeVar

from protocol.answers import MessageItem
from protocol.codecs import Codec
from protocol.events import (
    DIALOG_CREATED,
    FOLLOW_DIALOG,
    KINDS,
    MEMBER_KICKED,
    MEMBERS_ADDED,
    MESSAGE_DELETED,
    MESSAGE_EDITED,
    NEW_MESSAGE,
    PUSH_DIALOG_EVENT,
    PUSH_DIALOG_GAP,
    PUSH_EVENT,
    PUSH_RESYNC,
    PUSH_TYPING,
    DialogGap,
    MessageEvent,
    NewMessage,
)
from protocol.frames import PushTemplate, encode_push
from storage import dialog_log, event_log
from storage import dialogs as dialog_store
from storage.db import Database
from storage.errors import DialogLogTrimmed

from .broker import Broker, chunk_items
from .history_cache import PageCache
from .sessions import Revocation

if TYPE_CHECKING:
    from .connection import Connection

log = logging.getLogger("sessia.push")

EVENT = PUSH_EVENT
RESYNC = PUSH_RESYNC
TYPING = PUSH_TYPING
CATCH_UP_PAGE = 500
#: Rows a ``GetEvents`` page reads at least per round trip to the log, and
#: round trips at most per request (``read_page``).
SCAN_PAGE = 100
MAX_SCANS = 10
REORDER_WAIT = 0.05  # seconds an early event waits for the ones before it
MAX_EARLY = 64


@dataclass(eq=False, slots=True)
class Subscription:
    conn: Connection
    user_id: int
    after: int
    session_id: int = 0  # the session that subscribed: the subscription ends with it
    codec: int = Codec.MSGPACK
    catching_up: bool = False
    again: bool = False
    dropped: bool = False
    early: dict[int, tuple[event_log.EventRow, bytes]] | None = None  # seq -> event that came before its turn
    left: set[str] | None = None  # keys of dialogs this user was removed from, as seen in its events
    replay: asyncio.Future[None] | None = None  # the connection's latest catch-up task
    #: large dialogs followed on their own streams: key -> the last pts pushed
    follows: dict[str, int] | None = None
    #: those whose stream is being read from the log right now (and read again after)
    dialog_reading: dict[str, bool] | None = None

    def still_member(self, row: event_log.EventRow) -> bool:
        """Whether the event, next in this user's sequence, is one the user may
        still see.  A message that committed just after the user was removed
        (its recipients were read a moment before the removal committed)
        comes after the user's own ``MemberKicked`` in the sequence, and is
        not pushed; the log read leaves it out the same way
        (storage/event_log.py READ_AFTER_SQL)."""
        payload = row.payload
        if payload is None:  # not shown yet (see ``shown``): nothing to decide on
            return True
        key = payload.get("PkDialog")
        if key is None:
            return True
        kind = row.kind
        if kind == MEMBER_KICKED and payload.get("Id") == self.user_id:
            if self.left is None:
                self.left = set()
            self.left.add(key)
            return True
        if self.left is None:
            return True
        if kind == DIALOG_CREATED or (kind == MEMBERS_ADDED and self.user_id in payload.get("Ids", ())):
            self.left.discard(key)
            return True
        return key not in self.left


def event_body(row: event_log.EventRow) -> dict[str, Any]:
    """The wire body of an event (its payload as ``shown`` or as appended)."""
    assert row.payload is not None
    return {"Seq": row.seq, "Kind": row.kind, **row.payload}


#: A row of either log: a user's (``seq``) or a large dialog's (``pts``).
LogRow = TypeVar("LogRow", event_log.EventRow, dialog_log.DialogEventRow)


def shown(row: LogRow) -> LogRow | None:
    """An event read from the log as its reader is to see it now.

    An event that carries a message is stored as a reference: its payload is
    made here from the message as it is now (an edit shows its latest text; a
    message deleted for everyone has lost its text, media and forward), the
    same shape a live push had.  Every other payload is read into its typed
    event and written back, so a replayed event has the very bytes of the live
    push (the log's jsonb keeps its keys in an order of its own).  None: the
    message is gone altogether and nothing is left to show."""
    kind = KINDS.get(row.kind)
    m = row.message
    if m is not None and row.dialog_key is not None and kind is not None and issubclass(kind, MessageEvent):
        deleted = m.deleted_at is not None
        item = MessageItem(
            m.key, m.author_id, m.created_at, "" if deleted else m.content, m.updated_at, m.deleted_at,
            None if deleted else m.forwarded_key, m.important, () if deleted else tuple(m.media),
            () if deleted else tuple(m.positions), read=False if kind is NewMessage else None,
        )
        return row._replace(payload=kind(row.dialog_key, item).to_payload())
    if row.payload is None:
        return None
    if kind is None:  # written by a newer version: passed on as it is
        return row
    return row._replace(payload=kind.from_payload(row.payload).to_payload())


#: A delivery that tells this many members of one dialog is signalled to the
#: other nodes as the dialog (``d<id>``, one item) rather than as each
#: member's ``user:seq``: a message to a large dialog is one signal, and each
#: node looks up which of its own users are members.
DIALOG_SIGNAL_MIN = 16


def signals_of(rows: list[event_log.EventRow]) -> list[str]:
    """The broker items that tell other nodes of these committed events."""
    per_dialog: dict[int, int] = {}
    for row in rows:
        if row.dialog_id is not None:
            per_dialog[row.dialog_id] = per_dialog.get(row.dialog_id, 0) + 1
    large = {d for d, n in per_dialog.items() if n >= DIALOG_SIGNAL_MIN}
    items = [f"d{d}" for d in large]
    # A member removed by the change is no longer a member when the other
    # nodes look: their own event goes by user, whatever the dialog's size.
    items += [f"{row.user_id}:{row.seq}" for row in rows
              if row.dialog_id not in large or (row.kind == MEMBER_KICKED and _removed(row))]
    return items


def _removed(row: event_log.EventRow) -> bool:
    return row.payload is not None and row.payload.get("Id") == row.user_id


#: The event kinds that change what a dialog's history shows.
_HISTORY_KINDS = frozenset((NEW_MESSAGE, MESSAGE_EDITED, MESSAGE_DELETED))


def messages_changed(rows: list[event_log.EventRow]) -> set[int]:
    """The dialogs whose messages these committed events changed."""
    return {r.dialog_id for r in rows if r.dialog_id is not None and r.kind in _HISTORY_KINDS}


def dialog_body(row: dialog_log.DialogEventRow) -> dict[str, Any]:
    """The wire body of a large dialog's event (push ``DialogEvent``, and the
    items of ``GetDialogEvents``)."""
    assert row.payload is not None
    return {"Pts": row.pts, "Kind": row.kind, **row.payload}


def _shown_rows(rows: list[LogRow], where: str) -> list[LogRow]:
    """``shown`` over a page of either log.  One unreadable row must not stop
    the log behind it (a catch-up would Resync on it forever): it is passed
    over, and said."""
    out = []
    for row in rows:
        try:
            done = shown(row)
        except (KeyError, TypeError, ValueError) as exc:
            log.error("an event of %s cannot be shown, passed over: %r (%r)", where, exc, row[:3])
            continue
        if done is not None:
            out.append(done)
    return out


def _shown_dialog_page(page: dialog_log.DialogEventPage) -> dialog_log.DialogEventPage:
    return page._replace(rows=_shown_rows(page.rows, "a dialog's log"))


def _shown_page(page: event_log.EventPage) -> event_log.EventPage:
    return page._replace(rows=_shown_rows(page.rows, "a user's log"))


class _Encoded:
    """Frames of one delivery, encoding each payload once per codec: a message
    to a large dialog differs between recipients only by ``Seq``."""

    __slots__ = ("_templates",)

    def __init__(self) -> None:
        self._templates: dict[tuple[int, int], PushTemplate] = {}

    def frame(self, row: event_log.EventRow, codec: int) -> bytes:
        assert row.payload is not None  # appended here, or ``shown``
        key = (id(row.payload), codec)
        template = self._templates.get(key)
        if template is None:
            template = self._templates[key] = PushTemplate(EVENT, row.kind, row.payload, codec)
        return template.frame(row.seq)


class PushHub:
    def __init__(self, db: Database, broker: Broker, *, buffer_limit: int = 1 << 20,
                 pages: PageCache | None = None) -> None:
        self.db = db
        self.broker = broker
        self.buffer_limit = buffer_limit
        #: the newest pages kept in memory, told of every change to a dialog's
        #: messages here and on the other nodes (server/history_cache.py)
        self.pages = pages or PageCache(0)
        self._by_user: dict[int, set[Subscription]] = {}
        self._by_conn: dict[Connection, Subscription] = {}
        self._by_dialog: dict[str, set[Subscription]] = {}
        self._signals: list[str] = []
        self._outbox: list[event_log.EventRow] = []  # committed here, pushed on the next loop iteration
        self._flush_scheduled = False
        self._tasks: set[asyncio.Task] = set()
        self.pushed = 0

    # -- subscriptions -------------------------------------------------------------

    def subscribe(self, conn: Connection, user_id: int, after: int, codec: int, session_id: int,
                  follows: dict[str, int] | None = None) -> Subscription:
        """``follows``: the large dialogs the user is in, each with the pts
        its stream starts after."""
        old = self._by_conn.get(conn)
        self.unsubscribe(conn)
        sub = Subscription(conn, user_id, after, session_id, codec)
        if old is not None:
            sub.replay = old.replay  # its catch-up ends before this one reads
        self._by_conn[conn] = sub
        self._by_user.setdefault(user_id, set()).add(sub)
        self._start_catch_up(sub)
        for key, pts in (follows or {}).items():
            self.follow(sub, key, pts)
        return sub

    def follow(self, sub: Subscription, key: str, pts: int) -> None:
        """Push the large dialog ``key``'s events after ``pts`` on ``sub``."""
        if sub.follows is None:
            sub.follows = {}
        if key in sub.follows:
            return
        sub.follows[key] = pts
        self._by_dialog.setdefault(key, set()).add(sub)
        self._start_dialog_read(sub, key)

    def _unfollow(self, sub: Subscription, key: str) -> None:
        if sub.follows is not None:
            sub.follows.pop(key, None)
        subs = self._by_dialog.get(key)
        if subs is not None:
            subs.discard(sub)
            if not subs:
                del self._by_dialog[key]

    def unsubscribe(self, conn: Connection) -> None:
        sub = self._by_conn.pop(conn, None)
        if sub is None:
            return
        sub.dropped = True
        for key in list(sub.follows or ()):
            self._unfollow(sub, key)
        subs = self._by_user.get(sub.user_id)
        if subs is not None:
            subs.discard(sub)
            if not subs:
                del self._by_user[sub.user_id]

    def end_subscriptions(self, revoked: Revocation) -> None:
        """Sessions were revoked: every subscription bound to one of them ends
        at once, on whatever connection it lives (the connection that asked
        for the revocation stays open for its answer, but its subscription
        does not outlive the session)."""
        users = [revoked.user_id] if revoked.user_id is not None else list(self._by_user)
        for user_id in users:
            for sub in list(self._by_user.get(user_id, ())):
                if revoked.covers(sub.session_id, sub.user_id):
                    self.unsubscribe(sub.conn)

    @property
    def subscriptions(self) -> int:
        return len(self._by_conn)

    # -- reading the log for a client (Subscribe, GetEvents) ---------------------------

    async def start_position(self, user_id: int, after: int | None) -> int:
        """Where a subscription starts: ``after`` if the log still reaches back
        to it (``LogTrimmed`` otherwise: 410 with ``LastSeq``), or the user's
        newest seq when the client names none (only new events)."""
        if after is None:
            return await event_log.last_seq(self.db, user_id)
        await event_log.read_after(self.db, user_id, after, 0)
        return after

    async def dialog_positions(self, user_id: int, requested: dict[str, int]) -> dict[str, int]:
        """Where each large dialog the user is in starts on a new
        subscription: the position the client names, else its newest event."""
        newest = await dialog_log.followed_by(self.db, user_id)
        return {key: requested.get(key, last) for key, last in newest.items()}

    async def read_dialog_page(self, key: str, user_id: int, after: int, take: int) -> dialog_log.DialogEventPage:
        """Up to ``take`` events of the large dialog after ``after``, as the
        user may see them now (``through``: where the next page starts)."""
        page = _shown_dialog_page(await dialog_log.read_after(self.db, key, user_id, after, max(take, SCAN_PAGE)))
        through = page.rows[take - 1].pts if len(page.rows) > take else page.through
        return page._replace(rows=page.rows[:take], through=through)

    async def read_page(self, user_id: int, after: int, take: int) -> event_log.EventPage:
        """Up to ``take`` events after ``after`` as the user may see them now.

        Events the reader may no longer see are passed over, a scan page at a
        time (at least SCAN_PAGE rows, at most MAX_SCANS reads, so that a long
        run of them costs few reads and bounded work); the page's ``through``
        tells where the next request continues."""
        scan = max(take, SCAN_PAGE)
        rows: list[event_log.EventRow] = []
        start = after
        for _ in range(MAX_SCANS):
            page = _shown_page(await event_log.read_after(self.db, user_id, start, scan))
            rows += page.rows
            if len(rows) >= take or page.through >= page.last_seq or page.through == start:
                break
            start = page.through
        through = rows[take - 1].seq if len(rows) >= take else page.through
        return event_log.EventPage(rows[:take], page.last_seq, through)

    # -- delivery --------------------------------------------------------------------

    def deliver(self, rows: list[event_log.EventRow]) -> None:
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
            # At once, not on the next iteration: a read that starts after
            # the commit must not be served the page from before it.
            for dialog_id in messages_changed(rows):
                self.pages.changed(dialog_id)
                self._signals.append(f"h{dialog_id}")

    def deliver_dialog(self, rows: list[dialog_log.DialogEventRow]) -> None:
        """Events of large dialogs this node has just committed (one row per
        event, not per member).  For now: the kept history pages are dropped
        and the other nodes told (``D<id>:<pts>``); pushing them to the
        members who follow the dialog comes with the wire's DialogEvent."""
        if not rows:
            return
        for row in rows:
            if row.kind in _HISTORY_KINDS:
                self.pages.changed(row.dialog_id)
                self._signals.append(f"h{row.dialog_id}")
            self._signals.append(f"D{row.dialog_key}:{row.pts}")
        loop = asyncio.get_running_loop()
        loop.call_soon(self._deliver_dialog_now, rows)
        if not self._flush_scheduled:
            self._flush_scheduled = True
            loop.call_soon(self._flush_signals)

    def _deliver_dialog_now(self, rows: list[dialog_log.DialogEventRow]) -> None:
        """Each event is encoded once per codec: every follower gets the same bytes."""
        for row in rows:
            subs = self._by_dialog.get(row.dialog_key or "")
            if not subs:
                continue
            frames: dict[int, bytes] = {}
            for sub in list(subs):
                pos = (sub.follows or {}).get(row.dialog_key or "")
                if sub.dropped or pos is None or row.pts <= pos:
                    continue
                if row.pts != pos + 1 or (sub.dialog_reading and row.dialog_key in sub.dialog_reading):
                    self._start_dialog_read(sub, row.dialog_key or "")  # the log has what comes before it
                    continue
                frame = frames.get(sub.codec)
                if frame is None:
                    frame = frames[sub.codec] = encode_push(PUSH_DIALOG_EVENT, dialog_body(row), sub.codec)
                self._send_dialog_frame(sub, row, frame)

    def _send_dialog_frame(self, sub: Subscription, row: dialog_log.DialogEventRow, frame: bytes) -> bool:
        if not self._room_for_push(sub):
            return False
        key = row.dialog_key or ""
        assert sub.follows is not None
        sub.follows[key] = row.pts
        sub.conn.send(frame)
        self.pushed += 1
        if row.kind == MEMBER_KICKED and row.payload is not None and row.payload.get("Id") == sub.user_id:
            self._unfollow(sub, key)  # their own removal is the stream's last event for them
        return True

    def _send_gap(self, sub: Subscription, key: str, pts: int) -> bool:
        """The dialog's log no longer reaches back to where ``sub`` is: tell
        the client (``DialogGap``) and follow on from the dialog's newest pts."""
        if not self._room_for_push(sub):
            return False
        assert sub.follows is not None
        sub.follows[key] = max(sub.follows[key], pts)
        sub.conn.send(encode_push(PUSH_DIALOG_GAP, DialogGap(key, pts).to_payload(), sub.codec))
        self.pushed += 1
        return True

    def _dialog_signal(self, key: str, pts: int) -> None:
        """Another node committed an event of the large dialog ``key``."""
        for sub in list(self._by_dialog.get(key, ())):
            if (sub.follows or {}).get(key, pts) < pts:
                self._start_dialog_read(sub, key)

    def _start_dialog_read(self, sub: Subscription, key: str) -> None:
        if sub.dropped:
            return
        if sub.dialog_reading is None:
            sub.dialog_reading = {}
        if key in sub.dialog_reading:
            sub.dialog_reading[key] = True  # read again when done
            return
        sub.dialog_reading[key] = False
        self._spawn(self._read_dialog(sub, key))

    async def _read_dialog(self, sub: Subscription, key: str) -> None:
        """Push a followed dialog's events from the log, from the last one pushed."""
        reading = sub.dialog_reading
        assert reading is not None
        try:
            while not sub.dropped and sub.follows is not None and key in sub.follows:
                reading[key] = False
                start = sub.follows[key]
                try:
                    page = _shown_dialog_page(
                        await dialog_log.read_after(self.db, key, sub.user_id, start, CATCH_UP_PAGE)
                    )
                except DialogLogTrimmed as gone:
                    if not self._send_gap(sub, key, gone.last_pts):
                        return
                    continue
                for row in page.rows:
                    await self._paced(sub)
                    if sub.dropped or sub.follows is None or key not in sub.follows or row.pts <= sub.follows[key]:
                        continue
                    frame = encode_push(PUSH_DIALOG_EVENT, dialog_body(row), sub.codec)
                    if not self._send_dialog_frame(sub, row, frame):
                        return
                if sub.follows is not None and key in sub.follows:
                    sub.follows[key] = max(sub.follows[key], page.through)
                if page.through - start < CATCH_UP_PAGE and not reading.get(key):
                    return
        except Exception as exc:
            log.warning("reading dialog %s for user %d failed: %s", key, sub.user_id, exc)
            if not sub.dropped:
                self._resync(sub)
        finally:
            reading.pop(key, None)

    def _deliver_now(self) -> None:
        rows, self._outbox = self._outbox, []
        encoded = _Encoded()
        for row in rows:
            subs = self._by_user.get(row.user_id)
            if subs:
                for sub in list(subs):
                    self._push(sub, row, encoded)
        self._signals.extend(signals_of(rows))
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
        dialogs = []
        for item in payload.split(","):
            try:
                if item.startswith("d"):
                    dialogs.append(int(item[1:]))
                    continue
                if item.startswith("h"):
                    self.pages.changed(int(item[1:]))
                    continue
                if item.startswith("D"):
                    key, _, pts = item[1:].partition(":")
                    self._dialog_signal(key, int(pts))
                    continue
                user, _, seq = item.partition(":")
                user_id, last = int(user), int(seq)
            except ValueError:  # an item of a newer version, say: the others still count
                log.warning("signal item %r not understood, passed over", item)
                continue
            for sub in list(self._by_user.get(user_id, ())):
                if last > sub.after:
                    self._start_catch_up(sub)
        if dialogs and self._by_user:
            self._spawn(self._wake_members(dialogs))

    async def _wake_members(self, dialog_ids: list[int]) -> None:
        """Another node changed these dialogs: the members this node serves
        read their logs (one query for the node, not one signal per member)."""
        try:
            users = await dialog_store.members_among(self.db, dialog_ids, list(self._by_user))
        except Exception as exc:  # the next signal, or a broker reconnect, catches up
            log.warning("could not look up members of dialogs %s: %s", dialog_ids, type(exc).__name__)
            return
        for user_id in users:
            for sub in list(self._by_user.get(user_id, ())):
                self._start_catch_up(sub)


    async def catch_up_all(self) -> None:
        """After a broker reconnect signals may have been missed: re-read the
        log, and forget every page kept in memory."""
        self.pages.clear()
        for sub in list(self._by_conn.values()):
            self._start_catch_up(sub)
            for key in list(sub.follows or ()):
                self._start_dialog_read(sub, key)

    def _push(self, sub: Subscription, row: event_log.EventRow, encoded: _Encoded) -> None:
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
                sub.early[row.seq] = (row, encoded.frame(row, sub.codec))
            else:
                self._start_catch_up(sub)
            return
        if self._send_frame(sub, row, encoded.frame(row, sub.codec)):
            self._flush_early(sub)

    def _flush_early(self, sub: Subscription) -> None:
        early = sub.early
        while early:
            held = early.pop(sub.after + 1, None)
            if held is None or not self._send_frame(sub, *held):
                break

    def _gap_check(self, sub: Subscription) -> None:
        early, sub.early = sub.early, None
        if early and not sub.dropped and max(early) > sub.after:
            self._start_catch_up(sub)

    def _room_for_push(self, sub: Subscription) -> bool:
        """Whether ``sub``'s connection can take another push.  A closed one
        ends the subscription; one over ``buffer_limit`` is told to resync
        and the subscription ends (the client subscribes again from its
        positions): a reader that does not read holds bounded memory."""
        conn = sub.conn
        transport = conn.transport
        if transport is None or transport.is_closing():
            self.unsubscribe(conn)
            return False
        if conn.write_buffer_size > self.buffer_limit:
            log.info("push buffer of %s over %d bytes: asking it to resync", conn.peer, self.buffer_limit)
            self._resync(sub)
            return False
        return True

    def _resync(self, sub: Subscription) -> None:
        """End ``sub`` with a ``Resync`` push: subscribe again from ``LastSeq``."""
        sub.conn.send(encode_push(RESYNC, {"LastSeq": sub.after}, sub.codec))
        self.unsubscribe(sub.conn)

    def _send_frame(self, sub: Subscription, row: event_log.EventRow, frame: bytes) -> bool:
        if not self._room_for_push(sub):
            return False
        conn = sub.conn
        sub.after = row.seq
        if sub.still_member(row):
            conn.send(frame)
            self.pushed += 1
            if row.kind == FOLLOW_DIALOG and row.payload is not None:
                self.follow(sub, row.payload["PkDialog"], int(row.payload["Pts"]))
        return True

    def _send(self, sub: Subscription, row: event_log.EventRow) -> bool:
        return self._send_frame(sub, row, encode_push(EVENT, event_body(row), sub.codec))

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
                start = sub.after
                page = _shown_page(await event_log.read_after(self.db, sub.user_id, start, CATCH_UP_PAGE))
                for row in page.rows:
                    await self._paced(sub)
                    if sub.dropped or row.seq <= sub.after:
                        continue
                    if not self._send(sub, row):  # still over the limit: Resync
                        return
                # Events of the page the reader may not see are passed over:
                # their seqs are not waited for.
                sub.after = max(sub.after, page.through)
                if page.through - start < CATCH_UP_PAGE and not sub.again:
                    return
        except Exception as exc:
            log.warning("catch-up for user %d failed: %s", sub.user_id, exc)
            if not sub.dropped:
                self._resync(sub)
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
