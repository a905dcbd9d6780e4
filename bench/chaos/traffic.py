"""Senders and receivers of a chaos run, through the SDK.

A sender sends one message at a time to its dialog and keeps going through
faults: on a lost connection or a timeout it reconnects (resuming its session
by token) and sends again, on 503 it waits a moment and sends again.  Every
request carries a marker of its own in its content.  A keyed sender sends its
own ``msgkey`` and keeps key and marker for the retries of one message (the
server must store it once however often it is sent); a sender without key
cannot retry safely, so each retry is a new message with a new marker, and
the earlier attempt, whose answer was lost, may or may not have been stored.
Only a 200 answer is an acknowledgement.

A receiver iterates ``client.events()`` from before the first send, so every
message stored in its dialogs must reach it, once, in order.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections import Counter
from dataclasses import dataclass, field

import client_sdk
from client_sdk.errors import ClientError, SessiaError, Unauthorized, Unavailable
from protocol.events import NewMessage

PASSWORD = "chaos run password"
CLIENT = {"nameclient": "sessia-chaos", "hashcert": "c4a05c4a05c4a05c4a05c4a05c4a05c4", "version": 1}
#: Seconds one request may take before the sender treats the connection as lost.
REQUEST_TIMEOUT = 10.0
TRANSIENT = (ClientError, OSError)


def marker_of(content: str) -> str | None:
    """The marker in a chaos message's content (``chaos <marker>``)."""
    head, _, marker = content.partition(" ")
    return marker if head == "chaos" and marker else None


async def connect(host: str, port: int, name: str) -> client_sdk.Client:
    return await client_sdk.connect(
        host, port, device={"deviceid": name, "os": "chaos", "hostname": "chaos"}, client=CLIENT,
        timeout=REQUEST_TIMEOUT,
    )


async def resume(client: client_sdk.Client, give_up: float) -> bool:
    """Reconnect to the client's node and resume the session, with backoff,
    until ``give_up`` (monotonic); False if it never came back."""
    delay = 0.05
    while time.monotonic() < give_up:
        try:
            await client.reconnect()
            return True
        except Unauthorized:
            raise
        except (*TRANSIENT, SessiaError):
            pass
        await asyncio.sleep(delay * (0.5 + random.random()))
        delay = min(delay * 2, 1.0)
    return False


@dataclass(slots=True)
class Ack:
    """One acknowledged send: the marker of the request answered 200 and the key it named."""

    sender: int
    dialog: str
    marker: str
    msgkey: str


@dataclass(eq=False)
class Sender:
    index: int
    node: int
    dialog: str
    keyed: bool
    client: client_sdk.Client
    token: str
    acks: list[Ack] = field(default_factory=list)
    #: marker -> the message it was an attempt of (keyless retries share the message number)
    attempts: dict[str, int] = field(default_factory=dict)
    messages: int = 0
    retries: int = 0
    reconnects: int = 0
    refused: Counter[str] = field(default_factory=Counter)
    gave_up: int = 0

    async def run(self, sending: asyncio.Event, give_up: float, pause: float) -> None:
        """Send while ``sending`` is set; a message under way when it clears is
        still carried through (until ``give_up``)."""
        while sending.is_set() and time.monotonic() < give_up:
            self.messages += 1
            await self._send_one(self.messages, give_up)
            if pause:
                await asyncio.sleep(pause * random.random() * 2)

    async def _send_one(self, n: int, give_up: float) -> None:
        key = f"chaos{self.index}x{n}" if self.keyed else None
        attempt = 0
        while time.monotonic() < give_up:
            attempt += 1
            marker = f"s{self.index}.{n}" if self.keyed else f"s{self.index}.{n}.{attempt}"
            self.attempts[marker] = n
            if attempt > 1:
                self.retries += 1
            try:
                got = await self.client.send_message(self.dialog, f"chaos {marker}", msgkey=key)
            except Unavailable:
                await asyncio.sleep(0.1 + 0.2 * random.random())
                continue
            except SessiaError as exc:  # any other refusal: counted, the message abandoned
                self.refused[f"{exc.code}"] += 1
                return
            except TRANSIENT:
                if not await resume(self.client, give_up):
                    break
                self.reconnects += 1
                continue
            self.acks.append(Ack(self.index, self.dialog, marker, got))
            return
        self.gave_up += 1


@dataclass(slots=True)
class Received:
    seq: int
    dialog: str
    msgkey: str


@dataclass(eq=False)
class Receiver:
    index: int
    node: int
    user_id: int
    dialogs: list[str]
    client: client_sdk.Client
    token: str
    events: list[Received] = field(default_factory=list)
    start_seq: int = 0
    #: exceptions that escaped the SDK's stream (it should absorb faults itself)
    escaped: Counter[str] = field(default_factory=Counter)
    _stream: client_sdk.EventStream | None = None

    async def subscribe(self) -> None:
        """Subscribe from now, before any message is sent."""
        self._stream = await self.client.events(max_backoff=1.0).start()
        self.start_seq = self._stream.last_seq or 0

    async def run(self, until: float) -> None:
        """Collect NewMessage events until cancelled (or ``until``, a backstop)."""
        assert self._stream is not None
        stream = self._stream
        while time.monotonic() < until:
            try:
                async for update in stream:
                    if isinstance(update.event, NewMessage) and update.seq is not None:
                        self.events.append(Received(update.seq, update.event.dialog_key, update.event.item.key))
                return
            except (*TRANSIENT, SessiaError) as exc:
                # The stream should ride out every fault of the run by itself:
                # counted as a failure, then the run goes on with a new stream.
                self.escaped[type(exc).__name__] += 1
                await asyncio.sleep(0.2)
                if self.client.token is None:
                    with contextlib.suppress(*TRANSIENT, SessiaError):
                        await self.client.login_with_token(self.token)
                stream = self.client.events(stream.last_seq, max_backoff=1.0)

    def keys(self) -> set[tuple[str, str]]:
        return {(e.dialog, e.msgkey) for e in self.events}
