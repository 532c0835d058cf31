"""The UIA stages of registration besides m.login.dummy, and the flows made of them.

Spec: client-server API "Authentication types": m.login.recaptcha,
m.login.terms, m.login.email.identity, m.login.msisdn (and
m.login.registration_token, in homeserver.handlers.registration_tokens).
`registration_flows` builds the flows as Synapse does (see
homeserver.config.registration): the 3PID-less flow [m.login.dummy] unless a
3PID is required, [m.login.email.identity] when email is configured,
[m.login.msisdn] and [m.login.msisdn, m.login.email.identity] when a phone
number delegate is; then m.login.terms, m.login.recaptcha and
m.login.registration_token are put in front of every flow, in that order
(so the token comes first).
"""

from __future__ import annotations

from typing import Any

from homeserver.config.consent import ConsentConfig
from homeserver.handlers.recaptcha import RecaptchaVerifier
from homeserver.handlers.threepids import ThreepidHandler
from homeserver.handlers.ui_auth import DUMMY, StageContext, StageFailed
from homeserver.types.errors import Codes, MatrixError
from homeserver.types.threepids import EMAIL, MSISDN

JsonDict = dict[str, Any]

TERMS = "m.login.terms"
RECAPTCHA = "m.login.recaptcha"
EMAIL_IDENTITY = "m.login.email.identity"
MSISDN_STAGE = "m.login.msisdn"
REGISTRATION_TOKEN = "m.login.registration_token"


def registration_flows(
    *,
    require_3pid: tuple[str, ...],
    email: bool,
    msisdn: bool,
    terms: bool,
    recaptcha: bool,
    token: bool,
) -> list[list[str]]:
    """The registration flows for this configuration (Synapse's order)."""
    require_email = "email" in require_3pid
    require_msisdn = "msisdn" in require_3pid
    flows: list[list[str]] = []
    if not require_email and not require_msisdn:
        # Without it, a client completing the captcha first would finish registration
        # when it meant to go on with an email flow.
        flows.append([DUMMY])
    if email and not require_msisdn:
        flows.append([EMAIL_IDENTITY])
    if msisdn and not require_email:
        flows.append([MSISDN_STAGE])
    if email and msisdn:
        flows.append([MSISDN_STAGE, EMAIL_IDENTITY])
    for enabled, stage in ((terms, TERMS), (recaptcha, RECAPTCHA), (token, REGISTRATION_TOKEN)):
        if enabled:
            for flow in flows:
                flow.insert(0, stage)
    return flows


class TermsStageChecker:
    """m.login.terms: the client shows the policies; submitting the stage accepts them."""

    stage_type = TERMS

    def __init__(self, consent: ConsentConfig) -> None:
        self._consent = consent

    def params(self) -> JsonDict | None:
        return self._consent.terms_params()

    async def check(self, authdict: JsonDict, context: StageContext) -> Any:
        return True


class RecaptchaStageChecker:
    """m.login.recaptcha, checked by the RecaptchaVerifier; a refusal may be retried."""

    stage_type = RECAPTCHA

    def __init__(self, verifier: RecaptchaVerifier) -> None:
        self._verifier = verifier

    def params(self) -> JsonDict | None:
        return {"public_key": self._verifier.public_key}

    async def check(self, authdict: JsonDict, context: StageContext) -> Any:
        try:
            return await self._verifier.check_auth(authdict, context.client.ip)
        except MatrixError as e:
            raise StageFailed(e.errcode, e.message) from e


class ThreepidStageChecker:
    """m.login.email.identity and m.login.msisdn: a validated session (`threepid_creds`).

    Establishes `{medium, address, validated_at}`; the session is spent.
    """

    def __init__(self, threepids: ThreepidHandler, medium: str) -> None:
        assert medium in (EMAIL, MSISDN)
        self._threepids = threepids
        self._medium = medium
        self.stage_type = EMAIL_IDENTITY if medium == EMAIL else MSISDN_STAGE

    def params(self) -> JsonDict | None:
        return None

    async def check(self, authdict: JsonDict, context: StageContext) -> Any:
        creds = authdict.get("threepid_creds", authdict.get("threepidCreds"))
        if creds is None:
            raise MatrixError(Codes.MISSING_PARAM, "Missing threepid_creds")
        if not isinstance(creds, dict):
            raise MatrixError(Codes.INVALID_PARAM, "'threepid_creds' must be an object")
        validated = await self._threepids.take_validated(
            self._medium, creds.get("sid"), creds.get("client_secret")
        )
        if validated is None:
            raise StageFailed(Codes.UNAUTHORIZED, "Unable to get validated threepid")
        return {
            "medium": validated.medium,
            "address": validated.address,
            "validated_at": validated.validated_at,
        }
