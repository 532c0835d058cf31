"""Registration flows as Synapse builds them from the config."""

from __future__ import annotations

from homeserver.handlers.registration_stages import registration_flows


def flows(**options: object) -> list[list[str]]:
    settings: dict[str, object] = {
        "require_3pid": (), "email": False, "msisdn": False, "terms": False,
        "recaptcha": False, "token": False,
    }
    settings.update(options)
    return registration_flows(**settings)  # type: ignore[arg-type]


def test_three_pid_flows() -> None:
    assert flows() == [["m.login.dummy"]]
    assert flows(email=True) == [["m.login.dummy"], ["m.login.email.identity"]]
    assert flows(email=True, msisdn=True) == [
        ["m.login.dummy"],
        ["m.login.email.identity"],
        ["m.login.msisdn"],
        ["m.login.msisdn", "m.login.email.identity"],
    ]
    assert flows(email=True, msisdn=True, require_3pid=("email",)) == [
        ["m.login.email.identity"],
        ["m.login.msisdn", "m.login.email.identity"],
    ]
    assert flows(email=True, msisdn=True, require_3pid=("email", "msisdn")) == [
        ["m.login.msisdn", "m.login.email.identity"]
    ]


def test_stages_in_front_of_every_flow() -> None:
    assert flows(email=True, terms=True, recaptcha=True, token=True) == [
        ["m.login.registration_token", "m.login.recaptcha", "m.login.terms", "m.login.dummy"],
        ["m.login.registration_token", "m.login.recaptcha", "m.login.terms", "m.login.email.identity"],
    ]
