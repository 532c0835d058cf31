"""The pages validation emails link to, and the msisdn code submission.

The links the Mailer sends (homeserver.handlers.mailer.SUBMIT_TOKEN_PATHS),
each with `?token=&client_secret=&sid=`, opened in a browser:

    GET  /_matrix/client/unstable/registration/email/submit_token
    GET  /_matrix/client/unstable/add_threepid/email/submit_token
         validate the session at once: a redirect (302) to the client's
         next_link if it gave one, else an HTML page saying so; a failure is
         an HTML page with the reason and status 400.
    GET  /_synapse/client/password_reset/email/submit_token
         a page asking to confirm, whose button POSTs to the same URL (link
         previewers that fetch the link must not reset anyone's password);
    POST /_synapse/client/password_reset/email/submit_token
         validates, as above.

and, with a phone number delegate, POST
/_matrix/client/unstable/add_threepid/msisdn/submit_token (JSON, MSC2078),
passed on to the identity server. Missing parameters are 400 M_MISSING_PARAM
(JSON), as Synapse answers them.
"""

from __future__ import annotations

import html
from urllib.parse import urlencode

from homeserver.api.http import Auth, JsonDict, RawResponse, Servlet, SiteRequest, parse_json_object
from homeserver.api.params import query_str
from homeserver.handlers.mailer import (
    ADD_THREEPID,
    PASSWORD_RESET,
    REGISTRATION,
    SUBMIT_TOKEN_PATHS,
)
from homeserver.handlers.threepids import ThreepidHandler, ValidationFailed
from homeserver.types.errors import Codes, MatrixError

_PAGE = """<!DOCTYPE html>
<html lang="en">
<head><meta charset="utf-8"><title>{title}</title></head>
<body style="font-family: sans-serif; max-width: 40em;">
<h1>{title}</h1>
{content}
</body>
</html>
"""

_SUCCESS = {
    REGISTRATION: "Your email address has been validated. Return to your client to finish registering.",
    ADD_THREEPID: "Your email address has been validated. Return to your client to finish adding it.",
    PASSWORD_RESET: "Your email address has been validated. Return to your client to choose a new password.",
}


def html_page(status: int, title: str, content: str) -> RawResponse:
    """An HTML answer; `content` is HTML (escape what goes into it)."""
    body = _PAGE.format(title=html.escape(title), content=content).encode("utf-8")
    return RawResponse(status, body, b"text/html; charset=utf-8")


def _params(request: SiteRequest) -> tuple[str, str, str]:
    values = []
    for name in ("sid", "client_secret", "token"):
        value = query_str(request, name, required=True)
        assert value is not None
        values.append(value)
    return values[0], values[1], values[2]


class _EmailSubmitToken(Servlet):
    """Validates a session from an emailed link (the GET or POST of a subclass)."""

    AUTH = Auth.NONE
    PURPOSE = REGISTRATION

    def __init__(self, threepids: ThreepidHandler) -> None:
        self._threepids = threepids

    async def _validate(self, request: SiteRequest) -> RawResponse:
        if not self._threepids.email_enabled:
            raise MatrixError(Codes.UNKNOWN, "Email validation is disabled on this server", status=400)
        sid, client_secret, token = _params(request)
        try:
            next_link = await self._threepids.submit_email_token(sid, client_secret, token)
        except ValidationFailed as e:
            return html_page(
                400, "Validation failed", f"<p>The link did not work: {html.escape(e.message)}.</p>"
            )
        if next_link and not next_link.startswith("file:"):
            return RawResponse(
                302,
                b"",
                b"text/plain",
                ((b"Location", next_link.encode("utf-8")),),
            )
        return html_page(200, "Email validated", f"<p>{html.escape(_SUCCESS[self.PURPOSE])}</p>")


class RegistrationSubmitTokenServlet(_EmailSubmitToken):
    """GET /_matrix/client/unstable/registration/{medium}/submit_token: the registration link."""

    PATTERNS = ("^/_matrix/client/unstable/registration/(?P<medium>[^/]*)/submit_token$",)
    PURPOSE = REGISTRATION

    async def on_GET(self, request: SiteRequest, medium: str) -> RawResponse:
        if medium != "email":
            raise MatrixError(
                Codes.UNKNOWN, "This medium is currently not supported for registration", status=400
            )
        return await self._validate(request)


class AddThreepidSubmitTokenServlet(_EmailSubmitToken):
    """GET /_matrix/client/unstable/add_threepid/email/submit_token: the link for adding an address."""

    PATTERNS = (f"^/{SUBMIT_TOKEN_PATHS[ADD_THREEPID]}$",)
    PURPOSE = ADD_THREEPID

    async def on_GET(self, request: SiteRequest) -> RawResponse:
        return await self._validate(request)


class PasswordResetSubmitTokenServlet(_EmailSubmitToken):
    """GET/POST /_synapse/client/password_reset/email/submit_token: confirm, then validate."""

    PATTERNS = (f"^/{SUBMIT_TOKEN_PATHS[PASSWORD_RESET]}$",)
    PURPOSE = PASSWORD_RESET

    async def on_GET(self, request: SiteRequest) -> RawResponse:
        if not self._threepids.email_enabled:
            raise MatrixError(Codes.UNKNOWN, "Email validation is disabled on this server", status=400)
        sid, client_secret, token = _params(request)
        query = urlencode({"sid": sid, "client_secret": client_secret, "token": token})
        form = (
            "<p>Follow the button to confirm that you want to reset your password.</p>"
            f'<form method="post" action="submit_token?{html.escape(query, quote=True)}">'
            '<input type="submit" value="Confirm password reset"></form>'
        )
        return html_page(200, "Reset your password", form)

    async def on_POST(self, request: SiteRequest) -> RawResponse:
        return await self._validate(request)


class MsisdnSubmitTokenServlet(Servlet):
    """POST /_matrix/client/unstable/add_threepid/msisdn/submit_token: the texted code (MSC2078)."""

    PATTERNS = ("^/_matrix/client/unstable/add_threepid/msisdn/submit_token$",)
    AUTH = Auth.NONE

    def __init__(self, threepids: ThreepidHandler) -> None:
        self._threepids = threepids

    async def on_POST(self, request: SiteRequest) -> tuple[int, JsonDict]:
        return 200, await self._threepids.submit_msisdn_token(parse_json_object(request))
