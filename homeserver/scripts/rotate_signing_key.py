"""`rotate_signing_key`: replace the server's signing key, keeping the old one verifiable.

    rotate_signing_key -c homeserver.yaml
    rotate_signing_key --signing-key-path /etc/hs/example.com.signing.key

The current key file is kept as `<signing_key_path>.old-<version>` (never
overwritten), a new key is written in its place (atomically, readable by the
owner only), and the `old_signing_keys` block to put in the config is
printed: the retired key(s) with `expired_ts` set to now, merged with the
`old_signing_keys` the config already has. The config file itself is not
edited (comments and layout are the operator's); the new key is used, and
the old one published under `old_verify_keys`, once the server restarts.

Other servers keep accepting the old key for what it signed before
`expired_ts`, so events signed with it stay verifiable.
"""

from __future__ import annotations

import argparse
import os
import secrets
import string
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any

import yaml
from signedjson.key import (
    encode_verify_key_base64,
    generate_signing_key,
    get_verify_key,
    write_signing_keys,
)

from homeserver.crypto.keys import SigningKeyError, key_id, read_signing_key_file


class ScriptError(Exception):
    """A problem to print (to standard error) before exiting with status 1."""


def _new_version(taken: set[str]) -> str:
    alphabet = string.ascii_letters + string.digits
    while True:
        version = "a_" + "".join(secrets.choice(alphabet) for _ in range(4))
        if version not in taken:
            return version


def read_config(path: str) -> tuple[str, dict[str, Any]]:
    """(the signing key path, resolved like the server resolves it; old_signing_keys) of a config."""
    try:
        with open(path, encoding="utf-8") as f:
            document = yaml.safe_load(f)
    except OSError as e:
        raise ScriptError(f"{path}: cannot read the config file: {e.strerror}") from e
    except yaml.YAMLError as e:
        raise ScriptError(f"{path}: not valid YAML: {e}") from e
    if not isinstance(document, dict) or not isinstance(document.get("signing_key_path"), str):
        raise ScriptError(f"{path}: no signing_key_path in the config")
    base = os.path.dirname(os.path.abspath(path))
    key_path = os.path.normpath(
        os.path.join(base, os.path.expanduser(document["signing_key_path"]))
    )
    old = document.get("old_signing_keys") or {}
    if not isinstance(old, dict):
        raise ScriptError(f"{path}: old_signing_keys is not a mapping")
    return key_path, old


def format_old_signing_keys(entries: dict[str, dict[str, Any]]) -> str:
    """The `old_signing_keys:` YAML block, one key per entry, in key ID order."""
    lines = ["old_signing_keys:"]
    for kid in sorted(entries):
        entry = entries[kid]
        lines.append(f'  "{kid}":')
        lines.append(f'    key: "{entry["key"]}"')
        lines.append(f"    expired_ts: {int(entry['expired_ts'])}")
    return "\n".join(lines) + "\n"


def rotate_signing_key(
    key_path: str,
    now_ms: int,
    *,
    existing_old_keys: dict[str, Any] | None = None,
    version: str | None = None,
    out: Callable[[str], None] = print,
) -> dict[str, dict[str, Any]]:
    """Retire the keys in `key_path`, write a new one there; returns the old_signing_keys to use.

    Raises ScriptError (nothing changed) if the key file cannot be read, the
    backup cannot be written or `version` is already used.
    """
    try:
        current = read_signing_key_file(key_path)
    except SigningKeyError as e:
        raise ScriptError(str(e)) from e
    old = dict(existing_old_keys or {})
    taken = {key.version for key in current} | {k.partition(":")[2] for k in old}
    if version is None:
        version = _new_version(taken)
    elif version in taken:
        raise ScriptError(f"key version {version!r} is already used")

    backup = f"{key_path}.old-{current[-1].version}"
    try:
        with open(key_path, "rb") as f:
            content = f.read()
        fd = os.open(backup, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(content)
    except FileExistsError:
        raise ScriptError(f"{backup} already exists; move it away first") from None
    except OSError as e:
        raise ScriptError(f"cannot keep a copy of the key file in {backup}: {e.strerror}") from e

    new_key = generate_signing_key(version)
    temporary = f"{key_path}.new"
    try:
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            write_signing_keys(f, [new_key])
        os.replace(temporary, key_path)
    except OSError as e:
        raise ScriptError(f"cannot write the new key to {key_path}: {e.strerror}") from e

    for key in current:
        old[key_id(key)] = {
            "key": encode_verify_key_base64(get_verify_key(key)),
            "expired_ts": now_ms,
        }
    retired = ", ".join(key_id(key) for key in current)
    out(
        f"The signing key {retired} was replaced with a new key, {key_id(new_key)}, in {key_path}.\n"
        f"A copy of the old key file is in {backup}.\n"
        "\n"
        "Put this old_signing_keys block in the server's config (in place of any\n"
        "old_signing_keys block already there), then restart the server. Until then\n"
        "the server does not use the new key.\n"
    )
    out(format_old_signing_keys(old))
    return old


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="rotate_signing_key",
        description="Replace the homeserver's signing key with a new one, and print the"
        " old_signing_keys entry that keeps the old key verifiable.",
    )
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument(
        "-c", "--config-path", help="The server's config file (signing_key_path is read from it)."
    )
    source.add_argument("--signing-key-path", help="The signing key file, if no config is given.")
    parser.add_argument(
        "--key-version", help="The new key's version (default: 'a_' and four random characters)."
    )
    return parser


def main(argv: Sequence[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    try:
        if args.config_path:
            key_path, old = read_config(args.config_path)
        else:
            key_path, old = args.signing_key_path, {}
        # A command-line tool: the wall clock is the right clock here.
        rotate_signing_key(
            key_path, int(time.time() * 1000), existing_old_keys=old, version=args.key_version
        )
    except ScriptError as e:
        print(f"ERROR! {e}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
