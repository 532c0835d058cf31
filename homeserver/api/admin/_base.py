"""What the admin servlets share: their paths and the admin check."""

from __future__ import annotations

from homeserver.api.http import Auth, Servlet
from homeserver.handlers.admin_users import AdminUsersHandler
from homeserver.handlers.auth import Requester


def admin_patterns(path: str, version: str = "v1") -> tuple[str, ...]:
    """The regex for an admin API path, `/_synapse/admin/<version><path>`."""
    return (f"^/_synapse/admin/{version}{path}$",)


class AdminServlet(Servlet):
    """A servlet only server admins may use (guests and other users: 403 M_FORBIDDEN)."""

    # Guests get through authentication so that they, like every non-admin, get M_FORBIDDEN.
    AUTH = Auth.USER_OR_GUEST

    def __init__(self, admin: AdminUsersHandler) -> None:
        self._admin = admin

    async def _require_admin(self, requester: Requester) -> None:
        await self._admin.require_admin(requester)
