"""SDK methods for device sessions and password reset."""

from __future__ import annotations


class DevicesAPI:
    """Mixed into ``client_sdk.Client``; uses its ``request()``."""
