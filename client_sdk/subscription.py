"""``async for update in client.events()``: every event exactly once, in order.

Each item is an ``Update(seq, event)``: ``event`` is the typed event of
``protocol.events`` (``NewMessage``, ``MemberKicked``, ... or ``Typing``) and
``seq`` its position in the user's log (None for ``Typing``, which is not
logged).  A large dialog's events come with their ``pts`` instead; a
``DialogGap`` item says that dialog's log was trimmed past the stream's
position while it was away: reload that dialog's messages, the stream goes on
after its ``pts``.  An event kind or push name this version does not know (a newer
server may send more) is skipped, as docs/protocol.md asks of a client; its
seq still counts as seen, so it is not replayed either.

The stream subscribes from the last seq it has yielded.  If the connection
drops (or the server restarts), it reconnects with exponential backoff and
jitter, resumes the session by token, and subscribes again from that seq, so
the server replays what was missed.  A 503 (the server's database is
restarting) is waited out the same way.  A ``Resync`` push (the client read too
slowly) or a local queue overflow is handled the same way without a
reconnect.  Events with a seq already yielded are skipped, so nothing is seen
twice.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from protocol.events import (
    PUSH_DIALOG_EVENT,
    PUSH_DIALOG_GAP,
    PUSH_EVENT,
    PUSH_RESYNC,
    PUSH_TYPING,
    DialogGap,
    Event,
    FollowDialog,
    Typing,
    parse_event,
)
from protocol.requests.sync import SUBSCRIBE

from .errors import ClientError, ConnectionClosed, Gone, RequestTimeout, Unauthorized, Unavailable
from .transport import Push

if TYPE_CHECKING:
    from .client import Client


@dataclass(frozen=True, slots=True)
class Update:
    """One item of the stream: a typed event and its ``seq`` in the user's log
    (None for ``Typing``, which is ephemeral and not logged, and for the
    events of a large dialog, which are numbered by ``pts`` in that dialog's
    own log instead)."""

    seq: int | None
    event: Event | Typing | DialogGap
    pts: int | None = None


class EventStream:
    def __init__(self, client: Client, after: int | None, *, reconnect: bool, max_backoff: float) -> None:
        self.client = client
        self.last_seq = after
        #: large dialogs followed on their own streams: key -> the last pts seen
        self.dialog_pts: dict[str, int] = {}
        self.reconnect = reconnect
        self.max_backoff = max_backoff
        self._subscribed = False
        self._overflow_seen = 0
        self._delay = 0.1  # seconds before the next attempt after a failure

    def __aiter__(self) -> AsyncIterator[Update]:
        return self

    async def start(self) -> EventStream:
        """Subscribe now rather than at the first read, so that nothing that
        happens in between is missed by a stream started "from now"."""
        if not self._subscribed:
            await self._subscribe()
        return self

    async def __anext__(self) -> Update:
        while True:
            try:
                if not self._subscribed:
                    await self._subscribe()
                push = await self._next_push()
            except (ConnectionClosed, RequestTimeout, OSError):
                if not self.reconnect:
                    raise StopAsyncIteration from None
                await self._reconnect()
                continue
            except Unavailable:
                # The server is up but its database is not (yet): subscribe
                # again after a pause, from the same seq.
                if not self.reconnect:
                    raise
                await self._pause()
                continue
            if push is None:
                continue
            if push.name == PUSH_EVENT:
                seq = int(push.body.get("Seq", 0))
                if self.last_seq is not None and seq <= self.last_seq:
                    continue
                payload = {k: v for k, v in push.body.items() if k not in ("Seq", "Kind")}
                event = parse_event(str(push.body.get("Kind", "")), payload)
                self.last_seq = seq
                if event is None:
                    continue  # a kind this version does not know
                if isinstance(event, FollowDialog):
                    self.dialog_pts.setdefault(event.dialog_key, event.pts)
                return Update(seq, event)
            if push.name == PUSH_DIALOG_EVENT:
                key = str(push.body.get("PkDialog", ""))
                pts = int(push.body.get("Pts", 0))
                if pts <= self.dialog_pts.get(key, -1):
                    continue
                payload = {k: v for k, v in push.body.items() if k not in ("Pts", "Kind")}
                self.dialog_pts[key] = pts
                dialog_event = parse_event(str(push.body.get("Kind", "")), payload)
                if dialog_event is None:
                    continue
                return Update(None, dialog_event, pts)
            if push.name == PUSH_DIALOG_GAP:
                gap = DialogGap.from_payload(push.body)
                if gap.pts <= self.dialog_pts.get(gap.dialog_key, -1):
                    continue
                self.dialog_pts[gap.dialog_key] = gap.pts
                return Update(None, gap, gap.pts)
            if push.name == PUSH_RESYNC:
                self._subscribed = False
                continue
            if push.name == PUSH_TYPING:
                return Update(None, Typing.from_payload(push.body))
            # a push name this version does not know: ignored

    async def _subscribe(self) -> None:
        body: dict[str, Any] = {} if self.last_seq is None else {"after": self.last_seq}
        if self.dialog_pts:
            body["dialogs"] = [{"pkDialog": key, "after": pts} for key, pts in self.dialog_pts.items()]
        try:
            answer = await self.client.request(SUBSCRIBE, body)
        except Gone as exc:
            # The log no longer reaches back that far: the caller must resync
            # its state; the stream continues from the server's position.
            self.last_seq = int(exc.extra.get("LastSeq", 0))
            raise
        if self.last_seq is None:
            self.last_seq = int(answer["LastSeq"])
        for followed in answer.get("Dialogs") or ():
            self.dialog_pts.setdefault(str(followed["PkDialog"]), int(followed["Pts"]))
        self._overflow_seen = self.client.transport.push_overflow
        self._subscribed = True
        self._delay = 0.1

    async def _next_push(self) -> Push | None:
        transport = self.client.transport
        if transport.push_overflow != self._overflow_seen:
            self._subscribed = False  # pushes were dropped locally: replay from last_seq
            return None
        if not transport.pushes.empty():
            return transport.pushes.get_nowait()
        if not transport.is_open:
            raise ConnectionClosed("connection closed")
        getter = asyncio.ensure_future(transport.pushes.get())
        closed = asyncio.ensure_future(transport.wait_closed())
        try:
            await asyncio.wait((getter, closed), return_when=asyncio.FIRST_COMPLETED)
        finally:
            closed.cancel()
        if getter.done():
            return getter.result()
        getter.cancel()
        raise ConnectionClosed("connection closed")

    async def _reconnect(self) -> None:
        self._subscribed = False
        while True:
            try:
                await self.client.reconnect()
                return
            except Unauthorized:
                raise  # the session was revoked: nothing to resume
            except (ClientError, OSError, Unavailable):
                pass  # not reachable yet, or reachable without its database
            await self._pause()

    async def _pause(self) -> None:
        """Exponential backoff with jitter between attempts; reset by a subscription."""
        self._subscribed = False
        await asyncio.sleep(self._delay * (0.5 + random.random()))
        self._delay = min(self._delay * 2, self.max_backoff)
