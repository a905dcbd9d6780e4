"""Typed shapes of the profiles requests."""
