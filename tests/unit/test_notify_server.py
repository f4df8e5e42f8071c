"""The daemon's own notification endpoint, through werkzeug's test client and the real store."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
from werkzeug.test import Client

from m365sync.crm.gateway import AccountSpec
from m365sync.crm.sqlite import SqliteGateway
from m365sync.domain import Subscription, SubscriptionKind, SubscriptionState
from m365sync.errors import CrmUnavailable
from m365sync.service.notify_server import NotificationEndpoint
from m365sync.sync.notifications import client_state_hash

AT = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)


@pytest.fixture
def store(tmp_path):
    gateway = SqliteGateway(tmp_path / "n.sqlite3")
    yield gateway
    gateway.close()


@pytest.fixture
def setup(store):
    account = store.upsert_account(AccountSpec(address="a@contoso.example", owner="admin"))
    store.save_subscription(
        Subscription(
            account.id,
            SubscriptionKind.MAIL,
            "sub-1",
            "me/messages",
            AT + timedelta(days=2),
            client_state_hash("right"),
        )
    )
    woken: list[list[int]] = []
    endpoint = NotificationEndpoint(store, woken.append, clock=lambda: AT)
    return account, endpoint, woken


def post(client: Client, items: list[dict]):
    return client.post("/", data=json.dumps({"value": items}), content_type="application/json")


def item(state: str = "right", **extra) -> dict:
    return {"subscriptionId": "sub-1", "changeType": "created", "clientState": state, **extra}


def test_validation_token_is_echoed_as_text(setup):
    _account, endpoint, _woken = setup
    client = Client(endpoint)
    answer = client.post("/?validationToken=Validation%3A%20Testing%20client%20application")
    assert answer.status_code == 200
    assert answer.mimetype == "text/plain"
    assert answer.get_data(as_text=True) == "Validation: Testing client application"


def test_a_valid_notification_asks_for_a_cycle_and_wakes_the_service(setup, store):
    account, endpoint, woken = setup
    answer = post(Client(endpoint), [item()])
    assert answer.status_code == 202 and answer.get_data() == b""
    assert store.get_account(account.id).sync_requested_at == AT
    assert woken == [[account.id]]
    assert store.subscriptions(account.id)[0].last_notified_at == AT


def test_a_wrong_client_state_changes_nothing(setup, store, caplog):
    account, endpoint, woken = setup
    answer = post(Client(endpoint), [item("forged"), {**item(), "subscriptionId": "nope"}])
    assert answer.status_code == 202  # Graph must not retry forged posts
    assert store.get_account(account.id).sync_requested_at is None
    assert woken == [] and endpoint.refused == 2
    assert "forged" not in caplog.text and "right" not in caplog.text


def test_lifecycle_removed_marks_the_subscription(setup, store):
    account, endpoint, woken = setup
    answer = post(
        Client(endpoint),
        [
            {
                "subscriptionId": "sub-1",
                "lifecycleEvent": "subscriptionRemoved",
                "clientState": "right",
            }
        ],
    )
    assert answer.status_code == 202
    assert store.subscriptions(account.id)[0].state is SubscriptionState.REMOVED
    assert woken == [[account.id]]


@pytest.mark.parametrize("body", [b"not json", b'{"value": 3}'])
def test_malformed_posts_get_400(setup, body):
    _account, endpoint, _woken = setup
    answer = Client(endpoint).post("/", data=body, content_type="application/json")
    assert answer.status_code == 400


def test_only_post_is_accepted_without_a_token(setup):
    _account, endpoint, _woken = setup
    assert Client(endpoint).get("/").status_code == 405


def test_a_store_that_cannot_record_asks_graph_to_retry(setup):
    _account, endpoint, _woken = setup

    class Down:
        def subscriptions_by_graph_id(self, ids):
            raise CrmUnavailable("the store is locked")

    endpoint.gateway = Down()
    assert post(Client(endpoint), [item()]).status_code == 503
