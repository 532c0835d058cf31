"""`register_new_matrix_user`: create a user through shared-secret registration.

The command-line tool operators know from Synapse, with its options: it reads
the shared secret from the server's config (`-c homeserver.yaml`, the
`registration_shared_secret` or `registration_shared_secret_path` option) or
takes it with `-k`, fetches a nonce from `/_synapse/admin/v1/register`, and
posts the new user's details with their MAC. Missing username, password or
admin choice are asked for on the terminal.

    register_new_matrix_user -c homeserver.yaml -u alice -p secret --no-admin
    register_new_matrix_user -k SECRET -u admin -a https://matrix.example.com

The server URL comes from the command line, else from the first plain-HTTP
listener serving `client` in the config, else http://localhost:8008. Standard
library and PyYAML only, so it runs wherever the server's config can be read.
"""

from __future__ import annotations

import argparse
import getpass
import json
import os
import sys
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from typing import Any

import yaml

from homeserver.handlers.admin_register_mac import registration_mac

DEFAULT_SERVER_URL = "http://localhost:8008"
REGISTER_PATH = "/_synapse/admin/v1/register"
HTTP_TIMEOUT_SECONDS = 30


class ScriptError(Exception):
    """A problem to print (to standard error) before exiting with status 1."""


def _http(url: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
    """GET (or POST `body` as JSON to) `url`; the JSON answer, or HTTPError for a non-2xx."""
    data = None if body is None else json.dumps(body).encode("utf-8")
    request = urllib.request.Request(url, data=data, method="GET" if body is None else "POST")
    if data is not None:
        request.add_header("Content-Type", "application/json")
    with urllib.request.urlopen(request, timeout=HTTP_TIMEOUT_SECONDS) as response:
        answer = json.loads(response.read().decode("utf-8"))
    if not isinstance(answer, dict):
        raise ScriptError(f"Unexpected answer from {url}: {answer!r}")
    return answer


def _error_body(error: urllib.error.HTTPError) -> dict[str, Any]:
    try:
        body = json.loads(error.read().decode("utf-8"))
    except (ValueError, UnicodeDecodeError, OSError):
        return {}
    return body if isinstance(body, dict) else {}


def _describe(error: urllib.error.HTTPError, body: dict[str, Any]) -> str:
    text = f"ERROR! Received {error.code} {error.reason}"
    if 400 <= error.code < 500 and isinstance(body.get("error"), str):
        text += f"\n{body['error']}"
    return text


def request_registration(
    user: str,
    password: str,
    server_url: str,
    shared_secret: str,
    admin: bool = False,
    user_type: str | None = None,
    *,
    exists_ok: bool = False,
    out: Callable[[str], None] = print,
) -> dict[str, Any] | None:
    """Register `user`; returns the server's answer (None if it existed and exists_ok).

    Raises ScriptError describing any failure.
    """
    url = server_url.rstrip("/") + REGISTER_PATH
    try:
        nonce = _http(url)["nonce"]
    except urllib.error.HTTPError as e:
        raise ScriptError(_describe(e, _error_body(e))) from e
    except (urllib.error.URLError, OSError, ValueError, KeyError) as e:
        raise ScriptError(f"ERROR! Could not get a nonce from {url}: {e}") from e

    body = {
        "nonce": nonce,
        "username": user,
        "password": password,
        "mac": registration_mac(shared_secret, nonce, user, password, admin, user_type),
        "admin": admin,
        "user_type": user_type,
    }
    out("Sending registration request...")
    try:
        answer = _http(url, body)
    except urllib.error.HTTPError as e:
        error_body = _error_body(e)
        if exists_ok and error_body.get("errcode") == "M_USER_IN_USE":
            out("User already exists. Skipping.")
            return None
        raise ScriptError(_describe(e, error_body)) from e
    except (urllib.error.URLError, OSError, ValueError) as e:
        raise ScriptError(f"ERROR! Registration request to {url} failed: {e}") from e
    out("Success!")
    return answer


def _read_file(path: str, what: str) -> str:
    try:
        with open(path, encoding="utf-8") as f:
            return f.read()
    except OSError as e:
        raise ScriptError(f"Error accessing file {path} ({what}): {e.strerror}") from e


def read_config_files(paths: Sequence[str]) -> dict[str, Any]:
    """The config files merged (later top-level keys win), with relative secret paths resolved.

    `registration_shared_secret_path` is taken relative to the directory of the
    file that sets it, as the server takes it.
    """
    config: dict[str, Any] = {}
    for path in paths:
        try:
            document = yaml.safe_load(_read_file(path, "config file"))
        except yaml.YAMLError as e:
            raise ScriptError(f"{path}: not valid YAML: {e}") from e
        if not isinstance(document, dict):
            print(f"{path} is empty or not a mapping of options; ignoring it.", file=sys.stderr)
            continue
        secret_path = document.get("registration_shared_secret_path")
        if isinstance(secret_path, str):
            base = os.path.dirname(os.path.abspath(path))
            document["registration_shared_secret_path"] = os.path.join(
                base, os.path.expanduser(secret_path)
            )
        config.update(document)
    return config


def shared_secret_from_config(config: dict[str, Any]) -> str:
    secret = config.get("registration_shared_secret")
    secret_path = config.get("registration_shared_secret_path")
    if secret_path:
        if secret:
            raise ScriptError(
                "Conflicting options 'registration_shared_secret' and "
                "'registration_shared_secret_path' are both defined in config file."
            )
        secret = _read_file(secret_path, "registration_shared_secret_path").strip()
    if not secret or not isinstance(secret, str):
        raise ScriptError(
            "No 'registration_shared_secret' or 'registration_shared_secret_path' defined in config."
        )
    return secret


def find_client_listener(config: dict[str, Any]) -> str | None:
    """http://localhost:<port> of the first plain-HTTP listener serving `client`, if any."""
    for listener in config.get("listeners") or []:
        if not isinstance(listener, dict):
            continue
        if listener.get("type", "http") != "http" or listener.get("tls", False):
            continue
        names = [
            name
            for resource in listener.get("resources") or []
            if isinstance(resource, dict)
            for name in resource.get("names") or []
        ]
        if "client" in names and isinstance(listener.get("port"), int):
            return f"http://localhost:{listener['port']}"
    return None


def _ask_details(
    user: str | None, password: str | None, admin: bool | None
) -> tuple[str, str, bool]:
    """Prompt on the terminal for whatever was not given on the command line."""
    if not user:
        try:
            default_user: str | None = getpass.getuser()
        except Exception:  # getuser raises various errors when no name is known
            default_user = None
        if default_user:
            user = input(f"New user localpart [{default_user}]: ") or default_user
        else:
            user = input("New user localpart: ")
    if not user:
        raise ScriptError("Invalid user name")
    if not password:
        password = getpass.getpass("Password: ")
        if not password:
            raise ScriptError("Password cannot be blank.")
        if getpass.getpass("Confirm password: ") != password:
            raise ScriptError("Passwords do not match")
    if admin is None:
        admin = input("Make admin [no]: ").strip().lower() in ("y", "yes", "true")
    return user, password, admin


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="register_new_matrix_user",
        description="Register a new user with a homeserver, even when registration is closed."
        " The homeserver must have 'registration_shared_secret' (or"
        " 'registration_shared_secret_path') set.",
    )
    parser.add_argument("-u", "--user", help="Localpart of the new user. Asked for if omitted.")
    parser.add_argument(
        "--exists-ok", action="store_true", help="Do not fail if the user already exists."
    )
    password_group = parser.add_mutually_exclusive_group()
    password_group.add_argument(
        "-p", "--password", help="Password of the new user. Asked for if omitted."
    )
    password_group.add_argument(
        "--password-file", help="File holding the password of the new user."
    )
    parser.add_argument(
        "-t", "--user_type", default=None, help="User type: 'bot' or 'support'. Default: none."
    )
    admin_group = parser.add_mutually_exclusive_group()
    admin_group.add_argument(
        "-a", "--admin", action="store_true", help="Make the new user a server admin."
    )
    admin_group.add_argument(
        "--no-admin", action="store_true", help="Make the new user a regular user."
    )
    secret_group = parser.add_mutually_exclusive_group(required=True)
    secret_group.add_argument(
        "-c",
        "--config",
        action="append",
        help="The server's config file, to read the shared secret from (may be repeated).",
    )
    secret_group.add_argument(
        "-k", "--shared-secret", help="The shared secret, as in the server's config."
    )
    parser.add_argument(
        "server_url",
        nargs="?",
        help="URL of the homeserver. Default: found from the config's listeners,"
        f" else {DEFAULT_SERVER_URL}.",
    )
    return parser


def run(argv: Sequence[str] | None = None) -> None:
    """Everything `main` does, raising ScriptError instead of exiting."""
    args = build_parser().parse_args(argv)
    config = read_config_files(args.config) if args.config else None

    if args.shared_secret:
        secret = args.shared_secret
    else:
        assert config is not None  # argparse requires -c or -k
        secret = shared_secret_from_config(config)

    password = args.password
    if args.password_file:
        password = _read_file(args.password_file, "password file").strip()

    if args.server_url:
        server_url = args.server_url
    elif config is not None:
        server_url = find_client_listener(config) or DEFAULT_SERVER_URL
        if server_url == DEFAULT_SERVER_URL:
            print(
                "No plain-HTTP client listener found in the config; trying"
                f" {DEFAULT_SERVER_URL} as a last resort.",
                file=sys.stderr,
            )
    else:
        server_url = DEFAULT_SERVER_URL
        print(f"No server URL or config file given; using {server_url}.", file=sys.stderr)

    admin = args.admin if (args.admin or args.no_admin) else None
    user, password, admin = _ask_details(args.user, password, admin)
    request_registration(
        user, password, server_url, secret, admin, args.user_type, exists_ok=args.exists_ok
    )


def main(argv: Sequence[str] | None = None) -> None:
    """The console command: exit status 0 on success, 1 with a message on failure."""
    try:
        run(argv)
    except ScriptError as e:
        print(str(e), file=sys.stderr)
        sys.exit(1)
    except KeyboardInterrupt:
        sys.exit(1)


if __name__ == "__main__":
    main()
