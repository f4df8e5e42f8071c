"""`Emulator`: identity + Graph + control API over real HTTPS on a loopback port.

Why real HTTPS: the daemon's HTTP stack (requests, msal, CA bundle configuration) is part of
what must work, so the emulator serves TLS with a certificate issued by a throwaway trustme CA.
Only the CA's certificate is written out (``state_dir/emulator-ca.pem``) for clients to trust;
the server's private key stays in memory (trustme passes it to OpenSSL through a temporary
file that it deletes at once).

Routing, in order: ``/_emulator/...`` -> control API (control.py); identity paths ->
faults, then identity.py; ``/v1.0/...`` -> access-token check (401 in Graph's shape), faults,
then ``graph_api.handle``; anything else -> 404 in Graph's error shape. Each request of a
``POST /v1.0/$batch`` passes the fault plan again on its own path (``_subrequest``), so a rule
for ``/attachments`` throttles that sub-request inside the batch, as Graph does. A
``send_then_drop`` rule lets its request take effect and then closes the connection unanswered.
``/v1.0/subscriptions...`` goes to subscriptions.py (after the token check and faults, so a
fault rule can target it); its deliverer thread starts and stops with the server.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import ssl
import struct
import threading
import time
from collections.abc import Iterable
from pathlib import Path
from types import TracebackType
from typing import Any

import requests
import trustme
from werkzeug.serving import BaseWSGIServer, WSGIRequestHandler, make_server
from werkzeug.wrappers import Request, Response

from m365sync.emulator import control, subscriptions
from m365sync.emulator.faults import (
    DROP_AFTER,
    DropConnection,
    FaultPlan,
    RequestLog,
    RequestRecord,
)
from m365sync.emulator.identity import DEMO_CLIENT_ID, DEMO_CLIENT_SECRET, Identity
from m365sync.emulator.latency import LatencyModel
from m365sync.emulator.wire import graph_error

log = logging.getLogger(__name__)

CA_FILENAME = "emulator-ca.pem"


class EmulatorSession(requests.Session):
    """A requests session that trusts the emulator's CA, for tests, demos and msal.

    ``verify`` is passed on every request because REQUESTS_CA_BUNDLE, when exported,
    overrides ``Session.verify``. Relative URLs (``/v1.0/me``) resolve against ``base``.
    Usable as msal's ``http_client``.
    """

    def __init__(self, ca_path: Path | str, base: str = "") -> None:
        super().__init__()
        self.ca_path = str(ca_path)
        self.base = base.rstrip("/")

    def request(  # type: ignore[override]
        self, method: str | bytes, url: str | bytes, *args: Any, **kwargs: Any
    ) -> requests.Response:
        kwargs["verify"] = self.ca_path
        if isinstance(url, str) and url.startswith("/"):
            url = self.base + url
        return super().request(method, url, *args, **kwargs)


class _QuietHandler(WSGIRequestHandler):
    """No per-request lines on stderr: the request log is the record, and tests stay quiet."""

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        pass

    def log_error(self, format: str, *args: Any) -> None:
        log.debug("emulator: " + format, *args)


class Emulator:
    """A running Microsoft identity + Graph emulator; use as a context manager or start/stop.

    ``public_host`` adds a host name to the certificate and the base URL (e.g. a compose
    service name); ``redirect_uris`` are added to the demo app's registered redirect URIs.

    Change notifications (subscriptions.py): ``allow_http_notifications`` lets plain-http
    notification URLs on loopback through (Graph takes https only); ``notification_ca`` is the
    CA bundle https notification URLs are verified against (default: the system's);
    ``validation_timeout``, ``notification_timeout`` and ``notification_retry_delays`` default
    to Graph's 10 s, 3 s and a short backoff (0.5, 1, 2, 4 s).

    ``latency`` (latency.py) holds each Graph answer as long as real Graph would take; it can
    be changed while serving (attribute, or ``POST /_emulator/latency``).
    """

    def __init__(
        self,
        mailbox: Any | None = None,
        *,
        state_dir: Path,
        host: str = "127.0.0.1",
        port: int = 0,
        access_token_lifetime: int = 3599,
        scope_form: str = "short",
        public_host: str | None = None,
        redirect_uris: Iterable[str] = (),
        allow_http_notifications: bool = False,
        notification_ca: Path | str | None = None,
        validation_timeout: float = subscriptions.VALIDATION_TIMEOUT,
        notification_timeout: float = subscriptions.DELIVERY_TIMEOUT,
        notification_retry_delays: Iterable[float] = subscriptions.RETRY_DELAYS,
        latency: LatencyModel | None = None,
    ) -> None:
        if mailbox is None:
            from m365sync.emulator.mailbox import Mailbox

            mailbox = Mailbox.seeded()
        self.mailbox = mailbox
        self.state_dir = Path(state_dir)
        self.host = host
        self.port = port
        self.public_host = public_host
        self.identity = Identity(
            mailbox, access_token_lifetime=access_token_lifetime, scope_form=scope_form
        )
        self.identity.add_redirect_uris(redirect_uris)
        self.faults = FaultPlan(self.identity)
        self.request_log = RequestLog()
        self.subscriptions = subscriptions.Subscriptions(
            mailbox,
            allow_http=allow_http_notifications,
            ca=str(notification_ca) if notification_ca else None,
            validation_timeout=validation_timeout,
            delivery_timeout=notification_timeout,
            retry_delays=notification_retry_delays,
        )
        self.latency = latency or LatencyModel()
        self.ca_path = self.state_dir / CA_FILENAME
        self._server: BaseWSGIServer | None = None
        self._thread: threading.Thread | None = None
        self._stopped = threading.Event()

    # --- lifecycle ---------------------------------------------------------------------------

    def start(self) -> Emulator:
        """Serve HTTPS in a daemon thread; returns self once the socket listens."""
        if self._server is not None:
            raise RuntimeError("the emulator is already running")
        self.state_dir.mkdir(parents=True, exist_ok=True)
        ca = trustme.CA(organization_name="m365sync emulator")
        names = ["127.0.0.1", "localhost", "::1"]
        if self.public_host and self.public_host not in names:
            names.append(self.public_host)
        if self.host not in {"0.0.0.0", "::", *names}:  # noqa: S104 - a comparison, not a bind
            names.append(self.host)
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ca.issue_cert(*names).configure_cert(context)
        ca.cert_pem.write_to_path(str(self.ca_path))
        self._server = make_server(
            self.host,
            self.port,
            self._wsgi,
            threaded=True,
            ssl_context=context,
            request_handler=_QuietHandler,
        )
        self.port = self._server.server_port
        self.identity.base_url = self.base_url
        self._stopped.clear()
        server = self._server
        self._thread = threading.Thread(
            # a short poll interval makes stop() quick; shutdown() waits for one poll
            target=lambda: server.serve_forever(poll_interval=0.05),
            name=f"emulator:{self.port}",
            daemon=True,
        )
        self._thread.start()
        self.subscriptions.start()
        return self

    def stop(self) -> None:
        """Stop serving and release the port (idempotent)."""
        self.subscriptions.stop()
        server, self._server = self._server, None
        if server is not None:
            server.shutdown()
            server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None
        self._stopped.set()

    def wait(self) -> None:
        """Block until `stop` is called (from another thread or a signal handler)."""
        while not self._stopped.wait(0.5):
            pass

    def __enter__(self) -> Emulator:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # --- what clients need -------------------------------------------------------------------

    @property
    def base_url(self) -> str:
        host = self.public_host or self.host
        if host in {"0.0.0.0", ""}:  # noqa: S104 - a comparison, not a bind
            host = "127.0.0.1"
        if ":" in host:
            host = f"[{host}]"
        return f"https://{host}:{self.port}"

    @property
    def tenant_id(self) -> str:
        return str(self.mailbox.tenant_id)

    @property
    def authority(self) -> str:
        return f"{self.base_url}/{self.tenant_id}"

    @property
    def graph_url(self) -> str:
        return f"{self.base_url}/v1.0"

    @property
    def client_id(self) -> str:
        return DEMO_CLIENT_ID

    @property
    def client_secret(self) -> str:
        return DEMO_CLIENT_SECRET

    @property
    def requests(self) -> list[RequestRecord]:
        """The request log (identity and Graph requests; not the control API)."""
        return self.request_log.records()

    # --- change notifications (the control API has the same) ---------------------------------

    def subscription_list(self) -> list[dict[str, Any]]:
        """Every subscription created here: the Graph resource plus ``state`` (active,
        deleted, expired, removed) and the ``delivered``/``failed``/``dropped``/``lost``
        counters."""
        return [sub.describe() for sub in self.subscriptions.all()]

    def notification_log(self) -> list[dict[str, Any]]:
        """Validation requests and deliveries, oldest first (see `Subscriptions.notifications`)."""
        return self.subscriptions.notifications()

    def send_lifecycle_notification(self, subscription_id: str, event: str) -> dict | None:
        """POST a lifecycle notification (subscriptionRemoved, reauthorizationRequired, missed)
        to the subscription's lifecycleNotificationUrl; returns it (None without such a URL).
        subscriptionRemoved also removes the subscription."""
        return self.subscriptions.lifecycle(subscription_id, event)

    def expire_subscription(self, subscription_id: str) -> None:
        """The subscription lapses now, silently, as when nobody renews it."""
        self.subscriptions.expire(subscription_id)

    def pause_notifications(self, paused: bool = True) -> bool:
        """While paused, change notifications are lost (simulates lost deliveries)."""
        return self.subscriptions.pause(paused)

    def info(self) -> dict[str, Any]:
        """What another process needs to point a client here (control API ``/_emulator/info``)."""
        return {
            "base_url": self.base_url,
            "authority": self.authority,
            "graph_url": self.graph_url,
            "tenant_id": self.tenant_id,
            "client_id": self.client_id,
            "ca_path": str(self.ca_path),
            "user": {
                k: self.mailbox.user.get(k)
                for k in ("id", "mail", "userPrincipalName", "displayName")
            },
        }

    # --- WSGI ------------------------------------------------------------------------------

    def _wsgi(self, environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        request = Request(environ)
        if request.path.startswith("/_emulator/"):
            return control.handle(request, self)(environ, start_response)
        started = time.monotonic()
        status: int | None = None
        try:
            response = self._dispatch(request)
            status = response.status_code
        except DropConnection:
            _drop(environ)
            raise ConnectionAbortedError("fault: connection dropped") from None
        finally:
            self.request_log.append(
                RequestRecord(
                    method=request.method,
                    path=request.path,
                    query=request.query_string.decode("latin-1"),
                    status=status,
                    prefer=request.headers.get("Prefer"),
                    fault=environ.get("m365sync.emulator.fault"),
                    at=time.time(),
                    duration=time.monotonic() - started,
                )
            )
        latency = self.latency
        if latency.active and request.path.startswith("/v1.0/"):
            # The model is the whole time Graph takes to answer: the emulator's own work
            # (a Python process, its CPU shared) counts towards it, not on top of it.
            modelled = latency.seconds_for(response.get_data(), response.mimetype)
            time.sleep(max(0.0, modelled - (time.monotonic() - started)))
        return response(environ, start_response)

    def _graph(self, request: Request, scopes: Any, app_id: str | None) -> Response:
        """A Graph request the token check and the fault plan let through."""
        if subscriptions.handles(request.path):
            return subscriptions.handle(
                request,
                self.subscriptions,
                scopes=scopes,
                application_id=app_id or self.client_id,
                public_base=self.base_url,
            )
        from m365sync.emulator import graph_api

        return graph_api.handle(
            request,
            self.mailbox,
            scopes=scopes,
            public_base=self.base_url,
            subrequest=lambda sub: self._subrequest(sub, scopes, app_id),
        )

    def _subrequest(self, request: Request, scopes: Any, app_id: str | None = None) -> Response:
        """One request of a ``$batch``: the fault plan first (matched on the sub-request's own
        method and path), then the same Graph handler; logged with ``in_batch=True``."""
        started = time.monotonic()
        status: int | None = None
        try:
            response = self.faults.respond(request) or self._graph(request, scopes, app_id)
            _drop_if_asked(request)
            status = response.status_code
            return response
        finally:
            self.request_log.append(
                RequestRecord(
                    method=request.method,
                    path=request.path,
                    query=request.query_string.decode("latin-1"),
                    status=status,
                    prefer=request.headers.get("Prefer"),
                    fault=request.environ.get("m365sync.emulator.fault"),
                    at=time.time(),
                    duration=time.monotonic() - started,
                    in_batch=True,
                )
            )

    def _dispatch(self, request: Request) -> Response:
        try:
            if self.identity.handles(request.path):
                return self.faults.respond(request) or self.identity.handle(request)
            if request.path.startswith("/v1.0/"):
                header = request.headers.get("Authorization")
                auth = self.identity.authenticate(header)
                if auth is None:
                    return self.identity.unauthorized(header, request)
                faulty = self.faults.respond(request)
                if faulty is not None:
                    return faulty
                response = self._graph(request, auth[1], subscriptions.app_id_of(header))
                _drop_if_asked(request)
                return response
            return graph_error(
                404,
                "NotFound",
                f"The emulator serves no resource at {request.path}.",
                request=request,
            )
        except DropConnection:
            raise
        except Exception:
            log.exception("emulator: unhandled error on %s %s", request.method, request.path)
            return graph_error(
                500, "InternalServerError", "The emulator failed on this request.", request=request
            )


def _drop_if_asked(request: Request) -> None:
    """After a ``send_then_drop`` fault's request took effect: lose its answer."""
    if request.environ.get(DROP_AFTER):
        raise DropConnection(request.path)


def _drop(environ: dict[str, Any]) -> None:
    """Close the client's TCP connection at once (RST), without TLS close_notify or HTTP.

    werkzeug exposes the connection as ``werkzeug.socket``; a zero linger makes close() send
    RST, so the client fails fast with a ConnectionError instead of waiting for a reply.
    """
    sock = environ.get("werkzeug.socket")
    if sock is None:
        return
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)  # on an SSLSocket this drops the TLS layer first
