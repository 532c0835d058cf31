"""RedactionStore: which stored m.room.redaction events point at which events.

Clients are served redacted events on read: whoever serializes an event asks
here for the redactions of it (`events.redacts`, written by the events store
for every m.room.redaction, from the top level before room v11 and from
`content.redacts` after). Only accepted, non-outlier redactions count: a
rejected redaction never applies, and an outlier one has no state to check
its sender's power against. Whether a redaction is valid for its target
(same room, the sender's domain or power) is the reader's business, since it
depends on the room version and on both events.

Not cached: a redaction can arrive for any event at any time, and the one
query per batch of events is served by the `events_redacts` index.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence

from homeserver.storage.database import Database, Transaction
from homeserver.storage.stores.state import chunks, placeholders


def _redactions_for_txn(txn: Transaction, event_ids: Sequence[str]) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for chunk in chunks(event_ids):
        txn.execute(
            "SELECT redacts, event_id FROM events"
            f" WHERE redacts IN ({placeholders(len(chunk))})"
            " AND type = 'm.room.redaction' AND NOT outlier AND rejected_reason IS NULL AND NOT soft_failed"
            " ORDER BY stream_ordering",
            chunk,
        )
        for redacts, event_id in txn.fetchall():
            found.setdefault(redacts, []).append(event_id)
    return found


class RedactionStore:
    """Reads of the redactions pointing at events."""

    def __init__(self, db: Database) -> None:
        self._db = db

    async def get_redactions_for(self, event_ids: Collection[str]) -> dict[str, list[str]]:
        """Redacted event ID -> the accepted, non-outlier redactions of it, oldest first.

        Events nothing redacts are left out.
        """
        if not event_ids:
            return {}
        return await self._db.run_interaction(
            "get_redactions_for", _redactions_for_txn, list(dict.fromkeys(event_ids))
        )
