"""The real Synapse as a federation peer on loopback, for interop tests.

`SynapsePeer(directory)` runs Synapse (from the venv tests/interop/synapse_venv.py
builds) as a subprocess with:

- the server name `localhost:<federation port>`: an explicit port, so no
  `.well-known` or SRV lookup happens on either side;
- a TLS listener on that port serving the federation API and the key API,
  with a self-signed certificate from
  homeserver.crypto.tls.generate_self_signed_cert (SAN localhost, 127.0.0.1);
- a plain-HTTP listener with only the client API, for the test clients;
- `federation_verify_certificates: false` (our peer's certificate is
  self-signed too), `trusted_key_servers: []` (keys are fetched from the peer
  itself), loopback allowed (`ip_range_whitelist`), and short destination
  backoff, so that a peer briefly down is retried within a test;
- open registration (m.login.dummy), rate limits out of the way, SQLite,
  logging at INFO to `homeserver.log` in its directory (read it when a test
  fails: `log_tail()`).

Both ports are picked before the start (bound then released), since the
server name has to be in the config. `stop()` sends SIGTERM, then SIGKILL
after a timeout, so a test run never leaves a Synapse behind.
"""

from __future__ import annotations

import socket
import subprocess
from pathlib import Path
from typing import Any

import yaml

from benchmarks.servers import SYNAPSE_RATE_LIMITS, ServerUnderTest
from homeserver.crypto.tls import generate_self_signed_cert
from tests.interop.synapse_venv import ensure_synapse_venv, venv_python

LOOPBACK_RANGES = ["127.0.0.0/8", "::1/128"]
# Synapse backs a failing destination off for 10 minutes by default; a peer
# that was busy for a moment must be retried within one test.
SHORT_BACKOFF = {
    "destination_min_retry_interval": "1s",
    "destination_retry_multiplier": 1.5,
    "destination_max_retry_interval": "5s",
}


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _log_config(path: Path, log_file: Path) -> None:
    document = {
        "version": 1,
        "formatters": {"plain": {"format": "%(asctime)s %(name)s %(levelname)s %(message)s"}},
        "handlers": {
            "file": {"class": "logging.FileHandler", "formatter": "plain", "filename": str(log_file)}
        },
        "root": {"level": "INFO", "handlers": ["file"]},
        "disable_existing_loggers": False,
    }
    path.write_text(yaml.safe_dump(document))


class SynapsePeer(ServerUnderTest):
    """One Synapse federating on loopback (see the module docstring)."""

    name = "synapse"

    def __init__(
        self,
        directory: Path,
        *,
        venv: Path | None = None,
        default_room_version: str | None = None,
    ) -> None:
        super().__init__(directory, free_port())
        directory.mkdir(parents=True, exist_ok=True)
        self.federation_port = free_port()
        self.server_name = f"localhost:{self.federation_port}"
        self.python = str(venv_python(venv or ensure_synapse_venv()))
        self.log_path = directory / "homeserver.log"
        self.config_path = directory / "homeserver.yaml"
        self._write_config(default_room_version)

    def _write_config(self, default_room_version: str | None) -> None:
        generated = subprocess.run(
            [
                self.python,
                "-m",
                "synapse.app.homeserver",
                "--server-name",
                self.server_name,
                "--config-path",
                str(self.config_path),
                "--data-directory",
                str(self.directory),
                "--generate-config",
                "--report-stats=no",
            ],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        if generated.returncode != 0:
            raise RuntimeError(f"Synapse --generate-config failed:\n{generated.stderr[-3000:]}")
        cert, key = self.directory / "tls.crt", self.directory / "tls.key"
        generate_self_signed_cert(str(cert), str(key), "localhost", overwrite=True)
        log_config = self.directory / "log.yaml"
        _log_config(log_config, self.log_path)
        document: dict[str, Any] = yaml.safe_load(self.config_path.read_text())
        document.update(
            {
                "listeners": [
                    {
                        "port": self.port,
                        "bind_addresses": ["127.0.0.1"],
                        "type": "http",
                        "tls": False,
                        "x_forwarded": False,
                        "resources": [{"names": ["client"], "compress": False}],
                    },
                    {
                        "port": self.federation_port,
                        "bind_addresses": ["127.0.0.1"],
                        "type": "http",
                        "tls": True,
                        "x_forwarded": False,
                        "resources": [{"names": ["federation", "keys"], "compress": False}],
                    },
                ],
                "tls_certificate_path": str(cert),
                "tls_private_key_path": str(key),
                "database": {
                    "name": "sqlite3",
                    "args": {"database": str(self.directory / "homeserver.db")},
                },
                "log_config": str(log_config),
                "enable_registration": True,
                "enable_registration_without_verification": True,
                "bcrypt_rounds": 4,
                "report_stats": False,
                "federation_verify_certificates": False,
                "trusted_key_servers": [],
                "suppress_key_server_warning": True,
                "ip_range_whitelist": LOOPBACK_RANGES,
                "federation": SHORT_BACKOFF,
                "presence": {"enabled": False},
                # Otherwise polling with identical initial syncs gets its cached answer.
                "caches": {"sync_response_cache_duration": 0},
                **SYNAPSE_RATE_LIMITS,
            }
        )
        if default_room_version is not None:
            document["default_room_version"] = default_room_version
        self.config_path.write_text(yaml.safe_dump(document))

    def command(self) -> list[str]:
        return [self.python, "-m", "synapse.app.homeserver", "--config-path", str(self.config_path)]

    def user(self, localpart: str) -> str:
        return f"@{localpart}:{self.server_name}"

    def log_tail(self, characters: int = 6000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-characters:]
        except OSError:
            return ""
