"""Push end to end: the emulator's subscriptions post real notifications to the daemon's own
endpoint, the service runs the account's cycle at once, and falls back to polling when the
subscriptions lapse.

The service (`m365sync run`'s `Service`) runs in a thread against the embedded store; the
emulator delivers over HTTP to the loopback endpoint (``allow_http_notifications``: Graph itself
posts only to https, behind which a TLS proxy would sit).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from m365sync.domain import SubscriptionKind, SubscriptionState
from m365sync.emulator.mailbox import Mailbox
from m365sync.graph.transport import make_session
from m365sync.service.checks import check_notification_url
from m365sync.service.connect import connect_account
from m365sync.service.daemon import Service, ServiceOptions

from .conftest import Stack, build_stack, free_port

SENDER = "nora.quist@fabrikam.example"


def push_stack(tmp_path, *, mail_interval: int, safety: int = 3600) -> Stack:
    port = free_port()
    stack = build_stack(
        tmp_path,
        Mailbox.seeded(size=40, seed=11),
        sync_extra=f"mail_interval_seconds = {mail_interval}\ncalendar = true\n",
        extra_config=(
            "[notifications]\n"
            f'url = "http://127.0.0.1:{port}/notify?tenant=contoso"\n'
            'listen_host = "127.0.0.1"\n'
            f"listen_port = {port}\n"
            f"safety_poll_seconds = {safety}\n"
        ),
        emulator_options={"allow_http_notifications": True},
    )
    stack.gateway.add_partner("Nora Quist", email=SENDER)
    connect_account(stack.runtime, browser="follow")
    return stack


@contextmanager
def running(stack: Stack) -> Iterator[Service]:
    service = Service(
        stack.runtime, ServiceOptions(holder="push:1", tick_seconds=0.5, health_port=-1)
    )
    thread = threading.Thread(target=service.run, name="service", daemon=True)
    thread.start()
    try:
        yield service
    finally:
        service.stop()
        thread.join(timeout=30)
        assert not thread.is_alive()
        stack.runtime.close()
        stack.emulator.stop()


def wait_for(condition, seconds: float, what: str):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out after {seconds} s waiting for {what}")


def live_subscriptions(stack: Stack, account_id: int) -> dict:
    subs = {s.kind: s for s in stack.gateway.subscriptions(account_id)}
    if len(subs) == 2 and all(s.state is SubscriptionState.ACTIVE for s in subs.values()):
        return subs
    return {}


def new_message(stack: Stack, subject: str) -> None:
    stack.emulator.mailbox.add_message(
        "inbox",
        {
            "subject": subject,
            "from": {"emailAddress": {"address": SENDER, "name": "Nora Quist"}},
            "toRecipients": [{"emailAddress": {"address": stack.emulator.mailbox.user["mail"]}}],
            "body": {"contentType": "html", "content": "<p>Can we meet on Thursday?</p>"},
        },
    )


def stored_subjects(stack: Stack) -> set[str]:
    partner = stack.gateway.find_partners_by_emails([SENDER])[SENDER]
    return {t.subject for t in stack.gateway.threads_for_partner(partner.id)}


@pytest.mark.slow
def test_a_notification_brings_a_new_message_in_within_seconds(tmp_path):
    # Polling once an hour: only a notification can bring the message in quickly.
    stack = push_stack(tmp_path, mail_interval=3600)
    (account,) = stack.gateway.list_accounts()
    with running(stack):
        subs = wait_for(lambda: live_subscriptions(stack, account.id), 30, "both subscriptions")
        created = {s["id"]: s for s in stack.emulator.subscription_list()}
        assert set(created) >= {s.graph_id for s in subs.values()}
        assert {created[s.graph_id]["resource"] for s in subs.values()} == {
            "me/messages",
            "me/events",
        }
        wait_for(lambda: stack.gateway.last_sync_run(account.id), 10, "the first cycle recorded")
        started = time.monotonic()
        new_message(stack, "Pushed within seconds")
        wait_for(
            lambda: "Pushed within seconds" in stored_subjects(stack), 10, "the pushed message"
        )
        latency = time.monotonic() - started
        wait_for(
            lambda: (
                "push notifications on (2 of 2)"
                in stack.gateway.get_account(account.id).status_detail
            ),
            10,
            "a finished cycle's status line",
        )
    assert latency < 5, f"{latency:.1f} s from Outlook to the CRM"
    delivered = [
        n
        for n in stack.emulator.notification_log()
        if n["subscriptionId"] == subs[SubscriptionKind.MAIL].graph_id
        and n["kind"] == "change"
        and n["status"] == 202
    ]
    assert delivered, "the emulator delivered the notification to the daemon's endpoint"
    assert stack.gateway.get_account(account.id).sync_requested_at is not None


@pytest.mark.slow
def test_a_lapsed_subscription_falls_back_to_polling(tmp_path):
    stack = push_stack(tmp_path, mail_interval=2)
    (account,) = stack.gateway.list_accounts()
    with running(stack):
        subs = wait_for(lambda: live_subscriptions(stack, account.id), 30, "both subscriptions")
        mail = subs[SubscriptionKind.MAIL]
        # Graph drops the mail subscription and will not take a new one for now.
        stack.emulator.faults.error(
            r"^/v1\.0/subscriptions$", 503, "ServiceUnavailable", times=None, method="POST"
        )
        stack.emulator.send_lifecycle_notification(mail.graph_id, "subscriptionRemoved")
        wait_for(
            lambda: "partly unavailable" in stack.gateway.get_account(account.id).status_detail,
            20,
            "the account to say push lapsed",
        )
        states = {s.kind: s.state for s in stack.gateway.subscriptions(account.id)}
        assert states[SubscriptionKind.MAIL] in (
            SubscriptionState.LAPSED,
            SubscriptionState.REMOVED,
        )
        log_before = len(stack.emulator.notification_log())
        new_message(stack, "Found by polling")
        wait_for(lambda: "Found by polling" in stored_subjects(stack), 20, "the polled message")
        mail_deliveries = [
            n
            for n in stack.emulator.notification_log()[log_before:]
            if n["subscriptionId"] == mail.graph_id and n["kind"] == "change"
        ]
        assert not mail_deliveries, "nothing was pushed: polling found it"
        detail = wait_for(
            lambda: (
                (d := stack.gateway.get_account(account.id).status_detail)
                and "polling at the normal interval" in d
                and d
            ),
            10,
            "a finished cycle's status",
        )
        assert "did not take the subscription (503 ServiceUnavailable)" in detail

        # Graph takes subscriptions again: the next cycle makes a new one and push resumes.
        stack.emulator.faults.clear()
        again = wait_for(
            lambda: (
                (s := live_subscriptions(stack, account.id))
                and s[SubscriptionKind.MAIL].graph_id != mail.graph_id
                and s
            ),
            20,
            "a new mail subscription",
        )
        assert again[SubscriptionKind.MAIL].state is SubscriptionState.ACTIVE


def test_check_config_tries_graphs_validation_request(tmp_path):
    stack = push_stack(tmp_path, mail_interval=60)
    with running(stack) as service:
        wait_for(lambda: service.notifications is not None, 10, "the endpoint")
        with make_session(None, user_agent="test") as session:
            ok, words = check_notification_url(stack.config, session)
        assert ok, words
        assert "echoes Graph's validation token" in words
        from dataclasses import replace

        dead = replace(
            stack.config,
            notifications=replace(
                stack.config.notifications, url=f"http://127.0.0.1:{free_port()}/"
            ),
        )
        with make_session(None, user_agent="test") as session:
            ok, words = check_notification_url(dead, session)
        assert not ok and "Graph could not either" in words


def test_due_rules_interval_backoff_and_requests(tmp_path):
    """What `Service._work_for` decides for a leased account: the interval (normal, or doubled
    after repeated failures), and a Sync now / notification request that overrides both."""
    from datetime import UTC, datetime, timedelta

    from m365sync.domain import SyncRun

    stack = push_stack(tmp_path, mail_interval=300)
    (account,) = stack.gateway.list_accounts()
    now = datetime.now(UTC)
    service = Service(
        stack.runtime, ServiceOptions(holder="due:1", health_port=-1), clock=lambda: now
    )
    try:
        assert service._work_for(account.id) == "cycle"  # never synced
        started = now - timedelta(minutes=11)
        stack.gateway.record_sync_run(
            SyncRun(account.id, started_at=started, finished_at=started, error="Graph failed")
        )
        assert service._work_for(account.id) == "cycle"  # 11 minutes > the 5-minute interval
        service._failures[account.id] = 3  # third failure in a row: wait 20 minutes
        assert service._work_for(account.id) is None
        stack.gateway.request_sync(account.id, now - timedelta(minutes=1))  # Sync now
        assert service._work_for(account.id) == "cycle"
        later = now.replace(microsecond=0) + timedelta(seconds=1, microseconds=500_000)
        stack.gateway.record_sync_run(
            SyncRun(account.id, started_at=later, finished_at=later)  # a cycle answered it
        )
        service._failures.clear()
        assert service._work_for(account.id) is None
        # A CRM that keeps whole seconds stores a request made in that cycle's second, after
        # the cycle read the mailbox, as earlier than its start: still a cycle.
        stack.gateway.request_sync(account.id, later.replace(microsecond=0))
        assert service._work_for(account.id) == "cycle"
    finally:
        service._pool.shutdown()
        stack.runtime.close()
        stack.emulator.stop()
