"""The sessia wire format, sans-IO: frames, codecs, request schemas, Status codes.

No sockets and no event loop here: the server and the client SDK each wrap
this package in a thin asyncio adapter.  ``docs/protocol.md`` is its byte-level
description.
"""
