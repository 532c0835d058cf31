"""The servlet base and the HTTP machinery every endpoint shares.

A `Servlet` declares the paths it serves (`PATTERNS`, regular expressions over
the raw path with named groups) and implements `on_<METHOD>` coroutines that
return `(status, json_body)` or a `RawResponse`. A `Router` is the twisted.web
resource that matches paths, runs the servlet, and turns every outcome into a
response: `MatrixError` becomes `{"errcode", "error"}` with its status (and,
for 429 M_LIMIT_EXCEEDED, a `Retry-After` header), an
unknown path 404 `M_UNRECOGNIZED`, a known path with another method 405
`M_UNRECOGNIZED`, and anything unexpected a logged 500 `M_UNKNOWN`. CORS
headers go on every response and `OPTIONS` is answered on every path without
running any endpoint logic, as the spec asks ("Web Browser Clients").

Authentication is declared, not coded: each servlet says in `AUTH` what each
of its methods needs (`Auth.NONE`, `OPTIONAL`, `USER`, `USER_OR_GUEST`), and
the Router resolves the access token through its `Authenticator` before the
method runs, passing the result as the `requester` keyword argument (a
`homeserver.handlers.auth.Requester`, or None for OPTIONAL without a token;
methods declared NONE get no `requester`). A missing token is 401
M_MISSING_TOKEN, an unknown or expired one 401 M_UNKNOWN_TOKEN (from the
authenticator), a guest on a method that does not allow guests 403
M_GUEST_ACCESS_FORBIDDEN. `Auth.SERVER` methods serve other homeservers: the
Router's `ServerAuthenticator` checks the request's X-Matrix signature and
the method gets the origin server's name as the `origin` keyword argument.
A servlet that does not declare a method's auth is refused when it is
registered.

The twisted.web site and request classes (`Site`, `SiteRequest`: size limit,
request ids, client address, access log, requests in flight) are in
`homeserver.api.site`, and importable from here too.
"""

from __future__ import annotations

import enum
import gzip
import json
import logging
import re
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Protocol
from urllib.parse import unquote

from twisted.internet import defer
from twisted.web import resource, server
from twisted.web.iweb import IRequest

from homeserver.api.site import Site, SiteRequest, redact_uri
from homeserver.handlers.ratelimit import retry_after_header
from homeserver.logs import current_request_id
from homeserver.types.errors import Codes, MatrixError

if TYPE_CHECKING:
    from homeserver.handlers.auth import Requester

__all__ = [
    "Auth",
    "Authenticator",
    "JsonDict",
    "RawResponse",
    "Router",
    "Servlet",
    "Site",
    "SiteRequest",
    "client_patterns",
    "encode_json",
    "get_access_token",
    "parse_json_object",
    "parse_json_value",
    "redact_uri",
]

logger = logging.getLogger(__name__)

JsonDict = dict[str, Any]

CORS_HEADERS = {
    b"Access-Control-Allow-Origin": b"*",
    b"Access-Control-Allow-Methods": b"GET, HEAD, POST, PUT, DELETE, OPTIONS",
    b"Access-Control-Allow-Headers": b"X-Requested-With, Content-Type, Authorization, Date",
    b"Access-Control-Expose-Headers": b"ETag, Content-Disposition",
}


@dataclass(frozen=True, slots=True)
class RawResponse:
    """A response that is not JSON (metrics text, media, HTML pages, redirects)."""

    status: int
    body: bytes
    content_type: bytes
    # Further headers, such as Location for a redirect.
    headers: tuple[tuple[bytes, bytes], ...] = ()


ServletResult = tuple[int, Any] | RawResponse


class Auth(enum.Enum):
    """What a servlet method needs from the caller's access token."""

    NONE = "none"
    """The token is not looked at; the method gets no `requester` argument."""
    OPTIONAL = "optional"
    """A token is resolved if given (guests included): `requester` is a Requester or None."""
    USER = "user"
    """A registered user's token; guests get 403 M_GUEST_ACCESS_FORBIDDEN."""
    USER_OR_GUEST = "user_or_guest"
    """Any user's token, guests included."""
    SERVER = "server"
    """A request signed by another homeserver (X-Matrix): the method gets `origin`, its name."""


class ServerAuthenticator(Protocol):
    """Checks X-Matrix signatures for the Router (homeserver.federation.auth.FederationAuthenticator)."""

    async def authenticate_request(self, request: Any) -> str: ...


class Authenticator(Protocol):
    """Resolves access tokens for the Router (homeserver.handlers.auth.AuthHandler)."""

    async def authenticate(
        self, token: str, ip: str | None = None, user_agent: str | None = None
    ) -> Requester: ...


class Servlet:
    """Base for endpoints. Subclasses set PATTERNS and AUTH and define `async def on_GET(...)` etc.

    Path groups are passed to the method as keyword arguments, percent-decoded.
    AUTH is one `Auth` for every method, or a mapping from method name
    ("GET", ...) to `Auth`; every method defined must be covered.
    """

    PATTERNS: ClassVar[tuple[str, ...]] = ()
    AUTH: ClassVar[Auth | Mapping[str, Auth] | None] = None
    CANCELLABLE: ClassVar[frozenset[str]] = frozenset()
    """Methods whose work is cancelled when the client disconnects (long-polls). Only for
    methods that are safe to stop at any await: reads, never writes."""

    def methods(self) -> dict[bytes, Callable[..., Awaitable[ServletResult]]]:
        found = {}
        for method in ("GET", "PUT", "POST", "DELETE"):
            handler = getattr(self, f"on_{method}", None)
            if handler is not None:
                found[method.encode()] = handler
        return found

    def auth_for(self, method: str) -> Auth:
        """The declared auth of one method; TypeError if it has none."""
        declared = self.AUTH
        auth = declared.get(method) if isinstance(declared, Mapping) else declared
        if not isinstance(auth, Auth):
            raise TypeError(f"{type(self).__name__} declares no AUTH for {method}")
        return auth


def client_patterns(path: str, versions: Iterable[str] = ("v3", "r0")) -> tuple[str, ...]:
    """The regex for a client-server API path under each of the given version prefixes."""
    alternatives = "|".join(re.escape(v) for v in versions)
    return (f"^/_matrix/client/(?:{alternatives}){path}$",)


def encode_json(value: Any) -> bytes:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


_SURROGATE = re.compile("[\ud800-\udfff]")
_NUL = "\x00"


def _has_lone_surrogate(value: Any) -> bool:
    """Whether a string anywhere in a parsed JSON value holds a lone surrogate (`"\\ud800"`)."""
    return _find_in_strings(value, lambda text: _SURROGATE.search(text) is not None)


def _has_nul(value: Any) -> bool:
    return _find_in_strings(value, lambda text: _NUL in text)


def _find_in_strings(value: Any, test: Callable[[str], bool]) -> bool:
    """Whether `test` holds for any string (key or value) in a parsed JSON value."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            if test(item):
                return True
        elif isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return False


def parse_json_value(request: SiteRequest, *, allow_nul: bool = False) -> Any:
    """The request body as JSON; M_NOT_JSON when it is not JSON.

    NaN and Infinity are refused, and so are escaped lone surrogates: they are
    no Unicode text, so nothing could store or send them on. Unless
    `allow_nul`, a U+0000 in any string is 400 M_BAD_JSON: PostgreSQL cannot
    store it in a text column, and no name, ID or secret needs one.
    """
    body = request.content.read() if request.content is not None else b""
    try:
        value = json.loads(body.decode("utf-8"), parse_constant=_reject_constant)
    except (UnicodeDecodeError, ValueError, RecursionError) as e:
        raise MatrixError(Codes.NOT_JSON, "Content not JSON.") from e
    if _has_lone_surrogate(value):
        raise MatrixError(Codes.NOT_JSON, "Content not JSON: it contains a lone surrogate.")
    if not allow_nul and _has_nul(value):
        raise MatrixError(Codes.BAD_JSON, "Strings may not contain NUL characters.")
    return value


def parse_json_object(request: SiteRequest, *, allow_nul: bool = False) -> JsonDict:
    """The request body as a JSON object; M_NOT_JSON or M_BAD_JSON otherwise."""
    value = parse_json_value(request, allow_nul=allow_nul)
    if not isinstance(value, dict):
        raise MatrixError(Codes.BAD_JSON, "Content must be a JSON object.")
    return value


def get_access_token(request: IRequest) -> str | None:
    """The access token from `Authorization: Bearer` or the `access_token` query parameter.

    Spec: "Using access tokens". Giving both, or two of either, is refused with
    M_MISSING_TOKEN, as Synapse does: the server cannot tell which one is meant.
    """
    headers = request.requestHeaders.getRawHeaders(b"Authorization") or []
    query = request.args.get(b"access_token", []) if request.args else []
    bearer = [h for h in headers if h.split(b" ", 1)[0].lower() == b"bearer"]
    if len(bearer) + len(query) > 1:
        raise MatrixError(
            Codes.MISSING_TOKEN,
            "Mixing Authorization headers and access_token query parameters.",
            status=401,
        )
    if bearer:
        parts = bearer[0].split(b" ", 1)
        if len(parts) != 2 or not parts[1].strip():
            raise MatrixError(Codes.MISSING_TOKEN, "Invalid Authorization header.", status=401)
        return parts[1].strip().decode("ascii", errors="replace")
    if query:
        return query[0].decode("ascii", errors="replace")
    return None


# Bodies smaller than this are sent as they are: gzip would not make them smaller.
GZIP_MIN_BYTES = 256
# A middle level: most of the saving for a fraction of level 9's CPU.
GZIP_LEVEL = 6


def _accepts_gzip(request: SiteRequest) -> bool:
    header = request.getHeader(b"Accept-Encoding") or b""
    for part in header.split(b","):
        coding, _, params = part.strip().partition(b";")
        if coding.strip().lower() in (b"gzip", b"*"):
            return params.replace(b" ", b"").lower() not in (
                b"q=0",
                b"q=0.0",
                b"q=0.00",
                b"q=0.000",
            )
    return False


@dataclass(frozen=True, slots=True)
class _Route:
    pattern: re.Pattern[str]
    servlet: Servlet
    methods: dict[bytes, tuple[Callable[..., Awaitable[ServletResult]], Auth]]
    # gzip responses when the client accepts it (the listener's `compress`).
    compress: bool


class Router(resource.Resource):
    """Dispatches every path of one listener to the servlet that declares it."""

    isLeaf = True

    def __init__(
        self,
        authenticator: Authenticator | None = None,
        server_authenticator: ServerAuthenticator | None = None,
    ) -> None:
        super().__init__()
        self._routes: list[_Route] = []
        self._authenticator = authenticator
        self._server_authenticator = server_authenticator

    def register(self, servlet: Servlet, *, compress: bool = False) -> None:
        """Serve `servlet`; TypeError if a method lacks a declared auth (or an authenticator)."""
        methods = {}
        for method, handler in servlet.methods().items():
            auth = servlet.auth_for(method.decode("ascii"))
            if auth is Auth.SERVER:
                if self._server_authenticator is None:
                    raise TypeError(
                        f"{type(servlet).__name__} needs server authentication but the Router"
                        " has no server authenticator"
                    )
            elif auth is not Auth.NONE and self._authenticator is None:
                raise TypeError(
                    f"{type(servlet).__name__} needs authentication but the Router has no authenticator"
                )
            methods[method] = (handler, auth)
        for pattern in servlet.PATTERNS:
            self._routes.append(_Route(re.compile(pattern), servlet, methods, compress))

    def render(self, request: server.Request) -> int:
        assert isinstance(request, SiteRequest)
        handling = defer.ensureDeferred(self._handle(request))

        def on_disconnect(failure: Any) -> None:
            if getattr(request, "cancellable", False) and not handling.called:
                handling.cancel()

        request.notifyFinish().addErrback(on_disconnect)
        return server.NOT_DONE_YET

    async def _handle(self, request: SiteRequest) -> None:
        current_request_id.set(request.request_id)
        for name, value in CORS_HEADERS.items():
            request.setHeader(name, value)
        try:
            result = await self._dispatch(request)
        except defer.CancelledError:
            logger.info("Client went away: %s %s", request.method, redact_uri(request.uri))
            return
        except MatrixError as e:
            retry_after = retry_after_header(e)
            if retry_after is not None:
                request.setHeader(b"Retry-After", retry_after.encode("ascii"))
            result = (e.status, e.to_dict())
        except Exception:
            logger.exception("Request failed: %s %s", request.method, redact_uri(request.uri))
            result = (500, {"errcode": Codes.UNKNOWN, "error": "Internal server error"})
        self._respond(request, result)

    async def _dispatch(self, request: SiteRequest) -> ServletResult:
        if request.method == b"OPTIONS":
            request.servlet_name = "options"
            return 200, {}
        path = request.path.decode("ascii", errors="replace")
        method = b"GET" if request.method == b"HEAD" else request.method
        known_path = False
        for route in self._routes:
            match = route.pattern.match(path)
            if match is None:
                continue
            known_path = True
            declared = route.methods.get(method)
            if declared is None:
                continue
            handler, auth = declared
            request.servlet_name = type(route.servlet).__name__
            request.cancellable = method.decode("ascii") in route.servlet.CANCELLABLE
            request.compress_response = route.compress
            if request.body_too_large:
                raise MatrixError(Codes.TOO_LARGE, "Request body too large.")
            kwargs: dict[str, Any] = {
                k: unquote(v) for k, v in match.groupdict().items() if v is not None
            }
            if any(_NUL in v for v in kwargs.values()):
                raise MatrixError(Codes.INVALID_PARAM, "Path parameters may not contain NUL characters.")
            if auth is Auth.SERVER:
                assert self._server_authenticator is not None
                kwargs["origin"] = await self._server_authenticator.authenticate_request(request)
            elif auth is not Auth.NONE:
                kwargs["requester"] = await self._authenticate(request, auth)
            return await handler(request, **kwargs)
        if known_path:
            raise MatrixError(Codes.UNRECOGNIZED, "Unrecognized request", status=405)
        raise MatrixError(Codes.UNRECOGNIZED, "Unrecognized request", status=404)

    async def _authenticate(self, request: SiteRequest, auth: Auth) -> Requester | None:
        token = get_access_token(request)
        if token is None:
            if auth is Auth.OPTIONAL:
                return None
            raise MatrixError(Codes.MISSING_TOKEN, "Missing access token.", status=401)
        assert self._authenticator is not None
        requester = await self._authenticator.authenticate(
            token, request.client_ip(), request.user_agent()
        )
        request.requester = requester.user_id
        if requester.is_guest and auth is Auth.USER:
            raise MatrixError(Codes.GUEST_ACCESS_FORBIDDEN, "Guest access not allowed")
        return requester

    @staticmethod
    def _respond(request: SiteRequest, result: ServletResult) -> None:
        if request._disconnected or request.finished:
            return
        if isinstance(result, RawResponse):
            status, body, content_type = result.status, result.body, result.content_type
            for name, value in result.headers:
                request.setHeader(name, value)
        else:
            status, value = result
            body = encode_json(value)
            content_type = b"application/json"
        if request.compress_response:
            request.setHeader(b"Vary", b"Accept-Encoding")
            if len(body) >= GZIP_MIN_BYTES and _accepts_gzip(request):
                body = gzip.compress(body, compresslevel=GZIP_LEVEL)
                request.setHeader(b"Content-Encoding", b"gzip")
        request.setResponseCode(status)
        request.setHeader(b"Content-Type", content_type)
        request.setHeader(b"Content-Length", str(len(body)).encode("ascii"))
        request.setHeader(b"Cache-Control", b"no-cache, no-store, must-revalidate")
        request.write(body)
        request.finish()
