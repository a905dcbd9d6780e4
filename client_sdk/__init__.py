"""The sessia client SDK.

``connect()`` opens a connection and returns a ``Client`` with one typed async
method per request; errors are typed exceptions (see ``client_sdk.errors``).
"""

from protocol.codecs import Codec

from .client import Client, connect
from .errors import *  # noqa: F403
from .errors import __all__ as _errors
from .events import Event, EventStream
from .transport import Push
from .types import ClientBuild, Device, LoginResult

__all__ = ["Client", "ClientBuild", "Codec", "Device", "Event", "EventStream", "LoginResult", "Push", "connect", *_errors]
