"""The true depth of each queue: durable jobs queued in the store that are not engine waiters.

The job runner keeps only a window of each queue's queued jobs in the engine.
`Backlog` counts, per queue, the jobs the store holds in state `queued` and
how many of those the runner holds (window waiters, or granted and starting),
and tells the engine the difference (`QueueState.backlog`), so that waiting,
its high-water mark, `est_wait_s`, history and the compatibility views count
every queued job. It also tells the runner which queues have anything to
claim at all, so an idle server with many queues claims nothing.
"""

from __future__ import annotations

from ..engine import SlotEngine


class Backlog:
    def __init__(self, engine: SlotEngine) -> None:
        self.engine = engine
        self.stored: dict[str, int] = {}  # queue -> jobs in state queued in the store
        self.held: dict[str, int] = {}  # queue -> of those, held by the runner

    def load(self, counts: dict[str, int]) -> None:
        """Start from the store's counts (at start, after recovery)."""
        self.stored = {queue: n for queue, n in counts.items() if n}
        self.held = {}
        for queue in self.stored:
            self.push(queue)

    def change(self, queue: str, stored: int = 0, held: int = 0, push: bool = True) -> None:
        """A job of `queue` entered (+1) or left (-1) the stored queued state, or the held-and-queued set.

        `push=False` leaves telling the engine to a later `push` (a new job about to join the line)."""
        if stored:
            n = self.stored.get(queue, 0) + stored
            if n > 0:
                self.stored[queue] = n
            else:
                self.stored.pop(queue, None)
        if held:
            n = self.held.get(queue, 0) + held
            if n > 0:
                self.held[queue] = n
            else:
                self.held.pop(queue, None)
        if push:
            self.push(queue)

    def unclaimed(self, queue: str) -> int:
        """Queued jobs of `queue` the store holds that the runner does not: what a claim could return."""
        return max(0, self.stored.get(queue, 0) - self.held.get(queue, 0))

    def claimable_queues(self) -> list[str]:
        return [queue for queue in self.stored if self.unclaimed(queue) > 0]

    def push(self, queue: str) -> None:
        """Tell the engine's queue its backlog (and raise its waiting mark if the depth is a new high)."""
        state = self.engine.queues.get(queue)
        if state is None:
            return
        backlog = self.unclaimed(queue)
        if backlog != state.backlog:
            state.backlog = backlog
            state.note_waiting(self.engine.clock.time())
            self.engine.version += 1

    def sync(self) -> None:
        """Re-tell every counted queue (one created or re-created after its jobs were stored)."""
        for queue in self.stored:
            self.push(queue)
