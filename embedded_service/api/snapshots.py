"""The serialized snapshot, cached per engine version.

Dashboards and ops scripts poll `/v1/snapshot` far more often than the state
changes; building and serializing it once per change (and at most once a
`max_age_s` for the live `at`, host and device figures) keeps a poll cheap.
"""

from __future__ import annotations

import time

from ..model import Snapshot
from ..service import SlotService


class SnapshotCache:
    def __init__(self, service: SlotService, max_age_s: float = 0.5) -> None:
        self.service = service
        self.max_age_s = max_age_s
        self._key: tuple[int, int, str | None] | None = None
        self._built = 0.0
        self._model: Snapshot | None = None
        self._json = b""

    def _fresh(self) -> bool:
        svc = self.service
        key = (svc.version, id(svc.host), svc.gpu_probe_reason)
        now = time.monotonic()
        if key == self._key and now - self._built < self.max_age_s:
            return True
        self._model = svc.snapshot()
        self._json = self._model.model_dump_json().encode()
        self._key = key
        self._built = now
        return False

    def json(self) -> bytes:
        self._fresh()
        return self._json

    def model(self) -> Snapshot:
        self._fresh()
        assert self._model is not None
        return self._model
