"""Push through Odoo: the emulator's subscriptions post to the addon's endpoint
(``<web.base.url>/m365/notifications``), Odoo asks the account for a cycle
(``sync_requested_at``), and the daemon's service, polling once an hour, brings a new message in
within seconds.

Set up as an administrator does it: Settings > Microsoft 365 > Push notifications on
(``crm_microsoft365.push_enabled``) with ``web.base.url`` the Odoo the emulator can reach
(``ODOO_URL``), so the daemon learns the URL from ``crm_settings`` (its own
``notifications.url`` is empty). The emulator posts over plain HTTP
(``allow_http_notifications``; Graph itself posts only to https, a TLS proxy in front of Odoo).
The notification endpoint is ``auth="none"``: Odoo must pick this database without a session
(the only one, or ``--db-filter``). The settings are restored afterwards.

Checked as a person would, with plain XML-RPC on Odoo's models (``m365.subscription``,
``m365.account``, ``m365.mail.message``). Beside push: two replicas' claims of a pending
connect or free/busy request through the live addon.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import secrets
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

import pytest
import requests

from m365sync.crm.odoo import OdooGateway
from m365sync.domain import Subscription, SubscriptionKind, SyncRun
from m365sync.emulator.calendar import Calendar
from m365sync.emulator.mailbox import Mailbox
from m365sync.errors import CrmError
from m365sync.service.connect import connect_account
from m365sync.service.daemon import Service, ServiceOptions
from tests.contract.gateway_contract import spec

from .conftest import OdooStack, admin_rpc, odoo_stack_for
from .test_connect_through_odoo import connect_request_through_the_callback

pytestmark = [pytest.mark.odoo, pytest.mark.slow]

T = TypeVar("T")
PUSH_SETTINGS = {
    "crm_microsoft365.push_enabled": "True",
    "crm_microsoft365.sync_interval": "60",  # minutes: only push can be quick
}
NOTIFICATION_PATH = "/m365/notifications"


def wait_for(condition: Callable[[], T], seconds: float, what: str) -> T:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out after {seconds} s waiting for {what}")


@contextlib.contextmanager
def odoo_push_settings() -> Iterator[str]:
    """Push on in Odoo's settings, web.base.url = ODOO_URL; the old values come back after."""
    admin = admin_rpc()
    base = os.environ["ODOO_URL"].rstrip("/")
    wanted = PUSH_SETTINGS | {"web.base.url": base}
    saved = {key: admin.execute_kw("ir.config_parameter", "get_param", [key]) for key in wanted}
    try:
        for key, value in wanted.items():
            admin.execute_kw("ir.config_parameter", "set_param", [key, value])
        yield base + NOTIFICATION_PATH
    finally:
        for key, value in saved.items():
            admin.execute_kw("ir.config_parameter", "set_param", [key, value or False])
        admin.close()


@contextlib.contextmanager
def push_stack(tmp_path: Path, mailbox: Mailbox) -> Iterator[OdooStack]:
    """The emulator (posting over HTTP), a daemon with Odoo as its store, the calendar on
    (two subscriptions) and a local interval of an hour; no notifications.url: the CRM's
    settings give it. Its Odoo data is deleted after."""
    with odoo_stack_for(
        tmp_path,
        mailbox,
        calendar=True,
        emulator_options={"allow_http_notifications": True},
        sync_extra="mail_interval_seconds = 3600\n",
        extra="\n[notifications]\nsafety_poll_seconds = 7200\n",
    ) as stack:
        assert stack.config.notifications.enabled and not stack.config.notifications.url
        yield stack


@contextlib.contextmanager
def running(stack: OdooStack) -> Iterator[Service]:
    """`m365sync run`'s service in a thread: leases every half second, no health port."""
    service = Service(
        stack.runtime,
        ServiceOptions(holder=f"push-odoo:{os.getpid()}", tick_seconds=0.5, health_port=-1),
    )
    thread = threading.Thread(target=service.run, name="service", daemon=True)
    thread.start()
    try:
        yield service
    finally:
        service.stop()
        thread.join(timeout=60)
        assert not thread.is_alive()


def subscriptions_in_odoo(stack: OdooStack, account_id: int) -> dict[str, dict[str, Any]]:
    rows = stack.read(
        "m365.subscription",
        [("account_id", "=", account_id)],
        ["kind", "graph_id", "resource", "state", "expires_at", "last_notified_at"],
    )
    return {row["kind"]: row for row in rows}


def both_active(stack: OdooStack, account_id: int) -> dict[str, dict[str, Any]]:
    subs = subscriptions_in_odoo(stack, account_id)
    if set(subs) == {"mail", "calendar"} and all(
        s["state"] == "active" and s["graph_id"] for s in subs.values()
    ):
        return subs
    return {}


def partner_subjects(stack: OdooStack, partner_id: int) -> set[str]:
    rows = stack.read(
        "m365.mail.message", [("participant_ids.partner_id", "=", partner_id)], ["subject"]
    )
    return {row["subject"] for row in rows}


def add_message(stack: OdooStack, sender: str, subject: str) -> None:
    stack.mailbox.add_message(
        "inbox",
        {
            "subject": subject,
            "from": {"emailAddress": {"address": sender, "name": "Nora Quist"}},
            "toRecipients": [{"emailAddress": {"address": stack.mailbox.user["mail"]}}],
            "body": {"contentType": "html", "content": "<p>Can we meet on Thursday?</p>"},
        },
    )


def test_a_notification_through_odoo_brings_a_message_in_within_seconds(tmp_path) -> None:
    token = secrets.token_hex(4)
    sender = f"nora.quist.{token}@fabrikam.example"
    mailbox = Mailbox.seeded(size=12, seed=secrets.randbelow(10**9))
    # An empty calendar: the calendar subscription is what matters here, and the seeded
    # calendar's private event is one Odoo's administrator may not delete afterwards.
    mailbox.calendar = Calendar(mailbox.key, mailbox.user, mailbox.lock)
    with odoo_push_settings() as endpoint, push_stack(tmp_path, mailbox) as stack:
        assert stack.runtime.crm_settings().notification_url == endpoint
        partner_id = stack.admin.execute_kw(
            "res.partner", "create", [{"name": "Nora Quist", "email": sender}]
        )
        account = connect_account(stack.runtime, browser="follow", announce=lambda _text: None)
        stack.account_ids.append(account.id)
        with running(stack):
            # The first cycle makes both subscriptions, pointed at Odoo, stored in Odoo.
            subs = wait_for(lambda: both_active(stack, account.id), 60, "both subscriptions")
            in_graph = {s["id"]: s for s in stack.emulator.subscription_list()}
            assert {s["graph_id"] for s in subs.values()} <= set(in_graph)
            for sub in subs.values():
                made = in_graph[sub["graph_id"]]
                assert made["resource"] == sub["resource"]
                assert made["notificationUrl"] == endpoint
                assert made["lifecycleNotificationUrl"] == endpoint
            assert {s["resource"] for s in subs.values()} == {"me/messages", "me/events"}
            validated = [
                n
                for n in stack.emulator.notification_log()
                if n["kind"] == "validation" and n["url"].startswith(endpoint)
            ]
            assert validated, "the emulator validated Odoo's endpoint before answering"
            wait_for(lambda: stack.gateway.last_sync_run(account.id), 30, "the first cycle")
            # Let the first cycle finish (status line written) before the new mail arrives.
            wait_for(
                lambda: (
                    "push notifications on (2 of 2)"
                    in stack.gateway.get_account(account.id).status_detail
                ),
                30,
                "the first cycle's status",
            )
            # What the daemon sees (the latest of Sync now and the subscriptions' notifications).
            before = stack.gateway.get_account(account.id).sync_requested_at
            assert stack.gateway.last_sync_run(account.id) is not None

            started = time.monotonic()
            add_message(stack, sender, f"Pushed through Odoo {token}")
            wait_for(
                lambda: f"Pushed through Odoo {token}" in partner_subjects(stack, partner_id),
                20,
                "the pushed message on the partner",
            )
            latency = time.monotonic() - started
            print(f"\npush latency through Odoo: {latency:.2f} s (Outlook -> Odoo's partner)")
            assert latency < 10, f"{latency:.1f} s from Outlook to the CRM"

            mail = subs["mail"]
            delivered = [
                n
                for n in stack.emulator.notification_log()
                if n.get("subscriptionId") == mail["graph_id"]
                and n["kind"] == "change"
                and n["status"] == 202
            ]
            assert delivered, "the emulator delivered the notification to Odoo's endpoint"
            after = stack.gateway.get_account(account.id).sync_requested_at
            assert after is not None and (before is None or after > before)
            assert subscriptions_in_odoo(stack, account.id)["mail"]["last_notified_at"]

        # Graph removes the mail subscription while no replica runs: Odoo's endpoint marks it
        # removed and asks for a cycle; the next replica's cycle makes a new one.
        stack.emulator.send_lifecycle_notification(mail["graph_id"], "subscriptionRemoved")
        removed = wait_for(
            lambda: subscriptions_in_odoo(stack, account.id)["mail"]["state"] == "removed",
            20,
            "Odoo to mark the subscription removed",
        )
        assert removed
        marked = stack.gateway.get_account(account.id).sync_requested_at
        assert marked is not None and marked >= after
        lifecycle = wait_for(
            lambda: [
                n
                for n in stack.emulator.notification_log()
                if n.get("subscriptionId") == mail["graph_id"] and n["kind"] == "lifecycle"
            ],
            10,
            "the lifecycle notification in the emulator's log",
        )
        assert lifecycle[-1]["status"] == 202
        with running(stack):
            again = wait_for(
                lambda: (
                    (s := both_active(stack, account.id))
                    and s["mail"]["graph_id"] != mail["graph_id"]
                    and s
                ),
                30,
                "a new mail subscription",
            )
        print(f"subscription {mail['graph_id']} removed; replaced by {again['mail']['graph_id']}")
        assert again["calendar"]["graph_id"] == subs["calendar"]["graph_id"]
        states = {s["id"]: s["state"] for s in stack.emulator.subscription_list()}
        assert states[mail["graph_id"]] == "removed"
        assert states[again["mail"]["graph_id"]] == "active"


def test_two_replicas_claim_a_pending_request_once(odoo_stack: OdooStack) -> None:
    """Claims through the live addon (`claim_connect`, `claim_free_busy`), as two replicas'
    gateways make them: one wins, the other waits until the claim expires; a finished request
    is nobody's."""
    first = odoo_stack.gateway
    second = OdooGateway.from_config(odoo_stack.config.odoo)
    connect_id = None
    try:
        account = first.upsert_account(spec())
        odoo_stack.account_ids.append(account.id)
        connect_id = connect_request_through_the_callback(odoo_stack)
        request_id = odoo_stack.admin.execute_kw(  # the owner asks, in Schedule Meeting
            "m365.free.busy.request",
            "create",
            [{"account_id": account.id, "day": "2031-01-06", "addresses": "ann@example.com"}],
        )
        assert first.claim_connect(connect_id, "replica-a:1") is True
        assert second.claim_connect(connect_id, "replica-b:2") is False
        assert first.claim_connect(connect_id, "replica-a:1") is True  # its own, renewed
        assert second.claim_free_busy(request_id, "replica-b:2", ttl_seconds=1) is True
        assert first.claim_free_busy(request_id, "replica-a:1", ttl_seconds=1) is False
        time.sleep(2.2)  # replica-b went quiet: its one-second claim lapsed
        assert first.claim_free_busy(request_id, "replica-a:1", ttl_seconds=1) is True
        first.finish_connect(connect_id, error="declined")
        first.store_free_busy(request_id, [])
        time.sleep(2.2)
        assert second.claim_connect(connect_id, "replica-b:2", ttl_seconds=1) is False
        assert second.claim_free_busy(request_id, "replica-b:2", ttl_seconds=1) is False
    finally:
        second.close()
        if connect_id:
            with contextlib.suppress(CrmError):
                odoo_stack.admin.execute_kw("m365.connect.request", "unlink", [[connect_id]])


def test_a_notification_in_the_second_a_cycle_started_asks_for_another_cycle(
    odoo_stack: OdooStack,
) -> None:
    gateway = odoo_stack.gateway
    account = gateway.upsert_account(spec())
    odoo_stack.account_ids.append(account.id)
    secret = secrets.token_urlsafe(24)
    subscription = Subscription(
        account.id,
        SubscriptionKind.MAIL,
        f"sub-{secrets.token_hex(8)}",
        "me/messages",
        datetime.now(UTC) + timedelta(days=2),
        hashlib.sha256(secret.encode()).hexdigest(),
    )
    gateway.save_subscription(subscription)
    # Early in a second: the cycle starts, reads the mailbox; the new mail's notification
    # comes a few hundred milliseconds later, in the same second.
    time.sleep(1.05 - time.time() % 1)
    started = datetime.now(UTC)
    gateway.record_sync_run(SyncRun(account.id, started, started + timedelta(milliseconds=100)))
    answer = requests.post(
        os.environ["ODOO_URL"].rstrip("/") + NOTIFICATION_PATH,
        json={
            "value": [
                {
                    "subscriptionId": subscription.graph_id,
                    "clientState": secret,
                    "changeType": "created",
                    "resource": f"Users/{account.object_id}/Messages/AAMk1",
                    "tenantId": account.tenant_id,
                }
            ]
        },
        timeout=10,
    )
    assert answer.status_code == 202
    assert datetime.now(UTC) - started < timedelta(seconds=1), "too slow to test the same second"
    requested = gateway.get_account(account.id).sync_requested_at
    last = gateway.last_sync_run(account.id)
    assert requested is not None and last is not None
    assert requested > last.started_at, (requested, last.started_at)
