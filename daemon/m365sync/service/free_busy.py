"""Free/busy for the CRM's Schedule Meeting form, asked of Outlook through the account.

The form records a question (the account, the attendees' addresses, a day); the service's
5-second job (`answer_free_busy`) answers each pending one with ``getSchedule``
(`graph.schedule.free_busy`) through that account's mailbox. Graph's refusal for one address
is that address's answer (shown as unknown, never as free); a request that could not be asked
at all is answered with the reason in words. An outage of Microsoft leaves the question
pending for the next pass.
"""

from __future__ import annotations

import logging

from m365sync.crm.gateway import FreeBusyRequest
from m365sync.domain import AccountStatus
from m365sync.errors import (
    CrmError,
    M365SyncError,
    Throttled,
    Transient,
    UnknownAccount,
    advice_for,
)
from m365sync.graph.schedule import free_busy
from m365sync.service.runtime import Runtime

log = logging.getLogger(__name__)


def answer_free_busy(runtime: Runtime) -> int:
    """Answer every pending free/busy request; returns how many were answered. Never raises
    (it runs on the service's schedule): a CRM that cannot be reached is logged."""
    gateway = runtime.gateway
    answered = 0
    try:
        pending = gateway.pending_free_busy()
    except CrmError as error:
        log.warning("free/busy requests could not be read: %s", error)
        return 0
    for request in pending:
        try:
            if not gateway.claim_free_busy(request.id, runtime.holder):
                continue  # another replica answers it
            if _answer(runtime, request):
                answered += 1
        except CrmError as error:
            log.warning("free/busy request %s could not be answered: %s", request.id, error)
    return answered


def _answer(runtime: Runtime, request: FreeBusyRequest) -> bool:
    gateway = runtime.gateway
    try:
        account = gateway.get_account(request.account_id)
        if account.status is AccountStatus.NEEDS_RECONNECT:
            gateway.store_free_busy(
                request.id,
                [],
                error=f"{account.address} must be connected again before Outlook can be asked.",
            )
            return True
        if account.status is AccountStatus.PAUSED:
            # Paused means the daemon leaves the mailbox alone (its outbox waits too); the
            # form asks only through a usable account, so this is a question asked just
            # before the pause.
            gateway.store_free_busy(
                request.id,
                [],
                error=f"{account.address} is paused: resume it before Outlook can be asked.",
            )
            return True
        results = free_busy(
            runtime.graph_for(account), list(request.addresses), request.start, request.end
        )
    except (Transient, Throttled) as error:
        log.info("free/busy request %s waits: %s", request.id, error)
        return False
    except UnknownAccount:
        gateway.store_free_busy(request.id, [], error="The Microsoft 365 account is gone.")
        return True
    except CrmError:
        raise
    except M365SyncError as error:
        words = advice_for(error).sentence
        log.warning("free/busy request %s failed: %s", request.id, words)
        gateway.store_free_busy(request.id, [], error=words)
        return True
    gateway.store_free_busy(request.id, results)
    return True
