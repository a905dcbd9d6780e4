"""Reading request bodies: case-insensitive names, lenient scalars, precise errors.

The original API spells the same field several ways (``pkDialog``/``PkDialog``,
``imagekey``/``imageKey``) and sends numbers and booleans as strings, so a
``Fields`` view looks names up case-insensitively and accepts the scalar shapes
the spec's decisions 1 and 2 list.  Every rejection names the field by its
dotted path so the client sees exactly what to fix: a missing or mistyped field
is 400, a well-typed value outside its range is 422.
"""

from __future__ import annotations

import base64
import binascii
import re
from typing import Any

from .status import BadRequest, TooLarge, Unprocessable

_TRUE = {"true": True, "1": True, "false": False, "0": False}
# ASCII digits only: str.isdigit() also accepts "²" and other digits int() refuses.
_INT_TEXT = re.compile(r"-?[0-9]{1,20}")
_POSITIVE_TEXT = re.compile(r"[0-9]{1,20}")
# Every integer ends up in a PostgreSQL bigint: a bigger one is out of range
# (422) here rather than an overflow deep in storage.
INT64_MIN = -(1 << 63)
INT64_MAX = (1 << 63) - 1


class Fields:
    """A read-only, case-insensitive view of one map of a request body."""

    __slots__ = ("_data", "_path")

    def __init__(self, data: dict[str, Any], path: str = "") -> None:
        if len(data) > 64:
            raise BadRequest(f"{path or 'body'}: too many fields")
        lowered: dict[str, Any] = {}
        for key, value in data.items():
            if not isinstance(key, str):
                raise BadRequest(f"{path or 'body'}: field names must be strings")
            lowered[key.lower()] = value
        self._data = lowered
        self._path = path

    def _name(self, name: str) -> str:
        return f"{self._path}.{name}" if self._path else name

    def raw(self, name: str) -> Any:
        return self._data.get(name.lower())

    def has(self, name: str) -> bool:
        """Present with a value; ``null`` and ``""`` count as absent ("not filled")."""
        value = self._data.get(name.lower())
        return value is not None and value != ""

    def str(
        self,
        name: str,
        *,
        required: bool = True,
        max_len: int = 256,
        min_len: int = 0,
        strip: bool = False,
    ) -> str | None:
        value = self._data.get(name.lower())
        if value is None or (value == "" and not required):
            if required:
                raise BadRequest(f"{self._name(name)}: field is required")
            return None
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            value = str(value)
        if not isinstance(value, str):
            raise BadRequest(f"{self._name(name)}: must be a string")
        if strip:
            value = value.strip()
        if "\x00" in value:
            raise Unprocessable(f"{self._name(name)}: must not contain NUL characters")
        if len(value) > max_len:
            raise Unprocessable(f"{self._name(name)}: longer than {max_len} characters")
        if len(value) < min_len:
            if min_len == 1:
                raise Unprocessable(f"{self._name(name)}: must not be empty")
            raise Unprocessable(f"{self._name(name)}: shorter than {min_len} characters")
        return value

    def int(
        self,
        name: str,
        *,
        required: bool = True,
        minimum: int | None = None,
        maximum: int | None = None,
        default: int | None = None,
    ) -> int | None:
        value = self._data.get(name.lower())
        if value is None or value == "":
            if required:
                raise BadRequest(f"{self._name(name)}: field is required")
            return default
        if isinstance(value, bool):
            raise BadRequest(f"{self._name(name)}: must be an integer")
        if isinstance(value, str):
            text = value.strip()
            if not _INT_TEXT.fullmatch(text):
                raise BadRequest(f"{self._name(name)}: must be an integer")
            value = int(text)
        elif isinstance(value, float):
            if not value.is_integer():
                raise BadRequest(f"{self._name(name)}: must be an integer")
            value = int(value)
        elif not isinstance(value, int):
            raise BadRequest(f"{self._name(name)}: must be an integer")
        minimum = INT64_MIN if minimum is None else max(minimum, INT64_MIN)
        maximum = INT64_MAX if maximum is None else min(maximum, INT64_MAX)
        if value < minimum:
            raise Unprocessable(f"{self._name(name)}: must be at least {minimum}")
        if value > maximum:
            raise Unprocessable(f"{self._name(name)}: must be at most {maximum}")
        return value

    def bool(self, name: str, *, required: bool = True, default: bool | None = None) -> bool | None:
        value = self._data.get(name.lower())
        if value is None or value == "":
            if required:
                raise BadRequest(f"{self._name(name)}: field is required")
            return default
        if isinstance(value, bool):
            return value
        if isinstance(value, int) and value in (0, 1):
            return bool(value)
        if isinstance(value, str) and value.strip().lower() in _TRUE:
            return _TRUE[value.strip().lower()]
        raise BadRequest(f"{self._name(name)}: must be a boolean (true/false, 1/0)")

    def map(self, name: str, *, required: bool = True) -> Fields | None:
        value = self._data.get(name.lower())
        if value is None:
            if required:
                raise BadRequest(f"{self._name(name)}: field is required")
            return None
        if not isinstance(value, dict):
            raise BadRequest(f"{self._name(name)}: must be a map")
        return Fields(value, self._name(name))

    def list(self, name: str, *, required: bool = True, max_items: int = 100, scalar_ok: bool = False) -> list[Any] | None:
        """A list; with ``scalar_ok`` a single value is taken as a list of one
        (the original sends one dialog key where a list is meant)."""
        value = self._data.get(name.lower())
        if value is None or value == "":
            if required:
                raise BadRequest(f"{self._name(name)}: field is required")
            return None
        if not isinstance(value, list):
            if scalar_ok and isinstance(value, (str, int)) and not isinstance(value, bool):
                value = [value]
            else:
                raise BadRequest(f"{self._name(name)}: must be a list")
        if len(value) > max_items:
            raise Unprocessable(f"{self._name(name)}: more than {max_items} items")
        return value

    def int_list(self, name: str, *, required: bool = True, max_items: int = 100) -> list[int] | None:
        items = self.list(name, required=required, max_items=max_items, scalar_ok=True)
        if items is None:
            return None
        return [_to_int(v, self._name(name)) for v in items]

    def str_list(self, name: str, *, required: bool = True, max_items: int = 100, max_len: int = 256) -> list[str] | None:
        items = self.list(name, required=required, max_items=max_items, scalar_ok=True)
        if items is None:
            return None
        out = []
        for item in items:
            if not isinstance(item, str) or not item or len(item) > max_len:
                raise BadRequest(f"{self._name(name)}: must be a list of non-empty strings")
            if "\x00" in item:  # PostgreSQL text cannot hold NUL: refuse it here, not with a 500
                raise Unprocessable(f"{self._name(name)}: must not contain NUL characters")
            out.append(item)
        return out

    def bytes(self, name: str, *, required: bool = True, max_size: int) -> bytes | None:
        """Binary data: msgpack ``bin`` as is, or a base64 string (JSON)."""
        value = self._data.get(name.lower())
        if value is None or value == "":
            if required:
                raise BadRequest(f"{self._name(name)}: field is required")
            return None
        if isinstance(value, (bytes, bytearray)):
            data = bytes(value)
        elif isinstance(value, str):
            # base64 grows data by 4/3: refuse before decoding what cannot fit.
            if len(value) > (max_size * 4) // 3 + 4:
                raise _too_large(self._name(name), max_size)
            try:
                data = base64.b64decode(value, validate=True)
            except (binascii.Error, ValueError):
                raise BadRequest(f"{self._name(name)}: not valid base64") from None
        else:
            raise BadRequest(f"{self._name(name)}: must be bytes or a base64 string")
        if len(data) > max_size:
            raise _too_large(self._name(name), max_size)
        return data


def _too_large(name: str, max_size: int) -> TooLarge:
    return TooLarge(f"{name}: larger than {max_size} bytes")


def _to_int(value: Any, name: str) -> int:
    if isinstance(value, str) and _POSITIVE_TEXT.fullmatch(value):
        value = int(value)
    if isinstance(value, int) and not isinstance(value, bool) and value >= 1:
        if value > INT64_MAX:
            raise Unprocessable(f"{name}: must be at most {INT64_MAX}")
        return value
    raise BadRequest(f"{name}: must be a list of positive integers")
