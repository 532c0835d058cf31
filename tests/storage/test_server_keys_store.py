"""ServerKeyStore on both engines: which answer wins for a key, and the answers kept for notary use."""

from __future__ import annotations

from typing import Any

from homeserver.storage.stores.server_keys import ServerKeyStore


async def test_round_trip(database: Any) -> None:
    """What is stored is read back: keys by ID, the answer as text."""
    store = ServerKeyStore(database)
    await store.store_server_keys(
        "remote.example",
        "remote.example",
        1000,
        '{"a":1}',
        5000,
        {"ed25519:a": ("AAAA", 5000), "ed25519:old": ("BBBB", 900)},
    )
    keys = await store.get_server_keys("remote.example")
    assert set(keys) == {"ed25519:a", "ed25519:old"}
    assert keys["ed25519:a"].verify_key == "AAAA"
    assert keys["ed25519:a"].valid_until_ts == 5000
    assert keys["ed25519:old"].valid_until_ts == 900
    assert keys["ed25519:a"].from_server == "remote.example"
    assert keys["ed25519:a"].fetched_ts == 1000
    (response,) = await store.get_key_responses("remote.example")
    assert (response.from_server, response.fetched_ts, response.valid_until_ts) == (
        "remote.example",
        1000,
        5000,
    )
    assert response.response_json == '{"a":1}'
    assert await store.get_server_keys("other.example") == {}
    assert await store.get_key_responses("other.example") == []


async def test_direct_answer_replaces_even_with_shorter_validity(database: Any) -> None:
    """The server itself retiring a key (shorter validity) is believed."""
    store = ServerKeyStore(database)
    await store.store_server_keys("r", "r", 1000, "{}", 9000, {"ed25519:a": ("AAAA", 9000)})
    await store.store_server_keys("r", "r", 2000, "{}", 9500, {"ed25519:a": ("AAAA", 1500)})
    key = (await store.get_server_keys("r"))["ed25519:a"]
    assert (key.valid_until_ts, key.fetched_ts) == (1500, 2000)


async def test_notary_answer_only_extends_a_known_key(database: Any) -> None:
    """A notary may add keys and extend validity, but not shorten it or swap the public key."""
    store = ServerKeyStore(database)
    await store.store_server_keys("r", "r", 1000, "{}", 5000, {"ed25519:a": ("AAAA", 5000)})
    # Shorter validity from a notary: ignored.
    await store.store_server_keys("r", "notary", 2000, "{}", 4000, {"ed25519:a": ("AAAA", 4000)})
    assert (await store.get_server_keys("r"))["ed25519:a"].valid_until_ts == 5000
    # Another public key under the same ID: ignored.
    await store.store_server_keys("r", "notary", 2000, "{}", 8000, {"ed25519:a": ("ZZZZ", 8000)})
    assert (await store.get_server_keys("r"))["ed25519:a"].verify_key == "AAAA"
    # Longer validity, same key: taken. A new key: added.
    await store.store_server_keys(
        "r", "notary", 3000, "{}", 7000, {"ed25519:a": ("AAAA", 7000), "ed25519:b": ("BBBB", 7000)}
    )
    keys = await store.get_server_keys("r")
    assert keys["ed25519:a"].valid_until_ts == 7000
    assert keys["ed25519:a"].from_server == "notary"
    assert keys["ed25519:b"].verify_key == "BBBB"


async def test_answers_are_kept_per_source_newest_first_by_validity(database: Any) -> None:
    store = ServerKeyStore(database)
    await store.store_server_keys("r", "r", 1000, '"direct"', 5000, {})
    await store.store_server_keys("r", "notary", 1500, '"notary"', 8000, {})
    # An older answer from the same source does not replace a newer one.
    await store.store_server_keys("r", "r", 500, '"stale"', 9000, {})
    responses = await store.get_key_responses("r")
    assert [(r.from_server, r.response_json) for r in responses] == [
        ("notary", '"notary"'),
        ("r", '"direct"'),
    ]
    await store.store_server_keys("r", "r", 2000, '"newer"', 6000, {})
    responses = await store.get_key_responses("r")
    assert [(r.from_server, r.response_json) for r in responses] == [
        ("notary", '"notary"'),
        ("r", '"newer"'),
    ]
