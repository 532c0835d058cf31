"""Logging set-up: the log config file, request context on every record, reload on SIGHUP.

Every log record gets a `request` attribute naming the request being served
(for example `GET-17`), or `-` outside any request, so log formats may use
`%(request)s` whatever the config file's filters say. The value comes from a
context variable that the HTTP layer sets for the duration of each request.
"""

from __future__ import annotations

import contextvars
import logging
import logging.config
import sys
from typing import Any

import yaml

current_request_id: contextvars.ContextVar[str] = contextvars.ContextVar(
    "current_request_id", default="-"
)

_DEFAULT_FORMAT = "%(asctime)s - %(name)s - %(lineno)d - %(levelname)s - %(request)s - %(message)s"

_factory_installed = False


def _install_record_factory() -> None:
    global _factory_installed
    if _factory_installed:
        return
    base_factory = logging.getLogRecordFactory()

    def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = base_factory(*args, **kwargs)
        record.request = current_request_id.get()
        return record

    logging.setLogRecordFactory(factory)
    _factory_installed = True


class LogConfigError(Exception):
    """The log config file cannot be read or applied."""


def setup_logging(log_config_path: str | None) -> None:
    """Configure logging from the file, or INFO to standard error without one.

    Called at start and on SIGHUP; a broken file at reload time raises
    LogConfigError and leaves the previous set-up in place.
    """
    _install_record_factory()
    if log_config_path is None:
        root = logging.getLogger()
        for handler in list(root.handlers):
            root.removeHandler(handler)
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter(_DEFAULT_FORMAT))
        root.addHandler(handler)
        root.setLevel(logging.INFO)
        return
    try:
        with open(log_config_path, encoding="utf-8") as f:
            log_config = yaml.safe_load(f)
    except (OSError, yaml.YAMLError) as e:
        raise LogConfigError(f"{log_config_path}: cannot read the log config: {e}") from e
    if not isinstance(log_config, dict):
        raise LogConfigError(f"{log_config_path}: the log config must be a YAML mapping")
    log_config.setdefault("version", 1)
    log_config.setdefault("disable_existing_loggers", False)
    try:
        logging.config.dictConfig(log_config)
    except (ValueError, TypeError, AttributeError, ImportError) as e:
        raise LogConfigError(f"{log_config_path}: cannot apply the log config: {e}") from e


# Installed on import so that every record carries `request` even before (or
# without) setup_logging, for example in tests and in tools that import the server.
_install_record_factory()
