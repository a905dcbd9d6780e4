"""SDK methods for the profiles requests (``Email``, ``GetUser``, ``ChangeUser``)."""

from __future__ import annotations

from typing import Any

from protocol import requests as R
from protocol.answers import UserItem

from .base import ClientBase


class ProfilesAPI(ClientBase):
    """Mixed into ``client_sdk.Client``."""

    async def request_email_code(self, email: str) -> None:
        """Mail a confirmation code to ``email`` (the account's address or a new
        one).  ``TooManyRequests`` carries ``extra["RetryAfter"]`` (seconds) when a
        code was sent too recently; ``Unavailable`` means the mail could not be
        sent and a retry is welcome."""
        await self.request(R.EMAIL, {"email": email})

    async def confirm_email(self, code: str) -> None:
        """Confirm the address the pending code was sent to; it becomes the
        account's email."""
        await self.request(R.EMAIL, {"code": code})

    async def get_user(self, user_id: int) -> UserItem:
        """A user's public profile: ``id``, ``nickname``, ``photo`` (a media key,
        None when none is set); ``note`` is None here."""
        answer = await self.request(R.GET_USER, {"id": user_id})
        return UserItem.from_wire(answer)

    async def find_user(self, login: str) -> UserItem:
        """The user whose login is ``login`` (any letter case); ``NotFound`` if
        there is none.  Lookups spend the account's search budget."""
        answer = await self.request(R.GET_USER, {"login": login})
        return UserItem.from_wire(answer)

    async def change_user(
        self,
        *,
        nickname: str | None = None,
        old_password: str | None = None,
        new_password: str | None = None,
        image_key: str | None = None,
        email: str | None = None,
    ) -> list[str]:
        """Change any of these at once; returns what changed (``Messages``).

        A password change needs both passwords and logs out every other
        session of the account.  A new ``email`` is not set at once: a code is
        mailed to it, and ``confirm_email`` makes it the account's address."""
        body: dict[str, Any] = {}
        for name, value in (
            ("nickname", nickname),
            ("oldPass", old_password),
            ("newPass", new_password),
            ("imagekey", image_key),
            ("email", email),
        ):
            if value is not None:
                body[name] = value
        answer = await self.request(R.CHANGE_USER, body)
        return [str(m) for m in answer.get("Messages", [])]
