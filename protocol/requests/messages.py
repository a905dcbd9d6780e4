"""Typed shapes of the messages requests."""
