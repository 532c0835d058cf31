"""Rate limit options: Synapse's `rc_*` blocks, each `{per_second, burst_count}`.

A limit lets `burst_count` actions through at once and then, on average,
`per_second` actions a second (a token bucket; see
homeserver.handlers.ratelimit). The names and defaults are Synapse's, so an
operator's existing blocks carry over:

    rc_message                   0.2 / 10    messages sent, per user
    rc_registration              0.17 / 3    registration requests, per client IP
    rc_login.address             0.003 / 5   login requests, per client IP
    rc_login.account             0.003 / 5   login requests, per account
    rc_login.failed_attempts     0.17 / 3    failed logins, per account
    rc_3pid_validation           0.003 / 5   validation requests, per client IP and per address
    rc_registration_token_validity  0.1 / 5  registration token validity checks, per client IP
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class RateLimit:
    """One limit: a bucket of `burst_count` tokens refilled at `per_second` tokens a second."""

    per_second: float
    burst_count: float


def _limit_schema(per_second: float, burst_count: float) -> dict[str, Any]:
    return {
        "type": "object",
        "additionalProperties": False,
        "default": {},
        "properties": {
            "per_second": {"type": "number", "minimum": 0, "default": per_second},
            "burst_count": {"type": "number", "minimum": 0, "default": burst_count},
        },
    }


SCHEMA: dict[str, Any] = {
    "rc_message": _limit_schema(0.2, 10),
    "rc_registration": _limit_schema(0.17, 3),
    "rc_login": {
        "type": "object",
        "additionalProperties": False,
        "default": {},
        "properties": {
            "address": _limit_schema(0.003, 5),
            "account": _limit_schema(0.003, 5),
            "failed_attempts": _limit_schema(0.17, 3),
        },
    },
    "rc_3pid_validation": _limit_schema(0.003, 5),
    "rc_registration_token_validity": _limit_schema(0.1, 5),
}
REQUIRED: list[str] = []


def _limit(block: dict[str, Any]) -> RateLimit:
    return RateLimit(per_second=float(block["per_second"]), burst_count=float(block["burst_count"]))


@dataclass(frozen=True, slots=True)
class RateLimitsConfig:
    rc_message: RateLimit
    rc_registration: RateLimit
    rc_login_address: RateLimit
    rc_login_account: RateLimit
    rc_login_failed_attempts: RateLimit
    rc_3pid_validation: RateLimit
    rc_registration_token_validity: RateLimit

    @classmethod
    def from_dict(cls, doc: dict[str, Any], resolve_path: Any) -> RateLimitsConfig:
        login = doc["rc_login"]
        return cls(
            rc_message=_limit(doc["rc_message"]),
            rc_registration=_limit(doc["rc_registration"]),
            rc_login_address=_limit(login["address"]),
            rc_login_account=_limit(login["account"]),
            rc_login_failed_attempts=_limit(login["failed_attempts"]),
            rc_3pid_validation=_limit(doc["rc_3pid_validation"]),
            rc_registration_token_validity=_limit(doc["rc_registration_token_validity"]),
        )
