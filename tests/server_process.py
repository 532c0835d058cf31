"""Running the real `homeserver` command as a subprocess on a loopback port, for end-to-end tests."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import yaml


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def get_json(url: str, timeout: float = 5.0) -> tuple[int, Any]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


class ServerProcess:
    """`homeserver -c <config>` in a subprocess; stdout and stderr go to files in its directory."""

    def __init__(self, config_path: Path) -> None:
        self.config_path = config_path
        self.directory = config_path.parent
        self.output_path = self.directory / "process-output.txt"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        output = open(self.output_path, "ab")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "homeserver", "-c", str(self.config_path)],
            stdout=output,
            stderr=subprocess.STDOUT,
            cwd=self.directory,
        )
        output.close()

    def output(self) -> str:
        return self.output_path.read_text(errors="replace")

    def wait_until_serving(self, base_url: str, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.process is not None
            if self.process.poll() is not None:
                raise AssertionError(f"server exited with {self.process.returncode}:\n{self.output()}")
            try:
                with urllib.request.urlopen(f"{base_url}/health", timeout=1) as response:
                    if response.status == 200:
                        return
            except OSError:
                time.sleep(0.1)
        raise AssertionError(f"server did not start within {timeout}s:\n{self.output()}")

    def signal(self, signum: int) -> None:
        assert self.process is not None
        self.process.send_signal(signum)

    def wait(self, timeout: float = 30.0) -> int:
        assert self.process is not None
        return self.process.wait(timeout=timeout)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def write_config(directory: Path, port: int, **overrides: Any) -> Path:
    """A config in `directory` for a server on 127.0.0.1:`port` with SQLite, plus `overrides`."""
    document: dict[str, Any] = {
        "server_name": "localhost",
        "signing_key_path": str(directory / "localhost.signing.key"),
        "pid_file": str(directory / "homeserver.pid"),
        "listeners": [
            {
                "port": port,
                "bind_addresses": ["127.0.0.1"],
                "resources": [{"names": ["client", "federation", "metrics"]}],
            }
        ],
        "database": {"name": "sqlite3", "args": {"database": str(directory / "homeserver.db")}},
    }
    document.update(overrides)
    path = directory / "homeserver.yaml"
    path.write_text(yaml.safe_dump(document))
    return path

