"""Prometheus metrics shared across layers.

Metric objects live in the default prometheus_client registry, as that library
intends: they are process-wide by nature (one scrape shows one process). Every
metric the server exports is declared here, so the list is in one place and
`docs/metrics.md` can be checked against it.
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

HTTP_REQUESTS = Counter(
    "homeserver_http_requests_total",
    "HTTP requests that finished, by servlet, method and status code.",
    ["servlet", "method", "code"],
)
HTTP_REQUEST_DURATION = Histogram(
    "homeserver_http_request_duration_seconds",
    "Time from receiving an HTTP request to finishing its response, by servlet.",
    ["servlet", "method"],
)
DB_TRANSACTIONS = Counter(
    "homeserver_db_transactions_total",
    "Database transactions run, by name and outcome (ok, error, retry).",
    ["name", "outcome"],
)
DB_TRANSACTION_DURATION = Histogram(
    "homeserver_db_transaction_duration_seconds",
    "Time spent inside a database transaction (including retries), by name.",
    ["name"],
)
REACTOR_TICK_DURATION = Histogram(
    "homeserver_reactor_tick_seconds",
    "Time the reactor spent in one iteration (running callbacks and I/O).",
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0),
)
FEDERATION_TRANSACTIONS = Counter(
    "homeserver_federation_transactions_total",
    "Transactions sent to other servers, by outcome (sent, rejected, failed).",
    ["outcome"],
)
FEDERATION_PDUS_SENT = Counter(
    "homeserver_federation_pdus_sent_total",
    "PDUs in transactions that other servers accepted (answered 200).",
)
FEDERATION_EDUS_SENT = Counter(
    "homeserver_federation_edus_sent_total",
    "EDUs in transactions that other servers accepted (answered 200).",
)
FEDERATION_DESTINATIONS_BACKING_OFF = Gauge(
    "homeserver_federation_destinations_backing_off",
    "Destinations whose last transaction failed, retried with a growing interval.",
)
