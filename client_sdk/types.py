"""Value types of the SDK."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class Device:
    """The device a session belongs to (the spec's ``sessia.device``)."""

    deviceid: str
    os: str = ""
    mac: str = ""
    hostname: str = ""

    @classmethod
    def coerce(cls, value: Device | dict[str, Any]) -> Device:
        if isinstance(value, Device):
            return value
        return cls(**{k: str(v) for k, v in value.items() if k in ("deviceid", "os", "mac", "hostname")})

    def full(self) -> dict[str, str]:
        return {"deviceid": self.deviceid, "os": self.os, "mac": self.mac, "hostname": self.hostname}


@dataclass(frozen=True, slots=True)
class ClientBuild:
    """The client program's identity (the spec's ``sessia.client``)."""

    nameclient: str
    hashcert: str
    version: int | str = 1

    @classmethod
    def coerce(cls, value: ClientBuild | dict[str, Any]) -> ClientBuild:
        if isinstance(value, ClientBuild):
            return value
        return cls(nameclient=str(value["nameclient"]), hashcert=str(value["hashcert"]), version=value.get("version", 1))

    def as_dict(self) -> dict[str, Any]:
        return {"nameclient": self.nameclient, "hashcert": self.hashcert, "version": self.version}


@dataclass(frozen=True, slots=True)
class LoginResult:
    token: str
    user_id: int
