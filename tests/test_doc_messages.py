"""docs/protocol.md's rule "quoted messages are exact": every Status message
the docs quote in code type can be produced by the server, letter for letter.

The server's side is read from its source: every string literal and f-string
in ``protocol/`` and ``server/`` becomes a pattern (each ``{...}`` matches any
text, also none).  The docs' side is every code-type quote that follows a status code:
in a table row with a code cell (``| 404 | `dialog not found` |``) or in
prose (``404 `dialog not found```).  A quote's placeholders (``N``, ``X``,
``<path>``, ``0xNN``) are filled with sample values and the result must match
one of the server's patterns.  A quote that elides text (``…``) is checked
more loosely: what it shows must begin, end or lie within some message.  A typo in the docs, a reworded message in the server, or a
message the server no longer sends fails here.
"""

from __future__ import annotations

import ast
import re
from functools import cache
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOCS = [ROOT / "docs" / "protocol.md", *sorted((ROOT / "docs" / "api").glob("*.md"))]
SOURCES = [p for d in ("protocol", "server") for p in sorted((ROOT / d).rglob("*.py"))]
CODE = re.compile(r"^(200|4\d\d|5\d\d)$")
PROSE = re.compile(r"\b(?:4\d\d|5\d\d)\s+`([^`]+)`")
SAMPLES = [
    (re.compile(r"<[a-z]+>"), "a.b"),
    (re.compile(r"0xNN"), "0x01"),
    (re.compile(r"\b[NL]\b"), "7"),
    (re.compile(r"'X'"), "'x'"),
    (re.compile(r"\bX\b"), "x"),
]


WILD = None  # a formatted value in a template: any text, maybe none


@cache
def server_templates() -> list[tuple[str | None, ...]]:
    """Every string the server's code can write: literal text and ``WILD``s."""
    out: set[tuple[str | None, ...]] = set()
    for path in SOURCES:
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.JoinedStr):
                out.add(tuple(v.value if isinstance(v, ast.Constant) else WILD for v in node.values))
            elif isinstance(node, ast.Constant) and isinstance(node.value, str) and " " in node.value:
                out.add((node.value,))
    # A template with no word of its own ("{name}: {detail}") would match any
    # message: it says nothing about which messages the server sends.
    return [t for t in out if re.search(r"[A-Za-z]{3}", " ".join(p for p in t if p is not None))]


@cache
def server_patterns() -> list[re.Pattern[str]]:
    return [re.compile("".join(".*" if p is WILD else re.escape(p) for p in t), re.S) for t in server_templates()]


def _starts(template: tuple[str | None, ...], text: str) -> bool:
    """Whether some string the template makes starts with ``text``: a walk
    over the template's characters (a ``WILD`` takes any run, or none)."""
    tokens: list[str | None] = [ch for part in template for ch in ([WILD] if part is WILD else part)]
    states = _closure({0}, tokens)
    for ch in text:
        states = _closure({i + (tokens[i] is not WILD) for i in states
                           if i < len(tokens) and (tokens[i] is WILD or tokens[i] == ch)}, tokens)
        if not states:
            return False
    return True


def _closure(states: set[int], tokens: list[str | None]) -> set[int]:
    out = set(states)
    for i in sorted(states):
        while i < len(tokens) and tokens[i] is WILD:
            i += 1
            out.add(i)
    return out


def _reversed(template: tuple[str | None, ...]) -> tuple[str | None, ...]:
    return tuple(WILD if p is WILD else p[::-1] for p in reversed(template))


def _is_message(text: str) -> bool:
    return " " in text and not text.startswith(("{", "-", "python", "[", '"')) and "://" not in text


def quoted_messages() -> list[tuple[str, str]]:
    """(where, message) for every code-type quote after a status code in the docs."""
    found: list[tuple[str, str]] = []
    for doc in DOCS:
        in_code_table = False
        for number, line in enumerate(doc.read_text().splitlines(), 1):
            where = f"{doc.relative_to(ROOT)}:{number}"
            if line.startswith("|"):
                cells = [c.strip() for c in line.strip().strip("|").split("|")]
                if any(c in ("code", "code, message") for c in cells):
                    in_code_table = True
                    continue
                codes = [i for i, c in enumerate(cells) if CODE.match(c) or (c == "" and i == 1)]
                if in_code_table and codes and codes[0] + 1 < len(cells):
                    # the message cell follows the code cell; later cells say when
                    message_cell = cells[codes[0] + 1]
                    found += [(where, m) for m in re.findall(r"`([^`]+)`", message_cell) if _is_message(m)]
                    continue
            else:
                in_code_table = False
            found += [(where, m) for m in PROSE.findall(line) if _is_message(m)]
    return found


def concrete(message: str) -> str:
    for pattern, sample in SAMPLES:
        message = pattern.sub(sample, message)
    return message


def producible(message: str) -> bool:
    text = concrete(message)
    if "…" not in text:
        return any(p.fullmatch(text) for p in server_patterns())
    # Elided: what is shown before the ellipsis starts a message the server
    # sends, what is shown after it ends one, and a middle part is in one.
    parts = [part.strip() for part in text.split("…")]
    head, tail = parts[0], parts[-1]
    if head and not any(_starts(t, head) for t in server_templates()):
        return False
    if tail and not any(_starts(_reversed(t), tail[::-1]) for t in server_templates()):
        return False
    return all(any(m in "".join(p or "" for p in t) for t in server_templates()) for m in parts[1:-1] if m)


QUOTES = quoted_messages()


def test_the_docs_quote_many_messages() -> None:
    assert len(QUOTES) > 150


@pytest.mark.parametrize(("where", "message"), QUOTES, ids=[f"{w} {m[:40]}" for w, m in QUOTES])
def test_a_quoted_message_is_one_the_server_sends(where: str, message: str) -> None:
    assert producible(message), f"{where}: the server never sends {message!r}"


def test_the_check_catches_a_wrong_quote() -> None:
    """The check is not vacuous: the old wording of the flags error, and a
    reworded message, are refused."""
    assert producible("unknown flags 0xNN")
    assert producible("dialog not found")
    assert not producible("dialog was not found")
    assert not producible("missing or invalid session")
    assert producible("<path>: …") and producible("… from this address …")


def _cells(row: str) -> list[str]:
    """A table row's cells; a ``|`` inside code type is text, not a border."""
    inner = re.sub(r"`[^`]*`", lambda m: m.group(0).replace("|", "/"), row.strip())
    return [c.strip() for c in inner.strip("|").split("|")]


def tables(doc: Path) -> list[tuple[int, list[str]]]:
    """(first line number, rows) of every table in ``doc``, outside code blocks."""
    out: list[tuple[int, list[str]]] = []
    fenced = False
    current: list[str] = []
    start = 0
    for number, line in enumerate([*doc.read_text().splitlines(), ""], 1):
        if line.startswith("```"):
            fenced = not fenced
        if not fenced and line.startswith("|"):
            start = start or number
            current.append(line)
            continue
        if current:
            out.append((start, current))
        current, start = [], 0
    return out


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: p.name)
def test_every_table_has_one_header_row_and_even_rows(doc: Path) -> None:
    """A second-language client's author reads these tables with a markdown
    renderer: one header row, one separator, and as many cells in every row."""
    for start, rows in tables(doc):
        separators = [i for i, row in enumerate(rows) if re.fullmatch(r"\|(\s*:?-{3,}:?\s*\|)+", row.strip())]
        assert separators == [1], f"{doc.name}:{start}: a table needs exactly one header row and one separator"
        width = len(_cells(rows[0]))
        for i, row in enumerate(rows):
            assert len(_cells(row)) == width, f"{doc.name}:{start + i}: {len(_cells(row))} cells, the header has {width}"
