"""Keeping an account's subscriptions: the Graph calls (over `responses`) and what is stored
(the real embedded store)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
import responses

from m365sync.crm.gateway import AccountSpec
from m365sync.crm.sqlite import SqliteGateway
from m365sync.domain import Subscription, SubscriptionKind, SubscriptionState
from m365sync.errors import LeaseLost
from m365sync.graph.client import GraphClient
from m365sync.graph.subscriptions import LIFETIME, MAX_LIFETIME
from m365sync.graph.transport import make_session
from m365sync.service.push_cycle import PushTarget, keep_subscriptions
from m365sync.sync.notifications import client_state_hash

BASE = "https://graph.example.test/v1.0"
NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
URL = "https://crm.example.com/m365/notifications"
BOTH = PushTarget(URL, URL, (SubscriptionKind.MAIL, SubscriptionKind.CALENDAR))


class Tokens:
    def access_token(self, force_refresh: bool = False) -> str:
        return "token"


@pytest.fixture
def graph() -> GraphClient:
    return GraphClient(make_session(None, user_agent="test"), BASE, Tokens(), sleep=lambda s: None)


@pytest.fixture
def store(tmp_path):
    gateway = SqliteGateway(tmp_path / "push.sqlite3")
    yield gateway
    gateway.close()


@pytest.fixture
def account(store):
    return store.upsert_account(AccountSpec(address="meganb@contoso.example", owner="admin"))


def created(body: dict, graph_id: str) -> dict:
    return {
        "id": graph_id,
        "resource": body["resource"],
        "changeType": body["changeType"],
        "clientState": body["clientState"],
        "notificationUrl": body["notificationUrl"],
        "expirationDateTime": body["expirationDateTime"],
    }


def answer_creates(rsps, seen: list[dict]) -> None:
    def callback(request):
        body = json.loads(request.body)
        seen.append(body)
        return 201, {}, json.dumps(created(body, f"sub-{len(seen)}"))

    rsps.add_callback(responses.POST, f"{BASE}/subscriptions", callback=callback)


@responses.activate
def test_first_cycle_makes_both_and_stores_only_the_hash(graph, store, account):
    seen: list[dict] = []
    answer_creates(responses, seen)
    report = keep_subscriptions(store, graph, account, BOTH, now=NOW)
    assert report.live == 2 and not report.problems
    assert report.sentence() == "push notifications on (2 of 2)"
    assert {b["resource"] for b in seen} == {"me/messages", "me/events"}
    for body in seen:
        assert body["changeType"] == "created,updated,deleted"
        assert body["notificationUrl"] == URL and body["lifecycleNotificationUrl"] == URL
        assert len(body["clientState"]) <= 128
        expiry = datetime.fromisoformat(body["expirationDateTime"])
        assert NOW < expiry <= NOW + MAX_LIFETIME
    stored = {s.kind: s for s in store.subscriptions(account.id)}
    for body in seen:
        kind = (
            SubscriptionKind.MAIL
            if body["resource"] == "me/messages"
            else (SubscriptionKind.CALENDAR)
        )
        assert stored[kind].client_state_hash == client_state_hash(body["clientState"])
    assert seen[0]["clientState"] != seen[1]["clientState"]
    assert {s.notification_url for s in stored.values()} == {URL}
    dump = (store.path).read_bytes()
    assert seen[0]["clientState"].encode() not in dump


@responses.activate
def test_a_healthy_subscription_costs_no_request(graph, store, account):
    store.save_subscription(
        Subscription(account.id, SubscriptionKind.MAIL, "s1", "me/messages", NOW + LIFETIME, "h")
    )
    report = keep_subscriptions(
        store, graph, account, PushTarget(URL, URL, (SubscriptionKind.MAIL,)), now=NOW
    )
    assert report.live == 1
    assert len(responses.calls) == 0


@responses.activate
def test_renewal_patches_and_a_gone_one_is_made_again(graph, store, account):
    soon = NOW + timedelta(hours=2)
    store.save_subscription(
        Subscription(account.id, SubscriptionKind.MAIL, "s-mail", "me/messages", soon, "h1")
    )
    store.save_subscription(
        Subscription(account.id, SubscriptionKind.CALENDAR, "s-cal", "me/events", soon, "h2")
    )
    responses.add(
        responses.PATCH,
        f"{BASE}/subscriptions/s-mail",
        json={"id": "s-mail", "expirationDateTime": "2026-11-28T10:00:00.0000000Z"},
    )
    responses.add(
        responses.PATCH,
        f"{BASE}/subscriptions/s-cal",
        status=404,
        json={"error": {"code": "ResourceNotFound", "message": "The object was not found."}},
    )
    responses.add(
        responses.DELETE,
        f"{BASE}/subscriptions/s-cal",
        status=404,
        json={"error": {"code": "ResourceNotFound", "message": "gone"}},
    )
    seen: list[dict] = []
    answer_creates(responses, seen)
    report = keep_subscriptions(store, graph, account, BOTH, now=NOW)
    assert report.live == 2
    stored = {s.kind: s for s in store.subscriptions(account.id)}
    assert stored[SubscriptionKind.MAIL].graph_id == "s-mail"
    assert stored[SubscriptionKind.MAIL].client_state_hash == "h1"  # same secret after PATCH
    assert stored[SubscriptionKind.MAIL].expires_at == datetime(2026, 11, 28, 10, tzinfo=UTC)
    assert stored[SubscriptionKind.CALENDAR].graph_id == "sub-1"
    assert [b["resource"] for b in seen] == ["me/events"]


@responses.activate
def test_removed_by_graph_is_recreated_without_deleting(graph, store, account):
    store.save_subscription(
        Subscription(
            account.id,
            SubscriptionKind.MAIL,
            "old",
            "me/messages",
            NOW + LIFETIME,
            "h",
            state=SubscriptionState.REMOVED,
        )
    )
    seen: list[dict] = []
    answer_creates(responses, seen)
    keep_subscriptions(
        store, graph, account, PushTarget(URL, URL, (SubscriptionKind.MAIL,)), now=NOW
    )
    assert [c.request.method for c in responses.calls] == ["POST"]
    assert store.subscriptions(account.id)[0].graph_id == "sub-1"


@responses.activate
def test_a_failed_validation_is_reported_in_words_and_polling_goes_on(graph, store, account):
    store.save_subscription(
        Subscription(
            account.id,
            SubscriptionKind.MAIL,
            "old",
            "me/messages",
            NOW - timedelta(minutes=1),
            "h",
        )
    )
    responses.add(responses.DELETE, f"{BASE}/subscriptions/old", status=204)
    responses.add(
        responses.POST,
        f"{BASE}/subscriptions",
        status=400,
        json={
            "error": {
                "code": "InvalidRequest",
                "message": "Subscription validation request failed. Notification endpoint "
                "must respond with 200 OK to validation request.",
            }
        },
    )
    report = keep_subscriptions(
        store, graph, account, PushTarget(URL, URL, (SubscriptionKind.MAIL,)), now=NOW
    )
    assert report.live == 0
    sentence = report.sentence()
    assert "could not validate the notification URL " + URL in sentence
    assert "polling at the normal interval" in sentence
    (kept,) = store.subscriptions(account.id)
    assert kept.state is SubscriptionState.LAPSED and "validate" in kept.detail


@responses.activate
def test_push_turned_off_deletes_what_was_made(graph, store, account):
    store.save_subscription(
        Subscription(account.id, SubscriptionKind.MAIL, "s1", "me/messages", NOW + LIFETIME, "h")
    )
    responses.add(responses.DELETE, f"{BASE}/subscriptions/s1", status=204)
    report = keep_subscriptions(store, graph, account, None, now=NOW)
    assert report.sentence() == ""
    assert store.subscriptions(account.id) == []
    assert [c.request.method for c in responses.calls] == ["DELETE"]


@responses.activate
def test_a_stale_lease_stores_nothing(graph, store, account):
    (lease,) = store.lease_accounts("h:1", limit=1, ttl_seconds=60)
    store.release_lease(lease)
    seen: list[dict] = []
    answer_creates(responses, seen)
    with pytest.raises(LeaseLost):
        keep_subscriptions(
            store,
            graph,
            account,
            PushTarget(URL, URL, (SubscriptionKind.MAIL,)),
            lease=lease,
            now=NOW,
        )
    assert store.subscriptions(account.id) == []


@responses.activate
def test_a_new_notification_url_replaces_the_subscription_at_once(graph, store, account):
    """A subscription's URL cannot change in Graph: a moved endpoint (Odoo's web.base.url, or
    notifications.url) gets a new subscription and the old one is deleted, long before expiry."""
    old_url = "https://old-odoo.contoso.example/m365/notifications"
    store.save_subscription(
        Subscription(
            account.id,
            SubscriptionKind.MAIL,
            "s-old",
            "me/messages",
            NOW + LIFETIME,
            "h",
            notification_url=old_url,
        )
    )
    responses.add(responses.DELETE, f"{BASE}/subscriptions/s-old", status=204)
    seen: list[dict] = []
    answer_creates(responses, seen)
    report = keep_subscriptions(
        store, graph, account, PushTarget(URL, URL, (SubscriptionKind.MAIL,)), now=NOW
    )
    assert report.live == 1
    assert [c.request.method for c in responses.calls] == ["DELETE", "POST"]
    assert seen[0]["notificationUrl"] == URL
    (kept,) = store.subscriptions(account.id)
    assert (kept.graph_id, kept.notification_url) == ("sub-1", URL)
