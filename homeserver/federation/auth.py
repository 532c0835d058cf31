"""Authenticating incoming federation requests: the X-Matrix header, checked with the KeyRing.

Spec: server-server API, "Request Authentication". `FederationAuthenticator.
authenticate(method, uri, authorization_headers, content)` returns the
origin server's name, or raises a MatrixError as Synapse does:

- no X-Matrix Authorization header: 401 M_UNAUTHORIZED;
- a header that does not parse (missing origin, key or sig; an origin that
  is not a server name; bad syntax): 400 M_UNAUTHORIZED;
- a `destination` that is not this server's name: 401 M_UNAUTHORIZED (the
  spec: "the receiving server must deny the request with an HTTP status code
  401 Unauthorized"); headers without `destination` are accepted, as the
  spec asks, and are checked as if it were this server's name;
- several X-Matrix headers naming different origins: 401 M_UNAUTHORIZED;
- the origin not allowed to federate with us (the optional `origin_allowed`
  hook: federation allow-lists, later server ACL checks): 403 M_FORBIDDEN;
- a signature that does not verify, or no key of the origin valid now:
  401 M_UNAUTHORIZED (from KeyRing.verify_json_for_server).

The signed object is `{method, uri, origin, destination: <our name>,
content?}`; `content` is the parsed JSON body of PUT and POST requests.

`authenticate_request(request)` does the same for a twisted.web request, for
the Router to call for endpoints that declare server authentication: it
reads the JSON body of PUT and POST (400 M_NOT_JSON / M_BAD_JSON as any
endpoint) and rewinds it, so the servlet can read it again, and records the
origin as the request's requester for the access log.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol

from homeserver.clock import Clock
from homeserver.crypto.x_matrix import (
    MalformedXMatrixHeader,
    is_x_matrix,
    parse_header,
    request_json,
)
from homeserver.types.errors import Codes, MatrixError

logger = logging.getLogger(__name__)


class JsonVerifier(Protocol):
    """homeserver.crypto.keyring.KeyRing."""

    async def verify_json_for_server(
        self, server_name: str, obj: Mapping[str, Any], minimum_valid_until_ts: int
    ) -> None: ...


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


class FederationAuthenticator:
    """Checks X-Matrix Authorization headers (see the module docstring)."""

    def __init__(
        self,
        server_name: str,
        clock: Clock,
        keyring: JsonVerifier,
        origin_allowed: Callable[[str], bool] | None = None,
    ) -> None:
        self._server_name = server_name
        self._clock = clock
        self._keyring = keyring
        self._origin_allowed = origin_allowed

    async def authenticate(
        self,
        method: str,
        uri: str,
        authorization_headers: Sequence[bytes | str],
        content: Any | None,
    ) -> str:
        """The origin of a request whose X-Matrix signature verifies; MatrixError otherwise.

        `uri` is the request target as received (path and query string).
        """
        auths = []
        for header in authorization_headers:
            if not is_x_matrix(header):
                continue
            try:
                auths.append(parse_header(header))
            except MalformedXMatrixHeader as e:
                logger.info("Malformed X-Matrix header: %s", e)
                raise MatrixError(
                    Codes.UNAUTHORIZED, "Malformed Authorization header", status=400
                ) from None
        if not auths:
            raise MatrixError(Codes.UNAUTHORIZED, "Missing Authorization headers", status=401)
        origin = auths[0].origin
        signatures: dict[str, str] = {}
        for auth in auths:
            if auth.origin != origin:
                raise MatrixError(
                    Codes.UNAUTHORIZED, "Authorization headers name different origins", status=401
                )
            if auth.destination is not None and auth.destination != self._server_name:
                raise MatrixError(
                    Codes.UNAUTHORIZED, "Destination mismatch in auth header", status=401
                )
            signatures[auth.key] = auth.sig
        if self._origin_allowed is not None and not self._origin_allowed(origin):
            raise MatrixError(Codes.FORBIDDEN, f"Federation denied with {origin}.", status=403)
        signed = request_json(method, uri, origin, self._server_name, content)
        signed["signatures"] = {origin: signatures}
        await self._keyring.verify_json_for_server(origin, signed, self._clock.time_msec())
        return origin

    async def authenticate_request(self, request: Any) -> str:
        """`authenticate` for a twisted.web request; sets `request.requester` to the origin."""
        method = request.method.decode("ascii")
        content = None
        if method in ("PUT", "POST"):
            content = _read_json_object(request)
        headers = request.requestHeaders.getRawHeaders(b"Authorization") or []
        origin = await self.authenticate(
            method, request.uri.decode("ascii", errors="replace"), headers, content
        )
        if hasattr(request, "requester"):
            request.requester = origin
        return origin


def _read_json_object(request: Any) -> Any:
    stream = request.content
    if stream is None:
        raise MatrixError(Codes.NOT_JSON, "Content not JSON.")
    body = stream.read()
    stream.seek(0)
    try:
        value = json.loads(body.decode("utf-8"), parse_constant=_reject_constant)
    except (UnicodeDecodeError, ValueError):
        raise MatrixError(Codes.NOT_JSON, "Content not JSON.") from None
    if not isinstance(value, dict):
        raise MatrixError(Codes.BAD_JSON, "Content must be a JSON object.")
    return value
