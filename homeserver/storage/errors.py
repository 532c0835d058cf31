"""Errors that stop the homeserver from using a database at start.

Each is a `StorageStartupError` whose message is one line saying what is wrong
and what the operator can do about it, so the CLI can print `str(error)` and
exit without a traceback.
"""

from __future__ import annotations


class StorageStartupError(Exception):
    """The database can't be used as it is. The message is one line, for the operator."""


class IncorrectDatabaseSetupError(StorageStartupError):
    """The database server or file is set up in a way the homeserver refuses to run on.

    For example a PostgreSQL database whose encoding is not UTF8 or whose collation
    is not C, or a stream sequence that lags behind its table.
    """


class SchemaTooNewError(StorageStartupError):
    """The database was upgraded by a newer release than this one."""


class UnknownDatabaseError(StorageStartupError):
    """The database holds tables but no `schema_version`: it was not made by this homeserver."""
