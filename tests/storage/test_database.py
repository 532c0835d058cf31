"""Tests for homeserver.storage.database: transactions, retries, the pool, closing."""

from __future__ import annotations

import json
import logging
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import REGISTRY
from twisted.internet import defer

from homeserver.storage.database import Database, DatabaseClosedError, Transaction
from tests.conftest import DbConfig, PostgresServer, run_on_reactor

REPO_ROOT = Path(__file__).resolve().parents[2]


def _count(name: str, outcome: str) -> float:
    value = REGISTRY.get_sample_value(
        "homeserver_db_transactions_total", {"name": name, "outcome": outcome}
    )
    return value or 0.0


def _unique(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:8]}"


def _create_table_txn(txn: Transaction) -> None:
    txn.execute("CREATE TABLE items (id INTEGER PRIMARY KEY, value TEXT NOT NULL)")


def _insert_txn(txn: Transaction, item_id: int, value: str) -> int:
    txn.execute("INSERT INTO items (id, value) VALUES (?, ?)", (item_id, value))
    return txn.rowcount


def _select_all_txn(txn: Transaction) -> list[tuple[Any, ...]]:
    txn.execute("SELECT id, value FROM items ORDER BY id")
    return txn.fetchall()


async def test_commit_and_result(database: Database) -> None:
    """What the txn function returns comes back, and its writes are committed."""
    await database.run_interaction("create", _create_table_txn)
    name = _unique("insert")
    assert await database.run_interaction(name, _insert_txn, 1, "one") == 1
    assert await database.run_interaction("select", _select_all_txn) == [(1, "one")]
    assert _count(name, "ok") == 1


async def test_rollback_on_error(database: Database) -> None:
    """If the txn function raises, its writes are rolled back and the error reaches the caller."""
    await database.run_interaction("create", _create_table_txn)

    class Boom(Exception):
        pass

    def insert_then_fail(txn: Transaction) -> None:
        _insert_txn(txn, 1, "one")
        raise Boom()

    name = _unique("failing")
    with pytest.raises(Boom):
        await database.run_interaction(name, insert_then_fail)
    assert await database.run_interaction("select", _select_all_txn) == []
    assert (_count(name, "error"), _count(name, "retry")) == (1, 0)


async def test_constraint_violation_is_not_retried(database: Database) -> None:
    """Errors other than lost races (here a duplicate key) are raised after one try."""
    await database.run_interaction("create", _create_table_txn)
    await database.run_interaction("insert", _insert_txn, 1, "one")
    tries = []

    def duplicate(txn: Transaction) -> None:
        tries.append(1)
        _insert_txn(txn, 1, "again")

    error_types = (sqlite3.IntegrityError,)
    if database.engine.name == "psycopg2":
        import psycopg2

        error_types = (psycopg2.IntegrityError,)  # type: ignore[assignment]
    with pytest.raises(error_types):
        await database.run_interaction("duplicate", duplicate)
    assert len(tries) == 1


async def _provoke_postgres_serialisation_failure(database: Database, reactor: Any) -> list[int]:
    """Two REPEATABLE READ transactions update one row; the one that read first must retry."""

    def setup(txn: Transaction) -> None:
        txn.execute("CREATE TABLE counter (id INTEGER PRIMARY KEY, n INTEGER NOT NULL)")
        txn.execute("INSERT INTO counter (id, n) VALUES (1, 0)")

    await database.run_interaction("setup", setup)
    first_read: defer.Deferred[None] = defer.Deferred()
    other_committed = threading.Event()
    tries: list[int] = []

    def increment_slowly(txn: Transaction) -> None:
        tries.append(1)
        txn.execute("SELECT n FROM counter WHERE id = 1")
        (n,) = txn.fetchone()  # type: ignore[misc]
        if len(tries) == 1:
            # Our snapshot is taken; let the other transaction commit before we write.
            reactor.callFromThread(first_read.callback, None)
            assert other_committed.wait(10)
        txn.execute("UPDATE counter SET n = ? WHERE id = 1", (n + 1,))

    def increment(txn: Transaction) -> None:
        txn.execute("UPDATE counter SET n = n + 1 WHERE id = 1")

    slow = defer.ensureDeferred(
        database.run_interaction(_unique("slow_increment"), increment_slowly)
    )
    await first_read
    await database.run_interaction("increment", increment)
    other_committed.set()
    await slow

    def read(txn: Transaction) -> int:
        txn.execute("SELECT n FROM counter WHERE id = 1")
        return int(txn.fetchone()[0])  # type: ignore[index]

    assert await database.run_interaction("read", read) == 2
    return tries


async def _provoke_sqlite_busy(db_config: DbConfig, reactor: Any) -> list[int]:
    """Another connection holds the write lock; our write gets "database is locked" until it lets go."""
    _, args = db_config
    db = Database(reactor, "sqlite3", {**args, "timeout": 0.05}, cp_min=1, cp_max=1)
    await db.start()
    try:
        await db.run_interaction("create", _create_table_txn)
        other = sqlite3.connect(args["database"], isolation_level=None)
        other.execute("BEGIN IMMEDIATE")
        reactor.callLater(0.3, other.execute, "ROLLBACK")
        tries: list[int] = []

        def insert(txn: Transaction) -> None:
            tries.append(1)
            _insert_txn(txn, 1, "one")

        await db.run_interaction(_unique("insert_while_locked"), insert)
        other.close()
        assert await db.run_interaction("select", _select_all_txn) == [(1, "one")]
        return tries
    finally:
        await db.close()


async def test_retries_lost_races(database: Database, db_config: DbConfig, reactor: Any) -> None:
    """A real serialisation failure (PostgreSQL) or "database is locked" (SQLite) is retried."""
    if database.engine.name == "psycopg2":
        tries = await _provoke_postgres_serialisation_failure(database, reactor)
        assert len(tries) == 2
    else:
        await database.close()
        tries = await _provoke_sqlite_busy(db_config, reactor)
        assert len(tries) >= 2


def _always_conflicting_txn(txn: Transaction, tries: list[int]) -> None:
    tries.append(1)
    if txn.engine.name == "psycopg2":
        txn.execute(
            "DO $$ BEGIN RAISE EXCEPTION 'conflict' USING ERRCODE = 'serialization_failure'; END $$"
        )
    raise sqlite3.OperationalError("database is locked")


async def test_gives_up_after_max_attempts(database: Database) -> None:
    """A transaction that keeps losing is tried max_attempts times, then the error is raised."""
    database.retry_backoff_seconds = 0.001
    name = _unique("conflicting")
    tries: list[int] = []
    with pytest.raises(Exception, match="conflict|database is locked") as caught:
        await database.run_interaction(name, _always_conflicting_txn, tries)
    assert database.engine.is_transient_conflict(caught.value)
    assert len(tries) == database.max_attempts
    assert _count(name, "retry") == database.max_attempts - 1
    assert _count(name, "error") == 1


async def test_pool_bound(make_db_config: Callable[[], DbConfig], reactor: Any) -> None:
    """No more than cp_max transactions run at once (SQLite: one), the rest wait their turn."""
    engine_name, args = make_db_config()
    db = Database(reactor, engine_name, args, cp_min=1, cp_max=3)
    await db.start()
    lock = threading.Lock()
    running = [0, 0]  # now, most at once
    backends: set[Any] = set()

    def work(txn: Transaction) -> None:
        with lock:
            running[0] += 1
            running[1] = max(running[1], running[0])
        if txn.engine.name == "psycopg2":
            txn.execute("SELECT pg_backend_pid()")
            backends.add(txn.fetchone()[0])  # type: ignore[index]
        time.sleep(0.05)
        with lock:
            running[0] -= 1

    try:
        await defer.gatherResults(
            [defer.ensureDeferred(db.run_interaction("work", work)) for _ in range(12)],
            consumeErrors=True,
        )
    finally:
        await db.close()
    expected = 1 if engine_name == "sqlite3" else 3
    assert db.max_connections == expected
    assert running[1] == expected
    assert len(backends) <= expected


async def test_close_waits_for_running_transactions(database: Database, reactor: Any) -> None:
    """close() lets a running transaction commit, and refuses new ones meanwhile."""
    await database.run_interaction("create", _create_table_txn)
    started: defer.Deferred[None] = defer.Deferred()
    release = threading.Event()

    def slow_insert(txn: Transaction) -> str:
        reactor.callFromThread(started.callback, None)
        assert release.wait(10)
        _insert_txn(txn, 1, "one")
        return "done"

    running = defer.ensureDeferred(database.run_interaction("slow_insert", slow_insert))
    await started
    closing = defer.ensureDeferred(database.close())
    closing_again = defer.ensureDeferred(database.close())
    assert not closing.called and not closing_again.called
    with pytest.raises(DatabaseClosedError):
        await database.run_interaction("late", _select_all_txn)
    release.set()
    await closing
    await closing_again
    assert await running == "done"


async def test_slow_transactions_are_logged(
    database: Database, caplog: pytest.LogCaptureFixture
) -> None:
    """A transaction over slow_transaction_seconds is logged as a warning with its name."""
    database.slow_transaction_seconds = 0.0
    with caplog.at_level(logging.WARNING, logger="homeserver.storage.database"):
        await database.run_interaction("sleepy", lambda txn: time.sleep(0.01))
    assert any("[sleepy] slow transaction" in r.getMessage() for r in caplog.records)


@pytest.mark.postgres
async def test_broken_postgres_connection_is_replaced(
    postgres: PostgresServer, reactor: Any
) -> None:
    """A connection the server dropped fails its transaction once, then is replaced."""
    import psycopg2

    args = postgres.create_database()
    database = Database(reactor, "psycopg2", args, cp_min=1, cp_max=1)
    await database.start()

    def backend_pid(txn: Transaction) -> int:
        txn.execute("SELECT pg_backend_pid()")
        return int(txn.fetchone()[0])  # type: ignore[index]

    try:
        pid = await database.run_interaction("pid", backend_pid)
        admin = psycopg2.connect(**args)
        admin.autocommit = True
        admin.cursor().execute("SELECT pg_terminate_backend(%s)", (pid,))
        admin.close()
        with pytest.raises(psycopg2.OperationalError):
            await database.run_interaction("pid", backend_pid)
        assert await database.run_interaction("pid", backend_pid) != pid
    finally:
        await database.close()


_KILL_SCRIPT = textwrap.dedent(
    """
    import json, os, signal, sys
    from twisted.internet import defer, reactor
    from homeserver.storage.database import Database

    engine_name, args = json.loads(sys.argv[1])

    def insert(txn):
        txn.execute("INSERT INTO items (id, value) VALUES (?, ?)", (1, "kept"))

    async def main():
        db = Database(reactor, engine_name, args, cp_min=1, cp_max=1)
        await db.start()
        await db.run_interaction("insert", insert)
        # Acknowledged: die without closing anything.
        os.kill(os.getpid(), signal.SIGKILL)

    def failed(f):
        f.printTraceback()
        os._exit(3)

    defer.ensureDeferred(main()).addErrback(failed)
    reactor.run()
    """
)


def test_committed_write_survives_kill_9(db_config: DbConfig, reactor: Any) -> None:
    """A transaction that run_interaction reported committed is there after the process is SIGKILLed."""
    engine_name, args = db_config
    db = Database(reactor, engine_name, args, cp_min=1, cp_max=1)
    run_on_reactor(db.start())
    run_on_reactor(db.run_interaction("create", _create_table_txn))
    run_on_reactor(db.close())

    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    child = subprocess.run(
        [sys.executable, "-c", _KILL_SCRIPT, json.dumps([engine_name, args])],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert child.returncode == -signal.SIGKILL, child.stderr

    db = Database(reactor, engine_name, args, cp_min=1, cp_max=1)
    run_on_reactor(db.start())
    try:
        assert run_on_reactor(db.run_interaction("select", _select_all_txn)) == [(1, "kept")]
    finally:
        run_on_reactor(db.close())
