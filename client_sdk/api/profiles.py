"""SDK methods for the profiles requests."""

from __future__ import annotations


class ProfilesAPI:
    """Mixed into ``client_sdk.Client``; uses its ``request()``."""
