"""Dialogs: ``CreateDialog``, ``ChangeDialog``, ``KickUser``, ``GetDialogs``,
``GetUsersDialog`` and the dialog listing of ``GetMedia``.

Also the pieces every listing of the messaging area shares: the one date
format of the API, the ``date`` selector ("-1" = newest, a timestamp = since
then) and ``take``/``skip`` paging.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from ..fields import Fields
from ..status import BadRequest, Unprocessable

#: ``take`` is capped so that one request never pulls an unbounded page.
MAX_TAKE = 100
DEFAULT_TAKE = 50
#: ``skip`` above this is absurd for a page offset (and would overflow the database's integer).
MAX_SKIP = 2_000_000_000
MAX_NAME_LENGTH = 128
MAX_KEY_LENGTH = 128
MAX_MEMBERS_PER_REQUEST = 500


# -- dates ------------------------------------------------------------------------------


#: Dates already written as text (see ``format_date``), at most ``_DATES_KEPT``.
_date_texts: dict[datetime, str] = {}
_DATES_KEPT = 20_000


def format_date(value: datetime | None) -> str:
    """The API's one date format: ISO 8601 in UTC with microseconds and ``Z``,
    e.g. ``2024-05-14T20:30:03.081234Z``; ``""`` for a date that is not set
    (as the original answers ``updateAt: ""``).  Microseconds make a date read
    from an answer an exact "since" point for the next catch-up request.

    The texts of recent dates are kept: a message's date is written every
    time a page shows it, and the newest pages are read far more often than
    messages are sent.  Formatting an aware datetime costs about a
    microsecond (its offset is looked up each time); a lookup, a twentieth of
    that.  The memo is emptied when full, which bounds it at about 5 MiB."""
    if value is None:
        return ""
    text = _date_texts.get(value)
    if text is None:
        utc = value if value.tzinfo is UTC else value.astimezone(UTC)
        text = utc.isoformat(timespec="microseconds")[:-6] + "Z"
        if len(_date_texts) >= _DATES_KEPT:
            _date_texts.clear()
        _date_texts[value] = text
    return text


#: The dates a request may name, in UTC: the calendar Python and the database
#: share.  A date with an offset that puts it outside (``0001-01-01T00:00:00+05:00``
#: is the year 0 in UTC) is refused here, not overflowed deeper down.
MIN_DATE = datetime.min.replace(tzinfo=UTC)
MAX_DATE = datetime.max.replace(tzinfo=UTC)
DATE_RANGE = f"{format_date(MIN_DATE)} to {format_date(MAX_DATE)}"


def parse_date(text: str, field: str) -> datetime:
    """An ISO 8601 timestamp, in UTC; without an offset it is UTC already.
    The original's ``2023-05-14 20:30:03.08`` style is accepted too.  A date
    whose offset takes it outside ``MIN_DATE``..``MAX_DATE`` is 422."""
    try:
        value = datetime.fromisoformat(text.strip())
    except ValueError:
        raise BadRequest(f"{field}: not a date: use \"-1\" or an ISO 8601 timestamp such as 2024-05-14T20:30:03Z") from None
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    try:
        return value.astimezone(UTC)
    except OverflowError:
        raise Unprocessable(f"{field}: must be from {DATE_RANGE} (in UTC)") from None


@dataclass(frozen=True, slots=True)
class Page:
    """``date``/``take``/``skip`` of a listing.  ``since`` None means the newest
    page ("-1"); a datetime means "what changed after it" (catch-up)."""

    since: datetime | None
    take: int
    skip: int

    @classmethod
    def parse(cls, body: Fields, *, take: str = "take", skip: str = "skip", with_date: bool = True) -> Page:
        since = None
        if with_date:
            raw = body.raw("date")
            if raw is not None and raw != "" and str(raw).strip() != "-1":
                since = parse_date(body.str("date", max_len=64), "date")
        return cls(
            since=since,
            take=body.int(take, required=False, default=DEFAULT_TAKE, minimum=1, maximum=MAX_TAKE),
            skip=body.int(skip, required=False, default=0, minimum=0, maximum=MAX_SKIP),
        )


def dialog_key(body: Fields, name: str = "pkDialog") -> str:
    """A dialog key: an opaque string.  A key that names no dialog of the
    caller is answered 404 later, whatever its shape."""
    return body.str(name, min_len=1, max_len=MAX_KEY_LENGTH, strip=True)


def _name(body: Fields) -> str | None:
    name = body.str("name", required=False, max_len=MAX_NAME_LENGTH, strip=True)
    return name if name else None


def _user_ids(body: Fields, name: str) -> tuple[int, ...]:
    ids = body.int_list(name, required=False, max_items=MAX_MEMBERS_PER_REQUEST) or []
    return tuple(dict.fromkeys(ids))  # de-duplicated, order kept


# -- requests ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CreateDialog:
    """``dialog.name``, ``dialog.private`` (default true), ``dialog.idUsers``, ``dialog.photo``."""

    name: str
    private: bool
    members: tuple[int, ...]
    photo: str | None

    @classmethod
    def parse(cls, body: Fields) -> CreateDialog:
        dialog = body.map("dialog")
        return cls(
            name=_name(dialog) or "",
            private=dialog.bool("private", required=False, default=True),
            members=_user_ids(dialog, "idUsers"),
            photo=dialog.str("photo", required=False, max_len=MAX_KEY_LENGTH, strip=True) or None,
        )


@dataclass(frozen=True, slots=True)
class ChangeDialog:
    """``dialog.pkDialog`` plus any of ``name``, ``private``, ``photo``,
    ``IdUsers`` (members to add) and ``admins`` (members to make admins; owner only)."""

    key: str
    name: str | None
    private: bool | None
    photo: str | None
    add_members: tuple[int, ...]
    admins: tuple[int, ...]

    @classmethod
    def parse(cls, body: Fields) -> ChangeDialog:
        dialog = body.map("dialog")
        change = cls(
            key=dialog_key(dialog),
            name=_name(dialog),
            private=dialog.bool("private", required=False),
            photo=dialog.str("photo", required=False, max_len=MAX_KEY_LENGTH, strip=True) or None,
            add_members=_user_ids(dialog, "IdUsers"),
            admins=_user_ids(dialog, "admins"),
        )
        if change.is_empty():
            raise BadRequest("dialog: nothing to change: fill name, private, photo, IdUsers or admins")
        return change

    def is_empty(self) -> bool:
        return (
            self.name is None
            and self.private is None
            and self.photo is None
            and not self.add_members
            and not self.admins
        )

    def only_adds(self, user_id: int) -> bool:
        """The whole request is "add me": how a non-member joins a public dialog."""
        return (
            self.name is None
            and self.private is None
            and self.photo is None
            and not self.admins
            and self.add_members == (user_id,)
        )


@dataclass(frozen=True, slots=True)
class KickUser:
    """``PkDialog`` and ``user``; kicking oneself is leaving."""

    key: str
    user_id: int

    @classmethod
    def parse(cls, body: Fields) -> KickUser:
        return cls(key=dialog_key(body), user_id=body.int("user", minimum=1))


@dataclass(frozen=True, slots=True)
class GetDialogs:
    page: Page

    @classmethod
    def parse(cls, body: Fields) -> GetDialogs:
        return cls(page=Page.parse(body))


@dataclass(frozen=True, slots=True)
class GetUsersDialog:
    key: str

    @classmethod
    def parse(cls, body: Fields) -> GetUsersDialog:
        return cls(key=dialog_key(body))


@dataclass(frozen=True, slots=True)
class DialogMedia:
    """``GetMedia`` with ``PkDialog``: the dialog's media, newest message first."""

    key: str
    page: Page

    @classmethod
    def parse(cls, body: Fields) -> DialogMedia:
        return cls(key=dialog_key(body), page=Page.parse(body, with_date=False))
