"""Graph v1.0 calendar endpoints, answered from the mailbox's `Calendar` (calendar.py).

`graph_api` hands every path under ``/me/events``, ``/me/calendar/...`` and
``/me/calendarView`` here (`route`). Shapes follow Microsoft's documentation (docs =
microsoftgraph/microsoft-graph-docs-contrib); tests/emulator/test_calendar_docs.py compares
answers with the documented examples kept in tests/emulator/docs_examples/.

* ``GET /me/calendarView/delta?startDateTime&endDateTime`` (also ``/me/calendar/calendarView``)
  -- docs `api/event-delta.md` @ 028b8e35, `concepts/delta-query-events.md` @ 0a028464: single
  instances, occurrences and exceptions (no masters); ``Prefer: odata.maxpagesize``;
  ``@odata.nextLink`` ``$skiptoken`` / ``@odata.deltaLink`` ``$deltatoken``; later rounds
  return changes only, deleted or cancelled instances as ``@removed`` (reason ``deleted``),
  and changes outside the window as ``@removed`` too ("Filter the events under @removed for
  the date range that your scenario requires"). ``$select``, ``$expand``, ``$filter``,
  ``$orderby`` and ``$search`` are refused (400). A dropped token answers 410
  SyncStateNotFound. A window over 1825 days is 400 ErrorInvalidRequest "... Maximum number
  of days: 1825" (microsoft-graph-docs-contrib#6321); a missing window is 400
  ErrorInvalidParameter (microsoft-graph-docs-contrib#4342).
* ``GET /me/calendarView`` -- the same instances, paged by ``$top``/``$skip``.
* ``GET|POST /me/events`` (also ``/me/calendar/events``) -- singles and series masters; POST
  answers 201 (docs `api/user-post-events.md` @ b7c64905); a repeated ``transactionId``
  answers 201 with the event created the first time and creates nothing (the documented
  purpose, docs `resources/event.md`; behaviour as reported in
  https://blog.rykoma.net/2020/10/05/1559/).
* ``GET|PATCH|DELETE /me/events/{id}`` -- PATCH 200 with the event (docs `api/event-update.md`),
  DELETE 204 (docs `api/event-delete.md`); an occurrence's id works too.
* ``POST /me/events/{id}/cancel`` -- 202, no body (docs `api/event-cancel.md`).
* ``GET /me/events/{id}/instances?startDateTime&endDateTime`` -- docs
  `api/event-list-instances.md`.

Every answer converts start/end to the zone of ``Prefer: outlook.timezone`` (UTC without it)
and says so in ``Preference-Applied``; all-day events stay at midnight of their day whatever
the zone. Reads need Calendars.Read (or ReadWrite, or the .Shared forms); writes need
Calendars.ReadWrite (403 ErrorAccessDenied otherwise).
"""

from __future__ import annotations

import copy
import json
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from werkzeug.wrappers import Response

from m365sync.emulator import calendar as cal
from m365sync.emulator.mailbox import is_well_formed_id
from m365sync.emulator.wire import json_response

if TYPE_CHECKING:
    from m365sync.emulator.graph_api import Call

CAL_READ = frozenset(
    [
        "calendars.read",
        "calendars.readwrite",
        "calendars.read.shared",
        "calendars.readwrite.shared",
    ]
)
CAL_WRITE = frozenset(["calendars.readwrite", "calendars.readwrite.shared"])
DEFAULT_PAGE = 10
EVENT_TYPE = "#microsoft.graph.event"
# The event's properties (docs `resources/event.md`), in the order Graph writes them.
EVENT_PROPERTIES = (
    "id",
    "createdDateTime",
    "lastModifiedDateTime",
    "changeKey",
    "categories",
    "transactionId",
    "originalStartTimeZone",
    "originalEndTimeZone",
    "iCalUId",
    "reminderMinutesBeforeStart",
    "isReminderOn",
    "hasAttachments",
    "subject",
    "bodyPreview",
    "importance",
    "sensitivity",
    "isAllDay",
    "isCancelled",
    "isOrganizer",
    "responseRequested",
    "seriesMasterId",
    "showAs",
    "type",
    "webLink",
    "onlineMeetingUrl",
    "isOnlineMeeting",
    "onlineMeetingProvider",
    "allowNewTimeProposals",
    "isDraft",
    "hideAttendees",
    "originalStart",
    "responseStatus",
    "body",
    "start",
    "end",
    "location",
    "locations",
    "recurrence",
    "attendees",
    "organizer",
    "onlineMeeting",
)
_DELTA_NAMES = ("delta", "delta()", "microsoft.graph.delta", "microsoft.graph.delta()")


def _graph() -> Any:
    from m365sync.emulator import graph_api

    return graph_api


def is_calendar_path(rest: list[str]) -> bool:
    """Whether a path (after /me) is one this module answers."""
    return bool(rest) and rest[0].lower() in ("events", "calendar", "calendarview")


def route(call: Call, rest: list[str]) -> Response:
    """Answer a calendar request; `rest` is the path after ``/me`` (or ``/users/{id}``)."""
    graph = _graph()
    try:
        return _route(call, rest, graph)
    except cal.CalendarError as error:
        raise graph.GraphError(error.status, error.code, error.message) from None


def _route(call: Call, rest: list[str], graph: Any) -> Response:
    rest = list(rest)
    lowered = [t.lower() for t in rest]
    method = call.request.method
    prefix = "calendar/" if lowered[0] == "calendar" else ""
    if lowered[0] == "calendar":
        rest, lowered = rest[1:], lowered[1:]
        if not rest:
            raise graph.GraphError(
                400, "BadRequest", "The emulator serves no calendar resource, only its events."
            )
    head = lowered[0]
    if head == "calendarview":
        if len(rest) == 1 and method == "GET":
            return _calendar_view(call, prefix)
        if len(rest) == 2 and lowered[1] in _DELTA_NAMES and method == "GET":
            return _delta(call, prefix)
    elif head == "events":
        if len(rest) == 1:
            if method == "GET":
                return _list_events(call, prefix)
            if method == "POST":
                return _create(call)
        elif len(rest) == 2:
            if method == "GET":
                return _get_event(call, rest[1])
            if method == "PATCH":
                return _update(call, rest[1])
            if method == "DELETE":
                return _delete(call, rest[1])
        elif len(rest) == 3 and lowered[2] == "instances" and method == "GET":
            return _instances(call, rest[1])
        elif (
            len(rest) == 3
            and lowered[2] in ("cancel", "microsoft.graph.cancel")
            and (method == "POST")
        ):
            return _cancel(call, rest[1])
        elif len(rest) == 3 and lowered[2] in _ANSWERS and method == "POST":
            return _respond(call, rest[1], _ANSWERS[lowered[2]])
    else:
        raise graph.GraphError(
            400, "BadRequest", f"Resource not found for the segment '{rest[0]}'."
        )
    if method not in ("GET", "POST", "PATCH", "DELETE"):
        raise graph.GraphError(
            405, "Request_BadRequest", f"The HTTP method '{method}' is not allowed."
        )
    raise graph.GraphError(
        405,
        "ErrorInvalidRequest",
        f"The OData request is not supported: {method} {call.request.path}",
    )


# --------------------------------------------------------------------------- helpers


def _calendar(call: Call) -> cal.Calendar:
    return call.mailbox.calendar


def _zone(call: Call) -> str:
    """The zone of ``Prefer: outlook.timezone`` (applied), or UTC."""
    wanted = call.prefer.get("outlook.timezone")
    if wanted and cal.zone(wanted) is not None:
        call.applied.append(f'outlook.timezone="{wanted}"')
        return wanted
    return "UTC"


def shape_event(
    resource: dict[str, Any],
    zone_name: str,
    chosen: tuple[str, ...] | None = None,
    *,
    odata_type: bool = False,
) -> dict[str, Any]:
    """An event as Graph returns it: @odata.etag, then the properties (or the selected ones
    and id), start/end in `zone_name` (all-day events stay at midnight of their day)."""
    out: dict[str, Any] = {}
    if odata_type:
        out["@odata.type"] = EVENT_TYPE
    out["@odata.etag"] = resource.get("@odata.etag")
    names = chosen or tuple(
        name for name in EVENT_PROPERTIES if name in resource or name == "recurrence"
    )
    if chosen and "id" not in chosen:
        names = ("id", *chosen)
    for name in names:
        if name == "originalStart" and "originalStart" not in resource:
            continue
        value = copy.deepcopy(resource.get(name))
        if name in ("start", "end") and isinstance(value, dict):
            value = _converted(resource, name, zone_name)
        if name == "recurrence" and isinstance(value, dict):
            pattern = value.get("pattern")
            if isinstance(pattern, dict) and not pattern.get("daysOfWeek"):
                # A pattern without days (daily, absolute*) carries no daysOfWeek key at all.
                pattern.pop("daysOfWeek", None)
        out[name] = value
    return out


def _converted(resource: dict[str, Any], name: str, zone_name: str) -> dict[str, str]:
    value = resource[name]
    if resource.get("isAllDay"):
        return {"dateTime": value["dateTime"], "timeZone": zone_name}
    return cal.in_zone(cal._instant(value), zone_name)


def _window(call: Call, graph: Any) -> tuple[datetime, datetime]:
    raw_start = call.custom.get("startdatetime")
    raw_end = call.custom.get("enddatetime")
    if not raw_start or not raw_end:
        raise graph.GraphError(
            400,
            "ErrorInvalidParameter",
            "This request requires a time window specified by the query string parameters "
            "StartDateTime and EndDateTime.",
        )
    bounds = []
    for name, raw in (("StartDateTime", raw_start), ("EndDateTime", raw_end)):
        try:
            bounds.append(_parse_bound(raw))
        except ValueError:
            raise graph.GraphError(
                400, "ErrorInvalidParameter", f"The value '{raw}' of parameter '{name}' is invalid."
            ) from None
    low, high = bounds
    if high - low > timedelta(days=cal.MAX_WINDOW_DAYS):
        raise graph.GraphError(
            400,
            "ErrorInvalidRequest",
            "Your request can't be completed. The range between the start and end dates is "
            f"greater than the allowed range. Maximum number of days: {cal.MAX_WINDOW_DAYS}",
        )
    return low, high


def _parse_bound(raw: str) -> datetime:
    """A window bound: an offset in the value wins; without one it is UTC (as calendarView's
    documentation says of startDateTime/endDateTime)."""
    text = raw.strip().replace(" ", "+")
    zone_part = ""
    for marker in ("Z", "z"):
        if text.endswith(marker):
            text, zone_part = text[:-1], "+00:00"
    if len(text) > 19 and text[-6] in "+-" and text[-3] == ":":
        text, zone_part = text[:-6], text[-6:]
    local = cal.parse_local(text)
    moment = datetime.fromisoformat(local.isoformat() + zone_part) if zone_part else local
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def _json_body(call: Call, graph: Any) -> dict[str, Any]:
    data = call.request.get_data(as_text=True)
    try:
        body = json.loads(data) if data.strip() else {}
    except ValueError:
        body = None
    if not isinstance(body, dict):
        raise graph.GraphError(
            400, "UnableToDeserializePostBody", "were unable to deserialize the request body"
        )
    return body


def _check_id(ref: str, graph: Any) -> None:
    if not is_well_formed_id(ref):
        raise graph.GraphError(400, "ErrorInvalidIdMalformed", "Id is malformed.")


def _entity_context(call: Call) -> str:
    return f"{call.base}/$metadata#users('{call.user_id}')/events/$entity"


def _page(call: Call, graph: Any) -> tuple[int, int]:
    top = graph._int_option(call, "top", 1, graph.MAX_PAGE) or DEFAULT_PAGE
    skip = graph._int_option(call, "skip", 0, 10**9) or 0
    return top, skip


def _next_link(call: Call, path: str, params: list[str], skip: int) -> str:
    return f"{call.base}/{call.principal}/{path}?{'&'.join([*params, f'$skip={skip}'])}"


# --------------------------------------------------------------------------- reads


def _list_events(call: Call, prefix: str) -> Response:
    graph = _graph()
    graph._require(call, CAL_READ)
    graph._allow(call, "select", "top", "skip")
    chosen = graph._select(
        call, EVENT_PROPERTIES, "microsoft.graph.event", "RequestBroker--ParseUri"
    )
    top, skip = _page(call, graph)
    graph._id_type(call)
    zone_name = _zone(call)
    events = _calendar(call).events()
    page = events[skip : skip + top]
    body: dict[str, Any] = {
        "@odata.context": f"{call.base}/$metadata#users('{call.user_id}')/events"
    }
    if chosen:
        body["@odata.context"] += f"({','.join(chosen)})"
    body["value"] = [shape_event(e, zone_name, chosen) for e in page]
    if skip + top < len(events):
        params = [f"$top={top}"] if "top" in call.options else []
        if chosen:
            params.append("$select=" + quote(",".join(chosen), safe=","))
        body["@odata.nextLink"] = _next_link(call, prefix + "events", params, skip + top)
    return json_response(body)


def _get_event(call: Call, ref: str) -> Response:
    graph = _graph()
    graph._require(call, CAL_READ)
    graph._allow(call, "select")
    chosen = graph._select(
        call, EVENT_PROPERTIES, "microsoft.graph.event", "RequestBroker--ParseUri"
    )
    _check_id(ref, graph)
    graph._id_type(call)
    zone_name = _zone(call)
    resource = _calendar(call).get(ref)
    body: dict[str, Any] = {"@odata.context": _entity_context(call)}
    body.update(shape_event(resource, zone_name, chosen))
    return json_response(body)


def _instances(call: Call, ref: str) -> Response:
    graph = _graph()
    graph._require(call, CAL_READ)
    graph._allow(call, "select", "top", "skip")
    chosen = graph._select(
        call, EVENT_PROPERTIES, "microsoft.graph.event", "RequestBroker--ParseUri"
    )
    _check_id(ref, graph)
    low, high = _window(call, graph)
    top, skip = _page(call, graph)
    graph._id_type(call)
    zone_name = _zone(call)
    found = _calendar(call).instances(ref, low, high)
    context = (
        f"{call.base}/$metadata#users('{call.user_id}')/events('{quote(ref, safe='')}')/instances"
    )
    if chosen:
        context += f"({','.join(chosen)})"
    body: dict[str, Any] = {"@odata.context": context}
    body["value"] = [shape_event(e, zone_name, chosen) for e in found[skip : skip + top]]
    if skip + top < len(found):
        params = [
            f"startDateTime={quote(call.custom['startdatetime'])}",
            f"endDateTime={quote(call.custom['enddatetime'])}",
        ]
        if chosen:
            params.append("$select=" + quote(",".join(chosen), safe=","))
        body["@odata.nextLink"] = _next_link(call, f"events/{ref}/instances", params, skip + top)
    return json_response(body)


def _calendar_view(call: Call, prefix: str) -> Response:
    graph = _graph()
    graph._require(call, CAL_READ)
    graph._allow(call, "select", "top", "skip")
    chosen = graph._select(
        call, EVENT_PROPERTIES, "microsoft.graph.event", "RequestBroker--ParseUri"
    )
    low, high = _window(call, graph)
    top, skip = _page(call, graph)
    graph._id_type(call)
    zone_name = _zone(call)
    found = _calendar(call).view(low, high)
    body: dict[str, Any] = {
        "@odata.context": f"{call.base}/$metadata#users('{call.user_id}')/calendarView"
    }
    body["value"] = [shape_event(e, zone_name, chosen) for e in found[skip : skip + top]]
    if skip + top < len(found):
        params = [
            f"startDateTime={quote(call.custom['startdatetime'])}",
            f"endDateTime={quote(call.custom['enddatetime'])}",
        ]
        if chosen:
            params.append("$select=" + quote(",".join(chosen), safe=","))
        body["@odata.nextLink"] = _next_link(call, prefix + "calendarView", params, skip + top)
    return json_response(body)


# --------------------------------------------------------------------------- delta


def _delta(call: Call, prefix: str) -> Response:
    graph = _graph()
    graph._require(call, CAL_READ)
    calendar = _calendar(call)
    skiptoken = call.options.get("skiptoken") or ""
    deltatoken = call.options.get("deltatoken") or ""
    window = None
    if not (skiptoken or deltatoken):
        for name in call.options:
            # docs `api/event-delta.md`: "You cannot use $select"; "$expand, $filter,
            # $orderby, and $search" are not supported either.
            raise graph.GraphError(
                400,
                "ErrorInvalidUrlQuery",
                f"The '${name}' parameter is not supported for calendarView delta queries.",
            )
        window = _window(call, graph)
    graph._id_type(call)
    zone_name = _zone(call)
    size = graph._max_page_size(call) or DEFAULT_PAGE
    with calendar.lock:
        if window is not None:
            cursor = cal.ViewPage(calendar.start_round(window, None), 0)
        else:
            state = calendar.sync_states.lookup(skiptoken or deltatoken)
            if deltatoken and isinstance(state, cal.ViewDelta):
                cursor = cal.ViewPage(calendar.start_round(state.window, state), 0)
            elif skiptoken and isinstance(state, cal.ViewPage):
                cursor = state
            else:
                generation = calendar.sync_states.generation
                raise graph.GraphError(
                    410,
                    "SyncStateNotFound",
                    f"The sync state generation is not found; generation={max(generation - 1, 0)};"
                    f"[highest={generation}]",
                    inner=False,
                )
        rnd = cursor.round
        end = cursor.offset + size
        value: list[dict[str, Any]] = []
        for kind, ref in rnd.entries[cursor.offset : end]:
            resource = calendar.render(ref, rnd.window) if kind == "item" else None
            if resource is None:
                value.append(
                    {"@odata.type": EVENT_TYPE, "id": ref, "@removed": {"reason": "deleted"}}
                )
                rnd.known.pop(ref, None)
            else:
                value.append(shape_event(resource, zone_name, odata_type=True))
        if end < len(rnd.entries):
            token = calendar.sync_states.issue(cal.ViewPage(rnd, end))  # type: ignore[arg-type]
            next_token, delta_token = token, None
        else:
            delta_state = cal.ViewDelta(rnd.window, dict(rnd.known), rnd.watermark)
            next_token = None
            delta_token = calendar.sync_states.issue(delta_state)  # type: ignore[arg-type]
    link = f"{call.base}/{call.principal}/{prefix}calendarView/delta"
    body: dict[str, Any] = {"@odata.context": f"{call.base}/$metadata#Collection(event)"}
    if next_token:
        body["@odata.nextLink"] = f"{link}?$skiptoken={next_token}"
    else:
        body["@odata.deltaLink"] = f"{link}?$deltatoken={delta_token}"
    body["value"] = value
    return json_response(body)


# --------------------------------------------------------------------------- writes


def _create(call: Call) -> Response:
    graph = _graph()
    graph._require(call, CAL_WRITE)
    given = _json_body(call, graph)
    graph._id_type(call)
    zone_name = _zone(call)
    calendar = _calendar(call)
    try:
        event, _created = calendar.create(given)
    except cal.CalendarError as error:
        calendar.record_write("POST", call.request.path, given, error.status, None)
        raise
    calendar.record_write("POST", call.request.path, given, 201, event["id"])
    body: dict[str, Any] = {"@odata.context": _entity_context(call)}
    body.update(shape_event(event, zone_name))
    return json_response(body, status=201)


def _update(call: Call, ref: str) -> Response:
    graph = _graph()
    graph._require(call, CAL_WRITE)
    _check_id(ref, graph)
    given = _json_body(call, graph)
    graph._id_type(call)
    zone_name = _zone(call)
    calendar = _calendar(call)
    try:
        event = calendar.update(ref, given)
    except cal.CalendarError as error:
        calendar.record_write("PATCH", call.request.path, given, error.status, ref)
        raise
    calendar.record_write("PATCH", call.request.path, given, 200, ref)
    body: dict[str, Any] = {"@odata.context": _entity_context(call)}
    body.update(shape_event(event, zone_name))
    return json_response(body)


def _delete(call: Call, ref: str) -> Response:
    graph = _graph()
    graph._require(call, CAL_WRITE)
    _check_id(ref, graph)
    calendar = _calendar(call)
    try:
        calendar.delete(ref)
    except cal.CalendarError as error:
        calendar.record_write("DELETE", call.request.path, None, error.status, ref)
        raise
    calendar.record_write("DELETE", call.request.path, None, 204, ref)
    return Response(status=204)


_ANSWERS = {
    "accept": "accepted",
    "decline": "declined",
    "tentativelyaccept": "tentativelyAccepted",
}


def _respond(call: Call, ref: str, response: str) -> Response:
    """accept / decline / tentativelyAccept: 202 Accepted, no body (docs `api/event-accept.md`)."""
    graph = _graph()
    graph._require(call, CAL_WRITE)
    _check_id(ref, graph)
    given = _json_body(call, graph)
    send = given.get("sendResponse", True)
    comment = given.get("comment")
    if not isinstance(send, bool):
        raise graph.GraphError(400, "BadRequest", "Invalid value for parameter 'sendResponse'.")
    if comment is not None and not isinstance(comment, str):
        raise graph.GraphError(400, "BadRequest", "Invalid value for parameter 'comment'.")
    calendar = _calendar(call)
    try:
        event = calendar.respond(ref, response)
    except cal.CalendarError as error:
        calendar.record_write("POST", call.request.path, given, error.status, ref)
        raise
    calendar.record_write("POST", call.request.path, given, 202, ref)
    if send:
        # sendResponse (default true): the organizer gets the answer, comment as its body;
        # false answers silently (docs `api/event-accept.md`, `event-decline.md`).
        call.mailbox.send_new(_response_message(event, response, comment), kind=response)
    return Response(status=202)


_RESPONSE_SUBJECTS = {
    "accepted": "Accepted",
    "declined": "Declined",
    "tentativelyAccepted": "Tentative",
}


def _response_message(event: dict[str, Any], response: str, comment: str | None) -> dict[str, Any]:
    """The meeting response Outlook sends the organizer ("Accepted: <subject>")."""
    organizer = copy.deepcopy((event.get("organizer") or {}).get("emailAddress") or {})
    return {
        "subject": f"{_RESPONSE_SUBJECTS[response]}: {event.get('subject') or ''}".rstrip(),
        "body": {"contentType": "text", "content": comment or ""},
        "toRecipients": [{"emailAddress": organizer}] if organizer.get("address") else [],
    }


def _cancel(call: Call, ref: str) -> Response:
    graph = _graph()
    graph._require(call, CAL_WRITE)
    _check_id(ref, graph)
    given = _json_body(call, graph)
    calendar = _calendar(call)
    try:
        calendar.cancel(ref)
    except cal.CalendarError as error:
        calendar.record_write("POST", call.request.path, given, error.status, ref)
        raise
    calendar.record_write("POST", call.request.path, given, 202, ref)
    return Response(status=202)
