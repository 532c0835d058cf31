"""Sending one transaction to one destination, and what its answer means for the sender.

Spec: server-server API, "Transactions": `PUT /_matrix/federation/v1/send/{txnId}`
with `{origin, origin_server_ts, pdus, edus}`, at most 50 PDUs and 100 EDUs.

Transaction IDs are `<start time in ms>.<counter>`: unique per destination
across restarts, since a restart starts from a later time (the receiver uses
them to recognise a retried transaction).

A PDU that has been redacted since it was sent is sent pruned (the redaction
algorithm), so a destination catching up never learns redacted content.

The answer, for the queue (`Outcome`):
- SENT: a 200. Per-PDU errors in the answer are the receiver's verdicts on
  our events (e.g. not allowed); they are logged, not retried.
- REJECTED: any other 4xx except 401 and 429. Sending the same PDUs again
  would get the same answer, so they are dropped (as Synapse does).
- FAILED: no answer, a 5xx, 401 (the receiver could not check our
  signature: it may fetch our keys later) or 429 (rate limited). The
  destination is backed off and caught up later.
"""

from __future__ import annotations

import enum
import logging
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from homeserver import metrics
from homeserver.clock import Clock
from homeserver.federation.client import FederationClient, HttpResponseError, RequestSendFailed
from homeserver.storage.stores.events import StoredEvent
from homeserver.types.redaction import prune_event_dict

logger = logging.getLogger(__name__)

MAX_PDUS_PER_TRANSACTION = 50
MAX_EDUS_PER_TRANSACTION = 100

RedactionLookup = Callable[[Iterable[StoredEvent]], Awaitable[Mapping[str, StoredEvent]]]
"""Event ID -> the redaction that applies to it, for the redacted ones among some events."""


@dataclass(frozen=True, slots=True)
class Edu:
    edu_type: str
    content: Mapping[str, Any]

    def to_json(self) -> dict[str, Any]:
        return {"edu_type": self.edu_type, "content": dict(self.content)}


class Outcome(enum.Enum):
    SENT = "sent"
    REJECTED = "rejected"
    FAILED = "failed"


def classify_http_error(code: int) -> Outcome:
    if code in (401, 429) or code >= 500:
        return Outcome.FAILED
    return Outcome.REJECTED


class TransactionSender:
    """Builds, sends and judges transactions (see the module docstring)."""

    def __init__(
        self,
        client: FederationClient,
        clock: Clock,
        server_name: str,
        applied_redactions: RedactionLookup,
    ) -> None:
        self._client = client
        self._clock = clock
        self._server_name = server_name
        self._applied_redactions = applied_redactions
        self._txn_prefix = str(clock.time_msec())
        self._txn_counter = 0

    def next_txn_id(self) -> str:
        self._txn_counter += 1
        return f"{self._txn_prefix}.{self._txn_counter}"

    async def pdu_json(self, events: Sequence[StoredEvent]) -> list[dict[str, Any]]:
        """The PDUs to send for these events: redacted ones pruned."""
        redacted = await self._applied_redactions(events)
        return [
            prune_event_dict(s.event.room_version, s.event.pdu_json())
            if s.event_id in redacted
            else s.event.pdu_json()
            for s in events
        ]

    async def send(
        self, destination: str, pdus: Sequence[StoredEvent], edus: Sequence[Edu]
    ) -> Outcome:
        if len(pdus) > MAX_PDUS_PER_TRANSACTION or len(edus) > MAX_EDUS_PER_TRANSACTION:
            raise ValueError(f"too many PDUs ({len(pdus)}) or EDUs ({len(edus)})")
        txn_id = self.next_txn_id()
        body: dict[str, Any] = {
            "origin": self._server_name,
            "origin_server_ts": self._clock.time_msec(),
            "pdus": await self.pdu_json(pdus),
        }
        if edus:
            body["edus"] = [edu.to_json() for edu in edus]
        logger.debug(
            "TX [%s] %s: sending %d PDUs, %d EDUs", destination, txn_id, len(pdus), len(edus)
        )
        try:
            answer = await self._client.put_json(
                destination, f"/_matrix/federation/v1/send/{quote(txn_id, safe='')}", body
            )
        except HttpResponseError as e:
            outcome = classify_http_error(e.code)
            if outcome is Outcome.REJECTED:
                logger.warning(
                    "TX [%s] %s: %s; dropping its %d PDUs and %d EDUs",
                    destination,
                    txn_id,
                    e,
                    len(pdus),
                    len(edus),
                )
            else:
                logger.info("TX [%s] %s: %s", destination, txn_id, e)
            metrics.FEDERATION_TRANSACTIONS.labels(outcome.value).inc()
            return outcome
        except RequestSendFailed as e:
            logger.info("TX [%s] %s: failed: %s", destination, txn_id, e)
            metrics.FEDERATION_TRANSACTIONS.labels(Outcome.FAILED.value).inc()
            return Outcome.FAILED
        metrics.FEDERATION_TRANSACTIONS.labels(Outcome.SENT.value).inc()
        metrics.FEDERATION_PDUS_SENT.inc(len(pdus))
        metrics.FEDERATION_EDUS_SENT.inc(len(edus))
        _log_pdu_errors(destination, txn_id, answer)
        return Outcome.SENT


def _log_pdu_errors(destination: str, txn_id: str, answer: Any) -> None:
    results = answer.get("pdus") if isinstance(answer, dict) else None
    if not isinstance(results, dict):
        return
    for event_id, result in results.items():
        if isinstance(result, dict) and "error" in result:
            logger.info(
                "TX [%s] %s: %s refused %s: %s",
                destination,
                txn_id,
                destination,
                event_id,
                result["error"],
            )
