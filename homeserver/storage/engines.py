"""The one place where SQLite and PostgreSQL differ.

Everything that depends on which database is underneath lives here: opening and
setting up a connection, turning the `?` placeholders that stores write into
psycopg2's `%s`, running a migration script, telling a transient conflict
(retry it) from a real error, checking the database is fit to use, and reading
back the schema so tests can compare two databases.

Stores never import this module and never branch on the engine: they write SQL
both engines accept (`?` placeholders, `INSERT ... ON CONFLICT ... DO UPDATE`,
`BIGINT`, `TEXT`, `BOOLEAN`) and, where a table really needs different DDL, the
migration ships a `.sqlite.sql` / `.postgres.sql` pair. Two differences remain
visible in results and are the stores' to handle: booleans come back from SQLite
as 0/1 (wrap with `bool()`), and PostgreSQL returns `Decimal` for `SUM()` over
integers. Binary columns come back as `bytes` on both (PostgreSQL's memoryview
is converted here).

SQLite is set up for one process: WAL journal, foreign keys on, and
`synchronous=FULL`. With WAL, `NORMAL` already keeps every committed transaction
across a crash of the process (`kill -9`), because the commit has been written to
the WAL file and the kernel keeps it; what `NORMAL` can lose is the last
transactions before a power cut or kernel crash. We promise clients and remote
servers that an acknowledged write is durable, and a federated event that a
remote server has but we lost is worse than an fsync per commit on a small
server, so we pay for `FULL`, which fsyncs the WAL at each commit (PostgreSQL's
default `synchronous_commit=on` makes the same promise).

PostgreSQL connections use REPEATABLE READ, as Synapse does: a transaction sees
one snapshot, and a write that conflicts with a concurrent one fails with a
serialisation failure, which `Database.run_interaction` retries. The database
must be UTF8 with C collation (text ordering and indexes must not change when
the operating system's locale data does); `check_database_txn` refuses anything
else at start.
"""

from __future__ import annotations

import functools
import logging
import re
import sqlite3
from abc import ABC, abstractmethod
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

from homeserver.storage.errors import IncorrectDatabaseSetupError

if TYPE_CHECKING:
    from homeserver.storage.database import Transaction

logger = logging.getLogger(__name__)

# The key of the PostgreSQL advisory lock that serialises schema upgrades between
# processes starting at the same time ("hsmg" in ASCII).
_SCHEMA_LOCK_KEY = 0x68736D67

# Oldest SQLite with everything the stores rely on (`INSERT ... ON CONFLICT DO
# UPDATE` arrived in 3.24, `RETURNING` in 3.35).
_MIN_SQLITE_VERSION = (3, 35, 0)

CREATE_DATABASE_HINT = (
    "CREATE DATABASE <name> ENCODING 'UTF8' LC_COLLATE='C' LC_CTYPE='C' "
    "TEMPLATE template0 OWNER <user>;"
)


class Engine(ABC):
    """What the rest of storage needs to know about one kind of database."""

    name: str
    """The config name: "sqlite3" or "psycopg2"."""

    single_process: bool
    """True if only one process may use the database (so stream positions may live in memory)."""

    schema_file_tag: str
    """Migration files named `*.<tag>.sql` run only on this engine (`*.sql` run on both)."""

    @abstractmethod
    def pool_size(self, cp_min: int, cp_max: int) -> tuple[int, int]:
        """The (min, max) number of connections to keep, given the configured bounds."""

    @abstractmethod
    def connect(self) -> Any:
        """Open and set up a new DB-API connection. Called on a database thread."""

    @abstractmethod
    def begin(self, cursor: Any) -> None:
        """Start a transaction on a connection that has none open."""

    @abstractmethod
    def convert_sql(self, sql: str) -> str:
        """Turn SQL written with `?` placeholders into what the driver expects."""

    @abstractmethod
    def executemany(self, cursor: Any, sql: str, rows: Iterable[Sequence[Any]]) -> None:
        """Run `sql` (already converted) once per row of arguments, as fast as the driver can."""

    @abstractmethod
    def execute_script(self, cursor: Any, script: str) -> None:
        """Run a migration script: several `;`-terminated statements, no parameters."""

    @abstractmethod
    def is_transient_conflict(self, error: BaseException) -> bool:
        """True if `error` means "another transaction got in the way; run it again"."""

    def is_connection_broken(self, conn: Any) -> bool:
        """True if `conn` can't be used again and must be thrown away."""
        return False

    @abstractmethod
    def check_database_txn(self, txn: Transaction) -> None:
        """Refuse (IncorrectDatabaseSetupError) a database the homeserver must not run on."""

    @abstractmethod
    def lock_schema_txn(self, txn: Transaction) -> None:
        """Keep other processes from upgrading the schema until this transaction ends."""

    @abstractmethod
    def list_tables_txn(self, txn: Transaction) -> list[str]:
        """The names of the tables in the database (the homeserver's schema), sorted."""

    @abstractmethod
    def describe_schema_txn(self, txn: Transaction) -> dict[str, list[tuple[Any, ...]]]:
        """Tables, columns, indexes, constraints, ... as sorted tuples, for comparing two databases.

        Column order is not part of it (a column added by `ALTER TABLE` comes
        last, one written in a fresh `CREATE TABLE` need not), so stores must name
        their columns rather than `SELECT *`.
        """


def create_engine(engine_name: str, connect_args: dict[str, Any]) -> Engine:
    """The engine for a config's `database.name` ("sqlite3" or "psycopg2") and `args`."""
    if engine_name == "sqlite3":
        return Sqlite3Engine(connect_args)
    if engine_name == "psycopg2":
        return PostgresEngine(connect_args)
    raise ValueError(f"unknown database engine {engine_name!r}: expected 'sqlite3' or 'psycopg2'")


# ---------------------------------------------------------------------------
# SQLite


class Sqlite3Engine(Engine):
    """SQLite through the standard library's sqlite3 module, one process, one connection.

    The pool holds a single connection: SQLite allows one writer at a time, and
    with one connection transactions queue in our pool instead of spinning on
    SQLITE_BUSY against each other. WAL still lets other processes (backups,
    the sqlite3 shell) read while we write.
    """

    name = "sqlite3"
    single_process = True
    schema_file_tag = "sqlite"

    def __init__(self, connect_args: dict[str, Any]) -> None:
        if sqlite3.sqlite_version_info < _MIN_SQLITE_VERSION:
            raise IncorrectDatabaseSetupError(
                f"SQLite {sqlite3.sqlite_version} is too old: the homeserver needs "
                f"{'.'.join(map(str, _MIN_SQLITE_VERSION))} or newer."
            )
        if "database" not in connect_args:
            raise ValueError("sqlite3 database args need 'database' (the file path)")
        for forced in ("isolation_level", "check_same_thread"):
            if forced in connect_args:
                raise ValueError(f"sqlite3 database args may not set {forced!r}")
        self._connect_args = dict(connect_args)

    def pool_size(self, cp_min: int, cp_max: int) -> tuple[int, int]:
        return (1, 1)

    def connect(self) -> sqlite3.Connection:
        # isolation_level=None: the module never opens transactions on its own;
        # begin() issues BEGIN, so a transaction covers reads as well as writes.
        # check_same_thread=False: the pool hands the connection between threads,
        # one transaction at a time.
        conn = sqlite3.connect(**self._connect_args, isolation_level=None, check_same_thread=False)
        try:
            mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            if mode.lower() not in ("wal", "memory"):
                logger.warning(
                    "SQLite refused WAL journal mode (got %r); writes block readers", mode
                )
            conn.execute("PRAGMA synchronous = FULL")
            conn.execute("PRAGMA foreign_keys = ON")
        except BaseException:
            conn.close()
            raise
        return conn  # type: ignore[no-any-return]  # typeshed: connect(**kwargs) is Any

    def begin(self, cursor: sqlite3.Cursor) -> None:
        cursor.execute("BEGIN")

    def convert_sql(self, sql: str) -> str:
        return sql

    def executemany(self, cursor: sqlite3.Cursor, sql: str, rows: Iterable[Sequence[Any]]) -> None:
        cursor.executemany(sql, rows)

    def execute_script(self, cursor: sqlite3.Cursor, script: str) -> None:
        # Cursor.executescript would COMMIT first, so run the statements one by
        # one inside our transaction. sqlite3.complete_statement knows about
        # strings, comments and trigger bodies, so split only where it agrees.
        statement = ""
        for piece in script.split(";"):
            statement += piece + ";"
            if sqlite3.complete_statement(statement):
                cursor.execute(statement)
                statement = ""
        if statement.strip(" \t\r\n;"):
            cursor.execute(statement)

    def is_transient_conflict(self, error: BaseException) -> bool:
        if not isinstance(error, sqlite3.OperationalError):
            return False
        code = getattr(error, "sqlite_errorcode", None)
        if code is not None:
            return code & 0xFF in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED)
        message = str(error)
        return message.startswith(("database is locked", "database table is locked"))

    def check_database_txn(self, txn: Transaction) -> None:
        # Everything SQLite needs is set per connection in connect().
        pass

    def lock_schema_txn(self, txn: Transaction) -> None:
        # One process only (see the class docstring): nobody to race with.
        pass

    def list_tables_txn(self, txn: Transaction) -> list[str]:
        txn.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'"
            " ORDER BY name"
        )
        return [row[0] for row in txn.fetchall()]

    def describe_schema_txn(self, txn: Transaction) -> dict[str, list[tuple[Any, ...]]]:
        tables = self.list_tables_txn(txn)
        columns: list[tuple[Any, ...]] = []
        indexes: list[tuple[Any, ...]] = []
        foreign_keys: list[tuple[Any, ...]] = []
        for table in tables:
            txn.execute(
                'SELECT name, upper(type), "notnull", dflt_value, pk FROM pragma_table_info(?)',
                (table,),
            )
            columns.extend((table, *row) for row in txn.fetchall())
            txn.execute(
                'SELECT name, origin, "unique", partial FROM pragma_index_list(?)', (table,)
            )
            for index_name, origin, unique, partial in txn.fetchall():
                txn.execute("SELECT name FROM pragma_index_info(?) ORDER BY seqno", (index_name,))
                index_columns = tuple(row[0] for row in txn.fetchall())
                sql = None
                if origin == "c":
                    txn.execute("SELECT sql FROM sqlite_master WHERE name = ?", (index_name,))
                    row = txn.fetchone()
                    assert row is not None
                    sql = _normalise_sql(row[0])
                else:
                    # Automatic indexes for UNIQUE / PRIMARY KEY constraints are
                    # named by position (sqlite_autoindex_t_1): compare by content.
                    index_name = None
                indexes.append((table, index_name, origin, unique, partial, index_columns, sql))
            txn.execute(
                'SELECT "table", "from", "to", on_update, on_delete, "match"'
                " FROM pragma_foreign_key_list(?)",
                (table,),
            )
            foreign_keys.extend((table, *row) for row in txn.fetchall())
        txn.execute(
            "SELECT type, name, tbl_name, sql FROM sqlite_master WHERE type IN ('view', 'trigger')"
        )
        others = [
            (kind, name, table, _normalise_sql(sql)) for kind, name, table, sql in txn.fetchall()
        ]
        # CHECK constraints are only in the CREATE TABLE text, which ALTER TABLE
        # edits in place; PostgreSQL's description covers them.
        return {
            "tables": [(t,) for t in tables],
            "columns": sorted(columns),
            "indexes": sorted(indexes, key=repr),
            "foreign_keys": sorted(foreign_keys, key=repr),
            "views_and_triggers": sorted(others),
        }


def _normalise_sql(sql: str) -> str:
    return " ".join(sql.split())


# ---------------------------------------------------------------------------
# PostgreSQL


# Strings, quoted identifiers, comments and dollar-quoted bodies are copied
# through (only their `%` doubled, as psycopg2 formats the whole text); `?`
# outside them becomes `%s` and a bare `%` becomes `%%`.
_PG_TOKEN = re.compile(
    r"""
      (?<![\w$])[eE]'(?:[^'\\]|\\.|'')*'   # E'...' string with backslash escapes
    | '(?:[^']|'')*'                       # standard string
    | "(?:[^"]|"")*"                       # quoted identifier
    | --[^\n]*                             # line comment
    | /\*.*?\*/                            # block comment
    | \$(?P<tag>(?:[A-Za-z_]\w*)?)\$.*?\$(?P=tag)\$  # dollar-quoted body
    | \?
    | %
    """,
    re.VERBOSE | re.DOTALL,
)


def _pg_token(match: re.Match[str]) -> str:
    token = match.group(0)
    if token == "?":
        return "%s"
    return token.replace("%", "%%")


@functools.lru_cache(maxsize=4096)
def qmark_to_pyformat(sql: str) -> str:
    """Rewrite `?` placeholders as psycopg2's `%s`, escaping literal `%` as `%%`.

    PostgreSQL's JSONB operators `?`, `?|` and `?&` can't be written in stores'
    SQL as a result; use `jsonb_exists()` and friends if ever needed.
    """
    return _PG_TOKEN.sub(_pg_token, sql)


class PostgresEngine(Engine):
    """PostgreSQL through psycopg2; several processes may share the database."""

    name = "psycopg2"
    single_process = False
    schema_file_tag = "postgres"

    def __init__(self, connect_args: dict[str, Any]) -> None:
        import psycopg2
        import psycopg2.errors
        import psycopg2.extensions
        import psycopg2.extras

        self._psycopg2 = psycopg2
        self._connect_args = dict(connect_args)

        def cast_bytea(value: str | None, cursor: Any) -> bytes | None:
            if value is None:
                return None
            return bytes(psycopg2.BINARY(value, cursor))

        self._bytea_type = psycopg2.extensions.new_type(
            psycopg2.BINARY.values, "BYTEA_AS_BYTES", cast_bytea
        )

    def pool_size(self, cp_min: int, cp_max: int) -> tuple[int, int]:
        if cp_max < 1 or cp_min < 0 or cp_min > cp_max:
            raise ValueError(f"need 0 <= cp_min <= cp_max and cp_max >= 1, got {cp_min}, {cp_max}")
        return (cp_min, cp_max)

    def connect(self) -> Any:
        psycopg2 = self._psycopg2
        conn = psycopg2.connect(**self._connect_args)
        try:
            conn.set_session(
                isolation_level=psycopg2.extensions.ISOLATION_LEVEL_REPEATABLE_READ,
                autocommit=False,
            )
            conn.set_client_encoding("UTF8")
            psycopg2.extensions.register_type(self._bytea_type, conn)
        except BaseException:
            conn.close()
            raise
        return conn

    def begin(self, cursor: Any) -> None:
        # psycopg2 sends BEGIN before the first statement of a transaction.
        pass

    def convert_sql(self, sql: str) -> str:
        return qmark_to_pyformat(sql)

    def executemany(self, cursor: Any, sql: str, rows: Iterable[Sequence[Any]]) -> None:
        # Several statements per round trip instead of one each.
        self._psycopg2.extras.execute_batch(cursor, sql, rows)

    def execute_script(self, cursor: Any, script: str) -> None:
        # psycopg2 sends several statements in one go; without parameters it
        # leaves `%` alone.
        cursor.execute(script)

    def is_transient_conflict(self, error: BaseException) -> bool:
        # 40001 serialization_failure, 40P01 deadlock_detected.
        return isinstance(error, self._psycopg2.Error) and error.pgcode in ("40001", "40P01")

    def is_connection_broken(self, conn: Any) -> bool:
        return bool(conn.closed)

    def check_database_txn(self, txn: Transaction) -> None:
        txn.execute(
            "SELECT current_database(), current_user, pg_encoding_to_char(encoding),"
            " datcollate, datctype FROM pg_database WHERE datname = current_database()"
        )
        row = txn.fetchone()
        assert row is not None
        name, user, encoding, collate, ctype = row
        problems = []
        if encoding != "UTF8":
            problems.append(f"encoding {encoding}")
        if collate not in ("C", "POSIX"):
            problems.append(f"LC_COLLATE {collate!r}")
        if ctype not in ("C", "POSIX"):
            problems.append(f"LC_CTYPE {ctype!r}")
        txn.execute("SHOW server_version_num")
        (version,) = txn.fetchall()[0]
        if int(version) >= 150000:
            txn.execute("SELECT datlocprovider FROM pg_database WHERE datname = current_database()")
            ((provider,),) = txn.fetchall()
            if provider == "i":
                problems.append("ICU locale provider")
        if problems:
            hint = CREATE_DATABASE_HINT.replace("<name>", name).replace("<user>", user)
            raise IncorrectDatabaseSetupError(
                f"PostgreSQL database {name!r} has {', '.join(problems)}; the homeserver needs"
                f" ENCODING 'UTF8' with LC_COLLATE and LC_CTYPE 'C'. Create one with: {hint}"
            )

    def lock_schema_txn(self, txn: Transaction) -> None:
        txn.execute("SELECT pg_advisory_xact_lock(?)", (_SCHEMA_LOCK_KEY,))

    def list_tables_txn(self, txn: Transaction) -> list[str]:
        txn.execute(
            "SELECT tablename FROM pg_tables WHERE schemaname = current_schema() ORDER BY tablename"
        )
        return [row[0] for row in txn.fetchall()]

    def describe_schema_txn(self, txn: Transaction) -> dict[str, list[tuple[Any, ...]]]:
        def rows(sql: str) -> list[tuple[Any, ...]]:
            txn.execute(sql)
            return sorted((tuple(row) for row in txn.fetchall()), key=repr)

        return {
            "tables": [(t,) for t in self.list_tables_txn(txn)],
            "columns": rows(
                "SELECT c.relname, a.attname, format_type(a.atttypid, a.atttypmod),"
                " a.attnotnull, pg_get_expr(d.adbin, d.adrelid)"
                " FROM pg_attribute a"
                " JOIN pg_class c ON c.oid = a.attrelid"
                " JOIN pg_namespace n ON n.oid = c.relnamespace"
                " LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum"
                " WHERE n.nspname = current_schema() AND c.relkind IN ('r', 'p')"
                " AND a.attnum > 0 AND NOT a.attisdropped"
            ),
            "indexes": rows(
                # indexdef names the schema; two schemas with the same indexes compare equal.
                "SELECT tablename, indexname,"
                " replace(indexdef, ' ON ' || quote_ident(current_schema()) || '.', ' ON ')"
                " FROM pg_indexes WHERE schemaname = current_schema()"
            ),
            "constraints": rows(
                "SELECT c.relname, co.conname, co.contype, pg_get_constraintdef(co.oid)"
                " FROM pg_constraint co"
                " JOIN pg_class c ON c.oid = co.conrelid"
                " JOIN pg_namespace n ON n.oid = c.relnamespace"
                " WHERE n.nspname = current_schema()"
            ),
            "sequences": rows(
                "SELECT sequencename, data_type::text, start_value, min_value, max_value,"
                " increment_by, cycle, cache_size FROM pg_sequences"
                " WHERE schemaname = current_schema()"
            ),
            "views": rows(
                "SELECT viewname, definition FROM pg_views WHERE schemaname = current_schema()"
            ),
            "triggers": rows(
                "SELECT event_object_table, trigger_name, action_timing, event_manipulation,"
                " action_statement FROM information_schema.triggers"
                " WHERE trigger_schema = current_schema()"
            ),
            "functions": rows(
                "SELECT p.proname, pg_get_function_identity_arguments(p.oid), md5(p.prosrc)"
                " FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace"
                " WHERE n.nspname = current_schema()"
            ),
        }
