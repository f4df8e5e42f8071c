"""The service's health and metrics: ``/healthz`` (JSON) and Prometheus ``/metrics``.

Served on a loopback port by a small threaded HTTP server. The figures are counts and
timestamps only: never a token, an address list or a message body.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    generate_latest,
)

log = logging.getLogger(__name__)


class Metrics:
    """The service's counters, in a registry of their own (no process-global state)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.cycles = Counter(
            "m365sync_cycles", "Account cycles run, by outcome", ["outcome"], registry=r
        )
        self.messages_imported = Counter(
            "m365sync_messages_imported", "Messages imported into the CRM", registry=r
        )
        self.pages = Counter("m365sync_pages", "Delta pages stored", registry=r)
        self.errors = Counter("m365sync_errors", "Errors, by kind", ["kind"], registry=r)
        self.sends = Counter("m365sync_sends", "Outbox mails, by outcome", ["outcome"], registry=r)
        self.leases_held = Gauge("m365sync_leases_held", "Account leases held now", registry=r)
        self.leases_lost = Counter(
            "m365sync_leases_lost", "Leases lost to another replica or expiry", registry=r
        )
        self.stale_accounts = Gauge(
            "m365sync_stale_accounts",
            "Accounts expected to sync that have not for three of their intervals",
            registry=r,
        )
        self.notifications = Counter(
            "m365sync_notifications",
            "Change notifications received by the daemon's endpoint, by outcome",
            ["outcome"],
            registry=r,
        )
        self.secret_expiry = Gauge(
            "m365sync_client_secret_expiry_timestamp_seconds",
            "When the app's client secret expires (microsoft.client_secret_expires)",
            registry=r,
        )
        self.last_cycle = Gauge(
            "m365sync_last_cycle_timestamp_seconds", "When the last account cycle ended", registry=r
        )

    def render(self) -> bytes:
        return generate_latest(self.registry)


class HealthServer:
    """``/healthz`` answers ``status()`` (a dict with ``status``; 503 unless it is ``ok``)."""

    def __init__(
        self,
        host: str,
        port: int,
        status: Callable[[], dict[str, object]],
        metrics: Metrics,
    ) -> None:
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                path = self.path.split("?", 1)[0]
                if path == "/healthz":
                    body = outer.status()
                    code = 200 if body.get("status") == "ok" else 503
                    self._answer(code, "application/json", json.dumps(body).encode())
                elif path == "/metrics":
                    self._answer(200, CONTENT_TYPE_LATEST, outer.metrics.render())
                else:
                    self._answer(404, "text/plain", b"not found\n")

            def _answer(self, code: int, content_type: str, body: bytes) -> None:
                self.send_response(code)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: object) -> None:
                log.debug("health: " + format, *args)

        self.status = status
        self.metrics = metrics
        self._server = ThreadingHTTPServer((host, port), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="m365sync-health", daemon=True
        )

    @property
    def port(self) -> int:
        return self._server.server_address[1]

    def start(self) -> HealthServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
