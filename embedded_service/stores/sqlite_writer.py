"""One writer thread per SQLite database, committing whatever piled up in one transaction.

Callers on the event loop hand in small functions; the thread runs every
function that is waiting, commits once, and then resolves all their futures
with a single wake-up of the loop. A burst of submits therefore shares one
commit (and one fsync), and each caller still returns only after its own
write is durable.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import sqlite3
import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

from .faults import StoreHealth, as_fault, classify

log = logging.getLogger("slotdeck.stores.sqlite")

T = TypeVar("T")
Op = Callable[[sqlite3.Connection], Any]

BUSY_TIMEOUT_S = 30.0  # how long a connection waits for another process's lock
MAX_BATCH = 5000  # functions per transaction, so one commit never grows without bound


def connect(path: str, synchronous: str) -> sqlite3.Connection:
    """A connection with the settings every SlotDeck connection shares (WAL, busy timeout)."""
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=BUSY_TIMEOUT_S)
    _into_wal(conn)
    conn.execute(f"PRAGMA synchronous={synchronous}")
    conn.execute("PRAGMA foreign_keys=ON")
    return conn


def _into_wal(conn: sqlite3.Connection) -> None:
    """Switch to WAL, waiting for other processes: several opening one new file at once may be refused at once
    ("database is locked") without SQLite's busy handler being called, so the switch is retried until the busy
    timeout has passed (monotonic clock)."""
    deadline = time.monotonic() + BUSY_TIMEOUT_S
    while True:
        try:
            conn.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            if classify(exc) != "locked" or time.monotonic() > deadline:
                raise
            time.sleep(0.01)


class BatchWriter:
    """Owns the only writing connection; `run(fn)` returns once `fn`'s transaction has committed."""

    def __init__(self, conn: sqlite3.Connection, loop: asyncio.AbstractEventLoop, health: StoreHealth | None = None) -> None:
        self._conn = conn
        self._loop = loop
        self.health = health or StoreHealth()
        self._inbox: queue.SimpleQueue[tuple[Op, asyncio.Future[Any], bool] | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._serve, name="slotdeck-sqlite-writer", daemon=True)
        self._thread.start()
        self.commits = 0  # transactions so far (for benchmarks: writes per commit)

    def run(self, fn: Callable[[sqlite3.Connection], T], *, several_statements: bool = False) -> asyncio.Future[T]:
        """Queue `fn(conn)` for the next transaction; the future resolves after its commit.

        A failing statement undoes only itself (SQLite's statement atomicity), so
        a one-statement `fn` needs nothing more; one of several statements runs
        in a savepoint, so that its failure undoes all of its own writes and
        none of the batch's others.
        """
        future: asyncio.Future[T] = self._loop.create_future()
        self._inbox.put((fn, future, several_statements))
        return future

    async def close(self) -> None:
        """Finish every write handed in so far, then stop the thread and close the connection."""
        self._inbox.put(None)
        await asyncio.to_thread(self._thread.join)

    def _serve(self) -> None:
        inbox = self._inbox
        stopping = False
        while not stopping:
            item = inbox.get()
            if item is None:
                break
            batch = [item]
            while len(batch) < MAX_BATCH:
                try:
                    item = inbox.get_nowait()
                except queue.Empty:
                    break
                if item is None:
                    stopping = True
                    break
                batch.append(item)
            self._commit(batch)
        self._conn.close()

    def _commit(self, batch: list[tuple[Op, asyncio.Future[Any], bool]]) -> None:
        conn = self._conn
        outcomes: list[tuple[asyncio.Future[Any], Any, BaseException | None]] = []
        faulty = False
        try:
            conn.execute("BEGIN IMMEDIATE")
            for fn, future, several in batch:
                if several:
                    conn.execute("SAVEPOINT op")
                try:
                    result = fn(conn)
                except Exception as exc:  # this caller's error only; the rest of the batch still commits
                    if several:
                        conn.execute("ROLLBACK TO op")
                    cause = classify(exc)
                    if cause is not None:
                        faulty = True
                        self.health.failed(cause, exc)
                    outcomes.append((future, None, as_fault(exc)))
                else:
                    outcomes.append((future, result, None))
                if several:
                    conn.execute("RELEASE op")
            conn.execute("COMMIT")
            self.commits += 1
            if not faulty:
                self.health.ok()
        except Exception as exc:  # the commit itself failed (disk full, I/O): nobody's write is durable
            cause = classify(exc)
            if cause is None:
                log.error("SQLite commit of %d write(s) failed: %s", len(batch), exc)
            else:
                self.health.failed(cause, exc, f"commit of {len(batch)} write(s)")
            if conn.in_transaction:
                try:
                    conn.execute("ROLLBACK")
                except sqlite3.Error as rollback_error:  # SQLite may have rolled back already
                    log.debug("rollback after a failed commit: %s", rollback_error)
            error = as_fault(exc)
            outcomes = [(future, None, error) for _fn, future, _several in batch]
        try:
            self._loop.call_soon_threadsafe(_deliver, outcomes)
        except RuntimeError:
            log.warning("event loop closed before %d SQLite write(s) could be acknowledged", len(outcomes))


def _deliver(outcomes: list[tuple[asyncio.Future[Any], Any, BaseException | None]]) -> None:
    for future, result, error in outcomes:
        if future.done():
            continue  # the caller gave up waiting; the write stands
        if error is None:
            future.set_result(result)
        else:
            future.set_exception(error)
