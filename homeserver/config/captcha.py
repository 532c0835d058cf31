"""reCAPTCHA options: whether registration asks for a captcha, the keys, the verify URL.

Top-level keys, as Synapse names them: enable_registration_captcha,
recaptcha_public_key (or recaptcha_public_key_path), recaptcha_private_key (or
recaptcha_private_key_path) and recaptcha_siteverify_api. The private key is
the secret sent to the verify URL; the public key (the "site key") goes to
clients in the UIA parameters of m.login.recaptcha.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from homeserver.config._schema import ConfigError

DEFAULT_SITEVERIFY_API = "https://www.recaptcha.net/recaptcha/api/siteverify"

SCHEMA: dict[str, Any] = {
    "enable_registration_captcha": {"type": "boolean", "default": False},
    "recaptcha_public_key": {"type": ["string", "null"], "default": None},
    "recaptcha_public_key_path": {"type": ["string", "null"], "default": None},
    "recaptcha_private_key": {"type": ["string", "null"], "default": None},
    "recaptcha_private_key_path": {"type": ["string", "null"], "default": None},
    "recaptcha_siteverify_api": {"type": "string", "default": DEFAULT_SITEVERIFY_API},
}
REQUIRED: list[str] = []


def _read_key(doc: dict[str, Any], name: str, resolve_path: Any, errors: list[str]) -> str | None:
    """The key given inline as `name`, or read (stripped) from the file `name + '_path'`."""
    inline = doc[name]
    path = doc[f"{name}_path"]
    if path is None:
        return inline or None
    if inline:
        errors.append(f"{name}_path: cannot be used together with {name}")
        return None
    try:
        with open(resolve_path(path), encoding="utf-8") as f:
            return f.read().strip() or None
    except OSError as e:
        errors.append(f"{name}_path: cannot read {resolve_path(path)}: {e.strerror}")
        return None


@dataclass(frozen=True, slots=True)
class CaptchaConfig:
    enable_registration_captcha: bool
    recaptcha_public_key: str | None
    recaptcha_private_key: str | None
    recaptcha_siteverify_api: str

    @classmethod
    def from_dict(cls, doc: dict[str, Any], resolve_path: Any) -> CaptchaConfig:
        errors: list[str] = []
        public_key = _read_key(doc, "recaptcha_public_key", resolve_path, errors)
        private_key = _read_key(doc, "recaptcha_private_key", resolve_path, errors)
        url = doc["recaptcha_siteverify_api"]
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            errors.append(f"recaptcha_siteverify_api: {url!r} is not an http:// or https:// URL")
        if doc["enable_registration_captcha"] and not errors:
            for name, value in (
                ("recaptcha_public_key", public_key),
                ("recaptcha_private_key", private_key),
            ):
                if not value:
                    errors.append(f"{name}: required when enable_registration_captcha is true")
        if errors:
            raise ConfigError(errors)
        return cls(
            enable_registration_captcha=doc["enable_registration_captcha"],
            recaptcha_public_key=public_key,
            recaptcha_private_key=private_key,
            recaptcha_siteverify_api=url,
        )
