"""The config schema: what it accepts, the one-line errors it gives, and the sample's coverage."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from homeserver.config import ConfigError, HomeServerConfig, load_config
from homeserver.config._schema import option_paths
from homeserver.config.homeserver import SCHEMA
from homeserver.config.server import parse_size

REPO = Path(__file__).resolve().parents[2]
SAMPLE = REPO / "homeserver.yaml.sample"


def minimal() -> dict:
    return {
        "server_name": "example.com",
        "signing_key_path": "example.com.signing.key",
        "listeners": [{"port": 8008, "resources": [{"names": ["client"]}]}],
        "database": {"name": "sqlite3", "args": {"database": "homeserver.db"}},
    }


def errors_of(document: dict) -> list[str]:
    with pytest.raises(ConfigError) as info:
        HomeServerConfig.from_dict(document, "/etc/hs/homeserver.yaml")
    return info.value.lines


def test_minimal_config_gets_defaults_and_paths_relative_to_config_dir() -> None:
    config = HomeServerConfig.from_dict(minimal(), "/etc/hs/homeserver.yaml")
    assert config.server.server_name == "example.com"
    assert config.server.signing_key_path == "/etc/hs/example.com.signing.key"
    assert config.server.max_request_size == 50 * 1024 * 1024
    assert config.server.pid_file is None
    assert config.database.engine_name == "sqlite3"
    assert config.database.connect_args == {"database": "/etc/hs/homeserver.db"}
    assert (config.database.cp_min, config.database.cp_max) == (5, 10)
    listener = config.listeners.listeners[0]
    assert listener.bind_addresses == ("::1", "127.0.0.1")
    assert listener.resources == frozenset({"client"})
    assert listener.tls is False


def test_unknown_key_is_named() -> None:
    doc = minimal()
    doc["sever_name"] = "typo.example.com"
    assert errors_of(doc) == ["sever_name: unknown option"]


def test_unknown_nested_key_is_named_with_its_path() -> None:
    doc = minimal()
    doc["listeners"][0]["prot"] = 8448
    assert errors_of(doc) == ["listeners[0].prot: unknown option"]


def test_wrong_type_is_named() -> None:
    doc = minimal()
    doc["listeners"][0]["port"] = "eighty"
    assert errors_of(doc) == ["listeners[0].port: expected integer, got 'eighty'"]


def test_missing_required_value_is_named() -> None:
    doc = minimal()
    del doc["server_name"]
    assert errors_of(doc) == ["server_name: required option is missing"]


def test_every_problem_is_reported_at_once() -> None:
    doc = minimal()
    del doc["server_name"]
    doc["pid_file"] = 3
    assert sorted(errors_of(doc)) == [
        "pid_file: expected string or null, got 3",
        "server_name: required option is missing",
    ]


def test_bad_enum_value_lists_the_choices() -> None:
    doc = minimal()
    doc["listeners"][0]["resources"][0]["names"] = ["clients"]
    (line,) = errors_of(doc)
    assert line.startswith("listeners[0].resources[0].names[0]: 'clients' is not one of 'client'")


def test_sqlite_rejects_postgres_arguments() -> None:
    doc = minimal()
    doc["database"]["args"]["host"] = "localhost"
    (line,) = errors_of(doc)
    assert line.startswith("database.args: 'host' is not one of")


def test_postgres_arguments_pass_through_without_pool_sizes() -> None:
    doc = minimal()
    doc["database"] = {
        "name": "psycopg2",
        "args": {"user": "hs", "dbname": "hs", "host": "db", "sslmode": "require", "cp_max": 3},
    }
    config = HomeServerConfig.from_dict(doc, "/etc/hs/homeserver.yaml")
    assert config.database.connect_args == {
        "user": "hs",
        "dbname": "hs",
        "host": "db",
        "sslmode": "require",
    }
    # cp_max is never below cp_min.
    assert (config.database.cp_min, config.database.cp_max) == (5, 5)


def test_tls_listener_needs_certificate_and_key() -> None:
    doc = minimal()
    doc["listeners"][0]["tls"] = True
    assert errors_of(doc) == [
        "tls_certificate_path: required when a listener has tls: true",
        "tls_private_key_path: required when a listener has tls: true",
    ]


def test_invalid_server_name_is_refused() -> None:
    doc = minimal()
    doc["server_name"] = "not a host"
    assert errors_of(doc) == ["server_name: 'not a host' is not a valid server name"]


def test_wellknown_needs_public_baseurl() -> None:
    doc = minimal()
    doc["serve_server_wellknown"] = True
    assert errors_of(doc) == ["public_baseurl: required when a .well-known file is served"]


@pytest.mark.parametrize(
    ("text", "size"), [(1000, 1000), ("1000", 1000), ("10K", 10240), ("50M", 52428800), ("1G", 2**30)]
)
def test_sizes_take_binary_suffixes(text: int | str, size: int) -> None:
    assert parse_size(text) == size


def test_max_request_size_rejects_other_suffixes() -> None:
    doc = minimal()
    doc["max_request_size"] = "10MB"
    (line,) = errors_of(doc)
    assert line.startswith("max_request_size:")


def test_yaml_syntax_error_is_one_line(tmp_path: Path) -> None:
    path = tmp_path / "homeserver.yaml"
    path.write_text("server_name: [unclosed\n")
    with pytest.raises(ConfigError) as info:
        load_config(str(path))
    (line,) = info.value.lines
    assert "not valid YAML at line" in line


def test_sample_validates_as_written() -> None:
    config = load_config(str(SAMPLE))
    assert config.server.server_name == "example.com"
    assert config.listeners.listeners[0].port == 8008


def test_sample_mentions_every_option_the_code_reads() -> None:
    # Section models read every option by key after defaults are filled from the
    # schema, so an option the code reads is an option of the schema; here every
    # option of the schema must appear in the sample, set or commented out.
    text = SAMPLE.read_text()
    keys_in_sample = set(re.findall(r"^\s*#?\s*-?\s*([a-z_0-9]+):", text, flags=re.MULTILINE))
    missing = [
        path for path in option_paths(SCHEMA) if path.rsplit(".", 1)[-1] not in keys_in_sample
    ]
    assert missing == []


def test_sample_shows_the_real_defaults() -> None:
    # `#option: value` lines for top-level options show the schema's default.
    text = SAMPLE.read_text()
    shown = dict(re.findall(r"^#([a-z_]+): (.*)$", text, flags=re.MULTILINE))
    checked = 0
    for key, schema in SCHEMA["properties"].items():
        if key in shown and "default" in schema and schema["default"] is not None:
            assert yaml.safe_load(shown[key]) == schema["default"], key
            checked += 1
    assert checked >= 5


def test_code_reads_no_option_missing_from_the_schema() -> None:
    # Built from only the required options: a model reading an option that the
    # schema neither requires nor defaults would fail here with KeyError.
    required_only = {key: minimal()[key] for key in SCHEMA["required"]}
    HomeServerConfig.from_dict(required_only, "/etc/hs/homeserver.yaml")


def test_default_room_version_defaults_to_12_and_must_be_known() -> None:
    config = HomeServerConfig.from_dict(minimal(), "/etc/hs/homeserver.yaml")
    assert config.rooms.default_room_version.identifier == "12"
    doc = minimal()
    doc["default_room_version"] = "10"
    assert HomeServerConfig.from_dict(doc, "/x.yaml").rooms.default_room_version.identifier == "10"
    doc["default_room_version"] = "13"
    (line,) = errors_of(doc)
    assert line.startswith("default_room_version: '13' is not a room version this server knows")


def test_compress_is_read_per_resource_group() -> None:
    doc = minimal()
    doc["listeners"][0]["resources"] = [
        {"names": ["client"], "compress": True},
        {"names": ["federation", "metrics"]},
    ]
    listener = HomeServerConfig.from_dict(doc, "/x.yaml").listeners.listeners[0]
    assert listener.resources == frozenset({"client", "federation", "metrics"})
    assert listener.compressed_resources == frozenset({"client"})
