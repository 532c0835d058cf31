"""Writing a first config: the YAML file, a log config and a signing key.

Used by `homeserver --generate-config` and by a first start whose config file
does not exist yet. The written config is short; homeserver.yaml.sample and
docs/config.md document every option.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import yaml

from homeserver.crypto.keys import write_new_signing_key

LOG_CONFIG_TEMPLATE = """\
# Python logging config (logging.config.dictConfig). Re-read on SIGHUP.
version: 1

formatters:
  precise:
    format: '%(asctime)s - %(name)s - %(lineno)d - %(levelname)s - %(request)s - %(message)s'

handlers:
  file:
    class: logging.handlers.TimedRotatingFileHandler
    formatter: precise
    filename: {log_file}
    when: midnight
    backupCount: 3
    encoding: utf8
  console:
    class: logging.StreamHandler
    formatter: precise

loggers:
  homeserver.storage.sql:
    level: INFO

root:
  level: INFO
  handlers: [file, console]

disable_existing_loggers: false
"""


@dataclass(frozen=True, slots=True)
class GeneratedFiles:
    config_path: str
    log_config_path: str | None
    signing_key_path: str | None


def default_config(server_name: str, config_dir: str) -> dict[str, object]:
    """The config written on first start: everything beside the config file."""
    base = server_name.replace(":", "_")
    return {
        "server_name": server_name,
        "signing_key_path": os.path.join(config_dir, f"{base}.signing.key"),
        "pid_file": os.path.join(config_dir, "homeserver.pid"),
        "media_store_path": os.path.join(config_dir, "media_store"),
        "log_config": os.path.join(config_dir, f"{base}.log.config"),
        "listeners": [
            {
                "port": 8008,
                "bind_addresses": ["127.0.0.1"],
                "type": "http",
                "tls": False,
                "x_forwarded": False,
                "resources": [{"names": ["client", "federation"], "compress": False}],
            }
        ],
        "database": {
            "name": "sqlite3",
            "args": {"database": os.path.join(config_dir, "homeserver.db")},
        },
    }


def generate_config(config_path: str, server_name: str) -> GeneratedFiles:
    """Write the config at `config_path` and, where missing, its log config and signing key."""
    config_path = os.path.abspath(config_path)
    config_dir = os.path.dirname(config_path)
    os.makedirs(config_dir, exist_ok=True)
    config = default_config(server_name, config_dir)

    header = (
        f"# Homeserver config for {server_name}, written by `homeserver --generate-config`.\n"
        "# Every option is described in homeserver.yaml.sample and docs/config.md.\n\n"
    )
    with open(config_path, "x", encoding="utf-8") as f:
        f.write(header)
        yaml.safe_dump(config, f, sort_keys=False, default_flow_style=False)

    log_config_path = str(config["log_config"])
    wrote_log_config: str | None = None
    if not os.path.exists(log_config_path):
        log_file = os.path.join(config_dir, "homeserver.log")
        with open(log_config_path, "x", encoding="utf-8") as f:
            f.write(LOG_CONFIG_TEMPLATE.format(log_file=log_file))
        wrote_log_config = log_config_path

    key_path = str(config["signing_key_path"])
    wrote_key: str | None = None
    if not os.path.exists(key_path):
        write_new_signing_key(key_path)
        wrote_key = key_path

    return GeneratedFiles(config_path, wrote_log_config, wrote_key)
