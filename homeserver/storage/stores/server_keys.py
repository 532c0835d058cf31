"""ServerKeyStore: other servers' signing keys, and their signed key answers.

`server_signing_keys` holds one row per (server, key ID): the public key and
until when it may be used, as the KeyRing worked it out from an answer.
`server_key_responses` holds the signed answers themselves (the newest per
server and source), which this server re-serves as a notary.

An answer from the server itself always replaces what we had for its keys (it
is the authority on them, and may have retired a key); an answer relayed by a
notary only extends the validity of a key we already know with the same
public key, or adds a key we did not know.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from homeserver.storage.database import Database, Transaction


@dataclass(frozen=True, slots=True)
class StoredServerKey:
    verify_key: str
    """Unpadded base64 ed25519 public key."""
    valid_until_ts: int
    from_server: str
    fetched_ts: int


@dataclass(frozen=True, slots=True)
class StoredKeyResponse:
    from_server: str
    fetched_ts: int
    valid_until_ts: int
    response_json: str


def _store_txn(
    txn: Transaction,
    server_name: str,
    from_server: str,
    fetched_ts: int,
    response_json: str,
    response_valid_until_ts: int,
    keys: Mapping[str, tuple[str, int]],
) -> None:
    txn.execute(
        "INSERT INTO server_key_responses"
        " (server_name, from_server, fetched_ts, valid_until_ts, response_json)"
        " VALUES (?, ?, ?, ?, ?)"
        " ON CONFLICT (server_name, from_server) DO UPDATE SET"
        " fetched_ts = excluded.fetched_ts, valid_until_ts = excluded.valid_until_ts,"
        " response_json = excluded.response_json"
        " WHERE excluded.fetched_ts >= server_key_responses.fetched_ts",
        (server_name, from_server, fetched_ts, response_valid_until_ts, response_json),
    )
    txn.executemany(
        "INSERT INTO server_signing_keys"
        " (server_name, key_id, verify_key, valid_until_ts, from_server, fetched_ts)"
        " VALUES (?, ?, ?, ?, ?, ?)"
        " ON CONFLICT (server_name, key_id) DO UPDATE SET"
        " verify_key = excluded.verify_key, valid_until_ts = excluded.valid_until_ts,"
        " from_server = excluded.from_server, fetched_ts = excluded.fetched_ts"
        " WHERE excluded.from_server = excluded.server_name"
        " OR (excluded.verify_key = server_signing_keys.verify_key"
        " AND excluded.valid_until_ts > server_signing_keys.valid_until_ts)",
        [
            (server_name, key_id, verify_key, valid_until_ts, from_server, fetched_ts)
            for key_id, (verify_key, valid_until_ts) in sorted(keys.items())
        ],
    )


def _get_keys_txn(txn: Transaction, server_name: str) -> dict[str, StoredServerKey]:
    txn.execute(
        "SELECT key_id, verify_key, valid_until_ts, from_server, fetched_ts"
        " FROM server_signing_keys WHERE server_name = ?",
        (server_name,),
    )
    return {
        key_id: StoredServerKey(verify_key, int(valid_until), from_server, int(fetched))
        for key_id, verify_key, valid_until, from_server, fetched in txn.fetchall()
    }


def _get_responses_txn(txn: Transaction, server_name: str) -> list[StoredKeyResponse]:
    txn.execute(
        "SELECT from_server, fetched_ts, valid_until_ts, response_json"
        " FROM server_key_responses WHERE server_name = ?"
        " ORDER BY valid_until_ts DESC, fetched_ts DESC, from_server",
        (server_name,),
    )
    return [
        StoredKeyResponse(from_server, int(fetched), int(valid_until), response_json)
        for from_server, fetched, valid_until, response_json in txn.fetchall()
    ]


class ServerKeyStore:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def store_server_keys(
        self,
        server_name: str,
        from_server: str,
        fetched_ts: int,
        response_json: str,
        response_valid_until_ts: int,
        keys: Mapping[str, tuple[str, int]],
    ) -> None:
        """Record one answer about `server_name`'s keys, received from `from_server`.

        `keys` maps key IDs to (base64 public key, valid until ms) as the
        caller worked them out; `response_json` is the signed answer as text.
        """
        await self._db.run_interaction(
            "store_server_keys",
            _store_txn,
            server_name,
            from_server,
            fetched_ts,
            response_json,
            response_valid_until_ts,
            keys,
        )

    async def get_server_keys(self, server_name: str) -> dict[str, StoredServerKey]:
        """Every key we know of `server_name`, by key ID."""
        return await self._db.run_interaction("get_server_keys", _get_keys_txn, server_name)

    async def get_key_responses(self, server_name: str) -> list[StoredKeyResponse]:
        """The answers we hold about `server_name`, the longest-valid first."""
        return await self._db.run_interaction(
            "get_server_key_responses", _get_responses_txn, server_name
        )
