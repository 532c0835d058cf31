"""Configuration: one typed model per section, checked against a JSON schema at start."""

from homeserver.config._schema import ConfigError
from homeserver.config.homeserver import HomeServerConfig, load_config

__all__ = ["ConfigError", "HomeServerConfig", "load_config"]
