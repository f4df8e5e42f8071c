"""Sending mail through the user's mailbox with the least permission: ``Mail.Send``.

Drafts would need ``Mail.ReadWrite`` (docs `api/user-post-messages.md`), a permission to
change and delete every mail in the mailbox, which a CRM has no business holding; and the
docs disagree on whether a draft's immutable id survives its send. So a new mail goes out with
``POST /me/sendMail`` and a reply with ``POST /me/messages/{id}/reply`` (both ``Mail.Send``,
both 202 with no body and no id), each carrying our identifier as an ``x-m365sync-outbox``
internet header. The copy Outlook saves in Sent Items carries that header, and ``Mail.Read``
finds it wherever the person has filed it since: that is how a send is confirmed, and how a
send whose answer was lost is never repeated.
"""

from __future__ import annotations

import base64
import logging
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import quote

from m365sync.domain import EmailAddress, OutgoingAttachment, OutgoingMail
from m365sync.errors import GraphError, InsufficientPermissions, NotFound
from m365sync.graph.client import GraphClient
from m365sync.sync.addresses import wire_address

log = logging.getLogger(__name__)

IMMUTABLE_IDS = {"Prefer": 'IdType="ImmutableId"'}
OUTBOX_HEADER = "x-m365sync-outbox"
OUTBOX_PREFIX = "m365sync-outbox-"  # followed by the outbox record's id
RECOVERABLE = "recoverableitemsdeletions"  # Recoverable Items' Deletions, a well-known name
# Outlook's clock and ours may differ; the search for a sent copy looks this far back.
CLOCK_SLACK = timedelta(minutes=10)


def _recipients(addresses: tuple[EmailAddress, ...]) -> list[dict[str, Any]]:
    """Graph's recipients; a Unicode domain goes as its A-labels, which Exchange resolves
    (found by the reliability soak: Compose Email to a contact at bäckerei-müller.de failed
    with ErrorInvalidRecipients)."""
    return [
        {
            "emailAddress": {
                "address": wire_address(a.address),
                **({"name": a.name} if a.name else {}),
            }
        }
        for a in addresses
    ]


def _attachment(attachment: OutgoingAttachment) -> dict[str, Any]:
    return {
        "@odata.type": "#microsoft.graph.fileAttachment",
        "name": attachment.name,
        "contentType": attachment.content_type,
        "contentBytes": base64.b64encode(attachment.content).decode("ascii"),
    }


def message_json(mail: OutgoingMail, *, reply: bool = False) -> dict[str, Any]:
    """The message: recipients, HTML body, attachments, and our identifier as an ``x-``
    header (Graph allows only ``x-`` custom headers). A reply takes Outlook's ``RE:`` subject
    and threading, so it sends no subject of its own."""
    body: dict[str, Any] = {
        "body": {"contentType": "html", "content": mail.body_html},
        "toRecipients": _recipients(mail.to),
        "internetMessageHeaders": [{"name": OUTBOX_HEADER, "value": mail.idempotency_key}],
    }
    if not reply:
        body["subject"] = mail.subject
    if mail.cc:
        body["ccRecipients"] = _recipients(mail.cc)
    if mail.bcc:
        body["bccRecipients"] = _recipients(mail.bcc)
    if mail.attachments:
        body["attachments"] = [_attachment(a) for a in mail.attachments]
    return body


class MailSender:
    """The Graph calls of one send; the outbox cycle decides their order."""

    def __init__(self, client: GraphClient) -> None:
        self._client = client

    def send(self, mail: OutgoingMail) -> None:
        """Send (202). Never retried here: only `find_sent` may tell whether it went."""
        if mail.reply_to_graph_id:
            self._client.post_json(
                f"/me/messages/{quote(mail.reply_to_graph_id, safe='')}/reply",
                {"message": message_json(mail, reply=True)},
                headers=IMMUTABLE_IDS,
            )
        else:
            self._client.post_json(
                "/me/sendMail",
                {"message": message_json(mail), "saveToSentItems": True},
                headers=IMMUTABLE_IDS,
            )

    def find_sent(self, mail: OutgoingMail, since: datetime) -> dict[str, Any] | None:
        """The sent copy of ``mail`` (id, internetMessageId, conversationId), found by its
        ``x-m365sync-outbox`` header among the mail sent since ``since``; None if absent.

        The copy is looked for in the whole mailbox, not in Sent Items alone: a person may
        file or delete it (Archive, a folder of their own, Deleted Items) before the daemon's
        next pass, and a copy looked for only in Sent Items then went unconfirmed, the mail
        failed with "look in Sent Items", and the person's retry sent it twice. ``GET
        /me/messages`` lists "the messages in the signed-in user's mailbox (including the
        Deleted Items and Clutter folders)" (docs `api/user-list-messages.md`, "List
        messages"), with the same OData options as a folder's list and the same
        ``Mail.ReadBasic``/``Mail.Read`` permissions; ``sentDateTime`` is a plain property of
        ``message`` (docs `resources/message.md`), so ``$filter`` narrows the list to the
        window. Recoverable Items, where Shift+Delete (or emptying Deleted Items) puts mail,
        is outside that folder tree ("not visible in any Outlook email client", docs
        `resources/mailfolder.md`, well-known name ``recoverableitemsdeletions``), so a copy
        not found in the mailbox is looked for there next; in that order, a copy deleted
        between the two reads is still found.

        Graph cannot filter on internet headers, so the window is read and matched here: it
        is minutes wide and holds the mail sent and received in those minutes (a received
        mail's ``sentDateTime`` is its sender's), a page or a few. Every page is followed by
        its whole ``@odata.nextLink`` ("Do not try to extract the $skip value", same docs).
        """
        start = (since - CLOCK_SLACK).strftime("%Y-%m-%dT%H:%M:%SZ")
        params = {
            "$filter": f"sentDateTime ge {start}",
            "$select": "id,internetMessageId,conversationId,internetMessageHeaders",
            "$top": "50",
        }
        query = "&".join(f"{k}={quote(v, safe=',')}" for k, v in params.items())
        found = self._find_in(f"/me/messages?{query}", mail)
        if found is not None:
            return found
        try:
            return self._find_in(f"/me/mailFolders/{RECOVERABLE}/messages?{query}", mail)
        except GraphError as error:
            # A mailbox without the folder, a policy hiding it, or a request it refuses: the
            # look in the mailbox stands, and the outbox's grace period and words take over.
            if not isinstance(error, (NotFound, InsufficientPermissions)) and error.status != 400:
                raise
            log.info("Recoverable Items not readable, not looked in (%s)", error)
            return None

    def _find_in(self, path: str, mail: OutgoingMail) -> dict[str, Any] | None:
        """The message carrying ``mail``'s outbox header among the pages listed at ``path``."""
        for page in self._client.iter_pages(path, headers=IMMUTABLE_IDS):
            for item in page.get("value", []):
                headers = item.get("internetMessageHeaders") or []
                if any(
                    isinstance(h, dict)
                    and str(h.get("name", "")).lower() == OUTBOX_HEADER
                    and h.get("value") == mail.idempotency_key
                    for h in headers
                ):
                    return item
        return None
