"""The service's free/busy job: pending CRM requests answered through the account's mailbox."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from types import SimpleNamespace

import pytest

from m365sync.crm.gateway import FreeBusyRequest
from m365sync.domain import Account, AccountStatus
from m365sync.errors import (
    CrmUnavailable,
    InsufficientPermissions,
    Transient,
    UnknownAccount,
)
from m365sync.graph.schedule import Availability, BusySlot
from m365sync.service import free_busy

T0 = datetime(2026, 11, 25, 8, 0, tzinfo=UTC)


class Crm:
    def __init__(self, requests, accounts) -> None:
        self.requests = requests
        self.accounts = accounts
        self.answers: dict[int, tuple[list, str | None]] = {}
        self.down = False
        self.claims: dict[int, str] = {}

    def claim_free_busy(self, request_id, holder, *, ttl_seconds=60.0):
        return self.claims.setdefault(request_id, holder) == holder

    def pending_free_busy(self):
        if self.down:
            raise CrmUnavailable("Odoo at http://odoo cannot be reached")
        return [r for r in self.requests if r.id not in self.answers]

    def get_account(self, account_id):
        if account_id not in self.accounts:
            raise UnknownAccount(f"no account {account_id}")
        return self.accounts[account_id]

    def store_free_busy(self, request_id, results, *, error=None):
        self.answers[request_id] = (list(results), error)


def request(request_id: int, account_id: int = 1) -> FreeBusyRequest:
    return FreeBusyRequest(
        request_id, account_id, ("ann@example.com", "x@elsewhere.example"), T0, T0 + timedelta(1)
    )


@pytest.fixture
def asked(monkeypatch):
    calls = []

    def fake_free_busy(client, addresses, start, end):
        calls.append((client, addresses, start, end))
        if client == "graph-of-3":
            raise Transient("Graph answered 503")
        if client == "graph-of-4":
            raise InsufficientPermissions("Calendars.Read is missing", status=403)
        return [
            Availability(addresses[0], (BusySlot(T0, T0 + timedelta(hours=1), "busy"),)),
            Availability(addresses[1], (), "not found"),
        ]

    monkeypatch.setattr(free_busy, "free_busy", fake_free_busy)
    return calls


def runtime_for(crm: Crm):
    return SimpleNamespace(
        gateway=crm, graph_for=lambda account: f"graph-of-{account.id}", holder="replica-a"
    )


def test_each_pending_request_is_answered_once(asked) -> None:
    crm = Crm([request(7), request(8)], {1: Account(1, "megan@contoso.example")})
    assert free_busy.answer_free_busy(runtime_for(crm)) == 2
    results, error = crm.answers[7]
    assert error is None
    assert [r.address for r in results] == ["ann@example.com", "x@elsewhere.example"]
    assert results[1].error == "not found"  # unknown, not free
    assert asked[0] == (
        "graph-of-1",
        ["ann@example.com", "x@elsewhere.example"],
        T0,
        T0 + timedelta(1),
    )
    assert free_busy.answer_free_busy(runtime_for(crm)) == 0
    assert len(asked) == 2


def test_failures_are_answered_in_words_and_outages_wait(asked) -> None:
    accounts = {
        3: Account(3, "busy@contoso.example"),
        4: Account(4, "noperm@contoso.example"),
        5: Account(5, "gone@contoso.example", status=AccountStatus.NEEDS_RECONNECT),
        6: Account(6, "resting@contoso.example", status=AccountStatus.PAUSED),
    }
    crm = Crm(
        [request(1, 3), request(2, 4), request(3, 5), request(4, 99), request(5, 6)], accounts
    )
    assert free_busy.answer_free_busy(runtime_for(crm)) == 4
    assert "graph-of-6" not in [call[0] for call in asked]  # a paused mailbox is left alone
    assert crm.answers[5] == (
        [],
        "resting@contoso.example is paused: resume it before Outlook can be asked.",
    )
    assert 1 not in crm.answers  # Microsoft was down: asked again on the next pass
    assert crm.answers[2][0] == [] and crm.answers[2][1]
    assert "connected again" in crm.answers[3][1]
    assert "gone" in crm.answers[4][1]


def test_a_crm_that_cannot_be_reached_is_logged_not_raised(asked, caplog) -> None:
    crm = Crm([request(1)], {})
    crm.down = True
    assert free_busy.answer_free_busy(runtime_for(crm)) == 0
    assert "cannot be reached" in caplog.text


def test_a_request_another_replica_claimed_is_left_to_it(asked):
    crm = Crm([request(1), request(2)], {1: Account(1, "megan@contoso.example")})
    crm.claims[1] = "replica-b"
    assert free_busy.answer_free_busy(runtime_for(crm)) == 1
    assert list(crm.answers) == [2]
    assert [call[1] for call in asked] == [["ann@example.com", "x@elsewhere.example"]]
