"""SDK methods for the friends requests (``RequestFrBl``)."""

from __future__ import annotations

from typing import Any

from protocol import requests as R
from protocol.answers import UserItem
from protocol.requests import friends as ops

from .base import ClientBase


class FriendsAPI(ClientBase):
    """Mixed into ``client_sdk.Client``.  The lists are ``protocol.answers.UserItem``s:
    ``photo`` a media key (None for none), ``note`` the caller's own private
    note on that user (``""`` for incoming requests and blocks)."""

    async def _friends_op(self, operation: str, user_id: int, note: str | None = None) -> dict[str, Any]:
        body: dict[str, Any] = {"operation": operation, "id": user_id}
        if note is not None:
            body["description"] = note
        return await self.request(R.REQUEST_FR_BL, body)

    async def _friends_list(self, operation: str, take: int, skip: int) -> list[UserItem]:
        answer = await self.request(R.REQUEST_FR_BL, {"operation": operation, "take": take, "skip": skip})
        return [UserItem.from_wire(entry) for entry in answer.get("Users") or []]

    async def send_friend_request(self, user_id: int, note: str = "") -> str:
        """Ask ``user_id`` to be friends, with a private note on them.  Returns
        the new state: "requested", or "friend" if they had already asked you."""
        answer = await self._friends_op(ops.APPEND, user_id, note)
        return str(answer.get("State", ""))

    async def accept_friend(self, user_id: int, note: str | None = None) -> None:
        """Accept the pending request from ``user_id``; ``note`` is your private note on them."""
        await self._friends_op(ops.ACCEPT, user_id, note)

    async def cancel_friend_request(self, user_id: int) -> None:
        """Withdraw your pending request to ``user_id``."""
        await self._friends_op(ops.CANCEL, user_id)

    async def remove_friend(self, user_id: int) -> None:
        """End the friendship with ``user_id`` (for both of you)."""
        await self._friends_op(ops.REMOVE, user_id)

    async def update_friend_note(self, user_id: int, note: str) -> None:
        """Change your private note on a friend or on your pending request to them."""
        await self._friends_op(ops.UPDATE, user_id, note)

    async def friends(self, take: int = 50, skip: int = 0) -> list[UserItem]:
        """Your friends, oldest friendship first."""
        return await self._friends_list(ops.GET_FRIEND, take, skip)

    async def incoming_requests(self, take: int = 50, skip: int = 0) -> list[UserItem]:
        """Users waiting for your answer, oldest request first."""
        return await self._friends_list(ops.GET_INCOMING, take, skip)

    async def outgoing_requests(self, take: int = 50, skip: int = 0) -> list[UserItem]:
        """Users you asked who have not answered, oldest request first."""
        return await self._friends_list(ops.GET_OUTCOMING, take, skip)

    async def block(self, user_id: int) -> None:
        """Block ``user_id``: ends friendship and requests both ways, refuses theirs from now on."""
        await self._friends_op(ops.ADD_BLOCK, user_id)

    async def unblock(self, user_id: int) -> None:
        await self._friends_op(ops.DEL_BLOCK, user_id)

    async def blocked(self, take: int = 50, skip: int = 0) -> list[UserItem]:
        """Users you blocked, oldest block first."""
        return await self._friends_list(ops.LIST_BLOCKS, take, skip)
