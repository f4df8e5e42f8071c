"""Issue #13, daemon side: the attacks a hostile user, sender or network peer tried, one test
each, named after the attack. The Odoo-side ones are the addon's tests/test_attacks.py; the
store rules (forged Message-ID, privacy blanking) are also in the gateway contract, which both
stores pass (tests/contract/gateway_contract.py)."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace

from m365sync.crm.gateway import AccountSpec
from m365sync.crm.sqlite import SqliteGateway
from m365sync.domain import (
    Account,
    AccountStatus,
    Cursor,
    CursorKind,
    EmailAddress,
    MailMessage,
    PageWrite,
    ParticipantLink,
    PendingConnect,
    Privacy,
    StoredMessage,
)
from m365sync.errors import NeedsReconnect, advice_for
from m365sync.graph.auth import error_from_msal
from m365sync.service import crm_connect
from m365sync.service.account_sync import sync_account_mail
from m365sync.sync.mail import apply_privacy

T0 = datetime(2025, 3, 1, 9, 0, tzinfo=UTC)


def _mail(graph_id: str, sender: str, body: str, subject: str = "Invoice") -> MailMessage:
    return MailMessage(
        graph_id=graph_id,
        internet_message_id="<same@supplier.example>",
        conversation_id="conv",
        folder_id="inbox",
        subject=subject,
        sender=EmailAddress(sender, "Billing"),
        to=(EmailAddress("me@contoso.example"),),
        received_at=T0,
        body_html=body,
    )


def _page(account: Account, msg: MailMessage, privacy: Privacy) -> PageWrite:
    links = [
        ParticipantLink("from", msg.sender.address if msg.sender else "", "Billing", None, None)
    ]
    return PageWrite(
        account.id,
        "inbox",
        [StoredMessage(apply_privacy(msg, privacy), links)],
        [],
        Cursor(f"https://g/{msg.graph_id}", CursorKind.DELTA),
    )


def _gateway(tmp_path: Path) -> SqliteGateway:
    return SqliteGateway(tmp_path / "store.sqlite3")


def _bodies(gateway: SqliteGateway) -> list[tuple[str | None, str | None, str | None]]:
    with gateway._read() as conn:
        return [
            tuple(row)
            for row in conn.execute(
                "SELECT from_address, subject, body_html FROM m365_mail_message ORDER BY id"
            )
        ]


# --- point 3: a Message-ID is the sender's to choose --------------------------------------


def test_a_forged_message_id_does_not_replace_the_stored_mail(tmp_path: Path) -> None:
    gateway = _gateway(tmp_path)
    first = gateway.upsert_account(AccountSpec(address="a@contoso.example"))
    second = gateway.upsert_account(AccountSpec(address="b@contoso.example"))
    genuine = _mail("g1", "billing@supplier.example", "<p>Pay to IBAN DE00</p>")
    forged = _mail("g2", "mallory@evil.example", "<p>New IBAN GB99</p>")
    gateway.store_mail_page(_page(first, genuine, Privacy.EVERYTHING))
    gateway.store_mail_page(_page(second, forged, Privacy.EVERYTHING))
    spoofed = replace(forged, graph_id="g3", sender=genuine.sender)
    gateway.store_mail_page(_page(second, spoofed, Privacy.EVERYTHING))
    bodies = _bodies(gateway)
    assert len(bodies) == 3
    assert bodies[0] == ("billing@supplier.example", "Invoice", "<p>Pay to IBAN DE00</p>")


def test_the_same_message_in_two_mailboxes_is_still_stored_once(tmp_path: Path) -> None:
    gateway = _gateway(tmp_path)
    first = gateway.upsert_account(AccountSpec(address="a@contoso.example"))
    second = gateway.upsert_account(AccountSpec(address="b@contoso.example"))
    msg = _mail("g1", "billing@supplier.example", "<p>Pay to IBAN DE00</p>")
    gateway.store_mail_page(_page(first, msg, Privacy.EVERYTHING))
    gateway.store_mail_page(_page(second, replace(msg, graph_id="g2"), Privacy.EVERYTHING))
    assert gateway.count_messages() == 1


# --- point 4: one mailbox's privacy never removes what another shared ----------------------


def test_a_metadata_mailbox_does_not_blank_what_another_shared(tmp_path: Path) -> None:
    gateway = _gateway(tmp_path)
    shared = gateway.upsert_account(AccountSpec(address="a@contoso.example"))
    private = gateway.upsert_account(
        AccountSpec(address="b@contoso.example", privacy=Privacy.METADATA)
    )
    msg = _mail("g1", "billing@supplier.example", "<p>Pay to IBAN DE00</p>")
    gateway.store_mail_page(_page(shared, msg, Privacy.EVERYTHING))
    gateway.store_mail_page(_page(private, replace(msg, graph_id="g2"), Privacy.METADATA))
    assert _bodies(gateway) == [("billing@supplier.example", "Invoice", "<p>Pay to IBAN DE00</p>")]


def test_a_metadata_mailbox_alone_still_shares_nothing(tmp_path: Path) -> None:
    gateway = _gateway(tmp_path)
    private = gateway.upsert_account(
        AccountSpec(address="b@contoso.example", privacy=Privacy.METADATA)
    )
    msg = _mail("g1", "billing@supplier.example", "<p>Pay to IBAN DE00</p>")
    gateway.store_mail_page(_page(private, msg, Privacy.METADATA))
    assert _bodies(gateway) == [("billing@supplier.example", None, None)]


# --- point 1: a mailbox whose owner is not an internal user --------------------------------


class _Recorder:
    def __init__(self) -> None:
        self.statuses: list[tuple[int, AccountStatus, str]] = []
        self.finished: list[tuple[int, str | None]] = []
        self.claimed: list[int] = []

    def set_account_status(self, account_id, status, detail="", **_when) -> None:
        self.statuses.append((account_id, status, detail))

    def record_sync_run(self, run) -> None:
        pass

    def pending_connects(self) -> list[PendingConnect]:
        return [PendingConnect(7, "portal-user", "eyJ.sealed", owner_internal=False)]

    def claim_connect(self, connect_id, holder, **_kw) -> bool:
        self.claimed.append(connect_id)
        return True

    def finish_connect(self, connect_id, *, account_id=None, error=None) -> None:
        self.finished.append((connect_id, error))


def test_an_account_of_a_portal_user_is_never_synced() -> None:
    gateway = _Recorder()

    def no_graph(_account):
        raise AssertionError("Graph must not be called for this account")

    runtime = SimpleNamespace(gateway=gateway, graph_for=no_graph, config=None)
    account = Account(id=3, address="portal@client.example", owner_internal=False)
    run = sync_account_mail(runtime, account)  # type: ignore[arg-type]
    assert run.error
    assert gateway.statuses and gateway.statuses[-1][1] is AccountStatus.FAILED
    assert "not an internal user" in gateway.statuses[-1][2]


def test_a_connect_request_of_a_portal_user_is_never_redeemed() -> None:
    gateway = _Recorder()

    class Keyring:
        def open(self, *_a, **_kw):
            raise AssertionError("the sealed code must not even be opened")

    runtime = SimpleNamespace(gateway=gateway, keyring=Keyring(), holder="h1")
    assert crm_connect.redeem_pending_connects(runtime) == 0  # type: ignore[arg-type]
    assert gateway.claimed == []
    assert gateway.finished and "internal users" in (gateway.finished[0][1] or "")


# --- point 7: an invalid_grant that does not mean the grant is gone -----------------------


def _aad(error: str, code: int) -> dict:
    return {
        "error": error,
        "error_description": f"AADSTS{code}: Something happened.\r\nTrace ID: t",
        "error_codes": [code],
    }


def test_an_invalid_grant_from_a_misconfigured_authority_keeps_the_grant() -> None:
    error = error_from_msal(_aad("invalid_grant", 9002313))
    assert not isinstance(error, NeedsReconnect)
    assert advice_for(error).status is not AccountStatus.NEEDS_RECONNECT
    assert "authority" in str(error)


def test_a_revoked_or_expired_grant_still_needs_reconnect() -> None:
    for code in (50173, 700082, 70008, 65001):
        error = error_from_msal(_aad("invalid_grant", code))
        assert isinstance(error, NeedsReconnect), code
        assert advice_for(error).status is AccountStatus.NEEDS_RECONNECT
