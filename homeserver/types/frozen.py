"""Deeply immutable JSON values, so a built event cannot change under its hashes.

Not a spec concern: a helper for `homeserver.types.events`. `FrozenDict` and
`FrozenList` are subclasses of `dict` and `list` (so `isinstance(x, dict)`
checks and the JSON encoders keep working) whose mutating methods raise
`TypeError`. `freeze` converts a decoded JSON value; `thaw` returns a fresh,
mutable deep copy.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, NoReturn


def _readonly(self: object, *args: Any, **kwargs: Any) -> NoReturn:
    raise TypeError(f"{type(self).__name__} is immutable; use thaw() for a mutable copy")


class FrozenDict(dict[str, Any]):
    """A dict that cannot be changed after construction (values frozen too)."""

    __slots__ = ()

    __setitem__ = _readonly
    __delitem__ = _readonly
    __ior__ = _readonly
    clear = _readonly
    pop = _readonly
    popitem = _readonly
    setdefault = _readonly
    update = _readonly

    def __copy__(self) -> FrozenDict:
        return self

    def __deepcopy__(self, memo: dict[int, Any]) -> dict[str, Any]:
        # A deep copy is for mutating: hand back plain containers.
        return thaw(self)  # type: ignore[no-any-return]

    def __reduce__(self) -> tuple[Any, ...]:
        return (_rebuild_dict, (thaw(self),))


class FrozenList(list[Any]):
    """A list that cannot be changed after construction (items frozen too)."""

    __slots__ = ()

    __setitem__ = _readonly
    __delitem__ = _readonly
    __iadd__ = _readonly
    __imul__ = _readonly
    append = _readonly
    extend = _readonly
    insert = _readonly
    pop = _readonly
    remove = _readonly
    reverse = _readonly
    sort = _readonly
    clear = _readonly

    def __copy__(self) -> FrozenList:
        return self

    def __deepcopy__(self, memo: dict[int, Any]) -> list[Any]:
        return thaw(self)  # type: ignore[no-any-return]

    def __reduce__(self) -> tuple[Any, ...]:
        return (_rebuild_list, (thaw(self),))


def _rebuild_dict(value: dict[str, Any]) -> FrozenDict:
    return freeze_mapping(value)


def _rebuild_list(value: list[Any]) -> FrozenList:
    result = freeze(value)
    assert isinstance(result, FrozenList)
    return result


def freeze(value: Any) -> Any:
    """A deeply immutable copy of a JSON value (dicts -> FrozenDict, lists/tuples -> FrozenList)."""
    if isinstance(value, (FrozenDict, FrozenList)):
        return value
    if isinstance(value, Mapping):
        d = FrozenDict()
        for k, v in value.items():
            dict.__setitem__(d, k, freeze(v))
        return d
    if isinstance(value, (list, tuple)):
        lst = FrozenList()
        list.extend(lst, (freeze(v) for v in value))
        return lst
    return value


def freeze_mapping(value: Mapping[str, Any]) -> FrozenDict:
    """`freeze` for a mapping, typed as such."""
    result = freeze(value)
    assert isinstance(result, FrozenDict)
    return result


def thaw(value: Any) -> Any:
    """A fresh mutable deep copy of a JSON value (mappings -> dict, lists/tuples -> list)."""
    if isinstance(value, Mapping):
        return {k: thaw(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [thaw(v) for v in value]
    return value
