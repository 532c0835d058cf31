"""PUT /_matrix/federation/v1/send/{txnId}: transactions of PDUs and EDUs from other servers."""

from __future__ import annotations

from homeserver.api.http import Auth, JsonDict, Servlet, SiteRequest, parse_json_object
from homeserver.federation.receiver import FederationReceiver


class FederationSendServlet(Servlet):
    """PUT /_matrix/federation/v1/send/{txnId} (X-Matrix): process a transaction, answer per PDU.

    Spec: server-server API "Transactions". The body is checked and handled
    by `FederationReceiver.on_send_transaction`.
    """

    PATTERNS = ("^/_matrix/federation/v1/send/(?P<transaction_id>[^/]+)$",)
    AUTH = Auth.SERVER

    def __init__(self, receiver: FederationReceiver) -> None:
        self._receiver = receiver

    async def on_PUT(
        self, request: SiteRequest, origin: str, transaction_id: str
    ) -> tuple[int, JsonDict]:
        body = parse_json_object(request)
        return await self._receiver.on_send_transaction(origin, transaction_id, body)
