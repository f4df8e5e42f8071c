"""Reading and checking Graph notification posts, and the subscription decisions."""

from __future__ import annotations

import ast
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from m365sync.domain import (
    ReceivedNotification,
    Subscription,
    SubscriptionKind,
    SubscriptionState,
)
from m365sync.sync.notifications import (
    MalformedNotification,
    Step,
    check,
    client_state_hash,
    is_live,
    next_step,
    poll_interval,
    read_post,
    renewal_due,
    state_after,
)

NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
LIFETIME = timedelta(minutes=4200)


def sub(**overrides) -> Subscription:
    values = {
        "account_id": 1,
        "kind": SubscriptionKind.MAIL,
        "graph_id": "7f105c7d-2dc5-4530-97cd-4e7ae6534c07",
        "resource": "me/messages",
        "expires_at": NOW + LIFETIME,
        "client_state_hash": client_state_hash("s3cret"),
    }
    values.update(overrides)
    return Subscription(**values)


# The shape of the docs' example (api/resources/changenotification.md, webhooks page).
DOCS_POST = {
    "value": [
        {
            "subscriptionId": "7f105c7d-2dc5-4530-97cd-4e7ae6534c07",
            "subscriptionExpirationDateTime": "2026-11-27T11:00:00.0000000Z",
            "changeType": "created",
            "resource": "Users/{user-id}/Messages/{message-id}",
            "resourceData": {
                "@odata.type": "#Microsoft.Graph.Message",
                "@odata.id": "Users/{user-id}/Messages/{message-id}",
                "@odata.etag": 'W/"CQAAABYAAADkrWGo7bouTKlsgTZMr9KwAAAUWRHf"',
                "id": "{message-id}",
            },
            "clientState": "s3cret",
            "tenantId": "84bd8158-6d4d-4958-8b9f-9d6445542f95",
        }
    ]
}


def test_a_docs_shaped_post_is_read():
    (item,) = read_post(json.dumps(DOCS_POST).encode())
    assert item.client_state == "s3cret"
    assert item.notification.subscription_id == "7f105c7d-2dc5-4530-97cd-4e7ae6534c07"
    assert item.notification.change_type == "created"
    assert item.notification.lifecycle_event is None
    assert item.notification.resource.startswith("Users/")


def test_lifecycle_items_carry_the_event_not_a_change():
    body = {
        "value": [
            {
                "subscriptionId": "a",
                "lifecycleEvent": "subscriptionRemoved",
                "clientState": "x",
                "subscriptionExpirationDateTime": "2026-11-27T11:00:00Z",
                "tenantId": "t",
            },
            {"subscriptionId": "b", "lifecycleEvent": "somethingNew"},  # unknown: skipped
            {"subscriptionId": "", "changeType": "created"},  # no id: skipped
            {"changeType": "created"},
            "not an object",
        ]
    }
    (item,) = read_post(json.dumps(body).encode())
    assert item.notification.lifecycle_event == "subscriptionRemoved"
    assert item.notification.change_type is None


@pytest.mark.parametrize(
    "body", [b"", b"<html>", b"[]", b'{"value": {}}', b'{"items": []}', b"\xff\xfe"]
)
def test_a_post_that_is_not_a_notification_collection_is_malformed(body):
    with pytest.raises(MalformedNotification):
        read_post(body)


@given(st.binary(max_size=200))
def test_any_bytes_either_read_or_refuse_cleanly(body):
    try:
        items = read_post(body)
    except MalformedNotification:
        return
    assert isinstance(items, list)


def test_check_accepts_only_the_right_client_state_for_a_known_subscription():
    good = read_post(json.dumps(DOCS_POST).encode())
    wrong = [
        type(good[0])(good[0].notification, "guess"),
        type(good[0])(good[0].notification, ""),
    ]
    stranger = read_post(
        json.dumps({"value": [{**DOCS_POST["value"][0], "subscriptionId": "other"}]}).encode()
    )
    stored = {sub().graph_id: sub()}
    accepted, refused = check(good + wrong + stranger, stored)
    assert [n.subscription_id for n in accepted] == [sub().graph_id]
    assert refused == 3


def test_the_hash_is_sha256_hex_and_never_the_secret():
    digest = client_state_hash("s3cret")
    assert len(digest) == 64 and "s3cret" not in digest
    assert digest == client_state_hash("s3cret") != client_state_hash("s3cret ")


# --- decisions ------------------------------------------------------------------------------


def test_next_step_for_each_situation():
    assert next_step(None, NOW, lifetime=LIFETIME) is Step.CREATE
    assert next_step(sub(), NOW, lifetime=LIFETIME) is Step.KEEP
    half = NOW + LIFETIME / 2
    assert next_step(sub(expires_at=half + timedelta(minutes=1)), NOW, lifetime=LIFETIME) is (
        Step.KEEP
    )
    assert next_step(sub(expires_at=half - timedelta(minutes=1)), NOW, lifetime=LIFETIME) is (
        Step.RENEW
    )
    assert next_step(sub(state=SubscriptionState.REAUTHORIZE), NOW, lifetime=LIFETIME) is (
        Step.RENEW
    )
    assert next_step(sub(expires_at=NOW), NOW, lifetime=LIFETIME) is Step.CREATE
    for state in (SubscriptionState.REMOVED, SubscriptionState.LAPSED):
        assert next_step(sub(state=state), NOW, lifetime=LIFETIME) is Step.CREATE
    assert next_step(sub(), NOW, lifetime=LIFETIME, notification_url_changed=True) is Step.CREATE


def test_live_means_delivering_now():
    assert is_live(sub(), NOW)
    assert is_live(sub(state=SubscriptionState.REAUTHORIZE), NOW)
    assert not is_live(sub(expires_at=NOW), NOW)
    assert not is_live(sub(state=SubscriptionState.REMOVED), NOW)
    assert not is_live(sub(state=SubscriptionState.LAPSED), NOW)


def test_poll_interval_is_slow_only_while_every_wanted_subscription_is_live():
    normal, slow = timedelta(minutes=5), timedelta(minutes=30)
    both = [sub(), sub(kind=SubscriptionKind.CALENDAR, graph_id="c")]
    assert poll_interval(both, 2, NOW, normal=normal, with_push=slow) == slow
    assert poll_interval(both[:1], 2, NOW, normal=normal, with_push=slow) == normal
    lapsed = [sub(), sub(kind=SubscriptionKind.CALENDAR, graph_id="c", expires_at=NOW)]
    assert poll_interval(lapsed, 2, NOW, normal=normal, with_push=slow) == normal
    assert poll_interval([], 0, NOW, normal=normal, with_push=slow) == normal


def test_renewal_due_when_any_needs_work():
    assert not renewal_due([sub()], NOW, lifetime=LIFETIME)
    assert renewal_due([sub(), sub(state=SubscriptionState.REMOVED)], NOW, lifetime=LIFETIME)
    assert renewal_due([sub(expires_at=NOW + timedelta(hours=1))], NOW, lifetime=LIFETIME)


@pytest.mark.parametrize(
    ("event", "state"),
    [
        ("subscriptionRemoved", SubscriptionState.REMOVED),
        ("reauthorizationRequired", SubscriptionState.REAUTHORIZE),
        ("missed", None),
        (None, None),
    ],
)
def test_the_state_a_notification_gives_its_subscription(event, state):
    assert state_after(ReceivedNotification("S1", lifecycle_event=event)) is state
    assert state_after(ReceivedNotification("S1", change_type="created")) is None


def test_the_addons_endpoint_applies_the_same_lifecycle_table():
    """The addon receives Graph's notifications itself and cannot import the daemon: its copy
    of the table (read from its source, as Odoo is not importable here) is this one."""
    source = Path(__file__).resolve().parents[2] / (
        "addon/crm_microsoft365/models/m365_subscription.py"
    )
    [table] = [
        node.value
        for node in ast.parse(source.read_text("utf-8")).body
        if isinstance(node, ast.Assign) and ast.unparse(node.targets[0]) == "LIFECYCLE_STATES"
    ]
    addon = ast.literal_eval(table)
    for event in ("subscriptionRemoved", "reauthorizationRequired", "missed", "other"):
        ours = state_after(ReceivedNotification("S1", lifecycle_event=event))
        assert addon.get(event.lower()) == (ours.value if ours else None), event
    assert len(addon) == 2
