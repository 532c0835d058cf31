"""The stores, one per concern, and `Storage`, the small facade that holds them.

    storage = Storage(database)
    await storage.users.get_user("@alice:example.com")

Each store keeps its SQL in synchronous `_x_txn` functions run through
`Database.run_interaction`. Where one operation spans the tables of several
stores (deleting a device deletes its tokens; deactivating an account deletes
its devices), the owning store composes the other stores' public `*_txn`
functions inside one transaction.
"""

from __future__ import annotations

from homeserver.storage.database import Database
from homeserver.storage.stores.account_data import AccountDataStore
from homeserver.storage.stores.admin_users import AdminUserStore
from homeserver.storage.stores.devices import DeviceStore
from homeserver.storage.stores.filters import FilterStore
from homeserver.storage.stores.openid import OpenIdStore
from homeserver.storage.stores.profiles import ProfileStore
from homeserver.storage.stores.registration_tokens import RegistrationTokenStore
from homeserver.storage.stores.server_keys import ServerKeyStore
from homeserver.storage.stores.sync import SyncStore
from homeserver.storage.stores.threepids import ThreepidStore
from homeserver.storage.stores.tokens import TokenStore
from homeserver.storage.stores.ui_auth import UIAuthStore
from homeserver.storage.stores.users import UserStore


class Storage:
    """Every store over one database, built once by the HomeServer."""

    users: UserStore
    devices: DeviceStore
    tokens: TokenStore
    ui_auth: UIAuthStore
    profiles: ProfileStore
    threepids: ThreepidStore
    registration_tokens: RegistrationTokenStore
    admin_users: AdminUserStore
    server_keys: ServerKeyStore
    account_data: AccountDataStore
    filters: FilterStore
    sync: SyncStore
    openid: OpenIdStore

    def __init__(self, db: Database) -> None:
        self.db = db
        self.users = UserStore(db)
        self.devices = DeviceStore(db)
        self.tokens = TokenStore(db)
        self.ui_auth = UIAuthStore(db)
        self.profiles = ProfileStore(db)
        self.threepids = ThreepidStore(db)
        self.registration_tokens = RegistrationTokenStore(db)
        self.admin_users = AdminUserStore(db)
        self.server_keys = ServerKeyStore(db)
        self.account_data = AccountDataStore(db)
        self.filters = FilterStore(db)
        self.sync = SyncStore(db)
        self.openid = OpenIdStore(db)
