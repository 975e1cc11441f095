"""Task callables by name: what `@svc.task(...)` registers and a task job runs."""

from __future__ import annotations

import inspect
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ..errors import UnknownTask
from ..model import QUEUE_NAME_PATTERN


@dataclass(frozen=True)
class TaskSpec:
    name: str
    fn: Callable[..., Any]
    queue: str
    is_async: bool


class TaskRegistry:
    def __init__(self) -> None:
        self._tasks: dict[str, TaskSpec] = {}

    def register(self, name: str, fn: Callable[..., Any], queue: str) -> TaskSpec:
        """Register (or replace) a callable; async ones run on the loop, sync ones in a thread."""
        if not name or len(name) > 200:
            raise ValueError("a task name must have 1 to 200 characters")
        if not re.fullmatch(QUEUE_NAME_PATTERN, queue):
            raise ValueError(f"invalid queue name {queue!r}")
        if not callable(fn):
            raise TypeError(f"task {name!r} must be callable")
        spec = TaskSpec(name=name, fn=fn, queue=queue, is_async=inspect.iscoroutinefunction(fn))
        self._tasks[name] = spec
        return spec

    def get(self, name: str) -> TaskSpec:
        spec = self._tasks.get(name)
        if spec is None:
            raise UnknownTask(name)
        return spec
