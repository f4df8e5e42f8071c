"""Attachment metadata (name, size, content type -- never content) for synced messages.

Why not ``$expand=attachments`` on message delta: delta ignores a nested ``$select`` inside
``$expand`` (microsoftgraph/microsoft-graph-docs-contrib#8431), so the expansion would download
every attachment's ``contentBytes``. Instead, for the messages of a page whose ``hasAttachments``
is true, ``GET /me/messages/{id}/attachments?$select=id,name,size,contentType,isInline`` goes
through JSON batching (``batch.batch_get``): one HTTP call per 20 such messages.

Facts (docs = microsoftgraph/microsoft-graph-docs-contrib):

- ``attachment`` is the base type of ``fileAttachment``, ``itemAttachment`` (a message, event
  or contact) and ``referenceAttachment`` (a link); its properties are contentType, id,
  isInline, lastModifiedDateTime, name, size (Int32, bytes) (docs
  `api-reference/v1.0/resources/attachment.md` @ 155d7917). Without ``$select`` a
  fileAttachment comes with its ``contentBytes`` (docs `api/message-list-attachments.md`
  @ 024982ce example), which is what ``$select`` avoids. Only base properties may be selected:
  selecting ``contentId`` (fileAttachment only) fails with "Could not find a property named
  'contentId' on type 'microsoft.graph.attachment'"
  (microsoftgraph/microsoft-graph-explorer-v4#3916).
- An itemAttachment's contentType is "Returned as null by default, when not set explicitly"
  (docs `resources/itemattachment.md`); it is kept as "".
- Inline attachments (``isInline`` true: signature logos, pasted screenshots referenced by
  ``cid:`` in the body) are left out: they are part of the body, not files someone sent. By
  design ``hasAttachments`` does not reflect them (a Microsoft docs writer in
  microsoftgraph/aspnet-snippets-sample#13), so a message with only inline images is never
  asked about; one with a real file and a logo lists both, and the logo is dropped here.
- Ids come back in the form asked for only if each request says so: ``Prefer:
  IdType="ImmutableId"`` goes on every sub-request (GRAPH-FACTS section 3).

The initial round of a folder reads the metadata of all its messages with attachments at
once instead (``folder_attachment_index``): list messages (not delta) honours a nested
``$select`` in ``$expand=attachments($select=...)`` (a Microsoft maintainer's answer in
microsoftgraph/msgraph-sdk-dotnet-core#437, confirmed by its author; the error quoted in
microsoft-graph-explorer-v4#3916 shows the nested ``$select`` parsed against the base
``attachment`` type on ``/mailFolders/{id}/messages``), takes ``$filter=hasAttachments eq
true`` and pages of up to 1000 (``$top``, docs `api/user-list-messages.md`). So a first sync
costs one request per ``INDEX_PAGE`` messages with attachments rather than one per message
(its pages are smaller than asked when Graph says so: the reader follows ``@odata.nextLink``).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import datetime
from typing import Any
from urllib.parse import quote

from m365sync.domain import Attachment
from m365sync.errors import (
    GraphError,
    MailboxUnavailable,
    MalformedResponse,
    NeedsReconnect,
    NotFound,
    Throttled,
)
from m365sync.graph.batch import batch_get
from m365sync.graph.client import GraphClient
from m365sync.graph.mail import received_since_filter
from m365sync.graph.payload import odata_query

log = logging.getLogger("m365sync.graph.attachments")

#: Base ``attachment`` properties only (a derived type's property in $select is a 400).
ATTACHMENT_SELECT = "id,name,size,contentType,isInline"
IMMUTABLE_IDS = {"Prefer": 'IdType="ImmutableId"'}

#: Messages per page of the folder-wide index (``$top``; Graph may send fewer).
INDEX_PAGE = 500

#: Errors about the mailbox or the grant, not about one message: they stop the caller.
_MAILBOX_WIDE = (Throttled, NeedsReconnect, MailboxUnavailable)


def attachments_path(graph_id: str) -> str:
    """The sub-request URL (relative to the version root) listing one message's attachments."""
    return f"/me/messages/{quote(graph_id, safe='')}/attachments?$select={ATTACHMENT_SELECT}"


def parse_attachments(payload: Any) -> tuple[Attachment, ...]:
    """A list-attachments answer -> the message's non-inline attachments, in Graph's order.

    Pure and tolerant: unknown ``@odata.type`` values are kept (any attachment has a name and
    a size), items that are not objects are skipped, a missing or non-string name becomes "",
    a missing, negative or non-integer size 0, a null contentType "". Raises
    ``MalformedResponse`` only when there is no ``value`` list at all.
    """
    items = payload.get("value") if isinstance(payload, Mapping) else None
    if not isinstance(items, list):
        raise MalformedResponse("a list of attachments without a value list")
    found: list[Attachment] = []
    for item in items:
        if not isinstance(item, Mapping) or item.get("isInline") is True:
            continue
        name, size, kind = item.get("name"), item.get("size"), item.get("contentType")
        found.append(
            Attachment(
                name=name.strip() if isinstance(name, str) else "",
                size=size
                if isinstance(size, int) and not isinstance(size, bool) and size > 0
                else 0,
                content_type=kind.strip() if isinstance(kind, str) else "",
            )
        )
    return tuple(found)


def fetch_attachment_metadata(
    client: GraphClient, graph_ids: list[str], **batch_options: Any
) -> dict[str, tuple[Attachment, ...]]:
    """Attachment metadata of each message, in ``ceil(len(ids) / 20)`` batch calls (plus retries).

    Per message: its attachments; an empty tuple when Graph says 404 (the message went away
    between the delta page and now -- nothing to show); left out of the result (and logged,
    with its id and the error code, never a name) when that one request failed otherwise or
    the answer was unreadable. Raises ``Throttled`` (still throttled past the retry budget),
    ``NeedsReconnect`` or ``MailboxUnavailable`` when any sub-request ended with one: those
    are about the mailbox, not the message, and the caller must stop as for any other call.
    ``batch_options`` go to ``batch.batch_get`` (budget, sleep, clock).
    """
    ids = list(dict.fromkeys(graph_ids))
    if not ids:
        return {}
    paths = {graph_id: attachments_path(graph_id) for graph_id in ids}
    answers = batch_get(client, list(paths.values()), headers=IMMUTABLE_IDS, **batch_options)
    found: dict[str, tuple[Attachment, ...]] = {}
    stop: GraphError | None = None
    failed = 0
    for graph_id, path in paths.items():
        answer = answers.get(path)
        if isinstance(answer, NotFound):
            found[graph_id] = ()
            continue
        if isinstance(answer, _MAILBOX_WIDE):
            stop = stop or answer
            continue
        if isinstance(answer, GraphError) or answer is None:
            failed += 1
            log.warning(
                "attachments of message %s not read: %s",
                graph_id,
                (answer.code or answer.status) if isinstance(answer, GraphError) else "no answer",
            )
            continue
        try:
            found[graph_id] = parse_attachments(answer)
        except MalformedResponse:
            failed += 1
            log.warning("attachments of message %s not read: unreadable answer", graph_id)
    if stop is not None:
        raise stop
    if failed:
        log.info("attachment metadata: %d of %d messages left without it", failed, len(ids))
    return found


def folder_attachment_index(
    client: GraphClient,
    folder_id: str,
    *,
    received_since: datetime | None = None,
    page_size: int | None = None,
) -> dict[str, tuple[Attachment, ...]]:
    """Attachment metadata of every message of the folder whose ``hasAttachments`` is true
    (received since ``received_since`` when given), by message id, from list messages with
    ``$expand=attachments($select=...)``: ``ceil(n / page_size)`` requests for n such
    messages. Raises the client's errors; an item it cannot read is left out (the caller
    falls back to asking about that message alone)."""
    clauses = ["hasAttachments eq true"]
    if received_since is not None:
        clauses.append(received_since_filter(received_since))
    query = odata_query(
        {
            "$select": "id",
            "$filter": " and ".join(clauses),
            "$expand": f"attachments($select={ATTACHMENT_SELECT})",
            "$top": str(page_size or INDEX_PAGE),
        }
    )
    path = f"/me/mailFolders/{quote(folder_id, safe='')}/messages?{query}"
    index: dict[str, tuple[Attachment, ...]] = {}
    for page in client.iter_pages(path, headers=IMMUTABLE_IDS):
        items = page.get("value")
        if not isinstance(items, list):
            raise MalformedResponse("a list of messages without a value list")
        for item in items:
            graph_id = item.get("id") if isinstance(item, Mapping) else None
            if not isinstance(graph_id, str) or not isinstance(item.get("attachments"), list):
                continue
            index[graph_id] = parse_attachments({"value": item["attachments"]})
    return index
