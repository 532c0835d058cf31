"""register_new_matrix_user against a fake /_synapse/admin/v1/register on 127.0.0.1.

The fake endpoint checks requests with SharedSecretRegistration, the code the
server's endpoint runs, so a MAC the script gets wrong fails here.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import yaml
from twisted.internet.task import Clock as FakeReactor

from homeserver.clock import Clock
from homeserver.handlers.shared_secret_registration import (
    RegistrationRequest,
    SharedSecretRegistration,
)
from homeserver.scripts import register_new_matrix_user as script
from homeserver.types.errors import MatrixError

REPO = Path(__file__).resolve().parents[2]
SECRET = "correct horse battery staple"


class FakeServer:
    """A registration endpoint in a thread; `registered` holds the accepted requests."""

    def __init__(self, secret: str) -> None:
        self.registrar = SharedSecretRegistration(Clock(FakeReactor()), secret)
        self.registered: list[RegistrationRequest] = []
        self.existing: set[str] = set()
        self.bodies: list[dict[str, Any]] = []
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def _answer(self, status: int, body: dict[str, Any]) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self) -> None:
                if self.path != "/_synapse/admin/v1/register":
                    return self._answer(404, {"errcode": "M_UNRECOGNIZED", "error": "nope"})
                try:
                    self._answer(200, {"nonce": fake.registrar.new_nonce()})
                except MatrixError as e:
                    self._answer(e.status, e.to_dict())

            def do_POST(self) -> None:
                length = int(self.headers["Content-Length"])
                body = json.loads(self.rfile.read(length))
                fake.bodies.append(body)
                try:
                    request = fake.registrar.check_request(body)
                except MatrixError as e:
                    return self._answer(e.status, e.to_dict())
                if request.localpart in fake.existing:
                    return self._answer(400, {"errcode": "M_USER_IN_USE", "error": "User ID already taken."})
                fake.existing.add(request.localpart)
                fake.registered.append(request)
                self._answer(200, {
                    "user_id": f"@{request.localpart}:test",
                    "access_token": "token",
                    "home_server": "test",
                    "device_id": "DEVICE",
                })

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(
            target=self.httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )
        self.thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join()


@pytest.fixture
def server() -> Iterator[FakeServer]:
    fake = FakeServer(SECRET)
    yield fake
    fake.close()


def run_main(argv: list[str]) -> int:
    try:
        script.main(argv)
    except SystemExit as e:
        return int(e.code or 0)
    return 0


def test_registers_a_user_with_a_secret_given_on_the_command_line(
    server: FakeServer, capsys: pytest.CaptureFixture[str]
) -> None:
    status = run_main(["-k", SECRET, "-u", "Alice", "-p", "pw", "--no-admin", server.url])
    assert status == 0
    assert server.registered == [
        RegistrationRequest(localpart="alice", password="pw", admin=False, user_type=None, displayname=None)
    ]
    assert server.bodies[0]["username"] == "Alice"
    assert server.bodies[0]["admin"] is False
    assert "Success!" in capsys.readouterr().out


def test_admin_and_user_type_are_sent_and_covered_by_the_mac(server: FakeServer) -> None:
    status = run_main(["-k", SECRET, "-u", "bot1", "-p", "pw", "-a", "-t", "bot", server.url])
    assert status == 0
    assert server.registered[0].admin is True
    assert server.registered[0].user_type == "bot"


def test_wrong_secret_fails_with_the_servers_message(
    server: FakeServer, capsys: pytest.CaptureFixture[str]
) -> None:
    status = run_main(["-k", "wrong", "-u", "alice", "-p", "pw", "--no-admin", server.url])
    assert status == 1
    assert server.registered == []
    err = capsys.readouterr().err
    assert "ERROR! Received 403" in err
    assert "HMAC incorrect" in err


def test_exists_ok(server: FakeServer, capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["-k", SECRET, "-u", "alice", "-p", "pw", "--no-admin", server.url]
    assert run_main(argv) == 0
    assert run_main(argv) == 1
    assert "ERROR! Received 400" in capsys.readouterr().err
    assert run_main(["--exists-ok", *argv]) == 0
    assert "User already exists. Skipping." in capsys.readouterr().out


def write_config(tmp_path: Path, server: FakeServer, **options: Any) -> Path:
    config = {
        "server_name": "test",
        "listeners": [
            {"port": 1, "tls": True, "resources": [{"names": ["client"]}]},
            {"port": server.port, "resources": [{"names": ["federation", "client"]}]},
        ],
        **options,
    }
    path = tmp_path / "conf" / "homeserver.yaml"
    path.parent.mkdir(exist_ok=True)
    path.write_text(yaml.safe_dump(config))
    return path


def test_secret_and_server_url_from_the_config(tmp_path: Path, server: FakeServer) -> None:
    config = write_config(tmp_path, server, registration_shared_secret=SECRET)
    assert run_main(["-c", str(config), "-u", "carol", "-p", "pw", "--no-admin"]) == 0
    assert [r.localpart for r in server.registered] == ["carol"]


def test_secret_path_is_relative_to_the_config_file(tmp_path: Path, server: FakeServer) -> None:
    config = write_config(tmp_path, server, registration_shared_secret_path="secret.txt")
    (config.parent / "secret.txt").write_text(SECRET + "\n")
    assert run_main(["-c", str(config), "-u", "dave", "-p", "pw", "--no-admin"]) == 0
    assert [r.localpart for r in server.registered] == ["dave"]


def test_config_without_a_secret_is_an_error(
    tmp_path: Path, server: FakeServer, capsys: pytest.CaptureFixture[str]
) -> None:
    config = write_config(tmp_path, server)
    assert run_main(["-c", str(config), "-u", "erin", "-p", "pw", "--no-admin"]) == 1
    assert "No 'registration_shared_secret'" in capsys.readouterr().err


def test_password_file_and_prompts(
    tmp_path: Path, server: FakeServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    password_file = tmp_path / "pw"
    password_file.write_text("from-file\n")
    answers = iter(["frank", "yes"])
    monkeypatch.setattr("builtins.input", lambda prompt: next(answers))
    assert run_main(["-k", SECRET, "--password-file", str(password_file), server.url]) == 0
    assert server.registered[0] == RegistrationRequest(
        localpart="frank", password="from-file", admin=True, user_type=None, displayname=None
    )

    passwords = iter(["one", "two"])
    monkeypatch.setattr("getpass.getpass", lambda prompt: next(passwords))
    assert run_main(["-k", SECRET, "-u", "gina", "--no-admin", server.url]) == 1


def test_unreachable_server_is_reported(capsys: pytest.CaptureFixture[str]) -> None:
    fake = FakeServer(SECRET)
    url = fake.url
    fake.close()
    assert run_main(["-k", SECRET, "-u", "h", "-p", "pw", "--no-admin", url]) == 1
    assert "Could not get a nonce" in capsys.readouterr().err


def test_finding_the_client_listener() -> None:
    assert script.find_client_listener({}) is None
    assert script.find_client_listener(
        {"listeners": [{"port": 8448, "resources": [{"names": ["federation"]}]}]}
    ) is None
    assert script.find_client_listener(
        {"listeners": [{"port": 8008, "type": "http", "resources": [{"names": ["client"]}]}]}
    ) == "http://localhost:8008"


def test_the_wrapper_script_runs_from_a_checkout(server: FakeServer) -> None:
    result = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "register_new_matrix_user"),
         "-k", SECRET, "-u", "ivan", "-p", "pw", "--no-admin", server.url],
        capture_output=True, text=True, timeout=60, cwd="/",
    )
    assert result.returncode == 0, result.stderr
    assert "Success!" in result.stdout
    assert [r.localpart for r in server.registered] == ["ivan"]
