"""What only the SQLite backend promises: WAL, batched commits, a versioned schema, an indexed claim."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import pytest

from embedded_service.model import Job, JobKind
from embedded_service.stores import SqliteStore, open_store
from embedded_service.stores.sqlite_schema import SCHEMA_VERSION, SchemaTooNew, migrate


def job(job_id: str) -> Job:
    return Job(id=job_id, kind=JobKind.task, task="t", queue="q", created_at=1.0)


async def test_a_burst_of_adds_shares_transactions_and_every_one_is_on_disk(tmp_path: Path) -> None:
    db = tmp_path / "burst.db"
    store = SqliteStore(f"sqlite:///{db}")
    await store.open()
    try:
        await asyncio.gather(*(store.add_job(job(f"j{i}")) for i in range(2000)))
        assert store.commits < 200, "2000 concurrent adds should share far fewer commits"
    finally:
        await store.close()
    with sqlite3.connect(db) as conn:
        assert conn.execute("SELECT count(*) FROM jobs").fetchone()[0] == 2000
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


async def test_one_failing_write_does_not_sink_the_others_in_its_batch(tmp_path: Path) -> None:
    store = SqliteStore(f"sqlite:///{tmp_path}/s.db")
    await store.open()
    try:
        await store.add_job(job("dup"))
        results = await asyncio.gather(
            store.add_job(job("a")), store.add_job(job("dup")), store.add_job(job("b")), return_exceptions=True
        )
        assert isinstance(results[1], ValueError)
        assert {(await store.get_job(i)) is not None for i in ("a", "b")} == {True}
    finally:
        await store.close()


async def test_a_fresh_database_gets_the_current_schema_and_a_newer_one_is_refused(tmp_path: Path) -> None:
    db = tmp_path / "v.db"
    store = SqliteStore(f"sqlite:///{db}")
    await store.open()
    await store.close()
    with sqlite3.connect(db) as conn:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
        conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    with pytest.raises(SchemaTooNew, match="newer than this SlotDeck understands"):
        await SqliteStore(f"sqlite:///{db}").open()


def test_migrations_run_in_order_and_only_once(tmp_path: Path) -> None:
    steps = ("CREATE TABLE a (x INTEGER)", "ALTER TABLE a ADD COLUMN y TEXT; CREATE TABLE b (z INTEGER)")
    conn = sqlite3.connect(tmp_path / "m.db", isolation_level=None)
    assert migrate(conn, steps[:1]) == 0
    conn.execute("INSERT INTO a (x) VALUES (1)")
    assert migrate(conn, steps) == 1
    assert migrate(conn, steps) == 2
    assert conn.execute("SELECT x, y FROM a").fetchall() == [(1, None)]
    conn.close()


def test_a_failing_migration_leaves_the_old_version_intact(tmp_path: Path) -> None:
    conn = sqlite3.connect(tmp_path / "m.db", isolation_level=None)
    migrate(conn, ("CREATE TABLE a (x INTEGER)",))
    with pytest.raises(sqlite3.OperationalError):
        migrate(conn, ("CREATE TABLE a (x INTEGER)", "CREATE TABLE b (x INTEGER); CREATE TABLE a (x)"))
    assert conn.execute("PRAGMA user_version").fetchone()[0] == 1
    assert conn.execute("SELECT name FROM sqlite_master WHERE name = 'b'").fetchall() == []
    conn.close()


async def test_the_claim_query_is_served_by_the_claim_index(tmp_path: Path) -> None:
    db = tmp_path / "plan.db"
    store = SqliteStore(f"sqlite:///{db}")
    await store.open()
    await store.close()
    with sqlite3.connect(db) as conn:
        plan = conn.execute(
            "EXPLAIN QUERY PLAN SELECT seq, id, data FROM jobs WHERE queue = ? AND state = 'queued'"
            " AND (not_before IS NULL OR not_before <= ?) ORDER BY priority, seq LIMIT ?",
            ("q", 1.0, 10),
        ).fetchall()
    details = " ".join(row[-1] for row in plan)
    assert "USING INDEX jobs_claim" in details
    assert "TEMP B-TREE" not in details  # no sort of the waiting jobs


def test_store_urls_name_a_file_or_fail_clearly(tmp_path: Path) -> None:
    assert isinstance(open_store(f"sqlite:///{tmp_path}/x.db"), SqliteStore)
    assert SqliteStore("sqlite:///rel/x.db").path == Path("rel/x.db")
    assert SqliteStore("sqlite:////abs/x.db").path == Path("/abs/x.db")
    for bad in ("sqlite://", "sqlite:///", "sqlite:///:memory:", "sqlite:///x.db?mode=ro"):
        with pytest.raises(ValueError, match="SQLite store URL"):
            SqliteStore(bad)
    with pytest.raises(ValueError, match="unsupported store URL"):
        open_store("postgres://x")


async def test_job_logs_default_to_a_directory_next_to_the_database(tmp_path: Path) -> None:
    assert SqliteStore(f"sqlite:///{tmp_path}/a.db").default_log_dir() == tmp_path / "a.db-logs"
    assert open_store("memory://").default_log_dir() is None


async def test_a_path_that_is_not_a_database_fails_clearly(tmp_path: Path) -> None:
    from embedded_service.stores.sqlite import StoreUnavailable

    (tmp_path / "dir.db").mkdir()
    with pytest.raises(StoreUnavailable, match="cannot open SQLite store"):
        await SqliteStore(f"sqlite:///{tmp_path}/dir.db").open()
    (tmp_path / "junk.db").write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(StoreUnavailable, match="not a database"):
        await SqliteStore(f"sqlite:///{tmp_path}/junk.db").open()


async def test_a_write_of_several_statements_that_fails_undoes_only_itself(tmp_path: Path) -> None:
    from embedded_service.stores.sqlite_writer import BatchWriter, connect

    conn = connect(str(tmp_path / "w.db"), "FULL")
    conn.execute("CREATE TABLE t (x INTEGER UNIQUE)")
    writer = BatchWriter(conn, asyncio.get_running_loop())

    def half_done(c: sqlite3.Connection) -> None:
        c.execute("INSERT INTO t VALUES (1)")
        c.execute("INSERT INTO t VALUES (2)")
        c.execute("INSERT INTO t VALUES (2)")  # fails after two writes of its own

    results = await asyncio.gather(
        writer.run(lambda c: c.execute("INSERT INTO t VALUES (0)")),
        writer.run(half_done, several_statements=True),
        writer.run(lambda c: c.execute("INSERT INTO t VALUES (3)")),
        return_exceptions=True,
    )
    assert isinstance(results[1], sqlite3.IntegrityError)
    await writer.close()
    with sqlite3.connect(tmp_path / "w.db") as check:
        assert [x for (x,) in check.execute("SELECT x FROM t ORDER BY x")] == [0, 3]
