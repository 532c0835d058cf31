"""Which servlets a listener serves, from the resource names in its config."""

from __future__ import annotations

from collections.abc import Iterable

from homeserver.api.client.versions import VersionsServlet
from homeserver.api.discovery import ClientWellKnownServlet, ServerWellKnownServlet
from homeserver.api.health import HealthServlet, MetricsServlet
from homeserver.api.http import Router, Servlet
from homeserver.federation.server import FederationVersionServlet
from homeserver.handlers.discovery import DiscoveryHandler


def build_router(resource_names: Iterable[str], discovery: DiscoveryHandler) -> Router:
    """A Router serving the named resources (`client`, `federation`, `metrics`, ...).

    /health is served on every listener, as load balancers expect it anywhere.
    `keys` and `media` add their servlets once those APIs exist; until then
    their paths answer 404 M_UNRECOGNIZED like any unknown path.
    """
    names = set(resource_names)
    servlets: list[Servlet] = [HealthServlet()]
    if names & {"client", "federation"}:
        servlets.append(ServerWellKnownServlet(discovery))
    if "client" in names:
        servlets += [VersionsServlet(), ClientWellKnownServlet(discovery)]
    if "federation" in names:
        servlets.append(FederationVersionServlet())
    if "metrics" in names:
        servlets.append(MetricsServlet())
    router = Router()
    for servlet in servlets:
        router.register(servlet)
    return router
