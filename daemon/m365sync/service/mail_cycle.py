"""One mail cycle for one account: every configured folder, page by page, cursor with the data.

Per Graph page the CRM sees a bounded number of calls: partners by address, companies by
domain, parent companies, then one `store_mail_page` that writes the page and its cursor in one
transaction. A crash anywhere resumes from the last stored link: nothing lost, and the replayed
page is an idempotent upsert.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from m365sync.crm.gateway import CrmGateway
from m365sync.domain import (
    Account,
    Cursor,
    CursorKind,
    DeltaPage,
    Lease,
    MailFolder,
    PageResult,
    PageWrite,
    SyncRun,
)
from m365sync.errors import SyncStateGone
from m365sync.graph.mail import PARTIAL_UPDATE, MailDeltaReader
from m365sync.sync.mail import (
    MailPolicy,
    PartnerLookups,
    page_addresses,
    page_domains,
    plan_page,
)

log = logging.getLogger(__name__)

SKIP_MALFORMED = "malformed item"


@dataclass(frozen=True, slots=True)
class PageProgress:
    """What a progress display needs after each stored page."""

    account_id: int
    folder: MailFolder
    items: int
    stored: int
    done: bool


class MailCycle:
    """Imports one account's folders into the CRM; see the module docstring for the rules."""

    def __init__(
        self,
        gateway: CrmGateway,
        reader: MailDeltaReader,
        policy: MailPolicy,
        *,
        folders: tuple[str, ...],
        window_days: int,
        include_child_folders: bool = False,
        lease: Lease | None = None,
        on_page: Callable[[PageProgress], None] | None = None,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.gateway = gateway
        self.reader = reader
        self.policy = policy
        self.folders = folders
        self.window_days = window_days
        self.include_child_folders = include_child_folders
        self.lease = lease
        self.on_page = on_page or (lambda _progress: None)
        self.now = now

    def run(self, account: Account, run: SyncRun | None = None) -> SyncRun:
        """Sync every folder; ``run`` collects the figures as pages are stored, so a cycle
        that fails half-way still reports what it did."""
        run = run or SyncRun(account_id=account.id, started_at=self.now())
        skipped: Counter[str] = Counter(run.skipped)
        try:
            for folder in self._resolve_folders():
                self._sync_folder(account, folder, run, skipped)
        finally:
            run.skipped = dict(skipped)
            run.finished_at = self.now()
        return run

    def _resolve_folders(self) -> list[MailFolder]:
        folders = [self.reader.resolve_folder(ref) for ref in self.folders]
        if self.include_child_folders:
            folders = self.reader.with_child_folders(folders)
        seen: dict[str, MailFolder] = {}
        for folder in folders:
            seen.setdefault(folder.graph_id, folder)
        return list(seen.values())

    def _sync_folder(
        self, account: Account, folder: MailFolder, run: SyncRun, skipped: Counter[str]
    ) -> None:
        try:
            self._follow(account, folder, run, skipped)
        except SyncStateGone as gone:
            # Invariant 2: a 410 restarts the folder from scratch; upserts make it idempotent.
            log.warning(
                "delta state of folder %s expired (%s): restarting it from scratch",
                folder.display_name,
                gone.code,
            )
            self.gateway.reset_folder(account.id, folder.graph_id)
            self._follow(account, folder, run, skipped)

    def _follow(
        self, account: Account, folder: MailFolder, run: SyncRun, skipped: Counter[str]
    ) -> None:
        cursor = self.gateway.get_cursor(account.id, folder.graph_id)
        since = None
        if cursor is None and self.window_days:
            since = self.now() - timedelta(days=self.window_days)
        pages = self.reader.pages(
            folder.graph_id, resume_link=cursor.link if cursor else None, received_since=since
        )
        for page in pages:
            stored = self._store_page(account, folder, page, skipped)
            run.pages += 1
            run.imported += stored.created
            run.updated += stored.updated
            run.removed += stored.removed
            self.on_page(
                PageProgress(
                    account.id,
                    folder,
                    len(page.messages) + len(page.removed_ids) + len(page.rejected),
                    stored.created + stored.updated,
                    page.delta_link is not None,
                )
            )

    def _store_page(
        self, account: Account, folder: MailFolder, page: DeltaPage, skipped: Counter[str]
    ) -> PageResult:
        lookups = self._lookups(page)
        plan = plan_page(page.messages, lookups, self.policy)
        page_skips = Counter(plan.skipped)
        for item in page.rejected:
            if item.reason.startswith(PARTIAL_UPDATE):
                # A flag change (isRead...) arrives as id + changed fields only: nothing we
                # store changed, so it is neither imported nor an error.
                log.debug("folder %s: %s", folder.display_name, item.reason)
                continue
            log.warning(
                "skipped a malformed item in folder %s: %s", folder.display_name, item.reason
            )
            page_skips[SKIP_MALFORMED] += 1
        skipped.update(page_skips)
        if page.delta_link:
            cursor = Cursor(page.delta_link, CursorKind.DELTA)
        elif page.next_link:
            cursor = Cursor(page.next_link, CursorKind.NEXT)
        else:  # parse_delta_page refuses such pages; keep the invariant explicit anyway
            raise AssertionError("a delta page without a link cannot be stored")
        write = PageWrite(
            account_id=account.id,
            folder_id=folder.graph_id,
            upserts=plan.upserts,
            removed_ids=page.removed_ids,
            cursor=cursor,
            skipped=dict(page_skips),
        )
        return self.gateway.store_mail_page(write, lease=self.lease)

    def _lookups(self, page: DeltaPage) -> PartnerLookups:
        addresses = page_addresses(page.messages)
        if not addresses:
            return PartnerLookups()
        by_email = self.gateway.find_partners_by_emails(addresses)
        companies = self.gateway.find_companies_by_domains(page_domains(addresses, self.policy))
        return PartnerLookups(by_email, companies)
