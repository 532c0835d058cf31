"""Typed reads of request parameters: members of JSON bodies and query-string values.

Each returns the value with the expected type or raises the spec's error:
M_MISSING_PARAM when a required parameter is absent, M_INVALID_PARAM when it
has the wrong type. Bodies themselves are parsed by
`homeserver.api.http.parse_json_object`.
"""

from __future__ import annotations

from typing import Any

from twisted.web.server import Request

from homeserver.types.errors import Codes, MatrixError

JsonDict = dict[str, Any]


def _wrong_type(key: str, what: str) -> MatrixError:
    return MatrixError(Codes.INVALID_PARAM, f"'{key}' must be {what}")


def body_str(body: JsonDict, key: str, *, required: bool = False) -> str | None:
    """A string member of a request body: M_MISSING_PARAM / M_INVALID_PARAM otherwise."""
    value = body.get(key)
    if value is None:
        if required:
            raise MatrixError(Codes.MISSING_PARAM, f"Missing parameter: {key}")
        return None
    if not isinstance(value, str):
        raise _wrong_type(key, "a string")
    return value


def body_bool(body: JsonDict, key: str, default: bool) -> bool:
    """A boolean member of a request body, or `default` when absent."""
    value = body.get(key, default)
    if not isinstance(value, bool):
        raise _wrong_type(key, "a boolean")
    return value


def body_str_list(body: JsonDict, key: str) -> list[str]:
    """A required list of strings in a request body."""
    value = body.get(key)
    if value is None:
        raise MatrixError(Codes.MISSING_PARAM, f"Missing parameter: {key}")
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise _wrong_type(key, "a list of strings")
    return value


def query_str(request: Request, name: str, *, required: bool = False) -> str | None:
    """A query parameter (the first if repeated), UTF-8 decoded."""
    values = request.args.get(name.encode("ascii"), []) if request.args else []
    if not values:
        if required:
            raise MatrixError(Codes.MISSING_PARAM, f"Missing query parameter: {name}")
        return None
    try:
        value = str(values[0].decode("utf-8"))
    except UnicodeDecodeError as e:
        raise MatrixError(Codes.INVALID_PARAM, f"Query parameter {name} is not UTF-8") from e
    if "\x00" in value:
        raise MatrixError(Codes.INVALID_PARAM, f"Query parameter {name} may not contain NUL")
    return value


def query_int(request: Request, name: str, default: int) -> int:
    """An integer query parameter (decimal digits, optionally signed), or `default` when absent."""
    value = query_str(request, name)
    if value is None:
        return default
    text = value.strip()
    digits = text[1:] if text[:1] in ("-", "+") else text
    if not digits.isascii() or not digits.isdigit() or len(digits) > 18:
        raise MatrixError(Codes.INVALID_PARAM, f"Query parameter {name} must be an integer")
    return int(text)


def query_bool(request: Request, name: str, default: bool | None) -> bool | None:
    """A query parameter that is `true` or `false`, or `default` when absent."""
    value = query_str(request, name)
    if value is None:
        return default
    if value not in ("true", "false"):
        raise MatrixError(Codes.INVALID_PARAM, f"Query parameter {name} must be 'true' or 'false'")
    return value == "true"
