"""Which servlets a listener serves, from the resource names in its config."""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

from homeserver.api.admin.registration_tokens import (
    NewRegistrationTokenServlet,
    RegistrationTokenServlet,
    RegistrationTokensServlet,
)
from homeserver.api.admin.server import ServerVersionServlet, SharedSecretRegisterServlet
from homeserver.api.admin.users import (
    DeactivateServlet as AdminDeactivateServlet,
)
from homeserver.api.admin.users import (
    ResetPasswordServlet,
    UserDevicesServlet,
    UserServlet,
    UsersServlet,
)
from homeserver.api.client.account import DeactivateServlet, PasswordServlet, WhoamiServlet
from homeserver.api.client.account_data import AccountDataServlet, RoomAccountDataServlet
from homeserver.api.client.devices import DeleteDevicesServlet, DeviceServlet, DevicesServlet
from homeserver.api.client.directory import directory_servlets
from homeserver.api.client.filter import CreateFilterServlet, FilterServlet
from homeserver.api.client.login import LoginServlet, LoginTokenServlet, RefreshServlet
from homeserver.api.client.logout import LogoutAllServlet, LogoutServlet
from homeserver.api.client.membership import membership_servlets
from homeserver.api.client.messages import (
    RoomEventContextServlet,
    RoomMessagesServlet,
    TimestampToEventServlet,
)
from homeserver.api.client.openid import OpenIdRequestTokenServlet
from homeserver.api.client.profile import ProfileFieldServlet, ProfileServlet
from homeserver.api.client.register import (
    RegisterAvailableServlet,
    RegisterServlet,
    RegistrationTokenValidityServlet,
)
from homeserver.api.client.room_events import room_event_servlets
from homeserver.api.client.rooms_create import CreateRoomServlet, UpgradeRoomServlet
from homeserver.api.client.submit_token import (
    AddThreepidSubmitTokenServlet,
    MsisdnSubmitTokenServlet,
    PasswordResetSubmitTokenServlet,
    RegistrationSubmitTokenServlet,
)
from homeserver.api.client.sync import SyncServlet
from homeserver.api.client.tags import TagServlet, TagsServlet
from homeserver.api.client.threepids import threepid_servlets
from homeserver.api.client.versions import VersionsServlet
from homeserver.api.discovery import ClientWellKnownServlet, ServerWellKnownServlet
from homeserver.api.health import HealthServlet, MetricsServlet
from homeserver.api.http import Router, Servlet
from homeserver.federation.keys import BulkKeyQueryServlet, KeyQueryServlet, ServerKeyServlet
from homeserver.federation.membership_servlets import resident_membership_servlets
from homeserver.federation.query_servlets import query_servlets
from homeserver.federation.read_servlets import federation_read_servlets
from homeserver.federation.server import FederationVersionServlet
from homeserver.federation.transaction_servlet import FederationSendServlet

if TYPE_CHECKING:
    from homeserver.server import HomeServer


def client_servlets(hs: HomeServer) -> list[Servlet]:
    """The /_matrix/client servlets, built with their handlers."""
    server_name = hs.config.server.server_name
    servlets: list[Servlet] = [
        VersionsServlet(),
        ClientWellKnownServlet(hs.discovery),
        RegisterServlet(hs.registration, server_name),
        RegisterAvailableServlet(hs.registration),
        LoginServlet(hs.login, hs.discovery, server_name),
        RefreshServlet(hs.auth),
        LogoutServlet(hs.devices),
        LogoutAllServlet(hs.devices),
        WhoamiServlet(),
        PasswordServlet(hs.account),
        DeactivateServlet(hs.account),
        DevicesServlet(hs.devices),
        DeviceServlet(hs.devices, hs.ui_auth),
        DeleteDevicesServlet(hs.devices, hs.ui_auth),
        ProfileServlet(hs.profile),
        ProfileFieldServlet(hs.profile),
        SyncServlet(hs.sync, hs.filters),
        CreateFilterServlet(hs.filters),
        FilterServlet(hs.filters),
        AccountDataServlet(hs.account_data),
        RoomAccountDataServlet(hs.account_data),
        TagsServlet(hs.account_data),
        TagServlet(hs.account_data),
        RoomMessagesServlet(hs.pagination),
        RoomEventContextServlet(hs.pagination),
        TimestampToEventServlet(hs.pagination),
        OpenIdRequestTokenServlet(hs.openid),
    ]
    registration = hs.config.registration
    if registration.login_via_existing_session:
        servlets.append(
            LoginTokenServlet(
                hs.login, hs.ui_auth, registration.login_via_existing_session_requires_ui_auth
            )
        )
    servlets += threepid_servlets(hs.threepids, hs.ui_auth)
    servlets += directory_servlets(hs.room_directory, hs.config.server.server_name)
    servlets += [CreateRoomServlet(hs.room_creation), UpgradeRoomServlet(hs.room_upgrade)]
    servlets += membership_servlets(hs.membership)
    servlets += room_event_servlets(hs.room_events, hs.membership)
    servlets += [
        RegistrationTokenValidityServlet(
            hs.registration_tokens,
            hs.registration_token_validity_limiter,
            registration.enable_registration,
        ),
        RegistrationSubmitTokenServlet(hs.threepids),
        AddThreepidSubmitTokenServlet(hs.threepids),
        PasswordResetSubmitTokenServlet(hs.threepids),
    ]
    if hs.threepids.identity_server is not None:
        servlets.append(MsisdnSubmitTokenServlet(hs.threepids))
    return servlets + admin_servlets(hs)


def admin_servlets(hs: HomeServer) -> list[Servlet]:
    """The /_synapse/admin servlets (served with `client`, as Synapse does)."""
    admin = hs.admin_users
    return [
        SharedSecretRegisterServlet(hs.shared_secret_registration, hs.config.server.server_name),
        ServerVersionServlet(admin),
        UsersServlet(admin),
        UserServlet(admin),
        UserDevicesServlet(admin),
        AdminDeactivateServlet(admin),
        ResetPasswordServlet(admin),
        RegistrationTokensServlet(admin, hs.registration_tokens),
        NewRegistrationTokenServlet(admin, hs.registration_tokens),
        RegistrationTokenServlet(admin, hs.registration_tokens),
    ]


def build_router(
    resource_names: Iterable[str], hs: HomeServer, compressed: Iterable[str] = ()
) -> Router:
    """A Router serving the named resources (`client`, `federation`, `metrics`, ...).

    Servlets of the resources in `compressed` gzip their responses for clients
    that accept it. /health is served on every listener, as load balancers
    expect it anywhere. `media` adds its servlets once that API exists; until
    then its paths answer 404 M_UNRECOGNIZED like any unknown path.
    """
    names = set(resource_names)
    gzipped = set(compressed)
    groups: list[tuple[bool, list[Servlet]]] = [(False, [HealthServlet()])]
    if names & {"client", "federation"}:
        groups.append(
            (bool(gzipped & {"client", "federation"}), [ServerWellKnownServlet(hs.discovery)])
        )
    if "client" in names:
        groups.append(("client" in gzipped, client_servlets(hs)))
    if names & {"keys", "federation"}:
        # Synapse serves /_matrix/key on both, and its peers fetch keys from the federation port.
        groups.append(
            (
                bool(gzipped & {"keys", "federation"}),
                [
                    ServerKeyServlet(hs.local_keys),
                    KeyQueryServlet(hs.key_notary),
                    BulkKeyQueryServlet(hs.key_notary),
                ],
            )
        )
    if "federation" in names:
        groups.append(
            (
                "federation" in gzipped,
                [FederationVersionServlet(), FederationSendServlet(hs.federation_receiver)]
                + query_servlets(
                    hs.config.server.server_name, hs.room_directory, hs.profile, hs.openid
                )
                + federation_read_servlets(hs.federation_reads)
                + resident_membership_servlets(hs.resident_membership),
            )
        )
    if "metrics" in names:
        groups.append(("metrics" in gzipped, [MetricsServlet()]))
    router = Router(hs.auth, hs.federation_authenticator)
    for compress, servlets in groups:
        for servlet in servlets:
            router.register(servlet, compress=compress)
    return router
