"""Fuzzing the request bodies of the account endpoints: never a 500, and every refusal a 4xx
with an errcode (user-interactive auth challenges, 401 with `flows`, aside).

Bodies come from the spec's JSON shapes (each endpoint's known keys, with a
well-typed value or any JSON value), plus arbitrary JSON and raw bytes. One
server per engine serves every example (a user, an admin and email through an
in-process SMTP server are set up first), so the whole run stays short.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.api.client.threepid_helpers import MailServer
from tests.conftest import run_on_reactor
from tests.homeserver_harness import TestClient, make_admin

JSON_LEAVES = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20)
)
ANY_JSON = st.recursive(
    JSON_LEAVES,
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=8), children, max_size=3),
    max_leaves=8,
)
TEXT = st.text(max_size=30) | st.sampled_from(["", "alice", "@alice:test", "a" * 300, "\x00", "a\x00b", "\ud800", "é"])
STAGES = st.sampled_from(
    [
        "m.login.dummy",
        "m.login.password",
        "m.login.email.identity",
        "m.login.registration_token",
        "m.login.recaptcha",
        "m.login.terms",
        "m.login.msisdn",
    ]
)
IDENTIFIER = st.fixed_dictionaries(
    {"type": st.sampled_from(["m.id.user", "m.id.thirdparty", "m.id.phone"]) | TEXT},
    optional={
        "user": TEXT | ANY_JSON,
        "medium": st.sampled_from(["email", "msisdn"]) | ANY_JSON,
        "address": TEXT | ANY_JSON,
        "country": st.sampled_from(["GB", "US", "", "ZZ"]) | ANY_JSON,
        "phone": TEXT | ANY_JSON,
    },
)
AUTH = st.fixed_dictionaries(
    {},
    optional={
        "type": STAGES | ANY_JSON,
        "session": TEXT | ANY_JSON,
        "identifier": IDENTIFIER | ANY_JSON,
        "password": TEXT | ANY_JSON,
        "token": TEXT | ANY_JSON,
        "response": TEXT,
        "threepid_creds": st.fixed_dictionaries({}, optional={"sid": TEXT, "client_secret": TEXT})
        | ANY_JSON,
    },
)


def shape(**keys: st.SearchStrategy[Any]) -> st.SearchStrategy[dict[str, Any]]:
    """A body with any subset of these keys, each well-typed or any JSON value."""
    return st.fixed_dictionaries({}, optional={k: v | ANY_JSON for k, v in keys.items()})


REQUEST_TOKEN = shape(
    client_secret=TEXT,
    email=TEXT | st.emails(),
    send_attempt=st.integers(min_value=-1, max_value=2**60),
    next_link=TEXT | st.just("https://example.org/next"),
    country=TEXT,
    phone_number=TEXT,
)
# (method, path, needs: None / "user" / "admin", body strategy)
ENDPOINTS: list[tuple[str, str, str | None, st.SearchStrategy[Any]]] = [
    ("POST", "/register", None, shape(
        username=TEXT, password=TEXT, auth=AUTH, device_id=TEXT,
        initial_device_display_name=TEXT, inhibit_login=st.booleans(),
        refresh_token=st.booleans(), guest_access_token=TEXT,
    )),
    ("POST", "/login", None, shape(
        type=st.sampled_from(["m.login.password", "m.login.token"]) | TEXT,
        identifier=IDENTIFIER, user=TEXT, medium=TEXT, address=TEXT, password=TEXT,
        token=TEXT, device_id=TEXT, initial_device_display_name=TEXT, refresh_token=st.booleans(),
    )),
    ("POST", "/refresh", None, shape(refresh_token=TEXT)),
    ("POST", "/account/password", None, shape(new_password=TEXT, logout_devices=st.booleans(), auth=AUTH)),
    ("POST", "/account/password", "user", shape(new_password=TEXT, logout_devices=st.booleans(), auth=AUTH)),
    ("POST", "/account/deactivate", "user", shape(auth=AUTH, erase=st.booleans(), id_server=TEXT)),
    ("PUT", "/devices/FUZZDEVICE", "user", shape(display_name=TEXT)),
    ("DELETE", "/devices/FUZZDEVICE", "user", shape(auth=AUTH)),
    ("POST", "/delete_devices", "user", shape(devices=st.lists(TEXT, max_size=3), auth=AUTH)),
    ("PUT", "/profile/@fuzz:test/displayname", "user", shape(displayname=TEXT)),
    ("PUT", "/profile/@fuzz:test/avatar_url", "user", shape(avatar_url=TEXT)),
    ("POST", "/account/3pid/add", "user", shape(client_secret=TEXT, sid=TEXT, auth=AUTH)),
    ("POST", "/account/3pid/delete", "user", shape(
        medium=st.sampled_from(["email", "msisdn"]) | TEXT, address=TEXT, id_server=TEXT,
    )),
    ("POST", "/account/3pid/email/requestToken", None, REQUEST_TOKEN),
    ("POST", "/register/email/requestToken", None, REQUEST_TOKEN),
    ("POST", "/account/password/email/requestToken", None, REQUEST_TOKEN),
    ("POST", "/account/3pid/msisdn/requestToken", None, REQUEST_TOKEN),
    ("POST", "/_synapse/admin/v1/register", None, shape(
        nonce=TEXT, username=TEXT, password=TEXT, admin=st.booleans(), mac=TEXT,
        user_type=st.sampled_from(["bot", "support"]) | TEXT, displayname=TEXT,
    )),
    ("PUT", "/_synapse/admin/v2/users/@target:test", "admin", shape(
        password=TEXT, displayname=TEXT, avatar_url=TEXT, admin=st.booleans(),
        deactivated=st.booleans(), logout_devices=st.booleans(), user_type=TEXT,
        threepids=st.lists(shape(medium=st.sampled_from(["email", "msisdn"]), address=TEXT), max_size=2),
    )),
    ("POST", "/_synapse/admin/v1/reset_password/@target:test", "admin", shape(
        new_password=TEXT, logout_devices=st.booleans(),
    )),
    ("POST", "/_synapse/admin/v1/deactivate/@nobody:test", "admin", shape(erase=st.booleans())),
    ("POST", "/_synapse/admin/v1/registration_tokens/new", "admin", shape(
        token=TEXT, length=st.integers(-5, 80), uses_allowed=st.integers(-5, 2**40),
        expiry_time=st.integers(-(2**70), 2**70),
    )),
    ("PUT", "/_synapse/admin/v1/registration_tokens/fuzz", "admin", shape(
        uses_allowed=st.integers(-5, 2**40), expiry_time=st.integers(-(2**70), 2**70),
    )),
]


@st.composite
def requests(draw: st.DrawFn) -> tuple[str, str, str | None, Any]:
    method, path, needs, body_strategy = draw(st.sampled_from(ENDPOINTS))
    kind = draw(st.sampled_from(["shape", "shape", "shape", "json", "bytes"]))
    if kind == "shape":
        body: Any = draw(body_strategy)
    elif kind == "json":
        body = draw(ANY_JSON)
    else:
        body = draw(st.binary(max_size=40) | st.sampled_from([b"", b"{", b'{"a": NaN}', b'"\\ud800"']))
    if not isinstance(body, bytes):
        body = json.dumps(body).encode()
    return method, path, needs, body


@pytest.fixture
def fuzz_server(homeserver_factory: Any, reactor: Any) -> Any:
    mail = run_on_reactor(MailServer.start(reactor))

    async def setup() -> tuple[TestClient, dict[str, str]]:
        hs = await homeserver_factory.start(
            **mail.config(registration_shared_secret="fuzz secret", allow_guest_access=True)
        )
        client = homeserver_factory.client(hs)
        user = await client.register("fuzz", device_id="FUZZDEVICE")
        tokens = {"user": user["access_token"], "admin": await make_admin(hs, client)}
        await client.register("target")
        await client.post(
            "/_synapse/admin/v1/registration_tokens/new", {"token": "fuzz"}, token=tokens["admin"]
        )
        return client, tokens

    yield run_on_reactor(setup())
    run_on_reactor(mail.close())


@settings(
    max_examples=300,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(request=requests())
def test_no_body_makes_an_account_endpoint_fail(fuzz_server: Any, request: Any) -> None:
    client, tokens = fuzz_server
    method, path, needs, body = request
    token = tokens[needs] if needs else None
    response = run_on_reactor(client.request(method, path, body, token=token))
    assert response.status < 500, (method, path, body, response)
    if response.status == 401 and "flows" in response.json:
        return  # a user-interactive auth challenge: errcode only when a stage just failed
    if response.status >= 400:
        assert isinstance(response.json.get("errcode"), str), response


QUERY_VALUE = st.text(max_size=20) | st.sampled_from(["", "-1", "0", "true", "false", "\x00", "9" * 30])
QUERY_ENDPOINTS: list[tuple[str, str | None, tuple[str, ...]]] = [
    ("/register/available", None, ("username",)),
    ("/_matrix/client/v1/register/m.login.registration_token/validity", None, ("token",)),
    ("/_matrix/client/unstable/registration/email/submit_token", None, ("sid", "client_secret", "token")),
    ("/_synapse/client/password_reset/email/submit_token", None, ("sid", "client_secret", "token")),
    ("/_synapse/admin/v2/users", "admin", (
        "from", "limit", "user_id", "name", "guests", "deactivated", "admins", "order_by", "dir",
    )),
    ("/_synapse/admin/v1/registration_tokens", "admin", ("valid",)),
]


@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    endpoint=st.sampled_from(QUERY_ENDPOINTS),
    values=st.dictionaries(st.sampled_from(["username", "token", "sid", "client_secret", "from",
                                            "limit", "user_id", "name", "guests", "deactivated",
                                            "admins", "order_by", "dir", "valid"]),
                           QUERY_VALUE, max_size=5),
)
def test_no_query_string_makes_an_account_endpoint_fail(
    fuzz_server: Any, endpoint: Any, values: dict[str, str]
) -> None:
    client, tokens = fuzz_server
    path, needs, _ = endpoint
    token = tokens[needs] if needs else None
    response = run_on_reactor(client.get(path, query=values, token=token))
    assert response.status < 500, (path, values, response)
    if response.status >= 400 and response.headers.get("content-type") == ["application/json"]:
        assert isinstance(response.json.get("errcode"), str), response
