"""Handlers for device sessions and password reset."""
