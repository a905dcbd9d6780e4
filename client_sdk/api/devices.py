"""SDK methods for device sessions and password reset."""

from __future__ import annotations

from protocol.answers import SessionItem
from protocol.requests.devices import GET_SESSIONS, RESET_PASSWORD, REVOKE_SESSION

from .base import ClientBase


class DevicesAPI(ClientBase):
    """Mixed into ``client_sdk.Client``."""

    async def sessions(self, take: int = 50, skip: int = 0) -> list[SessionItem]:
        """My live sessions (device logins), most recently seen first.
        ``last_seen_at`` is when the session last made a request, as the server
        recorded it (see docs/api/devices.md); ``current`` marks this client's."""
        answer = await self.request(GET_SESSIONS, {"take": take, "skip": skip})
        return [SessionItem.from_wire(item) for item in answer["Sessions"]]

    async def revoke_session(self, session_id: int) -> None:
        """Log out one of my sessions (``NotFound`` if it is not mine or not
        live).  Its open connections are closed at once.  Revoking the current
        session logs this client out, as ``logout`` does."""
        await self.request(REVOKE_SESSION, {"id": session_id})

    async def revoke_other_sessions(self) -> list[int]:
        """Log out every session of mine but this one; returns their ids."""
        answer = await self.request(REVOKE_SESSION, {"all": True})
        return [int(i) for i in answer["Revoked"]]

    async def request_password_reset(self, email: str) -> None:
        """Ask for a reset code to be mailed to ``email``.  The answer is the
        same whether or not the address is an account's confirmed email: no
        error means only that the request was well-formed."""
        await self.request(RESET_PASSWORD, {"email": email, "sessia": self._login_sessia()}, needs_session=False)

    async def reset_password(self, email: str, code: str, new_password: str) -> None:
        """Set a new password with the mailed code.  Every session of the
        account is logged out: log in again with ``login``.  ``Unprocessable``
        for a wrong, expired or used-up code, or an address with no code."""
        await self.request(
            RESET_PASSWORD,
            {"email": email, "code": code, "newPass": new_password, "sessia": self._login_sessia()},
            needs_session=False,
        )
