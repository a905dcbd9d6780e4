"""docs/vectors/frames.json, the conformance vectors client authors replay
against their own codec: current (what ``python -m tests.make_vectors``
writes), complete (every request name of docs/protocol.md, every event kind),
each valid vector decodes with ``protocol/`` to exactly its stated meaning,
and each answer stated is the real server's, byte for byte in meaning."""

from __future__ import annotations

import asyncio
import base64
import json
import re
from pathlib import Path
from typing import Any

import pytest

from protocol import events as ev
from protocol.codecs import Codec, decode_body
from protocol.frames import HEADER, HEADER_SIZE, Decoder, Frame, FrameKind

from . import make_vectors

DOC = Path(__file__).resolve().parent.parent / "docs" / "protocol.md"
DATA = json.loads(make_vectors.OUT.read_text())
VECTORS: list[dict[str, Any]] = DATA["vectors"]
ALL_KINDS = frozenset(FrameKind)


def from_wire(value: Any) -> Any:
    """The vector's notation back to Python: {"$bin": hex} is bytes."""
    if isinstance(value, dict):
        if set(value) == {"$bin"}:
            return bytes.fromhex(value["$bin"])
        return {k: from_wire(v) for k, v in value.items()}
    if isinstance(value, list):
        return [from_wire(v) for v in value]
    return value


def test_the_file_is_what_the_generator_writes() -> None:
    assert make_vectors.OUT.read_text() == make_vectors.render()


def test_every_documented_request_and_event_kind_has_a_vector() -> None:
    section = DOC.read_text().split("\n## Requests\n", 1)[1]
    documented = set(re.findall(r"^\| `(\w+)` \|", section, re.M))
    documented |= {"Subscribe", "Unsubscribe", "GetEvents", "GetDialogEvents", "MarkRead", "Typing"}
    requests = {v["frame_name"] for v in VECTORS if v["kind"] == "REQUEST" and v["valid"]}
    assert documented <= requests and len(documented) >= 26
    kinds = {v["body"]["Kind"] for v in VECTORS if v["frame_name"] == "Event"}
    assert kinds == set(ev.KINDS)
    names = {v["frame_name"] for v in VECTORS if v["kind"] == "PUSH"}
    assert {"Event", "Resync", "Typing"} <= names
    assert {"PING", "PONG", "ERROR", "RESPONSE"} <= {v["kind"] for v in VECTORS}
    assert {v["codec"] for v in VECTORS if v["valid"]} == {1, 2}
    assert sum(not v["valid"] for v in VECTORS) >= 10


@pytest.mark.parametrize("v", [v for v in VECTORS if v["valid"]], ids=lambda v: v["name"])
def test_a_valid_vector_decodes_to_its_meaning(v: dict[str, Any]) -> None:
    data = bytes.fromhex(v["hex"])
    (frame,) = Decoder(ALL_KINDS, max_payload=len(data)).feed(data)
    assert isinstance(frame, Frame)
    _, _, _, codec, flags, _, length = HEADER.unpack_from(data)
    assert (frame.kind.name, frame.codec, flags, frame.request_id) == (v["kind"], v["codec"], v["flags"], v["id"])
    assert length == len(data) - HEADER_SIZE
    assert (frame.name or None) == v["frame_name"]
    if v["body"] is None:
        assert frame.body == b""
    else:
        assert decode_body(frame.codec, frame.body) == from_wire(v["body"])
    if v["kind"] == "PUSH" and v["frame_name"] == "Event":  # and it parses as the typed event
        body = decode_body(frame.codec, frame.body)
        payload = {k: x for k, x in body.items() if k not in ("Seq", "Kind")}
        assert ev.parse_event(body["Kind"], payload) is not None


@pytest.mark.parametrize("v", [v for v in VECTORS if v["valid"]], ids=lambda v: v["name"])
def test_json_bodies_carry_bytes_as_base64(v: dict[str, Any]) -> None:
    """Both notations say the same: a JSON vector has no $bin (JSON has no binary)."""
    if v["codec"] == Codec.JSON and v["body"] is not None:
        assert "$bin" not in json.dumps(v["body"])
    if v["name"] == "response-GetMedia" and v["codec"] == Codec.JSON:
        assert base64.b64decode(v["body"]["BytesBase64"]).startswith(b"\x89PNG")


async def answer_of(server, data: bytes) -> tuple[str, dict[str, Any] | None]:
    reader, writer = await asyncio.open_connection(server.host, server.port)
    try:
        writer.write(data)
        await writer.drain()
        head = await asyncio.wait_for(reader.readexactly(HEADER_SIZE), 10)
        _, _, kind, codec, _, _, length = HEADER.unpack(head)
        payload = await asyncio.wait_for(reader.readexactly(length), 10)
        return FrameKind(kind).name, (decode_body(codec, payload) if payload else None)
    finally:
        writer.close()


@pytest.mark.parametrize("v", [v for v in VECTORS if "answer" in v], ids=lambda v: v["name"])
async def test_the_stated_answer_is_the_real_server_s(server, v: dict[str, Any]) -> None:
    kind, body = await answer_of(server, bytes.fromhex(v["hex"]))
    assert kind == v["answer"]["kind"]
    assert body == v["answer"]["body"]
