"""UIAuthStore: user-interactive authentication sessions and the stages they completed.

Sessions are rows (not process memory) so that they survive a restart and
any process can continue one. `clientdict` and `serverdict` are JSON objects;
the stores never look inside them. Expiring a session that passed the
registration token stage without finishing gives the token's use back.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from homeserver.storage.database import Database, Transaction
from homeserver.storage.stores.registration_tokens import release_pending_txn

# The stage whose result holds a pending use of a registration token.
REGISTRATION_TOKEN_STAGE = "m.login.registration_token"


@dataclass(frozen=True, slots=True)
class UIAuthSession:
    session_id: str
    creation_ts: int
    uri: str
    method: str
    description: str
    clientdict: dict[str, Any]
    serverdict: dict[str, Any]


def _dumps(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def _get_session_txn(txn: Transaction, session_id: str) -> UIAuthSession | None:
    txn.execute(
        "SELECT creation_ts, uri, method, description, clientdict, serverdict"
        " FROM ui_auth_sessions WHERE session_id = ?",
        (session_id,),
    )
    row = txn.fetchone()
    if row is None:
        return None
    creation_ts, uri, method, description, clientdict, serverdict = row
    return UIAuthSession(
        session_id=session_id,
        creation_ts=int(creation_ts),
        uri=uri,
        method=method,
        description=description,
        clientdict=json.loads(clientdict),
        serverdict=json.loads(serverdict),
    )


def _set_session_data_txn(txn: Transaction, session_id: str, key: str, value: Any) -> bool:
    txn.execute("SELECT serverdict FROM ui_auth_sessions WHERE session_id = ?", (session_id,))
    row = txn.fetchone()
    if row is None:
        return False
    serverdict = json.loads(row[0])
    serverdict[key] = value
    txn.execute(
        "UPDATE ui_auth_sessions SET serverdict = ? WHERE session_id = ?",
        (_dumps(serverdict), session_id),
    )
    return True


def _mark_stage_complete_txn(txn: Transaction, session_id: str, stage: str, result: str) -> None:
    txn.execute(
        "INSERT INTO ui_auth_sessions_credentials (session_id, stage_type, result)"
        " VALUES (?, ?, ?) ON CONFLICT (session_id, stage_type) DO UPDATE SET result = excluded.result",
        (session_id, stage, result),
    )


def _get_completed_stages_txn(txn: Transaction, session_id: str) -> dict[str, Any]:
    txn.execute(
        "SELECT stage_type, result FROM ui_auth_sessions_credentials WHERE session_id = ?"
        " ORDER BY stage_type",
        (session_id,),
    )
    return {stage: json.loads(result) for stage, result in txn.fetchall()}


def _delete_sessions_before_txn(txn: Transaction, before_ts: int) -> int:
    txn.execute("SELECT session_id FROM ui_auth_sessions WHERE creation_ts < ?", (before_ts,))
    session_ids = [(row[0],) for row in txn.fetchall()]
    # A registration token stage whose registration never finished still holds
    # a pending use of the token (its result is the token; True once used).
    txn.execute(
        "SELECT c.result FROM ui_auth_sessions_credentials AS c"
        " JOIN ui_auth_sessions AS s ON s.session_id = c.session_id"
        " WHERE s.creation_ts < ? AND c.stage_type = ?",
        (before_ts, REGISTRATION_TOKEN_STAGE),
    )
    for (result,) in txn.fetchall():
        token = json.loads(result)
        if isinstance(token, str):
            release_pending_txn(txn, token)
    txn.executemany("DELETE FROM ui_auth_sessions_credentials WHERE session_id = ?", session_ids)
    txn.executemany("DELETE FROM ui_auth_sessions WHERE session_id = ?", session_ids)
    return len(session_ids)


class UIAuthStore:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def create_session(
        self,
        session_id: str,
        creation_ts: int,
        uri: str,
        method: str,
        description: str,
        clientdict: dict[str, Any],
    ) -> None:
        await self._db.run_interaction(
            "create_ui_auth_session",
            lambda txn: txn.execute(
                "INSERT INTO ui_auth_sessions (session_id, creation_ts, uri, method, description,"
                " clientdict, serverdict) VALUES (?, ?, ?, ?, ?, ?, ?)",
                (session_id, creation_ts, uri, method, description, _dumps(clientdict), "{}"),
            ),
        )

    async def get_session(self, session_id: str) -> UIAuthSession | None:
        return await self._db.run_interaction("get_ui_auth_session", _get_session_txn, session_id)

    async def set_clientdict(self, session_id: str, clientdict: dict[str, Any]) -> None:
        await self._db.run_interaction(
            "set_ui_auth_clientdict",
            lambda txn: txn.execute(
                "UPDATE ui_auth_sessions SET clientdict = ? WHERE session_id = ?",
                (_dumps(clientdict), session_id),
            ),
        )

    async def set_session_data(self, session_id: str, key: str, value: Any) -> bool:
        """Set one key of the session's server-side data; False if there is no such session."""
        return await self._db.run_interaction(
            "set_ui_auth_session_data", _set_session_data_txn, session_id, key, value
        )

    async def mark_stage_complete(self, session_id: str, stage: str, result: Any) -> None:
        await self._db.run_interaction(
            "mark_ui_auth_stage_complete", _mark_stage_complete_txn, session_id, stage, _dumps(result)
        )

    async def get_completed_stages(self, session_id: str) -> dict[str, Any]:
        """What each completed stage established, by stage type."""
        return await self._db.run_interaction(
            "get_completed_ui_auth_stages", _get_completed_stages_txn, session_id
        )

    async def delete_sessions_before(self, before_ts: int) -> int:
        """Delete the sessions created before `before_ts`; how many there were."""
        return await self._db.run_interaction(
            "delete_old_ui_auth_sessions", _delete_sessions_before_txn, before_ts
        )
