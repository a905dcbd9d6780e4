"""SDK methods for the media requests."""

from __future__ import annotations


class MediaAPI:
    """Mixed into ``client_sdk.Client``; uses its ``request()``."""
