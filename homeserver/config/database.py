"""The `database` option: SQLite (embedded default) or PostgreSQL through psycopg2.

The shape is Synapse's, so operators can carry their config block over:
`name` picks the engine, `args` are passed to the driver, except `cp_min` and
`cp_max` which size the connection pool.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

SCHEMA: dict[str, Any] = {
    "database": {
        "type": "object",
        "additionalProperties": False,
        "required": ["name", "args"],
        "properties": {
            "name": {"enum": ["sqlite3", "psycopg2"]},
            "args": {
                "type": "object",
                "properties": {
                    # sqlite3: the database file; psycopg2: the database name.
                    "database": {"type": "string", "minLength": 1},
                    "cp_min": {"type": "integer", "minimum": 1, "default": 5},
                    "cp_max": {"type": "integer", "minimum": 1, "default": 10},
                    # psycopg2 only; any other libpq keyword is passed through too.
                    "user": {"type": "string"},
                    "password": {"type": "string"},
                    "host": {"type": "string"},
                    "port": {"type": "integer"},
                    "dbname": {"type": "string"},
                },
            },
        },
        "if": {"properties": {"name": {"const": "sqlite3"}}},
        "then": {
            "properties": {
                "args": {
                    "required": ["database"],
                    "propertyNames": {"enum": ["database", "cp_min", "cp_max"]},
                }
            }
        },
    },
}
REQUIRED = ["database"]


@dataclass(frozen=True, slots=True)
class DatabaseConfig:
    engine_name: str
    # Arguments for the driver's connect(), without the pool sizes.
    connect_args: dict[str, Any]
    cp_min: int
    cp_max: int

    @classmethod
    def from_dict(cls, doc: dict[str, Any], resolve_path: Any) -> DatabaseConfig:
        section = doc["database"]
        args = dict(section["args"])
        cp_min = args.pop("cp_min")
        cp_max = args.pop("cp_max")
        if section["name"] == "sqlite3" and args["database"] != ":memory:":
            args["database"] = resolve_path(args["database"])
        return cls(engine_name=section["name"], connect_args=args, cp_min=cp_min, cp_max=max(cp_min, cp_max))
