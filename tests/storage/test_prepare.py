"""Tests for homeserver.storage.prepare: creating and upgrading the schema on both engines."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import homeserver.storage.schema
from homeserver.storage.database import Database, Transaction
from homeserver.storage.errors import SchemaTooNewError, UnknownDatabaseError
from homeserver.storage.prepare import (
    PACKAGED_SCHEMA,
    SchemaFiles,
    get_schema_version_txn,
    prepare_database_txn,
)
from homeserver.storage.schema import SCHEMA_VERSION
from tests.conftest import DbConfig

MakeDbConfig = Callable[[], DbConfig]


async def _open(reactor: Any, config: DbConfig) -> Database:
    db = Database(reactor, config[0], config[1], cp_min=1, cp_max=2)
    await db.open()
    return db


async def _describe(db: Database) -> tuple[int | None, dict[str, Any]]:
    version = await db.run_interaction("version", get_schema_version_txn)
    schema = await db.run_interaction("describe", db.engine.describe_schema_txn)
    return version, schema


async def _build(
    reactor: Any, config: DbConfig, schema: SchemaFiles = PACKAGED_SCHEMA, **kwargs: Any
) -> tuple[int | None, dict[str, Any]]:
    """Open an empty database, prepare it with kwargs, and describe what it ends with."""
    db = await _open(reactor, config)
    try:
        await db.run_interaction("prepare", prepare_database_txn, schema, **kwargs)
        return await _describe(db)
    finally:
        await db.close()


async def test_fresh_database_is_at_schema_version(database: Database) -> None:
    """start() on an empty database creates the schema and records SCHEMA_VERSION."""
    version, schema = await _describe(database)
    assert version == SCHEMA_VERSION
    assert ("schema_version",) in schema["tables"]


async def test_stepwise_upgrades_match_fresh_schema(
    make_db_config: MakeDbConfig, reactor: Any
) -> None:
    """From every older version, upgrading ends with the same schema as a fresh database.

    Compared: tables, columns (type, nullability, default), indexes, constraints
    (PostgreSQL), foreign keys, sequences, views and triggers.
    """
    fresh = await _build(reactor, make_db_config())
    assert fresh[0] == SCHEMA_VERSION
    assert await _build(reactor, make_db_config(), use_snapshot=False) == fresh
    for start_version in range(1, SCHEMA_VERSION):
        db = await _open(reactor, make_db_config())
        try:
            await db.run_interaction(
                "old", prepare_database_txn, target_version=start_version, use_snapshot=False
            )
            assert (await _describe(db))[0] == start_version
            await db.run_interaction("upgrade", prepare_database_txn)
            assert await _describe(db) == fresh, f"upgrading from version {start_version}"
        finally:
            await db.close()


async def test_each_snapshot_matches_its_deltas(make_db_config: MakeDbConfig, reactor: Any) -> None:
    """Each full/<N> snapshot builds the same schema as deltas 1..N."""
    snapshots = PACKAGED_SCHEMA.snapshot_versions()
    assert snapshots, "there should be at least one snapshot"
    for version in snapshots:
        from_snapshot = await _build(reactor, make_db_config(), target_version=version)
        from_deltas = await _build(
            reactor, make_db_config(), target_version=version, use_snapshot=False
        )
        assert from_snapshot[0] == version
        assert from_snapshot == from_deltas, f"snapshot {version}"


async def test_restart_changes_nothing(make_db_config: MakeDbConfig, reactor: Any) -> None:
    """Starting an up-to-date database again leaves it as it was."""
    config = make_db_config()
    db = Database(reactor, *config, cp_min=1, cp_max=2)
    await db.start()
    before = await _describe(db)
    await db.close()
    db = Database(reactor, *config, cp_min=1, cp_max=2)
    await db.start()
    try:
        assert await _describe(db) == before
    finally:
        await db.close()


async def test_refuses_newer_schema(make_db_config: MakeDbConfig, reactor: Any) -> None:
    """A database upgraded by a newer release is refused with a one-line message."""
    config = make_db_config()
    db = Database(reactor, *config, cp_min=1, cp_max=2)
    await db.start()

    def bump(txn: Transaction) -> None:
        txn.execute("UPDATE schema_version SET version = ?", (SCHEMA_VERSION + 3,))

    await db.run_interaction("bump", bump)
    await db.close()

    db = Database(reactor, *config, cp_min=1, cp_max=2)
    with pytest.raises(SchemaTooNewError) as caught:
        await db.start()
    message = str(caught.value)
    assert f"version {SCHEMA_VERSION + 3}" in message and f"up to {SCHEMA_VERSION}" in message
    assert "\n" not in message
    with pytest.raises(Exception, match="closed"):
        await db.run_interaction("after", get_schema_version_txn)


async def test_refuses_database_it_did_not_create(
    make_db_config: MakeDbConfig, reactor: Any
) -> None:
    """Tables without a schema_version table: someone else's database, refused untouched."""
    config = make_db_config()
    db = await _open(reactor, config)

    def create(txn: Transaction) -> None:
        txn.execute("CREATE TABLE users (name TEXT)")

    await db.run_interaction("create", create)
    await db.close()
    db = Database(reactor, *config, cp_min=1, cp_max=2)
    with pytest.raises(UnknownDatabaseError, match="users"):
        await db.start()
    db = await _open(reactor, config)
    try:
        assert await db.run_interaction("tables", db.engine.list_tables_txn) == ["users"]
    finally:
        await db.close()


def _schema_with_delta(tmp_path: Path, files: dict[str, str]) -> SchemaFiles:
    """The packaged migrations plus one more version made of `files`."""
    root = tmp_path / "schema"
    shutil.copytree(Path(homeserver.storage.schema.__file__).parent, root)
    new_version = SCHEMA_VERSION + 1
    (root / "delta" / str(new_version)).mkdir()
    for name, sql in files.items():
        (root / "delta" / str(new_version) / name).write_text(sql)
    return SchemaFiles(root, new_version)


async def test_failed_upgrade_changes_nothing(database: Database, tmp_path: Path) -> None:
    """An upgrade runs in one transaction: if a step fails, the database is as before."""
    schema = _schema_with_delta(
        tmp_path,
        {
            "01_good.sql": "CREATE TABLE added_by_good_step (x INTEGER);",
            "02_bad.sql": "CREATE TABLE broken (;",
        },
    )
    before = await _describe(database)
    with pytest.raises(Exception, match="syntax"):
        await database.run_interaction("upgrade", prepare_database_txn, schema)
    assert await _describe(database) == before


async def test_engine_specific_delta_files(database: Database, tmp_path: Path) -> None:
    """x.sql runs on both engines, x.sqlite.sql / x.postgres.sql only on their own."""
    schema = _schema_with_delta(
        tmp_path,
        {
            "01_both.sql": "CREATE TABLE on_both (x INTEGER);",
            "02_only.sqlite.sql": "CREATE TABLE on_sqlite (x INTEGER);",
            "02_only.postgres.sql": "CREATE TABLE on_postgres (x INTEGER);",
        },
    )
    await database.run_interaction("upgrade", prepare_database_txn, schema)
    version, described = await _describe(database)
    own = "on_sqlite" if database.engine.name == "sqlite3" else "on_postgres"
    other = "on_postgres" if own == "on_sqlite" else "on_sqlite"
    assert version == SCHEMA_VERSION + 1
    assert (own,) in described["tables"] and ("on_both",) in described["tables"]
    assert (other,) not in described["tables"]
