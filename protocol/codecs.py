"""Payload codecs: msgpack (default) and JSON.

A frame's body is one map.  msgpack carries binary data as ``bin``; JSON has no
binary type, so bytes are written as base64 strings (the original API's
``BytesBase64``) and handlers accept a base64 string wherever bytes are expected.
"""

from __future__ import annotations

import base64
from enum import IntEnum
from typing import Any

import msgpack
import orjson

from .status import BadRequest


class Codec(IntEnum):
    MSGPACK = 1
    JSON = 2


_packer = msgpack.Packer(use_bin_type=True, datetime=False)


def _json_default(obj: Any) -> Any:
    if isinstance(obj, (bytes, bytearray, memoryview)):
        return base64.b64encode(bytes(obj)).decode("ascii")
    raise TypeError(f"cannot encode {type(obj).__name__} as JSON")


def encode_body(codec: Codec, body: dict[str, Any]) -> bytes:
    """Serialize one body map.  Raises TypeError for values no codec can carry."""
    if codec == Codec.MSGPACK:
        return _packer.pack(body)
    return orjson.dumps(body, default=_json_default)


def decode_body(codec: int, data: bytes | bytearray | memoryview) -> dict[str, Any]:
    """Parse one body map; anything but a well-formed map is a BadRequest.

    An empty payload is an empty map, so a request that needs no fields may
    carry no body at all.
    """
    if not data:
        return {}
    try:
        if codec == Codec.MSGPACK:
            body = msgpack.unpackb(data, raw=False, strict_map_key=True, use_list=True, timestamp=0)
        elif codec == Codec.JSON:
            body = orjson.loads(data)
        else:
            raise BadRequest(f"unknown codec {codec}")
    except BadRequest:
        raise
    except ValueError as exc:
        if codec == Codec.MSGPACK and "map key" in str(exc):
            # msgpack refuses an integer (or nil, float...) key while decoding;
            # a bin key gets through and is refused below.  The same mistake gets
            # the same words either way, naming the map that holds the key.
            raise BadRequest(f"{_non_text_key_path(data)}: field names must be strings") from None
        name = "msgpack" if codec == Codec.MSGPACK else "JSON"
        raise BadRequest(f"body is not valid {name}") from None
    except TypeError:  # ValueError covers the others: UnicodeDecodeError, msgpack's ExtraData, FormatError, StackError
        name = "msgpack" if codec == Codec.MSGPACK else "JSON"
        raise BadRequest(f"body is not valid {name}") from None
    except RecursionError:
        raise BadRequest("body is nested too deeply") from None
    if not isinstance(body, dict):
        raise BadRequest("body must be a map")
    # msgpack allows bin keys even with strict_map_key; field names are text.
    if not all(type(key) is str for key in body):
        raise BadRequest("body: field names must be strings")
    return body


def _non_text_key_path(data: bytes | bytearray | memoryview) -> str:
    """The dotted path of the first map with a key that is not text (``body``
    for the top), found by decoding again without the key check: only a
    refused body pays for it."""
    try:
        body = msgpack.unpackb(data, raw=False, strict_map_key=False, use_list=False, timestamp=0)
    except Exception:  # a key msgpack cannot even hold (a map, a list): no path to name
        return "body"

    def find(value: Any, path: str) -> str | None:
        if isinstance(value, dict):
            for key, item in value.items():
                if type(key) is not str:
                    return path or "body"
                found = find(item, f"{path}.{key}" if path else key)
                if found is not None:
                    return found
        elif isinstance(value, tuple):
            for item in value:
                found = find(item, path)
                if found is not None:
                    return found
        return None

    try:
        path = find(body, "") or "body"
    except RecursionError:
        return "body"
    return path if len(path) <= 256 else "body"  # a message, not an echo of the body


def map_items(codec: Codec, body: dict[str, Any]) -> bytes:
    """``body`` encoded without its map header, so that the same items can be
    sent many times behind different leading fields (``frames.PushTemplate``):
    a pushed event is encoded once for all its recipients."""
    data = encode_body(codec, body)
    if codec == Codec.JSON:
        return data[1:-1]
    n = len(body)
    return data[1:] if n <= 15 else data[3:] if n <= 0xFFFF else data[5:]


def bin_header(n: int) -> bytes:
    """The msgpack header of ``n`` bytes of binary data (bin 8, 16 or 32), as
    the packer writes it."""
    if n <= 0xFF:
        return b"\xc4" + n.to_bytes(1, "big")
    if n <= 0xFFFF:
        return b"\xc5" + n.to_bytes(2, "big")
    return b"\xc6" + n.to_bytes(4, "big")


def map_header(n: int) -> bytes:
    """The msgpack header of a map of ``n`` entries."""
    if n <= 15:
        return bytes((0x80 | n,))
    if n <= 0xFFFF:
        return b"\xde" + n.to_bytes(2, "big")
    return b"\xdf" + n.to_bytes(4, "big")
