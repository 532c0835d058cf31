"""How long a join over federation into a big room takes, with the real Synapse as the peer.

    python -m benchmarks.federation_join [--members 1000] [--events 5000]

Synapse (tests/interop/synapse_peer.py: TLS federation on loopback, open
registration, bcrypt cost 4, no rate limits) and this homeserver (a
subprocess, the same treatment: TLS federation listener, the name
`localhost:<port>`, self-signed certificates not checked) federate on
127.0.0.1. Then, each way:

1. on the resident server, `--events` messages are sent into a public room
   with an alias, then `--members` users join it (not timed);
2. a user of the other server joins by alias; timed: `POST /join` until it
   answers 200, and until that user's initial `/sync` shows the room joined
   with its state (m.room.create and m.room.power_levels).

Not run in CI: it takes minutes at the full sizes. Only the joins are timed;
filling the rooms is the slow part.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterable
from functools import partial
from pathlib import Path
from typing import Any

import yaml
from twisted.internet import defer, task

from benchmarks.client import MatrixHttp, UnexpectedResponse, path_segment
from benchmarks.servers import OurServer, ServerUnderTest
from homeserver.crypto.tls import generate_self_signed_cert
from tests.interop.synapse_peer import LOOPBACK_RANGES, SHORT_BACKOFF, SynapsePeer, free_port

# Requests in flight while filling a room: enough to keep a server busy on 2
# cores without measuring its queueing.
CONCURRENCY = 16
JOIN_TIMEOUT = 600.0
# Both servers hash with Synapse's test cost: registering a thousand users is
# set-up here, not what is measured.
FAST_BCRYPT_ROUNDS = 4


class FederatingOurServer(OurServer):
    """Our server with a TLS federation listener and the name `localhost:<federation port>`."""

    def __init__(self, directory: Path, port: int, database: Any) -> None:
        super().__init__(directory, port, database)
        self.federation_port = free_port()
        self.server_name = f"localhost:{self.federation_port}"
        cert, key = directory / "tls.crt", directory / "tls.key"
        generate_self_signed_cert(str(cert), str(key), "localhost", overwrite=True)
        document: dict[str, Any] = yaml.safe_load(self.config_path.read_text())
        document["listeners"].append(
            {
                "port": self.federation_port,
                "bind_addresses": ["127.0.0.1"],
                "tls": True,
                "resources": [{"names": ["federation"]}],
            }
        )
        document.update(
            {
                "server_name": self.server_name,
                "bcrypt_rounds": FAST_BCRYPT_ROUNDS,
                "tls_certificate_path": str(cert),
                "tls_private_key_path": str(key),
                "federation_verify_certificates": False,
                "ip_range_allowlist": LOOPBACK_RANGES,
                "trusted_key_servers": [],
                "suppress_key_server_warning": True,
                "federation": SHORT_BACKOFF,
            }
        )
        self.config_path.write_text(yaml.safe_dump(document))


async def bounded(calls: Iterable[Callable[[], Awaitable[Any]]], limit: int = CONCURRENCY) -> list[Any]:
    """Run the calls with at most `limit` in flight; their results in order."""
    semaphore = defer.DeferredSemaphore(limit)

    async def one(call: Callable[[], Awaitable[Any]]) -> Any:
        await semaphore.acquire()
        try:
            return await call()
        finally:
            semaphore.release()

    return list(await defer.gatherResults([defer.ensureDeferred(one(c)) for c in calls], consumeErrors=True))


async def register(http: MatrixHttp, localpart: str) -> tuple[str, str]:
    answer = await http.register(localpart, "benchmark password")
    return str(answer["user_id"]), str(answer["access_token"])


async def fill_room(
    http: MatrixHttp, server_name: str, members: int, events: int, log: Callable[[str], None]
) -> str:
    """A public room with `members` joined users and `events` messages; its alias."""
    started = time.monotonic()
    users = await bounded([partial(register, http, f"member{n}") for n in range(members)])
    log(f"  {members} users registered in {time.monotonic() - started:.1f}s")
    _, creator_token = users[0]
    alias_name = "big"
    room_id = await http.create_room(creator_token, preset="public_chat", room_alias_name=alias_name)
    # The messages go in before the members join: Synapse evaluates push
    # rules for every member on each message (about 6 messages/s with 1,000
    # members on 2 cores), and the joiner's cost depends on the room's
    # events and state, not on the order they came in.
    started = time.monotonic()
    await bounded(
        [partial(http.send_text, creator_token, room_id, f"t{n}", f"message {n}") for n in range(events)]
    )
    log(f"  {events} messages in {time.monotonic() - started:.1f}s")
    started = time.monotonic()
    await bounded([partial(http.join, token, room_id) for _, token in users[1:]])
    log(f"  {members - 1} joins in {time.monotonic() - started:.1f}s")
    return f"#{alias_name}:{server_name}"


async def sleep(seconds: float) -> None:
    from twisted.internet import reactor

    await task.deferLater(reactor, seconds, lambda: None)


def room_in_sync(answer: dict[str, Any], room_id: str) -> bool:
    room = answer.get("rooms", {}).get("join", {}).get(room_id)
    if room is None:
        return False
    events = room.get("state", {}).get("events", []) + room.get("timeline", {}).get("events", [])
    return {"m.room.create", "m.room.power_levels"} <= {e.get("type") for e in events}


async def timed_join(http: MatrixHttp, alias: str, log: Callable[[str], None]) -> tuple[float, float]:
    """Seconds until POST /join answered 200, and until /sync showed the room with its state."""
    _, token = await register(http, "joiner")
    started = time.monotonic()
    while True:
        try:
            answer = await http.request("POST", f"/join/{path_segment(alias)}", {}, token=token)
            break
        except UnexpectedResponse as e:
            # A peer that has not fetched the other's keys yet, or a backoff: retry, bounded.
            if time.monotonic() - started > JOIN_TIMEOUT:
                raise
            log(f"  join answered {e}; retrying")
            await sleep(0.5)
    joined = time.monotonic() - started
    room_id = str(answer["room_id"])
    sync_filter = {"room": {"timeline": {"limit": 1}}}
    while not room_in_sync(await http.sync(token, filter_json=sync_filter), room_id):
        if time.monotonic() - started > JOIN_TIMEOUT:
            raise RuntimeError(f"/sync did not show {room_id} within {JOIN_TIMEOUT:.0f}s")
        await sleep(0.1)
    synced = time.monotonic() - started
    # Not timed: that the joiner's server really has the whole room.
    members = await http.request("GET", f"/rooms/{path_segment(room_id)}/joined_members", token=token)
    log(f"  the joiner's server sees {len(members['joined'])} joined members")
    return joined, synced


async def _main(reactor: Any, args: argparse.Namespace) -> None:
    workdir = Path(tempfile.mkdtemp(prefix="homeserver-federation-join-"))
    servers: list[ServerUnderTest] = []
    clients: list[MatrixHttp] = []

    def log(message: str) -> None:
        print(message, flush=True)

    try:
        synapse = SynapsePeer(workdir / "synapse")
        ours = FederatingOurServer(
            workdir / "ours", free_port(), ("sqlite3", {"database": str(workdir / "ours.db")})
        )
        for server in (synapse, ours):
            server.start()
            servers.append(server)
        synapse_http = MatrixHttp(reactor, synapse.base_url)
        ours_http = MatrixHttp(reactor, ours.base_url)
        clients += [synapse_http, ours_http]

        log(f"Synapse room: {args.members} members, {args.events} messages")
        alias = await fill_room(synapse_http, synapse.server_name, args.members, args.events, log)
        ours_joined, ours_synced = await timed_join(ours_http, alias, log)
        log(f"  our user joins: POST /join {ours_joined:.2f}s, /sync shows the room {ours_synced:.2f}s")

        log(f"Our room: {args.members} members, {args.events} messages")
        alias = await fill_room(ours_http, ours.server_name, args.members, args.events, log)
        synapse_joined, synapse_synced = await timed_join(synapse_http, alias, log)
        log(
            f"  Synapse user joins: POST /join {synapse_joined:.2f}s,"
            f" /sync shows the room {synapse_synced:.2f}s"
        )
        print()
        print(f"Join over federation, {args.members} members, {args.events} messages (SQLite both):")
        print(f"  our user into Synapse's room:  /join {ours_joined:7.2f}s  /sync {ours_synced:7.2f}s")
        print(f"  Synapse's user into our room:  /join {synapse_joined:7.2f}s  /sync {synapse_synced:7.2f}s")
    finally:
        for client in clients:
            await client.close()
        for server in reversed(servers):
            server.stop()
        if args.keep:
            print(f"kept {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)


def _parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--members", type=int, default=1000, help="users joined to each big room")
    parser.add_argument("--events", type=int, default=5000, help="messages sent into each big room")
    parser.add_argument("--keep", action="store_true", help="keep the servers' directories and logs")
    args = parser.parse_args(argv)
    if args.members < 1 or args.events < 0:
        parser.error("--members must be at least 1 and --events not negative")
    return args


def main(argv: list[str] | None = None) -> None:
    args = _parse_args(sys.argv[1:] if argv is None else argv)
    task.react(lambda reactor: defer.ensureDeferred(_main(reactor, args)))


if __name__ == "__main__":
    main()
