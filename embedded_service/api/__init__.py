"""SlotDeck's HTTP API: `create_app()` for a standalone server, `router()` to mount into an app."""

from .app import api_state, create_app, router

__all__ = ["api_state", "create_app", "router"]
