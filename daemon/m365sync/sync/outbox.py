"""What makes an outgoing mail unsendable, decided before Graph is asked (pure).

Each problem fails that one mail with words for the person who wrote it; the others go on.
"""

from __future__ import annotations

from m365sync.domain import OutgoingMail
from m365sync.sync.addresses import normalise_address

# Graph attaches files up to 3 MB in one request; larger ones need an upload session
# (docs `api/message-post-attachments.md`), which this version does not use.
MAX_ATTACHMENT_BYTES = 3 * 1024 * 1024


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
