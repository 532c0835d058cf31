"""Database: a bounded pool of connections on threads, and transactions run through it.

Stores keep their SQL in synchronous `_x_txn(txn, ...)` functions and run them
with `await db.run_interaction("x", _x_txn, ...)`. The function runs on a
database thread inside one transaction: committed if it returns, rolled back if
it raises. A transaction that lost a race with another one (PostgreSQL
serialisation failure or deadlock, SQLite "database is locked") is rolled back
and run again from the start, a few times with a growing pause, so txn functions
must not have side effects outside the database (build results, don't send
them). The name labels the `DB_TRANSACTIONS` / `DB_TRANSACTION_DURATION`
metrics and the log lines, and a transaction slower than
`Database.slow_transaction_seconds` is logged as a warning.

Connections: PostgreSQL gets between cp_min and cp_max connections, each used by
one transaction at a time, so at most cp_max transactions run at once and the
rest queue. SQLite gets exactly one connection whatever the config says (see
`engines.Sqlite3Engine`).

`Transaction` is what txn functions receive: a cursor that takes `?`
placeholders on both engines.
"""

from __future__ import annotations

import contextvars
import logging
import random
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any, Concatenate, ParamSpec, TypeVar

from twisted.internet import defer, task, threads
from twisted.python.threadpool import ThreadPool

from homeserver.metrics import DB_TRANSACTION_DURATION, DB_TRANSACTIONS
from homeserver.storage.engines import Engine, create_engine
from homeserver.storage.prepare import prepare_database_txn

logger = logging.getLogger(__name__)
sql_logger = logging.getLogger("homeserver.storage.SQL")

P = ParamSpec("P")
R = TypeVar("R")


class DatabaseClosedError(Exception):
    """run_interaction was called on a Database that is closed or closing."""


class Transaction:
    """The cursor a txn function gets: `?` placeholders on both engines.

    Only valid inside the function it was passed to.
    """

    __slots__ = ("name", "engine", "_cursor")

    def __init__(self, name: str, engine: Engine, cursor: Any) -> None:
        self.name = name
        """The transaction's name, as given to run_interaction."""
        self.engine = engine
        """The engine; for storage internals (migrations, streams), not for stores' SQL."""
        self._cursor = cursor

    def execute(self, sql: str, args: Sequence[Any] = ()) -> None:
        """Run one statement with `?` placeholders."""
        if sql_logger.isEnabledFor(logging.DEBUG):
            sql_logger.debug("[%s] %s %r", self.name, sql, args)
        self._cursor.execute(self.engine.convert_sql(sql), tuple(args))

    def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> None:
        """Run one statement once per row of arguments. `rowcount` is not meaningful after it."""
        if sql_logger.isEnabledFor(logging.DEBUG):
            sql_logger.debug("[%s] %s (many)", self.name, sql)
        self.engine.executemany(
            self._cursor, self.engine.convert_sql(sql), [tuple(r) for r in rows]
        )

    def execute_script(self, script: str) -> None:
        """Run several `;`-terminated statements without parameters (migrations)."""
        self.engine.execute_script(self._cursor, script)

    def fetchone(self) -> tuple[Any, ...] | None:
        row = self._cursor.fetchone()
        return None if row is None else tuple(row)

    def fetchall(self) -> list[tuple[Any, ...]]:
        return [tuple(row) for row in self._cursor.fetchall()]

    def __iter__(self) -> Iterator[tuple[Any, ...]]:
        for row in self._cursor:
            yield tuple(row)

    @property
    def rowcount(self) -> int:
        """Rows changed by the last execute() (INSERT/UPDATE/DELETE)."""
        return int(self._cursor.rowcount)


class _Attempt:
    """What one try of a transaction gave: a result or an error, and how long it took."""

    __slots__ = ("result", "error", "duration")

    def __init__(self, result: Any, error: BaseException | None, duration: float) -> None:
        self.result = result
        self.error = error
        self.duration = duration


class Database:
    """One database (SQLite file or PostgreSQL database) and the threads that talk to it.

    Lifecycle: `await start()` (pool, checks, migrations), any number of
    `run_interaction` calls, `await close()`. If the reactor shuts down first, the
    database closes itself during shutdown.
    """

    max_attempts = 8
    """How many times a transaction is tried when it keeps losing races."""
    retry_backoff_seconds = 0.01
    """Pause before the first retry; it doubles for each further one, up to `max_retry_pause_seconds`."""
    max_retry_pause_seconds = 0.5
    slow_transaction_seconds = 1.0
    """Transactions slower than this (time inside the database, all tries) are logged as warnings."""

    def __init__(
        self,
        reactor: Any,
        engine_name: str,
        connect_args: dict[str, Any],
        cp_min: int,
        cp_max: int,
    ) -> None:
        """
        Args:
            reactor: provides IReactorCore, IReactorTime and IReactorFromThreads.
            engine_name: "sqlite3" or "psycopg2".
            connect_args: the config's database `args` without cp_min/cp_max;
                for sqlite3, `database` is the file path.
            cp_min, cp_max: bounds of the connection pool (ignored for SQLite).
        """
        self._reactor = reactor
        self.engine = create_engine(engine_name, connect_args)
        self._pool_min, self._pool_max = self.engine.pool_size(cp_min, cp_max)
        self._threadpool: ThreadPool | None = None
        self._lock = threading.Lock()
        self._idle_connections: list[Any] = []
        self._in_flight = 0
        self._idle_waiters: list[defer.Deferred[None]] = []
        self._closing = False
        self._closed = False
        self._closed_waiters: list[defer.Deferred[None]] = []
        self._shutdown_trigger: Any = None

    @property
    def max_connections(self) -> int:
        """The most connections (and concurrent transactions) this database will have."""
        return self._pool_max

    async def open(self) -> None:
        """Start the pool and check the database is fit to use, without touching the schema.

        `start()` does this and then upgrades the schema; tools that manage the
        schema themselves (and tests of the migrations) call this instead.
        """
        if self._threadpool is not None:
            raise RuntimeError("database already opened")
        self._threadpool = ThreadPool(self._pool_min, self._pool_max, f"db-{self.engine.name}")
        self._threadpool.start()
        self._shutdown_trigger = self._reactor.addSystemEventTrigger(
            "during", "shutdown", self._close_on_shutdown
        )
        try:
            await self.run_interaction("check_database", self.engine.check_database_txn)
        except BaseException:
            await self.close()
            raise

    async def start(self) -> None:
        """Open the pool, check the database, and bring its schema up to date.

        Raises a `homeserver.storage.errors.StorageStartupError` (after closing
        again) if the database can't be used.
        """
        await self.open()
        try:
            await self.run_interaction("prepare_database", prepare_database_txn)
        except BaseException:
            await self.close()
            raise

    async def close(self) -> None:
        """Let running transactions finish (retries included), then close every connection.

        run_interaction raises DatabaseClosedError once closing has begun. Calling
        close() again waits for the first call to finish.
        """
        if self._closing:
            if not self._closed:
                done: defer.Deferred[None] = defer.Deferred()
                self._closed_waiters.append(done)
                await done
            return
        self._closing = True
        if self._shutdown_trigger is not None:
            try:
                self._reactor.removeSystemEventTrigger(self._shutdown_trigger)
            except (ValueError, KeyError):
                pass  # already fired: we are being closed by the shutdown trigger itself
            self._shutdown_trigger = None
        if self._in_flight:
            waiter: defer.Deferred[None] = defer.Deferred()
            self._idle_waiters.append(waiter)
            await waiter
        if self._threadpool is not None:
            # Every thread is idle by now, so joining them is quick.
            self._threadpool.stop()
        with self._lock:
            connections, self._idle_connections = self._idle_connections, []
        for conn in connections:
            try:
                conn.close()
            except Exception:
                logger.warning("error closing a database connection", exc_info=True)
        self._closed = True
        waiters, self._closed_waiters = self._closed_waiters, []
        for done in waiters:
            done.callback(None)

    def _close_on_shutdown(self) -> defer.Deferred[None]:
        self._shutdown_trigger = None
        return defer.ensureDeferred(self.close())

    async def run_interaction(
        self,
        name: str,
        fn: Callable[Concatenate[Transaction, P], R],
        /,
        *args: P.args,
        **kwargs: P.kwargs,
    ) -> R:
        """Run `fn(txn, *args, **kwargs)` in one transaction on a database thread.

        Commits if fn returns, rolls back if it raises. Runs it again (rolled
        back first) when it lost a race with another transaction, up to
        `max_attempts` tries, and otherwise re-raises what fn or the database
        raised.
        """
        if self._closing or self._threadpool is None:
            raise DatabaseClosedError(f"database is {'closed' if self._closing else 'not open'}")
        self._in_flight += 1
        total = 0.0
        try:
            for attempt in range(1, self.max_attempts + 1):
                ctx = contextvars.copy_context()
                outcome: _Attempt = await threads.deferToThreadPool(
                    self._reactor, self._threadpool, ctx.run, self._attempt, name, fn, args, kwargs
                )
                total += outcome.duration
                error = outcome.error
                if error is None:
                    DB_TRANSACTIONS.labels(name, "ok").inc()
                    return outcome.result  # type: ignore[no-any-return]
                if attempt < self.max_attempts and self.engine.is_transient_conflict(error):
                    DB_TRANSACTIONS.labels(name, "retry").inc()
                    pause = min(
                        self.retry_backoff_seconds * 2 ** (attempt - 1),
                        self.max_retry_pause_seconds,
                    ) * random.uniform(0.5, 1.5)
                    logger.info(
                        "[%s] transaction conflict (%s), retrying in %.3fs (try %d of %d)",
                        name,
                        str(error).strip(),
                        pause,
                        attempt + 1,
                        self.max_attempts,
                    )
                    await task.deferLater(self._reactor, pause)
                    continue
                DB_TRANSACTIONS.labels(name, "error").inc()
                raise error
            raise AssertionError("unreachable")
        finally:
            DB_TRANSACTION_DURATION.labels(name).observe(total)
            if total > self.slow_transaction_seconds:
                logger.warning("[%s] slow transaction: %.3fs in the database", name, total)
            self._in_flight -= 1
            if not self._in_flight and self._idle_waiters:
                waiters, self._idle_waiters = self._idle_waiters, []
                for waiter in waiters:
                    waiter.callback(None)

    def _attempt(
        self,
        name: str,
        fn: Callable[..., Any],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
    ) -> _Attempt:
        """One try of a transaction, on a database thread. Never raises."""
        start = self._reactor.seconds()
        conn = None
        broken = False
        try:
            with self._lock:
                conn = self._idle_connections.pop() if self._idle_connections else None
            if conn is None:
                conn = self.engine.connect()
            cursor = conn.cursor()
            try:
                self.engine.begin(cursor)
                result = fn(Transaction(name, self.engine, cursor), *args, **kwargs)
                conn.commit()
            except BaseException:
                try:
                    conn.rollback()
                except Exception:
                    logger.warning(
                        "[%s] rollback failed; dropping the connection", name, exc_info=True
                    )
                    broken = True
                raise
            finally:
                try:
                    cursor.close()
                except Exception:
                    broken = True
            return _Attempt(result, None, self._reactor.seconds() - start)
        except Exception as error:
            return _Attempt(None, error, self._reactor.seconds() - start)
        finally:
            if conn is not None:
                if broken or self.engine.is_connection_broken(conn):
                    try:
                        conn.close()
                    except Exception:
                        pass
                else:
                    with self._lock:
                        self._idle_connections.append(conn)
