"""A state machine over mail sync, run against each gateway (vdirsyncer's SyncMachine is the
model): Outlook changes two mailboxes, the sync plans pages with the product's own rules
(`m365sync.sync.mail.plan_page` over the CRM's partner lookups) and the gateway stores them,
and after every step that leaves a mailbox fully synced the CRM holds exactly that mailbox.

Outlook's side: deliveries (to one mailbox, or the same mail to both, as a message sent to
two colleagues is), flag changes (a new change key, same content), moves between the synced
folders (the immutable id stays), deletions. The sync's side: a folder's changes since its
last stored cursor as one page; a crash after planning and before storing (nothing stored,
the cursor stays, the same changes come again); a page replayed after it was stored (the
cursor was not confirmed); a 410 (the folder's cursor is gone: `reset_folder`, then the whole
folder as a fresh full round in two pages, which lists no removals: what it no longer holds is
found by the product's reconciliation, `m365sync.sync.rounds`, when its last page is stored),
possibly interrupted after its first page (nothing may go then; the folder's next cycle
completes the round). The checks: each mailbox's stored messages are its Outlook messages
(immutable id -> internetMessageId), the same mail seen by both mailboxes is stored once, and
a mail deleted from every mailbox is gone from the CRM.

A test module binds it to a gateway with `machine_common.machine_for` (the CRM side of each
example is new accounts and new contacts, so it runs in a shared database too).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field, replace

from hypothesis import strategies as st
from hypothesis.stateful import invariant, precondition, rule

from m365sync.domain import (
    Account,
    Cursor,
    CursorKind,
    EmailAddress,
    MailMessage,
    PageWrite,
    Privacy,
    RoundMark,
)
from m365sync.sync.mail import (
    MailPolicy,
    PartnerLookups,
    page_addresses,
    page_domains,
    plan_page,
)
from m365sync.sync.rounds import settle_unlisted, still_open, to_check

from .gateway_contract import INBOX, SENT, T0, spec, unique
from .machine_common import StoreMachine

FOLDERS = (INBOX, SENT)


@dataclass
class OutlookMessage:
    imid: str
    folder: str
    subject: str
    change: int = 1


@dataclass
class Mailbox:
    """One account's Outlook: its messages, and per folder what changed since the cursor the
    CRM last stored (the delta Graph would send next)."""

    account: Account
    messages: dict[str, OutlookMessage] = field(default_factory=dict)  # immutable id ->
    changed: dict[str, set[str]] = field(default_factory=lambda: {f: set() for f in FOLDERS})
    removed: dict[str, set[str]] = field(default_factory=lambda: {f: set() for f in FOLDERS})
    # Folders whose full round was cut short -> the ids its first page listed.
    open_rounds: dict[str, set[str]] = field(default_factory=dict)

    def settled(self) -> bool:
        return (
            not any(self.changed.values())
            and not any(self.removed.values())
            and not self.open_rounds
        )


class MailSyncMachine(StoreMachine):
    """Bound by `machine_common.machine_for` to a gateway and a contact seeder."""

    def __init__(self) -> None:
        super().__init__()
        tag = unique("m")
        self.customer = f"ann.{tag}@customer.example"
        self.seed_partner(self.gateway, "Ann", self.customer)
        self.boxes = [Mailbox(self.gateway.upsert_account(spec())) for _ in range(2)]
        self.baseline = self.gateway.count_messages()
        self.serial = itertools.count(1)
        self.cursors = itertools.count(1)
        self.mails: dict[str, tuple[str, str]] = {}  # imid -> (subject, body): one content each

    # --- Outlook ----------------------------------------------------------------------------

    @rule(both=st.booleans(), folder=st.sampled_from(FOLDERS))
    def deliver(self, both: bool, folder: str) -> None:
        """A new mail with Ann, in one mailbox or (the same mail) in both."""
        n = next(self.serial)
        imid = f"<{unique('mail')}@customer.example>"
        self.mails[imid] = (f"Offer {n}", f"<p>Offer number {n}</p>")
        for box in self.boxes if both else self.boxes[:1]:
            graph_id = unique("AAMk")
            box.messages[graph_id] = OutlookMessage(imid, folder, f"Offer {n}")
            box.changed[folder].add(graph_id)

    def _pick(self, data: st.DataObject) -> tuple[Mailbox, str] | None:
        box = data.draw(st.sampled_from(self.boxes))
        if not box.messages:
            return None
        return box, data.draw(st.sampled_from(sorted(box.messages)))

    @rule(data=st.data())
    def flag(self, data: st.DataObject) -> None:
        """Read, flagged, categorised: a new change key, the same content."""
        if picked := self._pick(data):
            box, graph_id = picked
            message = box.messages[graph_id]
            message.change += 1
            box.changed[message.folder].add(graph_id)

    @rule(data=st.data())
    def move(self, data: st.DataObject) -> None:
        """To the other synced folder: gone from one folder's delta, new in the other's."""
        if picked := self._pick(data):
            box, graph_id = picked
            message = box.messages[graph_id]
            target = SENT if message.folder == INBOX else INBOX
            box.changed[message.folder].discard(graph_id)
            box.removed[message.folder].add(graph_id)
            message.folder = target
            box.removed[target].discard(graph_id)
            box.changed[target].add(graph_id)

    @rule(data=st.data())
    def delete(self, data: st.DataObject) -> None:
        if picked := self._pick(data):
            box, graph_id = picked
            message = box.messages.pop(graph_id)
            box.changed[message.folder].discard(graph_id)
            box.removed[message.folder].add(graph_id)

    # --- the sync -----------------------------------------------------------------------------

    def _mail(self, box: Mailbox, graph_id: str) -> MailMessage:
        message = box.messages[graph_id]
        subject, body = self.mails[message.imid]
        return MailMessage(
            graph_id=graph_id,
            internet_message_id=message.imid,
            conversation_id=f"conv-{message.imid}",
            folder_id=message.folder,
            subject=subject,
            sender=EmailAddress(self.customer, "Ann"),
            to=(EmailAddress(box.account.address, "Me"),),
            received_at=T0,
            sent_at=T0,
            body_html=body,
            change_key=f"ck{message.change}",
        )

    def _page(
        self,
        box: Mailbox,
        folder: str,
        graph_ids: set[str],
        removed: set[str],
        mark: RoundMark | None = None,
    ) -> PageWrite:
        """What the mail cycle writes for one delta page: the product's own plan."""
        messages = [self._mail(box, g) for g in sorted(graph_ids)]
        policy = MailPolicy.build(["contoso.example"], Privacy.EVERYTHING)
        addresses = page_addresses(messages)
        lookups = PartnerLookups(
            dict(self.gateway.find_partners_by_emails(addresses)),
            self.gateway.find_companies_by_domains(page_domains(addresses, policy)),
        )
        plan = plan_page(messages, lookups, policy)
        assert not plan.skipped, plan.skipped  # every mail here is with a known contact
        link = f"https://graph.example/delta?token={next(self.cursors)}"
        # As the mail cycle does: an id gone from this folder but still in the mailbox moved.
        moved = {g: box.messages[g].folder for g in removed if g in box.messages}
        kind = CursorKind.NEXT if still_open(mark) else CursorKind.DELTA
        return PageWrite(
            account_id=box.account.id,
            folder_id=folder,
            upserts=plan.upserts,
            removed_ids=sorted(set(removed) - set(moved)),
            cursor=Cursor(link, kind, still_open(mark)),
            skipped={},
            moved=moved,
            round=mark,
        )

    def _last_round_page(self, box: Mailbox, folder: str) -> PageWrite:
        """A full round's last page: it lists the rest of the folder, and what the round did
        not list is settled as the mail cycle settles it (asking "Graph" where each id is)."""
        ids = {g for g, m in box.messages.items() if m.folder == folder}
        mark = RoundMark(listed_ids=tuple(sorted(ids)), completes=True)
        unlisted = to_check(self.gateway.unlisted_in_round(box.account.id, folder), mark)
        where = {g: box.messages[g].folder if g in box.messages else None for g in unlisted}
        settled = settle_unlisted(where, folder, ())
        assert not settled.kept, settled.kept  # a round that lists everything misses nothing
        written = self._page(box, folder, ids, set(), mark)
        written.removed_ids = settled.removed
        written.moved = settled.moved
        return written

    @rule(
        box_index=st.integers(0, 1),
        outcomes=st.lists(
            st.sampled_from(["stored", "crash before storing", "stored, then replayed"]),
            min_size=len(FOLDERS),
            max_size=len(FOLDERS),
        ),
    )
    def cycle(self, box_index: int, outcomes: list[str]) -> None:
        """One sync cycle of a mailbox: a page per folder, in order, until one crashes."""
        box = self.boxes[box_index]
        for folder, outcome in zip(FOLDERS, outcomes, strict=True):
            resumed = folder in box.open_rounds
            if resumed:  # a cut-short full round resumes: its last page
                page = self._last_round_page(box, folder)
            else:
                page = self._page(box, folder, box.changed[folder], box.removed[folder])
            if outcome == "crash before storing":
                return  # nothing stored, the cursor stays: the same changes come again
            self.gateway.store_mail_page(page)
            if outcome == "stored, then replayed":
                self.gateway.store_mail_page(replace(page))
            box.changed[folder].clear()
            if resumed:
                # What its first page listed and went since: the round counts it as there,
                # and the next delta reports it removed (found with 40 steps).
                box.removed[folder] &= box.open_rounds.pop(folder)
            else:
                box.removed[folder].clear()

    @rule(
        box_index=st.integers(0, 1),
        folder=st.sampled_from(FOLDERS),
        share=st.floats(0, 1),
        cut_short=st.booleans(),
    )
    def resync_after_410(self, box_index: int, folder: str, share: float, cut_short: bool) -> None:
        """The folder's cursor is gone: `reset_folder`, then the whole folder as a fresh full
        round in two pages (``share`` of the folder on the first). A fresh round lists no
        removals: what it no longer holds is found when its last page is stored. Cut short
        after its first page, the round has removed nothing; the folder's next cycle ends it."""
        box = self.boxes[box_index]
        before = set(self.gateway.message_ids_for_account(box.account.id))
        self.gateway.reset_folder(box.account.id, folder)
        everything = sorted(g for g, m in box.messages.items() if m.folder == folder)
        first = set(everything[: int(len(everything) * share)])
        mark = RoundMark(starts=True, listed_ids=tuple(sorted(first)))
        self.gateway.store_mail_page(self._page(box, folder, first, set(), mark))
        assert before <= set(self.gateway.message_ids_for_account(box.account.id))
        if cut_short:
            box.open_rounds[folder] = first
            return
        self.gateway.store_mail_page(self._last_round_page(box, folder))
        box.changed[folder].clear()
        box.removed[folder].clear()
        box.open_rounds.pop(folder, None)

    # --- what must hold ----------------------------------------------------------------------

    @invariant()
    def settled_mailboxes_are_in_the_crm(self) -> None:
        for box in self.boxes:
            if box.settled():
                expected = {g: m.imid for g, m in box.messages.items()}
                assert self.gateway.message_ids_for_account(box.account.id) == expected

    @precondition(lambda self: all(box.settled() for box in self.boxes))
    @invariant()
    def each_mail_is_stored_once(self) -> None:
        alive = {m.imid for box in self.boxes for m in box.messages.values()}
        assert self.gateway.count_messages() - self.baseline == len(alive)
