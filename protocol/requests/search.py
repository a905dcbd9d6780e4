"""Search: ``everyWhere`` (which of my dialogs contain the text, plus public
dialogs by name) and ``inDialogs`` (which messages of given dialogs contain it)."""

from __future__ import annotations

from dataclasses import dataclass

from ..fields import Fields
from ..status import Unprocessable
from .dialogs import MAX_KEY_LENGTH, Page

EVERYWHERE = "everyWhere"
IN_DIALOGS = "inDialogs"
OPERATIONS = (EVERYWHERE, IN_DIALOGS)
_OPERATIONS_LOWER = {op.lower(): op for op in OPERATIONS}
MIN_QUERY_LENGTH = 2
MAX_QUERY_LENGTH = 256
MAX_DIALOGS_PER_SEARCH = 100


def _text(body: Fields) -> str:
    text = body.str("search", max_len=MAX_QUERY_LENGTH, strip=True)
    if len(text) < MIN_QUERY_LENGTH:
        raise Unprocessable(f"search: at least {MIN_QUERY_LENGTH} characters")
    return text


def like_pattern(text: str) -> str:
    """A ``LIKE`` pattern matching ``text`` anywhere, with the user's ``%``,
    ``_`` and ``\\`` taken literally (backslash is LIKE's default escape)."""
    escaped = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


@dataclass(frozen=True, slots=True)
class SearchEverywhere:
    text: str
    page: Page

    @classmethod
    def parse(cls, body: Fields) -> SearchEverywhere:
        return cls(_text(body), Page.parse(body, take="takedialogs", skip="skipdialogs", with_date=False))


@dataclass(frozen=True, slots=True)
class SearchInDialogs:
    text: str
    dialogs: tuple[str, ...]
    page: Page

    @classmethod
    def parse(cls, body: Fields) -> SearchInDialogs:
        keys = body.str_list("dialogs", max_items=MAX_DIALOGS_PER_SEARCH, max_len=MAX_KEY_LENGTH)
        return cls(_text(body), tuple(dict.fromkeys(keys or ())), Page.parse(body, with_date=False))


def operation(body: Fields) -> str:
    raw = body.str("operation", max_len=32, strip=True)
    found = _OPERATIONS_LOWER.get(raw.lower())
    if found is None:
        raise Unprocessable(f"operation: must be one of {', '.join(OPERATIONS)}")
    return found
