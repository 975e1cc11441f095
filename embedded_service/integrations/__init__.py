"""Integrations with other frameworks; each module imports its framework and needs its extra
(``embedded_service.integrations.celery``: ``pip install 'slotdeck[celery]'``)."""
