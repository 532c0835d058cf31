"""Canonical JSON encoding and strict decoding (appendices, "Canonical JSON")."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from homeserver.types.canonical_json import (
    CANONICALJSON_MAX_INT,
    CANONICALJSON_MIN_INT,
    InvalidCanonicalJson,
    check_canonical_json_value,
    decode_canonical_json,
    decode_json,
    encode_canonical_json,
)
from tests.types.vectors import load_json

SPEC_EXAMPLES = load_json("spec-appendix/canonical-json-examples.json")["cases"]
LIBRARY_CASES = load_json("python-canonicaljson/canonical-json-cases.json")


@pytest.mark.parametrize("case", SPEC_EXAMPLES, ids=lambda c: c["expected"][:40])
def test_spec_examples_canonicalise_exactly(case: dict[str, str]) -> None:
    """Each of the spec's examples, parsed by our decoder and re-encoded, gives the spec's bytes."""
    value = decode_json(case["input_text"], strict=False)
    assert encode_canonical_json(value) == case["expected"].encode("utf-8")


def test_spec_examples_are_all_present() -> None:
    """The vector file holds the spec's 10 examples (guards against an empty parametrisation)."""
    assert len(SPEC_EXAMPLES) == 10


def test_exponent_and_negative_zero_become_integers() -> None:
    """The spec's last example: `-0` and `1e10` canonicalise to `0` and `10000000000`."""
    value = decode_json('{"a": -0, "b": 1e10}', strict=False)
    assert value == {"a": 0, "b": 10000000000}
    assert all(type(v) is int for v in value.values())


@pytest.mark.parametrize("case", LIBRARY_CASES["cases"], ids=lambda c: c["name"])
def test_python_canonicaljson_cases(case: dict[str, Any]) -> None:
    """python-canonicaljson's literal cases (escapes, raw UTF-8, the ASCII table) encode byte-exact."""
    assert encode_canonical_json(case["input"]) == bytes.fromhex(case["expected_hex"])


@pytest.mark.parametrize("case", LIBRARY_CASES["must_reject"], ids=lambda c: c["input_text"])
def test_nan_and_infinity_rejected_when_decoding(case: dict[str, str]) -> None:
    """NaN/Infinity are not JSON: both decoding modes refuse them with a clear message."""
    for strict in (False, True):
        with pytest.raises(InvalidCanonicalJson, match="not valid JSON"):
            decode_json(case["input_text"], strict=strict)


@pytest.mark.parametrize("value", [float("nan"), float("inf"), float("-inf")])
def test_nan_and_infinity_rejected_when_encoding(value: float) -> None:
    """The encoder refuses NaN/Infinity values with InvalidCanonicalJson."""
    with pytest.raises(InvalidCanonicalJson):
        encode_canonical_json({"x": value})


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("1.5", "no fractions or exponents"),
        ('{"a": 1.0}', "no fractions or exponents"),
        ('{"a": 1e10}', "no fractions or exponents"),
        ("9007199254740992", "outside the canonical JSON range"),
        ("-9007199254740992", "outside the canonical JSON range"),
        ('{"a": 1, "a": 2}', "duplicate key 'a'"),
        ('{"a": {"b": 1, "b": 1}}', "duplicate key 'b'"),
        ('["\\ud800"]', "lone surrogate"),
        ('{"a": NaN}', "NaN is not valid JSON"),
        ("{", "not valid JSON"),
        ("", "not valid JSON"),
        (b"\xff\xfe", "not valid UTF-8"),
    ],
)
def test_strict_decoding_rejections(text: str | bytes, message: str) -> None:
    """Strict decoding refuses each non-canonical input and says why."""
    with pytest.raises(InvalidCanonicalJson, match=message):
        decode_canonical_json(text)


def test_strict_decoding_accepts_range_bounds() -> None:
    """The integer bounds ±(2**53 - 1) themselves are accepted."""
    assert decode_canonical_json(f"[{CANONICALJSON_MIN_INT}, {CANONICALJSON_MAX_INT}]") == [
        -(2**53) + 1,
        2**53 - 1,
    ]


def test_lax_decoding_accepts_what_old_room_versions_may_hold() -> None:
    """Lax decoding (rooms v1..v5) keeps big integers, fractions and duplicate keys (last wins)."""
    assert decode_json('{"big": 9007199254740993, "f": 0.5, "d": 1, "d": 2}', strict=False) == {
        "big": 9007199254740993,
        "f": 0.5,
        "d": 2,
    }


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ({"content": {"n": 2**53}}, r"content\.n"),
        ({"content": {"list": [1, 2.5]}}, r"content\.list\[1\]"),
        ({"a": 1.0}, "float"),
        ({1: "x"}, "non-string key"),
        ({"a": object()}, "is not JSON"),
        ({"a": "\udc00"}, "lone surrogate"),
    ],
)
def test_check_value_names_the_offending_path(value: Any, message: str) -> None:
    """check_canonical_json_value reports where the bad value is."""
    with pytest.raises(InvalidCanonicalJson, match=message):
        check_canonical_json_value(value)


def test_check_value_accepts_bools_and_nested_values() -> None:
    """Booleans (which are ints in Python) and nested containers pass the check."""
    check_canonical_json_value({"a": [True, False, None, "x", {"b": -(2**53) + 1}]})


def test_non_ascii_encoded_as_utf8_not_escaped() -> None:
    """Code points outside ASCII appear as raw UTF-8 bytes (shortest encoding)."""
    assert encode_canonical_json({"日": "本"}) == '{"日":"本"}'.encode()


# --- properties ------------------------------------------------------------------

json_ints = st.integers(min_value=CANONICALJSON_MIN_INT, max_value=CANONICALJSON_MAX_INT)
json_values = st.recursive(
    st.none() | st.booleans() | json_ints | st.text(),
    lambda children: (
        st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=8), children, max_size=5)
    ),
    max_leaves=25,
)


@given(json_values)
def test_round_trip_through_strict_decoder(value: Any) -> None:
    """Property: decoding the canonical encoding gives back the same value."""
    assert decode_canonical_json(encode_canonical_json(value)) == value


@given(json_values)
def test_encoding_is_a_fixed_point(value: Any) -> None:
    """Property: re-encoding decoded canonical JSON gives the identical bytes."""
    encoded = encode_canonical_json(value)
    assert encode_canonical_json(decode_canonical_json(encoded)) == encoded


@given(st.dictionaries(st.text(max_size=8), json_values, max_size=8), st.randoms())
def test_key_order_does_not_matter(value: dict[str, Any], rnd: Any) -> None:
    """Property: any insertion order of an object's keys encodes to the same bytes."""
    items = list(value.items())
    rnd.shuffle(items)
    assert encode_canonical_json(dict(items)) == encode_canonical_json(value)


@given(json_values)
def test_encoding_matches_spec_reference_function(value: Any) -> None:
    """Property: our encoding equals the spec's reference Python (json.dumps, sorted, compact)."""
    reference = json.dumps(value, ensure_ascii=False, separators=(",", ":"), sort_keys=True).encode(
        "utf-8"
    )
    assert encode_canonical_json(value) == reference
