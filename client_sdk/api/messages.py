"""SDK methods for the messages requests."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any

from protocol import requests as R
from protocol.answers import MessageItem

from .base import ClientBase, date_arg


class MessagesAPI(ClientBase):
    """Mixed into ``client_sdk.Client``.  Messages come back as
    ``protocol.answers.MessageItem``: ``media`` are media keys in display
    order; a tombstone has ``deleted_at`` set and no content."""

    async def _send(self, operation: str, info: dict[str, Any], **message: Any) -> str:
        answer = await self.request(
            R.SEND_MESSAGE, {"operation": operation, "message": {"infoMessage": info, **message}}
        )
        return str(answer["msgkey"])

    async def send_message(
        self,
        key: str,
        content: str,
        *,
        media: Iterable[str] = (),
        order: Iterable[int] | None = None,
        msgkey: str | None = None,
        important: bool = False,
    ) -> str:
        """Send to dialog ``key``; returns the message key.  Passing your own
        ``msgkey`` makes a retry safe: the same key never makes a second message."""
        info: dict[str, Any] = {"pkDialog": key, "content": content}
        if msgkey is not None:
            info["msgkey"] = msgkey
        if important:
            info["important"] = True
        extra: dict[str, Any] = {}
        media = list(media)
        if media:
            extra["hash"] = media
            extra["order"] = list(order) if order is not None else list(range(1, len(media) + 1))
        return await self._send("add", info, **extra)

    async def forward_message(self, key: str, msgkey: str, *, comment: str = "") -> str:
        """Forward message ``msgkey`` (from any dialog you are in) into dialog
        ``key``; its text (unless ``comment`` replaces it) and media come along."""
        info: dict[str, Any] = {"pkDialog": key, "forwardedKey": msgkey, "content": comment}
        return await self._send("add", info)

    async def mark_read(self, key: str, msgkey: str) -> None:
        """Everything up to ``msgkey`` in dialog ``key`` is read (others are told)."""
        await self.request("MarkRead", {"pkDialog": key, "msgkey": msgkey})

    async def typing(self, key: str) -> None:
        """Tell the connected members of ``key`` that you are typing."""
        await self.request("Typing", {"pkDialog": key})

    async def edit_message(self, key: str, msgkey: str, content: str) -> None:
        await self._send("edit", {"pkDialog": key, "msgkey": msgkey, "content": content})

    async def delete_message(self, key: str, msgkey: str) -> None:
        """Delete for everyone (the author, the owner or an admin)."""
        await self._send("delete", {"pkDialog": key, "msgkey": msgkey})

    async def hide_message(self, key: str, msgkey: str) -> None:
        """Delete for me only (the original's ``deleteOnlyMe``)."""
        await self._send("deleteOnlyMe", {"pkDialog": key, "msgkey": msgkey})

    async def messages(self, key: str, date: str | datetime = "-1", take: int = 50, skip: int = 0) -> list[MessageItem]:
        """``date="-1"``: the newest page, newest first.  A datetime: messages
        created or edited after it, oldest first."""
        answer = await self.request(R.GET_MESSAGES, {"pkDialog": key, "date": date_arg(date), "take": take, "skip": skip})
        return [MessageItem.from_wire(item) for item in answer["Msg"]]

    async def message(self, key: str, msgkey: str) -> MessageItem:
        answer = await self.request(R.GET_MESSAGES, {"pkDialog": key, "msgkey": msgkey})
        return MessageItem.from_wire(answer["Msg"][0])

    async def deleted_messages(
        self, key: str, date: str | datetime = "-1", take: int = 50, skip: int = 0
    ) -> list[MessageItem]:
        """Tombstones of messages deleted for everyone (same paging as ``messages``)."""
        answer = await self.request(
            R.GET_DEL_MESSAGES, {"pkDialog": key, "date": date_arg(date), "take": take, "skip": skip}
        )
        return [MessageItem.from_wire(item) for item in answer["Msg"]]
