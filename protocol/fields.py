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
import builtins
import re
from typing import Any, Literal, overload

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

    # The readers are named after the types they return, so inside this class
    # ``str``, ``int``, ``bool``, ``list`` and ``bytes`` name the methods:
    # annotations spell the types ``builtins.str`` and so on.  Each reader
    # returns its type when the field is required (or has a default), and
    # ``... | None`` when it may be absent.

    @overload
    def str(
        self,
        name: builtins.str,
        *,
        required: Literal[True] = ...,
        max_len: builtins.int = ...,
        min_len: builtins.int = ...,
        strip: builtins.bool = ...,
    ) -> builtins.str: ...

    @overload
    def str(
        self,
        name: builtins.str,
        *,
        required: builtins.bool,
        max_len: builtins.int = ...,
        min_len: builtins.int = ...,
        strip: builtins.bool = ...,
    ) -> builtins.str | None: ...

    def str(
        self,
        name: builtins.str,
        *,
        required: builtins.bool = True,
        max_len: builtins.int = 256,
        min_len: builtins.int = 0,
        strip: builtins.bool = False,
    ) -> builtins.str | None:
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

    @overload
    def int(
        self,
        name: builtins.str,
        *,
        required: Literal[True] = ...,
        minimum: builtins.int | None = ...,
        maximum: builtins.int | None = ...,
        default: builtins.int | None = ...,
    ) -> builtins.int: ...

    @overload
    def int(
        self,
        name: builtins.str,
        *,
        required: builtins.bool,
        minimum: builtins.int | None = ...,
        maximum: builtins.int | None = ...,
        default: builtins.int,
    ) -> builtins.int: ...

    @overload
    def int(
        self,
        name: builtins.str,
        *,
        required: builtins.bool,
        minimum: builtins.int | None = ...,
        maximum: builtins.int | None = ...,
        default: None = ...,
    ) -> builtins.int | None: ...

    def int(
        self,
        name: builtins.str,
        *,
        required: builtins.bool = True,
        minimum: builtins.int | None = None,
        maximum: builtins.int | None = None,
        default: builtins.int | None = None,
    ) -> builtins.int | None:
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

    @overload
    def bool(
        self, name: builtins.str, *, required: Literal[True] = ..., default: builtins.bool | None = ...
    ) -> builtins.bool: ...

    @overload
    def bool(self, name: builtins.str, *, required: builtins.bool, default: builtins.bool) -> builtins.bool: ...

    @overload
    def bool(
        self, name: builtins.str, *, required: builtins.bool, default: None = ...
    ) -> builtins.bool | None: ...

    def bool(
        self, name: builtins.str, *, required: builtins.bool = True, default: builtins.bool | None = None
    ) -> builtins.bool | None:
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

    @overload
    def map(self, name: builtins.str, *, required: Literal[True] = ...) -> Fields: ...

    @overload
    def map(self, name: builtins.str, *, required: builtins.bool) -> Fields | None: ...

    def map(self, name: builtins.str, *, required: builtins.bool = True) -> Fields | None:
        value = self._data.get(name.lower())
        if value is None:
            if required:
                raise BadRequest(f"{self._name(name)}: field is required")
            return None
        if not isinstance(value, dict):
            raise BadRequest(f"{self._name(name)}: must be a map")
        return Fields(value, self._name(name))

    @overload
    def list(
        self,
        name: builtins.str,
        *,
        required: Literal[True] = ...,
        max_items: builtins.int = ...,
        scalar_ok: builtins.bool = ...,
    ) -> builtins.list[Any]: ...

    @overload
    def list(
        self,
        name: builtins.str,
        *,
        required: builtins.bool,
        max_items: builtins.int = ...,
        scalar_ok: builtins.bool = ...,
    ) -> builtins.list[Any] | None: ...

    def list(
        self,
        name: builtins.str,
        *,
        required: builtins.bool = True,
        max_items: builtins.int = 100,
        scalar_ok: builtins.bool = False,
    ) -> builtins.list[Any] | None:
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

    @overload
    def int_list(
        self, name: builtins.str, *, required: Literal[True] = ..., max_items: builtins.int = ...
    ) -> builtins.list[builtins.int]: ...

    @overload
    def int_list(
        self, name: builtins.str, *, required: builtins.bool, max_items: builtins.int = ...
    ) -> builtins.list[builtins.int] | None: ...

    def int_list(
        self, name: builtins.str, *, required: builtins.bool = True, max_items: builtins.int = 100
    ) -> builtins.list[builtins.int] | None:
        items = self.list(name, required=required, max_items=max_items, scalar_ok=True)
        if items is None:
            return None
        return [_to_int(v, self._name(name)) for v in items]

    @overload
    def str_list(
        self,
        name: builtins.str,
        *,
        required: Literal[True] = ...,
        max_items: builtins.int = ...,
        max_len: builtins.int = ...,
    ) -> builtins.list[builtins.str]: ...

    @overload
    def str_list(
        self,
        name: builtins.str,
        *,
        required: builtins.bool,
        max_items: builtins.int = ...,
        max_len: builtins.int = ...,
    ) -> builtins.list[builtins.str] | None: ...

    def str_list(
        self,
        name: builtins.str,
        *,
        required: builtins.bool = True,
        max_items: builtins.int = 100,
        max_len: builtins.int = 256,
    ) -> builtins.list[builtins.str] | None:
        items = self.list(name, required=required, max_items=max_items, scalar_ok=True)
        if items is None:
            return None
        out: builtins.list[builtins.str] = []
        for item in items:
            if not isinstance(item, str) or not item or len(item) > max_len:
                raise BadRequest(f"{self._name(name)}: must be a list of non-empty strings")
            if "\x00" in item:  # PostgreSQL text cannot hold NUL: refuse it here, not with a 500
                raise Unprocessable(f"{self._name(name)}: must not contain NUL characters")
            out.append(item)
        return out

    @overload
    def bytes(
        self, name: builtins.str, *, required: Literal[True] = ..., max_size: builtins.int
    ) -> builtins.bytes: ...

    @overload
    def bytes(
        self, name: builtins.str, *, required: builtins.bool, max_size: builtins.int
    ) -> builtins.bytes | None: ...

    def bytes(
        self, name: builtins.str, *, required: builtins.bool = True, max_size: builtins.int
    ) -> builtins.bytes | None:
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
