"""The daemon's own change-notification endpoint, for deployments without the Odoo addon
(the embedded store). With Odoo, the addon's ``/m365/notifications`` does the same job.

Graph's rules it keeps (docs `concepts/change-notifications-delivery-webhooks.md`, GRAPH-FACTS
§1): the validation handshake echoes ``validationToken`` as text/plain at once; a POST is
answered within Graph's 3-second timeout, so the endpoint only checks and records (one store
call for the lookup, one for the writes) and wakes the service, which runs the cycle. A store
that cannot record answers 503, so Graph retries instead of the notification being lost;
malformed posts get 400 (retrying cannot help). It listens on ``notifications.listen_host``
and ``listen_port``; Graph needs HTTPS, so a reverse proxy with TLS goes in front.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from datetime import UTC, datetime

from werkzeug.serving import BaseWSGIServer, WSGIRequestHandler, make_server
from werkzeug.wrappers import Request, Response

from m365sync.crm.gateway import CrmGateway
from m365sync.errors import CrmError
from m365sync.sync.notifications import MalformedNotification, check, read_post

log = logging.getLogger(__name__)

MAX_BODY = 1024 * 1024  # Graph batches notifications; a megabyte is far above one batch


class _QuietHandler(WSGIRequestHandler):
    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        pass


class NotificationEndpoint:
    """The WSGI application. ``on_request`` gets the account ids asked to sync."""

    def __init__(
        self,
        gateway: CrmGateway,
        on_request: Callable[[list[int]], None] = lambda ids: None,
        *,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.gateway = gateway
        self.on_request = on_request
        self.clock = clock
        self.accepted = 0
        self.refused = 0

    def __call__(self, environ: dict, start_response: Callable) -> object:
        return self.respond(Request(environ))(environ, start_response)

    def respond(self, request: Request) -> Response:
        token = request.args.get("validationToken")
        if token is not None:
            return Response(token, status=200, content_type="text/plain; charset=utf-8")
        if request.method != "POST":
            return Response(status=405, headers={"Allow": "POST"})
        if (request.content_length or 0) > MAX_BODY:
            return Response("too large", status=413, content_type="text/plain")
        try:
            posted = read_post(request.get_data(cache=False))
        except MalformedNotification as error:
            log.warning("notification endpoint: malformed POST (%s)", error)
            return Response("malformed", status=400, content_type="text/plain")
        if not posted:
            return Response(status=202)
        try:
            stored = self.gateway.subscriptions_by_graph_id(
                p.notification.subscription_id for p in posted
            )
            accepted, refused = check(posted, stored)
            asked = self.gateway.record_notifications(accepted, self.clock()) if accepted else []
        except CrmError as error:
            log.warning("notification endpoint: the store could not record them: %s", error)
            return Response("store unavailable", status=503, content_type="text/plain")
        self.accepted += len(accepted)
        self.refused += refused
        if refused:
            # Unknown subscription or wrong clientState: not from Graph, or a subscription we
            # no longer keep (it lapses on its own). Never log the clientState itself.
            log.warning("notification endpoint: refused %d notification(s)", refused)
        if asked:
            log.info("notifications for account(s) %s", ", ".join(map(str, asked)))
            self.on_request(asked)
        return Response(status=202)


class NotificationServer:
    """Serves a `NotificationEndpoint` in a thread; ``port`` 0 takes a free one."""

    def __init__(self, endpoint: NotificationEndpoint, host: str, port: int) -> None:
        self.endpoint = endpoint
        self._server: BaseWSGIServer = make_server(
            host, port, endpoint, threaded=True, request_handler=_QuietHandler
        )
        self.port = self._server.server_port
        self.host = host
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="m365sync-notifications", daemon=True
        )

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/"

    def start(self) -> NotificationServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)
