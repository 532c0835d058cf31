"""Two real HomeServers federating with each other on loopback, for end-to-end federation tests.

Each `Peer` is a started HomeServer with its own database (same engine as
the test: `make_db_config`), its own signing key, a plain HTTP listener for
its clients and a TLS listener (self-signed certificate) for federation. Its
server name is "127.0.0.1:<federation port>": an IP literal, so the peers
find each other without DNS. The federation port is picked before the server
starts (bound then released), since the server name must be in the config.
Certificates are not checked and loopback is allowed
(`federation_verify_certificates: false`, `ip_range_whitelist`); keys are
fetched from the peer itself (no notary).

    peers = TwoServers(reactor, tmp_path, make_db_config)
    a, b = await peers.start()
    alice = await a.register("alice")   # (user_id, access_token)
    ...
    await peers.stop()

`eventually(reactor, check)` polls an async check until it holds (federation is
asynchronous: the sender delivers after the commit).
"""

from __future__ import annotations

import socket
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from twisted.internet import task

from homeserver.crypto.tls import generate_self_signed_cert
from homeserver.server import HomeServer
from tests.homeserver_harness import HomeServerFactory, TestClient

FEDERATION_OPTIONS: dict[str, Any] = {
    "federation_verify_certificates": False,
    "ip_range_whitelist": ["127.0.0.0/8"],
    "trusted_key_servers": [],
    "suppress_key_server_warning": True,
}


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass
class Peer:
    """One of the two servers."""

    name: str
    hs: HomeServer
    client: TestClient

    def user(self, localpart: str) -> str:
        return f"@{localpart}:{self.name}"

    async def register(self, localpart: str) -> tuple[str, str]:
        """A new user of this server: (user_id, access_token)."""
        answer = await self.client.register(localpart)
        return answer["user_id"], answer["access_token"]


class TwoServers:
    """Starts and stops the two peers (see the module docstring)."""

    def __init__(
        self, reactor: Any, tmp_path: Path, make_db_config: Callable[[], tuple[str, Any]]
    ) -> None:
        self._reactor = reactor
        self._tmp_path = tmp_path
        self._make_db_config = make_db_config
        self._factories: list[HomeServerFactory] = []

    async def start_peer(self, label: str, **overrides: Any) -> Peer:
        directory = self._tmp_path / label
        directory.mkdir(parents=True, exist_ok=True)
        cert, key = directory / "tls.crt", directory / "tls.key"
        generate_self_signed_cert(str(cert), str(key), "localhost", overwrite=True)
        port = _free_port()
        name = f"127.0.0.1:{port}"
        factory = HomeServerFactory(self._reactor, directory, self._make_db_config())
        self._factories.append(factory)
        options: dict[str, Any] = {
            **FEDERATION_OPTIONS,
            "server_name": name,
            "tls_certificate_path": str(cert),
            "tls_private_key_path": str(key),
            "listeners": [
                {"port": 0, "bind_addresses": ["127.0.0.1"], "resources": [{"names": ["client"]}]},
                {
                    "port": port,
                    "bind_addresses": ["127.0.0.1"],
                    "tls": True,
                    "resources": [{"names": ["federation"]}],
                },
            ],
            **overrides,
        }
        hs = await factory.start(**options)
        return Peer(name, hs, factory.client(hs))

    async def start(self, **overrides: Any) -> tuple[Peer, Peer]:
        return await self.start_peer("a", **overrides), await self.start_peer("b", **overrides)

    async def stop_peer(self, peer: Peer) -> None:
        """Stop one peer (it no longer answers federation)."""
        for factory in self._factories:
            if peer.hs in factory.running:
                await factory.stop(peer.hs)

    async def stop(self) -> None:
        for factory in reversed(self._factories):
            await factory.stop_all()


async def eventually(
    reactor: Any,
    check: Callable[[], Awaitable[bool]],
    *,
    timeout: float = 15.0,
    interval: float = 0.05,
) -> None:
    """Wait until `check()` is true; AssertionError after `timeout` seconds."""
    waited = 0.0
    while not await check():
        if waited >= timeout:
            raise AssertionError(f"still false after {timeout}s: {check}")
        await task.deferLater(reactor, interval, lambda: None)
        waited += interval
