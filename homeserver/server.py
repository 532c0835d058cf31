"""HomeServer: the composition root that builds every component once.

Nothing else constructs long-lived components: each one gets its
dependencies through `__init__`, here, in dependency order. Tests build a
HomeServer from a test config and a reactor of their choice (and may pass a
clock of their own, to move time).

Background work runs as Twisted Services (`self.services`), started after
the database and stopped, in reverse order, before it closes.
"""

from __future__ import annotations

import logging
import os

from twisted.application.service import Service
from twisted.internet import defer
from twisted.internet.interfaces import IListeningPort

from homeserver.api.http import Site
from homeserver.api.resources import build_router
from homeserver.clock import Clock
from homeserver.config import HomeServerConfig
from homeserver.config.listeners import ListenerConfig
from homeserver.crypto.keyring import KeyRing
from homeserver.crypto.keys import read_signing_key_file, write_new_signing_key
from homeserver.crypto.notary import KeyNotary
from homeserver.crypto.server_keys import LocalServerKeys
from homeserver.crypto.tls import ReloadableServerTls, TlsLoadError
from homeserver.federation.auth import FederationAuthenticator
from homeserver.federation.backfill import FederationBackfiller
from homeserver.federation.backoff import RetrySchedule
from homeserver.federation.client import FederationClient
from homeserver.federation.queries import FederationQueries
from homeserver.federation.reads import FederationReadHandler
from homeserver.federation.receiver import FederationReceiver
from homeserver.federation.resident import ResidentMembership
from homeserver.federation.sender import FederationSender
from homeserver.handlers.account import AccountHandler
from homeserver.handlers.account_data import AccountDataHandler
from homeserver.handlers.admin_registration import SharedSecretRegistrar
from homeserver.handlers.admin_users import AdminUsersHandler
from homeserver.handlers.auth import AuthHandler
from homeserver.handlers.client_ips import ClientIpTracker
from homeserver.handlers.devices import DeviceHandler
from homeserver.handlers.discovery import DiscoveryHandler
from homeserver.handlers.event_persistence import EventPersister
from homeserver.handlers.event_serializer import EventSerializer
from homeserver.handlers.filtering import FilterHandler
from homeserver.handlers.housekeeping import AccountsHousekeeping
from homeserver.handlers.identity_server import IdentityServerClient
from homeserver.handlers.login import LoginHandler, LoginRatelimiters, PasswordStageChecker
from homeserver.handlers.mailer import Mailer
from homeserver.handlers.membership import MembershipHandler
from homeserver.handlers.notifier import Notifier
from homeserver.handlers.openid import OpenIdHandler
from homeserver.handlers.pagination import PaginationHandler
from homeserver.handlers.passwords import PasswordHasher, PasswordPolicy
from homeserver.handlers.profile import ProfileHandler
from homeserver.handlers.ratelimit import Ratelimiter
from homeserver.handlers.recaptcha import RecaptchaVerifier
from homeserver.handlers.registration import RegistrationHandler
from homeserver.handlers.registration_stages import (
    RecaptchaStageChecker,
    TermsStageChecker,
    ThreepidStageChecker,
    registration_flows,
)
from homeserver.handlers.registration_tokens import (
    RegistrationTokenHandler,
    RegistrationTokenStageChecker,
)
from homeserver.handlers.remote_membership import RemoteMembershipHandler
from homeserver.handlers.room_creation import RoomCreationHandler
from homeserver.handlers.room_directory import RoomDirectoryHandler
from homeserver.handlers.room_events import RoomEventHandler
from homeserver.handlers.room_stats import RoomStatsUpdater
from homeserver.handlers.room_upgrade import RoomUpgradeHandler
from homeserver.handlers.shared_secret_registration import SharedSecretRegistration
from homeserver.handlers.sync import SyncHandler
from homeserver.handlers.sync_rooms import LazyLoadedMembers, RoomEntryBuilder
from homeserver.handlers.threepids import ThreepidHandler
from homeserver.handlers.ui_auth import DummyStageChecker, UserInteractiveAuth
from homeserver.storage.database import Database
from homeserver.storage.room_storage import RoomStorage, create_events_stream
from homeserver.storage.stores import Storage
from homeserver.types.threepids import EMAIL, MSISDN

logger = logging.getLogger(__name__)


class StartupError(Exception):
    """The server cannot start; the message is one line for the operator."""


class HomeServer:
    config: HomeServerConfig
    clock: Clock
    database: Database
    storage: Storage
    room_storage: RoomStorage
    event_persister: EventPersister
    event_serializer: EventSerializer
    room_stats: RoomStatsUpdater
    room_directory: RoomDirectoryHandler
    message_limiter: Ratelimiter
    room_creation: RoomCreationHandler
    membership: MembershipHandler
    remote_membership: RemoteMembershipHandler
    room_upgrade: RoomUpgradeHandler
    room_events: RoomEventHandler
    pagination: PaginationHandler
    notifier: Notifier
    filters: FilterHandler
    account_data: AccountDataHandler
    sync: SyncHandler
    discovery: DiscoveryHandler
    client_ips: ClientIpTracker
    auth: AuthHandler
    hasher: PasswordHasher
    password_policy: PasswordPolicy
    login: LoginHandler
    ui_auth: UserInteractiveAuth
    devices: DeviceHandler
    mailer: Mailer
    recaptcha: RecaptchaVerifier
    threepids: ThreepidHandler
    registration_tokens: RegistrationTokenHandler
    registration: RegistrationHandler
    profile: ProfileHandler
    account: AccountHandler
    admin_users: AdminUsersHandler
    shared_secret_registration: SharedSecretRegistrar
    registration_token_validity_limiter: Ratelimiter
    housekeeping: AccountsHousekeeping
    federation_sender: FederationSender
    federation_receiver: FederationReceiver
    resident_membership: ResidentMembership
    federation_reads: FederationReadHandler
    backfiller: FederationBackfiller
    federation_queries: FederationQueries
    openid: OpenIdHandler
    services: list[Service]

    def __init__(
        self, config: HomeServerConfig, reactor: object, clock: Clock | None = None
    ) -> None:
        self.config = config
        self.reactor = reactor
        self.clock = clock or Clock(reactor)  # type: ignore[arg-type]
        self.signing_keys = self._load_signing_keys(config.server.signing_key_path)
        self.database = Database(
            reactor,
            config.database.engine_name,
            config.database.connect_args,
            config.database.cp_min,
            config.database.cp_max,
        )
        self.storage = Storage(self.database)
        self.discovery = DiscoveryHandler(config.server)

        # Rooms: their events and state, written through the one event persister.
        self.events_stream = create_events_stream(self.database)
        self.room_storage = RoomStorage(self.database, self.events_stream)
        self.event_persister = EventPersister(
            self.room_storage,
            self.clock,
            config.server.server_name,
            self.signing_key,  # type: ignore[arg-type]
        )
        self.event_serializer = EventSerializer(self.room_storage, self.clock)
        self.pagination = PaginationHandler(self.room_storage, self.event_serializer)
        # The room directory: aliases, publication, and the room summaries it lists.
        self.room_stats = RoomStatsUpdater(
            self.clock, self.room_storage.room_stats, self.room_storage.events.current_token
        )
        self.event_persister.add_listener(self.room_stats.on_new_events)
        self.room_directory = RoomDirectoryHandler(
            config.server.server_name,
            self.room_storage,
            self.storage.users,
            self.event_persister,
            self.room_stats,
            enable_room_list_search=config.rooms.enable_room_list_search,
        )

        # Sync: filters and account data, and the notifier that wakes long-polling /syncs.
        self.notifier = Notifier(
            self.clock,
            self.room_storage.events.current_token,
            self.storage.account_data.current_token,
        )
        self.event_persister.add_listener(self.notifier.notify_new_room_events)
        self.filters = FilterHandler(self.storage.filters)
        self.account_data = AccountDataHandler(self.storage.account_data, self.notifier)
        self.sync = SyncHandler(
            self.clock,
            self.room_storage,
            self.storage.sync,
            self.storage.account_data,
            self.notifier,
            RoomEntryBuilder(
                self.room_storage, self.storage.sync, self.event_serializer, LazyLoadedMembers()
            ),
        )

        # Accounts: tokens, passwords, logins, UIA, devices, 3PIDs, registration, profiles.
        self._build_accounts(config, reactor)
        self.services.append(self.room_stats)

        # Rooms made and joined: creation, membership, upgrades (after accounts: they
        # read profiles, and profile changes reach the rooms through the membership).
        # rc_message counts every event a user sends, whichever endpoint sends it.
        self.message_limiter = Ratelimiter(
            self.clock, config.ratelimits.rc_message, name="rc_message"
        )
        self.room_creation = RoomCreationHandler(
            config.server.server_name,
            self.clock,
            self.signing_key,  # type: ignore[arg-type]
            self.event_persister,
            self.storage.profiles,
            self.room_directory,
            self.message_limiter,
            config.rooms.default_room_version,
        )
        self.membership = MembershipHandler(
            config.server.server_name,
            self.room_storage,
            self.event_persister,
            self.storage.profiles,
            self.room_directory,
            self.message_limiter,
        )
        self.profile.add_change_listener(self.membership.propagate_profile)
        self.membership.use_remote(self.remote_membership)
        self.room_upgrade = RoomUpgradeHandler(
            config.server.server_name,
            self.clock,
            self.room_storage,
            self.event_persister,
            self.room_creation,
            self.room_directory,
            self.message_limiter,
        )
        # Events clients send and read one at a time: messages, state, redactions.
        self.room_events = RoomEventHandler(
            self.room_storage,
            self.event_persister,
            self.event_serializer,
            self.message_limiter,
            self.room_directory,
        )

        self.sites: list[Site] = []
        self.listening_ports: list[IListeningPort] = []
        self._server_tls: ReloadableServerTls | None = None

    def _build_accounts(self, config: HomeServerConfig, reactor: object) -> None:
        server_name = config.server.server_name
        clock = self.clock
        storage = self.storage
        limits = config.ratelimits
        self.client_ips = ClientIpTracker(clock, storage.devices, storage.tokens)
        self.auth = AuthHandler(clock, storage, self.client_ips, config.registration)
        self.hasher = PasswordHasher(reactor, config.auth.bcrypt_rounds, config.auth.pepper)
        self.password_policy = PasswordPolicy(config.auth.policy)
        self.mailer = Mailer(reactor, clock, config.email, config.server)
        self.recaptcha = RecaptchaVerifier(reactor, clock, config.captcha)
        msisdn_delegate = config.registration.msisdn_delegate
        identity_server = None
        if msisdn_delegate is not None:
            assert config.server.public_baseurl is not None  # checked with the config
            identity_server = IdentityServerClient(
                reactor, clock, msisdn_delegate, config.server.public_baseurl
            )
        self.threepids = ThreepidHandler(
            clock,
            storage,
            self.mailer,
            config.email,
            config.registration,
            Ratelimiter(clock, limits.rc_3pid_validation, name="rc_3pid_validation.ip"),
            Ratelimiter(clock, limits.rc_3pid_validation, name="rc_3pid_validation.address"),
            identity_server,
        )
        self.login = LoginHandler(
            server_name,
            clock,
            storage,
            self.auth,
            self.hasher,
            config.auth,
            config.registration,
            LoginRatelimiters(
                address=Ratelimiter(clock, limits.rc_login_address, name="rc_login.address"),
                account=Ratelimiter(clock, limits.rc_login_account, name="rc_login.account"),
                failed_attempts=Ratelimiter(
                    clock, limits.rc_login_failed_attempts, name="rc_login.failed_attempts"
                ),
            ),
        )
        self.login.add_identifier_resolver("m.id.thirdparty", self.threepids.resolve_thirdparty)
        self.login.add_identifier_resolver("m.id.phone", self.threepids.resolve_phone)
        self.ui_auth = UserInteractiveAuth(
            clock,
            storage.ui_auth,
            storage.users,
            [DummyStageChecker(), PasswordStageChecker(self.login)],
            password_reauth_enabled=config.auth.password_reauth_enabled,
        )
        self.devices = DeviceHandler(storage, self.client_ips, self.auth)

        # Registration: its flows, and a checker for each stage they use.
        self.registration_tokens = RegistrationTokenHandler(clock, storage.registration_tokens)
        self.ui_auth.add_checker(
            RegistrationTokenStageChecker(clock, storage.registration_tokens, self.ui_auth)
        )
        if config.consent.require_at_registration:
            self.ui_auth.add_checker(TermsStageChecker(config.consent))
        if self.recaptcha.is_enabled():
            self.ui_auth.add_checker(RecaptchaStageChecker(self.recaptcha))
        if self.mailer.enabled:
            self.ui_auth.add_checker(ThreepidStageChecker(self.threepids, EMAIL))
        msisdn_registration = (
            identity_server is not None and not config.registration.disable_msisdn_registration
        )
        if identity_server is not None:
            self.ui_auth.add_checker(ThreepidStageChecker(self.threepids, MSISDN))
        flows = registration_flows(
            require_3pid=config.registration.registrations_require_3pid,
            email=self.mailer.enabled,
            msisdn=msisdn_registration,
            terms=config.consent.require_at_registration,
            recaptcha=self.recaptcha.is_enabled(),
            token=config.registration.registration_requires_token,
        )
        self.registration = RegistrationHandler(
            server_name,
            clock,
            config.registration,
            storage,
            self.ui_auth,
            self.login,
            self.auth,
            self.hasher,
            self.password_policy,
            Ratelimiter(clock, limits.rc_registration, name="rc_registration"),
            self.threepids,
            self.registration_tokens,
            flows,
        )
        self.registration_token_validity_limiter = Ratelimiter(
            clock, limits.rc_registration_token_validity, name="rc_registration_token_validity"
        )
        self.profile = ProfileHandler(server_name, storage)
        self.openid = OpenIdHandler(server_name, clock, storage.openid)
        self.account = AccountHandler(
            storage, self.ui_auth, self.hasher, self.password_policy, config.auth, self.threepids
        )
        self.admin_users = AdminUsersHandler(
            server_name,
            clock,
            storage,
            self.registration,
            self.account,
            self.devices,
            self.threepids,
            self.hasher,
        )
        self.shared_secret_registration = SharedSecretRegistrar(
            SharedSecretRegistration(clock, config.registration_secret.registration_shared_secret),
            self.registration,
            self.login,
            self.hasher,
        )
        self.housekeeping = AccountsHousekeeping(
            clock, self.ui_auth, storage.tokens, self.threepids
        )
        self.services = [self.client_ips, self.housekeeping]

        fed = config.federation
        self.local_keys = LocalServerKeys(
            server_name,
            self.signing_keys,  # type: ignore[arg-type]
            fed.old_signing_keys,
            fed.key_refresh_interval_ms,
            clock,
        )
        self.federation_client = FederationClient(
            reactor,
            clock,
            self.local_keys,
            verify_certificates=fed.verify_certificates,
            minimum_tls_version=fed.client_minimum_tls_version,
            ip_blocklist=fed.ip_range_blocklist,
            ip_allowlist=fed.ip_range_allowlist,
        )
        self.keyring = KeyRing(
            clock,
            storage.server_keys,
            self.federation_client,
            self.local_keys,
            fed.trusted_key_servers,
        )
        self.key_notary = KeyNotary(clock, storage.server_keys, self.keyring, self.local_keys)
        # Our users' joins, leaves, knocks and invites that go through other servers.
        self.remote_membership = RemoteMembershipHandler(
            server_name,
            clock,
            self.signing_key,  # type: ignore[arg-type]
            self.room_storage,
            self.event_persister,
            self.federation_client,
            self.keyring,
            storage.sync,
        )
        # Other servers' aliases, profiles and room directories, for our clients.
        self.federation_queries = FederationQueries(clock, self.federation_client)
        self.room_directory.use_federation(self.federation_queries)
        self.profile.use_federation(self.federation_queries)
        self.federation_authenticator = FederationAuthenticator(
            server_name, clock, self.keyring
        )
        # Our events and EDUs to the other servers in our rooms, queued per destination.
        self.federation_sender = FederationSender(
            server_name,
            clock,
            self.room_storage,
            self.room_storage.federation_sender,
            self.federation_client,
            self.event_serializer.get_applied_redactions,
            RetrySchedule(
                fed.destination_min_retry_interval_ms,
                fed.destination_retry_multiplier,
                fed.destination_max_retry_interval_ms,
            ),
        )
        self.event_persister.add_listener(self.federation_sender.on_events_persisted)
        self.services.append(self.federation_sender)
        # Transactions other servers send us: PDUs checked and stored, EDUs dispatched.
        self.federation_receiver = FederationReceiver(
            clock,
            self.room_storage,
            self.event_persister,
            self.keyring,
            self.federation_client,
        )
        self.services.append(self.federation_receiver)
        self.federation_receiver.add_origin_listener(self.federation_sender.on_remote_server_up)
        # Other servers' users joining, leaving and knocking on our rooms; invites of ours.
        self.resident_membership = ResidentMembership(
            server_name,
            self.signing_key,  # type: ignore[arg-type]
            self.room_storage,
            self.event_persister,
            self.keyring,
            storage.sync,
            self.federation_receiver.server_allowed_in_room,
            storage.users,
        )
        # Other servers' reads of our rooms, and our backfill of rooms from them.
        self.federation_reads = FederationReadHandler(
            server_name,
            clock,
            self.room_storage,
            self.event_serializer.get_applied_redactions,
            self.federation_receiver.server_allowed_in_room,
        )
        self.backfiller = FederationBackfiller(
            server_name,
            self.room_storage,
            self.federation_client,
            self.keyring,
            self.event_persister,
            self.federation_receiver.gaps,
        )
        self.pagination.backfiller = self.backfiller
        key_server_warning = fed.key_server_warning()
        if key_server_warning:
            logger.warning("%s", key_server_warning)

    @staticmethod
    def _load_signing_keys(path: str) -> list[object]:
        if not os.path.exists(path):
            logger.info("Writing a new signing key to %s", path)
            write_new_signing_key(path)
        return list(read_signing_key_file(path))

    @property
    def signing_key(self) -> object:
        """The key this server signs with now (the last one in the key file)."""
        return self.signing_keys[-1]

    async def start(self) -> None:
        """Open the database (applying migrations) and start listening."""
        await self.database.start()
        await self.events_stream.load()
        await self.storage.account_data.stream.load()
        for service in self.services:
            service.startService()
        for listener in self.config.listeners.listeners:
            self._listen(listener)

    def _listen(self, listener: ListenerConfig) -> None:
        router = build_router(listener.resources, self, listener.compressed_resources)
        site = Site(
            router,
            self.config.server.max_request_size,
            name=f"port {listener.port}",
            x_forwarded=listener.x_forwarded,
        )
        self.sites.append(site)
        context_factory = self._tls_context_factory() if listener.tls else None
        for address in listener.bind_addresses:
            try:
                if context_factory is not None:
                    port = self.reactor.listenSSL(  # type: ignore[attr-defined]
                        listener.port, site, context_factory, interface=address
                    )
                else:
                    port = self.reactor.listenTCP(listener.port, site, interface=address)  # type: ignore[attr-defined]
            except Exception as e:
                raise StartupError(f"cannot listen on {address} port {listener.port}: {e}") from e
            self.listening_ports.append(port)
            logger.info(
                "Listening on %s port %d (%s) for %s",
                address,
                port.getHost().port,
                "https" if listener.tls else "http",
                ", ".join(sorted(listener.resources)),
            )

    def _tls_context_factory(self) -> ReloadableServerTls:
        if self._server_tls is None:
            cert_path = self.config.listeners.tls_certificate_path
            key_path = self.config.listeners.tls_private_key_path
            assert cert_path and key_path
            try:
                self._server_tls = ReloadableServerTls(cert_path, key_path)
            except TlsLoadError as e:
                raise StartupError(str(e)) from e
        return self._server_tls

    def reload_tls(self) -> None:
        """Re-read the TLS certificate and key (SIGHUP); a broken pair keeps the current one."""
        if self._server_tls is None:
            return
        try:
            self._server_tls.reload()
        except TlsLoadError as e:
            logger.error("Keeping the current TLS certificate: %s", e)
            return
        logger.info("Reloaded the TLS certificate")

    async def stop(self, drain_timeout: float = 10.0) -> None:
        """Stop accepting, let requests in flight finish (up to drain_timeout), close the database."""
        await defer.gatherResults(
            [defer.maybeDeferred(port.stopListening) for port in self.listening_ports],
            consumeErrors=True,
        )
        self.listening_ports = []
        # Long-polling /syncs answer now rather than hold up the drain below.
        self.notifier.stop()
        in_flight = sum(len(site.in_flight) for site in self.sites)
        if in_flight:
            logger.info("Waiting up to %.0fs for %d requests in flight", drain_timeout, in_flight)
            idle = defer.gatherResults([site.wait_until_idle() for site in self.sites])
            try:
                await self.clock.timeout(idle, drain_timeout)
            except defer.TimeoutError:
                logger.warning("Shutting down with requests still in flight")
        closed = defer.gatherResults([site.close_connections() for site in self.sites])
        try:
            await self.clock.timeout(closed, 2.0)
        except defer.TimeoutError:
            logger.warning("Some connections did not close in time")
        await self.event_persister.wait_until_idle()
        for service in reversed(self.services):
            if service.running:
                stopped = service.stopService()
                if stopped is not None:
                    await stopped
        await self.federation_client.close()
        await self.database.close()
