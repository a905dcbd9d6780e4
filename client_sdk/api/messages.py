"""SDK methods for the messages requests."""

from __future__ import annotations


class MessagesAPI:
    """Mixed into ``client_sdk.Client``; uses its ``request()``."""
