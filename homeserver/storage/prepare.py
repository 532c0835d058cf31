"""Bringing a database's schema up to SCHEMA_VERSION at start.

`prepare_database_txn` runs in one transaction (so an upgrade that fails half way
leaves the database as it was), holding the engine's schema lock so two
processes starting together don't both upgrade. It reads the version from
`schema_version`; an empty database is created from the newest snapshot, and
any database is then upgraded delta by delta, the version row being rewritten
after each step. A database newer than the code, or one with tables but no
`schema_version`, is refused with a one-line `StorageStartupError`.

See `homeserver.storage.schema` for the layout of the migration files.
"""

from __future__ import annotations

import importlib.resources
import logging
from dataclasses import dataclass
from importlib.resources.abc import Traversable
from typing import TYPE_CHECKING

from homeserver.storage.errors import SchemaTooNewError, UnknownDatabaseError
from homeserver.storage.schema import SCHEMA_VERSION

if TYPE_CHECKING:
    from homeserver.storage.database import Transaction

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class SchemaFiles:
    """A set of migrations: `full/<N>/` snapshots and `delta/<N>/` steps under `root`."""

    root: Traversable
    version: int
    """The version the deltas lead to; there must be a delta for each of 1..version."""

    def snapshot_versions(self) -> list[int]:
        return _numbered_dirs(self.root / "full")

    def delta_versions(self) -> list[int]:
        return _numbered_dirs(self.root / "delta")

    def scripts(self, kind: str, version: int, engine_tag: str) -> list[tuple[str, str]]:
        """(file name, SQL) of `kind` ("full" or "delta") for `version`, on one engine, in order."""
        directory = self.root / kind / str(version)
        if not directory.is_dir():
            raise FileNotFoundError(f"no schema directory {kind}/{version}")
        scripts = []
        for entry in sorted(directory.iterdir(), key=lambda e: e.name):
            name = entry.name
            if name.startswith((".", "__")):
                continue
            if not name.endswith(".sql"):
                raise ValueError(
                    f"unexpected file {kind}/{version}/{name}: migrations are .sql files"
                )
            tag = name[: -len(".sql")].rpartition(".")[2]
            if tag in ("sqlite", "postgres") and tag != engine_tag:
                continue
            scripts.append((f"{kind}/{version}/{name}", entry.read_text(encoding="utf-8")))
        return scripts

    def check(self) -> None:
        """Raise ValueError unless there is exactly one delta per version 1..version."""
        deltas = self.delta_versions()
        if deltas != list(range(1, self.version + 1)):
            raise ValueError(f"schema deltas {deltas} don't match versions 1..{self.version}")
        too_new = [v for v in self.snapshot_versions() if v > self.version]
        if too_new:
            raise ValueError(f"schema snapshots {too_new} are newer than version {self.version}")


def _numbered_dirs(directory: Traversable) -> list[int]:
    if not directory.is_dir():
        return []
    return sorted(int(e.name) for e in directory.iterdir() if e.is_dir() and e.name.isdigit())


PACKAGED_SCHEMA = SchemaFiles(
    importlib.resources.files("homeserver.storage.schema"), SCHEMA_VERSION
)


def get_schema_version_txn(txn: Transaction) -> int | None:
    """The version recorded in the database, or None if it has no `schema_version` table."""
    if "schema_version" not in txn.engine.list_tables_txn(txn):
        return None
    txn.execute("SELECT version FROM schema_version")
    row = txn.fetchone()
    if row is None:
        raise UnknownDatabaseError("The schema_version table is empty; the database is damaged.")
    return int(row[0])


def _set_schema_version_txn(txn: Transaction, version: int) -> None:
    txn.execute(
        "INSERT INTO schema_version (lock, version) VALUES ('X', ?)"
        " ON CONFLICT (lock) DO UPDATE SET version = excluded.version",
        (version,),
    )


def prepare_database_txn(
    txn: Transaction,
    schema: SchemaFiles = PACKAGED_SCHEMA,
    *,
    target_version: int | None = None,
    use_snapshot: bool = True,
) -> None:
    """Create or upgrade the schema to `target_version` (default: the newest).

    `use_snapshot=False` builds an empty database from the deltas alone; with
    `target_version` it stops at an older version. Both are for tests.
    """
    schema.check()
    target = schema.version if target_version is None else target_version
    engine = txn.engine
    engine.lock_schema_txn(txn)

    current = get_schema_version_txn(txn)
    if current is None:
        tables = engine.list_tables_txn(txn)
        if tables:
            shown = ", ".join(tables[:5]) + (", ..." if len(tables) > 5 else "")
            raise UnknownDatabaseError(
                f"The database has tables ({shown}) but no schema_version table, so this"
                " homeserver did not create it; point the homeserver at an empty database."
            )
        current = 0
    if current > schema.version:
        raise SchemaTooNewError(
            f"The database schema is at version {current}, but this homeserver only knows"
            f" versions up to {schema.version}: a newer release has upgraded it. Run that"
            " release (or newer), or restore a backup taken before the upgrade."
        )
    if current >= target:
        return

    if current == 0 and use_snapshot:
        snapshots = [v for v in schema.snapshot_versions() if v <= target]
        if snapshots:
            current = snapshots[-1]
            logger.info("Creating the database schema at version %d", current)
            for name, sql in schema.scripts("full", current, engine.schema_file_tag):
                logger.debug("Applying %s", name)
                txn.execute_script(sql)
            _set_schema_version_txn(txn, current)

    if current < target:
        logger.info("Upgrading the database schema from version %d to %d", current, target)
    for version in range(current + 1, target + 1):
        for name, sql in schema.scripts("delta", version, engine.schema_file_tag):
            logger.info("Applying schema delta %s", name)
            txn.execute_script(sql)
        _set_schema_version_txn(txn, version)
