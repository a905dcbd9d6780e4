"""SDK methods for the search requests."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from protocol import requests as R

from .base import ClientBase


@dataclass(frozen=True, slots=True)
class PublicDialog:
    """A public dialog found by name that I am not in (``join`` it to read it)."""

    key: str
    name: str
    photo: str | None


@dataclass(frozen=True, slots=True)
class DialogSearch:
    """``everyWhere``: keys of my dialogs whose name or messages match, most
    recent activity first, and public dialogs whose name matches."""

    dialogs: tuple[str, ...]
    public: tuple[PublicDialog, ...]


@dataclass(frozen=True, slots=True)
class MessageHit:
    """A matching message: its key and its dialog's key."""

    key: str
    dialog: str


class SearchAPI(ClientBase):
    """Mixed into ``client_sdk.Client``."""

    async def search_dialogs(self, text: str, take: int = 50, skip: int = 0) -> DialogSearch:
        answer = await self.request(
            R.SEARCH, {"operation": "everyWhere", "search": text, "takedialogs": take, "skipdialogs": skip}
        )
        return DialogSearch(
            dialogs=tuple(answer["Dialogs"]),
            public=tuple(PublicDialog(d["hash"], d["name"], d["photo"] or None) for d in answer["PublicDialogs"]),
        )

    async def search_messages(
        self, text: str, dialogs: str | Iterable[str], take: int = 50, skip: int = 0
    ) -> list[MessageHit]:
        """Matching messages in ``dialogs`` (one key or several), newest first."""
        keys = [dialogs] if isinstance(dialogs, str) else list(dialogs)
        answer = await self.request(
            R.SEARCH, {"operation": "inDialogs", "dialogs": keys, "search": text, "take": take, "skip": skip}
        )
        return [MessageHit(h["msgKey"], h["pkDialog"]) for h in answer["Hits"]]
