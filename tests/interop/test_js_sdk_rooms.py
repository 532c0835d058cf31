"""matrix-js-sdk in a room against a server on 127.0.0.1 (both database engines).

The scenario is tests/interop/js/rooms_scenario.mjs, run with Node against
an in-process server (in a worker thread, so the test's reactor keeps
serving): alice and bob run the SDK's own sync loop; alice creates a room and
invites bob, who sees the invite arrive through sync and joins; they take
turns sending; bob's second device starts from a one-event timeline and
scrolls back through /messages to the room's creation; alice redacts one of
bob's messages, which bob sees through sync and GET /event serves pruned.

matrix-js-sdk is installed on first use into a cache directory
(tests/interop/js_sdk.py). If it cannot be installed the test FAILS with
npm's output. The same scenario runs against Synapse as the reference for
what the test expects.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest
from twisted.internet import threads

from benchmarks.servers import SynapseServer
from tests.homeserver_harness import NO_LIMIT
from tests.interop.js_sdk import SCRIPTS, JsSdkError, ensure_js_sdk
from tests.server_process import free_port

# The script stops itself after 50 s (async tests get 60 s); this only catches a Node that hangs anyway.
NODE_TIMEOUT = 55
OUT_OF_SCOPE = ("GET /_matrix/client/v3/capabilities ",)


@pytest.fixture(scope="session")
def js_sdk() -> Path:
    try:
        return ensure_js_sdk()
    except (JsSdkError, OSError) as e:
        pytest.fail(f"cannot install matrix-js-sdk for the interop tests: {e}", pytrace=False)
        raise AssertionError("not reached") from e


def _run_scenario(base_url: str, sdk: Path) -> tuple[dict[str, Any], str]:
    process = subprocess.run(
        ["node", str(SCRIPTS / "rooms_scenario.mjs"), base_url, str(sdk)],
        capture_output=True,
        text=True,
        timeout=NODE_TIMEOUT,
        check=False,
    )
    lines = [line for line in process.stdout.splitlines() if line.startswith("RESULT ")]
    if not lines:
        raise AssertionError(
            f"node exited with {process.returncode} without a result:\n{process.stdout[-3000:]}\n{process.stderr[-3000:]}"
        )
    return json.loads(lines[-1][len("RESULT ") :]), process.stderr


def _check(seen: dict[str, Any], log: str, server_name: str) -> None:
    alice, bob = f"@alice:{server_name}", f"@bob:{server_name}"
    assert seen["ok"], f"{seen.get('error')} at step {seen['step']}\n{seen}\n{log[-3000:]}"
    # Push rules (the script stands in for a missing /pushrules/) and
    # /capabilities (which the SDK only logs) belong to other parts of the
    # API; every other request the SDK made succeeded.
    assert [r for r in seen["failed_requests"] if not r.startswith(OUT_OF_SCOPE)] == []

    assert seen["invite_seen_by_bob"]
    assert seen["invited_room_name"] == "js-sdk room"
    assert seen["alice_members"] == [alice, bob]

    expected = [f"{name} says {i}" for i in range(3) for name in ("alice", "bob")]
    assert seen["sent"] == expected
    assert seen["alice_received"] == [b for b in expected if b.startswith("bob")]
    assert seen["bob_received"] == [b for b in expected if b.startswith("alice")]
    assert seen["timelines_confirmed"]
    assert seen["alice_timeline"] == expected
    assert seen["bob_timeline"] == expected

    # The second device began with one event and scrolled back, page by page, to the creation.
    assert seen["second_device_initial_events"] == 1
    assert seen["history_pages"] > 1
    assert seen["history_reached_start"]
    assert seen["history_first_type"] == "m.room.create"
    assert seen["history_messages"] == expected
    assert seen["history_ids_unique"]

    assert seen["redaction_seen"] == [seen["redaction_id"], alice, "js-sdk test"]
    assert seen["bob_local_event_redacted"]
    assert seen["fetched_content"] == {}
    assert seen["fetched_redacted_because"] == seen["redaction_id"]


async def test_js_sdk_clients_create_invite_join_talk_scroll_back_and_redact(
    homeserver_factory: Any, js_sdk: Path
) -> None:
    hs = await homeserver_factory.start(rc_message=NO_LIMIT)
    base_url = homeserver_factory.client(hs).base_url
    seen, log = await threads.deferToThread(_run_scenario, base_url, js_sdk)
    _check(seen, log, "test")


async def test_the_same_scenario_passes_against_synapse(
    synapse_venv: Path, js_sdk: Path, tmp_path: Path
) -> None:
    """The reference: what this test expects is what matrix-js-sdk sees from Synapse."""
    synapse = SynapseServer(tmp_path / "synapse", free_port(), ("sqlite3", {"database": str(tmp_path / "synapse.db")}))
    await threads.deferToThread(synapse.start)
    try:
        seen, log = await threads.deferToThread(_run_scenario, synapse.base_url, js_sdk)
    finally:
        await threads.deferToThread(synapse.stop)
    _check(seen, log, "localhost")
    assert not seen["pushrules_missing"]
