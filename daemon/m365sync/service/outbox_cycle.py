"""Sending what the CRM queued, exactly once (DESIGN.md, invariant 7).

For each queued mail: check it (`sync.outbox.problem_with`), create the draft, record its
immutable id, send it, record ``sent``. A mail found ``sending`` with a draft id is one a
stopped daemon left half-way: Graph is asked where that draft is before anything is sent
again, so a crash between Graph's 202 and the CRM's write never sends twice. One mail's
failure (a bad address, a refused token) fails that mail with words; the others go on.
"""

from __future__ import annotations

import logging
from collections import Counter

from m365sync.crm.gateway import CrmGateway
from m365sync.domain import Account, AccountStatus, OutboxState, OutgoingMail
from m365sync.errors import M365SyncError, Transient, advice_for
from m365sync.graph.send import MailSender
from m365sync.service.runtime import Runtime
from m365sync.sync.outbox import problem_with

log = logging.getLogger(__name__)


def send_outgoing(gateway: CrmGateway, sender: MailSender, account: Account) -> Counter[str]:
    """One pass over the account's outbox; returns how many were sent, failed, left pending."""
    outcome: Counter[str] = Counter()
    for mail in gateway.outgoing_mail(account.id):
        outcome[_send_one(gateway, sender, mail)] += 1
    return outcome


def _send_one(gateway: CrmGateway, sender: MailSender, mail: OutgoingMail) -> str:
    problem = problem_with(mail)
    if problem:
        gateway.update_outgoing(mail.id, OutboxState.FAILED, error=problem)
        return "failed"
    try:
        draft_id = mail.draft_id
        if draft_id:
            where = sender.status(draft_id)
            if where == "sent":
                log.info("outbox %s was sent before the daemon stopped; not sending again", mail.id)
                gateway.update_outgoing(mail.id, OutboxState.SENT)
                return "sent"
            if where == "gone":
                gateway.update_outgoing(
                    mail.id,
                    OutboxState.FAILED,
                    error="Its draft was deleted in Outlook before it was sent: write it again.",
                )
                return "failed"
        else:
            draft = (
                sender.create_reply(mail) if mail.reply_to_graph_id else sender.create_draft(mail)
            )
            draft_id = draft["id"]
            gateway.update_outgoing(
                mail.id,
                OutboxState.SENDING,
                draft_id=draft_id,
                internet_message_id=draft.get("internetMessageId"),
                conversation_id=draft.get("conversationId"),
            )
        sender.send(draft_id)
    except Transient as error:
        # The send may or may not have happened: the draft id decides next pass.
        log.warning("outbox %s: %s; the next pass checks its draft before retrying", mail.id, error)
        return "pending"
    except M365SyncError as error:
        gateway.update_outgoing(mail.id, OutboxState.FAILED, error=advice_for(error).sentence)
        return "failed"
    gateway.update_outgoing(mail.id, OutboxState.SENT)
    return "sent"


def send_all_outboxes(runtime: Runtime) -> Counter[str]:
    """The service's fast pass: every active account's queued mail, apart from the slower
    mail cycle (one account's failure never stops the others)."""
    total: Counter[str] = Counter()
    if not runtime.gateway.supports_outbox:
        return total
    for account in runtime.gateway.list_accounts():
        if account.status in (AccountStatus.PAUSED, AccountStatus.NEEDS_RECONNECT):
            continue
        try:
            total.update(
                send_outgoing(runtime.gateway, MailSender(runtime.graph_for(account)), account)
            )
        except M365SyncError as error:
            log.warning("outbox of account %s: %s", account.id, advice_for(error).sentence)
    return total
