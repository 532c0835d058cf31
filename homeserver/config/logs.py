"""The `log_config` option: a Python logging config file (YAML, dictConfig form).

Without one, the server logs at INFO to standard error. The file is read at
start and again on SIGHUP.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

SCHEMA: dict[str, Any] = {
    "log_config": {"type": ["string", "null"], "default": None},
}
REQUIRED: list[str] = []


@dataclass(frozen=True, slots=True)
class LoggingConfig:
    log_config: str | None

    @classmethod
    def from_dict(cls, doc: dict[str, Any], resolve_path: Any) -> LoggingConfig:
        path = doc["log_config"]
        return cls(log_config=resolve_path(path) if path else None)
