"""Typed shapes of the search requests."""
