"""The `X-Matrix` Authorization header: signing outgoing requests and parsing incoming ones.

Spec: server-server API, "Authentication" > "Request Authentication". A
request is authenticated by the origin's signature over the JSON object
`{method, uri, origin, destination[, content]}` (appendices, "Signing JSON"),
carried as `Authorization: X-Matrix origin="...",destination="...",key="...",sig="..."`.

No I/O and no Twisted: checking the signature needs the origin's keys, which
`homeserver.federation.auth.FederationAuthenticator` gets from the KeyRing.
Parsing follows RFC 9110 section 11.4 as the spec asks: the scheme, one or
more spaces, then comma-separated `name=value` parameters, names case
insensitive, values tokens or quoted strings with backslash escapes, and (for
older servers) colons allowed in unquoted values. Unknown parameters are
ignored.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from signedjson.types import SigningKey

from homeserver.types.identifiers import InvalidIdentifier, parse_server_name
from homeserver.types.signing import key_id_of, sign_json

SCHEME = "X-Matrix"

# Parameter names are RFC 9110 tokens (`tchar`s). Unquoted values may be
# tokens, and, leniently, also hold ':' (which older servers leave unquoted,
# as the spec asks recipients to accept), '/' and '=' (base64) and brackets
# (IPv6 literals).
_TOKEN_RE = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_VALUE_RE = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z:/=\[\]]+")
_OWS = " \t"


class MalformedXMatrixHeader(ValueError):
    """The header is not a well-formed X-Matrix authorization; the message says why."""


@dataclass(frozen=True, slots=True)
class XMatrixAuth:
    """The parameters of one X-Matrix header."""

    origin: str
    destination: str | None
    key: str
    sig: str


def request_json(
    method: str, uri: str, origin: str, destination: str, content: Any | None = None
) -> dict[str, Any]:
    """The object whose signature authenticates a request ("Request Authentication", step 1).

    `uri` is the request target as sent: the path from `/_matrix/...` with
    `?` and the query string, if any. `content` is the parsed JSON body;
    None (no body) leaves `content` out.
    """
    obj: dict[str, Any] = {
        "method": method,
        "uri": uri,
        "origin": origin,
        "destination": destination,
    }
    if content is not None:
        obj["content"] = content
    return obj


def format_header(origin: str, destination: str, key: str, sig: str) -> str:
    """The header value, written as the spec asks senders to write it for older servers.

    One space after the scheme, lower-case names, every value quoted, no
    whitespace around the commas.
    """
    params = {"origin": origin, "destination": destination, "key": key, "sig": sig}
    return f"{SCHEME} " + ",".join(f'{name}="{_quote(value)}"' for name, value in params.items())


def _quote(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"')


def sign_request(
    signing_key: SigningKey,
    origin: str,
    destination: str,
    method: str,
    uri: str,
    content: Any | None = None,
) -> str:
    """The `Authorization` header value for a request from `origin` to `destination`."""
    signed = sign_json(request_json(method, uri, origin, destination, content), origin, signing_key)
    key_id = key_id_of(signing_key)
    return format_header(origin, destination, key_id, signed["signatures"][origin][key_id])


def is_x_matrix(header: str | bytes) -> bool:
    """Whether an Authorization header uses the X-Matrix scheme (case-insensitively)."""
    text = header.decode("latin-1") if isinstance(header, bytes) else header
    scheme = text.split(" ", 1)[0]
    return scheme.lower() == SCHEME.lower()


def parse_header(header: str | bytes) -> XMatrixAuth:
    """The parameters of an X-Matrix header; MalformedXMatrixHeader if it is not one.

    `origin`, `key` and `sig` are required (`signature` is accepted for
    `sig`), and `origin` must be a valid server name. A parameter given twice
    is refused: which of the two was meant cannot be told.
    """
    try:
        text = header.decode("utf-8") if isinstance(header, bytes) else header
    except UnicodeDecodeError:
        raise MalformedXMatrixHeader("the header is not UTF-8") from None
    scheme, sep, rest = text.partition(" ")
    if scheme.lower() != SCHEME.lower() or not sep:
        raise MalformedXMatrixHeader(f"the scheme is not {SCHEME}")
    params = _parse_params(rest)
    missing = [name for name in ("origin", "key") if name not in params]
    sig = params.get("sig", params.get("signature"))
    if sig is None:
        missing.append("sig")
    if missing:
        raise MalformedXMatrixHeader(f"missing parameter(s): {', '.join(missing)}")
    assert sig is not None
    origin = params["origin"]
    try:
        parse_server_name(origin, kind="origin")
    except InvalidIdentifier as e:
        raise MalformedXMatrixHeader(str(e)) from None
    return XMatrixAuth(
        origin=origin, destination=params.get("destination"), key=params["key"], sig=sig
    )


def _parse_params(text: str) -> Mapping[str, str]:
    params: dict[str, str] = {}
    pos, end = 0, len(text)
    while True:
        pos = _skip(text, pos, _OWS)
        match = _TOKEN_RE.match(text, pos)
        if match is None:
            raise MalformedXMatrixHeader(f"expected a parameter name at position {pos}")
        name = match.group().lower()
        pos = _skip(text, match.end(), _OWS)
        if pos >= end or text[pos] != "=":
            raise MalformedXMatrixHeader(f"parameter {name!r} has no '='")
        pos = _skip(text, pos + 1, _OWS)
        if pos < end and text[pos] == '"':
            value, pos = _quoted(text, pos + 1)
        else:
            match = _VALUE_RE.match(text, pos)
            if match is None:
                raise MalformedXMatrixHeader(f"parameter {name!r} has no value")
            value, pos = match.group(), match.end()
        if name in params:
            raise MalformedXMatrixHeader(f"parameter {name!r} is given twice")
        params[name] = value
        pos = _skip(text, pos, _OWS)
        if pos >= end:
            return params
        if text[pos] != ",":
            raise MalformedXMatrixHeader(f"expected ',' at position {pos}")
        pos += 1


def _skip(text: str, pos: int, chars: str) -> int:
    while pos < len(text) and text[pos] in chars:
        pos += 1
    return pos


def _quoted(text: str, pos: int) -> tuple[str, int]:
    """The unescaped quoted string starting after the opening quote at `pos - 1`."""
    out: list[str] = []
    while pos < len(text):
        char = text[pos]
        if char == '"':
            return "".join(out), pos + 1
        if char == "\\":
            if pos + 1 >= len(text):
                break
            out.append(text[pos + 1])
            pos += 2
            continue
        out.append(char)
        pos += 1
    raise MalformedXMatrixHeader("a quoted value has no closing quote")
