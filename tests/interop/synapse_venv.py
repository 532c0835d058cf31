"""Finding or creating the virtualenv that holds Synapse, apart from the project's.

Synapse pins many packages, so it never goes into the project's environment
(see ../shared/notes/synapse-as-peer.md). The venv lives at
`$HOMESERVER_SYNAPSE_VENV`, default `~/.cache/homeserver-tests/synapse-venv`,
and holds exactly `matrix-synapse==SYNAPSE_VERSION` (1.163.2 unless
`$HOMESERVER_SYNAPSE_VERSION` says otherwise). A marker file written
last (`homeserver-synapse.json`, with the version) says the venv is complete.

Creation is idempotent and safe when several test runs race: under an
exclusive `flock` on `<venv>.lock`, the venv is built in a temporary
directory next to the final one (`python -m venv`, then `python -m pip
install`), checked by importing Synapse, marked, and renamed into place in
one step. A half-built directory never looks complete; a stale or
wrong-version venv is replaced the same way. The venv's `bin/python` keeps
working after the rename (it finds its `pyvenv.cfg` next to itself); console
scripts such as `bin/pip` keep the temporary path in their shebang, so we
only ever call `bin/python -m ...`.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

# The Synapse release we compare with (checked with `pip index versions
# matrix-synapse`; the same one the notes on running Synapse as a peer used).
# HOMESERVER_SYNAPSE_VERSION overrides it, to try another release.
SYNAPSE_VERSION = os.environ.get("HOMESERVER_SYNAPSE_VERSION", "").strip() or "1.163.2"

MARKER = "homeserver-synapse.json"
INSTALL_TIMEOUT = 1800.0


class SynapseVenvError(RuntimeError):
    """The Synapse venv could not be created; the message carries pip's output."""


def venv_path() -> Path:
    configured = os.environ.get("HOMESERVER_SYNAPSE_VENV", "").strip()
    if configured:
        return Path(configured).expanduser()
    return Path.home() / ".cache" / "homeserver-tests" / "synapse-venv"


def venv_python(venv: Path) -> Path:
    return venv / "bin" / "python"


def is_complete(venv: Path, version: str) -> bool:
    try:
        marker = json.loads((venv / MARKER).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return (
        isinstance(marker, dict)
        and marker.get("synapse_version") == version
        and venv_python(venv).exists()
    )


def _run(cmd: list[str], log: list[str], timeout: float) -> None:
    log.append("$ " + " ".join(cmd))
    try:
        proc = subprocess.run(
            cmd,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            timeout=timeout,
            check=False,
        )
    except subprocess.TimeoutExpired as e:
        output = e.stdout.decode(errors="replace") if isinstance(e.stdout, bytes) else e.stdout
        log.append(output or "")
        raise SynapseVenvError(f"timed out after {timeout:.0f}s:\n" + "\n".join(log)) from None
    lines = proc.stdout.splitlines()
    if len(lines) > 60:  # pip is chatty: its last lines say what went wrong
        lines = [f"[... {len(lines) - 60} lines ...]", *lines[-60:]]
    log.append("\n".join(lines))
    if proc.returncode != 0:
        raise SynapseVenvError(f"exit status {proc.returncode}:\n" + "\n".join(log))


def _build(target: Path, version: str) -> None:
    """Build a complete, marked venv at `target` (which must not exist)."""
    log: list[str] = []
    started = time.monotonic()
    _run([sys.executable, "-m", "venv", str(target)], log, 300)
    python = str(venv_python(target))
    _run(
        [
            python,
            "-m",
            "pip",
            "install",
            "--disable-pip-version-check",
            "--no-input",
            f"matrix-synapse=={version}",
        ],
        log,
        INSTALL_TIMEOUT,
    )
    # In the oracle's import order (synapse.state and event_auth import each other).
    _run(
        [python, "-c", "import synapse.event_auth, synapse.state.v2, synapse.crypto.event_signing"],
        log,
        300,
    )
    marker = {
        "synapse_version": version,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "seconds": round(time.monotonic() - started, 1),
    }
    (target / MARKER).write_text(json.dumps(marker), encoding="utf-8")


def ensure_synapse_venv(venv: Path | None = None, version: str = SYNAPSE_VERSION) -> Path:
    """The path of a complete Synapse venv, created if needed. Raises `SynapseVenvError`."""
    venv = venv or venv_path()
    if is_complete(venv, version):
        return venv
    venv.parent.mkdir(parents=True, exist_ok=True)
    lock_path = venv.with_name(venv.name + ".lock")
    with open(lock_path, "a+") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            # Another run may have finished it while we waited for the lock.
            if is_complete(venv, version):
                return venv
            tmp = Path(tempfile.mkdtemp(prefix=venv.name + ".building-", dir=venv.parent))
            try:
                target = tmp / "venv"
                _build(target, version)
                if venv.exists():  # incomplete or another version: replace it
                    old = tmp / "old"
                    os.rename(venv, old)
                os.rename(target, venv)
            finally:
                shutil.rmtree(tmp, ignore_errors=True)
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
    if not is_complete(venv, version):
        raise SynapseVenvError(f"{venv} is still incomplete after building it")
    return venv
