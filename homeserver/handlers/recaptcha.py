"""Checking `m.login.recaptcha` answers with the reCAPTCHA verify service.

Spec: client-server API "User-interactive authentication API", "Google
ReCaptcha": the client sends `{"type": "m.login.recaptcha", "response": ...}`
and the homeserver asks the captcha provider whether that response is good.
As Synapse does, the check POSTs the form fields `secret` (the private key),
`response` and `remoteip` to `recaptcha_siteverify_api`, and passes only if
the JSON answer has `"success": true`. The answer's `hostname` is not
compared with anything: the captcha may be shown by any client.

    verifier = RecaptchaVerifier(reactor, clock, config.captcha)
    if verifier.is_enabled(): flows include m.login.recaptcha, with params
        {"m.login.recaptcha": {"public_key": verifier.public_key}}
    await verifier.check_auth(auth_dict, client_ip)   # True, or MatrixError

Errors, as Synapse gives them: no `response` is 400 M_CAPTCHA_NEEDED; a
verdict other than success is 401 M_UNAUTHORIZED. Where Synapse would fail
with a 500 (the service unreachable, too slow, or answering something that is
not JSON), this also answers 401 M_UNAUTHORIZED, logged, so that the client
can present the captcha again.
"""

from __future__ import annotations

import json
import logging
from typing import Any

import treq
from twisted.internet import defer
from twisted.web.client import Agent

from homeserver.clock import Clock
from homeserver.config.captcha import CaptchaConfig
from homeserver.types.errors import Codes, MatrixError

logger = logging.getLogger(__name__)

LOGIN_TYPE = "m.login.recaptcha"
DEFAULT_TIMEOUT_SECONDS = 15.0
# A verify answer is a few hundred bytes; anything far larger is not one.
_MAX_ANSWER_BYTES = 64 * 1024


class RecaptchaVerifier:
    def __init__(
        self,
        reactor: Any,
        clock: Clock,
        config: CaptchaConfig,
        *,
        timeout: float = DEFAULT_TIMEOUT_SECONDS,
    ) -> None:
        self._clock = clock
        self._config = config
        self._timeout = timeout
        self._client = treq.client.HTTPClient(Agent(reactor, connectTimeout=timeout))

    def is_enabled(self) -> bool:
        """Whether registration asks for a captcha (enabled, with a private key to check it)."""
        return self._config.enable_registration_captcha and bool(self._config.recaptcha_private_key)

    @property
    def public_key(self) -> str | None:
        """The site key clients need, for the UIA `params` of m.login.recaptcha."""
        return self._config.recaptcha_public_key

    async def check_auth(self, auth_dict: dict[str, Any], client_ip: str) -> bool:
        """Verify the `response` in an m.login.recaptcha auth dict; True, or raise MatrixError."""
        response = auth_dict.get("response")
        if not isinstance(response, str) or not response:
            raise MatrixError(Codes.CAPTCHA_NEEDED, "Captcha response is required", status=400)
        secret = self._config.recaptcha_private_key
        if not secret:
            raise MatrixError(Codes.UNAUTHORIZED, "Captcha is not enabled on this server", status=401)

        fields = {"secret": secret, "response": response, "remoteip": client_ip}
        request = defer.ensureDeferred(self._post(fields))
        timed_out: list[bool] = []

        def give_up() -> None:
            timed_out.append(True)
            request.cancel()

        timer = self._clock.call_later(self._timeout, give_up)
        try:
            answer = await request
        except Exception as e:
            if timed_out:
                logger.warning(
                    "reCAPTCHA verify service %s gave no answer in %ss",
                    self._config.recaptcha_siteverify_api,
                    self._timeout,
                )
            else:
                logger.warning(
                    "reCAPTCHA verify service %s failed: %s",
                    self._config.recaptcha_siteverify_api,
                    e,
                )
            raise self._failed() from e
        finally:
            if timer.active():
                timer.cancel()

        success = isinstance(answer, dict) and answer.get("success") is True
        logger.info(
            "%s reCAPTCHA from hostname %s (client %s)",
            "Successful" if success else "Failed",
            answer.get("hostname") if isinstance(answer, dict) else None,
            client_ip,
        )
        if not success:
            raise self._failed()
        return True

    async def _post(self, fields: dict[str, str]) -> Any:
        """POST the form to the verify URL; its JSON answer. Raises on any failure."""
        response = await self._client.post(self._config.recaptcha_siteverify_api, data=fields)
        chunks: list[bytes] = []

        def collect(chunk: bytes) -> None:
            chunks.append(chunk)
            if sum(map(len, chunks)) > _MAX_ANSWER_BYTES:
                raise ValueError(f"answer larger than {_MAX_ANSWER_BYTES} bytes")

        await treq.collect(response, collect)
        try:
            return json.loads(b"".join(chunks).decode("utf-8"))
        except (UnicodeDecodeError, ValueError) as e:
            raise ValueError(f"HTTP {response.code} answer is not JSON") from e

    @staticmethod
    def _failed() -> MatrixError:
        return MatrixError(Codes.UNAUTHORIZED, "Captcha authentication failed", status=401)
