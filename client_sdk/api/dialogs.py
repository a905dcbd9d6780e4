"""SDK methods for the dialogs requests."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from protocol import requests as R


def parse_date(text: str | None) -> datetime | None:
    """A date of an answer (ISO 8601, UTC); ``""`` means not set."""
    return datetime.fromisoformat(text) if text else None


def date_arg(date: str | datetime) -> str:
    """``"-1"`` (the newest page) or a datetime for "since then"."""
    if isinstance(date, datetime):
        return date.isoformat()
    return date


@dataclass(frozen=True, slots=True)
class DialogInfo:
    """One of my dialogs, as ``GetDialogs`` lists it."""

    key: str
    name: str
    photo: str | None
    private: bool
    role: str
    created_at: datetime | None
    last_message_at: datetime | None
    unread: int = 0

    @classmethod
    def from_answer(cls, item: dict[str, Any]) -> DialogInfo:
        return cls(
            key=item["hash"],
            name=item["name"],
            photo=item.get("photo") or None,
            private=bool(item.get("private")),
            role=item.get("role", ""),
            created_at=parse_date(item.get("date")),
            last_message_at=parse_date(item.get("lastMessageAt")),
            unread=int(item.get("unread") or 0),
        )


@dataclass(frozen=True, slots=True)
class DialogMembers:
    """``GetUsersDialog``: member ids in joining order, the owner and the admins."""

    users: tuple[int, ...]
    owner: int | None
    admins: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class DialogMediaItem:
    """One file of a dialog's media listing (metadata; bytes via ``get_media``)."""

    key: str
    extension: str
    size: int
    message_key: str
    date: datetime | None


class DialogsAPI:
    """Mixed into ``client_sdk.Client``; uses its ``request()``."""

    if TYPE_CHECKING:
        user_id: int | None

        async def request(self, name: str, body: dict[str, Any], *, needs_session: bool = True) -> dict[str, Any]: ...

    async def create_dialog(
        self, name: str, *, private: bool = True, members: Iterable[int] = (), photo: str | None = None
    ) -> str:
        """Start a dialog with ``members`` (user ids) and me as its owner; returns its key."""
        dialog: dict[str, Any] = {"name": name, "private": private, "idUsers": list(members)}
        if photo is not None:
            dialog["photo"] = photo
        answer = await self.request(R.CREATE_DIALOG, {"dialog": dialog})
        return answer["hash"]

    async def change_dialog(
        self,
        key: str,
        *,
        name: str | None = None,
        private: bool | None = None,
        photo: str | None = None,
        add_members: Iterable[int] = (),
        admins: Iterable[int] = (),
    ) -> None:
        """Rename, change privacy or photo, add members, appoint admins (owner only)."""
        dialog: dict[str, Any] = {"pkDialog": key}
        if name is not None:
            dialog["name"] = name
        if private is not None:
            dialog["private"] = private
        if photo is not None:
            dialog["photo"] = photo
        if add_members:
            dialog["IdUsers"] = list(add_members)
        if admins:
            dialog["admins"] = list(admins)
        await self.request(R.CHANGE_DIALOG, {"dialog": dialog})

    async def join(self, key: str) -> None:
        """Join a public dialog (found with ``search_dialogs``)."""
        await self.request(R.CHANGE_DIALOG, {"dialog": {"pkDialog": key, "IdUsers": [self.user_id]}})

    async def kick(self, key: str, user_id: int) -> None:
        """Remove a member (owner or admin)."""
        await self.request(R.KICK_USER, {"PkDialog": key, "user": user_id})

    async def leave(self, key: str) -> None:
        await self.kick(key, self.user_id)  # type: ignore[arg-type]

    async def dialogs(self, date: str | datetime = "-1", take: int = 50, skip: int = 0) -> list[DialogInfo]:
        """My dialogs, most recent activity first; ``date`` a datetime: only
        those with anything new since then."""
        answer = await self.request(R.GET_DIALOGS, {"date": date_arg(date), "take": take, "skip": skip})
        return [DialogInfo.from_answer(item) for item in answer["Dialogs"]]

    async def dialog_members(self, key: str) -> list[int]:
        return list((await self.dialog_roles(key)).users)

    async def dialog_roles(self, key: str) -> DialogMembers:
        answer = await self.request(R.GET_USERS_DIALOG, {"pkDialog": key})
        return DialogMembers(
            users=tuple(answer["UsersId"]), owner=answer.get("Owner"), admins=tuple(answer.get("Admins") or ())
        )

    async def dialog_media(self, key: str, take: int = 50, skip: int = 0) -> list[DialogMediaItem]:
        """The dialog's media, newest message first."""
        answer = await self.request(R.GET_MEDIA, {"PkDialog": key, "take": take, "skip": skip})
        return [
            DialogMediaItem(
                key=item["hash"],
                extension=item["extension"],
                size=item["size"],
                message_key=item["msgKey"],
                date=parse_date(item["date"]),
            )
            for item in answer["Media"]
        ]
