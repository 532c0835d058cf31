"""User-interactive authentication (UIA): the engine and its pluggable stages.

Spec: client-server API "User-Interactive Authentication API". An endpoint
that needs UIA calls `check(flows, client, body, description)`: it returns
once the session has completed every stage of one of `flows`, and otherwise
raises `InteractiveAuthIncomplete`, which answers 401 with
`{"flows", "params", "session", "completed"}` (plus `errcode`/`error` when the
stage just attempted failed, so the client can try again).

Stages plug in as `StageChecker`s registered with the engine: this module has
m.login.dummy; `homeserver.handlers.login` has m.login.password (confirming
an existing user); m.login.recaptcha, m.login.registration_token,
m.login.terms and m.login.email.identity register theirs the same way.
Every stage named in a flow must have a checker (`require_stages`, at start).

Sessions are in the database (they survive restarts), bound to the request
path and method that opened them, and expire `SESSION_LIFETIME_MS` after
creation. As Synapse does, a client may leave out the request's parameters
after the first call; the last parameters it sent are kept with the session
(the operation's secrets, such as passwords, are not: callers remove them
first and keep a hash with `set_session_data`).
"""

from __future__ import annotations

import logging
import secrets
import string
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from homeserver.clock import Clock
from homeserver.handlers.auth import Requester
from homeserver.storage.stores.ui_auth import UIAuthStore
from homeserver.storage.stores.users import UserStore
from homeserver.types.errors import Codes, MatrixError

logger = logging.getLogger(__name__)

JsonDict = dict[str, Any]

SESSION_LIFETIME_MS = 48 * 60 * 60 * 1000
"""How long a UIA session can be used after it was created (Synapse: 48 hours)."""

DUMMY = "m.login.dummy"
PASSWORD = "m.login.password"


@dataclass(frozen=True, slots=True)
class ClientInfo:
    """The request an operation arrived with: UIA binds sessions to uri and method."""

    uri: str
    method: str
    ip: str
    user_agent: str | None


@dataclass(frozen=True, slots=True)
class StageContext:
    session_id: str
    client: ClientInfo


class StageFailed(Exception):
    """A stage's check failed in a way the client can retry (answered in the 401 body)."""

    def __init__(self, errcode: str, message: str) -> None:
        super().__init__(message)
        self.errcode = errcode
        self.message = message


class StageChecker(Protocol):
    """One UIA stage type: its parameters for clients and the check of a submission."""

    stage_type: str

    def params(self) -> JsonDict | None:
        """What clients get in `params[stage_type]`, or None for nothing."""

    async def check(self, authdict: JsonDict, context: StageContext) -> Any:
        """Check the client's `auth` dict; return what the stage established (JSON).

        Raise StageFailed for a wrong answer the client may retry, or MatrixError
        for a malformed request.
        """


class DummyStageChecker:
    """m.login.dummy: always passes (used to let a client register without other stages)."""

    stage_type = DUMMY

    def params(self) -> JsonDict | None:
        return None

    async def check(self, authdict: JsonDict, context: StageContext) -> Any:
        return True


class InteractiveAuthIncomplete(MatrixError):
    """More stages are needed: 401 with the flows, the session and what is completed."""

    def __init__(self, session_id: str, body: JsonDict) -> None:
        super().__init__(Codes.UNAUTHORIZED, "User-interactive authentication required", status=401)
        self.session_id = session_id
        self.body = body

    def to_dict(self) -> JsonDict:
        return dict(self.body)


@dataclass(frozen=True, slots=True)
class UIAResult:
    session_id: str
    # What each completed stage established, by stage type.
    completed: dict[str, Any]
    # The operation's parameters: the request's, or the session's if it sent none.
    params: JsonDict


def _new_session_id() -> str:
    return "".join(secrets.choice(string.ascii_letters) for _ in range(24))


class UserInteractiveAuth:
    def __init__(
        self,
        clock: Clock,
        store: UIAuthStore,
        users: UserStore,
        checkers: Iterable[StageChecker],
        *,
        password_reauth_enabled: bool,
    ) -> None:
        self._clock = clock
        self._store = store
        self._users = users
        self._checkers: dict[str, StageChecker] = {}
        self._password_reauth_enabled = password_reauth_enabled
        for checker in checkers:
            self.add_checker(checker)

    def add_checker(self, checker: StageChecker) -> None:
        self._checkers[checker.stage_type] = checker

    def has_stage(self, stage_type: str) -> bool:
        return stage_type in self._checkers

    def require_stages(self, flows: Iterable[Sequence[str]]) -> None:
        """Raise ValueError unless every stage of `flows` has a checker (checked at start)."""
        missing = sorted({s for flow in flows for s in flow if s not in self._checkers})
        if missing:
            raise ValueError(f"no checker for the UIA stages {', '.join(missing)}")

    @staticmethod
    def session_id_of(body: JsonDict) -> str | None:
        """The session a request continues, if it names one."""
        auth = body.get("auth")
        session = auth.get("session") if isinstance(auth, dict) else None
        return session if isinstance(session, str) and session else None

    async def get_session_data(self, session_id: str, key: str, default: Any = None) -> Any:
        session = await self._store.get_session(session_id)
        if session is None:
            return default
        return session.serverdict.get(key, default)

    async def set_session_data(self, session_id: str, key: str, value: Any) -> None:
        if not await self._store.set_session_data(session_id, key, value):
            raise self._unknown_session(session_id)

    async def mark_stage_complete(self, session_id: str, stage_type: str, result: Any) -> None:
        """Record (or replace) what a stage of the session established."""
        await self._store.mark_stage_complete(session_id, stage_type, result)

    @staticmethod
    def _unknown_session(session_id: str) -> MatrixError:
        return MatrixError(Codes.UNKNOWN, f"Unknown session ID: {session_id}", status=400)

    def _challenge(self, flows: Sequence[Sequence[str]], session_id: str) -> JsonDict:
        params: JsonDict = {}
        for flow in flows:
            for stage in flow:
                checker = self._checkers.get(stage)
                if checker is not None and stage not in params:
                    stage_params = checker.params()
                    if stage_params is not None:
                        params[stage] = stage_params
        return {
            "session": session_id,
            "flows": [{"stages": list(flow)} for flow in flows],
            "params": params,
        }

    async def check(
        self,
        flows: Sequence[Sequence[str]],
        client: ClientInfo,
        body: JsonDict,
        description: str,
    ) -> UIAResult:
        """Advance the request's UIA session; return once one of `flows` is complete.

        `body` is the whole request body (its `auth` key is the UIA submission).
        Raises InteractiveAuthIncomplete (401) while stages remain.
        """
        authdict = body.get("auth")
        if authdict is None:
            authdict = {}
        if not isinstance(authdict, dict):
            raise MatrixError(Codes.INVALID_PARAM, "'auth' must be an object")
        clientdict = {key: value for key, value in body.items() if key != "auth"}
        now = self._clock.time_msec()
        session_id = self.session_id_of(body)
        if "session" in authdict and session_id is None:
            raise MatrixError(Codes.INVALID_PARAM, "'auth.session' must be a non-empty string")
        if session_id is None:
            session_id = _new_session_id()
            await self._store.create_session(
                session_id, now, client.uri, client.method, description, clientdict
            )
        else:
            session = await self._store.get_session(session_id)
            if session is None or session.creation_ts + SESSION_LIFETIME_MS <= now:
                raise self._unknown_session(session_id)
            if (session.uri, session.method) != (client.uri, client.method):
                raise MatrixError(
                    Codes.FORBIDDEN,
                    "Requested operation has changed during the UI authentication session.",
                )
            if not clientdict:
                clientdict = session.clientdict
            elif clientdict != session.clientdict:
                await self._store.set_clientdict(session_id, clientdict)

        if not authdict:
            raise InteractiveAuthIncomplete(session_id, self._challenge(flows, session_id))

        error: JsonDict = {}
        stage_type = authdict.get("type")
        if stage_type is not None:
            offered = {stage for flow in flows for stage in flow}
            if not isinstance(stage_type, str) or stage_type not in offered:
                raise MatrixError(
                    Codes.INVALID_PARAM, f"Authentication type {stage_type!r} is not offered here"
                )
            checker = self._checkers[stage_type]
            try:
                result = await checker.check(authdict, StageContext(session_id, client))
            except StageFailed as e:
                error = {"errcode": e.errcode, "error": e.message}
            else:
                await self._store.mark_stage_complete(session_id, stage_type, result)

        completed = await self._store.get_completed_stages(session_id)
        for flow in flows:
            if all(stage in completed for stage in flow):
                logger.info("UIA session %s complete with stages %s", session_id, sorted(completed))
                return UIAResult(session_id, completed, clientdict)
        challenge = self._challenge(flows, session_id)
        challenge["completed"] = list(completed)
        challenge.update(error)
        raise InteractiveAuthIncomplete(session_id, challenge)

    async def validate_user(
        self, requester: Requester, client: ClientInfo, body: JsonDict, description: str
    ) -> UIAResult:
        """UIA confirming that the requester is really the account's owner (re-authentication).

        The stages offered are those this user can complete (a password, if
        the account has one); the identity a stage establishes must be the
        requester's, or 403 M_FORBIDDEN.
        """
        user = await self._users.get_user(requester.user_id)
        flows: list[list[str]] = []
        if self._password_reauth_enabled and user is not None and user.password_hash:
            flows.append([PASSWORD])
        if not flows:
            raise MatrixError(
                Codes.FORBIDDEN, "This account has no way to confirm this operation (no password)"
            )
        result = await self.check(flows, client, body, description)
        validated = result.completed.get(PASSWORD)
        if validated != requester.user_id:
            raise MatrixError(Codes.FORBIDDEN, "Invalid auth")
        return result

    async def expire_sessions(self) -> int:
        """Delete sessions past their lifetime; how many."""
        return await self._store.delete_sessions_before(self._clock.time_msec() - SESSION_LIFETIME_MS)
