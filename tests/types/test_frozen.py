"""Deeply immutable JSON values used inside events."""

from __future__ import annotations

import copy
import json
import pickle
from collections.abc import Callable

import pytest

from homeserver.types.canonical_json import encode_canonical_json
from homeserver.types.frozen import FrozenDict, FrozenList, freeze, thaw


def test_every_mutator_is_refused() -> None:
    """All mutating methods of the frozen dict and list raise TypeError."""
    d = freeze({"a": [1, {"b": 2}]})
    lst = d["a"]
    attempts: list[Callable[[], object]] = [
        lambda: d.__setitem__("x", 1),
        lambda: d.__delitem__("a"),
        lambda: d.update(x=1),
        lambda: d.setdefault("x", 1),
        lambda: d.pop("a"),
        lambda: d.popitem(),
        lambda: d.clear(),
        lambda: lst.append(1),
        lambda: lst.extend([1]),
        lambda: lst.insert(0, 1),
        lambda: lst.pop(),
        lambda: lst.remove(1),
        lambda: lst.sort(),
        lambda: lst.reverse(),
        lambda: lst.clear(),
        lambda: lst.__setitem__(0, 2),
        lambda: lst.__delitem__(0),
        lambda: lst[1].__setitem__("b", 3),
    ]
    for attempt in attempts:
        with pytest.raises(TypeError, match="immutable"):
            attempt()
    assert d == {"a": [1, {"b": 2}]}


def test_in_place_operators_refused() -> None:
    """`|=`, `+=` and `*=` cannot change a frozen value."""
    d = freeze({"a": [1]})
    with pytest.raises(TypeError):
        d |= {"x": 1}
    lst = freeze([1])
    with pytest.raises(TypeError):
        lst += [2]
    with pytest.raises(TypeError):
        lst *= 2


def test_frozen_values_are_still_dicts_and_lists_for_json() -> None:
    """Frozen values pass isinstance(dict/list) and encode like the originals."""
    original = {"b": [1, {"c": None}], "a": "x"}
    frozen = freeze(original)
    assert isinstance(frozen, dict) and isinstance(frozen["b"], list)
    assert isinstance(frozen, FrozenDict) and isinstance(frozen["b"], FrozenList)
    assert encode_canonical_json(frozen) == encode_canonical_json(original)
    assert json.loads(json.dumps(frozen)) == original


def test_thaw_deepcopy_and_pickle_give_usable_copies() -> None:
    """thaw and deepcopy give plain mutable copies; pickling round-trips to a frozen value."""
    frozen = freeze({"a": [1, {"b": 2}]})
    for copy_ in (thaw(frozen), copy.deepcopy(frozen)):
        assert type(copy_) is dict and type(copy_["a"]) is list
        copy_["a"].append(3)
    assert frozen == {"a": [1, {"b": 2}]}
    restored = pickle.loads(pickle.dumps(frozen))
    assert isinstance(restored, FrozenDict) and restored == frozen
    assert copy.copy(frozen) is frozen


def test_tuples_become_lists() -> None:
    """Tuples are frozen to FrozenList and thawed to list (JSON has only arrays)."""
    assert thaw(freeze({"t": (1, 2)})) == {"t": [1, 2]}
