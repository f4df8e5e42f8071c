"""The push half of the gateway contract: Graph subscriptions and sync requests.

An adapter's test module subclasses `PushContract` and provides the ``gateway`` fixture.
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta

import pytest

from m365sync.crm.gateway import CrmGateway
from m365sync.domain import (
    CrmSettings,
    ReceivedNotification,
    Subscription,
    SubscriptionKind,
    SubscriptionState,
)
from m365sync.errors import LeaseLost, UnknownAccount
from tests.contract.gateway_contract import spec, unique

NOW = datetime.now(UTC).replace(microsecond=0)


def subscription(account_id: int, kind=SubscriptionKind.MAIL, **overrides) -> Subscription:
    values = {
        "account_id": account_id,
        "kind": kind,
        "graph_id": unique("sub-"),
        "resource": "me/messages" if kind == SubscriptionKind.MAIL else "me/events",
        "expires_at": NOW + timedelta(days=2),
        "client_state_hash": hashlib.sha256(b"secret").hexdigest(),
        "notification_url": "https://crm.contoso.example/m365/notifications",
    }
    values.update(overrides)
    return Subscription(**values)


class PushContract:
    @pytest.fixture
    def account(self, gateway: CrmGateway):
        return gateway.upsert_account(spec())

    def test_a_new_account_has_no_request_and_no_subscription(self, gateway, account):
        assert gateway.get_account(account.id).sync_requested_at is None
        assert gateway.subscriptions(account.id) == []

    def test_request_sync_keeps_the_latest_time(self, gateway, account):
        gateway.request_sync(account.id, NOW)
        assert gateway.get_account(account.id).sync_requested_at == NOW
        gateway.request_sync(account.id, NOW - timedelta(minutes=5))  # late, older: ignored
        assert gateway.get_account(account.id).sync_requested_at == NOW
        later = NOW + timedelta(seconds=3)
        gateway.request_sync(account.id, later)
        assert gateway.get_account(account.id).sync_requested_at == later

    def test_request_sync_for_an_unknown_account_says_so(self, gateway):
        with pytest.raises(UnknownAccount):
            gateway.request_sync(987654321, NOW)

    def test_one_subscription_per_kind_replaced_by_save(self, gateway, account):
        mail = subscription(account.id)
        calendar = subscription(account.id, SubscriptionKind.CALENDAR)
        gateway.save_subscription(mail)
        gateway.save_subscription(calendar)
        stored = {s.kind: s for s in gateway.subscriptions(account.id)}
        assert stored[SubscriptionKind.MAIL] == mail
        assert stored[SubscriptionKind.CALENDAR] == calendar

        renewed = subscription(
            account.id,
            graph_id=mail.graph_id,
            expires_at=NOW + timedelta(days=3),
            state=SubscriptionState.ACTIVE,
        )
        gateway.save_subscription(renewed)
        recreated = subscription(account.id, graph_id=unique("sub-"))
        gateway.save_subscription(recreated)
        stored = {s.kind: s for s in gateway.subscriptions(account.id)}
        assert len(stored) == 2
        assert stored[SubscriptionKind.MAIL] == recreated
        assert gateway.subscriptions_by_graph_id([mail.graph_id]) == {}

    def test_save_with_a_stale_lease_writes_nothing(self, gateway, account):
        holder = unique("holder-")
        (lease,) = [
            lease
            for lease in gateway.lease_accounts(holder, limit=1000, ttl_seconds=60)
            if lease.account_id == account.id
        ] or pytest.skip("the account was leased by another test run")
        gateway.save_subscription(subscription(account.id), lease=lease)
        gateway.release_lease(lease)
        with pytest.raises(LeaseLost):
            gateway.save_subscription(subscription(account.id), lease=lease)
        assert len(gateway.subscriptions(account.id)) == 1

    def test_drop_subscription(self, gateway, account):
        gateway.save_subscription(subscription(account.id))
        gateway.save_subscription(subscription(account.id, SubscriptionKind.CALENDAR))
        gateway.drop_subscription(account.id, SubscriptionKind.MAIL)
        assert [s.kind for s in gateway.subscriptions(account.id)] == [SubscriptionKind.CALENDAR]
        gateway.drop_subscription(account.id, SubscriptionKind.MAIL)  # already gone: fine

    def test_lookup_by_graph_id(self, gateway, account):
        mail = subscription(account.id)
        gateway.save_subscription(mail)
        found = gateway.subscriptions_by_graph_id([mail.graph_id, "no-such-subscription"])
        assert list(found) == [mail.graph_id]
        assert found[mail.graph_id].client_state_hash == mail.client_state_hash
        assert gateway.subscriptions_by_graph_id([]) == {}

    def test_notifications_ask_for_a_cycle_and_lifecycle_sets_the_state(self, gateway, account):
        other = gateway.upsert_account(spec())
        mail = subscription(account.id)
        calendar = subscription(account.id, SubscriptionKind.CALENDAR)
        theirs = subscription(other.id)
        for item in (mail, calendar, theirs):
            gateway.save_subscription(item)
        at = NOW + timedelta(seconds=1)
        asked = gateway.record_notifications(
            [
                ReceivedNotification(mail.graph_id, change_type="created", resource="x"),
                ReceivedNotification(mail.graph_id, change_type="updated", resource="y"),
                ReceivedNotification(calendar.graph_id, lifecycle_event="subscriptionRemoved"),
                ReceivedNotification("unknown-subscription", change_type="created"),
            ],
            at,
        )
        assert asked == [account.id]
        assert gateway.get_account(account.id).sync_requested_at == at
        assert gateway.get_account(other.id).sync_requested_at is None
        stored = {s.kind: s for s in gateway.subscriptions(account.id)}
        assert stored[SubscriptionKind.MAIL].state == SubscriptionState.ACTIVE
        assert stored[SubscriptionKind.MAIL].last_notified_at == at
        assert stored[SubscriptionKind.CALENDAR].state == SubscriptionState.REMOVED

        asked = gateway.record_notifications(
            [
                ReceivedNotification(theirs.graph_id, lifecycle_event="reauthorizationRequired"),
                ReceivedNotification(mail.graph_id, lifecycle_event="missed"),
            ],
            at + timedelta(seconds=1),
        )
        assert asked == sorted([account.id, other.id])
        assert gateway.subscriptions(other.id)[0].state == SubscriptionState.REAUTHORIZE
        mail_now = gateway.subscriptions_by_graph_id([mail.graph_id])[mail.graph_id]
        assert mail_now.state == SubscriptionState.ACTIVE  # missed: only a cycle
        assert gateway.record_notifications([], at) == []

    def test_crm_settings_have_the_documented_shape(self, gateway):
        settings = gateway.crm_settings()
        assert isinstance(settings, CrmSettings)
        assert settings.sync_interval_seconds is None or settings.sync_interval_seconds > 0
        assert all(isinstance(entry, str) and entry for entry in settings.blocklist)
        assert settings.notification_url == "" or settings.notification_url.startswith("http")
