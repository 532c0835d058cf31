"""Tests for homeserver.storage.streams: allocating positions and the persisted-up-to token."""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import Any

import pytest
from twisted.internet import defer, task

from homeserver.storage.database import Database, Transaction
from homeserver.storage.errors import IncorrectDatabaseSetupError
from homeserver.storage.streams import StreamIdGenerator, build_stream_id_generator
from tests.conftest import DbConfig, PostgresServer


def _create_stream_txn(txn: Transaction) -> None:
    # What a store's delta would create for a stream: a table, and on PostgreSQL
    # the sequence its positions come from.
    txn.execute("CREATE TABLE test_stream (pos BIGINT PRIMARY KEY, instance TEXT NOT NULL)")
    if txn.engine.name == "psycopg2":
        txn.execute("CREATE SEQUENCE test_stream_seq")


def _write_txn(txn: Transaction, positions: Sequence[int], instance: str) -> None:
    txn.executemany(
        "INSERT INTO test_stream (pos, instance) VALUES (?, ?)", [(p, instance) for p in positions]
    )


def _persisted_txn(txn: Transaction) -> set[int]:
    txn.execute("SELECT pos FROM test_stream")
    return {row[0] for row in txn}


async def _generator(
    db: Database, instance: str = "main", writers: Sequence[str] = ("main",)
) -> StreamIdGenerator:
    return await build_stream_id_generator(
        db,
        "test",
        instance_name=instance,
        writers=writers,
        tables=[("test_stream", "pos")],
        sequence_name="test_stream_seq",
    )


async def test_token_waits_for_unfinished_writes(database: Database) -> None:
    """Writes finishing out of order: the token stops below the oldest one still running."""
    await database.run_interaction("create", _create_stream_txn)
    gen = await _generator(database)
    assert gen.get_current_token() == 0

    first = gen.get_next()
    p1 = await first.__aenter__()
    second = gen.get_next()
    p2 = await second.__aenter__()
    assert 0 < p1 < p2
    assert gen.get_current_token() == p1 - 1

    await database.run_interaction("write", _write_txn, [p2], "main")
    await second.__aexit__(None, None, None)
    assert gen.get_current_token() == p1 - 1, "must not pass the unfinished first write"

    await database.run_interaction("write", _write_txn, [p1], "main")
    await first.__aexit__(None, None, None)
    assert gen.get_current_token() == p2
    assert await database.run_interaction("persisted", _persisted_txn) == {p1, p2}


async def test_get_next_mult(database: Database) -> None:
    """get_next_mult(n) gives n increasing positions, all finished together."""
    await database.run_interaction("create", _create_stream_txn)
    gen = await _generator(database)
    async with gen.get_next_mult(3) as positions:
        assert positions == sorted(set(positions)) and len(positions) == 3
        assert gen.get_current_token() < positions[0]
        await database.run_interaction("write", _write_txn, positions, "main")
    assert gen.get_current_token() == positions[-1]


async def test_failed_write_does_not_hold_the_token(database: Database) -> None:
    """A write that raises leaves a gap the token moves past, and the error propagates."""
    await database.run_interaction("create", _create_stream_txn)
    gen = await _generator(database)
    with pytest.raises(RuntimeError, match="write failed"):
        async with gen.get_next() as position:
            raise RuntimeError("write failed")
    assert gen.get_current_token() == position
    async with gen.get_next() as after:
        await database.run_interaction("write", _write_txn, [after], "main")
    assert after > position and gen.get_current_token() == after


async def test_restart_continues_after_stored_positions(
    database: Database, db_config: DbConfig, reactor: Any
) -> None:
    """A new generator (a restarted process) starts at what is persisted and allocates above it."""
    await database.run_interaction("create", _create_stream_txn)
    gen = await _generator(database)
    for _ in range(3):
        async with gen.get_next() as position:
            await database.run_interaction("write", _write_txn, [position], "main")
    await database.close()

    db = Database(reactor, *db_config, cp_min=1, cp_max=2)
    await db.start()
    try:
        restarted = await _generator(db)
        assert restarted.get_current_token() == position
        async with restarted.get_next() as next_position:
            assert next_position > position
            await db.run_interaction("write", _write_txn, [next_position], "main")
    finally:
        await db.close()


async def _concurrent_writers(
    reactor: Any, generators: dict[str, StreamIdGenerator], databases: dict[str, Database]
) -> None:
    """Three coroutines per process write ten times each with random pauses, checking the tokens."""
    allocated: set[int] = set()
    unfinished: set[int] = set()
    rng = random.Random(1234)

    def check_tokens() -> None:
        for gen in generators.values():
            token = gen.get_current_token()
            assert not unfinished or token < min(unfinished), "token passed an unfinished write"
            assert all(p not in unfinished for p in allocated if p <= token)

    def replicate(instance: str) -> None:
        # What replication will do: tell the other processes our position.
        position = generators[instance].get_current_token_for_writer(instance)
        for other, gen in generators.items():
            if other != instance:
                gen.advance(instance, position)

    async def writer(instance: str) -> list[int]:
        gen, db = generators[instance], databases[instance]
        mine = []
        for _ in range(10):
            async with gen.get_next() as position:
                assert position not in allocated, "position handed out twice"
                allocated.add(position)
                unfinished.add(position)
                mine.append(position)
                check_tokens()
                await task.deferLater(reactor, rng.uniform(0, 0.01))
                await db.run_interaction("write", _write_txn, [position], instance)
                unfinished.discard(position)
            replicate(instance)
            check_tokens()
        return mine

    runs = [defer.ensureDeferred(writer(instance)) for instance in generators for _ in range(3)]
    results = await defer.gatherResults(runs, consumeErrors=True)
    for mine in results:
        assert mine == sorted(mine), "one writer's successive positions must increase"
    assert len(allocated) == 60
    for instance in generators:
        replicate(instance)
    for gen in generators.values():
        assert gen.get_current_token() == max(allocated)
    persisted = await databases["w1"].run_interaction("persisted", _persisted_txn)
    assert persisted == allocated


async def test_two_writer_processes(database: Database, db_config: DbConfig, reactor: Any) -> None:
    """PostgreSQL: two processes write one stream concurrently; positions never collide and
    neither process's token passes a write in progress anywhere. SQLite: refused."""
    await database.run_interaction("create", _create_stream_txn)
    writers = ["w1", "w2"]
    if database.engine.name == "sqlite3":
        with pytest.raises(ValueError, match="single process"):
            await _generator(database, "w1", writers)
        gen = await _generator(database)
        with pytest.raises(ValueError, match="one process"):
            gen.advance("elsewhere", 5)
        return

    other_db = Database(reactor, *db_config, cp_min=1, cp_max=3)
    await other_db.start()
    try:
        databases = {"w1": database, "w2": other_db}
        generators = {
            "w1": await _generator(database, "w1", writers),
            "w2": await _generator(other_db, "w2", writers),
        }
        await _concurrent_writers(reactor, generators, databases)
        high = generators["w1"].get_current_token()

        # A process that starts now begins from stream_positions, which each writer
        # updates after its own writes (so it may lag: safe, never ahead), and
        # catches up when the writers tell it their positions.
        reader = await _generator(other_db, "reader", writers)
        assert 0 < reader.get_current_token() <= high
        for writer in writers:
            reader.advance(writer, generators[writer].get_current_token_for_writer(writer))
        assert reader.get_current_token() == high
        with pytest.raises(RuntimeError, match="not a writer"):
            async with reader.get_next():
                pass
    finally:
        await other_db.close()


@pytest.mark.postgres
async def test_sequence_behind_table_is_refused(postgres: PostgresServer, reactor: Any) -> None:
    """A sequence lagging its table (a copy that lost it) would hand out used positions: refused."""
    db = Database(reactor, "psycopg2", postgres.create_database(), cp_min=1, cp_max=2)
    await db.start()
    try:
        await db.run_interaction("create", _create_stream_txn)
        await db.run_interaction("write", _write_txn, [42], "main")
        with pytest.raises(IncorrectDatabaseSetupError, match="setval"):
            await _generator(db)
    finally:
        await db.close()
