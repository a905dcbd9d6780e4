"""Typed shapes of the media requests."""
