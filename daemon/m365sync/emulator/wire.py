"""Shapes of the emulator's answers that more than one endpoint shares.

Graph error bodies follow docs `concepts/errors.md`: ``{"error": {"code", "message",
"innerError": {"date", "request-id", "client-request-id"}}}``. Outlook sends PascalCase codes
(SyncStateNotFound, ErrorItemNotFound, ApplicationThrottled) and real 410/429/503 bodies carry
no innerError at all, so callers choose.
"""

from __future__ import annotations

import io
import json
import uuid
from datetime import UTC, datetime
from typing import Any

from werkzeug.wrappers import Request, Response


def json_response(
    payload: Any, status: int = 200, headers: dict[str, str] | None = None
) -> Response:
    """A JSON answer with the content type Graph uses."""
    response = Response(
        json.dumps(payload, ensure_ascii=False),
        status=status,
        content_type="application/json; odata.metadata=minimal; odata.streaming=true; "
        "IEEE754Compatible=false; charset=utf-8",
    )
    response.headers["request-id"] = str(uuid.uuid4())
    for name, value in (headers or {}).items():
        response.headers[name] = value
    return response


def graph_error(
    status: int,
    code: str,
    message: str,
    *,
    request: Request | None = None,
    inner_error: bool = True,
    headers: dict[str, str] | None = None,
) -> Response:
    """A Graph error response. ``inner_error=False`` mimics the bare 410/429/503 bodies."""
    error: dict[str, Any] = {"code": code, "message": message}
    if inner_error:
        client_request_id = request.headers.get("client-request-id") if request else None
        error["innerError"] = {
            # Graph writes innerError.date without a zone designator.
            "date": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S"),
            "request-id": str(uuid.uuid4()),
            "client-request-id": client_request_id or str(uuid.uuid4()),
        }
    return json_response({"error": error}, status=status, headers=headers)


# --------------------------------------------------------------------------- action parameters

ACTION_PARAMETERS: dict[str, tuple[str, ...]] = {
    "sendmail": ("message", "saveToSentItems"),
    "reply": ("message", "comment"),
    "replyall": ("message", "comment"),
    "forward": ("message", "comment", "toRecipients"),
    "createreply": ("message", "comment"),
    "createreplyall": ("message", "comment"),
    "createforward": ("message", "comment", "toRecipients"),
    "accept": ("comment", "sendResponse"),
    "decline": ("comment", "sendResponse", "proposedNewTime"),
    "tentativelyaccept": ("comment", "sendResponse", "proposedNewTime"),
    "cancel": ("comment",),
    "getschedule": ("schedules", "startTime", "endTime", "availabilityViewInterval"),
}
"""Each OData action's parameter names as the v1.0 docs spell them (`api/user-sendmail.md`,
`message-reply.md`, `message-createreply.md`, `event-accept.md`, `event-decline.md`,
`event-tentativelyaccept.md`, `event-cancel.md`, `calendar-getschedule.md`)."""


def action_parameters(request: Request, path: list[str]) -> Request:
    """The request with its action parameters under the names the handlers read.

    Graph matches action parameter names case-insensitively: Microsoft's SDKs send them in
    PascalCase (``Message``, ``SaveToSentItems``, ``Schedules``, ``StartTime``, ``Comment``,
    ``SendResponse``) and Graph takes them as the docs' camelCase. This is the emulator's one
    place for that rule: a POST whose last segment is an action (``microsoft.graph.`` prefix
    or not) has the top-level names of its JSON body renamed to the documented spelling;
    anything else (another name, a body that is not a JSON object) is left for the handler
    to judge. Property names inside a parameter (a message's ``subject``) are not touched.
    """
    if request.method != "POST" or not path:
        return request
    action = path[-1].lower().removeprefix("microsoft.graph.")
    names = {name.lower(): name for name in ACTION_PARAMETERS.get(action, ())}
    if not names:
        return request
    data = request.get_data()
    try:
        body = json.loads(data) if data.strip() else None
    except ValueError:
        return request
    if not isinstance(body, dict):
        return request
    renamed = {names.get(key.lower(), key): value for key, value in body.items()}
    if list(renamed) == list(body):
        return request
    raw = json.dumps(renamed, ensure_ascii=False).encode("utf-8")
    environ = dict(request.environ)
    environ["wsgi.input"] = io.BytesIO(raw)
    environ["CONTENT_LENGTH"] = str(len(raw))
    return Request(environ)
