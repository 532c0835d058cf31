"""The benchmark's workload and runner, kept correct: a tiny run against our server only (both engines).

The real comparison with Synapse is `python -m benchmarks.rooms` (see
benchmarks/README.md); here the same code starts our server as a
subprocess, drives every step of the workload at toy sizes (each step checks
the server's answers) and reads the process's CPU time and peak RSS.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from benchmarks.rooms import ServerRun, format_table, free_port, measure_server, ratio
from benchmarks.servers import OurServer
from benchmarks.workload import Measurement, Sizes, percentile

TINY = Sizes(
    senders=2,
    messages=10,
    sync_rooms=2,
    messages_per_sync_room=2,
    latency_sends=3,
    pagination_pages=3,
    page_size=4,
    initial_sync_repeats=2,
)
EXPECTED_ROWS = {
    "register",
    "create_room",
    "join",
    "send_throughput",
    "latency_p50",
    "latency_p95",
    "initial_sync",
    "messages",
    "cpu",
    "rss",
    "startup",
}


def _database_block(db_config: tuple[str, dict[str, Any]]) -> tuple[str, dict[str, Any]]:
    engine_name, args = db_config
    args = dict(args)
    if "port" in args:
        args["port"] = int(args["port"])
    return engine_name, args


async def test_workload_runs_every_step_against_our_server(
    tmp_path: Path, db_config: tuple[str, dict[str, Any]], reactor: Any
) -> None:
    server = OurServer(tmp_path / "homeserver", free_port(), _database_block(db_config))
    run = await measure_server(reactor, server, TINY, log=lambda message: None)
    assert run.error is None, f"{run.error}\n{server.output()[-3000:]}"
    assert {m.key for m in run.measurements} == EXPECTED_ROWS
    assert all(m.value > 0 for m in run.measurements), run.measurements
    assert server.process is not None and server.process.poll() is not None  # stopped
    table = format_table([run], "smoke")
    assert "send, 2 concurrent senders" in table and "synapse" in table


def test_ratio_is_above_one_when_we_do_better() -> None:
    fast, slow = Measurement("t", "time", 10.0, "ms"), Measurement("t", "time", 20.0, "ms")
    assert ratio(fast, slow) == 2.0 and ratio(slow, fast) == 0.5
    more = Measurement("r", "rate", 30.0, "events/s", higher_is_better=True)
    less = Measurement("r", "rate", 10.0, "events/s", higher_is_better=True)
    assert ratio(more, less) == 3.0 and ratio(less, more) == 1 / 3


def test_table_shows_both_servers_and_a_failed_run() -> None:
    ours = ServerRun("homeserver", [Measurement("t", "a time", 5.0, "ms")])
    theirs = ServerRun("synapse", [], error="UnexpectedResponse: GET /sync -> 404")
    table = format_table([ours, theirs], "title")
    assert "5.0 ms" in table
    assert "synapse did not finish: UnexpectedResponse: GET /sync -> 404" in table


def test_percentile_is_nearest_rank() -> None:
    samples = [float(i) for i in range(1, 201)]
    assert percentile(samples, 0.95) == 190.0
    assert percentile(samples, 0.5) == 100.0
    assert percentile([7.0], 0.95) == 7.0


def test_profile_summary_counts_self_and_inclusive_samples() -> None:
    from benchmarks.profile_summary import summarize

    text = (
        "run (twisted/base.py:10);handle (homeserver/api/http.py:5);query (storage.py:7) 30\n"
        "run (twisted/base.py:10);handle (homeserver/api/http.py:9) 10\n"
        "run (twisted/base.py:12) 60\n"
    )
    total, own, inclusive = summarize(text)
    assert total == 100
    assert own["query (storage.py)"] == 30 and own["run (twisted/base.py)"] == 60
    assert inclusive["handle (homeserver/api/http.py)"] == 40
    assert inclusive["run (twisted/base.py)"] == 100
