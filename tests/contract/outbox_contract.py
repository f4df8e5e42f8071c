"""The outbox half of the gateway contract: the claim that makes each queued mail go out once.

`CrmGateway.claim_outgoing` is the one gate before a send: queued -> ``sending`` in one
conditional write, True only for the claim that found the mail still ``queued``. Two workers
with the same stale outbox list (one lost the account's lease while the CRM was down, the
other took it over: the soak against Odoo, seed 6041) both claim, one wins, one sends.

An adapter's test module subclasses `OutboxContract` and provides the ``gateway`` and
``other_gateway`` fixtures (a second connection to the same store, as a second worker has)
and ``crm_queue`` (a person's Compose Email in the CRM itself).
"""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

import pytest

from m365sync.crm.gateway import CrmGateway
from m365sync.domain import Account, OutboxState
from m365sync.sync.outbox import LINK_WINDOW
from tests.contract.gateway_contract import spec

STARTED = datetime.now(UTC).replace(microsecond=0)  # the CRM keeps whole seconds


class OutboxContract:
    def account_owner(self) -> str:
        """The login of the person who queues (the account's owner: only they may)."""
        return "admin"

    def crm_queue(self, gateway: CrmGateway, account: Account, subject: str) -> int:
        raise NotImplementedError

    @pytest.fixture
    def account(self, gateway: CrmGateway) -> Account:
        return gateway.upsert_account(spec(owner=self.account_owner()))

    @staticmethod
    def pending(gateway: CrmGateway, account: Account, mail_id: int):
        """The mail as the sender reads it (queued or sending), or None once it is neither."""
        return next((m for m in gateway.outgoing_mail(account.id) if m.id == mail_id), None)

    def test_a_queued_mail_is_claimed_once(self, gateway, account):
        mail_id = self.crm_queue(gateway, account, "Our offer")
        assert self.pending(gateway, account, mail_id).state is OutboxState.QUEUED
        assert gateway.claim_outgoing(mail_id, STARTED) is True
        claimed = self.pending(gateway, account, mail_id)
        assert (claimed.state, claimed.send_started_at, claimed.attempts) == (
            OutboxState.SENDING,
            STARTED,
            1,
        )
        # The second worker, holding the same stale list: refused, and nothing changes.
        assert gateway.claim_outgoing(mail_id, STARTED + timedelta(seconds=30)) is False
        again = self.pending(gateway, account, mail_id)
        assert (again.state, again.send_started_at, again.attempts) == (
            OutboxState.SENDING,
            STARTED,
            1,
        )

    @pytest.mark.parametrize("state", [OutboxState.SENDING, OutboxState.SENT, OutboxState.FAILED])
    def test_a_mail_past_queued_is_not_claimed(self, gateway, account, state):
        mail_id = self.crm_queue(gateway, account, f"Already {state.value}")
        gateway.update_outgoing(
            mail_id,
            state,
            send_started_at=STARTED,
            error="no" if state is OutboxState.FAILED else None,
        )
        assert gateway.claim_outgoing(mail_id, STARTED + timedelta(minutes=1)) is False
        left = self.pending(gateway, account, mail_id)
        if state is OutboxState.SENDING:
            assert (left.state, left.send_started_at) == (OutboxState.SENDING, STARTED)
        elif state is OutboxState.SENT:
            # Just sent, its copy not linked: back in the list only for the look for its copy.
            assert (left.state, left.send_started_at) == (OutboxState.SENT, STARTED)
        else:
            assert left is None  # failed: not back in the list to send

    def test_a_mail_queued_again_after_a_refusal_is_claimed_again(self, gateway, account):
        """A throttled send (429: Graph carried nothing out) goes back to queued: the next
        pass claims it again, as a second attempt."""
        mail_id = self.crm_queue(gateway, account, "Throttled")
        assert gateway.claim_outgoing(mail_id, STARTED)
        gateway.update_outgoing(mail_id, OutboxState.QUEUED)
        later = STARTED + timedelta(seconds=5)
        assert gateway.claim_outgoing(mail_id, later) is True
        claimed = self.pending(gateway, account, mail_id)
        assert (claimed.state, claimed.send_started_at, claimed.attempts) == (
            OutboxState.SENDING,
            later,
            2,
        )

    def test_recent_sent_mail_not_linked_yet_comes_after_the_mail_to_send(self, gateway, account):
        """A sent mail whose copy the look right after the send missed (a grant revoked just
        then: the soak against Odoo, seed 893588505) comes back for an hour after its send,
        still ``sent``, after the mail to send; an old one or a linked one does not."""
        now = datetime.now(UTC).replace(microsecond=0)

        def sent(subject: str, started: datetime, **ids: str) -> int:
            mail_id = self.crm_queue(gateway, account, subject)
            assert gateway.claim_outgoing(mail_id, started)
            gateway.update_outgoing(mail_id, OutboxState.SENT, **ids)
            return mail_id

        unlinked = sent("Copy not found yet", now - timedelta(minutes=10))
        half = sent("Copy half linked", now - timedelta(minutes=20), graph_id="g-half")
        sent("Sent long ago", now - LINK_WINDOW - timedelta(minutes=5))
        sent("Linked", now, graph_id="g-1", internet_message_id="<1@fabrikam.example>")
        queued = self.crm_queue(gateway, account, "To send")

        listed = gateway.outgoing_mail(account.id)
        assert [(m.id, m.state) for m in listed] == [
            (queued, OutboxState.QUEUED),
            (unlinked, OutboxState.SENT),
            (half, OutboxState.SENT),
        ]
        assert listed[1].send_started_at == now - timedelta(minutes=10)
        assert listed[2].graph_id == "g-half" and listed[2].internet_message_id is None
        assert [m.id for m in gateway.outgoing_mail(account.id, limit=1)] == [queued]

        gateway.update_outgoing(
            unlinked,
            OutboxState.SENT,
            graph_id="g-2",
            internet_message_id="<2@fabrikam.example>",
            conversation_id="c-2",
        )
        assert [m.id for m in gateway.outgoing_mail(account.id)] == [queued, half]

    def test_a_mail_that_is_gone_is_not_claimed(self, gateway):
        assert gateway.claim_outgoing(987654321, STARTED) is False

    def test_two_workers_claiming_at_once_win_one_each_mail(self, gateway, other_gateway, account):
        mail_ids = [self.crm_queue(gateway, account, f"Race {n}") for n in range(4)]
        wins: dict[int, list[bool]] = {mail_id: [] for mail_id in mail_ids}
        barrier = threading.Barrier(2)
        errors: list[BaseException] = []

        def worker(store: CrmGateway) -> None:
            try:
                for mail_id in mail_ids:
                    barrier.wait(timeout=30)
                    wins[mail_id].append(store.claim_outgoing(mail_id, STARTED))
            except BaseException as error:  # reported below
                errors.append(error)
                barrier.abort()

        threads = [threading.Thread(target=worker, args=(g,)) for g in (gateway, other_gateway)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=120)
        assert not errors, errors
        assert {mail_id: sorted(won) for mail_id, won in wins.items()} == {
            mail_id: [False, True] for mail_id in mail_ids
        }
        assert all(self.pending(gateway, account, m).attempts == 1 for m in mail_ids)
