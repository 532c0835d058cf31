"""Checks on the migration files themselves (no database needed).

SHIPPED_DELTAS pins the content of every delta committed so far: databases out
there have run them and never will again, so a change must be a new delta. When
you add one, add its hash here (the failure message prints it).
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

import homeserver.storage.schema
from homeserver.storage.prepare import PACKAGED_SCHEMA
from homeserver.storage.schema import SCHEMA_VERSION

SCHEMA_DIR = Path(homeserver.storage.schema.__file__).parent

SHIPPED_DELTAS = {
    "delta/1/01_schema_version.sql": (
        "3cb50feb657b116463deac1b14d3e4505b2c49a07462f2b9dccc38a67be9fd9a"
    ),
    "delta/2/01_stream_positions.sql": (
        "4390c7e9611ec00b1c92848ff9d569004f8b3146667975bb47bf0331843a3984"
    ),
    "delta/3/01_users.sql": (
        "0b9da436e94771155fc9306395cd4a8c33ae80f7895c92235f6662bb19c9ed29"
    ),
    "delta/3/02_devices.sql": (
        "1f11e4f26bccefb0eb99f58484f2bd8d859adf152dcf54a06d13d881b786ee11"
    ),
    "delta/3/03_tokens.sql": (
        "cb38ac8add4922a4552ca1b9c181e6f6949ce2d8568a95d2e5be5b7b055e120e"
    ),
    "delta/3/04_ui_auth.sql": (
        "e2b3bbebe3b072443c07ed7d2ae0cb830831e1bf0c3b3f37c00623e29425446d"
    ),
    "delta/3/05_profiles.sql": (
        "88258e7e188f0690460cc2d72e233e66dd363a430464078991c9eb81bc413874"
    ),
}


def _delta_hashes() -> dict[str, str]:
    return {
        path.relative_to(SCHEMA_DIR).as_posix(): hashlib.sha256(
            path.read_bytes().replace(b"\r\n", b"\n")
        ).hexdigest()
        for path in sorted((SCHEMA_DIR / "delta").rglob("*"))
        if path.is_file() and "__pycache__" not in path.parts
    }


def test_shipped_deltas_are_unchanged() -> None:
    """Every delta file is pinned in SHIPPED_DELTAS with its exact content."""
    actual = _delta_hashes()
    problems = [
        f"{name}: sha256 {digest}" + ("" if name not in SHIPPED_DELTAS else " (EDITED)")
        for name, digest in actual.items()
        if SHIPPED_DELTAS.get(name) != digest
    ]
    problems += [f"{name}: missing" for name in SHIPPED_DELTAS if name not in actual]
    assert not problems, (
        "Shipped deltas must never change (write a new delta instead); new deltas must be"
        " added to SHIPPED_DELTAS:\n" + "\n".join(problems)
    )


def test_every_version_has_a_delta() -> None:
    """delta/1 .. delta/SCHEMA_VERSION all exist and snapshots are not newer than the code."""
    PACKAGED_SCHEMA.check()


def test_schema_version_log_mentions_each_version() -> None:
    """The SCHEMA_VERSION docstring log has a line for every version."""
    doc = homeserver.storage.schema.__doc__ or ""
    for version in range(1, SCHEMA_VERSION + 1):
        assert re.search(rf"^\s+{version}: \S", doc, re.MULTILINE), f"no log line for {version}"
