"""rotate_signing_key: the new key file, the kept copy, and an old_signing_keys block the server accepts."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from signedjson.key import encode_verify_key_base64, get_verify_key

from homeserver.config import HomeServerConfig
from homeserver.crypto.keys import read_signing_key_file, write_new_signing_key
from homeserver.scripts import rotate_signing_key as script

REPO = Path(__file__).resolve().parents[2]
NOW_MS = 1_700_000_000_000


def make_config(tmp_path: Path, **extra: object) -> Path:
    config = {
        "server_name": "example.com",
        "signing_key_path": "keys/example.com.signing.key",
        "listeners": [{"port": 8008, "resources": [{"names": ["client"]}]}],
        "database": {"name": "sqlite3", "args": {"database": "homeserver.db"}},
        **extra,
    }
    (tmp_path / "keys").mkdir()
    path = tmp_path / "homeserver.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def test_rotation_writes_a_new_key_keeps_the_old_and_prints_the_block(tmp_path: Path) -> None:
    key_path = tmp_path / "signing.key"
    old_key = write_new_signing_key(str(key_path), "a_old1")
    printed: list[str] = []
    old = script.rotate_signing_key(str(key_path), NOW_MS, version="a_new1", out=printed.append)

    (new_key,) = read_signing_key_file(str(key_path))
    assert new_key.version == "a_new1"
    assert stat.S_IMODE(os.stat(key_path).st_mode) == 0o600
    backup = tmp_path / "signing.key.old-a_old1"
    (kept,) = read_signing_key_file(str(backup))
    assert kept.encode() == old_key.encode()
    assert stat.S_IMODE(os.stat(backup).st_mode) == 0o600
    assert not (tmp_path / "signing.key.new").exists()

    entry = {"key": encode_verify_key_base64(get_verify_key(old_key)), "expired_ts": NOW_MS}
    assert old == {"ed25519:a_old1": entry}
    text = "\n".join(printed)
    assert "ed25519:a_old1" in text and "ed25519:a_new1" in text and str(backup) in text
    assert yaml.safe_load(printed[-1]) == {"old_signing_keys": {"ed25519:a_old1": entry}}


def test_printed_block_is_accepted_by_the_server_config(tmp_path: Path) -> None:
    key_path = tmp_path / "signing.key"
    write_new_signing_key(str(key_path), "a_old1")
    printed: list[str] = []
    script.rotate_signing_key(str(key_path), NOW_MS, out=printed.append)
    doc = {
        "server_name": "example.com",
        "signing_key_path": str(key_path),
        "listeners": [{"port": 8008, "resources": [{"names": ["client"]}]}],
        "database": {"name": "sqlite3", "args": {"database": "x.db"}},
        **yaml.safe_load(printed[-1]),
    }
    config = HomeServerConfig.from_dict(doc, str(tmp_path / "homeserver.yaml"))
    assert config.federation.old_signing_keys["ed25519:a_old1"].expired_ts == NOW_MS


def test_existing_old_keys_from_the_config_are_kept(tmp_path: Path) -> None:
    earlier = {"ed25519:a_prev": {"key": "x" * 43, "expired_ts": 1}}
    config_path = make_config(tmp_path, old_signing_keys=earlier)
    key_path, old = script.read_config(str(config_path))
    assert key_path == str(tmp_path / "keys" / "example.com.signing.key")
    write_new_signing_key(key_path, "a_cur1")
    printed: list[str] = []
    result = script.rotate_signing_key(key_path, NOW_MS, existing_old_keys=old, out=printed.append)
    assert set(result) == {"ed25519:a_prev", "ed25519:a_cur1"}
    assert (
        yaml.safe_load(printed[-1])["old_signing_keys"]["ed25519:a_prev"]
        == earlier["ed25519:a_prev"]
    )
    # A version already used (now or before) is refused.
    with pytest.raises(script.ScriptError, match="already used"):
        script.rotate_signing_key(key_path, NOW_MS, existing_old_keys=result, version="a_prev")


def test_nothing_changes_when_the_copy_cannot_be_kept(tmp_path: Path) -> None:
    key_path = tmp_path / "signing.key"
    write_new_signing_key(str(key_path), "a_old1")
    (tmp_path / "signing.key.old-a_old1").write_text("someone else's file")
    before = key_path.read_bytes()
    with pytest.raises(script.ScriptError, match="already exists"):
        script.rotate_signing_key(str(key_path), NOW_MS, out=lambda _: None)
    assert key_path.read_bytes() == before
    with pytest.raises(script.ScriptError):
        script.rotate_signing_key(str(tmp_path / "missing.key"), NOW_MS, out=lambda _: None)


def test_command_line(tmp_path: Path) -> None:
    """The wrapper in scripts/ runs from a source checkout, with -c."""
    config_path = make_config(tmp_path)
    key_path = tmp_path / "keys" / "example.com.signing.key"
    write_new_signing_key(str(key_path), "a_cli1")
    result = subprocess.run(
        [
            sys.executable,
            str(REPO / "scripts" / "rotate_signing_key"),
            "-c",
            str(config_path),
            "--key-version",
            "a_cli2",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert "old_signing_keys:" in result.stdout and '"ed25519:a_cli1":' in result.stdout
    assert read_signing_key_file(str(key_path))[0].version == "a_cli2"
    # Failing: a message on standard error, exit status 1.
    result = subprocess.run(
        [
            sys.executable,
            str(REPO / "scripts" / "rotate_signing_key"),
            "--signing-key-path",
            str(tmp_path / "nope.key"),
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1 and result.stderr.startswith("ERROR!")
