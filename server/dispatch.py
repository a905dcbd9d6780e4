"""Request dispatch: the session check, and the one place that turns any
outcome of a handler (server/routes.py) into an answer.

A handler raises a ``SessiaError`` for every refusal, or lets a storage
exception (storage/errors.py) through, answered as ``status_for`` says
(server/storage_errors.py); anything else it raises is a bug, logged with its
traceback here and answered as a bare 500.
"""

from __future__ import annotations

import logging
from time import perf_counter
from typing import TYPE_CHECKING, Any

from protocol.codecs import decode_body
from protocol.fields import Fields
from protocol.frames import Frame, PreparedResponse, encode_response
from protocol.status import BadRequest, InternalError, SessiaError
from storage.errors import StorageError

from . import handlers  # noqa: F401  (importing it registers every route)
from .metrics import RequestStats
from .routes import ROUTES, Call
from .storage_errors import status_for

if TYPE_CHECKING:
    from .app import App
    from .connection import Connection

log = logging.getLogger("sessia.dispatch")

class Dispatcher:
    def __init__(self, app: App) -> None:
        self.app = app
        self.routes = ROUTES
        self.stats = RequestStats(ROUTES)

    async def answer(self, body: dict[str, Any], frame: Frame, conn: Connection) -> dict[str, Any] | PreparedResponse:
        route = self.routes.get(frame.name)
        if route is None:
            raise BadRequest(f"unknown request {frame.name!r}")
        fields = Fields(body)
        session = sessia = None
        if route.session:
            session, sessia = await self.app.sessions.authenticate(fields)
            conn.session_ids[session.id] = session.user_id
        return await route.handler(Call(self.app, frame.name, fields, session, sessia, conn, frame.codec))

    async def dispatch(self, frame: Frame, conn: Connection) -> bytes | bytearray:
        """Run one request and return the encoded response frame (a handler
        may have built it already: ``PreparedResponse``)."""
        started = perf_counter()
        code = 200
        try:
            body = decode_body(frame.codec, frame.body)
            result = await self.answer(body, frame, conn)
        except SessiaError as exc:
            code = exc.code
            result = exc.to_body()
        except StorageError as exc:
            refusal = status_for(exc)
            code = refusal.code
            result = refusal.to_body()
        except Exception:
            log.exception("unhandled error in %s", frame.name)
            code = 500
            result = InternalError("internal error").to_body()
        data: bytes | bytearray
        if isinstance(result, PreparedResponse):
            data = result.finish(frame.request_id)
        else:
            try:
                data = encode_response(frame.request_id, result, frame.codec)
            except (TypeError, ValueError, OverflowError):
                log.exception("cannot encode the answer to %s", frame.name)
                code = 500
                data = encode_response(frame.request_id, InternalError("internal error").to_body(), frame.codec)
        self.stats.record(frame.name, code, perf_counter() - started)
        return data
