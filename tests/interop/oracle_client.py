"""The test side of the Synapse oracle: a subprocess spoken to in JSON lines.

`SynapseOracle(python)` starts `synapse_oracle.py` with the Synapse venv's
interpreter and keeps it running; `oracle.call("op", **arguments)` sends one
request and returns the result, raising `OracleFailed` (with Synapse's
traceback) when the oracle answers with an error, and `OracleDied` (with its
stderr) when it exits or does not answer within the timeout.
"""

from __future__ import annotations

import json
import os
import selectors
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

ORACLE_SCRIPT = Path(__file__).with_name("synapse_oracle.py")
DEFAULT_TIMEOUT = 120.0


class OracleFailed(Exception):
    """The oracle answered a request with an error (Synapse raised, or bad arguments)."""

    def __init__(self, op: str, error: str, tb: str) -> None:
        super().__init__(f"oracle op {op!r} failed: {error}\n--- oracle traceback ---\n{tb}")
        self.op = op
        self.error = error


class OracleDied(Exception):
    """The oracle process exited, or stopped answering."""


class SynapseOracle:
    def __init__(self, python: Path, *, timeout: float = DEFAULT_TIMEOUT) -> None:
        self.timeout = timeout
        self._stderr = tempfile.TemporaryFile()
        env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
        self._proc = subprocess.Popen(
            [str(python), "-u", str(ORACLE_SCRIPT)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._stderr,
            env=env,
            cwd=tempfile.gettempdir(),  # never import this repository by accident
        )
        self._buffer = b""
        self.calls = 0
        self.info: dict[str, Any] = self.call("ping")

    def stderr_text(self) -> str:
        self._stderr.seek(0)
        return self._stderr.read().decode("utf-8", errors="replace")[-20000:]

    def _read_line(self) -> bytes:
        assert self._proc.stdout is not None
        fd = self._proc.stdout.fileno()
        deadline = time.monotonic() + self.timeout
        with selectors.DefaultSelector() as selector:
            selector.register(fd, selectors.EVENT_READ)
            while b"\n" not in self._buffer:
                remaining = deadline - time.monotonic()
                if remaining <= 0 or not selector.select(remaining):
                    raise OracleDied(
                        f"no answer from the Synapse oracle within {self.timeout:.0f}s\n"
                        + self.stderr_text()
                    )
                chunk = os.read(fd, 1 << 20)
                if not chunk:
                    self._proc.wait(timeout=10)
                    raise OracleDied(
                        f"the Synapse oracle exited (status {self._proc.returncode}):\n"
                        + self.stderr_text()
                    )
                self._buffer += chunk
        line, _, self._buffer = self._buffer.partition(b"\n")
        return line

    def call(self, op: str, **arguments: Any) -> Any:
        """Send one request and return its result."""
        if self._proc.poll() is not None:
            raise OracleDied(f"the Synapse oracle has exited:\n{self.stderr_text()}")
        assert self._proc.stdin is not None
        request = json.dumps({"op": op, **arguments}, ensure_ascii=False).encode("utf-8")
        try:
            self._proc.stdin.write(request + b"\n")
            self._proc.stdin.flush()
        except BrokenPipeError:
            raise OracleDied(f"the Synapse oracle has exited:\n{self.stderr_text()}") from None
        answer = json.loads(self._read_line())
        self.calls += 1
        if not answer.get("ok"):
            raise OracleFailed(op, answer.get("error", "?"), answer.get("traceback", ""))
        return answer["result"]

    def close(self) -> None:
        """Stop the oracle (closing its stdin ends it) and wait for it."""
        if self._proc.poll() is None:
            try:
                assert self._proc.stdin is not None
                self._proc.stdin.close()
                self._proc.wait(timeout=15)
            except (OSError, subprocess.TimeoutExpired):
                self._proc.kill()
                self._proc.wait(timeout=15)
        if self._proc.stdout is not None:
            self._proc.stdout.close()
        self._stderr.close()
