"""The `user_consent` block: the policy new users accept (UIA stage m.login.terms).

A subset of Synapse's `user_consent` with its names: `version` (required),
`policy_name` (default "Privacy Policy") and `require_at_registration`
(default false), plus `policy_url`, where the policy document is published.
Synapse serves that document itself from `template_dir` at
`<public_baseurl>_matrix/consent?v=<version>`; this server does not serve
policy pages, so that URL is only the default for `policy_url` (point a
reverse proxy at it, or set `policy_url` to wherever the policy is).

With `require_at_registration`, every registration flow starts with
m.login.terms, whose UIA parameters are Synapse's:

    {"policies": {"privacy_policy": {"version": ..., "en": {"name": ..., "url": ...}}}}
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlsplit

from homeserver.config._schema import ConfigError

SCHEMA: dict[str, Any] = {
    "user_consent": {
        "type": ["object", "null"],
        "default": None,
        "additionalProperties": False,
        "required": ["version"],
        "properties": {
            "version": {"type": ["string", "number"]},
            "policy_name": {"type": "string", "minLength": 1, "default": "Privacy Policy"},
            "require_at_registration": {"type": "boolean", "default": False},
            "policy_url": {"type": ["string", "null"], "default": None},
        },
    },
}
REQUIRED: list[str] = []


@dataclass(frozen=True, slots=True)
class ConsentConfig:
    # Whether registration asks new users to accept the policy (m.login.terms).
    require_at_registration: bool
    version: str | None
    policy_name: str
    policy_url: str | None

    @classmethod
    def from_dict(cls, doc: dict[str, Any], resolve_path: Any) -> ConsentConfig:
        section = doc["user_consent"]
        if section is None:
            return cls(False, None, "Privacy Policy", None)
        version = str(section["version"])
        url = section["policy_url"]
        if url is None:
            base = doc.get("public_baseurl") or f"https://{doc['server_name']}/"
            if not base.endswith("/"):
                base += "/"
            url = f"{base}_matrix/consent?v={quote(version)}"
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ConfigError([f"user_consent.policy_url: {url!r} is not an http(s) URL"])
        return cls(
            require_at_registration=section["require_at_registration"],
            version=version,
            policy_name=section["policy_name"],
            policy_url=url,
        )

    def terms_params(self) -> dict[str, Any]:
        """The UIA `params` of m.login.terms."""
        return {
            "policies": {
                "privacy_policy": {
                    "version": self.version,
                    "en": {"name": self.policy_name, "url": self.policy_url},
                }
            }
        }
