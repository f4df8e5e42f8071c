"""Graph mail JSON -> domain dataclasses (pure), and a reader for per-folder delta rounds.

The parsers take dicts and return dataclasses, so they are tested on captured payloads with
no I/O (STYLE habit 13). One bad item never fails its page (invariant 4): it becomes a
``RejectedItem`` with a reason, counted and reported by the sync layer.

Facts this module relies on (see /work/shared/GRAPH-FACTS.md and the sources there):

- Message delta is per folder, supports ``$select`` (``id`` is always returned), and ``$filter``
  only as ``receivedDateTime ge|gt {value}`` (which caps the round at 5,000 messages); query
  options go in the first request only, they are encoded in the links after it.
- ``internetMessageHeaders`` is "returned only on applying a $select query option" (Graph's
  message metadata, as published in the Graph SDK models), so it must be in ``$select``.
- ``Prefer`` values apply only to the request that carries them: ``odata.maxpagesize`` and
  ``IdType="ImmutableId"`` are sent on every request, next and delta links included, as one
  comma-separated ``Prefer`` header (RFC 7240 section 2; Odoo's calendar tests send
  ``outlook.body-content-type="html", odata.maxpagesize=50`` the same way).
- Links are copied whole, never rebuilt: nextLinks may rewrite the path form.
- A page may be empty and still carry a nextLink; the same item may appear twice.
- A delta update may carry only what changed (e.g. ``id``, ``isRead``, ``parentFolderId``
  after a read-flag toggle: microsoftgraph/microsoft-graph-docs#7776); such items are not
  messages we can store and are rejected with a reason starting ``PARTIAL_UPDATE``.
"""

from __future__ import annotations

import html
import logging
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime
from functools import partial
from typing import Any
from urllib.parse import quote

from m365sync.domain import DeltaPage, EmailAddress, MailFolder, MailMessage, RejectedItem
from m365sync.errors import MalformedResponse
from m365sync.graph.payload import PagingClient, odata_query, opt_bool, opt_str, page_link

log = logging.getLogger("m365sync.graph.mail")

#: Only the fields we store (payload size is what limits an initial sync).
MESSAGE_FIELDS: tuple[str, ...] = (
    "id",
    "internetMessageId",
    "conversationId",
    "parentFolderId",
    "subject",
    "from",
    "sender",
    "toRecipients",
    "ccRecipients",
    "bccRecipients",
    "replyTo",
    "receivedDateTime",
    "sentDateTime",
    "body",
    "bodyPreview",
    "isDraft",
    "hasAttachments",
    "internetMessageHeaders",
    "changeKey",
)
MESSAGE_SELECT = ",".join(MESSAGE_FIELDS)

#: RFC 5322 caps a header line at 998 characters; a longer subject is kept cut to this.
SUBJECT_LIMIT = 998
TRUNCATION_MARK = "…"
#: Reason prefix of rejected items that are partial updates rather than broken data.
PARTIAL_UPDATE = "partial update"

_CONTENT_KEYS = ("internetMessageId", "receivedDateTime", "subject", "from", "body")
FOLDER_SELECT = (
    "id,displayName,parentFolderId,childFolderCount,totalItemCount,unreadItemCount,isHidden"
)
SEARCH_FOLDER_TYPE = "#microsoft.graph.mailSearchFolder"


class BadItem(ValueError):
    """An item Graph sent that we cannot turn into a message; ``reason`` says why."""

    def __init__(self, reason: str, graph_id: str | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.graph_id = graph_id


# --- field readers --------------------------------------------------------------------------


_opt_str = partial(opt_str, bad=BadItem)
_opt_bool = partial(opt_bool, bad=BadItem)


def _opt_datetime(item: Mapping[str, Any], key: str) -> datetime | None:
    """Graph's DateTimeOffset in UTC; seven fractional digits and naive values tolerated."""
    value = _opt_str(item, key)
    if not value:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise BadItem(f"{key} is not a date: {value[:40]!r}") from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.astimezone(UTC)


def _clean_address(raw: str) -> str:
    text = raw.strip()
    if text.startswith("<") and text.endswith(">"):
        text = text[1:-1].strip()
    return text


def parse_address(recipient: Any, *, field: str) -> EmailAddress | None:
    """``{"emailAddress": {"name", "address"}}`` -> EmailAddress; None when there is no address.

    The address keeps Graph's case (matching normalises later) and may be odd (an Exchange
    X.500 path, a bare name): deciding what it matches is the sync layer's job.
    """
    if recipient is None:
        return None
    if not isinstance(recipient, Mapping):
        raise BadItem(f"{field} is not a recipient object")
    inner = recipient.get("emailAddress")
    if inner is None:
        return None
    if not isinstance(inner, Mapping):
        raise BadItem(f"{field}.emailAddress is not an object")
    address = inner.get("address")
    name = inner.get("name")
    if address is not None and not isinstance(address, str):
        raise BadItem(f"{field} address is not a string")
    address = _clean_address(address or "")
    if not address:
        return None
    return EmailAddress(address=address, name=name.strip() if isinstance(name, str) else "")


def _recipients(item: Mapping[str, Any], key: str) -> tuple[EmailAddress, ...]:
    value = item.get(key)
    if value is None:
        return ()
    if not isinstance(value, list):
        raise BadItem(f"{key} is not a list")
    parsed = (parse_address(entry, field=key) for entry in value)
    return tuple(address for address in parsed if address is not None)


def _author(item: Mapping[str, Any]) -> EmailAddress | None:
    """``from`` (the author), else ``sender``; a ``from`` with no address anywhere is unusable."""
    author = parse_address(item.get("from"), field="from")
    sender = parse_address(item.get("sender"), field="sender")
    if author is None and sender is None and item.get("from") is not None:
        raise BadItem("from has no address")
    return author or sender


def _subject(item: Mapping[str, Any], graph_id: str) -> str | None:
    subject = _opt_str(item, "subject")
    if subject is not None and len(subject) > SUBJECT_LIMIT:
        log.info(
            "message %s: subject of %d characters cut to %d", graph_id, len(subject), SUBJECT_LIMIT
        )
        subject = subject[: SUBJECT_LIMIT - len(TRUNCATION_MARK)] + TRUNCATION_MARK
    return subject


def _body_html(item: Mapping[str, Any]) -> str | None:
    """The body as HTML; a text body is escaped into <pre> so later layers see one format."""
    body = item.get("body")
    if body is None:
        return None
    if not isinstance(body, Mapping):
        raise BadItem("body is not an object")
    content = _opt_str(body, "content")
    if content is None:
        return None
    kind = body.get("contentType")
    if isinstance(kind, str) and kind.lower() == "text":
        return f"<pre>{html.escape(content)}</pre>"
    return content


def _headers(item: Mapping[str, Any]) -> dict[str, str]:
    """Internet headers by name; the first of repeated names (Received...) is kept."""
    value = item.get("internetMessageHeaders")
    if not isinstance(value, list):
        return {}
    headers: dict[str, str] = {}
    seen: set[str] = set()
    for entry in value:
        if not isinstance(entry, Mapping):
            continue
        name, text = entry.get("name"), entry.get("value")
        if isinstance(name, str) and isinstance(text, str) and name.lower() not in seen:
            seen.add(name.lower())
            headers[name] = text
    return headers


# --- messages and pages -------------------------------------------------------------------


def parse_message(item: Mapping[str, Any], folder_id: str) -> MailMessage:
    """One Graph message -> MailMessage, or ``BadItem`` saying why it cannot be used.

    Unknown fields are ignored, missing optional fields are fine, broken HTML is left to the
    sanitiser; wrong types and unreadable dates are refused.
    """
    if not isinstance(item, Mapping):
        raise BadItem("item is not an object")
    graph_id = item.get("id")
    if not isinstance(graph_id, str) or not graph_id:
        raise BadItem("item has no id")
    if not any(key in item for key in _CONTENT_KEYS):
        raise BadItem(f"{PARTIAL_UPDATE}: only {sorted(item)[:6]} sent", graph_id)
    try:
        return MailMessage(
            graph_id=graph_id,
            internet_message_id=_opt_str(item, "internetMessageId"),
            conversation_id=_opt_str(item, "conversationId"),
            folder_id=folder_id,
            subject=_subject(item, graph_id),
            sender=_author(item),
            to=_recipients(item, "toRecipients"),
            cc=_recipients(item, "ccRecipients"),
            bcc=_recipients(item, "bccRecipients"),
            reply_to=_recipients(item, "replyTo"),
            received_at=_opt_datetime(item, "receivedDateTime"),
            sent_at=_opt_datetime(item, "sentDateTime"),
            body_html=_body_html(item),
            body_preview=_opt_str(item, "bodyPreview"),
            is_draft=_opt_bool(item, "isDraft"),
            has_attachments=_opt_bool(item, "hasAttachments"),
            headers=_headers(item),
            change_key=_opt_str(item, "changeKey"),
        )
    except BadItem as exc:
        exc.graph_id = graph_id
        raise


def parse_delta_page(payload: Mapping[str, Any], folder_id: str) -> DeltaPage:
    """One delta page -> DeltaPage. Never raises for one item; raises for a page without links.

    An id seen twice keeps its last usable occurrence (replays are normal in delta); a
    rejection does not displace a usable occurrence of the same id.
    """
    items = payload.get("value")
    if not isinstance(items, list):
        raise MalformedResponse("a delta page without a value list")
    next_link = page_link(payload, "@odata.nextLink")
    delta_link = page_link(payload, "@odata.deltaLink")
    if next_link is None and delta_link is None:
        raise MalformedResponse("a delta page with neither @odata.nextLink nor @odata.deltaLink")
    if next_link is not None:
        delta_link = None  # the round goes on; a deltaLink is only valid at its end

    latest: dict[str, MailMessage | None] = {}  # None = removed
    rejected: dict[str, RejectedItem] = {}
    anonymous: list[RejectedItem] = []
    for item in items:
        graph_id, outcome = _classify(item, folder_id)
        if isinstance(outcome, RejectedItem):
            if graph_id is None:
                anonymous.append(outcome)
            elif graph_id not in latest:
                rejected[graph_id] = outcome
            continue
        assert graph_id is not None
        latest.pop(graph_id, None)
        rejected.pop(graph_id, None)
        latest[graph_id] = outcome
    return DeltaPage(
        messages=[m for m in latest.values() if m is not None],
        removed_ids=[gid for gid, m in latest.items() if m is None],
        rejected=anonymous + list(rejected.values()),
        next_link=next_link,
        delta_link=delta_link,
    )


def _classify(item: Any, folder_id: str) -> tuple[str | None, MailMessage | RejectedItem | None]:
    """``(id, message)``, ``(id, None)`` for a removal, or ``(id?, RejectedItem)``."""
    raw_id = item.get("id") if isinstance(item, Mapping) else None
    graph_id = raw_id if isinstance(raw_id, str) and raw_id else None
    if isinstance(item, Mapping) and "@removed" in item:
        if graph_id is None:
            return None, RejectedItem(None, "removed item without an id")
        return graph_id, None
    try:
        return graph_id, parse_message(item, folder_id)
    except BadItem as exc:
        return graph_id, RejectedItem(graph_id, exc.reason)


def parse_folder(item: Mapping[str, Any], well_known_name: str | None = None) -> MailFolder:
    graph_id = item.get("id") if isinstance(item, Mapping) else None
    if not isinstance(graph_id, str) or not graph_id:
        raise MalformedResponse("a mail folder without an id")
    name = item.get("displayName")
    parent = item.get("parentFolderId")
    return MailFolder(
        graph_id=graph_id,
        display_name=name if isinstance(name, str) else "",
        parent_id=parent if isinstance(parent, str) else None,
        well_known_name=well_known_name or _opt_wkn(item),
        total_items=_int(item.get("totalItemCount")),
        child_folder_count=_int(item.get("childFolderCount")),
        unread_items=_int(item.get("unreadItemCount")),
        # A derived type in a mailFolder collection carries its @odata.type (docs
        # `api/user-list-mailfolders.md`, example 1: a mailSearchFolder in the list).
        is_search=item.get("@odata.type") == SEARCH_FOLDER_TYPE,
        is_hidden=item.get("isHidden") is True,
    )


def _opt_wkn(item: Mapping[str, Any]) -> str | None:
    value = item.get("wellKnownName")  # beta only; v1.0 leaves it out
    return value if isinstance(value, str) and value else None


def _int(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


# --- the reader -----------------------------------------------------------------------------


def received_since_filter(received_since: datetime) -> str:
    when = received_since if received_since.tzinfo else received_since.replace(tzinfo=UTC)
    return f"receivedDateTime ge {when.astimezone(UTC):%Y-%m-%dT%H:%M:%SZ}"


class MailDeltaReader:
    """Reads mail folders and per-folder delta rounds for one mailbox."""

    def __init__(
        self, client: PagingClient, *, page_size: int = 100, immutable_ids: bool = True
    ) -> None:
        if page_size < 1:
            raise ValueError("page_size must be positive")
        self._client = client
        self._page_size = page_size
        self._immutable_ids = immutable_ids

    @property
    def prefer(self) -> str:
        """Sent on every delta request: Prefer values apply only to the request carrying them."""
        values = [f"odata.maxpagesize={self._page_size}"]
        if self._immutable_ids:
            values.append('IdType="ImmutableId"')
        return ", ".join(values)

    def folders(self, *, recursive: bool = False) -> list[MailFolder]:
        """Every top-level folder (all pages), and with ``recursive`` their descendants."""
        top = self._list("/me/mailFolders")
        return self.with_child_folders(top) if recursive else top

    def with_child_folders(self, folders: list[MailFolder]) -> list[MailFolder]:
        """``folders`` followed by all their descendants, walked breadth first.

        Each folder needs its own delta cursor (message delta is per folder), so the sync
        layer asks for the whole tree under the folders it was configured with.
        """
        found = list(folders)
        pending = [f for f in folders if f.child_folder_count > 0]
        while pending:
            parent = pending.pop(0)
            children = self._list(f"/me/mailFolders/{quote(parent.graph_id, safe='')}/childFolders")
            found.extend(children)
            pending.extend(c for c in children if c.child_folder_count > 0)
        return found

    def _list(self, path: str) -> list[MailFolder]:
        query = odata_query({"$select": FOLDER_SELECT, "$top": "100"})
        return [
            parse_folder(item)
            for page in self._client.iter_pages(f"{path}?{query}")
            for item in _values(page)
        ]

    def resolve_folder(self, ref: str) -> MailFolder:
        """A folder by id or well-known name (``inbox``, ``sentitems``); ids are constant."""
        item = self._client.get_json(f"/me/mailFolders/{quote(ref, safe='')}")
        folder = parse_folder(item)
        if folder.graph_id != ref and folder.well_known_name is None:
            return parse_folder(item, well_known_name=ref.lower())
        return folder

    def pages(
        self,
        folder_id: str,
        *,
        resume_link: str | None = None,
        received_since: datetime | None = None,
    ) -> Iterator[DeltaPage]:
        """Parsed pages of one delta round, from ``resume_link`` (a stored cursor) or the start.

        ``received_since`` only shapes a first round (no resume link); after that the filter
        lives inside the links.
        """
        headers = {"Prefer": self.prefer}
        if resume_link:
            start = resume_link
        else:
            params = {"$select": MESSAGE_SELECT}
            if received_since is not None:
                params["$filter"] = received_since_filter(received_since)
            start = (
                f"/me/mailFolders/{quote(folder_id, safe='')}/messages/delta?{odata_query(params)}"
            )
        for payload in self._client.iter_pages(start, headers=headers):
            yield parse_delta_page(payload, folder_id)


def _values(page: Mapping[str, Any]) -> list[Any]:
    value = page.get("value")
    if not isinstance(value, list):
        raise MalformedResponse("a collection page without a value list")
    return value
