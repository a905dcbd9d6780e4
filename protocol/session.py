"""The ``sessia`` object every request carries.

``Registration`` and ``Auth`` by password carry the device in full (id, os,
mac, hostname) and the client build; every other request carries the token,
the device id it was issued to, and the client build.
"""

from __future__ import annotations

from dataclasses import dataclass

from .fields import Fields

MAX_TOKEN_LENGTH = 512


@dataclass(frozen=True, slots=True)
class DeviceInfo:
    deviceid: str
    os: str = ""
    mac: str = ""
    hostname: str = ""


@dataclass(frozen=True, slots=True)
class ClientInfo:
    nameclient: str
    hashcert: str
    version: str

    def version_number(self) -> int | None:
        """The build number, when the client sent one (the original also sends
        placeholder strings; those compare as unknown)."""
        text = self.version.strip()
        return int(text) if text.isascii() and text.isdigit() and len(text) <= 18 else None


@dataclass(frozen=True, slots=True)
class Sessia:
    tocken: str | None
    device: DeviceInfo
    client: ClientInfo | None


def parse_sessia(body: Fields, *, need_token: bool) -> Sessia:
    sessia = body.map("sessia")
    assert sessia is not None
    device_fields = sessia.map("device")
    assert device_fields is not None
    device = DeviceInfo(
        deviceid=device_fields.str("deviceid", min_len=1, max_len=128),  # type: ignore[arg-type]
        os=device_fields.str("os", required=False, max_len=128) or "",
        mac=device_fields.str("mac", required=False, max_len=128) or "",
        hostname=device_fields.str("hostname", required=False, max_len=256) or "",
    )
    client_fields = sessia.map("client", required=False)
    client = None
    if client_fields is not None:
        version = client_fields.str("version", required=False, max_len=64) or ""
        client = ClientInfo(
            nameclient=client_fields.str("nameclient", max_len=128),  # type: ignore[arg-type]
            hashcert=client_fields.str("hashcert", max_len=256),  # type: ignore[arg-type]
            version=version,
        )
    token = sessia.str("tocken", required=need_token, min_len=1, max_len=MAX_TOKEN_LENGTH)
    return Sessia(tocken=token, device=device, client=client)
