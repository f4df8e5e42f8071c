"""Shapes of the emulator's answers that more than one endpoint shares.

Graph error bodies follow docs `concepts/errors.md`: ``{"error": {"code", "message",
"innerError": {"date", "request-id", "client-request-id"}}}``. Outlook sends PascalCase codes
(SyncStateNotFound, ErrorItemNotFound, ApplicationThrottled) and real 410/429/503 bodies carry
no innerError at all, so callers choose.
"""

from __future__ import annotations

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
