"""X-Matrix headers: what we send, and parsing what others send (RFC 9110 auth-params, leniently)."""

from __future__ import annotations

import pytest
from signedjson.key import generate_signing_key, get_verify_key

from homeserver.crypto.x_matrix import (
    MalformedXMatrixHeader,
    XMatrixAuth,
    format_header,
    is_x_matrix,
    parse_header,
    request_json,
    sign_request,
)
from homeserver.types.signing import SignatureError, verify_json_signature

KEY = generate_signing_key("k1")


def test_signed_header_round_trips_and_its_signature_verifies() -> None:
    content = {"pdus": [], "origin": "origin.example"}
    header = sign_request(
        KEY, "origin.example", "dest.example:8448", "PUT", "/_matrix/x?a=1", content
    )
    assert header.startswith('X-Matrix origin="origin.example",destination="dest.example:8448",')
    auth = parse_header(header)
    assert auth.origin == "origin.example"
    assert auth.destination == "dest.example:8448"
    assert auth.key == "ed25519:k1"
    signed = request_json("PUT", "/_matrix/x?a=1", "origin.example", "dest.example:8448", content)
    signed["signatures"] = {"origin.example": {auth.key: auth.sig}}
    verify_json_signature(signed, "origin.example", "ed25519:k1", get_verify_key(KEY))
    # The signature covers the method, the URI (query included) and the content.
    for changed in (
        request_json("POST", "/_matrix/x?a=1", "origin.example", "dest.example:8448", content),
        request_json("PUT", "/_matrix/x?a=2", "origin.example", "dest.example:8448", content),
        request_json("PUT", "/_matrix/x?a=1", "origin.example", "dest.example:8448", {}),
        request_json("PUT", "/_matrix/x?a=1", "origin.example", "other.example", content),
    ):
        changed["signatures"] = signed["signatures"]
        with pytest.raises(SignatureError):
            verify_json_signature(changed, "origin.example", "ed25519:k1", get_verify_key(KEY))


def test_request_json_leaves_content_out_without_a_body() -> None:
    assert "content" not in request_json("GET", "/x", "o", "d")
    assert request_json("PUT", "/x", "o", "d", {})["content"] == {}


def test_header_sent_as_the_spec_asks_for_older_servers() -> None:
    """One space after the scheme, lower-case names, no spaces around commas."""
    assert format_header("o.example", "d.example", "ed25519:a", "c2ln") == (
        'X-Matrix origin="o.example",destination="d.example",key="ed25519:a",sig="c2ln"'
    )


@pytest.mark.parametrize(
    "header",
    [
        # The spec's example form.
        'X-Matrix origin="o.example",destination="d.example",key="ed25519:a",sig="c2/l+bg"',
        # Unquoted values, colons in them (older servers), other order.
        "X-Matrix sig=c2/l+bg,key=ed25519:a,origin=o.example,destination=d.example",
        # Spaces and tabs around commas, several spaces after the scheme.
        'X-Matrix   origin="o.example" ,\tdestination="d.example" , key="ed25519:a",  sig="c2/l+bg"',
        # Names and scheme are case-insensitive.
        'x-matrix ORIGIN="o.example",Destination="d.example",Key="ed25519:a",SIG="c2/l+bg"',
        # Escapes in quoted values are undone; unknown parameters are ignored.
        'X-Matrix origin="o\\.example",destination="d.example",key="ed25519:a",sig="c2/l+bg",extra="x"',
        # `signature`, as the spec's parameter list names it.
        'X-Matrix origin="o.example",destination="d.example",key="ed25519:a",signature="c2/l+bg"',
    ],
)
def test_parse_accepted_forms(header: str) -> None:
    assert parse_header(header) == XMatrixAuth("o.example", "d.example", "ed25519:a", "c2/l+bg")


def test_parse_without_destination_and_with_bytes() -> None:
    auth = parse_header(b'X-Matrix origin="[::1]:8448",key="ed25519:a",sig="s"')
    assert auth == XMatrixAuth("[::1]:8448", None, "ed25519:a", "s")


@pytest.mark.parametrize(
    ("header", "problem"),
    [
        ('X-Matrix destination="d",key="ed25519:a",sig="s"', "missing parameter(s): origin"),
        ('X-Matrix origin="o",sig="s"', "missing parameter(s): key"),
        ('X-Matrix origin="o",key="ed25519:a"', "missing parameter(s): sig"),
        ('X-Matrix origin="not a server",key="ed25519:a",sig="s"', "invalid origin"),
        ('X-Matrix origin="o",key="ed25519:a",sig="s', "no closing quote"),
        ('X-Matrix origin="o" key="ed25519:a",sig="s"', "expected ','"),
        ('X-Matrix origin,key="ed25519:a",sig="s"', "has no '='"),
        ('X-Matrix origin=,key="ed25519:a",sig="s"', "has no value"),
        ('X-Matrix origin="o",origin="p",key="ed25519:a",sig="s"', "given twice"),
        ('X-Matrix origin="o",key="ed25519:a",sig="s",', "expected a parameter name"),
        ('Bearer origin="o",key="ed25519:a",sig="s"', "scheme is not X-Matrix"),
        ("X-Matrix", "scheme is not X-Matrix"),
        (b'X-Matrix origin="\xff",key="ed25519:a",sig="s"', "not UTF-8"),
    ],
)
def test_parse_refuses_malformed_headers(header: str | bytes, problem: str) -> None:
    with pytest.raises(MalformedXMatrixHeader) as info:
        parse_header(header)
    assert problem in str(info.value)


def test_is_x_matrix() -> None:
    assert is_x_matrix(b'X-Matrix origin="o"')
    assert is_x_matrix("x-matrix origin=o")
    assert not is_x_matrix(b"Bearer abc")
    assert not is_x_matrix("X-Matrixish a=b")
