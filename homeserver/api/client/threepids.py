"""Third-party identifiers: GET /account/3pid, the requestToken endpoints, /account/3pid/add and /delete.

POST /account/3pid/bind and /unbind (identity server bindings) are not
served: this server binds nothing on identity servers.
"""

from __future__ import annotations

from homeserver.api.client._base import client_info
from homeserver.api.http import (
    Auth,
    JsonDict,
    Servlet,
    SiteRequest,
    client_patterns,
    parse_json_object,
)
from homeserver.handlers.auth import Requester
from homeserver.handlers.mailer import ADD_THREEPID, PASSWORD_RESET, REGISTRATION
from homeserver.handlers.threepids import ThreepidHandler, check_client_secret
from homeserver.handlers.ui_auth import UserInteractiveAuth
from homeserver.types.errors import Codes, MatrixError

_PATHS = {
    REGISTRATION: "/register/{medium}/requestToken",
    ADD_THREEPID: "/account/3pid/{medium}/requestToken",
    PASSWORD_RESET: "/account/password/{medium}/requestToken",
}


class ThreepidsServlet(Servlet):
    """GET /_matrix/client/v3/account/3pid: the requester's third-party identifiers."""

    PATTERNS = client_patterns("/account/3pid")
    AUTH = Auth.USER

    def __init__(self, threepids: ThreepidHandler) -> None:
        self._threepids = threepids

    async def on_GET(self, request: SiteRequest, requester: Requester) -> tuple[int, JsonDict]:
        threepids = await self._threepids.get_threepids(requester.user_id)
        return 200, {
            "threepids": [
                {
                    "medium": t.medium,
                    "address": t.address,
                    "validated_at": t.validated_at,
                    "added_at": t.added_at,
                }
                for t in threepids
            ]
        }


class EmailRequestTokenServlet(Servlet):
    """POST /_matrix/client/v3/{register,account/3pid,account/password}/email/requestToken.

    Emails a validation link for `purpose` (one servlet per path); answers `{"sid"}`.
    """

    AUTH = Auth.NONE

    def __init__(self, threepids: ThreepidHandler, purpose: str) -> None:
        self._threepids = threepids
        self._purpose = purpose
        self.PATTERNS = client_patterns(_PATHS[purpose].format(medium="email"))

    async def on_POST(self, request: SiteRequest) -> tuple[int, JsonDict]:
        body = parse_json_object(request)
        return 200, await self._threepids.request_email_token(
            self._purpose, body, request.client_ip()
        )


class MsisdnRequestTokenServlet(Servlet):
    """POST /_matrix/client/v3/{register,account/3pid,account/password}/msisdn/requestToken.

    Passed on to `account_threepid_delegates.msisdn`; 400
    M_THREEPID_MEDIUM_NOT_SUPPORTED when there is none.
    """

    AUTH = Auth.NONE

    def __init__(self, threepids: ThreepidHandler, purpose: str) -> None:
        self._threepids = threepids
        self._purpose = purpose
        self.PATTERNS = client_patterns(_PATHS[purpose].format(medium="msisdn"))

    async def on_POST(self, request: SiteRequest) -> tuple[int, JsonDict]:
        body = parse_json_object(request)
        return 200, await self._threepids.request_msisdn_token(
            self._purpose, body, request.client_ip()
        )


class ThreepidAddServlet(Servlet):
    """POST /_matrix/client/v3/account/3pid/add: bind a validated identifier (user-interactive auth)."""

    PATTERNS = client_patterns("/account/3pid/add")
    AUTH = Auth.USER

    def __init__(self, threepids: ThreepidHandler, uia: UserInteractiveAuth) -> None:
        self._threepids = threepids
        self._uia = uia

    async def on_POST(self, request: SiteRequest, requester: Requester) -> tuple[int, JsonDict]:
        body = parse_json_object(request)
        check_client_secret(body.get("client_secret"))
        if not isinstance(body.get("sid"), str):
            raise MatrixError(
                Codes.MISSING_PARAM if body.get("sid") is None else Codes.INVALID_PARAM,
                "'sid' must be a string",
            )
        result = await self._uia.validate_user(
            requester, client_info(request), body, "add a third-party identifier to your account"
        )
        await self._threepids.add_threepid(requester.user_id, result.params)
        return 200, {}


class ThreepidDeleteServlet(Servlet):
    """POST /_matrix/client/v3/account/3pid/delete: unbind one of the requester's identifiers."""

    PATTERNS = client_patterns("/account/3pid/delete")
    AUTH = Auth.USER

    def __init__(self, threepids: ThreepidHandler) -> None:
        self._threepids = threepids

    async def on_POST(self, request: SiteRequest, requester: Requester) -> tuple[int, JsonDict]:
        result = await self._threepids.delete_threepid(requester.user_id, parse_json_object(request))
        return 200, {"id_server_unbind_result": result}


def threepid_servlets(threepids: ThreepidHandler, uia: UserInteractiveAuth) -> list[Servlet]:
    servlets: list[Servlet] = [
        ThreepidsServlet(threepids),
        ThreepidAddServlet(threepids, uia),
        ThreepidDeleteServlet(threepids),
    ]
    for purpose in (REGISTRATION, ADD_THREEPID, PASSWORD_RESET):
        servlets.append(EmailRequestTokenServlet(threepids, purpose))
        servlets.append(MsisdnRequestTokenServlet(threepids, purpose))
    return servlets
