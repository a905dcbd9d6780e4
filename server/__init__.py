"""The sessia server: connections, dispatch, sessions and handlers."""
