"""Session fixtures for the interop tests: the Synapse venv and its oracle process.

`synapse_venv` finds or builds the venv (`tests.interop.synapse_venv`);
`synapse_oracle` runs one `SynapseOracle` for the whole session. When Synapse
cannot be installed the tests that need it FAIL with pip's output, unless
`HOMESERVER_TEST_SKIP_SYNAPSE=1`, when they are skipped.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.interop.oracle_client import SynapseOracle
from tests.interop.synapse_venv import (
    SYNAPSE_VERSION,
    SynapseVenvError,
    ensure_synapse_venv,
    is_complete,
    venv_path,
    venv_python,
)

SKIP = os.environ.get("HOMESERVER_TEST_SKIP_SYNAPSE") == "1"


def _unavailable(message: str) -> None:
    if SKIP:
        pytest.skip(message)
    pytest.fail(
        message + "\n(set HOMESERVER_TEST_SKIP_SYNAPSE=1 to skip these tests)", pytrace=False
    )


@pytest.fixture(scope="session")
def synapse_venv() -> Path:
    """A complete Synapse venv (built on first use; see `synapse_venv.py`).

    With HOMESERVER_TEST_SKIP_SYNAPSE=1 a missing venv is not built: the tests skip.
    """
    if SKIP and not is_complete(venv_path(), SYNAPSE_VERSION):
        pytest.skip(f"HOMESERVER_TEST_SKIP_SYNAPSE=1 and no Synapse venv at {venv_path()}")
    try:
        return ensure_synapse_venv()
    except (SynapseVenvError, OSError) as e:
        error = e
    _unavailable(f"cannot install Synapse for the interop tests: {error}")
    raise AssertionError("not reached")


@pytest.fixture(scope="session")
def synapse_oracle(synapse_venv: Path) -> Iterator[SynapseOracle]:
    """The Synapse oracle subprocess, shared by the whole session."""
    oracle = SynapseOracle(venv_python(synapse_venv))
    try:
        yield oracle
    finally:
        oracle.close()
