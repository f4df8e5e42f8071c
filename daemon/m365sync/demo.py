"""`m365sync demo` (`make demo`): the whole product offline, on embedded defaults.

It starts the emulator with a seeded mailbox, fills the embedded CRM with some of the
mailbox's contacts and companies (as a real CRM would already hold them), connects the account
through the real OAuth code flow (msal against the emulator over HTTPS), runs a full sync, changes
the mailbox, runs an incremental sync, and prints what landed where and what was skipped.
"""

from __future__ import annotations

import shutil
import socket
import threading
import time
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

from rich.console import Console
from rich.panel import Panel
from rich.table import Table

from m365sync.config import load_config
from m365sync.crm.sqlite import SqliteGateway
from m365sync.emulator import seed
from m365sync.emulator.mailbox import Mailbox
from m365sync.emulator.server import Emulator
from m365sync.service.actions import queue_and_send, schedule_meeting
from m365sync.service.connect import connect_account
from m365sync.service.emulator_cmd import emulator_config_toml
from m365sync.service.runtime import Runtime
from m365sync.ui import accounts_table, runs_table, sync_accounts


def _http_requests(emulator: Emulator) -> int:
    """Round trips the daemon made (the requests inside a JSON batch ride in one)."""
    return sum(1 for record in emulator.requests if not record.in_batch)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def seed_crm(gateway: SqliteGateway, mailbox: Mailbox, *, share: float = 0.7) -> tuple[int, int]:
    """Put the mailbox's companies and most of its contacts in the CRM, as a sales team would
    have them; the rest stay unknown so the demo shows what is skipped and why."""
    companies: dict[str, int] = {}
    contacts = 0
    people = seed.crm_contacts(mailbox)
    for index, person in enumerate(people):
        domain = person.get("company_domain")
        company_id = None
        if person.get("company") and domain:
            if domain not in companies:
                companies[domain] = gateway.add_partner(
                    person["company"],
                    email=f"info@{domain}",
                    is_company=True,
                    website=f"https://www.{domain}",
                ).id
            company_id = companies[domain]
        if (index * 7919) % 100 < share * 100:
            gateway.add_partner(person["name"], email=person["email"], parent_id=company_id)
            contacts += 1
    return len(companies), contacts


def change_mailbox(
    mailbox: Mailbox, known_email: str, known_name: str, stored_ids: set[str]
) -> list[str]:
    """What happens in Outlook between the two syncs; returns the words for the screen."""
    done = []
    inbox = mailbox.messages_in("inbox")
    thread = next((m for m in inbox if m.get("conversationId")), None)
    if thread is not None:
        mailbox.add_message(
            "inbox",
            {
                "subject": "RE: " + (thread.get("subject") or "").removeprefix("RE: "),
                "conversationId": thread["conversationId"],
                "from": {"emailAddress": {"name": known_name, "address": known_email}},
                "toRecipients": [
                    {
                        "emailAddress": {
                            "name": mailbox.user["displayName"],
                            "address": mailbox.user["mail"],
                        }
                    }
                ],
                "body": {"contentType": "html", "content": "<p>Sounds good, see you then.</p>"},
            },
        )
        done.append(f"{known_name} replied in the thread \u201c{thread.get('subject')}\u201d")
    mailbox.add_message(
        "inbox",
        {
            "subject": "New order for next quarter",
            "from": {"emailAddress": {"name": known_name, "address": known_email}},
            "toRecipients": [
                {
                    "emailAddress": {
                        "name": mailbox.user["displayName"],
                        "address": mailbox.user["mail"],
                    }
                }
            ],
            "body": {"contentType": "html", "content": "<p>Please find our order attached.</p>"},
        },
    )
    done.append(f"{known_name} sent a new message")
    stored = [m for m in inbox if m["id"] in stored_ids]
    if stored:
        mailbox.delete_message(stored[-1]["id"])
        done.append(f"the message \u201c{stored[-1].get('subject')}\u201d was deleted in Outlook")
    return done


def run_demo(console: Console, *, size: int = 5000, workdir: Path = Path(".demo")) -> int:
    begin = time.monotonic()
    workdir = workdir.resolve()
    shutil.rmtree(workdir, ignore_errors=True)
    workdir.mkdir(parents=True)
    console.rule("[bold]Microsoft 365 for Odoo CRM: offline demo")
    with console.status(f"Seeding an Outlook mailbox of {size} messages..."):
        mailbox = Mailbox.seeded(size=size, seed=1)
    # Graph posts notifications only to https; the demo's endpoint is plain http on loopback.
    emulator = Emulator(
        mailbox, state_dir=workdir / "emulator", port=0, allow_http_notifications=True
    )
    emulator.start()
    try:
        config_path = workdir / "m365sync.toml"
        config_path.write_text(
            emulator_config_toml(
                emulator,
                store_path=workdir / "store.sqlite3",
                keys_path=workdir / "keys.jwks",
                redirect_uri=f"http://localhost:{_free_port()}/",
            )
            # The demo imports the whole seeded mailbox; the default first-sync window is 90 days.
            + "initial_window_days = 0\n",
            encoding="utf-8",
        )
        config = load_config(config_path).validate()
        gateway = SqliteGateway(config.store.sqlite_path())
        companies, contacts = seed_crm(gateway, mailbox)
        console.print(
            f"Emulator: {emulator.base_url} (HTTPS, CA {emulator.ca_path.name}); mailbox "
            f"{mailbox.user['mail']}; CRM holds {companies} companies and {contacts} contacts."
        )
        runtime = Runtime.build(config, gateway)

        started = time.monotonic()
        account = connect_account(runtime, owner="demo", browser="follow")
        console.print(
            f"[green]\u2713[/] Connected {account.address} through the OAuth code flow with PKCE "
            f"in {time.monotonic() - started:.1f} s: {account.status_detail}"
        )

        console.rule("Full sync")
        started = time.monotonic()
        full = sync_accounts(runtime, console)
        full_seconds = time.monotonic() - started
        full_requests = _http_requests(emulator)

        console.rule("Changes in Outlook, then an incremental sync")
        people = [
            p for p in seed.crm_contacts(mailbox) if gateway.find_partners_by_emails([p["email"]])
        ]
        who = people[0] if people else {"email": "someone@fabrikam.com", "name": "Someone"}
        stored_ids = set(gateway.message_ids_for_account(account.id))
        for line in change_mailbox(mailbox, who["email"], who["name"], stored_ids):
            console.print(f"  \u2022 {line}")
        started = time.monotonic()
        incremental = sync_accounts(runtime, console)
        incremental_seconds = time.monotonic() - started
        incremental_requests = _http_requests(emulator) - full_requests

        console.rule("Compose Email and Schedule Meeting from the CRM")
        _send_and_meet(console, runtime, gateway, account, who)
        after = sync_accounts(runtime, console)

        console.rule("Push: Graph change notifications")
        after += _push(console, runtime, gateway, mailbox, account, who)

        console.rule("Summary")
        console.print(accounts_table(gateway.list_accounts(), gateway))
        console.print(runs_table(full + incremental + after))
        console.print(_per_partner_table(gateway))
        _print_threads(console, gateway)
        console.print(_meetings_table(gateway))
        stored = gateway.count_messages()
        console.print(
            Panel.fit(
                f"Full sync: {full_seconds:.1f} s, {full[0][1].imported} messages stored, "
                f"{full_requests} HTTP requests to Graph and identity (JSON batches count once; "
                f"the cycle: {full[0][1].graph_requests} to Graph, "
                f"{full[0][1].token_requests} token requests).\n"
                f"Incremental sync: {incremental_seconds:.1f} s, "
                f"{incremental[0][1].imported} new, {incremental[0][1].removed} removed, "
                f"{incremental_requests} requests ({incremental[0][1].token_requests} token "
                "requests).\n"
                f"Messages in the CRM: {stored}. Store: {config.store.sqlite_path()}\n"
                f"Demo total: {time.monotonic() - begin:.1f} s.",
                title="Figures",
            )
        )
        failed = [run for _, run, _ in full + incremental + after if run.error]
        runtime.close()
        return 1 if failed else 0
    finally:
        emulator.stop()


def _per_partner_table(gateway: SqliteGateway, limit: int = 15) -> Table:
    table = Table(title="Mail per contact and company (top 15)", title_justify="left")
    for column in ("Partner", "Kind", "Email", "Threads", "Messages"):
        table.add_column(column)
    for partner, threads, messages in gateway.mail_counts_by_partner()[:limit]:
        table.add_row(
            partner.name,
            "company" if partner.is_company else "contact",
            partner.email or "",
            str(threads),
            str(messages),
        )
    return table


def _push(
    console: Console, runtime: Runtime, gateway, mailbox: Mailbox, account, who: dict
) -> list:
    """Subscriptions to the daemon's own endpoint, then a new message in Outlook: the
    notification arrives, the cycle it asks for brings the message in. Returns that run."""
    from m365sync.domain import SubscriptionKind
    from m365sync.service.account_sync import sync_account_mail
    from m365sync.service.notify_server import NotificationEndpoint, NotificationServer
    from m365sync.service.push_cycle import PushTarget, keep_subscriptions

    asked = threading.Event()
    endpoint = NotificationEndpoint(gateway, lambda _ids: asked.set())
    server = NotificationServer(endpoint, "127.0.0.1", 0).start()
    try:
        # As `[notifications] url` would say: every cycle from now on keeps the subscriptions.
        config = runtime.config
        runtime.config = replace(
            config, notifications=replace(config.notifications, url=server.url)
        )
        kinds = (SubscriptionKind.MAIL, SubscriptionKind.CALENDAR)
        account = gateway.get_account(account.id)
        report = keep_subscriptions(
            gateway, runtime.graph_for(account), account, PushTarget(server.url, server.url, kinds)
        )
        console.print(
            f"[green]\u2713[/] Subscribed {account.address} to mail and calendar changes "
            f"(endpoint {server.url}, validated by Graph): {report.sentence()}."
        )
        started = time.monotonic()
        mailbox.add_message(
            "inbox",
            {
                "subject": "Pushed: can we move our call?",
                "from": {"emailAddress": {"name": who["name"], "address": who["email"]}},
                "toRecipients": [{"emailAddress": {"address": account.address}}],
                "body": {"contentType": "html", "content": "<p>Thursday would suit us.</p>"},
            },
        )
        if not asked.wait(10):
            console.print("[red]\u2717[/] no notification arrived within 10 s")
            return []
        noticed = time.monotonic() - started
        run = sync_account_mail(runtime, gateway.get_account(account.id))
        stored = time.monotonic() - started
        console.print(
            f"[green]\u2713[/] {who['name']} wrote; the notification reached the daemon after "
            f"{noticed * 1000:.0f} ms and the message was in the CRM {stored * 1000:.0f} ms after "
            f"it arrived in Outlook (without push: up to the {runtime.mail_interval_seconds()} s "
            "interval)."
        )
        return [(account, run, stored)]
    finally:
        server.stop()


def _send_and_meet(
    console: Console, runtime: Runtime, gateway: SqliteGateway, account, who
) -> None:
    """What a salesperson does from the contact: write, then book a meeting."""
    mail_id, _ = queue_and_send(
        runtime,
        account_id=account.id,
        to=[who["email"]],
        subject="Follow-up on our call",
        body_html="<p>Thanks for your time today. The quote is attached.</p>",
    )
    item = gateway.outbox_item(mail_id)
    console.print(
        f"  \u2022 Compose Email to {who['name']}: outbox {mail_id} {item.state.value} "
        "(sent through Outlook, saved to Sent Items, linked when it syncs back)"
    )
    start = (datetime.now(UTC) + timedelta(days=2)).replace(
        hour=15, minute=0, second=0, microsecond=0
    )
    _, run = schedule_meeting(
        runtime,
        account_id=account.id,
        attendees=[who["email"]],
        subject=f"Quote review with {who['name']}",
        start=start,
        minutes=30,
        time_zone="UTC",
    )
    console.print(
        f"  \u2022 Schedule Meeting with {who['name']} on {start:%a %Y-%m-%d %H:%M} UTC: "
        + ("in Outlook, invitation sent by Outlook" if run.calendar.get("pushed") else "not pushed")
    )


def _meetings_table(gateway: SqliteGateway, limit: int = 12) -> Table:
    """Upcoming meetings per contact, from the two-way calendar sync."""
    table = Table(title="Upcoming meetings per contact", title_justify="left")
    for column in ("Contact", "Meeting", "When (UTC)", "Recurring", "Attendees"):
        table.add_column(column, overflow="fold")
    now = datetime.now(UTC)
    rows = 0
    seen: set[int] = set()
    for partner, _, _ in gateway.mail_counts_by_partner():
        if partner.is_company:
            continue
        for meeting in gateway.upcoming_events_for_partner(partner.id, since=now, limit=3):
            if meeting.crm_event_id in seen or rows >= limit:
                continue
            seen.add(meeting.crm_event_id)
            rows += 1
            when = (
                f"{meeting.start_date} (all day)"
                if meeting.is_all_day
                else f"{meeting.start:%a %Y-%m-%d %H:%M}"
            )
            table.add_row(
                partner.name,
                meeting.subject or "(private)",
                when,
                "yes" if meeting.recurring else "",
                ", ".join(meeting.attendees[:3]),
            )
    return table


def _print_threads(console: Console, gateway: SqliteGateway) -> None:
    counts = [row for row in gateway.mail_counts_by_partner() if not row[0].is_company]
    if not counts:
        return
    partner = counts[0][0]
    table = Table(title=f"Threads with {partner.name}, newest first", title_justify="left")
    for column in ("Subject", "Messages", "Last message", "Participants"):
        table.add_column(column, overflow="fold")
    for thread in gateway.threads_for_partner(partner.id)[:8]:
        table.add_row(
            thread.subject or "(no subject)",
            str(thread.message_count),
            f"{thread.last_at:%Y-%m-%d %H:%M}" if thread.last_at else "",
            ", ".join(thread.participants[:4]),
        )
    console.print(table)
