"""Runs an account's cycle and turns its outcome into the status the account list shows.

One account's failure never escapes this function: it becomes a status with words
(`errors.advice_for`), and the next account goes on.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterable, Iterator
from datetime import UTC, datetime

from m365sync.crm.gateway import CrmGateway
from m365sync.domain import Account, AccountStatus, AutoCreate, Lease, SyncRun
from m365sync.errors import (
    BadClientCredentials,
    CrmError,
    GraphError,
    IdentityUnavailable,
    LeaseLost,
    M365SyncError,
    MailboxUnavailable,
    NeedsReconnect,
    SealingError,
    Throttled,
    advice_for,
)
from m365sync.graph.client import GraphClient
from m365sync.graph.send import MailSender
from m365sync.service.calendar_cycle import CalendarCycle
from m365sync.service.mail_cycle import CycleOptions, MailCycle, PageProgress
from m365sync.service.mail_folders import settings_for
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
        folders=settings_for(
            account, cfg.folder_choice(), cfg.mail_folders, cfg.include_child_folders
        ),
        window_days=cfg.initial_window_days,
        ignore_plus_tags=cfg.ignore_plus_tags,
    )
    run = SyncRun(account_id=account.id, started_at=started)
    parts = _Parts(run)
    count_requests = runtime.request_counter(account.id, run)
    try:
        if lease is not None:
            # Prove the lease is still ours before writing anything (LeaseLost otherwise).
            remaining = (lease.expires_at - datetime.now(UTC)).total_seconds()
            lease = gateway.renew_lease(lease, ttl_seconds=max(remaining, 1.0))
        gateway.set_account_status(account.id, AccountStatus.SYNCING, "Importing mail.")
        graph = runtime.graph_for(account)
        policy = policy_for(runtime, account)
        # Send first: the Sent Items copies then come in with this very cycle, linked once.
        with parts.part("outbox"):
            run.outbox = dict(send_outgoing(gateway, MailSender(graph), account, lease=lease))
        with parts.part("mail"):
            reader = runtime.mail_reader_for(account, graph)
            auto_create = None
            if account.auto_create is not AutoCreate.NONE:
                auto_create = AutoCreatePolicy.from_mail_policy(
                    policy,
                    account.auto_create,
                    owner_addresses=[account.address],
                )  # the cycle adds Sent Items' id once it has resolved the folders
            MailCycle(
                gateway,
                graph,
                reader,
                policy,
                options,
                auto_create=auto_create,
                lease=lease,
                on_page=on_page,
            ).run(account, run)
            parts.mail_synced_at = run.finished_at
        if run.folder_problems:
            # The other folders synced: the mail part needs attention for those folders only.
            parts.needs_attention("mail", " ".join(run.folder_problems.values()))
        if cfg.calendar:
            with parts.part("calendar"):
                CalendarCycle(
                    gateway,
                    graph,
                    policy,
                    back_days=cfg.calendar_days_back,
                    ahead_days=cfg.calendar_days_ahead,
                    page_size=cfg.page_size,
                    lease=lease,
                ).run(account, run)
        with parts.part("push"):
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
        log.warning("account %s: %s", account.id, advice.sentence)
        if advice.status is AccountStatus.NEEDS_RECONNECT:
            runtime.forget_tokens(account.id)
        run.error = advice.sentence
        run.finished_at = run.finished_at or datetime.now(UTC)
        count_requests()
        # What finished before the whole account stopped still counts: mail stored before a
        # throttled calendar moves the mail's last sync on, and the line says so.
        _record(
            gateway,
            run,
            advice.status,
            advice.sentence + parts.done_clause(),
            until=advice.until,
            synced_at=parts.mail_synced_at,
        )
        return run
    run.finished_at = run.finished_at or datetime.now(UTC)
    count_requests()
    if not parts.failed():
        _record(gateway, run, AccountStatus.ACTIVE, run_summary(run), synced_at=run.finished_at)
        return run
    run.error = parts.failure_sentence()
    _record(gateway, run, parts.status(), parts.status_line(), synced_at=parts.mail_synced_at)
    return run


PART_NAMES = {
    "outbox": "Outbox",
    "mail": "Mail",
    "calendar": "Calendar",
    "push": "Push notifications",
}
"""The parts of a cycle, in the order it runs them, as the status line names them."""


ACCOUNT_WIDE = (
    LeaseLost,
    CrmError,
    NeedsReconnect,
    BadClientCredentials,
    SealingError,
    IdentityUnavailable,
    Throttled,
    MailboxUnavailable,
)
"""Failures that are the whole account's, not one part's: the sign-in, the CRM, the lease,
Microsoft throttling the mailbox, a mailbox Graph cannot read. They stop the cycle; anything
else (a 404 on the calendar, a permission only the calendar lacks, a Graph 5xx on one
resource) fails its part only, and the next parts still run."""


class _Parts:
    """Each part's outcome in ``run.parts``, and the account's status line made of them."""

    def __init__(self, run: SyncRun) -> None:
        self.run = run
        self.statuses: dict[str, AccountStatus] = {}
        self.mail_synced_at: datetime | None = None
        # Parts that did their work but need attention for a piece of it (a mail folder).
        self.partial: set[str] = set()

    @contextlib.contextmanager
    def part(self, name: str) -> Iterator[None]:
        try:
            yield
        except ACCOUNT_WIDE:
            raise
        except GraphError as error:
            if error.code in ("tls_verification_failed", "connection_failed"):
                raise  # the connection itself failed: every other part would fail the same way
            self._fail(name, error)
        except Exception as error:  # one part's failure must not stop the others
            self._fail(name, error)
        else:
            self.run.parts[name] = None

    def _fail(self, name: str, error: Exception) -> None:
        if not isinstance(error, M365SyncError):
            log.exception("account %s: unexpected failure in %s", self.run.account_id, name)
        advice = advice_for(error)
        log.warning("account %s: %s failed: %s", self.run.account_id, name, advice.sentence)
        self.run.parts[name] = advice.sentence
        self.statuses[name] = advice.status

    def needs_attention(self, name: str, sentence: str) -> None:
        """The part ran, but part of it (a folder) needs the owner: say so, keep its figures."""
        self.run.parts[name] = sentence
        self.statuses[name] = AccountStatus.FAILED
        self.partial.add(name)

    def failed(self) -> dict[str, str]:
        return {part: why for part, why in self.run.parts.items() if why is not None}

    def status(self) -> AccountStatus:
        """Insufficient permissions when a part lacks them (the owner has something to do),
        else failed; never "active" while a part needs attention."""
        if AccountStatus.INSUFFICIENT_PERMISSIONS in self.statuses.values():
            return AccountStatus.INSUFFICIENT_PERMISSIONS
        return AccountStatus.FAILED

    def failure_sentence(self) -> str:
        """The run's error: each failed part by name, with what to do."""
        return " ".join(
            f"{PART_NAMES[part]} {'needs attention' if part in self.partial else 'failed'}: {why}"
            for part, why in self.failed().items()
        )

    def done_clause(self) -> str:
        """What the parts that succeeded before a stop did (" Mail synced: Imported ...")."""
        done = [part for part, why in self.run.parts.items() if why is None or part in self.partial]
        if not done:
            return ""
        names = _join([PART_NAMES[part].lower() for part in done])
        return f" {names[:1].upper()}{names[1:]} synced: {run_summary(self.run, done)}"

    def status_line(self) -> str:
        """Which part needs attention and what to do, then what did sync."""
        failed = self.failed()
        text = " ".join(
            f"{PART_NAMES[part]} needs attention: {why}" for part, why in failed.items()
        )
        return text + self.done_clause()


def _join(names: list[str]) -> str:
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]


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


def run_summary(run: SyncRun, parts: Iterable[str] | None = None) -> str:
    """The account list's one line: what came in, and what was skipped, by reason; with
    ``parts``, the figures of those parts only (the ones that succeeded)."""
    chosen = set(PART_NAMES if parts is None else parts)
    pieces = []
    if "mail" in chosen:
        pieces.append(f"Imported {run.imported} new, updated {run.updated}, removed {run.removed}")
    if run.outbox and "outbox" in chosen:
        o = run.outbox
        pieces.append(
            f"sent {o.get('sent', 0)} mail" + (f", {o['failed']} failed" if o.get("failed") else "")
        )
    if run.calendar and "calendar" in chosen:
        c = run.calendar
        pieces.append(
            f"calendar {c.get('new', 0)} new, {c.get('updated', 0)} updated, "
            f"{c.get('removed', 0)} removed, {c.get('pushed', 0)} pushed"
        )
    if run.skipped and chosen & {"mail", "calendar"}:
        reasons = ", ".join(f"{n} {why}" for why, n in sorted(run.skipped.items()))
        pieces.append(f"skipped {sum(run.skipped.values())} ({reasons})")
    if run.push and "push" in chosen:
        pieces.append(run.push)
    text = "; ".join(pieces) or "nothing to report"
    return f"{text[:1].upper()}{text[1:]}."
