"""Runs an account's cycle and turns its outcome into the status the account list shows.

One account's failure never escapes this function: it becomes a status with words
(`errors.advice_for`), and the next account goes on.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import UTC, datetime

from m365sync.crm.gateway import CrmGateway
from m365sync.domain import Account, AccountStatus, AutoCreate, Lease, SyncRun
from m365sync.errors import CrmError, LeaseLost, M365SyncError, advice_for
from m365sync.graph.client import GraphClient
from m365sync.graph.send import MailSender
from m365sync.service.calendar_cycle import CalendarCycle
from m365sync.service.mail_cycle import CycleOptions, MailCycle, PageProgress
from m365sync.service.outbox_cycle import send_outgoing
from m365sync.service.push_cycle import keep_subscriptions, push_target
from m365sync.service.runtime import Runtime
from m365sync.sync.autocreate import AutoCreatePolicy
from m365sync.sync.mail import MailPolicy

log = logging.getLogger(__name__)

LEASE_GIVEN_UP = "stopped: this worker no longer holds the account's lease"


EXTERNAL_OWNER = (
    "Not synced: the owner is not an internal user of the CRM. Only internal users' mailboxes "
    "are synced; an administrator should give the account to an internal user or delete it."
)


def policy_for(runtime: Runtime, account: Account) -> MailPolicy:
    own = set(account.own_domains) | set(runtime.config.sync.own_domains)
    if not own and "@" in account.address:
        own.add(account.address.rpartition("@")[2])
    return MailPolicy.build(own, account.privacy, runtime.blocklist())


def sync_account_mail(
    runtime: Runtime,
    account: Account,
    *,
    lease: Lease | None = None,
    on_page: Callable[[PageProgress], None] | None = None,
) -> SyncRun:
    """One cycle for one account (outbox, mail, calendar); never raises for the account's own
    failures, the CRM being down included: those end in ``run.error`` and, where the CRM can
    still be written, in the account's status."""
    gateway = runtime.gateway
    started = datetime.now(UTC)
    if account.status is AccountStatus.PAUSED:
        run = SyncRun(account_id=account.id, started_at=started, finished_at=started)
        run.error = "paused"
        return run
    if not account.owner_internal:
        run = SyncRun(account_id=account.id, started_at=started, finished_at=started)
        run.error = EXTERNAL_OWNER
        _record(gateway, run, AccountStatus.FAILED, EXTERNAL_OWNER)
        return run
    cfg = runtime.config.sync
    options = CycleOptions(
        folders=cfg.mail_folders,
        window_days=cfg.initial_window_days,
        include_child_folders=cfg.include_child_folders,
        ignore_plus_tags=cfg.ignore_plus_tags,
    )
    run = SyncRun(account_id=account.id, started_at=started)
    count_requests = runtime.request_counter(account.id, run)
    try:
        if lease is not None:
            # Prove the lease is still ours before writing anything (LeaseLost otherwise).
            remaining = (lease.expires_at - datetime.now(UTC)).total_seconds()
            lease = gateway.renew_lease(lease, ttl_seconds=max(remaining, 1.0))
        gateway.set_account_status(account.id, AccountStatus.SYNCING, "Importing mail.")
        graph = runtime.graph_for(account)
        # Send first: the Sent Items copies then come in with this very cycle, linked once.
        run.outbox = dict(send_outgoing(gateway, MailSender(graph), account))
        reader = runtime.mail_reader_for(account, graph)
        policy = policy_for(runtime, account)
        auto_create = None
        if account.auto_create is not AutoCreate.NONE:
            auto_create = AutoCreatePolicy.from_mail_policy(
                policy,
                account.auto_create,
                owner_addresses=[account.address],
                sent_folder_ids=[reader.resolve_folder("sentitems").graph_id],
            )
        cycle = MailCycle(
            gateway,
            graph,
            reader,
            policy,
            options,
            auto_create=auto_create,
            lease=lease,
            on_page=on_page,
        )
        cycle.run(account, run)
        if cfg.calendar:
            CalendarCycle(
                gateway,
                graph,
                policy,
                back_days=cfg.calendar_days_back,
                ahead_days=cfg.calendar_days_ahead,
                page_size=cfg.page_size,
                lease=lease,
            ).run(account, run)
        run.push = _keep_push(runtime, graph, account, lease)
    except LeaseLost as stop:
        # Another worker holds the account now: the status is theirs to write. Keep only
        # this cycle's figures. A service stopping still holds the lease and says so, rather
        # than leaving "Importing mail." until the next cycle.
        log.info("account %s: lease given up, this worker stops here", account.id)
        run.error = LEASE_GIVEN_UP
        count_requests()
        try:
            if getattr(stop, "still_held", False):
                gateway.set_account_status(
                    account.id,
                    AccountStatus.ACTIVE,
                    "The service stopped during a cycle; the next one resumes from the last "
                    "stored page.",
                )
            gateway.record_sync_run(run)
        except CrmError as error:
            log.warning("account %s: the CRM could not record the run: %s", account.id, error)
        return run
    except Exception as error:  # one account's failure must never stop the others
        if not isinstance(error, M365SyncError):
            log.exception("account %s: unexpected failure", account.id)
        advice = advice_for(error)
        count_requests()
        log.warning("account %s: %s", account.id, advice.sentence)
        if advice.status is AccountStatus.NEEDS_RECONNECT:
            runtime.forget_tokens(account.id)
        run.error = advice.sentence
        _record(gateway, run, advice.status, advice.sentence, until=advice.until)
        return run
    count_requests()
    _record(gateway, run, AccountStatus.ACTIVE, run_summary(run), synced_at=run.finished_at)
    return run


def _keep_push(runtime: Runtime, graph: GraphClient, account: Account, lease: Lease | None) -> str:
    """Subscriptions last: the cycle's data is stored whatever push does."""
    gateway = runtime.gateway
    cfg = runtime.config.sync
    target = push_target(
        runtime.config,
        runtime.crm_settings(),
        calendar=cfg.calendar,
    )
    return keep_subscriptions(gateway, graph, account, target, lease=lease).sentence()


def _record(gateway: CrmGateway, run: SyncRun, status: AccountStatus, detail: str, **when) -> None:
    """The account's status and the run's figures; a CRM that cannot take them is logged
    (the cursors did not move either, so the next cycle redoes the work)."""
    try:
        gateway.set_account_status(run.account_id, status, detail, **when)
        gateway.record_sync_run(run)
    except CrmError as error:
        log.warning("account %s: the CRM could not record the outcome: %s", run.account_id, error)


def run_summary(run: SyncRun) -> str:
    """The account list's one line: what came in, and what was skipped, by reason."""
    text = f"Imported {run.imported} new, updated {run.updated}, removed {run.removed}"
    if run.outbox:
        o = run.outbox
        text += f"; sent {o.get('sent', 0)} mail" + (
            f", {o['failed']} failed" if o.get("failed") else ""
        )
    if run.calendar:
        c = run.calendar
        text += (
            f"; calendar {c.get('new', 0)} new, {c.get('updated', 0)} updated, "
            f"{c.get('removed', 0)} removed, {c.get('pushed', 0)} pushed"
        )
    if run.skipped:
        reasons = ", ".join(f"{n} {why}" for why, n in sorted(run.skipped.items()))
        text += f"; skipped {sum(run.skipped.values())} ({reasons})"
    if run.push:
        text += f"; {run.push}"
    return text + "."
