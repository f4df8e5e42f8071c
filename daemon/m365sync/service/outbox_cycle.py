"""Sending what the CRM queued, at most once (DESIGN.md, invariant 7).

For each queued mail: check it (`sync.outbox.problem_with`), claim it (``queued`` ->
``sending`` with the time, in one conditional write in the CRM: `CrmGateway.claim_outgoing`),
send it (``sendMail`` or ``reply``, carrying the ``x-m365sync-outbox`` header), record ``sent``.
Only a won claim is sent: a mail another worker claimed first (two workers holding the same
stale list, one of which lost the account's lease) is left to that worker, counted pending.
A 429 is Graph refusing the request without carrying it out: the mail is queued again.
A mail found ``sending`` is one whose outcome is unknown (the daemon stopped, or the answer was
lost): its copy is looked for by its header, wherever in the mailbox the person may have filed
or deleted it since (`MailSender.find_sent`), and it is never sent again blindly; if no copy
shows up within a grace period, it fails with words telling the person to look for it before
retrying. One mail's failure (a bad address, a refused token) fails that mail with
words; the others go on.
A mail recorded ``sent`` whose copy is not linked yet comes back in the list for an hour
(`sync.outbox.LINK_WINDOW`): its copy is looked for in the whole mailbox the same way, and its
ids recorded when found; it is never sent again.
"""

from __future__ import annotations

import logging
from collections import Counter
from datetime import UTC, datetime, timedelta

from m365sync.crm.gateway import CrmGateway
from m365sync.domain import Account, AccountStatus, Lease, OutboxState, OutgoingMail
from m365sync.errors import (
    Conflict,
    CrmUnavailable,
    M365SyncError,
    Throttled,
    Transient,
    advice_for,
    send_refusal,
)
from m365sync.graph.send import MailSender
from m365sync.service.runtime import Runtime
from m365sync.sync.outbox import awaits_link, problem_with

log = logging.getLogger(__name__)

# How long a sent copy may take to appear before an unknown send is called failed.
CONFIRM_GRACE = timedelta(minutes=5)

# The daemon looked everywhere it can (the mailbox and Recoverable Items) and found no copy:
# the person looks too, where only they know to look, before sending it again.
UNCONFIRMED = (
    "The send could not be confirmed: look for it in your mailbox (Sent Items, wherever you"
    " filed it, and Recover Deleted Items), and retry only if it is not there."
)


def send_outgoing(
    gateway: CrmGateway, sender: MailSender, account: Account, *, lease: Lease | None = None
) -> Counter[str]:
    """One pass over the account's outbox; returns how many were sent, failed, left pending.

    With the cycle's ``lease``, each mail is sent only after proving the lease is still this
    cycle's (`LeaseLost` ends the pass): a cycle that lost its account to another worker (its
    renewals failed while the CRM was down) must not go on sending the list it read, which
    the new holder's cycle has read too and sends (found by the soak against Odoo, seed 6041:
    two mails sent twice). The lease check narrows that window; the claim in the CRM
    (`CrmGateway.claim_outgoing`) closes it: of two workers, one sends each mail."""
    outcome: Counter[str] = Counter()
    for mail in gateway.outgoing_mail(account.id):
        if awaits_link(mail):
            # Gone already: no check, claim or send, only the look for its copy; nor the
            # lease's proof, which guards sends (two workers linking write the same ids).
            if _link_later(gateway, sender, mail):
                outcome["linked"] += 1
            continue
        if lease is not None:
            remaining = (lease.expires_at - datetime.now(UTC)).total_seconds()
            lease = gateway.renew_lease(lease, ttl_seconds=max(remaining, 1.0))
        if account.owner and mail.requested_by and mail.requested_by != account.owner:
            # Defence in depth: the CRM's rules already keep users to their own mailboxes.
            gateway.update_outgoing(
                mail.id,
                OutboxState.FAILED,
                error=f"{mail.requested_by} may not send through {account.address}, which "
                f"belongs to {account.owner}.",
            )
            outcome["failed"] += 1
            continue
        outcome[_send_one(gateway, sender, mail)] += 1
    return outcome


def _send_one(gateway: CrmGateway, sender: MailSender, mail: OutgoingMail) -> str:
    problem = problem_with(mail)
    if problem:
        gateway.update_outgoing(mail.id, OutboxState.FAILED, error=problem)
        return "failed"
    started = datetime.now(UTC)
    # Outside the refusals below: a CRM that cannot answer the claim ends the pass with the
    # mail not sent (a claim written but unanswered is confirmed from its sent copy later).
    if mail.state is not OutboxState.SENDING and not gateway.claim_outgoing(mail.id, started):
        log.info("outbox %s: another worker took it since it was read; not sending", mail.id)
        return "pending"
    try:
        if mail.state is OutboxState.SENDING:
            return _confirm(gateway, sender, mail)
        try:
            sender.send(mail)
        except Throttled as error:
            # 429: Graph refused the request without carrying it out and asks for it again
            # after Retry-After (docs `concepts/throttling.md`): queued again, not failed.
            gateway.update_outgoing(mail.id, OutboxState.QUEUED)
            log.warning("outbox %s: %s; not sent, the next pass sends it", mail.id, error)
            return "pending"
        except Transient as error:
            log.warning(
                "outbox %s: %s; confirming from its sent copy before anything else", mail.id, error
            )
            return "pending"
        except M365SyncError as error:
            # Graph refused the request itself: nothing was sent, the person may retry.
            words = send_refusal(error, reply=bool(mail.reply_to_graph_id))
            gateway.update_outgoing(mail.id, OutboxState.FAILED, error=words)
            return "failed"
        gateway.update_outgoing(mail.id, OutboxState.SENT)
        _link_sent_copy(gateway, sender, mail, started)
        return "sent"
    except (Transient, Conflict, CrmUnavailable) as error:
        # Only Graph's refusal of the send itself fails a mail. A CRM that cannot record the
        # outcome leaves it ``sending``, confirmed from its sent copy by the next pass: failing
        # it with "Not sent" words after Graph took it invited a retry that sent it twice
        # (found by the soak against Odoo, seed 61480911: a Conflict on the write of
        # ``sent``, after which the write of ``failed`` went through).
        log.warning("outbox %s: %s; the next pass tries again", mail.id, error)
        return "pending"


def _confirm(gateway: CrmGateway, sender: MailSender, mail: OutgoingMail) -> str:
    """A send with an unknown outcome: sent if its copy is in the mailbox, never resent.

    Whatever stops the look (a revoked grant, a refused read) leaves the mail ``sending``:
    it says nothing about the send, which may well have gone. Failing it with the refusal's
    words invited the person to retry a mail that had gone out (found by the soak against
    Odoo, seed 1: the grant was revoked between the send and its confirmation, and the
    retried mail went out twice)."""
    started = mail.send_started_at or datetime.now(UTC)
    try:
        found = sender.find_sent(mail, started)
    except M365SyncError as error:
        if isinstance(error, Transient):
            raise
        log.warning(
            "outbox %s: its send is confirmed from its sent copy once Outlook can be read (%s)",
            mail.id,
            advice_for(error).sentence,
        )
        return "pending"
    if found is not None:
        log.info("outbox %s had been sent before the daemon lost track; not sending again", mail.id)
        _record_copy(gateway, mail, found)
        return "sent"
    if datetime.now(UTC) - started < CONFIRM_GRACE:
        return "pending"  # Outlook may still be saving the copy
    gateway.update_outgoing(mail.id, OutboxState.FAILED, error=UNCONFIRMED)
    return "failed"


def _link_sent_copy(
    gateway: CrmGateway, sender: MailSender, mail: OutgoingMail, started: datetime
) -> bool:
    """Record the sent copy's ids when Outlook already has it; True once recorded. Otherwise
    the next outbox passes look again (`_link_later`), and the mail sync links a copy it
    reads in a synced folder by the same header."""
    try:
        found = sender.find_sent(mail, started)
    except M365SyncError as error:
        log.info("outbox %s: sent; its sent copy is linked later (%s)", mail.id, error)
        return False
    if found is None:
        return False
    _record_copy(gateway, mail, found)
    return True


def _record_copy(gateway: CrmGateway, mail: OutgoingMail, found: dict) -> None:
    """The mail is sent, and this copy (wherever the person filed it) is its record's."""
    gateway.update_outgoing(
        mail.id,
        OutboxState.SENT,
        graph_id=found.get("id"),
        internet_message_id=found.get("internetMessageId"),
        conversation_id=found.get("conversationId"),
    )


def _link_later(gateway: CrmGateway, sender: MailSender, mail: OutgoingMail) -> bool:
    """A sent mail whose copy the look right after the send did not find: looked for again,
    wherever the person filed it since, and its ids recorded; True once linked.

    Leaving it to the mail sync lost the link when the person filed or deleted the copy
    before the next mail sync, which reads only the synced folders (found by the soak against
    Odoo, seed 893588505: the grant was revoked right after the send, the copy went to
    Archive). Only ids are written, and the state stays ``sent``: no message is stored here
    (the mail sync stores the copy once, if it is in a synced folder), and the mail never
    looks queued again. A look or a write that fails is tried again by the next pass, within
    `sync.outbox.LINK_WINDOW`."""
    started = mail.send_started_at or datetime.now(UTC)
    try:
        return _link_sent_copy(gateway, sender, mail, started)
    except M365SyncError as error:
        log.info("outbox %s: its sent copy is linked by a later pass (%s)", mail.id, error)
        return False


def send_all_outboxes(runtime: Runtime) -> Counter[str]:
    """The service's fast pass: every active account's queued mail, apart from the slower
    mail cycle (one account's failure never stops the others)."""
    total: Counter[str] = Counter()
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
