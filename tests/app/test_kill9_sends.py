"""Messages acknowledged with 200 survive `kill -9` of the real server process (both engines).

Several senders, each in its own thread, send messages into one room over
HTTP as fast as the server answers. Once enough have been acknowledged the
server gets SIGKILL, with requests in flight. After a restart on the same
database: every event ID a sender was given is served by GET
/rooms/{roomId}/event/{eventId} with the body it was sent with; each sender
retries the request it never got an answer to, with the same transaction ID,
as a client would; sending goes on; and paging back through /messages finds
every message exactly once (a retried send that had in fact been stored
before the kill is not stored twice).
"""

from __future__ import annotations

import json
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

from benchmarks.servers import unlimited_rate_limits
from tests.server_process import ServerProcess, free_port, write_config

SENDERS = 4
KILL_AFTER_ACKS = 40
MAX_SENDS_PER_SENDER = 400  # bounds the loop even if the kill never comes
MORE_AFTER_RESTART = 3
REQUEST_TIMEOUT = 15.0


class Unanswered(Exception):
    """The request got no HTTP answer (connection refused, reset or timed out)."""


def _request(
    base: str, method: str, path: str, body: Any = None, *, token: str | None = None, query: dict[str, str] | None = None
) -> tuple[int, Any]:
    url = base + "/_matrix/client/v3" + path + (f"?{urlencode(query)}" if query else "")
    headers = {"Content-Type": "application/json"}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, headers=headers, method=method)
    try:
        with urllib.request.urlopen(request, timeout=REQUEST_TIMEOUT) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"null")
    except OSError as e:  # refused, reset, or cut off mid-answer (http.client errors are OSErrors)
        raise Unanswered(str(e)) from e


def _ok(base: str, method: str, path: str, body: Any = None, **kwargs: Any) -> Any:
    status, answer = _request(base, method, path, body, **kwargs)
    assert status == 200, f"{method} {path} -> {status} {answer}"
    return answer


def _send_path(room_id: str, txn_id: str) -> str:
    return f"/rooms/{quote(room_id, safe='')}/send/m.room.message/{txn_id}"


@dataclass
class Sender:
    index: int
    token: str
    acked: dict[str, str] = field(default_factory=dict)  # event_id -> body
    unanswered: tuple[str, str] | None = None  # (txn_id, body) of the request cut off
    errors: list[str] = field(default_factory=list)
    next_n: int = 0

    def send_until_cut_off(self, base: str, room_id: str, stop: threading.Event) -> None:
        while self.next_n < MAX_SENDS_PER_SENDER and not stop.is_set():
            n = self.next_n
            self.next_n += 1
            txn_id, body = f"m{n}", f"sender {self.index} message {n}"
            try:
                status, answer = _request(
                    base, "PUT", _send_path(room_id, txn_id), {"msgtype": "m.text", "body": body}, token=self.token
                )
            except Unanswered:
                self.unanswered = (txn_id, body)
                return
            if status != 200:
                self.errors.append(f"{txn_id}: {status} {answer}")
                return
            self.acked[answer["event_id"]] = body


def _all_messages(base: str, room_id: str, token: str) -> list[dict[str, Any]]:
    """Every m.room.message of the room, newest first, paging back with chained tokens."""
    messages: list[dict[str, Any]] = []
    query = {"dir": "b", "limit": "100"}
    for _ in range(100):
        page = _ok(base, "GET", f"/rooms/{quote(room_id, safe='')}/messages", token=token, query=query)
        messages += [e for e in page["chunk"] if e["type"] == "m.room.message"]
        if not page["chunk"] or "end" not in page:
            return messages
        query = {**query, "from": page["end"]}
    raise AssertionError("/messages did not reach the start of the room in 100 pages")


def _database_block(db_config: tuple[str, dict[str, Any]]) -> dict[str, Any]:
    engine_name, args = db_config
    args = dict(args)
    if "port" in args:
        args["port"] = int(args["port"])
    return {"name": engine_name, "args": args}


def test_acknowledged_sends_survive_sigkill_and_retries_are_not_duplicated(
    tmp_path: Path, db_config: tuple[str, dict[str, Any]]
) -> None:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    config = write_config(
        tmp_path,
        port,
        database=_database_block(db_config),
        enable_registration=True,
        enable_registration_without_verification=True,
        bcrypt_rounds=4,
        **unlimited_rate_limits(),
    )
    server = ServerProcess(config)
    server.start()
    try:
        server.wait_until_serving(base)
        senders = []
        for i in range(SENDERS):
            session = _ok(
                base, "POST", "/register", {"username": f"sender{i}", "password": "kill -9 password", "auth": {"type": "m.login.dummy"}}
            )
            senders.append(Sender(i, session["access_token"]))
        room_id = _ok(base, "POST", "/createRoom", {"preset": "public_chat"}, token=senders[0].token)["room_id"]
        for sender in senders[1:]:
            _ok(base, "POST", f"/join/{quote(room_id, safe='')}", {}, token=sender.token)

        stop = threading.Event()
        threads = [
            threading.Thread(target=s.send_until_cut_off, args=(base, room_id, stop), daemon=True) for s in senders
        ]
        for thread in threads:
            thread.start()
        deadline = time.monotonic() + 60
        while sum(len(s.acked) for s in senders) < KILL_AFTER_ACKS and time.monotonic() < deadline:
            assert any(t.is_alive() for t in threads), [s.errors for s in senders]
            time.sleep(0.005)
        assert server.process is not None
        server.process.kill()
        server.wait(timeout=10)
        stop.set()
        for thread in threads:
            thread.join(timeout=REQUEST_TIMEOUT + 5)
            assert not thread.is_alive()
        assert [s.errors for s in senders] == [[]] * SENDERS
        acked = {event_id: body for s in senders for event_id, body in s.acked.items()}
        assert len(acked) >= KILL_AFTER_ACKS

        server.start()
        server.wait_until_serving(base)
        for event_id, body in acked.items():
            event = _ok(
                base, "GET", f"/rooms/{quote(room_id, safe='')}/event/{quote(event_id, safe='')}", token=senders[0].token
            )
            assert event["content"]["body"] == body, event

        # A client that got no answer retries with the same transaction ID.
        retried: dict[str, str] = {}
        for sender in senders:
            if sender.unanswered is not None:
                txn_id, body = sender.unanswered
                answer = _ok(
                    base, "PUT", _send_path(room_id, txn_id), {"msgtype": "m.text", "body": body}, token=sender.token
                )
                assert acked.get(answer["event_id"], body) == body
                retried[answer["event_id"]] = body
        # Sending goes on after the restart.
        for sender in senders:
            for _ in range(MORE_AFTER_RESTART):
                n = sender.next_n
                sender.next_n += 1
                body = f"sender {sender.index} message {n}"
                answer = _ok(
                    base, "PUT", _send_path(room_id, f"m{n}"), {"msgtype": "m.text", "body": body}, token=sender.token
                )
                retried[answer["event_id"]] = body

        messages = _all_messages(base, room_id, senders[0].token)
        bodies = [m["content"]["body"] for m in messages]
        assert len(bodies) == len(set(bodies)), "a message was stored twice"
        stored = {m["event_id"]: m["content"]["body"] for m in messages}
        assert {**acked, **retried}.items() <= stored.items()
        # Nothing was stored that no client sent.
        assert set(stored.values()) <= {
            f"sender {s.index} message {n}" for s in senders for n in range(s.next_n)
        }
    finally:
        server.stop()
