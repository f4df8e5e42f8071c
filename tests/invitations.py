"""An invitation that arrives in the emulated mailbox's calendar from an outside organizer: the
shape Outlook gives an event the mailbox is invited to (not organizer, not yet answered)."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from m365sync.emulator.mailbox import Mailbox

ORGANIZER = {"emailAddress": {"address": "anna.lidman@fabrikam.com", "name": "Anna"}}
NOT_ANSWERED = "0001-01-01T00:00:00Z"


def add_invitation(mailbox: Mailbox, subject: str, start: datetime) -> dict[str, Any]:
    """An hour-long invitation from Anna at ``start`` (aware, written in UTC), the mailbox's
    owner a required attendee who has not answered; the emulator's event comes back."""
    owner = mailbox.user

    def utc(moment: datetime) -> dict[str, str]:
        return {"dateTime": moment.strftime("%Y-%m-%dT%H:%M:%S"), "timeZone": "UTC"}

    return mailbox.calendar.add_event(
        {
            "subject": subject,
            "start": utc(start),
            "end": utc(start + timedelta(hours=1)),
            "isOrganizer": False,
            "organizer": ORGANIZER,
            "attendees": [
                {
                    "emailAddress": {"address": owner["mail"], "name": owner["displayName"]},
                    "type": "required",
                    "status": {"response": "none", "time": NOT_ANSWERED},
                }
            ],
            "responseStatus": {"response": "notResponded", "time": NOT_ANSWERED},
        }
    )
