"""The ``sessia`` object every request carries.

``Registration`` and ``Auth`` by password carry the device in full (id, os,
mac, hostname) and the client build; every other request carries the token,
the device id it was issued to, and the client build.
"""

from __future__ import annotations

from typing import Any, NamedTuple, TypeGuard

from .fields import Fields

MAX_TOKEN_LENGTH = 512


class DeviceInfo(NamedTuple):
    deviceid: str
    os: str = ""
    mac: str = ""
    hostname: str = ""


class ClientInfo(NamedTuple):
    nameclient: str
    hashcert: str
    version: str

    def version_number(self) -> int | None:
        """The build number, when the client sent one (the original also sends
        placeholder strings; those compare as unknown)."""
        text = self.version.strip()
        return int(text) if text.isascii() and text.isdigit() and len(text) <= 18 else None


class Sessia(NamedTuple):
    """Immutable records (NamedTuples: every request builds three, and a
    frozen dataclass costs about three times as much to make)."""

    tocken: str | None
    device: DeviceInfo
    client: ClientInfo | None


def parse_sessia(body: Fields, *, need_token: bool) -> Sessia:
    """The request's ``sessia``, validated.  Every request carries one, so the
    usual shape (lower-case field names, plain strings within their limits) is
    read straight from the map; anything else takes the general path, which
    also words the error."""
    plain = _parse_plain(body.raw("sessia"), need_token)
    return plain if plain is not None else _parse_fields(body, need_token=need_token)


def _parse_fields(body: Fields, *, need_token: bool) -> Sessia:
    sessia = body.map("sessia")
    device_fields = sessia.map("device")
    device = DeviceInfo(
        deviceid=device_fields.str("deviceid", min_len=1, max_len=128),
        os=device_fields.str("os", required=False, max_len=128) or "",
        mac=device_fields.str("mac", required=False, max_len=128) or "",
        hostname=device_fields.str("hostname", required=False, max_len=256) or "",
    )
    client_fields = sessia.map("client", required=False)
    client = None
    if client_fields is not None:
        version = client_fields.str("version", required=False, max_len=64) or ""
        client = ClientInfo(
            nameclient=client_fields.str("nameclient", max_len=128),
            hashcert=client_fields.str("hashcert", max_len=256),
            version=version,
        )
    token = sessia.str("tocken", required=need_token, min_len=1, max_len=MAX_TOKEN_LENGTH)
    return Sessia(tocken=token, device=device, client=client)


def _plain_map(value: object) -> TypeGuard[dict[str, Any]]:
    """A map ``Fields`` would take as it is: at most 64 fields, lower-case names."""
    if type(value) is not dict or len(value) > 64:
        return False
    try:
        return all(map(str.islower, value))
    except TypeError:  # a name that is not a string
        return False


def _plain_text(value: object, max_len: int) -> TypeGuard[str]:
    """A string ``Fields.str`` would return unchanged."""
    return type(value) is str and len(value) <= max_len and "\x00" not in value


def _optional(value: object, max_len: int) -> str | None:
    """An optional text as ``_parse_fields`` reads it ("" when unset); None
    when it needs the general path."""
    if value is None or value == "":
        return ""
    if type(value) is int:  # a build number sent as a number, as Fields.str takes it
        value = str(value)
    return value if _plain_text(value, max_len) else None


def _parse_plain(raw: object, need_token: bool) -> Sessia | None:
    """What ``_parse_fields`` returns for a well-formed ``sessia``, or None
    for anything it might answer differently or refuse."""
    if not _plain_map(raw):
        return None
    device = raw.get("device")
    if not _plain_map(device):
        return None
    deviceid = device.get("deviceid")
    os = _optional(device.get("os"), 128)
    mac = _optional(device.get("mac"), 128)
    hostname = _optional(device.get("hostname"), 256)
    if not deviceid or not _plain_text(deviceid, 128) or os is None or mac is None or hostname is None:
        return None
    client = None
    client_map = raw.get("client")
    if client_map is not None:
        if not _plain_map(client_map):
            return None
        nameclient, hashcert = client_map.get("nameclient"), client_map.get("hashcert")
        version = _optional(client_map.get("version"), 64)
        if not _plain_text(nameclient, 128) or not _plain_text(hashcert, 256) or version is None:
            return None
        client = ClientInfo(nameclient, hashcert, version)
    token = raw.get("tocken")
    if token is None or token == "":
        if need_token:
            return None
        token = None
    elif not _plain_text(token, MAX_TOKEN_LENGTH):
        return None
    return Sessia(token, DeviceInfo(deviceid, os, mac, hostname), client)
