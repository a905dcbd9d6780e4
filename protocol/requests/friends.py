"""Typed shapes of the friends requests."""
