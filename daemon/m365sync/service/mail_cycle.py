"""One mail cycle for one account: every configured folder, page by page, cursor with the data.

Per Graph page the CRM sees a bounded number of calls: partners by address, companies by
domain, at most one `create_partners` (auto-creation), then one `store_mail_page` that writes
the page and its cursor in one transaction. Graph sees the delta page, plus JSON batches (20
items each) for attachment metadata and for checking where removed items went. A crash
anywhere resumes from the last stored link: nothing lost, and the replayed page is an
idempotent upsert.

Overlap (issue #16): the account's folders sync side by side (service/lanes.py, up to four at
a time); within a folder the next delta page is fetched while a page is planned and stored,
and the folder's attachment index (initial rounds) is read beside its first pages
(service/prefetch.py). A folder's pages are still stored one after another in Graph's order,
each with its cursor, so a folder's cursor is stored only after that page and every page
before it; what one folder does never moves another's cursor. Every request goes through the
account's one Graph client and its cap of concurrent requests per mailbox. Per-folder state
(cursor, round, attachment index, skips) lives in the folder's own call chain; what folders
share (the run's figures, the progress callback) is updated under one lock.

The CRM sees one folder's page at a time: the partner lookups with any auto-creation, and the
page write, each run under the cycle's CRM lock. Two pages planned from the same lookups
would both create a new sender's contact; two page writes in one Odoo account at once would
both create a thread for a conversation both folders hold (each transaction's snapshot
predates the other's commit). Graph's side (delta pages, attachment metadata, where removed
mail went) runs outside it, so folders still overlap where the time goes: waiting for Graph.
"""

from __future__ import annotations

import logging
import threading
from collections import Counter
from collections.abc import Callable, Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import closing
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from urllib.parse import quote

from m365sync.crm.gateway import CrmGateway
from m365sync.domain import (
    Account,
    Attachment,
    Cursor,
    CursorKind,
    DeltaPage,
    Lease,
    MailFolder,
    OutboxState,
    PageResult,
    PageWrite,
    RoundMark,
    StoredMessage,
    SyncRun,
)
from m365sync.errors import GraphError, MalformedResponse, NotFound, SyncStateGone, Transient
from m365sync.graph.attachments import fetch_attachment_metadata, folder_attachment_index
from m365sync.graph.batch import batch_get
from m365sync.graph.client import GraphClient
from m365sync.graph.mail import PARTIAL_UPDATE, MailDeltaReader
from m365sync.graph.send import OUTBOX_HEADER, OUTBOX_PREFIX
from m365sync.service.lanes import run_lanes
from m365sync.service.mail_folders import FolderSettings, plan_folders
from m365sync.service.prefetch import ahead
from m365sync.sync.autocreate import AutoCreatePolicy, merge_created, partners_to_create
from m365sync.sync.folders import deleted_folder_ids, not_found_sentence
from m365sync.sync.mail import (
    MailPolicy,
    PartnerLookups,
    page_addresses,
    page_domains,
    plan_page,
)
from m365sync.sync.rounds import (
    Reconciliation,
    round_mark,
    settle_unlisted,
    still_open,
    to_check,
)
from m365sync.sync.senders import strip_plus_tag

log = logging.getLogger(__name__)

SKIP_MALFORMED = "malformed item"
IMMUTABLE_IDS = {"Prefer": 'IdType="ImmutableId"'}


@dataclass(frozen=True, slots=True)
class PageProgress:
    """What a progress display needs after each stored page."""

    account_id: int
    folder: MailFolder
    items: int
    stored: int
    done: bool


@dataclass(frozen=True, slots=True)
class CycleOptions:
    """The configuration a cycle needs, apart from the account's own policies."""

    folders: FolderSettings
    window_days: int
    ignore_plus_tags: bool = False


class MailCycle:
    """Imports one account's folders into the CRM; see the module docstring for the rules."""

    def __init__(
        self,
        gateway: CrmGateway,
        graph: GraphClient,
        reader: MailDeltaReader,
        policy: MailPolicy,
        options: CycleOptions,
        *,
        auto_create: AutoCreatePolicy | None = None,
        lease: Lease | None = None,
        on_page: Callable[[PageProgress], None] | None = None,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.gateway = gateway
        self.graph = graph
        self.reader = reader
        self.policy = policy
        self.options = options
        self.auto_create = auto_create
        self.lease = lease
        self.on_page = on_page or (lambda _progress: None)
        self.now = now
        self._deleted: frozenset[str] | None = None  # folders of deleted mail (_plan)
        # Folders run side by side: the run's figures and the progress callback are shared,
        # and the CRM takes one folder's lookups or page write at a time (module doc).
        self._shared = threading.Lock()
        self._crm = threading.Lock()

    def run(self, account: Account, run: SyncRun | None = None) -> SyncRun:
        """Sync every folder; ``run`` collects the figures as pages are stored, so a cycle
        that fails half-way still reports what it did."""
        run = run or SyncRun(account_id=account.id, started_at=self.now())
        skipped: Counter[str] = Counter(run.skipped)

        def one_folder(folder: MailFolder, stop: threading.Event) -> None:
            try:
                self._sync_folder(account, folder, run, skipped, stop)
            except NotFound as gone:
                # The folder went between the listing and its delta (deleted in Outlook):
                # that folder's problem, never the account's; the others still sync.
                log.warning("mail folder %s is gone: %s", folder.label, gone)
                with self._shared:
                    run.folder_problems[folder.label] = not_found_sentence(folder.label)

        try:
            run_lanes(self._plan(account, run), one_folder)
        finally:
            run.skipped = dict(skipped)
            run.finished_at = self.now()
        return run

    def _plan(self, account: Account, run: SyncRun) -> list[MailFolder]:
        """The folders of this cycle (`service.mail_folders`); the tree goes to the CRM, so
        the account's folder list shows what Outlook has now."""
        plan = plan_folders(self.graph, self.reader, self.options.folders)
        self._deleted = deleted_folder_ids(plan.tree, plan.well_known)
        sent = plan.well_known_id("sentitems")
        if self.auto_create is not None and sent:
            self.auto_create = replace(
                self.auto_create, sent_folder_ids=self.auto_create.sent_folder_ids | {sent}
            )
        self.gateway.store_mail_folders(
            account.id, plan.tree, frozenset(f.graph_id for f in plan.folders)
        )
        for label, sentence in plan.problems.items():
            log.warning("account %s: %s", account.id, sentence)
            run.folder_problems[label] = sentence
        return plan.folders

    def _sync_folder(
        self,
        account: Account,
        folder: MailFolder,
        run: SyncRun,
        skipped: Counter[str],
        stop: threading.Event,
    ) -> None:
        folder_skips: Counter[str] = Counter()
        try:
            self._follow(account, folder, run, folder_skips, stop)
        except SyncStateGone as gone:
            # Invariant 2: a 410 restarts the folder from scratch; upserts make it idempotent,
            # and the fresh (full) round reconciles what it no longer lists when it completes.
            log.warning(
                "delta state of folder %s expired (%s): restarting it from scratch",
                folder.display_name,
                gone.code,
            )
            self.gateway.reset_folder(account.id, folder.graph_id)
            folder_skips.clear()  # the fresh round counts its own skips: one round's, not two
            self._follow(account, folder, run, folder_skips, stop)
        finally:
            with self._shared:
                skipped.update(folder_skips)

    def _follow(
        self,
        account: Account,
        folder: MailFolder,
        run: SyncRun,
        skipped: Counter[str],
        stop: threading.Event,
    ) -> None:
        cursor = self.gateway.get_cursor(account.id, folder.graph_id)
        since = None
        if cursor is None and self.options.window_days:
            since = self.now() - timedelta(days=self.options.window_days)
        pages = self.reader.pages(
            folder.graph_id, resume_link=cursor.link if cursor else None, received_since=since
        )
        # Two workers: the next delta page, and (initial round) the attachment index, each
        # in flight while this thread plans and stores a page (service/prefetch.py).
        with ThreadPoolExecutor(max_workers=2, thread_name_prefix="mail-ahead") as pool:
            index = None
            if cursor is None or cursor.kind is CursorKind.NEXT:
                index = pool.submit(self._read_index, folder)
            folder_run = _FolderRun(folder, skipped, index)
            with closing(ahead(pages, pool)) as ordered:
                self._follow_pages(account, folder_run, ordered, run, cursor, since, stop)

    def _read_index(self, folder: MailFolder) -> dict[str, tuple[Attachment, ...]]:
        """An initial round (or one resumed mid-way) stores most of the folder: read the
        attachment metadata of all its messages with attachments in a few list requests
        (graph/attachments.py) instead of one batched request per message."""
        if self.policy.privacy.value != "everything":
            return {}
        since = None
        if self.options.window_days:
            since = self.now() - timedelta(days=self.options.window_days)
        try:
            return folder_attachment_index(self.graph, folder.graph_id, received_since=since)
        except (NotFound, MalformedResponse) as error:
            # Not knowing in bulk only costs requests: each message is then asked alone.
            log.info("folder %s: attachment index not read (%s)", folder.display_name, error)
            return {}

    def _follow_pages(
        self,
        account: Account,
        folder_run: _FolderRun,
        pages: Iterable[DeltaPage],
        run: SyncRun,
        cursor: Cursor | None,
        since: datetime | None,
        stop: threading.Event,
    ) -> None:
        """Store each page in order; ``cursor`` and ``since`` say which round the pages
        belong to (a full round marks what it lists and reconciles on its last page). Another
        folder failing (``stop``) ends this one before its next page: what is stored keeps
        its cursor, and the next cycle resumes from there."""
        folder = folder_run.folder
        for page in pages:
            if stop.is_set():
                return
            mark = round_mark(cursor, page, since)
            stored = self._store_page(account, folder_run, page, mark)
            cursor = _cursor_of(page, mark)
            with self._shared:
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
        self,
        account: Account,
        folder_run: _FolderRun,
        page: DeltaPage,
        mark: RoundMark | None = None,
    ) -> PageResult:
        folder = folder_run.folder
        deleted, moved = self._where_removed_went(folder, page.removed_ids)
        with self._crm:
            lookups = self._lookups(page)
            if self.auto_create is not None:
                drafts = partners_to_create(page.messages, lookups, self.auto_create)
                if drafts:
                    created = self.gateway.create_partners(drafts)
                    lookups = merge_created(lookups, created, drafts)
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
        upserts = self._with_attachments(plan.upserts, folder_run.index)
        cursor = _cursor_of(page, mark)
        if mark is not None and mark.completes:
            settled = self._reconcile(account, folder, mark, set(deleted) | set(moved))
            deleted = sorted(set(deleted) | set(settled.removed))
            moved = {**moved, **settled.moved}
        write = PageWrite(
            account_id=account.id,
            folder_id=folder.graph_id,
            upserts=upserts,
            removed_ids=deleted,
            cursor=cursor,
            skipped=dict(page_skips),
            moved=moved,
            round=mark,
        )
        with self._crm:
            result = self.gateway.store_mail_page(write, lease=self.lease)
            folder_run.skipped.update(page_skips)  # counted once the page is stored
            self._link_outbox(page)
        return result

    def _link_outbox(self, page: DeltaPage) -> None:
        """Sent Items copies of mail the CRM sent carry its outbox id in a header: the outbox
        record gets the stored message's ids (the copy itself was stored once, above)."""
        for message in page.messages:
            value = next(
                (v for k, v in message.headers.items() if k.lower() == OUTBOX_HEADER), None
            )
            if value and value.startswith(OUTBOX_PREFIX) and value[len(OUTBOX_PREFIX) :].isdigit():
                self.gateway.update_outgoing(
                    int(value[len(OUTBOX_PREFIX) :]),
                    OutboxState.SENT,
                    graph_id=message.graph_id,
                    internet_message_id=message.internet_message_id,
                    conversation_id=message.conversation_id,
                )

    def _lookups(self, page: DeltaPage) -> PartnerLookups:
        addresses = page_addresses(page.messages)
        if not addresses:
            return PartnerLookups()
        untagged = (
            {a: strip_plus_tag(a) for a in addresses} if self.options.ignore_plus_tags else {}
        )
        by_email = dict(self.gateway.find_partners_by_emails(addresses | set(untagged.values())))
        for tagged, plain in untagged.items():
            if tagged not in by_email and plain in by_email:
                by_email[tagged] = by_email[plain]  # anna+news@x.com is the contact anna@x.com
        companies = self.gateway.find_companies_by_domains(page_domains(addresses, self.policy))
        return PartnerLookups(by_email, companies)

    def _with_attachments(
        self,
        upserts: list[StoredMessage],
        index: Future[dict[str, tuple[Attachment, ...]]] | None,
    ) -> list[StoredMessage]:
        """Attachment names, sizes and types (never content) of the messages stored with
        ``hasAttachments``: from the folder's index in an initial round, else (and for any
        message the index lacks) in batches of 20 per request.

        Only where the account shares everything: apply_privacy already emptied the others.
        """
        wanted = [s.message.graph_id for s in upserts if s.message.has_attachments]
        if not wanted or self.policy.privacy.value != "everything":
            return upserts
        known = index.result() if index is not None else {}
        found = {gid: known[gid] for gid in wanted if gid in known}
        rest = [gid for gid in wanted if gid not in found]
        if rest:
            found.update(fetch_attachment_metadata(self.graph, rest))
        return [
            StoredMessage(replace(s.message, attachments=found[s.message.graph_id]), s.participants)
            if s.message.graph_id in found
            else s
            for s in upserts
        ]

    def _where_removed_went(
        self, folder: MailFolder, removed_ids: list[str]
    ) -> tuple[list[str], dict[str, str]]:
        """Split a page's removed ids into deleted ones and ones moved elsewhere.

        Delta reports a message that left the folder the same way whether it was deleted or
        archived. Immutable ids survive moves, so asking Graph where the id lives now tells
        them apart: mail a salesperson files elsewhere stays in the CRM; mail gone, or in a
        folder of deleted mail (Deleted Items and under it; Recoverable Items, where Shift+
        Delete puts it and Graph still finds it) is unlinked.
        """
        if not removed_ids:
            return [], {}
        paths = {
            graph_id: f"/me/messages/{quote(graph_id, safe='')}?$select=id,parentFolderId"
            for graph_id in removed_ids
        }
        answers = batch_get(self.graph, list(paths.values()), headers=IMMUTABLE_IDS)
        deleted_folders = self._deleted_folders()
        deleted: list[str] = []
        moved: dict[str, str] = {}
        for graph_id, path in paths.items():
            answer = answers.get(path)
            if isinstance(answer, dict):
                now_in = answer.get("parentFolderId")
                if isinstance(now_in, str) and now_in not in (folder.graph_id, *deleted_folders):
                    moved[graph_id] = now_in
                    continue
            elif isinstance(answer, GraphError) and not isinstance(answer, NotFound):
                raise answer  # not knowing is not "deleted": store nothing, retry the page
            elif not isinstance(answer, NotFound):
                raise Transient(f"Graph's batch gave no answer for message {graph_id}")
            deleted.append(graph_id)
        return deleted, moved

    def _reconcile(
        self, account: Account, folder: MailFolder, mark: RoundMark, settled: set[str]
    ) -> Reconciliation:
        """What the completing full round did not list (`sync.rounds`), settled by asking
        Graph where each id lives now; it is written with the round's delta link."""
        unlisted = [
            graph_id
            for graph_id in to_check(
                self.gateway.unlisted_in_round(account.id, folder.graph_id), mark
            )
            if graph_id not in settled
        ]
        if not unlisted:
            return Reconciliation()
        where = self._locate(folder, unlisted)
        result = settle_unlisted(where, folder.graph_id, self._deleted_folders())
        log.info(
            "full round of folder %s complete: %d stored messages no longer there, %d moved to "
            "other folders, %d still there though the round did not list them (kept)",
            folder.display_name,
            len(result.removed),
            len(result.moved),
            len(result.kept),
        )
        return result

    def _locate(self, folder: MailFolder, graph_ids: list[str]) -> dict[str, str | None]:
        """Where each id lives now (its parentFolderId), None when Graph does not find it.

        Any other failure raises: not knowing is not "deleted", so the round's last page is
        not stored and the next cycle asks again. A found message without a parent folder
        counts as still in this folder (kept).
        """
        paths = {
            graph_id: f"/me/messages/{quote(graph_id, safe='')}?$select=id,parentFolderId"
            for graph_id in graph_ids
        }
        answers = batch_get(self.graph, list(paths.values()), headers=IMMUTABLE_IDS)
        where: dict[str, str | None] = {}
        for graph_id, path in paths.items():
            answer = answers.get(path)
            if isinstance(answer, dict):
                now_in = answer.get("parentFolderId")
                where[graph_id] = now_in if isinstance(now_in, str) and now_in else folder.graph_id
            elif isinstance(answer, NotFound):
                where[graph_id] = None
            elif isinstance(answer, GraphError):
                raise answer
            else:
                raise Transient(f"Graph's batch gave no answer for message {graph_id}")
        return where

    def _deleted_folders(self) -> frozenset[str]:
        if self._deleted is None:  # (a cycle plans its folders first; this is for the rest)
            self._deleted = frozenset({self.reader.resolve_folder("deleteditems").graph_id})
        return self._deleted


@dataclass(frozen=True, slots=True)
class _FolderRun:
    """One folder's state in a cycle, apart from every other folder's: the skips of its
    current round, and (initial rounds) its attachment index being read beside its pages."""

    folder: MailFolder
    skipped: Counter[str]
    index: Future[dict[str, tuple[Attachment, ...]]] | None = None


def _cursor_of(page: DeltaPage, mark: RoundMark | None) -> Cursor:
    """The cursor a page is stored with: its delta link (round finished) or its next link,
    marked as continuing a full round while one is open."""
    if page.delta_link:
        return Cursor(page.delta_link, CursorKind.DELTA)
    if page.next_link:
        return Cursor(page.next_link, CursorKind.NEXT, still_open(mark))
    # parse_delta_page refuses such pages; keep the invariant explicit anyway
    raise AssertionError("a delta page without a link cannot be stored")
