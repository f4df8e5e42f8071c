"""Microsoft Graph change notifications: ``/m365/notifications``.

Graph posts here (no session, no cookie), so the route is ``auth="none"``: Odoo serves it in
the database it picks without a session (the only database, or the one ``dbfilter`` gives for
the request's host), which is the database whose ``web.base.url`` made the URL.

* Validation (when a subscription is created, for the notification and the lifecycle URL):
  ``POST {url}?validationToken=<url-encoded token>``; the answer must come within 10 s: 200,
  ``text/plain``, the decoded token as the body. Nothing else is done.
* Notifications: ``{"value": [...]}`` as JSON, to be answered within 3 s (else Graph retries,
  then drops). Each item names its ``subscriptionId`` and carries the ``clientState`` the daemon
  gave Graph; only its SHA-256 is stored, and an item whose clientState does not match is
  ignored (logged, without the values). The rest are applied exactly as the daemon's
  ``record_notifications`` does (``m365.subscription._apply_notifications``): the account is
  asked for a cycle, a lifecycle event (``lifecycleEvent`` instead of ``changeType``) sets the
  subscription's state. The answer is 202, empty; a body that is not such JSON (nested too
  deep included) gets 400, one past MAX_BODY (whatever its framing: chunked too) 413.
"""

import io
import json
import logging

from odoo.http import request

from odoo import SUPERUSER_ID, http

from ..models.m365_subscription import client_state_matches
from ..models.res_config_settings import NOTIFICATION_PATH

_logger = logging.getLogger(__name__)

PLAIN = [("Content-Type", "text/plain; charset=utf-8"), ("X-Content-Type-Options", "nosniff")]
MAX_BODY = 4 * 1024 * 1024  # Graph batches at most a few hundred small items


class M365NotificationController(http.Controller):
    @http.route(
        NOTIFICATION_PATH,
        type="http",
        auth="none",
        methods=["GET", "POST"],
        csrf=False,
        save_session=False,
        readonly=False,
    )
    def notifications(self, **kwargs):
        token = request.httprequest.args.get("validationToken")
        if token is not None:
            return request.make_response(token, headers=PLAIN, status=200)
        if request.httprequest.method != "POST":
            return request.make_response("", headers=PLAIN, status=405)
        body = self._read_body()
        if body is None:
            return request.make_response(
                f"Payload too large: at most {MAX_BODY} bytes.", headers=PLAIN, status=413
            )
        items = self._items(body)
        if items is None:
            return request.make_response(
                'Bad request: expected a JSON body {"value": [...]}.', headers=PLAIN, status=400
            )
        if items:
            self._apply(items)
        return request.make_response("", headers=PLAIN, status=202)

    @staticmethod
    def _read_body():
        """The body, read up to the limit whatever its framing (Content-Length or chunked), or
        None past it: never more than MAX_BODY + 1 bytes are read."""
        if (request.httprequest.content_length or 0) > MAX_BODY:
            return None
        # werkzeug's own stream (Odoo's wrapper exposes get_data only, which reads it all):
        # bounded by Content-Length, or the de-chunked input of a chunked body.
        wrapped = getattr(request.httprequest, "_HTTPRequest__wrapped", None)
        stream = wrapped.stream if wrapped is not None else io.BytesIO(
            request.httprequest.get_data()
        )
        chunks, size = [], 0
        while size <= MAX_BODY:
            chunk = stream.read(min(65536, MAX_BODY + 1 - size))
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
        if size > MAX_BODY:
            return None
        return b"".join(chunks)

    @staticmethod
    def _items(data):
        """The notification objects of the body, or None when it is not Graph's shape."""
        try:
            body = json.loads(data or b"")
        except (ValueError, UnicodeDecodeError, RecursionError):
            return None
        if not isinstance(body, dict) or not isinstance(body.get("value"), list):
            return None
        items = body["value"]
        if not all(isinstance(item, dict) for item in items):
            return None
        return items

    @staticmethod
    def _apply(items):
        # sudo (as the superuser): Graph has no Odoo user; what authorises each item is its
        # clientState, checked against the stored hash below before anything is written.
        env = request.env(user=SUPERUSER_ID, su=True)
        Subscription = env["m365.subscription"]
        ids = {str(item.get("subscriptionId") or "") for item in items} - {""}
        known = {s.graph_id: s for s in Subscription.search([("graph_id", "in", sorted(ids))])}
        checked, refused, unknown = [], 0, 0
        for item in items:
            graph_id = str(item.get("subscriptionId") or "")
            subscription = known.get(graph_id)
            if subscription is None:
                unknown += 1
                continue
            if not client_state_matches(item.get("clientState"), subscription.client_state_hash):
                refused += 1
                continue
            checked.append(
                {
                    "subscription_id": graph_id,
                    "change_type": item.get("changeType") or None,
                    "lifecycle_event": item.get("lifecycleEvent") or None,
                    "resource": str(item.get("resource") or ""),
                }
            )
        if refused:
            _logger.warning(
                "Microsoft 365 notifications: %d ignored, their clientState does not match the "
                "subscription's (not from Microsoft, or from an older subscription).",
                refused,
            )
        if unknown:
            _logger.info(
                "Microsoft 365 notifications: %d ignored, for subscriptions Odoo does not have.",
                unknown,
            )
        if checked:
            Subscription._apply_notifications(checked, None)
