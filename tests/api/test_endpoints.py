"""The endpoints of the foundation: versions, .well-known, health, metrics, federation version."""

from __future__ import annotations

import os
import tempfile
from typing import Any

from twisted.internet.task import Clock

from homeserver import __version__
from homeserver.api.http import Site
from homeserver.api.resources import build_router
from homeserver.config import HomeServerConfig
from homeserver.server import HomeServer
from tests.http_harness import request


def make_site(resources: list[str], **options: Any) -> Site:
    """The Site of a HomeServer built (not started: no database) from a minimal config."""
    with tempfile.TemporaryDirectory() as directory:
        document = {
            "server_name": "example.com",
            "signing_key_path": os.path.join(directory, "key"),
            "listeners": [{"port": 8008, "resources": [{"names": resources}]}],
            "database": {"name": "sqlite3", "args": {"database": os.path.join(directory, "hs.db")}},
            **options,
        }
        config = HomeServerConfig.from_dict(document, "/tmp/homeserver.yaml")
        hs = HomeServer(config, Clock())
    router = build_router(resources, hs)
    return Site(router, config.server.max_request_size, "test", reactor=Clock())


def test_versions_lists_spec_versions_and_unstable_features() -> None:
    response = request(make_site(["client"]), "GET", "/_matrix/client/versions")
    assert response.status == 200
    body = response.json()
    # Every version from v1.1 (the first with /v3 paths) to v1.12, in order.
    assert body["versions"] == [f"v1.{minor}" for minor in range(1, 13)]
    assert isinstance(body["unstable_features"], dict)
    assert response.headers["access-control-allow-origin"] == "*"


def test_versions_is_absent_without_the_client_resource() -> None:
    response = request(make_site(["federation"]), "GET", "/_matrix/client/versions")
    assert response.status == 404
    assert response.json()["errcode"] == "M_UNRECOGNIZED"


def test_client_well_known_is_404_when_not_configured() -> None:
    response = request(make_site(["client"]), "GET", "/.well-known/matrix/client")
    assert response.status == 404
    assert response.json()["errcode"] == "M_NOT_FOUND"


def test_client_well_known_from_config() -> None:
    site = make_site(
        ["client"],
        public_baseurl="https://matrix.example.com",
        serve_client_wellknown=True,
        default_identity_server="https://id.example.com",
        extra_well_known_client_content={"org.example.custom": {"a": 1}},
    )
    response = request(site, "GET", "/.well-known/matrix/client")
    assert response.status == 200
    assert response.json() == {
        "m.homeserver": {"base_url": "https://matrix.example.com/"},
        "m.identity_server": {"base_url": "https://id.example.com"},
        "org.example.custom": {"a": 1},
    }


def test_server_well_known_is_404_when_not_configured() -> None:
    response = request(make_site(["client", "federation"]), "GET", "/.well-known/matrix/server")
    assert response.status == 404
    assert response.json()["errcode"] == "M_NOT_FOUND"


def test_server_well_known_points_at_public_baseurl_host_and_port() -> None:
    site = make_site(
        ["federation"], public_baseurl="https://matrix.example.com/", serve_server_wellknown=True
    )
    response = request(site, "GET", "/.well-known/matrix/server")
    assert response.json() == {"m.server": "matrix.example.com:443"}
    site = make_site(
        ["federation"], public_baseurl="https://[2001:db8::1]:8448/", serve_server_wellknown=True
    )
    assert request(site, "GET", "/.well-known/matrix/server").json() == {
        "m.server": "[2001:db8::1]:8448"
    }


def test_health_is_served_on_every_listener() -> None:
    for resources in (["client"], ["federation"], ["metrics"], ["health"]):
        response = request(make_site(resources), "GET", "/health")
        assert response.status == 200
        assert response.body == b"OK"


def test_metrics_served_only_when_enabled_and_lists_request_metrics() -> None:
    assert request(make_site(["client"]), "GET", "/_synapse/metrics").status == 404
    site = make_site(["client", "metrics"])
    request(site, "GET", "/_matrix/client/versions")
    response = request(site, "GET", "/_synapse/metrics")
    assert response.status == 200
    assert response.headers["content-type"].startswith("text/plain")
    text = response.body.decode()
    assert 'homeserver_http_requests_total{code="200",method="GET",servlet="VersionsServlet"}' in text
    assert "homeserver_http_request_duration_seconds_bucket" in text
    assert "# HELP homeserver_db_transactions_total" in text
    assert "# HELP homeserver_db_transaction_duration_seconds" in text
    assert "homeserver_reactor_tick_seconds" in text


def test_federation_version_names_this_server() -> None:
    response = request(make_site(["federation"]), "GET", "/_matrix/federation/v1/version")
    assert response.status == 200
    assert response.json() == {"server": {"name": "homeserver", "version": __version__}}
