"""Every SDK call the documentation shows exists on ``client_sdk.Client``.

The README and docs/*.md teach the SDK through code blocks; a renamed method
(or one that never existed) there costs a newcomer a traceback on their first
try.  This reads README.md, docs/*.md and docs/api/*.md (fenced blocks and
inline code alike), takes every ``c.NAME(`` / ``client.NAME(`` call, and
checks that ``client_sdk.Client`` has ``NAME``."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

import client_sdk

ROOT = Path(__file__).resolve().parent.parent
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md")), *sorted((ROOT / "docs" / "api").glob("*.md"))]
CALL = re.compile(r"\b(?:c|client)\.([A-Za-z_]\w*)\(")


def sdk_calls(path: Path) -> list[tuple[str, int]]:
    """(method name, line number) of each SDK call in the file."""
    text = path.read_text()
    return [(call.group(1), text.count("\n", 0, call.start()) + 1) for call in CALL.finditer(text)]


def test_the_docs_show_sdk_calls() -> None:
    """The extraction itself works: the README's example has its calls."""
    assert {"register", "create_dialog", "send_message", "events"} <= {n for n, _ in sdk_calls(ROOT / "README.md")}


@pytest.mark.parametrize("path", DOCS, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_documented_sdk_call_exists(path: Path) -> None:
    missing = [f"{path.relative_to(ROOT)}:{line}: {name}" for name, line in sdk_calls(path)
               if not hasattr(client_sdk.Client, name)]
    assert not missing, "SDK methods named in the docs that client_sdk.Client lacks:\n" + "\n".join(missing)
