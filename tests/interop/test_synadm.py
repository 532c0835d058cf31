"""synadm, the Synapse admin command line tool, against a server on 127.0.0.1.

synadm runs as a subprocess (in a worker thread, so the test's reactor keeps
serving) with a config file written here: its non-interactive form is a YAML
file with the keys of synadm's `config` command (user, token, base_url,
admin_path, matrix_path, timeout, homeserver, ssl_verify, server_discovery,
format, protocol). HOME points at the test's directory, where synadm keeps
its debug log.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml
from twisted.internet import threads

from tests.homeserver_harness import make_admin


def _write_config(path: Path, base_url: str, token: str) -> None:
    config = {
        "user": "@root:test",
        "token": token,
        "protocol": "http",
        "base_url": base_url,
        "admin_path": "/_synapse/admin",
        "matrix_path": "/_matrix",
        "timeout": 30,
        "homeserver": "test",
        "ssl_verify": False,
        "server_discovery": "well-known",
        "format": "json",
    }
    path.write_text(yaml.safe_dump(config))


async def _synadm(config: Path, home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "synadm", "-c", str(config), "--output", "json", *args]
    env = {**os.environ, "HOME": str(home)}
    result: subprocess.CompletedProcess[str] = await threads.deferToThread(
        subprocess.run, command, capture_output=True, text=True, timeout=60, env=env, cwd=str(home)
    )
    return result


async def test_synadm_lists_users_and_resets_a_password(homeserver_factory: Any, tmp_path: Path) -> None:
    hs = await homeserver_factory.start()
    client = homeserver_factory.client(hs)
    token = await make_admin(hs, client)
    for name in ("alice", "bob"):
        await client.register(name)
    config = tmp_path / "synadm.yaml"
    _write_config(config, client.base_url, token)

    listed = await _synadm(config, tmp_path, "user", "list")
    assert listed.returncode == 0, listed.stderr
    users = json.loads(listed.stdout)
    assert sorted(u["name"] for u in users["users"]) == ["@alice:test", "@bob:test", "@root:test"]
    assert users["total"] == 3

    details = await _synadm(config, tmp_path, "user", "details", "@alice:test")
    assert details.returncode == 0, details.stderr
    assert json.loads(details.stdout)["name"] == "@alice:test"

    reset = await _synadm(config, tmp_path, "user", "password", "@alice:test", "-p", "from synadm")
    assert reset.returncode == 0, reset.stderr
    assert json.loads(reset.stdout) == {}
    await client.login("alice", "from synadm")

    version = await _synadm(config, tmp_path, "version")
    assert version.returncode == 0, version.stderr
    assert "server_version" in version.stdout
