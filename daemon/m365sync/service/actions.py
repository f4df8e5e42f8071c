"""`m365sync send` and `m365sync meet`: Compose Email and Schedule Meeting for the embedded
store, through the same outbox and calendar push the Odoo addon's wizards feed."""

from __future__ import annotations

import mimetypes
from collections import Counter
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

from m365sync.crm.sqlite import SqliteGateway
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
from m365sync.errors import ConfigError
from m365sync.graph.schedule import Availability, free_busy
from m365sync.graph.send import MailSender
from m365sync.service.account_sync import policy_for
from m365sync.service.calendar_cycle import CalendarCycle
from m365sync.service.outbox_cycle import send_outgoing
from m365sync.service.runtime import Runtime
from m365sync.sync.addresses import normalise_address


def _account(runtime: Runtime, account_id: int | None) -> Account:
    accounts = runtime.gateway.list_accounts()
    if account_id is not None:
        return runtime.gateway.get_account(account_id)
    if len(accounts) != 1:
        raise ConfigError(f"{len(accounts)} accounts are connected: say which one with --account.")
    return accounts[0]


def _store(runtime: Runtime) -> SqliteGateway:
    if not isinstance(runtime.gateway, SqliteGateway):
        raise ConfigError("`send` and `meet` work on the embedded store; in Odoo use the wizards.")
    return runtime.gateway


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
    store = _store(runtime)
    account = _account(runtime, account_id)
    attachments = [
        OutgoingAttachment(
            path.name,
            mimetypes.guess_type(path.name)[0] or "application/octet-stream",
            path.read_bytes(),
        )
        for path in attach
    ]
    mail_id = store.crm_queue_mail(
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


def day_availability(
    runtime: Runtime, *, account_id: int | None, attendees: list[str], day: datetime
) -> tuple[list, list[Availability]]:
    """What the scheduling form shows for ``day`` (an aware midnight): the user's own meetings
    from the synced calendar, and the attendees' free/busy from Graph's getSchedule."""
    store = _store(runtime)
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
    store = _store(runtime)
    account = _account(runtime, account_id)
    zone = ZoneInfo(time_zone)
    local = start if start.tzinfo else start.replace(tzinfo=zone)
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
        end=local + timedelta(minutes=minutes),
        time_zone=time_zone,
        location=location,
        body_html=description,
        organizer=EmailAddress(account.address),
        is_online_meeting=online,
    )
    event_id = store.crm_create_event(account.id, item, people)
    run = SyncRun(account_id=account.id, started_at=datetime.now(ZoneInfo("UTC")))
    CalendarCycle(store, runtime.graph_for(account), policy_for(runtime, account)).run(account, run)
    return event_id, run
