"""Starting this homeserver and Synapse as subprocesses on loopback, each on a fresh database.

Both get the same treatment: one plain-HTTP client listener on 127.0.0.1,
open registration with m.login.dummy, the same bcrypt cost, every rate limit
out of the way, logging at WARNING to a file, and a database of their own
(an SQLite file, or a new PostgreSQL database dropped afterwards). Synapse
runs from the venv that tests/interop/synapse_venv.py builds; for PostgreSQL
its driver is added to that venv on first use.

A `ServerUnderTest` reports the process's peak resident memory (VmHWM) and
the CPU time it has used, read from /proc.
"""

from __future__ import annotations

import fcntl
import os
import re
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any

import yaml

from tests.interop.synapse_venv import ensure_synapse_venv, venv_python

# The bcrypt cost both servers hash passwords with (Synapse's default).
BCRYPT_ROUNDS = 12
NO_LIMIT = {"per_second": 100000, "burst_count": 100000}
# Synapse's rate limit options, each set to NO_LIMIT (unknown ones are ignored
# by Synapse, so options of newer releases may be listed too).
SYNAPSE_RATE_LIMITS: dict[str, Any] = {
    "rc_message": NO_LIMIT,
    "rc_registration": NO_LIMIT,
    "rc_registration_token_validity": NO_LIMIT,
    "rc_login": {"address": NO_LIMIT, "account": NO_LIMIT, "failed_attempts": NO_LIMIT},
    "rc_joins": {"local": NO_LIMIT, "remote": NO_LIMIT},
    "rc_joins_per_room": NO_LIMIT,
    "rc_invites": {"per_room": NO_LIMIT, "per_user": NO_LIMIT, "per_issuer": NO_LIMIT},
    "rc_3pid_validation": NO_LIMIT,
    "rc_admin_redaction": NO_LIMIT,
    "rc_room_creation": NO_LIMIT,
    "rc_presence": {"per_user": NO_LIMIT},
    "rc_delayed_event_mgmt": NO_LIMIT,
    "rc_reports": NO_LIMIT,
    "rc_media_create": NO_LIMIT,
    "rc_federation": {
        "window_size": 1000,
        "sleep_limit": 100000,
        "sleep_delay": 1,
        "reject_limit": 100000,
        "concurrent": 100000,
    },
    "federation_rr_transactions_per_room_per_second": 100000,
}
START_TIMEOUT = 180.0

DatabaseArgs = tuple[str, dict[str, Any]]  # (engine name, connect args), as the configs take them


def _log_config(path: Path, log_file: Path) -> None:
    document = {
        "version": 1,
        "formatters": {"plain": {"format": "%(asctime)s %(name)s %(levelname)s %(message)s"}},
        "handlers": {
            "file": {"class": "logging.FileHandler", "formatter": "plain", "filename": str(log_file)}
        },
        "root": {"level": "WARNING", "handlers": ["file"]},
        "disable_existing_loggers": False,
    }
    path.write_text(yaml.safe_dump(document))


def unlimited_rate_limits() -> dict[str, Any]:
    """Every `rc_*` option this server's config knows, with each limit set to NO_LIMIT."""
    from homeserver.config.homeserver import SCHEMA

    def unlimited(schema: dict[str, Any]) -> dict[str, Any]:
        properties = schema.get("properties", {})
        if {"per_second", "burst_count"} <= set(properties):
            return dict(NO_LIMIT)
        return {name: unlimited(sub) for name, sub in properties.items() if sub.get("type") == "object"}

    return {
        name: unlimited(schema)
        for name, schema in SCHEMA["properties"].items()
        if name.startswith("rc_") and schema.get("type") == "object"
    }


class ServerUnderTest(ABC):
    """A server subprocess: start, wait until it answers, measure, stop."""

    name = "server"

    def __init__(self, directory: Path, port: int) -> None:
        self.directory = directory
        self.port = port
        self.base_url = f"http://127.0.0.1:{port}"
        self.output_path = directory / "process-output.txt"
        self.process: subprocess.Popen[bytes] | None = None

    @abstractmethod
    def command(self) -> list[str]:
        """The command line that starts the server."""

    def start(self) -> None:
        with open(self.output_path, "ab") as output:
            self.process = subprocess.Popen(
                self.command(), stdout=output, stderr=subprocess.STDOUT, cwd=self.directory
            )
        self._wait_until_serving()

    def _wait_until_serving(self) -> None:
        assert self.process is not None
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(
                    f"{self.name} exited with {self.process.returncode}:\n{self.output()[-3000:]}"
                )
            try:
                url = f"{self.base_url}/_matrix/client/versions"
                with urllib.request.urlopen(url, timeout=2) as response:
                    if response.status == 200:
                        return
            except (OSError, urllib.error.URLError):
                time.sleep(0.2)
        raise RuntimeError(f"{self.name} did not answer within {START_TIMEOUT:.0f}s:\n{self.output()[-3000:]}")

    def output(self) -> str:
        try:
            return self.output_path.read_text(errors="replace")
        except OSError:
            return ""

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def peak_rss_mib(self) -> float:
        """The process's peak resident set size so far (VmHWM), in MiB."""
        status = Path(f"/proc/{self.pid}/status").read_text()
        match = re.search(r"^VmHWM:\s+(\d+) kB", status, re.MULTILINE)
        if match is None:
            raise RuntimeError(f"no VmHWM in /proc/{self.pid}/status")
        return int(match.group(1)) / 1024.0

    def cpu_seconds(self) -> float:
        """User plus system CPU time the process has used."""
        stat = Path(f"/proc/{self.pid}/stat").read_text()
        # The command name (field 2) may hold spaces; the fields after it are plain.
        fields = stat[stat.rindex(")") + 2 :].split()
        ticks = int(fields[11]) + int(fields[12])  # utime, stime: fields 14 and 15 of stat(5)
        return ticks / os.sysconf("SC_CLK_TCK")

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


class OurServer(ServerUnderTest):
    """This homeserver (`python -m homeserver`, from the interpreter running the benchmark)."""

    name = "homeserver"

    def __init__(self, directory: Path, port: int, database: DatabaseArgs) -> None:
        super().__init__(directory, port)
        directory.mkdir(parents=True, exist_ok=True)
        log_config = directory / "log.yaml"
        _log_config(log_config, directory / "homeserver.log")
        engine, args = database
        document: dict[str, Any] = {
            "server_name": "localhost",
            "signing_key_path": str(directory / "localhost.signing.key"),
            "pid_file": str(directory / "homeserver.pid"),
            "listeners": [
                {
                    "port": port,
                    "bind_addresses": ["127.0.0.1"],
                    "resources": [{"names": ["client"]}],
                }
            ],
            "database": {"name": engine, "args": args},
            "log_config": str(log_config),
            "enable_registration": True,
            "enable_registration_without_verification": True,
            "bcrypt_rounds": BCRYPT_ROUNDS,
            **unlimited_rate_limits(),
        }
        self.config_path = directory / "homeserver.yaml"
        self.config_path.write_text(yaml.safe_dump(document))

    def command(self) -> list[str]:
        return [sys.executable, "-m", "homeserver", "-c", str(self.config_path)]


def our_default_room_version() -> str:
    from homeserver.types.room_versions import DEFAULT_ROOM_VERSION

    return DEFAULT_ROOM_VERSION.identifier


class SynapseServer(ServerUnderTest):
    """Synapse from the project's Synapse venv, configured like ours."""

    name = "synapse"

    def __init__(self, directory: Path, port: int, database: DatabaseArgs) -> None:
        super().__init__(directory, port)
        directory.mkdir(parents=True, exist_ok=True)
        venv = ensure_synapse_venv()
        engine, _ = database
        if engine == "psycopg2":
            ensure_synapse_postgres_driver(venv)
        self.python = str(venv_python(venv))
        self.config_path = directory / "homeserver.yaml"
        generated = subprocess.run(
            [
                self.python,
                "-m",
                "synapse.app.homeserver",
                "--server-name",
                "localhost",
                "--config-path",
                str(self.config_path),
                "--data-directory",
                str(directory),
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
        log_config = directory / "log.yaml"
        _log_config(log_config, directory / "homeserver.log")
        document = yaml.safe_load(self.config_path.read_text())
        engine, args = database
        document.update(
            {
                "listeners": [
                    {
                        "port": port,
                        "bind_addresses": ["127.0.0.1"],
                        "type": "http",
                        "tls": False,
                        "x_forwarded": False,
                        "resources": [{"names": ["client"], "compress": False}],
                    }
                ],
                "database": {"name": engine, "args": args},
                "log_config": str(log_config),
                "enable_registration": True,
                "enable_registration_without_verification": True,
                "bcrypt_rounds": BCRYPT_ROUNDS,
                "report_stats": False,
                "trusted_key_servers": [],
                "suppress_key_server_warning": True,
                "default_room_version": our_default_room_version(),
                # We have no presence yet; Synapse's would add work to every sync.
                "presence": {"enabled": False},
                # Otherwise repeated identical initial syncs are answered from its cache.
                "caches": {"sync_response_cache_duration": 0},
                **SYNAPSE_RATE_LIMITS,
            }
        )
        self.config_path.write_text(yaml.safe_dump(document))

    def command(self) -> list[str]:
        return [self.python, "-m", "synapse.app.homeserver", "--config-path", str(self.config_path)]


def ensure_synapse_postgres_driver(venv: Path) -> None:
    """psycopg2 in the Synapse venv (Synapse's `postgres` extra), installed once under the venv's lock."""
    python = str(venv_python(venv))

    def has_driver() -> bool:
        return subprocess.run([python, "-c", "import psycopg2"], capture_output=True, check=False).returncode == 0

    if has_driver():
        return
    version = subprocess.run(
        [python, "-c", "import synapse; print(synapse.__version__)"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    with open(venv.with_name(venv.name + ".lock"), "a+") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            if has_driver():
                return
            installed = subprocess.run(
                [
                    python,
                    "-m",
                    "pip",
                    "install",
                    "--disable-pip-version-check",
                    "--no-input",
                    f"matrix-synapse[postgres]=={version}",
                ],
                capture_output=True,
                text=True,
                timeout=900,
                check=False,
            )
            if installed.returncode != 0 or not has_driver():
                raise RuntimeError(f"cannot install psycopg2 for Synapse:\n{installed.stdout[-3000:]}")
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


class PostgresDatabases:
    """Creates fresh PostgreSQL databases (UTF8, C collation, as Synapse requires) and drops them."""

    def __init__(self, dsn: str) -> None:
        from psycopg2.extensions import parse_dsn

        self.admin_args: dict[str, str] = parse_dsn(dsn)
        self.admin_args.setdefault("dbname", "postgres")
        self._created: list[str] = []

    def _admin(self) -> Any:
        import psycopg2

        conn = psycopg2.connect(**self.admin_args)
        conn.autocommit = True
        return conn

    def create(self) -> DatabaseArgs:
        name = f"bench_{os.getpid()}_{uuid.uuid4().hex[:8]}"
        conn = self._admin()
        try:
            with conn.cursor() as cur:
                cur.execute(
                    f"CREATE DATABASE \"{name}\" ENCODING 'UTF8' LC_COLLATE 'C' LC_CTYPE 'C'"
                    " TEMPLATE template0"
                )
        finally:
            conn.close()
        self._created.append(name)
        args: dict[str, Any] = {**self.admin_args, "dbname": name}
        if "port" in args:
            args["port"] = int(args["port"])
        return ("psycopg2", args)

    def drop_all(self) -> None:
        while self._created:
            name = self._created.pop()
            conn = self._admin()
            try:
                with conn.cursor() as cur:
                    cur.execute(
                        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                        " WHERE datname = %s AND pid <> pg_backend_pid()",
                        (name,),
                    )
                    cur.execute(f'DROP DATABASE IF EXISTS "{name}"')
            finally:
                conn.close()
