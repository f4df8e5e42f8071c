"""What makes an outgoing mail unsendable, decided before Graph is asked (pure).

Each problem fails that one mail with words for the person who wrote it; the others go on.
"""

from __future__ import annotations

from datetime import timedelta

from m365sync.domain import OutboxState, OutgoingMail
from m365sync.sync.addresses import normalise_address

# Graph attaches files up to 3 MB in one request; larger ones need an upload session
# (docs `api/message-post-attachments.md`), which this version does not use.
MAX_ATTACHMENT_BYTES = 3 * 1024 * 1024

# How long after its send (``send_started_at``) a sent mail whose copy is not linked yet is
# handed to the outbox passes again, to look for the copy in the whole mailbox. The first look
# right after the send can fail (a grant revoked just then: the soak against Odoo, seed
# 893588505) or come too early (Outlook still saving the copy), and the mail sync links only
# copies still in a synced folder. An hour covers a person reconnecting the same working
# session and keeps each look a page or a few (`MailSender.find_sent` reads the mail sent
# since the send); later, a copy still in Sent Items is linked by the mail sync all the same.
# The addon's ``LINK_FOR`` (m365_outbox.py) is the same hour.
LINK_WINDOW = timedelta(hours=1)


def awaits_link(mail: OutgoingMail) -> bool:
    """Sent, and its sent copy not linked yet (no id or no internetMessageId): the outbox
    pass only looks for its copy, it never sends it again."""
    return mail.state is OutboxState.SENT and not (mail.graph_id and mail.internet_message_id)


def problem_with(mail: OutgoingMail) -> str | None:
    """The first reason ``mail`` cannot be sent, or None."""
    recipients = [*mail.to, *mail.cc, *mail.bcc]
    if not recipients:
        return "The mail has no recipient: add at least one address."
    bad = [r.address for r in recipients if normalise_address(r.address) is None]
    if bad:
        return f"Not a valid email address: {', '.join(repr(b) for b in bad[:3])}."
    for attachment in mail.attachments:
        if len(attachment.content) > MAX_ATTACHMENT_BYTES:
            size = len(attachment.content) / (1024 * 1024)
            return (
                f"The attachment {attachment.name!r} ({size:.1f} MB) is over Microsoft Graph's "
                "3 MB limit for one request; send a link to it instead."
            )
    return None
