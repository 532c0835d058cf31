"""Matrix error codes and the one error type that carries them.

Every failure a client or a remote server should see is a `MatrixError`: an
errcode from the spec, a human-readable message, and the HTTP status that goes
with it. The status comes from `DEFAULT_STATUS` unless the spec asks for a
different one in a specific place (for example `M_UNRECOGNIZED` is 404 for an
unknown path but 405 for a known path with the wrong method).

Pure: no Twisted, no HTTP library. `homeserver.api.http` turns these into
responses.
"""

from __future__ import annotations

from typing import Any


class Codes:
    """The errcodes of the client-server and server-server APIs (spec: "Standard error response")."""

    FORBIDDEN = "M_FORBIDDEN"
    UNKNOWN_TOKEN = "M_UNKNOWN_TOKEN"
    MISSING_TOKEN = "M_MISSING_TOKEN"
    USER_LOCKED = "M_USER_LOCKED"
    USER_SUSPENDED = "M_USER_SUSPENDED"
    BAD_JSON = "M_BAD_JSON"
    NOT_JSON = "M_NOT_JSON"
    NOT_FOUND = "M_NOT_FOUND"
    LIMIT_EXCEEDED = "M_LIMIT_EXCEEDED"
    UNRECOGNIZED = "M_UNRECOGNIZED"
    UNKNOWN = "M_UNKNOWN"
    UNAUTHORIZED = "M_UNAUTHORIZED"
    USER_DEACTIVATED = "M_USER_DEACTIVATED"
    USER_IN_USE = "M_USER_IN_USE"
    INVALID_USERNAME = "M_INVALID_USERNAME"
    ROOM_IN_USE = "M_ROOM_IN_USE"
    BAD_ALIAS = "M_BAD_ALIAS"
    INVALID_ROOM_STATE = "M_INVALID_ROOM_STATE"
    THREEPID_IN_USE = "M_THREEPID_IN_USE"
    THREEPID_NOT_FOUND = "M_THREEPID_NOT_FOUND"
    THREEPID_AUTH_FAILED = "M_THREEPID_AUTH_FAILED"
    THREEPID_DENIED = "M_THREEPID_DENIED"
    THREEPID_MEDIUM_NOT_SUPPORTED = "M_THREEPID_MEDIUM_NOT_SUPPORTED"
    SERVER_NOT_TRUSTED = "M_SERVER_NOT_TRUSTED"
    UNSUPPORTED_ROOM_VERSION = "M_UNSUPPORTED_ROOM_VERSION"
    INCOMPATIBLE_ROOM_VERSION = "M_INCOMPATIBLE_ROOM_VERSION"
    BAD_STATE = "M_BAD_STATE"
    GUEST_ACCESS_FORBIDDEN = "M_GUEST_ACCESS_FORBIDDEN"
    CAPTCHA_NEEDED = "M_CAPTCHA_NEEDED"
    CAPTCHA_INVALID = "M_CAPTCHA_INVALID"
    MISSING_PARAM = "M_MISSING_PARAM"
    INVALID_PARAM = "M_INVALID_PARAM"
    TOO_LARGE = "M_TOO_LARGE"
    EXCLUSIVE = "M_EXCLUSIVE"
    RESOURCE_LIMIT_EXCEEDED = "M_RESOURCE_LIMIT_EXCEEDED"
    CANNOT_LEAVE_SERVER_NOTICE_ROOM = "M_CANNOT_LEAVE_SERVER_NOTICE_ROOM"
    WEAK_PASSWORD = "M_WEAK_PASSWORD"
    UNABLE_TO_AUTHORISE_JOIN = "M_UNABLE_TO_AUTHORISE_JOIN"
    UNABLE_TO_GRANT_JOIN = "M_UNABLE_TO_GRANT_JOIN"
    WRONG_ROOM_KEYS_VERSION = "M_WRONG_ROOM_KEYS_VERSION"
    NOT_YET_UPLOADED = "M_NOT_YET_UPLOADED"
    CANNOT_OVERWRITE_MEDIA = "M_CANNOT_OVERWRITE_MEDIA"
    INVALID_SIGNATURE = "M_INVALID_SIGNATURE"
    MISSING_REFERENCE = "M_MISSING_REFERENCE"
    PROFILE_TOO_LARGE = "M_PROFILE_TOO_LARGE"
    KEY_TOO_LARGE = "M_KEY_TOO_LARGE"


# The usual HTTP status for each errcode; callers override it where the spec differs.
DEFAULT_STATUS: dict[str, int] = {
    Codes.FORBIDDEN: 403,
    Codes.UNKNOWN_TOKEN: 401,
    Codes.MISSING_TOKEN: 401,
    Codes.USER_LOCKED: 401,
    Codes.USER_SUSPENDED: 403,
    Codes.BAD_JSON: 400,
    Codes.NOT_JSON: 400,
    Codes.NOT_FOUND: 404,
    Codes.LIMIT_EXCEEDED: 429,
    Codes.UNRECOGNIZED: 404,
    Codes.UNKNOWN: 500,
    Codes.UNAUTHORIZED: 401,
    Codes.USER_DEACTIVATED: 403,
    Codes.USER_IN_USE: 400,
    Codes.INVALID_USERNAME: 400,
    Codes.ROOM_IN_USE: 400,
    Codes.INVALID_ROOM_STATE: 400,
    Codes.THREEPID_IN_USE: 400,
    Codes.THREEPID_NOT_FOUND: 400,
    Codes.THREEPID_AUTH_FAILED: 401,
    Codes.THREEPID_DENIED: 403,
    Codes.THREEPID_MEDIUM_NOT_SUPPORTED: 400,
    Codes.SERVER_NOT_TRUSTED: 403,
    Codes.UNSUPPORTED_ROOM_VERSION: 400,
    Codes.INCOMPATIBLE_ROOM_VERSION: 400,
    Codes.BAD_STATE: 400,
    Codes.GUEST_ACCESS_FORBIDDEN: 403,
    Codes.CAPTCHA_NEEDED: 401,
    Codes.CAPTCHA_INVALID: 400,
    Codes.MISSING_PARAM: 400,
    Codes.INVALID_PARAM: 400,
    Codes.TOO_LARGE: 413,
    Codes.EXCLUSIVE: 400,
    Codes.RESOURCE_LIMIT_EXCEEDED: 403,
    Codes.CANNOT_LEAVE_SERVER_NOTICE_ROOM: 403,
    Codes.WEAK_PASSWORD: 400,
    Codes.UNABLE_TO_AUTHORISE_JOIN: 400,
    Codes.UNABLE_TO_GRANT_JOIN: 502,
    Codes.WRONG_ROOM_KEYS_VERSION: 403,
    Codes.NOT_YET_UPLOADED: 504,
    Codes.CANNOT_OVERWRITE_MEDIA: 409,
    Codes.INVALID_SIGNATURE: 401,
    Codes.MISSING_REFERENCE: 400,
    Codes.PROFILE_TOO_LARGE: 400,
    Codes.KEY_TOO_LARGE: 400,
}


class MatrixError(Exception):
    """An error with a Matrix errcode, shown to the caller as `{"errcode", "error", ...extra}`."""

    def __init__(
        self,
        errcode: str,
        message: str,
        *,
        status: int | None = None,
        **extra: Any,
    ) -> None:
        super().__init__(message)
        self.errcode = errcode
        self.message = message
        self.status = status if status is not None else DEFAULT_STATUS.get(errcode, 400)
        self.extra = extra

    def to_dict(self) -> dict[str, Any]:
        body: dict[str, Any] = {"errcode": self.errcode, "error": self.message}
        body.update(self.extra)
        return body

    def __repr__(self) -> str:
        return f"MatrixError({self.status}, {self.errcode!r}, {self.message!r})"
