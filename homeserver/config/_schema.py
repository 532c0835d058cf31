"""Checking a config document against the JSON schema, and filling in defaults.

The schema is assembled from one fragment per section (each section module
owns its fragment next to its typed model). Errors are turned into one line
each, naming the key path and what is wrong, because operators read them on a
terminal and a traceback tells them nothing.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable
from typing import Any

import jsonschema


class ConfigError(Exception):
    """The config cannot be used. `lines` holds one clear line per problem."""

    def __init__(self, lines: Iterable[str]) -> None:
        self.lines = list(lines)
        super().__init__("; ".join(self.lines))


def _path_text(path: Iterable[Any]) -> str:
    text = ""
    for part in path:
        if isinstance(part, int):
            text += f"[{part}]"
        else:
            text += f".{part}" if text else str(part)
    return text or "(top level)"


def _describe(error: jsonschema.ValidationError) -> str:
    where = _path_text(error.absolute_path)
    if error.validator == "additionalProperties":
        extra = sorted(set(error.instance) - set(error.schema.get("properties", {})))
        prefix = f"{where}." if error.absolute_path else ""
        return "; ".join(f"{prefix}{key}: unknown option" for key in extra)
    if error.validator == "required":
        missing = [k for k in error.validator_value if k not in error.instance]
        prefix = f"{where}." if error.absolute_path else ""
        return "; ".join(f"{prefix}{key}: required option is missing" for key in missing)
    if error.validator == "type":
        wanted = error.validator_value
        wanted_text = " or ".join(wanted) if isinstance(wanted, list) else wanted
        return f"{where}: expected {wanted_text}, got {error.instance!r}"
    if error.validator == "enum":
        allowed = ", ".join(repr(v) for v in error.validator_value)
        return f"{where}: {error.instance!r} is not one of {allowed}"
    return f"{where}: {error.message}"


def validate(schema: dict[str, Any], document: Any) -> None:
    """Raise ConfigError listing every problem with `document`, one line each."""
    validator = jsonschema.Draft202012Validator(schema)
    errors = sorted(validator.iter_errors(document), key=lambda e: list(map(str, e.absolute_path)))
    if errors:
        lines: list[str] = []
        for error in errors:
            # For oneOf/anyOf failures, the most specific sub-error names the real problem.
            best = jsonschema.exceptions.best_match([error]) if error.context else error
            for line in _describe(best).split("; "):
                if line not in lines:
                    lines.append(line)
        raise ConfigError(lines)


def with_defaults(schema: dict[str, Any], document: Any) -> Any:
    """A copy of `document` with every absent property that has a schema default filled in.

    Applied after validation, so section models can read every option they use
    by key: an option read by code but missing from the schema fails loudly.
    """
    document = copy.deepcopy(document)
    _fill(schema, document)
    return document


def _fill(schema: dict[str, Any], value: Any) -> None:
    if isinstance(value, dict):
        for key, sub in schema.get("properties", {}).items():
            if key not in value and "default" in sub:
                value[key] = copy.deepcopy(sub["default"])
            if key in value:
                _fill(sub, value[key])
    elif isinstance(value, list) and isinstance(schema.get("items"), dict):
        for item in value:
            _fill(schema["items"], item)


def option_paths(schema: dict[str, Any], prefix: str = "") -> list[str]:
    """Every option the schema defines, as dotted paths (`[]` marks list items)."""
    paths: list[str] = []
    for key, sub in schema.get("properties", {}).items():
        path = f"{prefix}{key}"
        paths.append(path)
        paths.extend(option_paths(sub, path + "."))
        if isinstance(sub.get("items"), dict):
            paths.extend(option_paths(sub["items"], path + "[]."))
    return paths
