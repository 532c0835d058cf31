"""Run the rooms workload against this homeserver and against Synapse, and print both side by side.

    python -m benchmarks.rooms [--engine sqlite|postgres] [--servers homeserver,synapse]
                               [--senders 20] [--messages 1000] [--sync-rooms 50]
                               [--latency-sends 200] [--json FILE] [--keep]
                               [--profile DIR [--py-spy PATH]]

The servers run one after the other (never together: they would share the
machine's cores), each as a subprocess on a free loopback port with a fresh
database of the chosen engine. See benchmarks/README.md for what each row
measures.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import traceback
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from twisted.internet import defer, task

from benchmarks.servers import (
    DatabaseArgs,
    OurServer,
    PostgresDatabases,
    ServerUnderTest,
    SynapseServer,
)
from benchmarks.workload import Measurement, Sizes, run_workload

SERVERS = {"homeserver": OurServer, "synapse": SynapseServer}
DEFAULT_POSTGRES = "host=127.0.0.1 port=5432 user=postgres dbname=postgres"


@dataclass
class ServerRun:
    server: str
    measurements: list[Measurement] = field(default_factory=list)
    error: str | None = None

    def get(self, key: str) -> Measurement | None:
        return next((m for m in self.measurements if m.key == key), None)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def measure_server(
    reactor: Any,
    server: ServerUnderTest,
    sizes: Sizes,
    log: Any = print,
    profile_to: Path | None = None,
    py_spy: str = "py-spy",
) -> ServerRun:
    """Start `server`, run the workload, add its startup time, CPU time and peak RSS; always stop it.

    With `profile_to`, py-spy samples the server during the workload and
    writes its stacks there (collapsed-stack text, one line per stack with
    its sample count).
    """
    run = ServerRun(server.name)
    profiler: subprocess.Popen[bytes] | None = None
    try:
        started = time.perf_counter()
        server.start()
        startup = time.perf_counter() - started
        cpu_before = server.cpu_seconds()
        if profile_to is not None:
            profiler = subprocess.Popen(
                [py_spy, "record", "--pid", str(server.pid), "--format", "raw", "--rate", "200",
                 "--output", str(profile_to)],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
        results = await run_workload(
            reactor, server.base_url, sizes, progress=lambda m: log(f"  [{server.name}] {m}")
        )
        if profiler is not None:
            profiler.send_signal(signal.SIGINT)  # py-spy writes its output when interrupted
            profiler.wait(timeout=60)
            log(f"  [{server.name}] profile written to {profile_to}")
        run.measurements = list(results.measurements)
        run.measurements.append(
            Measurement("cpu", "server CPU time for the workload", server.cpu_seconds() - cpu_before, "s")
        )
        run.measurements.append(Measurement("rss", "peak RSS (VmHWM)", server.peak_rss_mib(), "MiB"))
        run.measurements.append(Measurement("startup", "start until /versions answers", startup, "s"))
    except Exception as e:  # one server failing must still let the other be measured
        run.error = f"{type(e).__name__}: {e}"
        log(f"  [{server.name}] FAILED: {run.error}")
        log(traceback.format_exc())
    finally:
        if profiler is not None and profiler.poll() is None:
            profiler.kill()
            profiler.wait()
        server.stop()
    return run


def ratio(ours: Measurement, theirs: Measurement) -> float:
    """> 1 when this server does better: faster, more throughput, less memory."""
    if ours.higher_is_better:
        return ours.value / theirs.value if theirs.value else float("inf")
    return theirs.value / ours.value if ours.value else float("inf")


def format_table(runs: list[ServerRun], title: str) -> str:
    by_name = {run.server: run for run in runs}
    ours, theirs = by_name.get("homeserver"), by_name.get("synapse")
    keys: list[tuple[str, str, str]] = []
    for run in runs:
        for m in run.measurements:
            if m.key not in [k for k, _, _ in keys]:
                keys.append((m.key, m.label, m.unit))
    lines = [title, "ratio > 1 means this homeserver does better (faster, more events/s, less memory)", ""]
    header = f"{'metric':<40} {'homeserver':>14} {'synapse':>14} {'ratio':>8}"
    lines += [header, "-" * len(header)]

    def cell(run: ServerRun | None, key: str, unit: str) -> str:
        m = run.get(key) if run else None
        return f"{m.value:,.1f} {unit}" if m else "-"

    for key, label, unit in keys:
        mine = ours.get(key) if ours else None
        other = theirs.get(key) if theirs else None
        r = f"{ratio(mine, other):.2f}" if mine and other else "-"
        lines.append(f"{label:<40} {cell(ours, key, unit):>14} {cell(theirs, key, unit):>14} {r:>8}")
    for run in runs:
        if run.error:
            lines.append(f"\n{run.server} did not finish: {run.error}")
    return "\n".join(lines)


def _parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.rooms", description=__doc__.split("\n")[0])
    parser.add_argument("--engine", choices=["sqlite", "postgres"], default="sqlite")
    parser.add_argument(
        "--postgres",
        default=os.environ.get("HOMESERVER_TEST_POSTGRES", "").strip() or DEFAULT_POSTGRES,
        help="libpq DSN of a PostgreSQL server where databases may be created",
    )
    parser.add_argument("--servers", default="homeserver,synapse", help="comma-separated, in run order")
    defaults = Sizes()
    parser.add_argument("--senders", type=int, default=defaults.senders)
    parser.add_argument("--messages", type=int, default=defaults.messages)
    parser.add_argument("--sync-rooms", type=int, default=defaults.sync_rooms)
    parser.add_argument("--latency-sends", type=int, default=defaults.latency_sends)
    parser.add_argument("--json", metavar="FILE", help="also write the figures as JSON")
    parser.add_argument("--keep", action="store_true", help="keep the servers' directories and logs")
    parser.add_argument(
        "--profile",
        metavar="DIR",
        help="sample each server with py-spy during the workload; stacks go to DIR/<server>.txt",
    )
    parser.add_argument("--py-spy", default="py-spy", help="the py-spy executable (for --profile)")
    args = parser.parse_args(argv)
    unknown = set(args.servers.split(",")) - set(SERVERS)
    if unknown:
        parser.error(f"unknown servers: {', '.join(sorted(unknown))} (known: {', '.join(SERVERS)})")
    return args


async def _main(reactor: Any, args: argparse.Namespace) -> None:
    sizes = Sizes(
        senders=args.senders,
        messages=args.messages,
        sync_rooms=args.sync_rooms,
        latency_sends=args.latency_sends,
    )
    workdir = Path(tempfile.mkdtemp(prefix="homeserver-bench-"))
    postgres = PostgresDatabases(args.postgres) if args.engine == "postgres" else None
    runs: list[ServerRun] = []
    try:
        for name in args.servers.split(","):
            directory = workdir / name
            directory.mkdir()
            database: DatabaseArgs
            if postgres is not None:
                database = postgres.create()
            else:
                database = ("sqlite3", {"database": str(directory / "homeserver.db")})
            print(f"{name}: preparing in {directory}", flush=True)
            server = SERVERS[name](directory, free_port(), database)
            profile_to = Path(args.profile) / f"{name}.txt" if args.profile else None
            if profile_to is not None:
                profile_to.parent.mkdir(parents=True, exist_ok=True)
            runs.append(
                await measure_server(
                    reactor,
                    server,
                    sizes,
                    log=lambda m: print(m, flush=True),
                    profile_to=profile_to,
                    py_spy=args.py_spy,
                )
            )
    finally:
        if postgres is not None:
            postgres.drop_all()
        if args.keep:
            print(f"kept {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    title = (
        f"Rooms workload on {args.engine}, {os.cpu_count()} cores: {sizes.senders} senders,"
        f" {sizes.messages} messages, {sizes.sync_rooms} rooms, {sizes.latency_sends} pings"
    )
    print()
    print(format_table(runs, title))
    if args.json:
        Path(args.json).write_text(
            json.dumps({"title": title, "sizes": asdict(sizes), "runs": [asdict(r) for r in runs]}, indent=2)
        )
    if any(run.error for run in runs):
        raise SystemExit(1)


def main(argv: list[str] | None = None) -> None:
    args = _parse_args(sys.argv[1:] if argv is None else argv)
    task.react(lambda reactor: defer.ensureDeferred(_main(reactor, args)))


if __name__ == "__main__":
    main()
