"""GET /health and GET /_synapse/metrics: operational endpoints."""

from __future__ import annotations

from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, generate_latest

from homeserver.api.http import Auth, RawResponse, Servlet, SiteRequest


class HealthServlet(Servlet):
    """GET /health: `OK` while the server is serving, for load balancers."""

    PATTERNS = ("^/health$",)
    AUTH = Auth.NONE

    async def on_GET(self, request: SiteRequest) -> RawResponse:
        return RawResponse(200, b"OK", b"text/plain; charset=utf-8")


class MetricsServlet(Servlet):
    """GET /_synapse/metrics (and /metrics): Prometheus text exposition of every metric.

    Served at Synapse's path so existing scrape configs and dashboards work.
    """

    PATTERNS = ("^/_synapse/metrics/?$", "^/metrics/?$")
    AUTH = Auth.NONE

    async def on_GET(self, request: SiteRequest) -> RawResponse:
        return RawResponse(200, generate_latest(REGISTRY), CONTENT_TYPE_LATEST.encode("ascii"))
