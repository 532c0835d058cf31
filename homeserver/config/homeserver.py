"""The whole config: the schema assembled from every section, and the typed model.

`load_config(path)` reads the YAML file, checks it against the schema, fills in
defaults and builds one frozen model per section. Relative paths in the file
are taken relative to the directory of the config file, so a config keeps
working whatever directory the server is started from.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import yaml

from homeserver.config import (
    auth,
    captcha,
    consent,
    database,
    email,
    federation,
    listeners,
    logs,
    ratelimits,
    registration,
    registration_secret,
    rooms,
    server,
)
from homeserver.config._schema import ConfigError, validate, with_defaults

_SECTIONS = (
    server,
    listeners,
    database,
    logs,
    rooms,
    ratelimits,
    email,
    captcha,
    consent,
    registration_secret,
    registration,
    auth,
    federation,
)

SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "type": "object",
    "additionalProperties": False,
    "required": [key for section in _SECTIONS for key in section.REQUIRED],
    "properties": {key: value for section in _SECTIONS for key, value in section.SCHEMA.items()},
}


@dataclass(frozen=True, slots=True)
class HomeServerConfig:
    config_path: str
    server: server.ServerConfig
    listeners: listeners.ListenersConfig
    database: database.DatabaseConfig
    logging: logs.LoggingConfig
    rooms: rooms.RoomsConfig
    ratelimits: ratelimits.RateLimitsConfig
    email: email.EmailConfig
    captcha: captcha.CaptchaConfig
    consent: consent.ConsentConfig
    registration_secret: registration_secret.RegistrationSecretConfig
    registration: registration.RegistrationConfig
    auth: auth.AuthConfig
    federation: federation.FederationConfig

    @classmethod
    def from_dict(cls, document: Any, config_path: str) -> HomeServerConfig:
        """Check `document` and build the model; raises ConfigError naming each problem."""
        validate(SCHEMA, document)
        doc = with_defaults(SCHEMA, document)
        base = os.path.dirname(os.path.abspath(config_path))

        def resolve_path(path: str) -> str:
            return os.path.normpath(os.path.join(base, os.path.expanduser(path)))

        return cls(
            config_path=os.path.abspath(config_path),
            server=server.ServerConfig.from_dict(doc, resolve_path),
            listeners=listeners.ListenersConfig.from_dict(doc, resolve_path),
            database=database.DatabaseConfig.from_dict(doc, resolve_path),
            logging=logs.LoggingConfig.from_dict(doc, resolve_path),
            rooms=rooms.RoomsConfig.from_dict(doc, resolve_path),
            ratelimits=ratelimits.RateLimitsConfig.from_dict(doc, resolve_path),
            email=email.EmailConfig.from_dict(doc, resolve_path),
            captcha=captcha.CaptchaConfig.from_dict(doc, resolve_path),
            consent=consent.ConsentConfig.from_dict(doc, resolve_path),
            registration_secret=registration_secret.RegistrationSecretConfig.from_dict(
                doc, resolve_path
            ),
            registration=registration.RegistrationConfig.from_dict(doc, resolve_path),
            auth=auth.AuthConfig.from_dict(doc, resolve_path),
            federation=federation.FederationConfig.from_dict(doc, resolve_path),
        )


def load_config(path: str) -> HomeServerConfig:
    """Read and check the config file at `path`."""
    try:
        with open(path, encoding="utf-8") as f:
            document = yaml.safe_load(f)
    except OSError as e:
        raise ConfigError([f"{path}: cannot read the config file: {e.strerror}"]) from e
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(e, "problem", None) or str(e)
        raise ConfigError([f"{path}: not valid YAML{where}: {problem}"]) from e
    if document is None:
        document = {}
    return HomeServerConfig.from_dict(document, path)
