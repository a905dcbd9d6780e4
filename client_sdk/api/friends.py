"""SDK methods for the friends requests."""

from __future__ import annotations


class FriendsAPI:
    """Mixed into ``client_sdk.Client``; uses its ``request()``."""
