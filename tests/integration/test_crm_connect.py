"""Connecting from the CRM: a code sealed to the daemon's public key (as the addon's callback
does) is redeemed by the daemon through msal against the emulator."""

from __future__ import annotations

import json
from urllib.parse import parse_qs, urlsplit

from m365sync.crm.sqlite import SqliteGateway
from m365sync.domain import AccountStatus, PendingConnect
from m365sync.sealing import seal_to_public_jwk
from m365sync.service.crm_connect import (
    CONNECT_PURPOSE,
    publish_daemon_info,
    redeem_pending_connects,
)


class CrmWithCallback(SqliteGateway):
    """The embedded store plus what the addon's callback adds: pending connects, daemon info."""

    def __init__(self, path):
        super().__init__(path)
        self.info: dict = {}
        self.pending: list[PendingConnect] = []
        self.finished: dict[int, tuple[int | None, str | None]] = {}
        self.claims: dict[int, str] = {}

    def claim_connect(self, connect_id, holder, *, ttl_seconds=120.0):
        return self.claims.setdefault(connect_id, holder) == holder

    def publish_daemon_info(self, info):
        self.info = info

    def pending_connects(self):
        return [p for p in self.pending if p.id not in self.finished]

    def finish_connect(self, connect_id, *, account_id=None, error=None):
        self.finished[connect_id] = (account_id, error)


def callback_receives_code(stack) -> dict:
    """What the addon does: start the flow, let the user consent, keep code + verifier."""
    redirect = "https://localhost/auth/microsoft-apis/get-access-token"
    flow = stack.runtime.broker.start_auth_code_flow(redirect, response_mode="query")
    answer = stack.runtime.session.get(flow["auth_uri"], allow_redirects=False, timeout=30)
    query = parse_qs(urlsplit(answer.headers["Location"]).query)
    assert query["state"] == [flow["state"]]
    return {
        "code": query["code"][0],
        "code_verifier": flow["code_verifier"],
        "redirect_uri": redirect,
    }


def test_a_code_sealed_by_the_crm_becomes_an_account(stack, tmp_path):
    crm = CrmWithCallback(tmp_path / "crm.sqlite3")
    stack.runtime.gateway = crm
    publish_daemon_info(stack.runtime)
    (public_key,) = [k for k in crm.info["jwks"]["keys"] if k["kid"] == crm.info["kid"]]
    assert "d" not in public_key  # only the public half leaves the daemon
    payload = json.dumps(callback_receives_code(stack)).encode()
    sealed = seal_to_public_jwk(public_key, payload, CONNECT_PURPOSE)
    crm.pending.append(PendingConnect(id=1, owner="megan", sealed=sealed))

    assert redeem_pending_connects(stack.runtime) == 1
    account_id, error = crm.finished[1]
    assert error is None
    account = crm.get_account(account_id)
    assert account.owner == "megan"
    assert account.status is AccountStatus.CONNECTED
    assert redeem_pending_connects(stack.runtime) == 0  # closed requests are not redeemed twice


def test_a_replayed_or_foreign_code_fails_with_words(stack, tmp_path):
    crm = CrmWithCallback(tmp_path / "crm.sqlite3")
    stack.runtime.gateway = crm
    publish_daemon_info(stack.runtime)
    public_key = crm.info["jwks"]["keys"][-1]
    code = callback_receives_code(stack)
    once = seal_to_public_jwk(public_key, json.dumps(code).encode(), CONNECT_PURPOSE)
    crm.pending.append(PendingConnect(id=1, owner="megan", sealed=once))
    crm.pending.append(PendingConnect(id=2, owner="megan", sealed=once))  # the same code again
    crm.pending.append(PendingConnect(id=3, owner="eve", sealed="not-a-jwe"))
    assert redeem_pending_connects(stack.runtime) == 1
    assert crm.finished[1][1] is None
    assert crm.finished[2][0] is None
    assert "used already" in crm.finished[2][1] and "Connect again" in crm.finished[2][1]
    assert "Connect again" in crm.finished[3][1]
    assert len(crm.list_accounts()) == 1


def test_a_connect_another_replica_claimed_is_not_redeemed_twice(stack, tmp_path):
    """Two replicas see the same pending connect: only the claim holder redeems the code, so
    the other can never report "code already used" over the success."""
    crm = CrmWithCallback(tmp_path / "crm.sqlite3")
    stack.runtime.gateway = crm
    publish_daemon_info(stack.runtime)
    public_key = crm.info["jwks"]["keys"][-1]
    sealed = seal_to_public_jwk(
        public_key, json.dumps(callback_receives_code(stack)).encode(), CONNECT_PURPOSE
    )
    crm.pending.append(PendingConnect(id=7, owner="megan", sealed=sealed))
    crm.claims[7] = "other-replica:1"
    assert redeem_pending_connects(stack.runtime) == 0
    assert 7 not in crm.finished
    crm.claims[7] = stack.runtime.holder  # the claim came back to us (the other one died)
    assert redeem_pending_connects(stack.runtime) == 1
    assert crm.finished[7][1] is None
