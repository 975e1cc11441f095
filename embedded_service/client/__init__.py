"""HTTP client for a SlotDeck server: `AsyncClient` and its blocking twin `Client`."""

from .aio import AsyncClient
from .calls import ServerEvent
from .errors import ApiError, AuthError, ConnectionFailed
from .lease import RemoteLease
from .sync import Client

__all__ = ["ApiError", "AsyncClient", "AuthError", "Client", "ConnectionFailed", "RemoteLease", "ServerEvent"]
