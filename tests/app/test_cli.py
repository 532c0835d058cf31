"""The `homeserver` command: options, writing a first config, and refusing bad configs."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import yaml

from homeserver import __version__
from homeserver.crypto.keys import read_signing_key_file


def homeserver(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "homeserver", *args],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=cwd,
    )


def test_version_prints_the_version() -> None:
    result = homeserver("--version")
    assert result.returncode == 0
    assert result.stdout.strip() == f"homeserver {__version__}"


def test_help_lists_the_options() -> None:
    result = homeserver("--help")
    assert result.returncode == 0
    for option in (
        "--config-path",
        "--generate-config",
        "--server-name",
        "--report-stats",
        "--generate-tls-cert",
        "--version",
    ):
        assert option in result.stdout


def test_generate_config_writes_config_log_config_and_key_without_starting(tmp_path: Path) -> None:
    config_path = tmp_path / "hs" / "homeserver.yaml"
    result = homeserver(
        "--generate-config", "-c", str(config_path), "-H", "example.org", "--report-stats=no"
    )
    assert result.returncode == 0, result.stderr
    config = yaml.safe_load(config_path.read_text())
    assert config["server_name"] == "example.org"
    assert config["listeners"][0]["port"] == 8008
    assert config["listeners"][0]["bind_addresses"] == ["127.0.0.1"]
    assert config["listeners"][0]["resources"][0]["names"] == ["client", "federation"]
    assert config["database"] == {
        "name": "sqlite3",
        "args": {"database": str(tmp_path / "hs" / "homeserver.db")},
    }
    key_path = Path(config["signing_key_path"])
    assert key_path.parent == tmp_path / "hs"
    (key,) = read_signing_key_file(str(key_path))
    assert key.alg == "ed25519"
    assert (key_path.stat().st_mode & 0o777) == 0o600
    assert Path(config["log_config"]).exists()
    assert str(config_path) in result.stdout and str(key_path) in result.stdout
    # Nothing was started: no database file.
    assert not (tmp_path / "hs" / "homeserver.db").exists()


def test_generate_config_refuses_to_overwrite(tmp_path: Path) -> None:
    config_path = tmp_path / "homeserver.yaml"
    config_path.write_text("server_name: mine\n")
    result = homeserver("--generate-config", "-c", str(config_path), "-H", "example.org")
    assert result.returncode == 1
    assert "already exists" in result.stderr
    assert config_path.read_text() == "server_name: mine\n"


def test_generate_config_needs_a_server_name(tmp_path: Path) -> None:
    result = homeserver("--generate-config", "-c", str(tmp_path / "homeserver.yaml"))
    assert result.returncode == 1
    assert "server name" in result.stderr
    assert not (tmp_path / "homeserver.yaml").exists()


def _config_error(tmp_path: Path, change: dict) -> subprocess.CompletedProcess[str]:
    config_path = tmp_path / "homeserver.yaml"
    document = {
        "server_name": "example.org",
        "signing_key_path": "key",
        "listeners": [{"port": 8008, "resources": [{"names": ["client"]}]}],
        "database": {"name": "sqlite3", "args": {"database": "hs.db"}},
    }
    document.update(change)
    document = {k: v for k, v in document.items() if v is not None}
    config_path.write_text(yaml.safe_dump(document))
    return homeserver("-c", str(config_path))


def test_unknown_option_stops_the_start_with_one_line(tmp_path: Path) -> None:
    result = _config_error(tmp_path, {"enable_registraton": True})
    assert result.returncode == 1
    assert result.stderr.splitlines() == [
        f"homeserver: config error in {tmp_path / 'homeserver.yaml'}: enable_registraton: unknown option"
    ]
    assert not (tmp_path / "hs.db").exists()


def test_wrong_type_stops_the_start_with_one_line(tmp_path: Path) -> None:
    result = _config_error(tmp_path, {"max_request_size": [1]})
    assert result.returncode == 1
    (line,) = result.stderr.splitlines()
    assert line.endswith("max_request_size: expected integer or string, got [1]")


def test_missing_value_stops_the_start_with_one_line(tmp_path: Path) -> None:
    result = _config_error(tmp_path, {"server_name": None})
    assert result.returncode == 1
    (line,) = result.stderr.splitlines()
    assert line.endswith("server_name: required option is missing")
    assert "Traceback" not in result.stderr


def test_generate_tls_cert_writes_a_pair_at_the_configured_paths(tmp_path: Path) -> None:
    from cryptography import x509

    cert_path, key_path = tmp_path / "tls.crt", tmp_path / "tls.key"
    paths = {"tls_certificate_path": str(cert_path), "tls_private_key_path": str(key_path)}
    config_path = tmp_path / "homeserver.yaml"
    config_path.write_text(
        yaml.safe_dump(
            {
                "server_name": "fed.example.org:8448",
                "signing_key_path": str(tmp_path / "signing.key"),
                "listeners": [{"port": 8448, "tls": True, "resources": [{"names": ["federation"]}]}],
                "database": {"name": "sqlite3", "args": {"database": "hs.db"}},
                **paths,
            }
        )
    )
    result = homeserver("--generate-tls-cert", "-c", str(config_path))
    assert result.returncode == 0, result.stderr
    assert str(cert_path) in result.stdout and str(key_path) in result.stdout
    cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
    names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert "fed.example.org" in names.get_values_for_type(x509.DNSName)
    assert (key_path.stat().st_mode & 0o777) == 0o600
    assert not (tmp_path / "hs.db").exists()  # nothing was started

    again = homeserver("--generate-tls-cert", "-c", str(config_path))
    assert again.returncode == 1
    assert again.stderr.splitlines() == [f"homeserver: {cert_path} already exists; not overwriting it"]


def test_generate_tls_cert_needs_the_paths_in_the_config(tmp_path: Path) -> None:
    config_path = tmp_path / "homeserver.yaml"
    config_path.write_text(
        yaml.safe_dump(
            {
                "server_name": "example.org",
                "signing_key_path": str(tmp_path / "signing.key"),
                "listeners": [{"port": 8008, "resources": [{"names": ["client"]}]}],
                "database": {"name": "sqlite3", "args": {"database": "hs.db"}},
            }
        )
    )
    result = homeserver("--generate-tls-cert", "-c", str(config_path))
    assert result.returncode == 1
    (line,) = result.stderr.splitlines()
    assert "tls_certificate_path and tls_private_key_path" in line
