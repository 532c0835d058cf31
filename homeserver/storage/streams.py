"""Stream positions: numbering writes so readers can ask "what is new since X?".

A stream (events, receipts, to-device messages, ...) gives each write a position
from a generator:

    async with gen.get_next() as position:
        await db.run_interaction("persist_x", _persist_x_txn, position, ...)

and readers (sync, replication) use `gen.get_current_token()`: the highest
position such that every position at or below it has been persisted (or given
up). Writes finish out of order, so the token can lag the newest position but
never passes a write still in progress: a reader that saw token T and later
reads everything up to T' misses nothing in between.

Several writer processes (PostgreSQL only): positions come from a PostgreSQL
sequence, so they never collide and follow allocation order across processes.
Each writer's own position ("every position at or below it that I allocated is
persisted") is recorded in `stream_positions` and, later, sent to the other
processes over replication, which feed it to `advance()`. The token is the
lowest of the writers' positions, so all the writers of a stream must be listed
in `writers` on every process. A process that is not in `writers` only reads.

SQLite: THE SINGLE-PROCESS ASSUMPTION LIVES HERE. An SQLite database belongs to
one process, so its generators count in memory, starting from the highest
position already in the stream's tables, and refuse other writers.
"""

from __future__ import annotations

import logging
import re
from abc import ABC, abstractmethod
from collections.abc import Sequence
from types import TracebackType
from typing import Generic, TypeVar

from homeserver.storage.database import Database, Transaction
from homeserver.storage.errors import IncorrectDatabaseSetupError

logger = logging.getLogger(__name__)

_IDENTIFIER = re.compile(r"[a-z_][a-z0-9_]*")

T = TypeVar("T", int, list[int])


class StreamIdGenerator(ABC):
    """Hands out positions on one stream and tracks how far it is persisted."""

    def __init__(self, stream_name: str, instance_name: str, writers: Sequence[str]) -> None:
        self.stream_name = stream_name
        self._instance_name = instance_name
        self._writers = list(dict.fromkeys(writers))
        if not self._writers:
            raise ValueError(f"stream {stream_name!r} needs at least one writer")
        self._is_writer = instance_name in self._writers
        # The highest position this process knows to have been allocated by anyone.
        self._max_seen = 0
        # Positions this process allocated whose writes are still running.
        self._unfinished: set[int] = set()
        # For each allocation still waiting for its positions: _max_seen when it
        # asked. What it gets will be above that.
        self._pending_floors: list[int] = []
        # Other writers' positions, as last heard.
        self._positions: dict[str, int] = {}

    # -- writing

    def get_next(self) -> _Allocation[int]:
        """`async with gen.get_next() as position:` one position for one write."""
        return _Allocation(self, 1, single=True)

    def get_next_mult(self, n: int) -> _Allocation[list[int]]:
        """`async with gen.get_next_mult(n) as positions:` n increasing positions for a batch."""
        if n < 1:
            raise ValueError("need at least one position")
        return _Allocation(self, n, single=False)

    @abstractmethod
    async def load(self) -> None:
        """Read the positions already taken from the database (once, before first use)."""

    @abstractmethod
    async def _allocate(self, n: int) -> list[int]:
        """Get n new increasing positions from the source of positions."""

    @abstractmethod
    async def _after_write(self) -> None:
        """Called after a successful write has been marked finished."""

    async def _reserve(self, n: int) -> list[int]:
        if not self._is_writer:
            raise RuntimeError(
                f"{self._instance_name!r} is not a writer of stream {self.stream_name!r}"
            )
        floor = self._max_seen
        self._pending_floors.append(floor)
        try:
            positions = sorted(await self._allocate(n))
        finally:
            self._pending_floors.remove(floor)
        self._unfinished.update(positions)
        self._max_seen = max(self._max_seen, positions[-1])
        return positions

    def _finish(self, positions: list[int]) -> None:
        self._unfinished.difference_update(positions)

    # -- reading

    def _own_position(self) -> int:
        # Everything we allocated below our oldest unfinished write is done; with
        # nothing in progress, anything we allocate next will be above _max_seen.
        position = self._max_seen
        if self._unfinished:
            position = min(position, min(self._unfinished) - 1)
        if self._pending_floors:
            position = min(position, min(self._pending_floors))
        return position

    def get_current_token_for_writer(self, instance_name: str) -> int:
        """How far `instance_name` has persisted its own writes, as far as we know."""
        if instance_name == self._instance_name and self._is_writer:
            return self._own_position()
        if instance_name not in self._positions:
            raise KeyError(f"{instance_name!r} is not a writer of stream {self.stream_name!r}")
        return self._positions[instance_name]

    def get_positions(self) -> dict[str, int]:
        """Every writer's position (see get_current_token_for_writer)."""
        return {w: self.get_current_token_for_writer(w) for w in self._writers}

    def get_current_token(self) -> int:
        """The highest position at or below which every write has finished."""
        return min(self.get_positions().values())

    def advance(self, instance_name: str, position: int) -> None:
        """Learn that `instance_name` has persisted all its writes up to `position`."""
        if instance_name == self._instance_name and self._is_writer:
            return  # we know our own position better
        if instance_name not in self._positions:
            logger.warning(
                "stream %s: position %d from %r, which is not one of its writers %s",
                self.stream_name,
                position,
                instance_name,
                self._writers,
            )
            return
        self._positions[instance_name] = max(self._positions[instance_name], position)
        self._max_seen = max(self._max_seen, position)


class _Allocation(Generic[T]):
    """The async context manager returned by get_next / get_next_mult."""

    def __init__(self, generator: StreamIdGenerator, n: int, *, single: bool) -> None:
        self._generator = generator
        self._n = n
        self._single = single
        self._positions: list[int] = []

    async def __aenter__(self) -> T:
        self._positions = await self._generator._reserve(self._n)
        return self._positions[0] if self._single else list(self._positions)  # type: ignore[return-value]

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        # A failed write leaves a gap, which is as good as persisted: nothing is there.
        self._generator._finish(self._positions)
        if exc_type is None:
            await self._generator._after_write()


async def build_stream_id_generator(
    db: Database,
    stream_name: str,
    *,
    instance_name: str,
    writers: Sequence[str],
    tables: Sequence[tuple[str, str]],
    sequence_name: str,
) -> StreamIdGenerator:
    """The generator for one stream, started from what the database holds.

    Args:
        stream_name: names the stream in `stream_positions` and transaction names.
        instance_name: this process's name (one of `writers` if it writes).
        writers: every process that writes this stream (SQLite: just this one).
        tables: (table, column) pairs holding the stream's positions.
        sequence_name: the PostgreSQL sequence positions come from (created by
            the same delta as the stream's table; unused on SQLite).
    """
    generator = create_stream_id_generator(
        db,
        stream_name,
        instance_name=instance_name,
        writers=writers,
        tables=tables,
        sequence_name=sequence_name,
    )
    await generator.load()
    return generator


def create_stream_id_generator(
    db: Database,
    stream_name: str,
    *,
    instance_name: str,
    writers: Sequence[str],
    tables: Sequence[tuple[str, str]],
    sequence_name: str,
) -> StreamIdGenerator:
    """Like `build_stream_id_generator`, but not yet loaded: call `await generator.load()`
    once the database has started (the composition root builds before it starts)."""
    for name in [sequence_name, *(part for pair in tables for part in pair)]:
        if not _IDENTIFIER.fullmatch(name):
            raise ValueError(f"not a plain SQL identifier: {name!r}")
    if db.engine.single_process:
        return _LocalStreamIdGenerator(db, stream_name, instance_name, writers, tables)
    return _SequenceStreamIdGenerator(
        db, stream_name, instance_name, writers, tables, sequence_name
    )


def _max_position_txn(txn: Transaction, tables: Sequence[tuple[str, str]]) -> int:
    highest = 0
    for table, column in tables:
        txn.execute(f"SELECT MAX({column}) FROM {table}")
        row = txn.fetchone()
        if row is not None and row[0] is not None:
            highest = max(highest, int(row[0]))
    return highest


class _LocalStreamIdGenerator(StreamIdGenerator):
    """Positions counted in this process's memory: one process per database (SQLite)."""

    def __init__(
        self,
        db: Database,
        stream_name: str,
        instance_name: str,
        writers: Sequence[str],
        tables: Sequence[tuple[str, str]],
    ) -> None:
        if list(dict.fromkeys(writers)) != [instance_name]:
            raise ValueError(
                f"stream {stream_name!r}: SQLite allows a single process, so {instance_name!r}"
                f" must be the only writer (got {list(writers)}); use PostgreSQL for several"
            )
        super().__init__(stream_name, instance_name, writers)
        self._db = db
        self._tables = list(tables)

    async def load(self) -> None:
        self._max_seen = await self._db.run_interaction(
            f"stream_load:{self.stream_name}", _max_position_txn, self._tables
        )

    async def _allocate(self, n: int) -> list[int]:
        first = self._max_seen + 1
        return list(range(first, first + n))

    async def _after_write(self) -> None:
        pass  # nothing to tell anyone: there is no other process

    def advance(self, instance_name: str, position: int) -> None:
        if instance_name != self._instance_name:
            raise ValueError(
                f"stream {self.stream_name!r}: position from {instance_name!r}, but an SQLite"
                " database has one process"
            )


class _SequenceStreamIdGenerator(StreamIdGenerator):
    """Positions from a PostgreSQL sequence, shared by several writer processes."""

    def __init__(
        self,
        db: Database,
        stream_name: str,
        instance_name: str,
        writers: Sequence[str],
        tables: Sequence[tuple[str, str]],
        sequence_name: str,
    ) -> None:
        super().__init__(stream_name, instance_name, writers)
        self._db = db
        self._tables = list(tables)
        self._sequence = sequence_name

    async def load(self) -> None:
        # The sequence is read in a transaction of its own BEFORE the stored
        # positions: a writer with no row yet had not started when the second
        # transaction took its snapshot, so everything it allocates comes after
        # `last_allocated` and it is safe to place it there.
        last_allocated = await self._db.run_interaction(
            f"stream_load_sequence:{self.stream_name}", self._last_allocated_txn
        )
        highest_stored = await self._db.run_interaction(
            f"stream_load_tables:{self.stream_name}", _max_position_txn, self._tables
        )
        if highest_stored > last_allocated:
            raise IncorrectDatabaseSetupError(
                f"PostgreSQL sequence {self._sequence} is at {last_allocated}, behind position"
                f" {highest_stored} in the {self.stream_name} stream's tables (was the database"
                f" copied without its sequences?); run: SELECT setval('{self._sequence}',"
                f" {highest_stored});"
            )
        stored = await self._db.run_interaction(
            f"stream_load_positions:{self.stream_name}", self._stored_positions_txn
        )
        for writer in self._writers:
            if writer != self._instance_name or not self._is_writer:
                self._positions[writer] = stored.get(writer, last_allocated)
        self._max_seen = max([last_allocated, *stored.values()])
        if self._is_writer:
            await self._after_write()

    def _last_allocated_txn(self, txn: Transaction) -> int:
        txn.execute(f"SELECT last_value, is_called FROM {self._sequence}")
        last_value, is_called = txn.fetchone()  # type: ignore[misc]
        return int(last_value) if is_called else int(last_value) - 1

    def _stored_positions_txn(self, txn: Transaction) -> dict[str, int]:
        txn.execute(
            "SELECT instance_name, stream_position FROM stream_positions WHERE stream_name = ?",
            (self.stream_name,),
        )
        return {instance: int(position) for instance, position in txn.fetchall()}

    async def _allocate(self, n: int) -> list[int]:
        return await self._db.run_interaction(
            f"stream_allocate:{self.stream_name}", self._nextval_txn, n
        )

    def _nextval_txn(self, txn: Transaction, n: int) -> list[int]:
        txn.execute("SELECT nextval(?) FROM generate_series(1, ?)", (self._sequence, n))
        return [int(row[0]) for row in txn.fetchall()]

    async def _after_write(self) -> None:
        # Record our position for processes that start later. Losing this is
        # harmless (they would start from an older, lower position), so a
        # failure is logged rather than failing a write that has succeeded.
        try:
            await self._db.run_interaction(
                f"stream_save_position:{self.stream_name}",
                self._save_position_txn,
                self._own_position(),
            )
        except Exception:
            logger.warning(
                "stream %s: could not save our position", self.stream_name, exc_info=True
            )

    def _save_position_txn(self, txn: Transaction, position: int) -> None:
        # READ COMMITTED: concurrent saves of this row wait for each other
        # instead of failing as serialisation conflicts; GREATEST keeps it rising.
        txn.execute("SET TRANSACTION ISOLATION LEVEL READ COMMITTED")
        txn.execute(
            "INSERT INTO stream_positions (stream_name, instance_name, stream_position)"
            " VALUES (?, ?, ?) ON CONFLICT (stream_name, instance_name) DO UPDATE"
            " SET stream_position = GREATEST(stream_positions.stream_position,"
            " excluded.stream_position)",
            (self.stream_name, self._instance_name, position),
        )
