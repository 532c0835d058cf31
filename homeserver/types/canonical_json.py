"""Canonical JSON: the byte encoding that is hashed and signed, and strict decoding.

Spec: appendices, "Signing JSON" > "Canonical JSON" (and its grammar), and the
room versions' "Canonical JSON" sections (rooms/fragments/v1-canonical-json.md,
v6-canonical-json.md).

Encoding goes through the `canonicaljson` package: UTF-8, no insignificant
whitespace, keys sorted by codepoint, the shortest escapes.

Decoding has two modes. Lax (room versions 1..5, which "MUST NOT strictly
enforce" the format) accepts any JSON number; whole numbers written with an
exponent or fraction (`1e10`) become integers, as in the spec's example, and
other fractions stay floats. Strict (v6+, and anything this
server creates) accepts only integers in [-(2**53)+1, (2**53)-1], no floats
(so no exponents or fractions), and no duplicate keys. NaN and Infinity are not
JSON and are refused in both modes. Every refusal is an
`InvalidCanonicalJson` (a `ValueError`) whose message says what was wrong
(and, for `check_canonical_json_value`, where: a path like `content.body[2]`).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, NoReturn

import canonicaljson

# The integer range canonical JSON allows (appendices, "Canonical JSON").
CANONICALJSON_MAX_INT = 2**53 - 1
CANONICALJSON_MIN_INT = -(2**53) + 1


class InvalidCanonicalJson(ValueError):
    """JSON text or a value that is not acceptable (canonical) JSON; the message says why."""


def encode_canonical_json(value: Any) -> bytes:
    """Encode `value` as canonical JSON bytes (appendices, "Canonical JSON").

    Raises `InvalidCanonicalJson` for values JSON cannot carry (NaN,
    Infinity, non-string keys, unknown types). Floats and out-of-range
    integers are encoded as given: callers that need the strict rules call
    `check_canonical_json_value` first.
    """
    try:
        return canonicaljson.encode_canonical_json(value)
    except (TypeError, ValueError) as e:
        raise InvalidCanonicalJson(f"cannot encode as canonical JSON: {e}") from e


def _path(parent: str, key: str | int) -> str:
    if isinstance(key, int):
        return f"{parent}[{key}]"
    return f"{parent}.{key}" if parent else key


def check_canonical_json_value(value: Any, path: str = "") -> None:
    """Check that an already-decoded value obeys the strict canonical JSON rules.

    Allowed: None, bool, str (without lone surrogates), int within [CANONICALJSON_MIN_INT,
    CANONICALJSON_MAX_INT], lists/tuples and mappings with string keys of
    those. Floats are refused even when integral (`1.0`), as the grammar has
    no fractions. Raises `InvalidCanonicalJson` naming the path of the first
    offending value.
    """
    where = path or "the top level"
    if value is None or isinstance(value, bool):
        return
    if isinstance(value, str):
        _check_no_surrogates(value, where)
        return
    if isinstance(value, int):
        if not CANONICALJSON_MIN_INT <= value <= CANONICALJSON_MAX_INT:
            raise InvalidCanonicalJson(
                f"integer {value} at {where} is outside the canonical JSON range "
                f"[-(2**53)+1, (2**53)-1]"
            )
        return
    if isinstance(value, float):
        raise InvalidCanonicalJson(
            f"float {value!r} at {where} is not allowed in canonical JSON (integers only)"
        )
    if isinstance(value, Mapping):
        for k, v in value.items():
            if not isinstance(k, str):
                raise InvalidCanonicalJson(f"non-string key {k!r} in the object at {where}")
            check_canonical_json_value(v, _path(path, k))
        return
    if isinstance(value, Sequence):
        for i, v in enumerate(value):
            check_canonical_json_value(v, _path(path, i))
        return
    raise InvalidCanonicalJson(f"value of type {type(value).__name__} at {where} is not JSON")


def _check_no_surrogates(value: str, where: str) -> None:
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidCanonicalJson(
            f"string at {where} contains a lone surrogate (not encodable as UTF-8)"
        ) from None


def _reject_constant(name: str) -> NoReturn:
    raise InvalidCanonicalJson(f"{name} is not valid JSON")


def _reject_float(text: str) -> NoReturn:
    raise InvalidCanonicalJson(
        f"number {text} is not allowed in canonical JSON (no fractions or exponents)"
    )


def _lax_number(text: str) -> int | float:
    # A number written with a fraction or exponent. If its value is a whole
    # number it is that integer: the spec's example canonicalises `1e10` to
    # `10000000000`. Other values stay floats (room v1..v5 may contain them).
    value = float(text)
    if value != value or value in (float("inf"), float("-inf")):
        raise InvalidCanonicalJson(f"number {text} is out of range")
    if value.is_integer():
        return int(value)
    return value


def _strict_int(text: str) -> int:
    value = int(text)
    if not CANONICALJSON_MIN_INT <= value <= CANONICALJSON_MAX_INT:
        raise InvalidCanonicalJson(
            f"integer {text} is outside the canonical JSON range [-(2**53)+1, (2**53)-1]"
        )
    return value


def _no_duplicates(pairs: Iterable[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise InvalidCanonicalJson(f"duplicate key {key!r} in a JSON object")
        result[key] = value
    return result


def decode_json(data: bytes | str, *, strict: bool) -> Any:
    """Parse JSON text (UTF-8 bytes or str).

    strict=True applies the canonical JSON value rules (integers in range,
    no floats, no duplicate keys, no lone surrogates in strings); use `room_version.event_format.strict_canonical_json`
    for events. NaN/Infinity are refused in both modes. Raises
    `InvalidCanonicalJson` with a message naming the problem.
    """
    if isinstance(data, (bytes, bytearray)):
        try:
            text = bytes(data).decode("utf-8")
        except UnicodeDecodeError as e:
            raise InvalidCanonicalJson(f"JSON is not valid UTF-8: {e}") from e
    else:
        text = data
    try:
        if strict:
            value = json.loads(
                text,
                parse_constant=_reject_constant,
                parse_float=_reject_float,
                parse_int=_strict_int,
                object_pairs_hook=_no_duplicates,
            )
            # Numbers were checked while parsing; this catches lone surrogates
            # (`"\ud800"`), which have no UTF-8 encoding.
            check_canonical_json_value(value)
            return value
        return json.loads(text, parse_constant=_reject_constant, parse_float=_lax_number)
    except InvalidCanonicalJson:
        raise
    except RecursionError as e:
        raise InvalidCanonicalJson("JSON is nested too deeply") from e
    except json.JSONDecodeError as e:
        raise InvalidCanonicalJson(f"not valid JSON: {e}") from e


def decode_canonical_json(data: bytes | str) -> Any:
    """Parse JSON text with the strict canonical JSON rules (`decode_json(strict=True)`)."""
    return decode_json(data, strict=True)
