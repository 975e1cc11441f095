"""The SQLite schema, versioned through `PRAGMA user_version`, and its migrations.

`MIGRATIONS[n]` takes a database from version n to n + 1. A change to the
schema is a new entry appended here, never an edit of an old one, so every
database ever written can be brought forward in order.
"""

from __future__ import annotations

import sqlite3

MIGRATIONS: tuple[str, ...] = (
    # 0 -> 1: queues, marks and totals, jobs, audit, tokens
    """
    CREATE TABLE queues (name TEXT PRIMARY KEY, config TEXT NOT NULL);
    CREATE TABLE queue_state (name TEXT PRIMARY KEY, marks TEXT NOT NULL, totals TEXT NOT NULL);
    CREATE TABLE jobs (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        id TEXT NOT NULL UNIQUE,
        queue TEXT NOT NULL,
        state TEXT NOT NULL,
        owner TEXT,
        priority INTEGER NOT NULL,
        not_before REAL,
        finished_at REAL,
        data TEXT NOT NULL
    );
    CREATE INDEX jobs_claim ON jobs (queue, priority, seq) WHERE state = 'queued';
    CREATE INDEX jobs_by_state ON jobs (state, seq);
    CREATE INDEX jobs_by_queue ON jobs (queue, seq);
    CREATE INDEX jobs_by_owner ON jobs (owner, seq);
    CREATE INDEX jobs_finished ON jobs (finished_at, seq) WHERE finished_at IS NOT NULL;
    CREATE TABLE audit (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        at REAL NOT NULL,
        actor TEXT NOT NULL,
        action TEXT NOT NULL,
        target TEXT NOT NULL,
        data TEXT NOT NULL
    );
    CREATE TABLE tokens (
        name TEXT PRIMARY KEY,
        token_hash TEXT NOT NULL UNIQUE,
        role TEXT NOT NULL,
        created_at REAL NOT NULL
    );
    """,
    # 1 -> 2: the Idempotency-Key of a submit (scoped to its caller), unique while set
    """
    ALTER TABLE jobs ADD COLUMN idem TEXT;
    CREATE UNIQUE INDEX jobs_idem ON jobs (idem) WHERE idem IS NOT NULL;
    """,
    # 2 -> 3: what a restart must not forget: remote leases, the fence high-water, operator overrides
    """
    CREATE TABLE leases (id TEXT PRIMARY KEY, data TEXT NOT NULL);
    CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
    CREATE TABLE queue_overrides (name TEXT PRIMARY KEY, data TEXT NOT NULL);
    """,
)

SCHEMA_VERSION = len(MIGRATIONS)


class SchemaTooNew(RuntimeError):
    """The database was written by a newer SlotDeck; refusing beats corrupting it."""


def migrate(conn: sqlite3.Connection, migrations: tuple[str, ...] = MIGRATIONS) -> int:
    """Bring the schema up to date in one transaction; return the version found before.

    The version is read inside the write transaction (`BEGIN IMMEDIATE`), so several
    processes opening one new database at once migrate it exactly once between them.
    """
    found = _version(conn, migrations)
    if found == len(migrations):
        return found
    conn.execute("BEGIN IMMEDIATE")
    try:
        found = _version(conn, migrations)  # again, now that no other writer can change it
        for version in range(found, len(migrations)):
            for statement in migrations[version].split(";"):
                if statement.strip():
                    conn.execute(statement)
        conn.execute(f"PRAGMA user_version = {len(migrations)}")
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    return found


def _version(conn: sqlite3.Connection, migrations: tuple[str, ...]) -> int:
    found = int(conn.execute("PRAGMA user_version").fetchone()[0])
    if found > len(migrations):
        raise SchemaTooNew(
            f"database schema version {found} is newer than this SlotDeck understands ({len(migrations)}); "
            "upgrade SlotDeck or use another database file"
        )
    return found
