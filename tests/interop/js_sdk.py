"""Finding or installing matrix-js-sdk for the interop tests, in a cache directory.

The scenario scripts under tests/interop/js/ run in Node and import
matrix-js-sdk from `$HOMESERVER_JS_SDK_DIR`, default
`~/.cache/homeserver-tests/js-sdk-<version>`, which holds a `package.json`
and `node_modules/` with exactly `matrix-js-sdk@JS_SDK_VERSION`. A marker
file written last (`homeserver-js-sdk.json`) says the directory is complete.

As for the Synapse venv (tests/interop/synapse_venv.py), installation is
idempotent and safe when several test runs race: under an exclusive `flock`
on `<dir>.lock` the package is installed with `npm install` into a temporary
directory next to the final one, checked by importing it in Node, marked,
and renamed into place in one step; nothing in node_modules depends on the
directory's own path, so the rename is safe.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

# The newest matrix-js-sdk whose `engines` accepts Node 20 (37.6.0 and later
# need Node 22; checked with `npm view matrix-js-sdk@<v> engines`).
# HOMESERVER_JS_SDK_VERSION overrides it.
JS_SDK_VERSION = os.environ.get("HOMESERVER_JS_SDK_VERSION", "").strip() or "37.5.0"

MARKER = "homeserver-js-sdk.json"
INSTALL_TIMEOUT = 600.0
SCRIPTS = Path(__file__).parent / "js"


class JsSdkError(RuntimeError):
    """matrix-js-sdk could not be installed; the message carries npm's output."""


def sdk_path(version: str = JS_SDK_VERSION) -> Path:
    configured = os.environ.get("HOMESERVER_JS_SDK_DIR", "").strip()
    if configured:
        return Path(configured).expanduser()
    return Path.home() / ".cache" / "homeserver-tests" / f"js-sdk-{version}"


def is_complete(directory: Path, version: str) -> bool:
    try:
        marker = json.loads((directory / MARKER).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return (
        isinstance(marker, dict)
        and marker.get("js_sdk_version") == version
        and (directory / "node_modules" / "matrix-js-sdk" / "package.json").exists()
    )


def _run(cmd: list[str], cwd: Path, log: list[str], timeout: float) -> None:
    log.append("$ " + " ".join(cmd))
    try:
        proc = subprocess.run(
            cmd,
            cwd=cwd,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            timeout=timeout,
            check=False,
        )
    except subprocess.TimeoutExpired:
        raise JsSdkError(f"timed out after {timeout:.0f}s:\n" + "\n".join(log)) from None
    except FileNotFoundError as e:
        raise JsSdkError(f"{cmd[0]} is not installed: {e}") from None
    lines = proc.stdout.splitlines()
    if len(lines) > 60:
        lines = [f"[... {len(lines) - 60} lines ...]", *lines[-60:]]
    log.append("\n".join(lines))
    if proc.returncode != 0:
        raise JsSdkError(f"exit status {proc.returncode}:\n" + "\n".join(log))


def _build(target: Path, version: str) -> None:
    """Install matrix-js-sdk@version into `target` (a new directory) and mark it complete."""
    log: list[str] = []
    started = time.monotonic()
    target.mkdir()
    package = {
        "name": "homeserver-tests-js-sdk",
        "private": True,
        "type": "module",
        "dependencies": {"matrix-js-sdk": version},
    }
    (target / "package.json").write_text(json.dumps(package, indent=2), encoding="utf-8")
    _run(
        # No install scripts: the SDK needs none without its crypto, which the tests leave out.
        ["npm", "install", "--no-audit", "--no-fund", "--ignore-scripts", "--save-exact"],
        target,
        log,
        INSTALL_TIMEOUT,
    )
    _run(
        [
            "node",
            "--input-type=module",
            "-e",
            "const sdk = await import('matrix-js-sdk');"
            " if (typeof sdk.createClient !== 'function') process.exit(3);",
        ],
        target,
        log,
        120,
    )
    marker = {
        "js_sdk_version": version,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "seconds": round(time.monotonic() - started, 1),
    }
    (target / MARKER).write_text(json.dumps(marker), encoding="utf-8")


def ensure_js_sdk(directory: Path | None = None, version: str = JS_SDK_VERSION) -> Path:
    """The path of a complete install of matrix-js-sdk, made if needed. Raises `JsSdkError`."""
    directory = directory or sdk_path(version)
    if is_complete(directory, version):
        return directory
    directory.parent.mkdir(parents=True, exist_ok=True)
    lock_path = directory.with_name(directory.name + ".lock")
    with open(lock_path, "a+") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            # Another run may have finished it while we waited for the lock.
            if is_complete(directory, version):
                return directory
            tmp = Path(tempfile.mkdtemp(prefix=directory.name + ".building-", dir=directory.parent))
            try:
                target = tmp / "sdk"
                _build(target, version)
                if directory.exists():  # incomplete or another version: replace it
                    os.rename(directory, tmp / "old")
                os.rename(target, directory)
            finally:
                shutil.rmtree(tmp, ignore_errors=True)
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
    if not is_complete(directory, version):
        raise JsSdkError(f"{directory} is still incomplete after installing into it")
    return directory
