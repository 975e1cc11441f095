"""SlotDeck operations dashboard (PySide6): talks to services only through embedded_service.client."""
