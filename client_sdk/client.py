"""The client: typed async methods over one connection.

    async with await client_sdk.connect("127.0.0.1", 7788, device=..., client=...) as c:
        await c.register("alice", "alice@example.org", "correct horse")
        me = await c.get_user(c.user_id)

Typed methods raise the ``SessiaError`` subclass of a non-200 answer.
``call(name, body)`` is the escape hatch: it sends any body (adding ``sessia``
when the client holds a session and the body has none) and returns the answer
as a dict, raising nothing for non-200 answers.
"""

from __future__ import annotations

import ssl
from collections.abc import Callable
from typing import Any

from protocol import requests as R
from protocol.codecs import Codec
from protocol.status import error_for

from .api import DevicesAPI, DialogsAPI, FriendsAPI, MediaAPI, MessagesAPI, ProfilesAPI, SearchAPI
from .errors import ClientError, ConnectionClosed, NotLoggedIn, Unavailable
from .subscription import EventStream
from .transport import Push, Transport, open_transport
from .types import ClientBuild, Device, LoginResult


class Client(ProfilesAPI, FriendsAPI, MediaAPI, DialogsAPI, MessagesAPI, SearchAPI, DevicesAPI):
    def __init__(
        self,
        transport: Transport,
        *,
        device: Device,
        client: ClientBuild,
        codec: Codec = Codec.MSGPACK,
        timeout: float | None = 30.0,
    ) -> None:
        self.transport = transport
        transport.on_close = self._transport_closed
        self.device = device
        self.client = client
        self.codec = codec
        self.timeout = timeout
        self.token: str | None = None
        self.user_id: int | None = None
        self._uploads: dict[tuple[str, int, int], str] = {}
        self.address: tuple[str, int, ssl.SSLContext | None] | None = None
        self.on_disconnect: list[Callable[[Exception | None], None]] = []
        self.on_reconnect: list[Callable[[], None]] = []
        self._closing = False

    # -- lifecycle -------------------------------------------------------------------

    async def __aenter__(self) -> Client:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        self._closing = True
        self.transport.close()
        await self.transport.wait_closed()

    def _transport_closed(self, exc: Exception | None) -> None:
        if not self._closing:
            for callback in self.on_disconnect:
                callback(exc)

    async def reconnect(self) -> None:
        """Open a new connection to the same server and resume the session by
        token.  Raises Unauthorized if the session was revoked meanwhile."""
        if self.address is None:
            raise ConnectionClosed("no address to reconnect to")
        host, port, context = self.address
        self.transport.close()
        self.transport = await open_transport(host, port, ssl_context=context, on_close=self._transport_closed)
        if self.token is not None:
            await self.login_with_token(self.token)
        for callback in self.on_reconnect:
            callback()

    # -- the session object --------------------------------------------------------

    def sessia(self) -> dict[str, Any]:
        """The ``sessia`` object for a request made with the current session."""
        if self.token is None:
            raise NotLoggedIn("register or log in first")
        return {
            "tocken": self.token,
            "device": {"deviceid": self.device.deviceid},
            "client": self.client.as_dict(),
        }

    def _login_sessia(self) -> dict[str, Any]:
        return {"device": self.device.full(), "client": self.client.as_dict()}

    # -- raw access ------------------------------------------------------------------

    async def call(self, name: str, body: dict[str, Any] | None = None, *, codec: Codec | None = None) -> dict[str, Any]:
        """Send any request; return the answer (``Status`` included) without raising
        for non-200 codes.  Transport failures still raise ``ClientError``s."""
        body = dict(body or {})
        if self.token is not None and not any(k.lower() == "sessia" for k in body):
            body["sessia"] = self.sessia()
        return await self.transport.request(name, body, codec=codec or self.codec, timeout=self.timeout)

    async def request(self, name: str, body: dict[str, Any], *, needs_session: bool = True) -> dict[str, Any]:
        """Send a request and return the answer; raise the typed error if not 200."""
        if needs_session:
            body = {**body, "sessia": self.sessia()}
        answer = await self.transport.request(name, body, codec=self.codec, timeout=self.timeout)
        status = answer.get("Status") or {}
        code = int(status.get("code", 500))
        if code != 200:
            extra = {k: v for k, v in answer.items() if k != "Status"}
            raise error_for(code, str(status.get("message", "")), **extra)
        return answer

    async def ping(self) -> None:
        await self.transport.ping(self.timeout)

    # -- accounts --------------------------------------------------------------------

    def _logged_in(self, answer: dict[str, Any]) -> LoginResult:
        result = LoginResult(token=str(answer["Tocken"]), user_id=int(answer["Id"]))
        self.token, self.user_id = result.token, result.user_id
        return result

    async def register(self, login: str, email: str, password: str) -> LoginResult:
        """Create an account and open a session on this device."""
        answer = await self.request(
            R.REGISTRATION,
            {
                "login": {"login": login},
                "password": {"password": password},
                "email": {"email": email},
                "sessia": self._login_sessia(),
            },
            needs_session=False,
        )
        return self._logged_in(answer)

    async def login(self, email: str, password: str) -> LoginResult:
        """Log in by email (or login) and password: a new session for this device."""
        answer = await self.request(
            R.AUTH, {"email": email, "password": password, "sessia": self._login_sessia()}, needs_session=False
        )
        return self._logged_in(answer)

    async def login_with_token(self, token: str) -> LoginResult:
        """Resume a session kept from an earlier login on this device.  The
        token is forgotten only when the server refuses it: after a lost
        connection or a 503 (the database restarting) it is kept, so that
        ``reconnect`` can try again."""
        self.token = token
        try:
            answer = await self.request(R.AUTH, {})
        except (ClientError, OSError, Unavailable):
            raise
        except Exception:
            self.token = None
            raise
        return self._logged_in(answer)

    async def logout(self) -> None:
        """Revoke this session on the server (the original's ``disable``)."""
        await self.request(R.DISABLE, {})
        self.token = None
        self.user_id = None

    # -- pushes ----------------------------------------------------------------------

    def events(
        self,
        after: int | None = None,
        *,
        dialogs: dict[str, int] | None = None,
        reconnect: bool = True,
        max_backoff: float = 5.0,
    ) -> EventStream:
        """Live events from ``after`` (the last seq seen; None = from now), with
        automatic reconnect and catch-up.  Iterate with ``async for``: each item
        is an ``Update(seq, event)`` with a typed ``protocol.events`` event.
        ``dialogs`` gives the last pts seen of large dialogs (as kept from
        ``stream.dialog_pts`` by a client that stores its positions), so their
        events are caught up too."""
        stream = EventStream(self, after, reconnect=reconnect, max_backoff=max_backoff)
        stream.dialog_pts.update(dialogs or {})
        return stream

    async def next_push(self) -> Push:
        return await self.transport.pushes.get()


async def connect(
    host: str,
    port: int,
    *,
    device: Device | dict[str, Any],
    client: ClientBuild | dict[str, Any],
    codec: Codec = Codec.MSGPACK,
    timeout: float | None = 30.0,
    tls: bool | ssl.SSLContext = False,
    cafile: str | None = None,
) -> Client:
    """Open a connection.  ``tls=True`` verifies the server certificate against
    the system's CAs, or against ``cafile`` for a self-hosted CA."""
    context: ssl.SSLContext | None = None
    if isinstance(tls, ssl.SSLContext):
        context = tls
    elif tls:
        context = ssl.create_default_context(cafile=cafile)
    transport = await open_transport(host, port, ssl_context=context)
    c = Client(transport, device=Device.coerce(device), client=ClientBuild.coerce(client), codec=codec, timeout=timeout)
    c.address = (host, port, context)
    return c
