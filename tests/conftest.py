"""Shared test fixtures: running async tests on the Twisted reactor, and databases.

Async tests
-----------
A test written as `async def test_x(...)` runs on the real global Twisted
reactor, in the main thread: `run_on_reactor(coroutine)` wraps it in a Deferred
and runs the reactor until that Deferred fires, then stops the loop with
`reactor.crash()` so the next test can run it again (this is how Twisted's own
trial runner waits on Deferreds; `reactor.stop()` would end the reactor for
good). Between tests the reactor is idle. The same helper drives async setup in
synchronous fixtures (see `database`). Anything that needs real threads, sockets
or timers (the database pool, in-process HTTP servers) works as in production;
tests that want a fake clock use twisted.internet.testing.MemoryReactorClock
instead and don't need this. After each test, timed calls left on the reactor
are cancelled and fail the test: clean up what you start. At the end of the
session the reactor is shut down properly, firing its shutdown triggers.

Databases
---------
`db_config` is parametrized over both engines and yields (engine_name,
connect_args) for a fresh, empty database: an SQLite file under tmp_path, or a
PostgreSQL database created for the test (ENCODING 'UTF8', C collation, from
template0) and dropped afterwards. `make_db_config()` gives further fresh
databases of the same engine, and `database` a started `Database` on one.

In-process homeservers
----------------------
`homeserver_factory`, `homeserver` and `client` run a real HomeServer on an
ephemeral loopback port over the test's database (so on both engines) and
talk HTTP to it; see tests/homeserver_harness.py.

The PostgreSQL server comes from HOMESERVER_TEST_POSTGRES, a libpq DSN
("host=... port=... user=... dbname=...") or "host:port" (default
"host=127.0.0.1 port=5432 user=postgres dbname=test"), with a user allowed to
create databases. If it can't be reached the PostgreSQL tests FAIL, unless
HOMESERVER_TEST_SKIP_POSTGRES=1, when they are skipped.
"""

from __future__ import annotations

import inspect
import os
import re
import sys
import uuid
from collections.abc import Awaitable, Callable, Iterator
from typing import Any, TypeVar

import pytest

T = TypeVar("T")

DEFAULT_TEST_TIMEOUT = 60.0


def _reactor() -> Any:
    from twisted.internet import reactor

    return reactor


def run_on_reactor(awaitable: Awaitable[T], timeout: float = DEFAULT_TEST_TIMEOUT) -> T:
    """Run the global reactor until `awaitable` (a coroutine or Deferred) is done; return its result."""
    from twisted.internet import defer
    from twisted.python.failure import Failure

    reactor = _reactor()
    if reactor.running:
        raise RuntimeError("run_on_reactor is not reentrant: await instead")
    d = defer.ensureDeferred(awaitable)
    results: list[Any] = []
    d.addBoth(results.append)
    if not results:
        timed_out: list[bool] = []

        def on_timeout() -> None:
            timed_out.append(True)
            d.cancel()

        timer = reactor.callLater(timeout, on_timeout)
        d.addBoth(lambda _: reactor.crash())
        # As trial does: code under test that stops the reactor only ends this
        # run, instead of making the reactor unusable for the following tests.
        reactor.stop = reactor.crash
        try:
            reactor.run(installSignalHandlers=False)
        finally:
            del reactor.stop
        if timer.active():
            timer.cancel()
        if timed_out:
            raise TimeoutError(f"not done after {timeout}s")
        if not results:
            raise RuntimeError("the reactor stopped before the awaitable finished")
    result = results[0]
    if isinstance(result, Failure):
        result.raiseException()
    return result  # type: ignore[no-any-return]


@pytest.hookimpl(tryfirst=True)
def pytest_pyfunc_call(pyfuncitem: pytest.Function) -> bool | None:
    """Run `async def` tests with run_on_reactor."""
    if not inspect.iscoroutinefunction(pyfuncitem.obj):
        return None
    kwargs = {name: pyfuncitem.funcargs[name] for name in pyfuncitem._fixtureinfo.argnames}
    run_on_reactor(pyfuncitem.obj(**kwargs))
    return True


@pytest.fixture(autouse=True)
def _reactor_janitor() -> Iterator[None]:
    """Fail a test that leaves timed calls on the global reactor."""
    yield
    if "twisted.internet.reactor" not in sys.modules:
        return
    leftover = [call for call in _reactor().getDelayedCalls() if call.active()]
    for call in leftover:
        call.cancel()
    if leftover:
        pytest.fail(f"test left timed calls on the reactor: {leftover}")


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Shut the reactor down (firing shutdown triggers: open databases close, threads stop)."""
    if "twisted.internet.reactor" not in sys.modules:
        return
    reactor = _reactor()
    if reactor.running:
        return
    reactor.callWhenRunning(reactor.stop)
    reactor.run(installSignalHandlers=False)


@pytest.fixture
def reactor() -> Any:
    """The global Twisted reactor (to inject into what a test builds)."""
    return _reactor()


# ---------------------------------------------------------------------------
# PostgreSQL


class PostgresServer:
    """The test PostgreSQL server: creates and drops throwaway databases."""

    def __init__(self, admin_args: dict[str, str]) -> None:
        self.admin_args = admin_args
        self._created: list[str] = []
        self._schemas: list[str] = []
        self._shared_db: str | None = None

    def _admin(self, dbname: str | None = None) -> Any:
        import psycopg2

        args = self.admin_args if dbname is None else {**self.admin_args, "dbname": dbname}
        conn = psycopg2.connect(**args)
        conn.autocommit = True
        return conn

    def create_database(
        self, *, encoding: str = "UTF8", collate: str = "C", ctype: str = "C"
    ) -> dict[str, str]:
        """A new empty database; returns psycopg2 connect args for it."""
        name = f"hs_test_{os.getpid()}_{uuid.uuid4().hex[:10]}"
        conn = self._admin()
        try:
            with conn.cursor() as cur:
                cur.execute(
                    f'CREATE DATABASE "{name}" ENCODING %s LC_COLLATE %s LC_CTYPE %s'
                    " TEMPLATE template0",
                    (encoding, collate, ctype),
                )
        finally:
            conn.close()
        self._created.append(name)
        return {**self.admin_args, "dbname": name}

    def drop_database(self, name: str) -> None:
        conn = self._admin()
        try:
            with conn.cursor() as cur:
                cur.execute(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                    " WHERE datname = %s AND pid <> pg_backend_pid()",
                    (name,),
                )
                cur.execute(f'DROP DATABASE IF EXISTS "{name}"')
        finally:
            conn.close()

    def drop_created(self) -> None:
        while self._created:
            self.drop_database(self._created.pop())
        while self._schemas:
            self._drop_schema(self._schemas.pop())

    # Most tests need an empty database, not a database of their own: a schema
    # (with the connection's search_path set to it) in one shared database is
    # empty to everything the server does (it only looks at current_schema()),
    # and costs a few milliseconds where CREATE DATABASE costs half a second.

    def create_schema(self) -> dict[str, str]:
        """Connect args for a new empty schema in this process's shared database."""
        if self._shared_db is None:
            self._shared_db = self.create_database()["dbname"]
            self._created.remove(self._shared_db)  # kept for the session
        name = f"t_{uuid.uuid4().hex[:12]}"
        conn = self._admin(self._shared_db)
        try:
            with conn.cursor() as cur:
                cur.execute(f'CREATE SCHEMA "{name}"')
        finally:
            conn.close()
        self._schemas.append(name)
        return {**self.admin_args, "dbname": self._shared_db, "options": f"-c search_path={name}"}

    def _drop_schema(self, name: str) -> None:
        assert self._shared_db is not None
        conn = self._admin(self._shared_db)
        try:
            with conn.cursor() as cur:
                cur.execute(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s"
                    " AND pid <> pg_backend_pid() AND state = 'idle in transaction'",
                    (self._shared_db,),
                )
                cur.execute("SET lock_timeout = '5s'")
                cur.execute(f'DROP SCHEMA IF EXISTS "{name}" CASCADE')
        except Exception as e:  # left for the end of the session, when the database goes
            print(f"could not drop test schema {name}: {e}", file=sys.stderr)
        finally:
            conn.close()

    def close(self) -> None:
        """Drop the shared database (end of the test session)."""
        if self._shared_db is not None:
            self.drop_database(self._shared_db)
            self._shared_db = None


def _postgres_admin_args() -> dict[str, str]:
    from psycopg2.extensions import parse_dsn

    dsn = os.environ.get("HOMESERVER_TEST_POSTGRES", "").strip()
    if not dsn:
        dsn = "host=127.0.0.1 port=5432 user=postgres dbname=test"
    match = re.fullmatch(r"\[?([^\s=\]]+)\]?:(\d+)", dsn)
    if match:
        dsn = f"host={match.group(1)} port={match.group(2)} user=postgres dbname=postgres"
    args: dict[str, str] = parse_dsn(dsn)
    args.pop("database", None)
    args.setdefault("dbname", "postgres")
    return args


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """The reachable test PostgreSQL server, or a failure (skip with HOMESERVER_TEST_SKIP_POSTGRES=1)."""
    import psycopg2

    args = _postgres_admin_args()
    try:
        psycopg2.connect(**{"connect_timeout": "5", **args}).close()
    except psycopg2.Error as e:
        message = f"PostgreSQL for tests unreachable ({args}): {' '.join(str(e).split())}"
        if os.environ.get("HOMESERVER_TEST_SKIP_POSTGRES") == "1":
            pytest.skip(message)
        pytest.fail(
            message + " -- set HOMESERVER_TEST_POSTGRES, or HOMESERVER_TEST_SKIP_POSTGRES=1 to skip"
        )
    server = PostgresServer(args)
    yield server
    server.close()


@pytest.fixture
def postgres(postgres_server: PostgresServer) -> Iterator[PostgresServer]:
    """The PostgreSQL server; databases created through it during the test are dropped after."""
    yield postgres_server
    postgres_server.drop_created()


# ---------------------------------------------------------------------------
# Databases on both engines

DbConfig = tuple[str, dict[str, Any]]


@pytest.fixture(params=["sqlite3", pytest.param("psycopg2", marks=pytest.mark.postgres)])
def db_engine(request: pytest.FixtureRequest) -> str:
    """The engine name; tests using database fixtures run once for each engine."""
    return str(request.param)


@pytest.fixture
def make_db_config(
    db_engine: str, tmp_path: Any, request: pytest.FixtureRequest
) -> Callable[[], DbConfig]:
    """A function returning (engine_name, connect_args) for a new empty database each call."""
    counter = iter(range(1_000_000))

    if db_engine == "sqlite3":

        def make() -> DbConfig:
            return ("sqlite3", {"database": str(tmp_path / f"homeserver-{next(counter)}.db")})

        return make

    server: PostgresServer = request.getfixturevalue("postgres")

    def make_pg() -> DbConfig:
        return ("psycopg2", server.create_schema())

    return make_pg


@pytest.fixture
def db_config(make_db_config: Callable[[], DbConfig]) -> DbConfig:
    """(engine_name, connect_args) for a fresh empty database, on each engine in turn."""
    return make_db_config()


@pytest.fixture
def database(db_config: DbConfig, reactor: Any) -> Iterator[Any]:
    """A started `homeserver.storage.database.Database` on a fresh database (both engines)."""
    from homeserver.storage.database import Database

    engine_name, connect_args = db_config
    db = Database(reactor, engine_name, connect_args, cp_min=1, cp_max=5)
    run_on_reactor(db.start())
    yield db
    run_on_reactor(db.close())


# ---------------------------------------------------------------------------
# In-process homeservers (see tests/homeserver_harness.py)


@pytest.fixture
def homeserver_factory(db_config: DbConfig, tmp_path: Any, reactor: Any) -> Iterator[Any]:
    """Starts HomeServers over the test's database (both engines); stops them after the test."""
    from tests.homeserver_harness import HomeServerFactory

    factory = HomeServerFactory(reactor, tmp_path, db_config)
    yield factory
    run_on_reactor(factory.stop_all())


@pytest.fixture
def homeserver(homeserver_factory: Any) -> Any:
    """A started HomeServer with the default test config."""
    return run_on_reactor(homeserver_factory.start())


@pytest.fixture
def client(homeserver_factory: Any, homeserver: Any) -> Any:
    """A TestClient bound to `homeserver`."""
    return homeserver_factory.client(homeserver)
