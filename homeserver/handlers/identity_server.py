"""The identity server phone numbers are validated by (`account_threepid_delegates.msisdn`).

This server sends no text messages itself: as Synapse does, it hands phone
number validation to a configured identity server through the Identity
Service API ("Validation"):

    POST {delegate}/_matrix/identity/api/v1/validate/msisdn/requestToken
    POST {delegate}/_matrix/identity/api/v1/validate/msisdn/submitToken
    GET  {delegate}/_matrix/identity/api/v1/3pid/getValidated3pid?sid=&client_secret=

The answer to requestToken gets a `submit_url` pointing at this server's
`add_threepid/msisdn/submit_token` (MSC2078), which proxies submitToken, so
clients send the code to their homeserver. An error the identity server
answers with (an errcode and a 4xx status) is passed on; an unreachable or
nonsensical identity server is 500 M_UNKNOWN, as Synapse answers.
"""

from __future__ import annotations

import json
import logging
from typing import Any
from urllib.parse import urlencode

import treq
from twisted.internet import defer
from twisted.web.client import Agent

from homeserver.clock import Clock
from homeserver.types.errors import Codes, MatrixError

logger = logging.getLogger(__name__)

JsonDict = dict[str, Any]

DEFAULT_TIMEOUT_SECONDS = 30.0
_MAX_ANSWER_BYTES = 64 * 1024
SUBMIT_TOKEN_PATH = "_matrix/client/unstable/add_threepid/msisdn/submit_token"


class IdentityServerClient:
    def __init__(
        self,
        reactor: Any,
        clock: Clock,
        base_url: str,
        public_baseurl: str,
        *,
        timeout: float = DEFAULT_TIMEOUT_SECONDS,
    ) -> None:
        self._clock = clock
        self._base_url = base_url.rstrip("/")
        self._submit_url = public_baseurl + SUBMIT_TOKEN_PATH
        self._timeout = timeout
        self._client = treq.client.HTTPClient(Agent(reactor, connectTimeout=timeout))

    async def request_msisdn_token(
        self,
        country: str,
        phone_number: str,
        client_secret: str,
        send_attempt: int,
        next_link: str | None,
    ) -> JsonDict:
        """Ask the identity server to text a code; its answer (with `sid`) plus `submit_url`."""
        body: JsonDict = {
            "country": country,
            "phone_number": phone_number,
            "client_secret": client_secret,
            "send_attempt": send_attempt,
        }
        if next_link is not None:
            body["next_link"] = next_link
        answer = await self._call("POST", "/validate/msisdn/requestToken", body)
        if not isinstance(answer.get("sid"), str):
            raise self._failed("no sid in the identity server's answer")
        answer["submit_url"] = self._submit_url
        return answer

    async def submit_msisdn_token(self, client_secret: str, sid: str, token: str) -> JsonDict:
        """Pass the code the user received on to the identity server; its answer."""
        return await self._call(
            "POST",
            "/validate/msisdn/submitToken",
            {"client_secret": client_secret, "sid": sid, "token": token},
        )

    async def get_validated_threepid(self, sid: str, client_secret: str) -> JsonDict | None:
        """`{medium, address, validated_at}` once the session is validated, else None."""
        query = urlencode({"sid": sid, "client_secret": client_secret})
        try:
            answer = await self._call("GET", f"/3pid/getValidated3pid?{query}", None)
        except MatrixError as e:
            if e.status < 500:
                return None
            raise
        if not (
            isinstance(answer.get("medium"), str)
            and isinstance(answer.get("address"), str)
            and isinstance(answer.get("validated_at"), int)
        ):
            return None
        return {
            "medium": answer["medium"],
            "address": answer["address"],
            "validated_at": answer["validated_at"],
        }

    async def _call(self, method: str, path: str, body: JsonDict | None) -> JsonDict:
        url = f"{self._base_url}/_matrix/identity/api/v1{path}"
        request = defer.ensureDeferred(self._request(method, url, body))
        timer = self._clock.call_later(self._timeout, request.cancel)
        try:
            status, answer = await request
        except Exception as e:
            logger.warning("Identity server %s %s failed: %s", method, url, e)
            raise self._failed(str(e)) from e
        finally:
            if timer.active():
                timer.cancel()
        if status == 200 and isinstance(answer, dict):
            return answer
        if 400 <= status < 500 and isinstance(answer, dict) and isinstance(answer.get("errcode"), str):
            message = answer.get("error")
            raise MatrixError(
                answer["errcode"],
                message if isinstance(message, str) else "Identity server error",
                status=status,
            )
        raise self._failed(f"HTTP {status}")

    async def _request(self, method: str, url: str, body: JsonDict | None) -> tuple[int, Any]:
        data = None if body is None else json.dumps(body).encode("utf-8")
        headers = {b"Content-Type": [b"application/json"]} if data is not None else None
        response = await self._client.request(method, url, data=data, headers=headers)
        chunks: list[bytes] = []

        def collect(chunk: bytes) -> None:
            chunks.append(chunk)
            if sum(map(len, chunks)) > _MAX_ANSWER_BYTES:
                raise ValueError(f"answer larger than {_MAX_ANSWER_BYTES} bytes")

        await treq.collect(response, collect)
        try:
            return response.code, json.loads(b"".join(chunks).decode("utf-8"))
        except (UnicodeDecodeError, ValueError):
            return response.code, None

    @staticmethod
    def _failed(reason: str) -> MatrixError:
        logger.warning("Identity server request failed: %s", reason)
        return MatrixError(Codes.UNKNOWN, "Failed to contact the identity server", status=500)
