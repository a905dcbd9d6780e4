"""SDK methods for the dialogs requests."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from protocol import requests as R
from protocol.answers import DialogItem, MediaItem

from .base import ClientBase, date_arg


@dataclass(frozen=True, slots=True)
class DialogMembers:
    """``GetUsersDialog``: member ids in joining order, the owner and the admins."""

    users: tuple[int, ...]
    owner: int | None
    admins: tuple[int, ...]


class DialogsAPI(ClientBase):
    """Mixed into ``client_sdk.Client``."""

    async def create_dialog(
        self, name: str, *, private: bool = True, members: Iterable[int] = (), photo: str | None = None
    ) -> str:
        """Start a dialog with ``members`` (user ids) and me as its owner; returns its key."""
        dialog: dict[str, Any] = {"name": name, "private": private, "idUsers": list(members)}
        if photo is not None:
            dialog["photo"] = photo
        answer = await self.request(R.CREATE_DIALOG, {"dialog": dialog})
        return str(answer["hash"])

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
        await self.request(R.CHANGE_DIALOG, {"dialog": {"pkDialog": key, "IdUsers": [self._me()]}})

    async def kick(self, key: str, user_id: int) -> None:
        """Remove a member (owner or admin)."""
        await self.request(R.KICK_USER, {"PkDialog": key, "user": user_id})

    async def leave(self, key: str) -> None:
        await self.kick(key, self._me())

    async def dialogs(self, date: str | datetime = "-1", take: int = 50, skip: int = 0) -> list[DialogItem]:
        """My dialogs, most recent activity first; ``date`` a datetime: only
        those with anything new since then."""
        answer = await self.request(R.GET_DIALOGS, {"date": date_arg(date), "take": take, "skip": skip})
        return [DialogItem.from_wire(item) for item in answer["Dialogs"]]

    async def dialog_members(self, key: str) -> list[int]:
        return list((await self.dialog_roles(key)).users)

    async def dialog_roles(self, key: str) -> DialogMembers:
        answer = await self.request(R.GET_USERS_DIALOG, {"pkDialog": key})
        return DialogMembers(
            users=tuple(answer["UsersId"]), owner=answer.get("Owner"), admins=tuple(answer.get("Admins") or ())
        )

    async def dialog_media(self, key: str, take: int = 50, skip: int = 0) -> list[MediaItem]:
        """The dialog's media, newest message first (metadata; the bytes via ``get_media``)."""
        answer = await self.request(R.GET_MEDIA, {"PkDialog": key, "take": take, "skip": skip})
        return [MediaItem.from_wire(item) for item in answer["Media"]]
