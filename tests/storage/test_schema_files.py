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
    # Third-party identifiers and registration tokens (issue 4).
    "delta/4/01_threepids.sql": (
        "d2b7fff50206dead4e0d0620132e07b6fa7836be79f8eab69bcfd5d0b5fb1311"
    ),
    "delta/4/02_registration_tokens.sql": (
        "e1609ac8f5e0df8e7f954ab699bc7cfb1e1ca4e6ce15ff0c061f14f321cac54f"
    ),
    # Events and state storage (issue 5).
    "delta/5/01_events.sql": (
        "c57633e14a5c60fed9acd95ce3bd04312417baef44fdb0215bbc170207938126"
    ),
    "delta/5/01_events_stream.postgres.sql": (
        "325ed4a5e59613a963accf821b440fcb123930277c8ae8252c81f963a8c72a23"
    ),
    "delta/5/02_state_groups.postgres.sql": (
        "463afd125080dc07598187866843714bad36a364f28ca78874b4213368d20cb9"
    ),
    "delta/5/02_state_groups.sqlite.sql": (
        "d0dfafce1cc52c44f6545ab1a8ec64e7b0fa0c103330d961b0d2f0b116d051d5"
    ),
    "delta/5/03_state.sql": (
        "4121a26ed8ded5a0c1a00c501674e5de52faad54bee9874dbca186f718920522"
    ),
    "delta/5/04_memberships.sql": (
        "31b0cb151ea91036d20c13cdb7d15579a53e0d0499a59fde236f830a66caa777"
    ),
    # Server keys (issue 6).
    "delta/6/01_server_keys.sql": (
        "bbcf9e5ee50c71e2c203d17a935e04caa3b26190a015745921c9fdb5d84bd856"
    ),
    # Rooms: transaction IDs, forgetting, account data, filters, pagination, the
    # directory (issue 5); the federation sender and receiver (issue 6).
    "delta/7/01_event_extras.sql": (
        "7a4f05f2c26bb37729cd838fdb068e1ac83ab8792001388854a021d199fe3254"
    ),
    "delta/8/01_forgotten_rooms.sql": (
        "bdadc00e422f2c9d002e6a08f46039f775bda789b1027ee5a17d808667dbcde4"
    ),
    "delta/9/01_account_data.sql": (
        "0c56f94d3bad28484e77a9666391f4220290d4e7718272fdb111ee3d127d53d9"
    ),
    "delta/9/01_account_data_stream.postgres.sql": (
        "ef6abeb9d85fae97aa32c0976d266c3b580bd7931fa245c3e811342c53545df1"
    ),
    "delta/9/02_user_filters.postgres.sql": (
        "1f221e297159216effde5e302d5626f9cde35c0fc44863499de0a8fcb9c1ea99"
    ),
    "delta/9/02_user_filters.sqlite.sql": (
        "f7acd43ceca205dca024b11b051d2b34982fc253b2f78126d5c33be7def2dc3e"
    ),
    "delta/10/01_events_by_timestamp.sql": (
        "c2237e7ba2742165cd5ca5259fd800761660104cddb0a3a8ab9ffdc510607e39"
    ),
    "delta/11/01_room_directory.sql": (
        "c2b84594664ba86a9cb943c866c78693db1bbbd38266c1076e2ee3390a778f60"
    ),
    "delta/12/01_federation_sender.sql": (
        "786a5bf231d371d29fe455038b2b1671a3ddbae5ee286149280a448d3061db61"
    ),
    "delta/13/01_received_transactions.sql": (
        "078f0fa2d12a4305c7341852b70dd6049464de00ba020da8c33a1b237f98d6af"
    ),
    "delta/13/02_soft_failed_events.sql": (
        "75e4a8ffe14aa3d9daea9ade82c05cc460878ef8e3e494559475f75ea6cfc38e"
    ),
    # OpenID tokens (issue 6).
    "delta/14/01_openid_tokens.sql": (
        "d64f7795a349a8de734cb6553f1b466e13659e461c807fa930048329c8232755"
    ),
    "delta/15/01_federation_relayed_events.sql": (
        "33ffb99dc89514049f640b6e68c34c2122dfa4f023c7633ebee3420a0542b24a"
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
