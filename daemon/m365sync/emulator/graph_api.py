"""Graph v1.0 endpoints for the signed-in user and their mail, answered from a `Mailbox`.

The server (server.py) authenticates the bearer token and applies faults; `handle` routes what
is under ``/v1.0/``, enforces scopes and query options, and shapes answers as Graph does. Every
shape here was checked against Microsoft's documentation (docs = microsoftgraph/
microsoft-graph-docs-contrib); tests/emulator/test_docs_shapes.py compares the answers with the
documented examples.

Routes (segments are case-insensitive, ``/users/{id|upn}`` works like ``/me`` for the owner,
``mailFolders/{id}`` and ``mailFolders('{id}')`` are the same):

* ``GET /me`` (``$select``) -- docs `api/user-get.md`.
* ``GET /me/mailFolders`` (``$top``, ``$skip``, ``$select``, ``includeHiddenFolders``), paged by
  ``$skip`` with a default page of 10 ("If a collection exceeds the default page size (10
  items), the @odata.nextLink property is returned", docs `api/user-list-mailfolders.md`).
* ``GET /me/mailFolders/{id|well-known}`` and ``.../childFolders`` (paged the same way).
  A mailSearchFolder comes with its ``@odata.type`` (docs `resources/mailsearchfolder.md`);
  hidden folders only with ``includeHiddenFolders=true``; ``searchfolders`` and
  ``recoverableitemsdeletions`` resolve by name but sit outside the listed tree.
* ``GET /me/mailFolders/{id}/messages/delta`` -- docs `api/message-delta.md`,
  `concepts/delta-query-messages.md`; sync states in delta.py.
* ``GET /me/messages/{id}`` (``$select``; honours ``outlook.body-content-type``).
* ``GET /me/mailFolders/{id}/messages`` (docs `api/mailfolder-list-messages.md`) and ``GET
  /me/messages``: "Get the messages in the signed-in user's mailbox (including the Deleted
  Items and Clutter folders)" (docs `api/user-list-messages.md`), i.e. every folder of the
  message folder tree, nested and hidden ones too; not Recoverable Items' Deletions
  (``recoverableitemsdeletions``: "not visible in any Outlook email client", docs
  `resources/mailfolder.md`) nor the search folders' parent, which sit outside that tree. Both
  take the same options (``$select``, ``$top``, ``$skip``, the ``$filter``s below,
  ``$expand=attachments``), newest received first, with an ``@odata.nextLink`` carrying them
  all; Graph warns not to read ``$skip`` out of it (it counts every item the mailbox went
  through), so clients follow it whole. ``@odata.context`` ends ``/messages`` for the mailbox,
  ``/mailFolders('{id}')/messages`` for a folder.
* ``GET /me/messages/{id}/attachments`` and ``.../mailFolders/{id}/messages/{id}/attachments``
  (``$select`` of the base ``attachment`` properties, ``$top``) -- docs
  `api/message-list-attachments.md`, `resources/attachment.md`. Without ``$select`` a
  fileAttachment carries ``contentBytes`` (generated, at most 1 MiB here), which is why clients
  select; a derived type's property in ``$select`` is a 400 (graph-explorer-v4#3916).
* Calendar paths (``/me/events...``, ``/me/calendar/...``, ``/me/calendarView...``, any
  method) go to calendar_api.py.
* Composing and sending (``POST /me/messages``, ``.../messages/{id}/attachments``,
  ``/send``, ``/createReply``, ``/reply``, ``/me/sendMail``) and ``POST
  /me/calendar/getSchedule`` go to send_api.py (and schedule.py).
* ``POST /v1.0/$batch`` -- JSON batching (docs `concepts/json-batching.md` @ 028b8e35): at
  most 20 requests, ids unique (case-insensitive) or the batch is a 400; each sub-request goes
  through the same routing, scopes and (via the server's hook) fault plan as a request of its
  own, so a fault whose path matches a sub-request's path answers that sub-request alone (a
  429 with its ``Retry-After`` in the sub-response's headers, as Graph does); the envelope is
  200 ``{"responses": [{"id", "status", "headers", "body"}]}``. ``dependsOn`` is honoured
  the simple way: requests run in the given order, and one whose dependency did not succeed
  gets 424 Failed Dependency.

Page sizes: Graph documents neither a default nor a maximum for ``odata.maxpagesize`` on
message delta; it says the preference sets "the maximum number of messages in a response".
For listing messages it documents "The default page size is 10 messages. Use $top to customize
the page size, within the range of 1 and 1000" (docs `api/user-list-messages.md` @ 0273c463),
and a Microsoft maintainer wrote "In Outlook, the default page size is 10, and the max is a
black box" (msgraph-sdk-powershell#1230). So: default 10, and larger preferences are capped
at 1000, the one documented Outlook bound; the applied value is echoed in Preference-Applied.
"""

from __future__ import annotations

import base64
import copy
import functools
import hashlib
import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote, urlsplit

from werkzeug.test import EnvironBuilder
from werkzeug.wrappers import Request, Response

from m365sync.emulator import calendar_api, delta
from m365sync.emulator.mailbox import Mailbox, html_to_text, is_well_formed_id
from m365sync.emulator.wire import action_parameters, graph_error, json_response

DEFAULT_PAGE = 10
MAX_PAGE = 1000  # the largest $top a list accepts (a larger one is a 400)
# The most items a page asked with `Prefer: odata.maxpagesize` holds: Graph may send fewer
# than asked, and tests lower this to prove the client follows what it gets.
MAX_PREFERRED_PAGE = MAX_PAGE

USER_READ = frozenset(["user.read", "user.readwrite", "user.read.all", "user.readwrite.all"])
MAIL_READ = frozenset(["mail.read", "mail.readwrite"])

ODATA_OPTIONS = frozenset(
    [
        "select",
        "expand",
        "filter",
        "orderby",
        "top",
        "skip",
        "count",
        "search",
        "format",
        "skiptoken",
        "deltatoken",
        "apply",
        "compute",
        "levels",
        "id",
        "index",
        "schemaversion",
    ]
)

USER_PROPERTIES = (
    "id",
    "displayName",
    "givenName",
    "surname",
    "mail",
    "userPrincipalName",
    "jobTitle",
    "businessPhones",
    "mobilePhone",
    "officeLocation",
    "preferredLanguage",
    "accountEnabled",
    "city",
    "companyName",
    "country",
    "department",
    "employeeId",
    "mailNickname",
    "otherMails",
    "postalCode",
    "state",
    "streetAddress",
    "usageLocation",
    "userType",
    "createdDateTime",
    "identities",
    "proxyAddresses",
    "onPremisesImmutableId",
)
DEFAULT_USER_PROPERTIES = USER_PROPERTIES[:11]
FOLDER_PROPERTIES = (
    "id",
    "displayName",
    "parentFolderId",
    "childFolderCount",
    "unreadItemCount",
    "totalItemCount",
    "isHidden",
)
SEARCH_FOLDER_PROPERTIES = ("isSupported", "includeNestedFolders", "sourceFolderIds", "filterQuery")
MESSAGE_PROPERTIES = (
    "id",
    "createdDateTime",
    "lastModifiedDateTime",
    "changeKey",
    "categories",
    "receivedDateTime",
    "sentDateTime",
    "hasAttachments",
    "internetMessageId",
    "subject",
    "bodyPreview",
    "importance",
    "parentFolderId",
    "conversationId",
    "conversationIndex",
    "isDeliveryReceiptRequested",
    "isReadReceiptRequested",
    "isRead",
    "isDraft",
    "webLink",
    "inferenceClassification",
    "body",
    "sender",
    "from",
    "toRecipients",
    "ccRecipients",
    "bccRecipients",
    "replyTo",
    "flag",
    "uniqueBody",
    "internetMessageHeaders",
)
# The base `attachment` properties (docs `resources/attachment.md`): the only ones $select takes.
ATTACHMENT_PROPERTIES = ("id", "lastModifiedDateTime", "name", "contentType", "size", "isInline")
FILE_ATTACHMENT = "#microsoft.graph.fileAttachment"
CONTENT_BYTES_CAP = 1 << 20
MAX_BATCH = 20
# Returned only when asked for with $select (docs `resources/message.md`).
SELECT_ONLY = frozenset(["uniqueBody", "internetMessageHeaders"])

_SEGMENT_KEY = re.compile(r"^([^()]+)\('(.*)'\)$")
_FILTER = re.compile(r"^\s*receivedDateTime\s+(ge|gt)\s+(\S+)\s*$", re.IGNORECASE)


class GraphError(Exception):
    """An error answer: raised anywhere below `handle`, turned into Graph's error body."""

    def __init__(self, status: int, code: str, message: str, *, inner: bool = True) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.inner = status, code, message, inner


@dataclass
class Call:
    """One request as the handlers see it."""

    request: Request
    mailbox: Mailbox
    scopes: frozenset[str]
    base: str  # e.g. https://127.0.0.1:8443/v1.0
    principal: str  # "me" or "users('<id>')", as links should repeat it
    options: dict[str, str]  # system query options, lower-case name without "$"
    custom: dict[str, str]  # other query parameters, lower-case name
    prefer: dict[str, str] = field(default_factory=dict)
    applied: list[str] = field(default_factory=list)

    @property
    def user_id(self) -> str:
        return str(self.mailbox.user["id"])


# --------------------------------------------------------------------------- entry point


SubDispatch = Callable[[Request], Response]


def handle(
    request: Request,
    mailbox: Mailbox,
    *,
    scopes: frozenset[str],
    public_base: str,
    subrequest: SubDispatch | None = None,
) -> Response:
    """Answer a Graph v1.0 request whose bearer token the server already accepted.

    ``subrequest`` answers one request of a ``$batch`` (the server applies its fault plan
    there); by default a sub-request is answered by `handle` itself with the same scopes.
    """
    try:
        if _is_batch(request.path):
            own = functools.partial(handle, mailbox=mailbox, scopes=scopes, public_base=public_base)
            return _batch(request, subrequest or own)
        return _dispatch(request, mailbox, scopes, public_base)
    except GraphError as error:
        return graph_error(
            error.status, error.code, error.message, request=request, inner_error=error.inner
        )


def _dispatch(
    request: Request, mailbox: Mailbox, scopes: frozenset[str], public_base: str
) -> Response:
    path = request.path
    if not path.lower().startswith("/v1.0/"):
        raise GraphError(400, "BadRequest", "Invalid version.")
    tokens = _tokens(path[len("/v1.0/") :])
    base = public_base.rstrip("/")
    if base.lower().endswith("/v1.0"):
        base = base[: -len("/v1.0")]
    options, custom = _split_query(request)
    call = Call(
        request=request,
        mailbox=mailbox,
        scopes=frozenset(s.rsplit("/", 1)[-1].lower() for s in scopes),
        base=base + "/v1.0",
        principal="me",
        options=options,
        custom=custom,
        prefer=_parse_prefer(request),
    )
    rest = _principal(call, tokens)
    # Action parameter names are case-insensitive in Graph (the SDKs send PascalCase).
    request = call.request = action_parameters(request, rest)
    mailbox.settle_sends()  # sent copies whose delay has passed reach Sent Items first
    from m365sync.emulator import send_api  # imports this module: load it after

    if send_api.handles(request.method, rest):
        response = send_api.route(call, rest)
        if call.applied:
            response.headers["Preference-Applied"] = ", ".join(call.applied)
        return response
    if calendar_api.is_calendar_path(rest):
        response = calendar_api.route(call, rest)
        if call.applied:
            response.headers["Preference-Applied"] = ", ".join(call.applied)
        return response
    if request.method not in ("GET", "HEAD"):
        raise GraphError(
            405, "Request_BadRequest", f"The HTTP method '{request.method}' is not allowed."
        )
    handler, args = _route(rest)
    response = handler(call, *args)
    if call.applied:
        response.headers["Preference-Applied"] = ", ".join(call.applied)
    return response


def _tokens(path: str) -> list[str]:
    """Path segments with ``name('key')`` split into ``name``, ``key``."""
    out: list[str] = []
    for segment in path.split("/"):
        if not segment:
            continue
        match = _SEGMENT_KEY.match(segment)
        if match:
            out += [match.group(1), match.group(2)]
        else:
            out.append(segment)
    return out


def _principal(call: Call, tokens: list[str]) -> list[str]:
    if not tokens:
        raise GraphError(400, "BadRequest", "Resource not found for the segment ''.")
    head = tokens[0].lower()
    if head == "me":
        return tokens[1:]
    if head == "users" and len(tokens) > 1:
        who = tokens[1].lower()
        user = call.mailbox.user
        known = {str(user.get(k) or "").lower() for k in ("id", "userPrincipalName", "mail")}
        if who not in known:
            raise GraphError(
                404, "ErrorInvalidUser", f"The requested user '{tokens[1]}' is invalid."
            )
        call.principal = f"users('{user['id']}')"
        return tokens[2:]
    raise GraphError(400, "BadRequest", f"Resource not found for the segment '{tokens[0]}'.")


Handler = Callable[..., Response]


def _route(rest: list[str]) -> tuple[Handler, tuple[Any, ...]]:
    lowered = [t.lower() for t in rest]
    if not rest:
        return _get_me, ()
    if lowered[0] == "messages" and len(rest) == 1:
        return _list_messages, (None,)
    if lowered[0] == "messages" and len(rest) == 2:
        return _get_message, (rest[1],)
    if lowered[0] == "messages" and len(rest) == 3 and lowered[2] == "attachments":
        return _list_attachments, (rest[1], None)
    if lowered[0] != "mailfolders":
        raise GraphError(400, "BadRequest", f"Resource not found for the segment '{rest[0]}'.")
    if len(rest) == 1:
        return _list_folders, (None,)
    chain = [rest[1]]
    position = 2
    while position + 1 < len(rest) and lowered[position] == "childfolders":
        chain.append(rest[position + 1])
        position += 2
    tail = lowered[position:]
    if not tail:
        return _get_folder, (chain,)
    if tail == ["childfolders"]:
        return _list_folders, (chain,)
    if tail == ["messages"]:
        return _list_messages, (chain,)
    if tail[0] == "messages" and len(tail) == 2:
        if tail[1] in ("delta", "delta()", "microsoft.graph.delta", "microsoft.graph.delta()"):
            return _delta, (chain,)
        return _get_message, (rest[position + 1],)
    if tail[0] == "messages" and len(tail) == 3 and tail[2] == "attachments":
        return _list_attachments, (rest[position + 1], chain)
    raise GraphError(400, "BadRequest", f"Resource not found for the segment '{rest[position]}'.")


# --------------------------------------------------------------------------- query helpers


def _split_query(request: Request) -> tuple[dict[str, str], dict[str, str]]:
    """System query options (``$select`` or, as Graph also accepts, ``select``) vs the rest."""
    options: dict[str, str] = {}
    custom: dict[str, str] = {}
    for key, value in request.args.items():
        name = key.lower()
        if name.startswith("$"):
            if name[1:] not in ODATA_OPTIONS:
                raise GraphError(400, "BadRequest", f"Query option '{key}' is not supported.")
            options[name[1:]] = value
        elif name in ODATA_OPTIONS and name not in ("id", "index"):
            options[name] = value
        else:
            custom[name] = value
    return options, custom


def _allow(call: Call, *names: str) -> None:
    for name in call.options:
        if name not in names:
            raise GraphError(
                400, "BadRequest", f"Query option '${name}' is not supported for this request."
            )


def _parse_prefer(request: Request) -> dict[str, str]:
    """``Prefer`` preferences (several headers or comma-separated), names lower-cased."""
    found: dict[str, str] = {}
    for header in request.headers.getlist("Prefer"):
        for part in re.findall(r'(?:[^,"]|"[^"]*")+', header):
            name, _, value = part.strip().partition("=")
            if name:
                found[name.strip().lower()] = value.strip().strip('"')
    return found


def _require(call: Call, allowed: frozenset[str]) -> None:
    if not call.scopes & allowed:
        raise GraphError(
            403, "ErrorAccessDenied", "Access is denied. Check credentials and try again."
        )


def _select(
    call: Call, known: tuple[str, ...], type_name: str, code: str
) -> tuple[str, ...] | None:
    raw = call.options.get("select")
    if raw is None or not raw.strip():
        return None
    canonical = {name.lower(): name for name in known}
    chosen: list[str] = []
    for item in raw.split(","):
        name = item.strip()
        if name.lower() not in canonical:
            raise GraphError(
                400, code, f"Could not find a property named '{name}' on type '{type_name}'."
            )
        if canonical[name.lower()] not in chosen:
            chosen.append(canonical[name.lower()])
    return tuple(chosen)


def _int_option(call: Call, name: str, low: int, high: int) -> int | None:
    if name not in call.options:
        return None
    try:
        value = int(call.options[name])
    except ValueError:
        raise GraphError(
            400, "BadRequest", f"Invalid value '{call.options[name]}' for ${name}."
        ) from None
    if not low <= value <= high:
        raise GraphError(
            400, "ErrorInvalidUrlQuery", f"The value of ${name} must be between {low} and {high}."
        )
    return value


def _body_type(call: Call) -> str | None:
    wanted = call.prefer.get("outlook.body-content-type", "").lower()
    if wanted in ("text", "html"):
        call.applied.append(f'outlook.body-content-type="{wanted}"')
        return wanted
    return None


def _id_type(call: Call) -> None:
    # Ids never change on a move here, so ImmutableId is what every id already is.
    if call.prefer.get("idtype", "").lower() == "immutableid":
        call.applied.append('IdType="ImmutableId"')


def _max_page_size(call: Call) -> int | None:
    value = call.prefer.get("odata.maxpagesize")
    if value is None:
        return None
    try:
        size = int(value)
    except ValueError:
        return None
    if size < 1:
        return None
    size = min(size, MAX_PREFERRED_PAGE)
    call.applied.append(f"odata.maxpagesize={size}")
    return size


# --------------------------------------------------------------------------- /me


def _get_me(call: Call) -> Response:
    _require(call, USER_READ)
    _allow(call, "select")
    chosen = _select(
        call, USER_PROPERTIES, "Microsoft.DirectoryServices.User", "Request_BadRequest"
    )
    user = call.mailbox.user
    names = chosen or DEFAULT_USER_PROPERTIES
    context = f"{call.base}/$metadata#users/$entity"
    if chosen:
        context = f"{call.base}/$metadata#users({','.join(chosen)})/$entity"
    body: dict[str, Any] = {"@odata.context": context}
    body.update({name: copy.deepcopy(user.get(name)) for name in names})
    return json_response(body)


# --------------------------------------------------------------------------- folders


def _folder_id(call: Call, chain: list[str]) -> str:
    """Resolve ``mailFolders/{a}/childFolders/{b}...`` to the last folder's id."""
    mailbox = call.mailbox
    parent: str | None = None
    for ref in chain:
        folder = mailbox.resolve_folder(ref)
        if folder is None:
            if not is_well_formed_id(ref):
                raise GraphError(400, "ErrorInvalidIdMalformed", "Id is malformed.")
            raise GraphError(
                404, "ErrorItemNotFound", "The specified object was not found in the store."
            )
        if parent is not None and folder["parentFolderId"] != parent:
            raise GraphError(
                404, "ErrorItemNotFound", "The specified object was not found in the store."
            )
        parent = folder["id"]
    assert parent is not None
    return parent


def _shape_folder(folder: dict[str, Any], chosen: tuple[str, ...] | None) -> dict[str, Any]:
    """A mailFolder, or a mailSearchFolder with its ``@odata.type`` first (the derived type
    is annotated in a base-type collection, with or without ``$select``; docs
    `api/user-list-mailfolders.md`, example 1) and, without ``$select``, its own properties."""
    if not chosen:
        shaped = {name: folder[name] for name in FOLDER_PROPERTIES}
    else:
        shaped = {
            name: folder[name] for name in FOLDER_PROPERTIES if name in chosen or name == "id"
        }
    if "@odata.type" not in folder:
        return shaped
    shaped = {"@odata.type": folder["@odata.type"], **shaped}
    if not chosen:
        shaped.update({name: folder[name] for name in SEARCH_FOLDER_PROPERTIES})
    return shaped


def _get_folder(call: Call, chain: list[str]) -> Response:
    _require(call, MAIL_READ)
    _allow(call, "select")
    chosen = _select(
        call, FOLDER_PROPERTIES, "microsoft.graph.mailFolder", "RequestBroker--ParseUri"
    )
    with call.mailbox.lock:
        fid = _folder_id(call, chain)
        folder = call.mailbox.resolve_folder(fid)
    assert folder is not None
    body = {"@odata.context": f"{call.base}/$metadata#users('{call.user_id}')/mailFolders/$entity"}
    body.update(_shape_folder(folder, chosen))
    return json_response(body)


def _list_folders(call: Call, chain: list[str] | None) -> Response:
    _require(call, MAIL_READ)
    _allow(call, "select", "top", "skip")
    chosen = _select(
        call, FOLDER_PROPERTIES, "microsoft.graph.mailFolder", "RequestBroker--ParseUri"
    )
    top = _int_option(call, "top", 1, MAX_PAGE)
    skip = _int_option(call, "skip", 0, 10**9) or 0
    hidden = call.custom.get("includehiddenfolders", "").lower() == "true"
    with call.mailbox.lock:
        if chain is None:
            folders = call.mailbox.child_folders("msgfolderroot")
            context = f"users('{call.user_id}')/mailFolders"
            path = f"{call.principal}/mailFolders"
        else:
            fid = _folder_id(call, chain)
            folders = call.mailbox.child_folders(fid)
            context = f"users('{call.user_id}')/mailFolders('{fid}')/childFolders"
            path = f"{call.principal}/mailFolders('{fid}')/childFolders"
    if not hidden:
        folders = [f for f in folders if not f["isHidden"]]
    size = top or DEFAULT_PAGE
    page = folders[skip : skip + size]
    body: dict[str, Any] = {"@odata.context": f"{call.base}/$metadata#{context}"}
    if skip + size < len(folders):
        params = []
        if hidden:
            params.append("includeHiddenFolders=true")
        if "select" in call.options:
            params.append("%24select=" + quote(call.options["select"], safe=","))
        if top:
            params.append(f"%24top={top}")
        params.append(f"%24skip={skip + size}")
        body["@odata.nextLink"] = f"{call.base}/{path}?{'&'.join(params)}"
    body["value"] = [_shape_folder(f, chosen) for f in page]
    return json_response(body)


# --------------------------------------------------------------------------- messages


def _text_body(body: Any) -> Any:
    if isinstance(body, dict) and str(body.get("contentType", "")).lower() == "html":
        return {"contentType": "text", "content": html_to_text(str(body.get("content") or ""))}
    return body


def shape_message(
    message: dict[str, Any], chosen: tuple[str, ...] | None, body_type: str | None
) -> dict[str, Any]:
    """A message as Graph returns it in a collection: @odata.type, @odata.etag, then the
    selected (or default) properties; id is always there."""
    out: dict[str, Any] = {"@odata.type": "#microsoft.graph.message"}
    if "@odata.etag" in message:
        out["@odata.etag"] = message["@odata.etag"]
    if chosen:
        for name in chosen:
            if name == "uniqueBody" and name not in message:
                out[name] = copy.deepcopy(message.get("body"))
            else:
                out[name] = copy.deepcopy(message.get(name))
        out["id"] = message.get("id")
    else:
        for name, value in message.items():
            if name not in SELECT_ONLY and name != "@odata.etag":
                out[name] = copy.deepcopy(value)
    if body_type == "text":
        for name in ("body", "uniqueBody"):
            if name in out:
                out[name] = _text_body(out[name])
    return out


def _get_message(call: Call, mid: str) -> Response:
    _require(call, MAIL_READ)
    _allow(call, "select")
    chosen = _select(call, MESSAGE_PROPERTIES, "microsoft.graph.message", "RequestBroker--ParseUri")
    _id_type(call)
    body_type = _body_type(call)
    with call.mailbox.lock:
        try:
            message = call.mailbox.view(mid)
        except KeyError:
            if not is_well_formed_id(mid):
                raise GraphError(400, "ErrorInvalidIdMalformed", "Id is malformed.") from None
            raise GraphError(
                404, "ErrorItemNotFound", "The specified object was not found in the store."
            ) from None
        raw = call.mailbox.is_raw(mid)
        shaped = copy.deepcopy(message) if raw else shape_message(message, chosen, body_type)
    shaped.pop("@odata.type", None)
    body = {"@odata.context": f"{call.base}/$metadata#users('{call.user_id}')/messages/$entity"}
    body.update(shaped)
    return json_response(body)


_LIST_FILTER = re.compile(
    r"^\s*(receivedDateTime|sentDateTime)\s+(ge|gt)\s+(\S+)\s*$", re.IGNORECASE
)
_HAS_ATTACHMENTS = re.compile(r"^\s*hasAttachments\s+eq\s+(true|false)\s*$", re.IGNORECASE)
_EXPAND_ATTACHMENTS = re.compile(r"^\s*attachments\s*(?:\(\s*\$select=([^)]*)\))?\s*$", re.I)


def _list_test(text: str) -> Callable[[dict[str, Any]], bool]:
    """A list ``$filter`` of clauses joined by ``and``: ``receivedDateTime|sentDateTime ge|gt
    {instant}`` and ``hasAttachments eq true|false`` (what clients of this emulator send)."""
    tests: list[Callable[[dict[str, Any]], bool]] = []
    for clause in re.split(r"\s+and\s+", text.strip(), flags=re.IGNORECASE):
        if has := _HAS_ATTACHMENTS.match(clause):
            wanted = has.group(1).lower() == "true"
            tests.append(lambda m, wanted=wanted: bool(m.get("hasAttachments")) is wanted)
            continue
        match = _LIST_FILTER.match(clause)
        if not match:
            raise GraphError(400, "ErrorInvalidUrlQuery", "The '$filter' value is not supported.")
        field_name, op, value = match.groups()
        key = "receivedDateTime" if field_name.lower() == "receiveddatetime" else "sentDateTime"
        bound = value.strip("'")

        def test(message: dict[str, Any], key: str = key, op: str = op, bound: str = bound) -> bool:
            stamp = str(message.get(key) or "")
            return bool(stamp) and (stamp >= bound if op.lower() == "ge" else stamp > bound)

        tests.append(test)
    return lambda message: all(t(message) for t in tests)


def _expand_attachments(call: Call) -> tuple[str, ...] | bool | None:
    """``$expand=attachments`` (False: no expansion, None: every property) or its nested
    ``$select`` of base attachment properties (list messages honours it; delta does not)."""
    raw = call.options.get("expand")
    if raw is None:
        return False
    match = _EXPAND_ATTACHMENTS.match(raw)
    if not match:
        raise GraphError(400, "BadRequest", "Only '$expand=attachments' is supported here.")
    if not match.group(1):
        return None
    canonical = {name.lower(): name for name in ATTACHMENT_PROPERTIES}
    chosen: list[str] = []
    for item in match.group(1).split(","):
        name = item.strip()
        if name.lower() not in canonical:
            raise GraphError(
                400,
                "RequestBroker--ParseUri",
                f"Could not find a property named '{name}' on type 'microsoft.graph.attachment'.",
            )
        chosen.append(canonical[name.lower()])
    return tuple(chosen)


# (mailbox, folder or tree, $filter, change sequence, members) -> the matching ids, newest
# first. Listing a large seeded folder materialises every message to filter and sort it; a
# client paging through it (the attachment index) would pay that for every page, and that CPU
# would delay every other request, which real Graph does not. Any change the delta log sees
# moves the sequence, so a cached order is never stale.
_LISTED: dict[tuple[int, str, str, int, int], list[str]] = {}


def _listed_ids(
    call: Call, fid: str | None, test: Callable[[dict[str, Any]], bool] | None
) -> list[str]:
    """The ids of folder ``fid``'s messages (of the whole message folder tree when None)
    passing ``test``, newest received first (the caller holds the mailbox lock)."""
    mailbox = call.mailbox
    if fid is None:
        tree = mailbox.tree_folder_ids()
        ids = mailbox.message_ids_in_tree()
        scope = f"tree:{len(tree)}"  # a folder moved in or out of the tree changes it
    else:
        ids = mailbox.message_ids_in(fid)
        scope = fid
    key = (id(mailbox), scope, call.options.get("filter", ""), mailbox.sequence, len(ids))
    cached = _LISTED.get(key)
    if cached is None:
        views = [mailbox.listing_view(mid) for mid in ids]
        views = [m for m in views if test is None or test(m)]
        views.sort(key=lambda m: str(m.get("receivedDateTime") or ""), reverse=True)
        cached = [m["id"] for m in views]
        if len(_LISTED) >= 32:
            _LISTED.clear()
        _LISTED[key] = cached
    return cached


def _list_messages(call: Call, chain: list[str] | None) -> Response:
    """GET /me/mailFolders/{id}/messages (docs `api/mailfolder-list-messages.md`) or, with no
    folder, GET /me/messages: "the messages in the signed-in user's mailbox (including the
    Deleted Items and Clutter folders)" (docs `api/user-list-messages.md`), i.e. every folder
    of the message folder tree, hidden ones too, and not Recoverable Items, which sits outside
    it ("not visible in any Outlook email client", docs `resources/mailfolder.md`). Both: default
    page 10, ``$top`` up to 1000, ``$skip``, ``$select``, ``$expand=attachments`` with a nested
    ``$select`` (honoured on this path, unlike delta: msgraph-sdk-dotnet-core#437), and here
    only the ``$filter``s a client needs (received or sent since, hasAttachments)."""
    _require(call, MAIL_READ)
    _allow(call, "select", "filter", "top", "skip", "expand")
    chosen = _select(call, MESSAGE_PROPERTIES, "microsoft.graph.message", "RequestBroker--ParseUri")
    expand = _expand_attachments(call)
    _id_type(call)
    body_type = _body_type(call)
    top = _int_option(call, "top", 1, 1000) or 10
    skip = _int_option(call, "skip", 0, 10**9) or 0
    test = _list_test(call.options["filter"]) if "filter" in call.options else None

    with call.mailbox.lock:
        fid = None if chain is None else _folder_id(call, chain)
        ordered = _listed_ids(call, fid, test)
        page = [call.mailbox.view(mid) for mid in ordered[skip : skip + top]]
    where = "" if fid is None else f"/mailFolders('{fid}')"
    body: dict[str, Any] = {
        "@odata.context": f"{call.base}/$metadata#users('{call.user_id}'){where}/messages",
        "value": [shape_message(m, chosen, body_type) for m in page],
    }
    if expand is not False:
        with call.mailbox.lock:
            for shaped in body["value"]:
                shaped["attachments"] = [
                    shape_attachment(a, expand) for a in call.mailbox.attachments(shaped["id"])
                ]
    if skip + top < len(ordered):
        args = dict(call.request.args)
        args["$skip"] = str(skip + top)
        query = "&".join(f"{k}={quote(str(v), safe=',')}" for k, v in args.items())
        host = call.base.rsplit("/v1.0", 1)[0]
        body["@odata.nextLink"] = f"{host}{call.request.path}?{query}"
    return json_response(body)


# --------------------------------------------------------------------------- attachments


def _content_bytes(attachment: dict[str, Any]) -> str:
    """Deterministic stand-in content of the attachment's size (capped), base64."""
    size = min(max(int(attachment.get("size") or 0), 0), CONTENT_BYTES_CAP)
    data = hashlib.shake_256(str(attachment.get("id")).encode()).digest(size) if size else b""
    return base64.b64encode(data).decode("ascii")


def shape_attachment(attachment: dict[str, Any], chosen: tuple[str, ...] | None) -> dict[str, Any]:
    """An attachment as list-attachments returns it: @odata.type always (the collection is of
    the base type), then the selected properties and id, or everything with contentBytes."""
    out: dict[str, Any] = {"@odata.type": attachment.get("@odata.type")}
    if chosen:
        for name in chosen:
            out[name] = copy.deepcopy(attachment.get(name))
        out["id"] = attachment.get("id")
        return out
    is_file = attachment.get("@odata.type") == FILE_ATTACHMENT
    if is_file:
        out["@odata.mediaContentType"] = attachment.get("contentType")
    for name, value in attachment.items():
        if name != "@odata.type":
            out[name] = copy.deepcopy(value)
    if is_file and "contentBytes" not in out:
        out["contentBytes"] = _content_bytes(attachment)
    return out


def _list_attachments(call: Call, mid: str, chain: list[str] | None) -> Response:
    _require(call, MAIL_READ)
    _allow(call, "select", "top")
    chosen = _select(
        call, ATTACHMENT_PROPERTIES, "microsoft.graph.attachment", "RequestBroker--ParseUri"
    )
    top = _int_option(call, "top", 1, MAX_PAGE)
    _id_type(call)
    with call.mailbox.lock:
        if chain is not None:
            fid = _folder_id(call, chain)
        try:
            attachments = call.mailbox.attachments(mid)
            if chain is not None and call.mailbox.folder_of(mid) != fid:
                raise KeyError(mid)
        except KeyError:
            if not is_well_formed_id(mid):
                raise GraphError(400, "ErrorInvalidIdMalformed", "Id is malformed.") from None
            raise GraphError(
                404, "ErrorItemNotFound", "The specified object was not found in the store."
            ) from None
    context = f"{call.base}/$metadata#users('{call.user_id}')/messages('{mid}')/attachments"
    if chosen:
        context += f"({','.join(chosen)})"
    page = attachments[:top] if top else attachments
    body = {"@odata.context": context, "value": [shape_attachment(a, chosen) for a in page]}
    return json_response(body)


# --------------------------------------------------------------------------- $batch


def _is_batch(path: str) -> bool:
    return path.lower().rstrip("/") == "/v1.0/$batch"


def _batch(request: Request, subrequest: SubDispatch) -> Response:
    """JSON batching: validate the envelope, answer each request through ``subrequest``."""
    if request.method != "POST":
        raise GraphError(
            405, "Request_BadRequest", f"The HTTP method '{request.method}' is not allowed."
        )
    payload = request.get_json(silent=True)
    entries = payload.get("requests") if isinstance(payload, dict) else None
    if not isinstance(entries, list) or not entries:
        raise GraphError(400, "BadRequest", "Invalid batch payload format.")
    if len(entries) > MAX_BATCH:
        # The limit is documented ("limited to 20 individual requests"); the body is not.
        raise GraphError(
            400,
            "BadRequest",
            f"The batch contains {len(entries)} requests; at most {MAX_BATCH} are allowed.",
        )
    seen: set[str] = set()
    for entry in entries:
        if not isinstance(entry, dict):
            raise GraphError(400, "BadRequest", "Invalid batch payload format.")
        for name in ("id", "method", "url"):
            if not isinstance(entry.get(name), str) or not entry[name]:
                raise GraphError(400, "BadRequest", f"A batch request is missing '{name}'.")
        key = entry["id"].lower()  # "Not case-sensitive. Must be unique in the batch"
        if key in seen:
            raise GraphError(400, "BadRequest", f"Batch request id '{entry['id']}' is not unique.")
        seen.add(key)
    statuses: dict[str, int] = {}
    responses = []
    for entry in entries:
        depends = entry.get("dependsOn") or []
        if any(statuses.get(str(d).lower(), 0) // 100 != 2 for d in depends):
            answer = _failed_dependency(entry)
        else:
            answer = _sub_answer(entry, _sub_response(request, entry, subrequest))
        statuses[entry["id"].lower()] = answer["status"]
        responses.append(answer)
    return json_response({"responses": responses})


def _sub_response(outer: Request, entry: dict[str, Any], subrequest: SubDispatch) -> Response:
    url = entry["url"]
    parts = urlsplit(url)
    if parts.scheme or parts.netloc:
        return graph_error(400, "BadRequest", "The request URL must be relative.")
    path = "/v1.0/" + parts.path.lstrip("/")
    if _is_batch(path):
        return graph_error(400, "BadRequest", "A batch cannot contain another batch.")
    headers = {str(k): str(v) for k, v in (entry.get("headers") or {}).items()}
    body = entry.get("body")
    builder = EnvironBuilder(
        path=path,
        base_url=outer.host_url,
        query_string=parts.query,
        method=entry["method"].upper(),
        headers=headers,
        data=json.dumps(body) if body is not None else None,
    )
    try:
        sub = Request(builder.get_environ())
    finally:
        builder.close()
    return subrequest(sub)


_SUB_HEADERS = ("Content-Type", "Retry-After", "Preference-Applied", "Location", "ETag")


def _sub_answer(entry: dict[str, Any], response: Response) -> dict[str, Any]:
    """A response as one item of ``responses`` (docs: id, status, headers, body)."""
    headers = {"Cache-Control": "no-cache"}
    for name in _SUB_HEADERS:
        if name in response.headers:
            headers[name] = response.headers[name]
    if response.status_code < 300 and response.mimetype == "application/json":
        headers["OData-Version"] = "4.0"
    answer: dict[str, Any] = {"id": entry["id"], "status": response.status_code, "headers": headers}
    data = response.get_data()
    if data:
        try:
            answer["body"] = json.loads(data)
        except ValueError:
            answer["body"] = data.decode("utf-8", "replace")
    return answer


def _failed_dependency(entry: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": entry["id"],
        "status": 424,
        "headers": {"Cache-Control": "no-cache", "Content-Type": "application/json"},
        "body": {"error": {"code": "FailedDependency", "message": "Failed dependency."}},
    }


# --------------------------------------------------------------------------- delta


def _delta_query(call: Call) -> delta.DeltaQuery:
    """Validate the options of a round's first request (docs `concepts/delta-query-messages.md`)."""
    for name in call.options:
        if name == "search":
            raise GraphError(
                400,
                "ErrorInvalidUrlQuery",
                "The '$search' parameter is not supported for delta queries.",
            )
        if name == "expand":
            raise GraphError(
                400,
                "ErrorInvalidUrlQuery",
                "The emulator does not support '$expand' on message delta.",
            )
        if name not in ("select", "filter", "top", "orderby", "skiptoken", "deltatoken"):
            raise GraphError(
                400,
                "ErrorInvalidUrlQuery",
                f"The '${name}' parameter is not supported for delta queries.",
            )
    chosen = _select(call, MESSAGE_PROPERTIES, "microsoft.graph.message", "RequestBroker--ParseUri")
    top = _int_option(call, "top", 1, MAX_PAGE)
    filter_op = filter_since = None
    if "filter" in call.options:
        match = _FILTER.match(call.options["filter"])
        if not match:
            raise GraphError(
                400,
                "ErrorInvalidUrlQuery",
                "The '$filter' parameter value is not supported for 'Messages' resource; "
                "only a value of 'receivedDateTime ge value' is supported.",
            )
        try:
            filter_since = delta.parse_instant(match.group(2))
        except ValueError:
            raise GraphError(
                400, "BadRequest", f"Invalid filter clause: '{match.group(2)}'."
            ) from None
        filter_op = match.group(1).lower()
    order_desc = False
    if "orderby" in call.options:
        if re.sub(r"\s+", " ", call.options["orderby"].strip()).lower() != "receiveddatetime desc":
            raise GraphError(
                400,
                "ErrorInvalidUrlQuery",
                "The '$orderby' parameter value is not supported for delta queries; "
                "only 'receivedDateTime desc' is supported.",
            )
        order_desc = True
    change_type = call.custom.get("changetype")
    if change_type is not None and change_type.lower() not in ("created", "updated", "deleted"):
        raise GraphError(
            400,
            "ErrorInvalidUrlQuery",
            f"The value '{change_type}' of changeType is not supported.",
        )
    return delta.DeltaQuery(
        select=chosen,
        change_type=change_type.lower() if change_type else None,  # type: ignore[arg-type]
        top=top,
        filter_op=filter_op,  # type: ignore[arg-type]
        filter_since=filter_since,
        order_desc=order_desc,
    )


def _sync_state_gone(call: Call) -> GraphError:
    generation = call.mailbox.sync_states.generation
    return GraphError(
        410,
        "SyncStateNotFound",
        f"The sync state generation is not found; generation={max(generation - 1, 0)};"
        f"[highest={generation}]",
        inner=False,
    )


def _delta(call: Call, chain: list[str]) -> Response:
    _require(call, MAIL_READ)
    mailbox = call.mailbox
    skiptoken = call.options.get("skiptoken") or ""
    deltatoken = call.options.get("deltatoken") or ""
    query = None if (skiptoken or deltatoken) else _delta_query(call)
    _id_type(call)
    body_type = _body_type(call)
    page_pref = _max_page_size(call)
    with mailbox.lock:
        fid = _folder_id(call, chain)
        if query is not None:
            rnd = delta.start_round(mailbox, fid, None, query)
            cursor = delta.PageCursor(rnd, 0)
        else:
            state = mailbox.sync_states.lookup(skiptoken or deltatoken)
            if state is None or (isinstance(state, delta.DeltaCursor) != bool(deltatoken)):
                raise _sync_state_gone(call)
            if isinstance(state, delta.DeltaCursor):
                if state.folder_id != fid:
                    raise _sync_state_gone(call)
                cursor = delta.PageCursor(
                    delta.start_round(mailbox, fid, state.watermark, state.query), 0
                )
            else:
                if state.round.folder_id != fid:
                    raise _sync_state_gone(call)
                cursor = state
        rnd_query = cursor.round.query
        sizes = [s for s in (page_pref, rnd_query.top) if s]
        page = delta.serve_page(
            mailbox, mailbox.sync_states, cursor, min(sizes) if sizes else DEFAULT_PAGE
        )
        value = []
        for kind, mid in page.entries:
            if kind == "removed":
                value.append(
                    {
                        "@odata.type": "#microsoft.graph.message",
                        "id": mid,
                        "@removed": {"reason": "deleted"},
                    }
                )
            elif mailbox.is_raw(mid):
                value.append(copy.deepcopy(mailbox.view(mid)))
            else:
                value.append(shape_message(mailbox.view(mid), rnd_query.select, body_type))
    link = f"{call.base}/{call.principal}/mailFolders('{fid}')/messages/delta"
    body: dict[str, Any] = {"@odata.context": f"{call.base}/$metadata#Collection(message)"}
    if page.next_token:
        body["@odata.nextLink"] = f"{link}?$skiptoken={page.next_token}"
    else:
        body["@odata.deltaLink"] = f"{link}?$deltatoken={page.delta_token}"
    body["value"] = value
    return json_response(body)
