"""The emulator's control API: steer a running emulator from another process.

JSON over the same HTTPS socket under ``/_emulator/``, loopback clients only, so a demo script,
the CLI or an integration test in another process can add mail, add/change/cancel/delete
calendar events and read what the daemon wrote to the calendar, inject faults, revoke grants
and read the request log and the mail the daemon sent exactly as in-process tests do through
`Emulator`'s attributes. Change notifications: ``/_emulator/subscriptions`` (GET, with
counters), ``/_emulator/subscriptions/{id}/lifecycle`` (POST ``{"event"}``),
``/_emulator/subscriptions/{id}/expire`` (POST), ``/_emulator/notifications`` (GET the delivery
log, DELETE to forget it) and ``/_emulator/notifications/pause`` (POST ``{"paused"}``).
``/_emulator/latency`` (POST ``{"latency_ms", "per_item_ms"}``) sets the latency model.
Mail folders: ``/_emulator/mailbox/folders`` (GET; POST ``{"displayName", "parent"?,
"hidden"?, "search"?}``) and ``/_emulator/mailbox/folders/{id}`` (PATCH ``{"displayName"?,
"parent"?}`` renames or moves, DELETE deletes for good).
Control requests are not faulted and not logged.
"""

from __future__ import annotations

import ipaddress
import json
import re
from datetime import datetime
from typing import TYPE_CHECKING, Any

from werkzeug.wrappers import Request, Response

from m365sync.emulator.calendar import CalendarError
from m365sync.emulator.delta import parse_instant
from m365sync.emulator.latency import LatencyModel
from m365sync.emulator.wire import graph_error, json_response

if TYPE_CHECKING:
    from m365sync.emulator.server import Emulator

_MESSAGE = re.compile(r"^/_emulator/mailbox/messages/(?P<id>[^/]+)(?P<move>/move)?$")
_FOLDER = re.compile(r"^/_emulator/mailbox/folders/(?P<id>[^/]+)$")
_SUBSCRIPTION = re.compile(r"^/_emulator/subscriptions/(?P<id>[^/]+)/(?P<action>lifecycle|expire)$")
_EVENT = re.compile(r"^/_emulator/calendar/events/(?P<id>[^/]+)(?P<tail>/cancel|/instances)?$")


def handle(request: Request, emulator: Emulator) -> Response:
    """Answer one ``/_emulator/...`` request."""
    if not _is_loopback(request.remote_addr):
        return graph_error(403, "Forbidden", "The control API answers loopback clients only.")
    try:
        body = _body(request)
        return _route(request, emulator, body)
    except CalendarError as error:
        return graph_error(error.status, error.code, error.message, request=request)
    except LookupError as error:
        return graph_error(404, "ErrorItemNotFound", f"Not found: {error}", request=request)
    except (ValueError, TypeError) as error:
        return graph_error(400, "ErrorInvalidRequest", str(error), request=request)


def _route(request: Request, emu: Emulator, body: dict[str, Any]) -> Response:
    path, method = request.path.rstrip("/"), request.method
    mailbox, identity, faults = emu.mailbox, emu.identity, emu.faults
    if path == "/_emulator/info" and method == "GET":
        return json_response(emu.info())
    if path == "/_emulator/mailbox/folders" and method == "GET":
        return json_response({"value": mailbox.folders()})
    if path == "/_emulator/mailbox/folders" and method == "POST":
        return json_response(_add_folder(mailbox, body), 201)
    if match := _FOLDER.match(path):
        folder_id = match["id"]
        if method == "PATCH":
            if "parent" in body:
                mailbox.move_folder(folder_id, str(body["parent"]))
            if "displayName" in body:
                mailbox.rename_folder(folder_id, str(body["displayName"]))
            return json_response(mailbox.resolve_folder(folder_id))
        if method == "DELETE":
            mailbox.delete_folder(folder_id)
            return Response(status=204)
        return _not_allowed(request)
    if path == "/_emulator/mailbox/messages" and method == "POST":
        folder = body.get("folder", "inbox")
        if "raw" in body:
            return json_response({"id": mailbox.add_raw_message(folder, body["raw"])}, 201)
        return json_response(mailbox.add_message(folder, _required(body, "message")), 201)
    if match := _MESSAGE.match(path):
        message_id = match["id"]
        if match["move"] and method == "POST":
            return json_response(mailbox.move_message(message_id, _required(body, "folder")))
        if match["move"]:
            return _not_allowed(request)
        if method == "GET":
            return json_response(mailbox.get_message(message_id))
        if method == "PATCH":
            return json_response(mailbox.update_message(message_id, body))
        if method == "DELETE":
            mailbox.delete_message(message_id)
            return Response(status=204)
    if path.startswith(("/_emulator/mail/", "/_emulator/calendar/free-busy")):
        answer = _sending(request, emu, body)
        if answer is not None:
            return answer
    if path.startswith("/_emulator/calendar/"):
        answer = _calendar(request, emu, body)
        if answer is not None:
            return answer
    if path.startswith(("/_emulator/subscriptions", "/_emulator/notifications")):
        answer = _notifications(request, emu, body)
        if answer is not None:
            return answer
    if path == "/_emulator/faults":
        if method == "POST":
            return _add_fault(emu, body)
        if method == "GET":
            return json_response({"value": [rule.describe() for rule in faults.rules]})
        if method == "DELETE":
            faults.clear()
            return Response(status=204)
    if path == "/_emulator/requests":
        if method == "GET":
            return json_response({"value": [r.describe() for r in emu.requests]})
        if method == "DELETE":
            emu.request_log.clear()
            return Response(status=204)
    if method == "POST":
        if path == "/_emulator/identity/revoke":
            return json_response({"revoked": identity.revoke_grants()})
        if path == "/_emulator/identity/expire-tokens":
            return json_response({"expired": identity.expire_access_tokens()})
        if path == "/_emulator/identity/expire-refresh-tokens":
            return json_response({"expired": identity.expire_refresh_tokens()})
        if path == "/_emulator/identity/expire-client-secret":
            identity.expire_client_secret(body.get("client_id", emu.client_id))
            return Response(status=204)
        if path == "/_emulator/identity/deny-next-consent":
            identity.deny_next_consent(**body)
            return Response(status=204)
        if path == "/_emulator/identity/grant-only":
            scopes = body.get("scopes")
            identity.grant_only(None if scopes is None else list(scopes))
            return Response(status=204)
        if path == "/_emulator/identity/scope-form":
            try:
                identity.answer_scopes_as(str(body.get("form", "")))
            except ValueError as error:
                return graph_error(400, "BadRequest", str(error), request=request)
            return Response(status=204)
        if path == "/_emulator/identity/access-token":
            scopes = body.get("scopes")
            kwargs = {} if scopes is None else {"scopes": list(scopes)}
            return json_response({"access_token": identity.mint_access_token(**kwargs)})
        if path == "/_emulator/latency":
            emu.latency = LatencyModel(
                float(body.get("latency_ms", 0)), float(body.get("per_item_ms", 0))
            )
            return Response(status=204)
        if path == "/_emulator/sync-states/drop":
            return json_response({"dropped": mailbox.drop_sync_states()})
    return graph_error(404, "NotFound", f"No control endpoint {method} {path}.", request=request)


def _calendar(request: Request, emu: Emulator, body: dict[str, Any]) -> Response | None:
    """Events from another process: ``/_emulator/calendar/events`` (GET the stored calendar,
    POST an event -- a body with ``seriesMasterId`` and ``originalStart`` changes that
    occurrence into an exception instead), ``.../events/{id}`` (GET, PATCH, DELETE; an
    occurrence id works), ``.../events/{id}/cancel`` (POST), ``.../events/{id}/instances`` and
    ``/_emulator/calendar/view`` (GET with startDateTime/endDateTime), and
    ``/_emulator/calendar/written`` (GET, DELETE)."""
    path, method = request.path.rstrip("/"), request.method
    calendar = emu.mailbox.calendar
    if path == "/_emulator/calendar/events":
        if method == "GET":
            return json_response({"value": calendar.export()})
        if method == "POST":
            if body.get("seriesMasterId"):
                oid = calendar.occurrence_id_at(
                    str(body["seriesMasterId"]), str(_required(body, "originalStart"))
                )
                changes = {
                    k: v
                    for k, v in body.items()
                    if k not in ("type", "seriesMasterId", "originalStart")
                }
                return json_response(calendar.update(oid, changes), 201)
            return json_response(calendar.create(body)[0], 201)
    if path == "/_emulator/calendar/written":
        if method == "GET":
            return json_response({"value": calendar.written()})
        if method == "DELETE":
            calendar.clear_written()
            return Response(status=204)
    if path == "/_emulator/calendar/view" and method == "GET":
        low, high = _window(request)
        return json_response({"value": calendar.view(low, high)})
    match = _EVENT.match(path)
    if match is None:
        return None
    event_id, tail = match["id"], match["tail"]
    if tail == "/cancel" and method == "POST":
        calendar.cancel(event_id)
        return Response(status=202)
    if tail == "/instances" and method == "GET":
        low, high = _window(request)
        return json_response({"value": calendar.instances(event_id, low, high)})
    if tail is None and method == "GET":
        return json_response(calendar.get(event_id))
    if tail is None and method == "PATCH":
        return json_response(calendar.update(event_id, body))
    if tail is None and method == "DELETE":
        calendar.delete(event_id)
        return Response(status=204)
    return _not_allowed(request)


def _notifications(request: Request, emu: Emulator, body: dict[str, Any]) -> Response | None:
    """Change-notification subscriptions and their deliveries (see subscriptions.py)."""
    path, method = request.path.rstrip("/"), request.method
    if path == "/_emulator/subscriptions":
        if method != "GET":
            return _not_allowed(request)
        return json_response({"value": emu.subscription_list()})
    if path == "/_emulator/notifications":
        if method == "GET":
            return json_response({"value": emu.notification_log()})
        if method == "DELETE":
            emu.subscriptions.clear_notifications()
            return Response(status=204)
        return _not_allowed(request)
    if path == "/_emulator/notifications/pause":
        if method != "POST":
            return _not_allowed(request)
        paused = _required(body, "paused")
        if not isinstance(paused, bool):
            raise ValueError("'paused' must be true or false")
        return json_response({"paused": emu.pause_notifications(paused)})
    match = _SUBSCRIPTION.match(path)
    if match is None:
        return None
    if method != "POST":
        return _not_allowed(request)
    if match["action"] == "expire":
        emu.expire_subscription(match["id"])
        return Response(status=204)
    sent = emu.send_lifecycle_notification(match["id"], str(_required(body, "event")))
    return json_response({"notification": sent}, 202)


def _sending(request: Request, emu: Emulator, body: dict[str, Any]) -> Response | None:
    """What the mailbox sent and the knobs of sending: ``/_emulator/mail/sent`` (GET the sent
    log, DELETE to forget it), ``/_emulator/mail/settings`` (GET; POST ``sendKeepsId``,
    ``sentCopyDelay``), ``/_emulator/calendar/free-busy`` (GET every listed address; POST
    ``{"address", "items"}`` sets one address's busy times for getSchedule, ``items: null``
    removes it)."""
    path, method = request.path.rstrip("/"), request.method
    mailbox = emu.mailbox
    if path == "/_emulator/mail/sent":
        if method == "GET":
            return json_response({"value": mailbox.sent()})
        if method == "DELETE":
            mailbox.clear_sent()
            return Response(status=204)
        return _not_allowed(request)
    if path == "/_emulator/mail/settings":
        if method == "POST":
            with mailbox.lock:
                if "sendKeepsId" in body:
                    mailbox.send_keeps_id = bool(body["sendKeepsId"])
                if "sentCopyDelay" in body:
                    mailbox.sent_copy_delay = float(body["sentCopyDelay"])
        elif method != "GET":
            return _not_allowed(request)
        return json_response(
            {"sendKeepsId": mailbox.send_keeps_id, "sentCopyDelay": mailbox.sent_copy_delay}
        )
    if path == "/_emulator/calendar/free-busy":
        if method == "POST":
            address = str(_required(body, "address"))
            items = _required(body, "items")
            with mailbox.lock:
                if items is None:
                    mailbox.free_busy.pop(address, None)
                elif isinstance(items, list):
                    mailbox.free_busy[address] = items
                else:
                    raise ValueError("'items' must be a list or null")
        elif method != "GET":
            return _not_allowed(request)
        with mailbox.lock:
            return json_response({"value": dict(mailbox.free_busy)})
    return None


def _window(request: Request) -> tuple[datetime, datetime]:
    args = {k.lower(): v for k, v in request.args.items()}
    if "startdatetime" not in args or "enddatetime" not in args:
        raise ValueError("startDateTime and endDateTime are required")
    return parse_instant(args["startdatetime"]), parse_instant(args["enddatetime"])


def _add_fault(emu: Emulator, body: dict[str, Any]) -> Response:
    kind = _required(body, "kind")
    if kind == "expired_token":
        return json_response({"expired": emu.faults.expired_token()}, 201)
    options = {k: v for k, v in body.items() if k not in {"kind", "path"}}
    rule = emu.faults.add(kind, _required(body, "path"), **options)
    return json_response(rule.describe(), 201)


def _add_folder(mailbox: Any, body: dict[str, Any]) -> dict[str, Any]:
    """POST ``{"displayName", "parent"?, "hidden"?}``, or with ``"search": {"sourceFolders",
    "filterQuery", "includeNested"?}`` a mailSearchFolder."""
    name = str(_required(body, "displayName"))
    parent = body.get("parent")
    search = body.get("search")
    if isinstance(search, dict):
        return mailbox.add_search_folder(
            name,
            parent,
            source_folders=[str(f) for f in search.get("sourceFolders", ["inbox"])],
            filter_query=str(search.get("filterQuery", "")),
            include_nested=bool(search.get("includeNested", True)),
        )
    return mailbox.add_folder(name, parent, hidden=bool(body.get("hidden", False)))


def _required(body: dict[str, Any], name: str) -> Any:
    if name not in body:
        raise ValueError(f"the JSON body needs {name!r}")
    return body[name]


def _body(request: Request) -> dict[str, Any]:
    if request.method not in {"POST", "PATCH", "PUT"} or not request.get_data():
        return {}
    body = json.loads(request.get_data(as_text=True))
    if not isinstance(body, dict):
        raise ValueError("the body must be a JSON object")
    return body


def _not_allowed(request: Request) -> Response:
    return graph_error(405, "MethodNotAllowed", f"{request.method} is not allowed here.")


def _is_loopback(address: str | None) -> bool:
    try:
        return address is not None and ipaddress.ip_address(address).is_loopback
    except ValueError:
        return False
