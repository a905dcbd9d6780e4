"""SDK methods for the profiles requests (``Email``, ``GetUser``, ``ChangeUser``)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from protocol import requests as R


@dataclass(frozen=True, slots=True)
class UserProfile:
    """A user's public profile.  ``photo`` is a media key ("" when none is set)."""

    id: int
    nickname: str
    photo: str


class ProfilesAPI:
    """Mixed into ``client_sdk.Client``; uses its ``request()``."""

    async def request_email_code(self, email: str) -> None:
        """Mail a confirmation code to ``email`` (the account's address or a new
        one).  ``TooManyRequests`` carries ``extra["RetryAfter"]`` (seconds) when a
        code was sent too recently; ``Unavailable`` means the mail could not be
        sent and a retry is welcome."""
        await self.request(R.EMAIL, {"email": email})  # type: ignore[attr-defined]

    async def confirm_email(self, code: str) -> None:
        """Confirm the address the pending code was sent to; it becomes the
        account's email."""
        await self.request(R.EMAIL, {"code": code})  # type: ignore[attr-defined]

    async def get_user(self, user_id: int) -> UserProfile:
        answer = await self.request(R.GET_USER, {"id": user_id})  # type: ignore[attr-defined]
        return UserProfile(id=int(answer["Id"]), nickname=str(answer["Nickname"]), photo=str(answer["Photo"] or ""))

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
        answer = await self.request(R.CHANGE_USER, body)  # type: ignore[attr-defined]
        return [str(m) for m in answer.get("Messages", [])]
