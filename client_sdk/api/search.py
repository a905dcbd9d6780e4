"""SDK methods for the search requests."""

from __future__ import annotations


class SearchAPI:
    """Mixed into ``client_sdk.Client``; uses its ``request()``."""
