"""`m365sync send` and `m365sync meet`: Compose Email and Schedule Meeting for a CRM without
forms (the embedded store), through the gateway contract's command-line actions
(`CrmGateway.queue_mail`, `create_meeting`, `busy_times`) and the same outbox and calendar
push the Odoo addon's wizards feed; Odoo refuses them with a sentence (`CrmHasForms`)."""

from __future__ import annotations

import mimetypes
from collections import Counter
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

from m365sync.domain import (
    Account,
    CalendarEvent,
    EmailAddress,
    EventLink,
    EventType,
    OutgoingAttachment,
    ResponseStatus,
    SyncRun,
)
from m365sync.errors import ConfigError, InputError
from m365sync.graph.schedule import Availability, free_busy
from m365sync.graph.send import MailSender
from m365sync.service.account_sync import policy_for
from m365sync.service.calendar_cycle import CalendarCycle
from m365sync.service.outbox_cycle import send_outgoing
from m365sync.service.runtime import Runtime
from m365sync.sync.addresses import normalise_address
from m365sync.sync.timezones import UnknownTimeZone, to_iana


def _account(runtime: Runtime, account_id: int | None) -> Account:
    accounts = runtime.gateway.list_accounts()
    if account_id is not None:
        return runtime.gateway.get_account(account_id)
    if len(accounts) != 1:
        raise ConfigError(f"{len(accounts)} accounts are connected: say which one with --account.")
    return accounts[0]


def _read_attachment(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as error:
        raise InputError(
            f"--attach {str(path)!r} cannot be read ({error.strerror}): give the path of a file."
        ) from None


def queue_and_send(
    runtime: Runtime,
    *,
    account_id: int | None,
    to: list[str],
    subject: str,
    body_html: str,
    cc: list[str] = (),  # type: ignore[assignment]
    attach: list[Path] = (),  # type: ignore[assignment]
    reply_to: str | None = None,
) -> tuple[int, Counter[str]]:
    """Queue the mail in the outbox, then run one outbox pass (what the service does every
    few seconds); returns the outbox id and the pass's outcome."""
    attachments = [
        OutgoingAttachment(
            path.name,
            mimetypes.guess_type(path.name)[0] or "application/octet-stream",
            _read_attachment(path),
        )
        for path in attach
    ]
    store = runtime.gateway
    account = _account(runtime, account_id)
    mail_id = store.queue_mail(
        account.id,
        to=[EmailAddress(a) for a in to],
        cc=[EmailAddress(a) for a in cc],
        subject=subject,
        body_html=body_html,
        attachments=attachments,
        reply_to_graph_id=reply_to,
    )
    sender = MailSender(runtime.graph_for(account))
    return mail_id, send_outgoing(store, sender, account)


def meeting_zone(name: str) -> ZoneInfo:
    """The IANA zone ``--time-zone`` names, or `InputError` saying what to give instead."""
    example = "give an IANA zone name such as Europe/Paris, America/New_York or UTC"
    if not name.strip():
        raise InputError(f"--time-zone is empty: {example}.")
    try:
        return ZoneInfo(name)
    except (LookupError, ValueError, OSError):  # not found, not a key, a folder, too long
        pass
    try:
        iana = to_iana(name)
    except (UnknownTimeZone, OSError):
        raise InputError(f"--time-zone {name!r} is not a time zone: {example}.") from None
    raise InputError(f"--time-zone {name!r} is not an IANA zone name: give {iana!r} instead.")


def meeting_time(start: str, minutes: int, time_zone: str) -> tuple[datetime, ZoneInfo]:
    """``--start`` as an aware datetime (in ``--time-zone`` unless it carries an offset) and
    the zone, once ``--minutes`` is known to give an end after the start."""
    zone = meeting_zone(time_zone)
    try:
        parsed = datetime.fromisoformat(start.strip())
    except ValueError:
        raise InputError(
            f"--start {start!r} is not a date and time: give the local start as "
            "YYYY-MM-DDTHH:MM, e.g. 2026-12-01T10:00."
        ) from None
    local = parsed if parsed.tzinfo else parsed.replace(tzinfo=zone)
    _meeting_end(local, minutes)
    return local, zone


def _meeting_end(start: datetime, minutes: int) -> datetime:
    if minutes < 1:
        raise InputError(
            f"--minutes {minutes} is not a length: a meeting lasts 1 minute or more "
            "(default 30), it cannot end before it starts."
        )
    try:
        return start + timedelta(minutes=minutes)
    except OverflowError:
        raise InputError(
            f"--minutes {minutes} puts the end of the meeting past the year 9999: give its "
            "length in minutes."
        ) from None


def day_availability(
    runtime: Runtime, *, account_id: int | None, attendees: list[str], day: datetime
) -> tuple[list, list[Availability]]:
    """What the scheduling form shows for ``day`` (an aware midnight): the user's own meetings
    from the synced calendar, and the attendees' free/busy from Graph's getSchedule."""
    store = runtime.gateway
    account = _account(runtime, account_id)
    end = day + timedelta(days=1)
    own = store.busy_times(account.id, day, end)
    others = free_busy(runtime.graph_for(account), attendees, day, end) if attendees else []
    return own, others


def schedule_meeting(
    runtime: Runtime,
    *,
    account_id: int | None,
    attendees: list[str],
    subject: str,
    start: datetime,
    minutes: int,
    time_zone: str,
    location: str | None = None,
    description: str | None = None,
    online: bool = False,
) -> tuple[int, SyncRun]:
    """Record the meeting in the CRM and push it (Outlook sends the invitations)."""
    zone = meeting_zone(time_zone)
    local = start if start.tzinfo else start.replace(tzinfo=zone)
    end = _meeting_end(local, minutes)
    store = runtime.gateway
    account = _account(runtime, account_id)
    people = []
    for address in attendees:
        normalised = normalise_address(address)
        if normalised is None:
            raise ConfigError(f"Not a valid email address: {address!r}.")
        partner = store.find_partners_by_emails([normalised]).get(normalised)
        people.append(
            EventLink(
                "required",
                normalised,
                partner.name if partner else "",
                ResponseStatus.NONE,
                partner.id if partner and not partner.is_company else None,
                None,
            )
        )
    item = CalendarEvent(
        graph_id="",
        ical_uid=None,
        event_type=EventType.SINGLE,
        subject=subject,
        start=local,
        end=end,
        time_zone=time_zone,
        location=location,
        body_html=description,
        organizer=EmailAddress(account.address),
        is_online_meeting=online,
    )
    event_id = store.create_meeting(account.id, item, people)
    run = SyncRun(account_id=account.id, started_at=datetime.now(ZoneInfo("UTC")))
    CalendarCycle(store, runtime.graph_for(account), policy_for(runtime, account)).run(account, run)
    return event_id, run
