"""The real `homeserver` process: first start, restart, SIGHUP log reload, SIGTERM shutdown."""

from __future__ import annotations

import signal
import socket
import time
from pathlib import Path

import pytest
import yaml

from tests.server_process import ServerProcess, free_port, get_json, write_config


def port_is_free(port: int) -> bool:
    with socket.socket() as s:
        # As the server will: connections lingering in TIME_WAIT do not block it.
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def wait_for(predicate, timeout: float = 10.0) -> bool:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return False


def test_first_start_writes_config_and_key_then_restart_reuses_them(tmp_path: Path) -> None:
    # The README's promise: `homeserver -c homeserver.yaml` on a fresh machine
    # serves /_matrix/client/versions on 127.0.0.1:8008.
    if not port_is_free(8008):
        pytest.fail("port 8008 is taken on this machine; this test needs it free")
    config_path = tmp_path / "homeserver.yaml"
    server = ServerProcess(config_path)
    server.start()
    try:
        server.wait_until_serving("http://127.0.0.1:8008")
        status, body = get_json("http://127.0.0.1:8008/_matrix/client/versions")
        assert status == 200 and "versions" in body
    finally:
        server.stop()
    assert server.wait() == 0
    first_output = server.output()
    assert f"Wrote the config to {config_path}" in first_output
    key_path = tmp_path / "localhost.signing.key"
    assert f"Wrote a new signing key to {key_path}" in first_output
    config = yaml.safe_load(config_path.read_text())
    assert config["server_name"] == "localhost"
    assert (tmp_path / "homeserver.db").exists()
    config_text, key_text = config_path.read_text(), key_path.read_text()

    server.output_path.write_text("")
    server.start()
    try:
        server.wait_until_serving("http://127.0.0.1:8008")
        status, _ = get_json("http://127.0.0.1:8008/_matrix/client/versions")
        assert status == 200
    finally:
        server.stop()
    assert server.wait() == 0
    assert "Wrote" not in server.output()
    assert config_path.read_text() == config_text
    assert key_path.read_text() == key_text


def _log_config(log_file: Path) -> str:
    return yaml.safe_dump(
        {
            "version": 1,
            "formatters": {"f": {"format": "%(name)s %(request)s %(message)s"}},
            "handlers": {
                "file": {"class": "logging.FileHandler", "formatter": "f", "filename": str(log_file)}
            },
            "root": {"level": "INFO", "handlers": ["file"]},
            "disable_existing_loggers": False,
        }
    )


def test_sighup_rereads_the_log_config_without_restarting(tmp_path: Path) -> None:
    port = free_port()
    first_log, second_log = tmp_path / "first.log", tmp_path / "second.log"
    log_config = tmp_path / "log.yaml"
    log_config.write_text(_log_config(first_log))
    server = ServerProcess(write_config(tmp_path, port, log_config=str(log_config)))
    base = f"http://127.0.0.1:{port}"
    server.start()
    try:
        server.wait_until_serving(base)
        get_json(f"{base}/_matrix/client/versions?access_token=hidden")
        assert wait_for(lambda: "/_matrix/client/versions" in first_log.read_text())
        pid = server.process.pid if server.process else None

        log_config.write_text(_log_config(second_log))
        server.signal(signal.SIGHUP)
        assert wait_for(lambda: second_log.exists() and "Reloaded the log config" in second_log.read_text())
        get_json(f"{base}/_matrix/client/versions?access_token=hidden")
        assert wait_for(lambda: "/_matrix/client/versions" in second_log.read_text())
        assert server.process is not None and server.process.pid == pid
        assert server.process.poll() is None
    finally:
        server.stop()
    assert server.wait() == 0
    def access_lines(log: Path) -> list[str]:
        return [
            line
            for line in log.read_text().splitlines()
            if line.startswith("homeserver.access") and "/_matrix/client/versions" in line
        ]

    # One request before the reload went to the first file, one after it to the second.
    assert len(access_lines(first_log)) == 1
    (line,) = access_lines(second_log)
    assert "GET-" in line
    assert "access_token=<redacted>" in line and "hidden" not in line


def _database_block(db_config: tuple[str, dict]) -> dict:
    engine_name, args = db_config
    args = dict(args)
    if "port" in args:
        args["port"] = int(args["port"])
    return {"name": engine_name, "args": args}


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_stop_signal_finishes_the_request_in_flight_and_exits_0(
    tmp_path: Path, db_config: tuple[str, dict], signum: int
) -> None:
    port = free_port()
    server = ServerProcess(write_config(tmp_path, port, database=_database_block(db_config)))
    base = f"http://127.0.0.1:{port}"
    pid_file = tmp_path / "homeserver.pid"
    server.start()
    try:
        server.wait_until_serving(base)
        assert server.process is not None
        assert pid_file.read_text().strip() == str(server.process.pid)

        # A request whose body is still arriving when the signal comes.
        conn = socket.create_connection(("127.0.0.1", port), timeout=10)
        conn.sendall(
            b"GET /_matrix/client/versions HTTP/1.1\r\nHost: localhost\r\n"
            b"Content-Length: 10\r\n\r\n12345"
        )
        time.sleep(0.3)
        server.signal(signum)
        # The server stops accepting new connections...
        assert wait_for(lambda: not _can_connect(port))
        # ...but the request in flight is answered.
        conn.sendall(b"67890")
        response = _read_response(conn)
        conn.close()
        assert response.startswith(b"HTTP/1.1 200 ")
        assert b'"versions"' in response
        assert server.wait(timeout=20) == 0
    finally:
        server.stop()
    assert not pid_file.exists()
    assert "Shutting down" in server.output()


def _can_connect(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
    except OSError:
        return False
    return True


def _read_response(conn: socket.socket) -> bytes:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = conn.recv(65536)
        if not chunk:
            return data
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value.strip())
    while len(body) < length:
        chunk = conn.recv(65536)
        if not chunk:
            break
        body += chunk
    return head + b"\r\n\r\n" + body


def test_database_newer_than_the_code_stops_the_start_with_one_line(
    tmp_path: Path, db_config: tuple[str, dict]
) -> None:
    port = free_port()
    config_path = write_config(tmp_path, port, database=_database_block(db_config))
    server = ServerProcess(config_path)
    server.start()
    try:
        server.wait_until_serving(f"http://127.0.0.1:{port}")
    finally:
        server.stop()
    assert server.wait() == 0
    _set_schema_version(db_config, 9999)

    server.output_path.write_text("")
    server.start()
    assert server.wait(timeout=30) == 1
    errors = [line for line in server.output().splitlines() if line.startswith("homeserver: ")]
    assert len(errors) == 1
    assert "9999" in errors[0]
    assert "Traceback" not in server.output()


def _set_schema_version(db_config: tuple[str, dict], version: int) -> None:
    engine_name, args = db_config
    if engine_name == "sqlite3":
        import sqlite3

        conn = sqlite3.connect(args["database"])
    else:
        import psycopg2

        conn = psycopg2.connect(**args)
    cur = conn.cursor()
    cur.execute(f"UPDATE schema_version SET version = {int(version)}")
    conn.commit()
    conn.close()
