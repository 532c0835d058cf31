"""The `homeserver` command: write a first config, start the server, handle signals.

    homeserver -c homeserver.yaml            start (writing the config and key first if missing)
    homeserver --generate-config -c FILE -H SERVER_NAME [--report-stats=no]
    homeserver --generate-tls-cert -c FILE   write a self-signed TLS pair at the config's paths
    homeserver --version

Signals: SIGHUP re-reads the log config and the TLS certificate and key; SIGTERM and SIGINT stop accepting
connections, let requests in flight finish (bounded), close the database and
exit 0. Any problem that stops the start is printed as one line on standard
error, with exit code 1.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import time
from collections.abc import Sequence
from typing import Any

from homeserver import __version__
from homeserver.config import ConfigError, HomeServerConfig, load_config
from homeserver.config.generate import generate_config
from homeserver.logs import LogConfigError, setup_logging

logger = logging.getLogger("homeserver.app")

# How long shutdown waits for requests in flight before closing anyway.
SHUTDOWN_DRAIN_SECONDS = 10.0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="homeserver",
        description="A Matrix homeserver. Starts with the given config, writing one first if it does not exist.",
    )
    parser.add_argument(
        "-c", "--config-path", required=False, metavar="FILE", help="the config file (YAML)"
    )
    parser.add_argument(
        "--generate-config",
        action="store_true",
        help="write a config file, log config and signing key, then exit",
    )
    parser.add_argument(
        "-H",
        "--server-name",
        metavar="NAME",
        help="the server name for a new config (default: localhost)",
    )
    parser.add_argument(
        "--report-stats",
        choices=["yes", "no"],
        help="accepted for compatibility with Synapse's tooling; this server never reports statistics",
    )
    parser.add_argument(
        "--generate-tls-cert",
        action="store_true",
        help="write a self-signed TLS certificate and key at the config's tls_certificate_path"
        " and tls_private_key_path (for testing federation), then exit",
    )
    parser.add_argument("--version", action="version", version=f"homeserver {__version__}")
    return parser


def _fail(message: str) -> int:
    print(f"homeserver: {message}", file=sys.stderr)
    return 1


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if not args.config_path:
        return _fail("a config file is required: homeserver -c homeserver.yaml")

    if args.generate_config:
        if not args.server_name:
            return _fail("--generate-config needs the server name: -H example.com")
        if os.path.exists(args.config_path):
            return _fail(f"{args.config_path} already exists; not overwriting it")
        written = generate_config(args.config_path, args.server_name)
        _report_written(written)
        return 0

    if not os.path.exists(args.config_path):
        written = generate_config(args.config_path, args.server_name or "localhost")
        _report_written(written)

    try:
        config = load_config(args.config_path)
    except ConfigError as e:
        for line in e.lines:
            print(f"homeserver: config error in {args.config_path}: {line}", file=sys.stderr)
        return 1
    if args.generate_tls_cert:
        return _generate_tls_cert(config)
    try:
        setup_logging(config.logging.log_config)
    except LogConfigError as e:
        return _fail(str(e))
    return run(config)


def _generate_tls_cert(config: HomeServerConfig) -> int:
    from homeserver.crypto.tls import generate_self_signed_cert

    cert_path = config.listeners.tls_certificate_path
    key_path = config.listeners.tls_private_key_path
    if not cert_path or not key_path:
        return _fail(
            "--generate-tls-cert needs tls_certificate_path and tls_private_key_path in the config"
        )
    for path in (cert_path, key_path):
        if os.path.exists(path):
            return _fail(f"{path} already exists; not overwriting it")
    try:
        generate_self_signed_cert(cert_path, key_path, config.server.server_name)
    except OSError as e:
        return _fail(f"cannot write the TLS certificate: {e}")
    print(f"Wrote a self-signed TLS certificate to {cert_path}")
    print(f"Wrote its private key to {key_path}")
    return 0


def _report_written(written: Any) -> None:
    print(f"Wrote the config to {written.config_path}")
    if written.log_config_path:
        print(f"Wrote the log config to {written.log_config_path}")
    if written.signing_key_path:
        print(f"Wrote a new signing key to {written.signing_key_path}")


def run(config: HomeServerConfig) -> int:
    """Start the server on the global reactor and run until stopped; the process exit code."""
    from twisted.internet import defer, reactor

    from homeserver.server import HomeServer, StartupError
    from homeserver.storage.errors import StorageStartupError

    _measure_reactor_ticks(reactor)
    exit_code = 0
    try:
        hs = HomeServer(config, reactor)
    except Exception as e:
        return _fail(str(e))

    async def start() -> None:
        nonlocal exit_code
        try:
            await hs.start()
        except (StartupError, StorageStartupError) as e:
            exit_code = _fail(str(e))
            reactor.stop()
            return
        except Exception:
            logger.exception("Failed to start")
            exit_code = 1
            reactor.stop()
            return
        _write_pid_file(config.server.pid_file)
        logger.info("Server %s started (version %s)", config.server.server_name, __version__)

    async def shutdown() -> None:
        nonlocal exit_code
        logger.info("Shutting down")
        try:
            await hs.stop(SHUTDOWN_DRAIN_SECONDS)
        except Exception:
            logger.exception("Error while shutting down")
            exit_code = 1
        _remove_pid_file(config.server.pid_file)

    def on_sighup(signum: int, frame: Any) -> None:
        reactor.callFromThread(_reload_logging, config)
        reactor.callFromThread(hs.reload_tls)

    signal.signal(signal.SIGHUP, on_sighup)
    reactor.callWhenRunning(lambda: defer.ensureDeferred(start()))
    reactor.addSystemEventTrigger("before", "shutdown", lambda: defer.ensureDeferred(shutdown()))
    # Twisted's own handlers turn SIGTERM and SIGINT into reactor.stop(), which runs shutdown().
    reactor.run()
    return exit_code


def _reload_logging(config: HomeServerConfig) -> None:
    try:
        setup_logging(config.logging.log_config)
    except LogConfigError as e:
        logger.error("Not reloading the log config: %s", e)
        return
    logger.info("Reloaded the log config from %s", config.logging.log_config)


def _write_pid_file(path: str | None) -> None:
    if path:
        with open(path, "w", encoding="ascii") as f:
            f.write(f"{os.getpid()}\n")


def _remove_pid_file(path: str | None) -> None:
    if path:
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass


def _measure_reactor_ticks(reactor: Any) -> None:
    """Record how long each run of the reactor's scheduled calls takes."""
    from homeserver.metrics import REACTOR_TICK_DURATION

    run_until_current = reactor.runUntilCurrent

    def timed_run_until_current(*args: Any, **kwargs: Any) -> Any:
        start = time.perf_counter()
        try:
            return run_until_current(*args, **kwargs)
        finally:
            REACTOR_TICK_DURATION.observe(time.perf_counter() - start)

    reactor.runUntilCurrent = timed_run_until_current


if __name__ == "__main__":
    sys.exit(main())
