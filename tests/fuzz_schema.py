"""What the fuzzer knows of each request: the fields it reads, the kind of
each field, and the statuses its documentation lists.

Bodies are built from this schema rather than at random, so that most of a
body is well-formed and the hostile value in it gets past the parser into
the handler and the SQL behind it.  Each kind has its boundary values (dates
at the ends of the calendar with offsets, integers at 2^31, 2^63 and 2^64,
empty, blank and non-BMP strings, lists over their limits) beside values of
the wrong type.  Valid values come from a ``Plausible`` set of real keys and
ids made on the server under test.

``DOCUMENTED`` is the honest list of statuses each request may answer
(docs/api/*.md, docs/protocol.md, docs/security.md): a status outside it is a
finding, as much as a 500 is.
"""

from __future__ import annotations

import string
from collections import Counter
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

from hypothesis import strategies as st

from protocol.requests import friends, media, messages, search

#: Leave the field out of the body.
ABSENT = object()
#: Answers seen, by status: the run's summary reports the count (tests/conftest.py).
TALLY: Counter[int] = Counter()

# -- statuses --------------------------------------------------------------------------------

#: Any request: a malformed body or field (400), a value out of range (422).
_ANY = frozenset({200, 400, 422})
#: Every request that needs a session may also answer 401 (docs/protocol.md).
_SESSION = _ANY | {401}

DOCUMENTED: dict[str, frozenset[int]] = {
    "Registration": _SESSION | {409, 429},
    "Auth": _SESSION | {429},
    "disable": _SESSION,
    "Email": _SESSION | {404, 409, 410, 429},
    "Media": _SESSION | {413, 429},
    "GetMedia": _SESSION | {404, 413, 416},
    "UploadStart": _SESSION | {409, 413, 429},
    "UploadPart": _SESSION | {404, 409, 413, 429},
    "UploadStatus": _SESSION | {404},
    "UploadFinish": _SESSION | {404, 409},
    "ChangeUser": _SESSION | {403, 404, 409, 429},
    "GetUser": _SESSION | {404},
    "RequestFrBl": _SESSION | {403, 404, 409},
    "CreateDialog": _SESSION | {403, 404},
    "ChangeDialog": _SESSION | {403, 404},
    "KickUser": _SESSION | {403, 404},
    "GetDialogs": _SESSION,
    "GetUsersDialog": _SESSION | {404},
    "SendMessage": _SESSION | {403, 404, 409, 410, 429},
    "GetMessages": _SESSION | {404},
    "GetDelMessages": _SESSION | {404},
    "Search": _SESSION | {404, 429},
    "Subscribe": _SESSION | {410},
    "Unsubscribe": _SESSION,
    "GetEvents": _SESSION | {410},
    "GetDialogEvents": _SESSION | {404},
    "MarkRead": _SESSION | {404, 429},
    "Typing": _SESSION | {404, 429},
    "GetSessions": _SESSION,
    "RevokeSession": _SESSION | {404},
    "ResetPassword": _SESSION | {429, 503},
}

# -- the schema ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Enum:
    """A field with a few valid spellings (an ``operation``)."""

    choices: tuple[str, ...]


Kind = str | Enum

_DEVICE: dict[str, Kind] = {
    "sessia.device.deviceid": "text", "sessia.device.os": "text", "sessia.device.mac": "text",
    "sessia.device.hostname": "text", "sessia.client.version": "int",
}
_PAGE: dict[str, Kind] = {"take": "int", "skip": "int"}
_DATED_PAGE: dict[str, Kind] = {"date": "date", **_PAGE}

#: The fields each request reads (dotted paths) and their kinds, from docs/api/*.md.
SCHEMA: dict[str, dict[str, Kind]] = {
    "Registration": {"login.login": "login", "password.password": "password", "email.email": "email", **_DEVICE},
    "Auth": {"email": "email", "password": "secret", **_DEVICE},
    "disable": {},
    "Email": {"email": "email", "code": "code"},
    "Media": {"extension": "extension", "bytes": "bytes"},
    "GetMedia": {"hash": "media", "thumb": Enum(tuple(media.THUMB_SIZES)), "PkDialog": "dialog", "offset": "int", "limit": "int", **_PAGE},
    "UploadStart": {"size": "int", "extension": "extension", "sha256": "text"},
    "UploadPart": {"upload": "text", "part": "int", "bytes": "bytes"},
    "UploadStatus": {"upload": "text"},
    "UploadFinish": {"upload": "text"},
    "ChangeUser": {"nickname": "text", "oldPass": "password", "newPass": "password", "imagekey": "media",
                   "email": "email"},
    "GetUser": {"id": "user"},
    "RequestFrBl": {"operation": Enum(friends.OPERATIONS), "id": "user", "description": "text", **_PAGE},
    "CreateDialog": {"dialog.name": "text", "dialog.private": "bool", "dialog.idUsers": "users",
                     "dialog.photo": "media"},
    "ChangeDialog": {"dialog.pkDialog": "dialog", "dialog.name": "text", "dialog.private": "bool",
                     "dialog.photo": "media", "dialog.IdUsers": "users", "dialog.admins": "users"},
    "KickUser": {"PkDialog": "dialog", "user": "user"},
    "GetDialogs": _DATED_PAGE,
    "GetUsersDialog": {"pkDialog": "dialog"},
    "SendMessage": {"operation": Enum(messages.OPERATIONS), "message.infoMessage.msgkey": "msgkey",
                    "message.infoMessage.content": "text", "message.infoMessage.pkDialog": "dialog",
                    "message.infoMessage.forwardedKey": "msgkey", "message.infoMessage.important": "bool",
                    "message.hash": "medias", "message.order": "ints"},
    "GetMessages": {"pkDialog": "dialog", "msgkey": "msgkey", **_DATED_PAGE},
    "GetDelMessages": {"pkDialog": "dialog", **_DATED_PAGE},
    "Search": {"operation": Enum(search.OPERATIONS), "search": "text", "takedialogs": "int", "skipdialogs": "int",
               "dialogs": "dialogs", **_PAGE},
    "Subscribe": {"after": "int"},
    "Unsubscribe": {},
    "GetEvents": {"after": "int", "take": "int"},
    "GetDialogEvents": {"pkDialog": "dialog", "after": "int", "take": "int"},
    "MarkRead": {"pkDialog": "dialog", "msgkey": "msgkey"},
    "Typing": {"pkDialog": "dialog"},
    "GetSessions": _PAGE,
    "RevokeSession": {"id": "int", "all": "bool"},
    "ResetPassword": {"email": "email", "code": "code", "newPass": "password", **_DEVICE},
}

#: Requests without a session: their ``sessia`` carries the device in full.
LOGIN_REQUESTS = ("Registration", "Auth", "ResetPassword")


@dataclass(frozen=True, slots=True)
class Plausible:
    """Real values on the server under test, by kind: what gets a body past
    "not found" into the code that acts."""

    users: tuple[int, ...]
    dialogs: tuple[str, ...]
    msgkeys: tuple[str, ...]
    media: tuple[str, ...]
    emails: tuple[str, ...]
    #: The real password: only ``Auth`` reads it (a ``ChangeUser`` that changed
    #: it would lock the fuzzer out).
    passwords: tuple[str, ...]


# -- any value, of any type -------------------------------------------------------------------

# Any code point, lone surrogates included (they cannot be UTF-8: the codecs must refuse them).
any_text = st.text(st.characters(min_codepoint=0, max_codepoint=0x10FFFF, exclude_categories=()), max_size=40)
scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**64 - 1)
    | st.floats(allow_nan=True, allow_infinity=True)
    | any_text
    | st.binary(max_size=40)
    | st.sampled_from(["\x00", "a\x00b", "\ud800", "\udfff\ud800", "\u202e", "\ufeff", "' OR 1=1 --", "%s%n",
                       "9" * 40, "-0", " 5 ", "1e3", "NaN"])
)
values = st.recursive(
    scalars,
    lambda children: st.lists(children, max_size=6) | st.dictionaries(any_text, children, max_size=6),
    max_leaves=25,
)

# -- boundary values by kind ------------------------------------------------------------------

BOUNDARY_INTS: tuple[int, ...] = (
    0, -1, 1, 2, 99, 100, 101, 1000, 1001, 2**31 - 1, 2**31, -(2**31) - 1, 2**32, 2_000_000_000, 2_000_000_001,
    2**53 + 1, 2**63 - 1, 2**63, -(2**63), -(2**63) - 1, 2**64 - 1, 2**64, 10**30, -(10**30),
)
ints = st.one_of(
    st.sampled_from(BOUNDARY_INTS),
    st.integers(min_value=-(2**65), max_value=2**65),
    st.sampled_from(BOUNDARY_INTS).map(str),
    st.sampled_from(BOUNDARY_INTS).map(lambda i: f" {i} "),
    st.sampled_from(BOUNDARY_INTS).map(float),
    st.sampled_from(["", " ", "-", "+5", "5.0", "0x10", "1_000", "١٢", "²", "-0", "00000000000000000000001",
                     float("nan"), float("inf"), -float("inf"), 0.5, True, False]),
)

_EDGE_DATES = (
    "0001-01-01", "0001-01-01T00:00:00", "0001-01-01T00:00:00Z", "0001-01-01T00:00:00+00:00",
    "0001-01-01T00:00:00+05:00", "0001-01-01T00:00:00-05:00", "0001-01-01T04:59:59+05:00",
    "0001-01-01 00:00:00.000001+23:59", "9999-12-31", "9999-12-31T23:59:59.999999Z",
    "9999-12-31T23:59:59.999999", "9999-12-31T23:59:59-05:00", "9999-12-31T19:00:00-05:00",
    "9999-12-31T23:59:59+14:00", "9999-12-31 23:59:59.999999-23:59", "0000-12-31T00:00:00Z",
    "10000-01-01T00:00:00Z", "2016-12-31T23:59:60Z", "1998-12-31T23:59:60.5Z", "2024-02-30T00:00:00Z",
    "2023-02-29", "2024-13-01", "2024-00-10", "2024-05-14T24:00:00Z", "2024-05-14T20:30:03+24:00",
    "2024-05-14T20:30:03+05:30:15.123456", "2024-05-14T20:30:03.1234567Z", "2024-W20-1", "2024-135",
    "-1", -1, "-1.0", " -1 ", "-2", "1e9", 1715718603, 1715718603.5, "", " ", "now", "Z", "T", "2024",
    "2024-05-14T20:30:03ZZ", "2024-05-14T20:30:03\x00Z", "２０２４-05-14",
)


def _offset(minutes: int) -> str:
    sign = "-" if minutes < 0 else "+"
    return f"{sign}{abs(minutes) // 60:02d}:{abs(minutes) % 60:02d}"


@st.composite
def _assembled_dates(draw: st.DrawFn) -> str:
    """A date written field by field, each field near or past its range."""
    year = draw(st.sampled_from([1, 2, 1970, 2000, 2024, 9998, 9999]) | st.integers(0, 10_000))
    month = draw(st.integers(0, 13))
    day = draw(st.integers(0, 32))
    hour, minute, second = draw(st.integers(0, 25)), draw(st.integers(0, 61)), draw(st.integers(0, 61))
    fraction = draw(st.sampled_from(["", ".0", ".5", ".999999", ".9999999", ".000001"]))
    sep = draw(st.sampled_from(["T", " ", "t"]))
    offset = draw(st.sampled_from(["", "Z", "z", "+00:00", "-00:00", "+0530", "+05", "+24:00", "-24:00"])
                  | st.integers(-(24 * 60) + 1, 24 * 60 - 1).map(_offset))
    return f"{year:04d}-{month:02d}-{day:02d}{sep}{hour:02d}:{minute:02d}:{second:02d}{fraction}{offset}"


_OFFSETS = (1, 60, 3600, 5 * 3600, 5 * 3600 + 30 * 60, 14 * 3600, 24 * 3600 - 60, 24 * 3600 - 1)
_zones = (st.sampled_from([*_OFFSETS, *(-o for o in _OFFSETS)]) | st.integers(-(24 * 3600) + 1, 24 * 3600 - 1)).map(
    lambda s: timezone(timedelta(seconds=s)))


@st.composite
def _near_the_ends(draw: st.DrawFn) -> str:
    """A local time within a day of the calendar's first or last instant,
    with an offset: about half of them are past the end in UTC."""
    shift = draw(st.sampled_from([timedelta(0), timedelta(microseconds=1), timedelta(hours=4, minutes=59)])
                 | st.timedeltas(min_value=timedelta(0), max_value=timedelta(days=1)))
    local = datetime.min + shift if draw(st.booleans()) else datetime.max - shift
    return local.replace(tzinfo=draw(_zones)).isoformat(sep=draw(st.sampled_from("T ")))


dates = st.one_of(
    st.sampled_from(_EDGE_DATES),
    _assembled_dates(),
    _near_the_ends(),
    # Real datetimes anywhere in the calendar, with any offset.
    st.datetimes(min_value=datetime.min, max_value=datetime.max, timezones=_zones).map(lambda d: d.isoformat()),
)

_LENGTHS = (7, 8, 63, 64, 65, 127, 128, 129, 255, 256, 257, 500, 501, 4096, 4097, 10_000)
texts = st.one_of(
    st.sampled_from(["", " ", "   ", "\t\n", "\u00a0", "\u200b", "\u3000", "a", "ab", "é", "😀", "a\u0301",
                     "\u202eevil", "\ufeff", "ǅ", "ﬃ", "İ", "\x00", "a\x00", "\ud800", "\x7f", "\x1b[31m"]),
    any_text,
    st.tuples(st.sampled_from(["x", "é", "😀", " ", "%", "_", "\\"]), st.sampled_from(_LENGTHS)).map(
        lambda t: t[0] * t[1]),
)
bools = st.sampled_from([True, False, "true", "FALSE", " true ", "1", "0", 1, 0, 2, -1, "yes", "", " ", 1.0, 0.5,
                         "null", [], {}])
codes = st.sampled_from(["123456", "000000", " 123456 ", "12345", "1234567", "abcdef", "１２３４５６", 123456, 12345,
                         0, -1, 999999, 10**6, 2**64, "", " ", "\x00\x00\x00\x00\x00\x00"])
emails = st.one_of(
    st.sampled_from(["", " ", "a@b", "@", "a@b.c", "x@example.org", " x@example.org ", "X@EXAMPLE.ORG",
                     "é@example.org", "x@ex ample.org", "x\x00@example.org", "x@example.org\n",
                     "a" * 65 + "@example.org", "a@" + "b" * 250 + ".org", "a" * 64 + "@" + "b" * 300 + ".org"]),
    st.from_regex(r"[a-z0-9.+]{1,20}@[a-z]{1,10}\.(org|com)", fullmatch=True),
)
passwords = st.sampled_from(["", " ", "       ", "1234567", "12345678", "        ", "p" * 256, "p" * 257,
                             "пароль-пароль", "😀" * 8, "\x00" * 8, "\ud800" * 8])
logins = st.one_of(
    st.sampled_from(["", "ab", "abc", "a" * 32, "a" * 33, "a b", "a/b", "é" * 5, "..", "-" * 3, "admin"]),
    st.from_regex(r"[A-Za-z0-9_.-]{3,32}", fullmatch=True),
)
extensions = st.sampled_from(["png", "PNG", "txt", "Txt", "jpg", "exe", "", " ", ".png", "../x", "png/../../a",
                              "tar.gz", "p" * 11, "p" * 33, "ｐｎｇ", "png\x00", 5])
blobs = st.sampled_from([b"", b"x", b"\x89PNG\r\n\x1a\n" + b"\x00" * 16, b"GIF89a", b"RIFF\x00\x00\x00\x00WEBP",
                         "", " ", "eA==", "iVBORw0KGgoAAAAA", "====", "not base64!", "eA", "\x00", b"\x00" * 70_000])
_KEY_SHAPES = st.one_of(
    st.sampled_from(["", " ", "   ", "-1", "0", "%", "_", "' OR '1'='1", "\x00", "a\x00b", "../", "\ud800"]),
    st.tuples(st.sampled_from(string.ascii_letters + string.digits + "_-é "), st.sampled_from(_LENGTHS)).map(
        lambda t: t[0] * t[1]),
    st.from_regex(r"[0-9a-f]{32}", fullmatch=True),
)


def _list_of(items: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """Lists around their limits (32 media, 100 dialogs, 500 members), a
    single value where a list is meant, and long lists of one repeated item."""
    return st.one_of(
        st.lists(items, max_size=5),
        items,
        st.tuples(items, st.sampled_from([31, 32, 33, 100, 101, 500, 501, 5_000])).map(lambda t: [t[0]] * t[1]),
    )


def _key(real: tuple[Any, ...], shapes: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """A real key (also with blanks around it or in another case) or a hostile shape."""
    if not real:
        return shapes
    one = st.sampled_from(real)
    return st.one_of(one, one, one.map(lambda k: f" {k} "), one.map(lambda k: str(k).upper()), shapes)


def valid_value(kind: Kind, known: Plausible) -> st.SearchStrategy[Any]:
    """A value of the right type, often one the server holds."""
    if isinstance(kind, Enum):
        return st.sampled_from(kind.choices)
    return {
        "int": st.sampled_from([0, 1, 10, 50, 100]),
        "date": st.sampled_from(["-1", "2020-01-01T00:00:00Z", "2024-05-14 20:30:03.08"]),
        "text": st.sampled_from(["hello", "fuzz text", "nick"]),
        "bool": st.booleans(),
        "user": st.sampled_from(known.users),
        "users": st.lists(st.sampled_from(known.users), max_size=2),
        "ints": st.lists(st.integers(1, 3), max_size=3),
        "dialog": st.sampled_from(known.dialogs),
        "dialogs": st.lists(st.sampled_from(known.dialogs), min_size=1, max_size=2),
        "msgkey": st.sampled_from(known.msgkeys),
        "media": st.sampled_from(known.media),
        "medias": st.lists(st.sampled_from(known.media), max_size=1, unique=True),
        "email": st.sampled_from(known.emails) | st.from_regex(r"fz[a-z0-9]{8}@example\.org", fullmatch=True),
        "password": st.just("another long password"),
        "secret": st.sampled_from(known.passwords),
        "code": st.just("123456"),
        "login": st.from_regex(r"fz[a-z0-9]{10}", fullmatch=True),
        "extension": st.just("txt"),
        "bytes": st.just(b"fuzz"),
    }[kind]


def hostile_value(kind: Kind, known: Plausible) -> st.SearchStrategy[Any]:
    """A value of the field's kind at or past its boundaries."""
    if isinstance(kind, Enum):
        choices = st.sampled_from(kind.choices)
        return st.one_of(choices.map(str.upper), choices.map(lambda c: f" {c} "), texts)
    ids = st.sampled_from(known.users) | ints
    return {
        "int": ints,
        "date": dates,
        "text": texts,
        "bool": bools,
        "user": ids,
        "users": _list_of(ids),
        "ints": _list_of(ints),
        "dialog": _key(known.dialogs, _KEY_SHAPES),
        "dialogs": _list_of(_key(known.dialogs, _KEY_SHAPES) | ints),
        "msgkey": _key(known.msgkeys, _KEY_SHAPES),
        "media": _key(known.media, _KEY_SHAPES),
        "medias": _list_of(_key(known.media, _KEY_SHAPES) | ints),
        "email": emails,
        "password": passwords,
        "secret": passwords,
        "code": codes,
        "login": logins,
        "extension": extensions,
        "bytes": blobs,
    }[kind]


@st.composite
def schema_bodies(draw: st.DrawFn, name: str, known: Plausible, base: dict[str, Any]) -> dict[str, Any]:
    """A body for ``name``: ``base`` (the ``sessia``) plus the schema's fields.

    Up to three fields get a hostile value (of their kind, or of any type, or
    none at all); the others a valid one, now and then left out.  A body with
    every field hostile would never get past the first check."""
    fields = SCHEMA[name]
    hostile = draw(st.sets(st.sampled_from(tuple(fields)), max_size=min(3, len(fields)))) if fields else set()
    body = dict(base)
    for path, kind in fields.items():
        if path in hostile:
            value = draw(st.one_of(hostile_value(kind, known), hostile_value(kind, known),
                                   st.sampled_from([ABSENT, None]) | values))
        elif draw(st.integers(0, 3)) == 0:
            value = ABSENT
        else:
            value = draw(valid_value(kind, known))
        if value is not ABSENT:
            set_path(body, path, value)
    return body


def set_path(body: dict[str, Any], path: str, value: Any) -> None:
    """``body`` with the dotted ``path`` set to ``value`` (maps made or replaced
    on the way, copied so a shared ``base`` is never changed)."""
    node = body
    parts = path.split(".")
    for part in parts[:-1]:
        nxt = node.get(part)
        nxt = dict(nxt) if isinstance(nxt, dict) else {}
        node[part] = nxt
        node = nxt
    node[parts[-1]] = value
