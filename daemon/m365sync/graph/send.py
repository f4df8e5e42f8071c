"""Sending mail through the user's mailbox: a draft first, then its send.

Graph's ``sendMail`` answers 202 with no id, so a send whose answer is lost cannot be told
from one that never happened. A draft created with immutable ids has an id at once, and the
same id finds the message in Sent Items after ``/send`` (docs `concepts/outlook-immutable-id.md`),
so the outbox records the id before sending and checks it before ever sending again.
"""

from __future__ import annotations

import base64
from typing import Any, Literal
from urllib.parse import quote

from m365sync.domain import EmailAddress, OutgoingAttachment, OutgoingMail
from m365sync.errors import NotFound
from m365sync.graph.client import GraphClient

IMMUTABLE_IDS = {"Prefer": 'IdType="ImmutableId"'}
OUTBOX_HEADER = "x-m365sync-outbox"


def _recipients(addresses: tuple[EmailAddress, ...]) -> list[dict[str, Any]]:
    return [
        {"emailAddress": {"address": a.address, **({"name": a.name} if a.name else {})}}
        for a in addresses
    ]


def _attachment(attachment: OutgoingAttachment) -> dict[str, Any]:
    return {
        "@odata.type": "#microsoft.graph.fileAttachment",
        "name": attachment.name,
        "contentType": attachment.content_type,
        "contentBytes": base64.b64encode(attachment.content).decode("ascii"),
    }


def message_json(mail: OutgoingMail) -> dict[str, Any]:
    """The draft: recipients, HTML body, attachments, and our identifier as an ``x-`` header
    (Graph allows only ``x-`` custom headers, set at creation)."""
    body: dict[str, Any] = {
        "subject": mail.subject,
        "body": {"contentType": "html", "content": mail.body_html},
        "toRecipients": _recipients(mail.to),
        "internetMessageHeaders": [{"name": OUTBOX_HEADER, "value": mail.idempotency_key}],
    }
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

    def create_draft(self, mail: OutgoingMail) -> dict[str, Any]:
        """A new mail's draft (with its attachments): the answer carries id and
        internetMessageId. Not retried on failure: a second draft would be a stray."""
        return self._client.post_json("/me/messages", message_json(mail), headers=IMMUTABLE_IDS)

    def create_reply(self, mail: OutgoingMail) -> dict[str, Any]:
        """A reply draft to ``mail.reply_to_graph_id``: Outlook threads it with the original
        (same conversation, ``RE:`` subject, quoted history)."""
        message = message_json(mail)
        message.pop("subject")
        attachments = message.pop("attachments", [])
        draft = self._client.post_json(
            f"/me/messages/{quote(mail.reply_to_graph_id or '', safe='')}/createReply",
            {"message": message},
            headers=IMMUTABLE_IDS,
        )
        for attachment in attachments:
            self._client.post_json(
                f"/me/messages/{quote(draft['id'], safe='')}/attachments",
                attachment,
                headers=IMMUTABLE_IDS,
            )
        return draft

    def send(self, draft_id: str) -> None:
        """Send the draft (202). Never retried here: only `status` may tell whether it went."""
        self._client.post_json(
            f"/me/messages/{quote(draft_id, safe='')}/send", None, headers=IMMUTABLE_IDS
        )

    def status(self, draft_id: str) -> Literal["draft", "sent", "gone"]:
        """Where a recorded draft stands: still a draft, sent (its copy in Sent Items keeps
        the immutable id), or gone (deleted)."""
        try:
            item = self._client.get_json(
                f"/me/messages/{quote(draft_id, safe='')}",
                params={"$select": "id,isDraft,parentFolderId"},
                headers=IMMUTABLE_IDS,
            )
        except NotFound:
            return "gone"
        return "draft" if item.get("isDraft", True) else "sent"
