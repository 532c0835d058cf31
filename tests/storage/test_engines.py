"""Tests for homeserver.storage.engines: placeholders, connection setup, database checks."""

from __future__ import annotations

from typing import Any

import pytest

from homeserver.storage.database import Database, Transaction
from homeserver.storage.engines import create_engine, qmark_to_pyformat
from homeserver.storage.errors import IncorrectDatabaseSetupError, StorageStartupError
from tests.conftest import PostgresServer, run_on_reactor


@pytest.mark.parametrize(
    ("sql", "expected"),
    [
        ("SELECT ?, ?", "SELECT %s, %s"),
        # A literal % must survive psycopg2's formatting.
        ("SELECT 5 % 2, ?", "SELECT 5 %% 2, %s"),
        # Inside strings, quoted identifiers and comments `?` is not a placeholder.
        ("SELECT 'what?', \"col?\", ? -- why?", "SELECT 'what?', \"col?\", %s -- why?"),
        ("SELECT 'it''s ?', ?", "SELECT 'it''s ?', %s"),
        ("SELECT E'it\\'s ?', ?", "SELECT E'it\\'s ?', %s"),
        ("SELECT /* ? */ ?", "SELECT /* ? */ %s"),
        ("SELECT 'a%b' LIKE ?", "SELECT 'a%%b' LIKE %s"),
        ("DO $$ BEGIN PERFORM '?'; END $$", "DO $$ BEGIN PERFORM '?'; END $$"),
        ("SELECT $body$ ? $body$, ?", "SELECT $body$ ? $body$, %s"),
    ],
)
def test_qmark_to_pyformat(sql: str, expected: str) -> None:
    """Stores' `?` placeholders become psycopg2's `%s`, and only outside literals."""
    assert qmark_to_pyformat(sql) == expected


def test_unknown_engine_is_refused() -> None:
    """Only the two engine names from the config are accepted."""
    with pytest.raises(ValueError, match="unknown database engine"):
        create_engine("mysql", {})


def _placeholder_txn(txn: Transaction) -> dict[str, Any]:
    txn.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, s TEXT NOT NULL)")
    txn.executemany(
        "INSERT INTO t (id, s) VALUES (?, ?)", [(1, "50%"), (2, "why?"), (3, "it's"), (4, "plain")]
    )
    out: dict[str, Any] = {}
    txn.execute("SELECT s FROM t WHERE s LIKE '%?' ORDER BY id")
    out["literal_question_mark"] = txn.fetchall()
    txn.execute("SELECT s FROM t WHERE s LIKE ? ESCAPE '\\' ORDER BY id", ("%\\%%",))
    out["percent_param"] = txn.fetchall()
    txn.execute("SELECT '100%', 'a?b', ? /* ? % */, ? -- ?\n", ("x", 7))
    out["mixed"] = txn.fetchone()
    txn.execute("SELECT '100%', 'a?b'")
    out["no_params"] = txn.fetchone()
    txn.execute("SELECT id FROM t WHERE s = ? OR id > ? ORDER BY id", ("it's", 3))
    out["two_params"] = [row[0] for row in txn]
    txn.execute("UPDATE t SET s = s || '!' WHERE id >= ?", (2,))
    out["rowcount"] = txn.rowcount
    txn.execute("SELECT s FROM t WHERE id = ?", (99,))
    out["missing"] = txn.fetchone()
    return out


async def test_placeholders_are_the_same_on_both_engines(database: Database) -> None:
    """Stores write `?` and literal `%`/`?` in strings; both engines run it alike."""
    out = await database.run_interaction("placeholders", _placeholder_txn)
    assert out == {
        "literal_question_mark": [("why?",)],
        "percent_param": [("50%",)],
        "mixed": ("100%", "a?b", "x", 7),
        "no_params": ("100%", "a?b"),
        "two_params": [3, 4],
        "rowcount": 3,
        "missing": None,
    }


def _bytes_txn(txn: Transaction, blob: bytes) -> Any:
    txn.execute(
        "CREATE TABLE b (v BYTEA)" if txn.engine.name == "psycopg2" else "CREATE TABLE b (v BLOB)"
    )
    txn.execute("INSERT INTO b (v) VALUES (?)", (blob,))
    txn.execute("SELECT v FROM b")
    return txn.fetchone()[0]  # type: ignore[index]


async def test_binary_columns_come_back_as_bytes(database: Database) -> None:
    """PostgreSQL's BYTEA (memoryview in psycopg2) is returned as bytes, as SQLite's BLOB is."""
    blob = bytes(range(256))
    value = await database.run_interaction("bytes", _bytes_txn, blob)
    assert type(value) is bytes and value == blob


def _settings_txn(txn: Transaction) -> dict[str, Any]:
    if txn.engine.name == "sqlite3":
        settings = {}
        for pragma in ("journal_mode", "synchronous", "foreign_keys"):
            txn.execute(f"PRAGMA {pragma}")
            settings[pragma] = txn.fetchone()[0]  # type: ignore[index]
        return settings
    txn.execute("SHOW transaction_isolation")
    isolation = txn.fetchone()[0]  # type: ignore[index]
    txn.execute("SHOW client_encoding")
    return {"transaction_isolation": isolation, "client_encoding": txn.fetchone()[0]}  # type: ignore[index]


async def test_connection_settings(database: Database) -> None:
    """SQLite: WAL, synchronous=FULL (2), foreign keys on. PostgreSQL: REPEATABLE READ, UTF8."""
    settings = await database.run_interaction("settings", _settings_txn)
    if database.engine.name == "sqlite3":
        assert settings == {"journal_mode": "wal", "synchronous": 2, "foreign_keys": 1}
    else:
        assert settings == {"transaction_isolation": "repeatable read", "client_encoding": "UTF8"}


def _start_expecting_refusal(reactor: Any, connect_args: dict[str, Any]) -> StorageStartupError:
    db = Database(reactor, "psycopg2", connect_args, cp_min=1, cp_max=2)
    with pytest.raises(IncorrectDatabaseSetupError) as caught:
        run_on_reactor(db.start())
    return caught.value


@pytest.mark.postgres
def test_postgres_refuses_non_utf8_database(postgres: PostgresServer, reactor: Any) -> None:
    """A SQL_ASCII database is refused at start, with the CREATE DATABASE line to fix it."""
    args = postgres.create_database(encoding="SQL_ASCII")
    message = str(_start_expecting_refusal(reactor, args))
    assert "encoding SQL_ASCII" in message
    assert "CREATE DATABASE " + args["dbname"] in message
    assert "ENCODING 'UTF8' LC_COLLATE='C' LC_CTYPE='C' TEMPLATE template0" in message
    assert "\n" not in message


@pytest.mark.postgres
def test_postgres_refuses_non_c_collation(postgres: PostgresServer, reactor: Any) -> None:
    """A UTF8 database with a locale collation (text order depends on libc) is refused."""
    import psycopg2

    for locale in ("C.UTF-8", "C.utf8", "en_US.UTF-8", "en_US.utf8"):
        try:
            args = postgres.create_database(collate=locale, ctype=locale)
            break
        except psycopg2.Error:
            continue
    else:
        pytest.skip("the PostgreSQL server has no UTF-8 locale other than C to test with")
    message = str(_start_expecting_refusal(reactor, args))
    assert f"LC_COLLATE '{locale}'" in message and f"LC_CTYPE '{locale}'" in message
    assert "\n" not in message


@pytest.mark.postgres
def test_postgres_accepts_c_database(postgres: PostgresServer, reactor: Any) -> None:
    """The database the error message tells operators to create is accepted."""
    db = Database(reactor, "psycopg2", postgres.create_database(), cp_min=1, cp_max=2)
    run_on_reactor(db.start())
    run_on_reactor(db.close())
