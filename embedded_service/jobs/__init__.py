"""Durable jobs: registered task callables and commands, run under the engine's slots."""

from .registry import TaskRegistry, TaskSpec
from .runner import JobRunner
from .settings import JobSettings

__all__ = ["JobRunner", "JobSettings", "TaskRegistry", "TaskSpec"]
