"""One calendar cycle for one account: push the CRM's new events, pull Outlook's changes,
then push the CRM's other changes.

Pull: ``/me/calendarView/delta`` over a window (default one year back, two ahead, rolled
forward each month; Graph refuses windows over 1825 days). Per page: the series masters of its
occurrences (for their recurrence) and the fate of its removed ids come from JSON batches;
the CRM is asked once for the page's bindings, once for the CRM events its unbound items may
be the same meeting as, and once for its people; the decisions are
`sync.calendar.plan_inbound`; one `store_event_page` writes the page with its cursor, or
refuses a plan made on state that moved since (`StalePlan`: the page is planned again).

calendarView delta reports as removed both deleted events and events that merely left the
window; an id Graph still serves is therefore kept (an event moving out of the window is not a
deletion), and only a 404 unbinds it. A 410 restarts the window afresh, and a fresh round lists
no removals: its last page also carries the ids the CRM has bound that it did not list
(`bound_event_ids`), asked about the same way, so a meeting deleted while the link was gone
leaves the CRM too, in the write that stores the round's delta link. Every other round asks
the same way about the series masters none of whose occurrences is bound yet
(`unconfirmed_series_ids`: a series the CRM made, deleted in Outlook before its occurrences
were listed). After a round, the CRM occurrences of a series Outlook holds that no mailbox
has bound (Odoo expands a series into events of its own) are checked against the series'
instances: one Outlook cancelled before the pull listed it is never named again (delta
reports only the removal of an id the CRM never had), so it is removed from the CRM
(`sync.calendar.cancelled_occurrences`; at most `OCCURRENCE_SERIES_PER_ROUND` series, one
instances request each, and none when every occurrence is bound).

Push: `sync.calendar.plan_outbound` over the CRM's pending changes (a whole series is changed
or deleted through its master, never occurrence by occurrence); each one is carried out and
recorded (`mark_event_pushed`) on its own, so one failing event never stops the others, and a
create retried after a crash carries the same ``transactionId`` (no second Outlook event). Each
push carries the CRM version it expects (``expected_version``); a CRM edit made while it was
in flight is never overwritten by its record (the store keeps the newer version pending); a CRM
event deleted while its create was in flight, and no longer held by the CRM at all, has the copy
Outlook just made deleted at once (`sync.calendar.left_behind`), or the next pull would bring it
back as a new meeting. A create's answer is recorded as our echo only when it is what the create
sent (`sync.calendar.recorded_change_key`): a retried create reaches the event made the first
time, as Outlook holds it now, edits included.

A create whose record never happened (the daemon killed between Graph's answer and
`mark_event_pushed`) and whose CRM event was deleted before the next cycle is found by the
pull: the organizer's copy carrying this CRM's ``transactionId`` (tagged with
`CrmSettings.crm_tag`, read once per cycle) for an event id the store gave and no longer
holds is deleted from Outlook before the page is stored (`sync.calendar.deleted_in_crm`),
instead of coming back as a new meeting; figure ``deleted_in_outlook``.
"""

from __future__ import annotations

import logging
import sys
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from m365sync.crm.gateway import CrmGateway
from m365sync.domain import (
    Account,
    CalendarEvent,
    Cursor,
    CursorKind,
    EventBinding,
    EventPageWrite,
    Lease,
    MeetingCandidate,
    PageResult,
    SyncRun,
)
from m365sync.errors import (
    GraphError,
    M365SyncError,
    MalformedResponse,
    NotFound,
    StalePlan,
    SyncStateGone,
    Throttled,
    Transient,
)
from m365sync.graph.calendar import CalendarReader, CalendarWriter, EventPage, event_body
from m365sync.graph.client import GraphClient
from m365sync.sync.addresses import normalise_address
from m365sync.sync.calendar import (
    SKIP_DELETED_IN_CRM,
    ForgetDeleted,
    PushAction,
    PushCreate,
    PushDelete,
    PushResponse,
    PushUpdate,
    cancelled_occurrences,
    crm_event_of,
    deleted_in_crm,
    event_addresses,
    instances_range,
    left_behind,
    plan_inbound,
    plan_outbound,
    recorded_change_key,
    removals,
)
from m365sync.sync.mail import MailPolicy, PartnerLookups, page_domains

log = logging.getLogger(__name__)

SKIP_MALFORMED = "malformed event"
PUSH_FAILED = "push failed"
STALE_PLAN_ATTEMPTS = 3
# Series whose unbound CRM occurrences are checked against Outlook's instances after a round:
# one Graph request each, so a CRM full of them never makes a round slow.
OCCURRENCE_SERIES_PER_ROUND = 5


@dataclass(frozen=True, slots=True)
class CalendarWindow:
    """The calendarView range, anchored on month starts so its cursor lives a month."""

    start: datetime
    end: datetime

    @classmethod
    def around(cls, now: datetime, *, back_days: int, ahead_days: int) -> CalendarWindow:
        start = (now - timedelta(days=back_days)).replace(
            day=1, hour=0, minute=0, second=0, microsecond=0
        )
        end = (now + timedelta(days=ahead_days)).replace(
            day=1, hour=0, minute=0, second=0, microsecond=0
        )
        return cls(start, end)

    @property
    def key(self) -> str:
        """The cursor's folder key: a new window starts a new delta round."""
        return f"calendarView/{self.start:%Y-%m-%d}/{self.end:%Y-%m-%d}"


class CalendarCycle:
    """Two-way calendar sync of one account; see the module docstring."""

    def __init__(
        self,
        gateway: CrmGateway,
        graph: GraphClient,
        policy: MailPolicy,
        *,
        back_days: int = 365,
        ahead_days: int = 730,
        page_size: int = 100,
        lease: Lease | None = None,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
        reader: CalendarReader | None = None,
        writer: CalendarWriter | None = None,
    ) -> None:
        """``reader`` and ``writer`` default to Graph's; the contract's state machine passes
        an in-memory Outlook's, so it runs this very cycle (tests/contract/calendar_machine)."""
        self.gateway = gateway
        self.graph = graph
        self.reader = reader or CalendarReader(graph, page_size=page_size)
        self.writer = writer or CalendarWriter(graph, reader=self.reader)
        self.policy = policy
        self.back_days = back_days
        self.ahead_days = ahead_days
        self.lease = lease
        self.now = now
        self.crm_tag = ""  # this CRM's (`CrmSettings.crm_tag`), read at the start of `run`
        # Series masters this cycle deleted from Outlook (`deleted_in_crm`): their occurrences
        # on later pages of the round are not stored either.
        self._deleted_masters: set[str] = set()

    def run(self, account: Account, run: SyncRun) -> SyncRun:
        """Pull then push; the figures land in ``run.calendar`` (new, updated, removed,
        pushed, pages) and skips in ``run.skipped``, also when the cycle fails half-way."""
        skipped: Counter[str] = Counter(run.skipped)
        figures: Counter[str] = Counter(run.calendar)
        try:
            # The tag of our creates' transactionId: read before any create, every cycle (a
            # CRM that cannot say stops the calendar part, never makes an untagged create).
            self.crm_tag = self.gateway.crm_settings().crm_tag
            self._deleted_masters = set()
            # Creates first: one whose answer was lost (a crash, a dropped connection) is in
            # Outlook unbound, and a pull would store it as a second CRM event; the retried
            # create (same transactionId) binds it instead. Found by the reliability soak.
            self.push(account, figures, skipped, creates_only=True)
            self.pull(account, figures, skipped)
            self.push(account, figures, skipped)
        finally:
            run.skipped = dict(skipped)
            run.calendar = dict(figures)
        return run

    # --- Outlook -> CRM ----------------------------------------------------------------------

    def pull(self, account: Account, figures: Counter[str], skipped: Counter[str]) -> None:
        window = CalendarWindow.around(
            self.now(), back_days=self.back_days, ahead_days=self.ahead_days
        )
        try:
            self._follow(account, window, figures, skipped)
        except SyncStateGone as gone:
            # Invariant 2: a 410 restarts the round from scratch; upserts make it idempotent.
            log.warning("calendar delta state expired (%s): restarting the window", gone.code)
            self.gateway.reset_folder(account.id, window.key)
            self._follow(account, window, figures, skipped)

    def _follow(
        self,
        account: Account,
        window: CalendarWindow,
        figures: Counter[str],
        skipped: Counter[str],
    ) -> None:
        cursor = self.gateway.get_cursor(account.id, window.key)
        # A round started afresh (none stored, or the last link expired: 410) lists what
        # Outlook holds and no removals; one resumed mid-way may be such a round. Either way,
        # its last page also carries, as removed, what the CRM has bound and the round did not
        # list: `_store_page` asks Graph about them as about any removal, and only the ones
        # it no longer serves go, in the same write as the round's delta link. Any other
        # round's last page carries the series masters whose occurrences Outlook has not listed
        # yet (a series the CRM just made): delta never names a master, so one deleted before
        # its occurrences came back would stay bound, its CRM occurrences with it (found by
        # the reliability soak against Odoo, seed 138410683).
        fresh = cursor is None or cursor.kind is CursorKind.NEXT
        listed: set[str] = set()
        pages = self.reader.pages(
            window_start=window.start,
            window_end=window.end,
            resume_link=cursor.link if cursor else None,
        )
        for page in pages:
            listed.update(page.removed_ids)
            for item in page.events:
                listed.update(filter(None, (item.graph_id, item.series_master_id)))
            if page.delta_link:
                known = (
                    self.gateway.bound_event_ids(account.id)
                    if fresh
                    else self.gateway.unconfirmed_series_ids(account.id)
                )
                unlisted = set(known) - listed
                page.removed_ids = [*page.removed_ids, *sorted(unlisted)]
            result = self._store_page(account, window, page, figures, skipped)
            figures["pages"] += 1
            figures["new"] += result.created + result.linked
            figures["updated"] += result.updated
            figures["removed"] += result.removed
        figures["removed"] += self._cancelled_occurrences(account, window)

    def _cancelled_occurrences(self, account: Account, window: CalendarWindow) -> int:
        """After a round (its pages stored, so what Outlook listed is bound): the CRM
        occurrences of a bound series that no mailbox holds, asked about in Outlook's
        instances of the series; those none fills were cancelled there before any pull
        listed them, and leave the CRM (found by the reliability soak against Odoo, seed
        61480911: an occurrence of an Odoo series cancelled in Outlook stayed in Odoo).
        A series Graph is too busy to answer for is left for the next round."""
        series_list = self.gateway.unconfirmed_occurrences(
            account.id, window.start, window.end, limit=OCCURRENCE_SERIES_PER_ROUND
        )
        removals = []
        for series in series_list:
            low, high = instances_range(series)
            try:
                instances = self.reader.instances(series.master_graph_id, low, high)
            except NotFound:
                continue  # the master is gone: its removal takes the series (next round)
            except (Throttled, Transient, MalformedResponse) as error:
                # Busy or unreadable now: asked again next round. An account-level answer
                # (reconnect, permissions, mailbox) stops the cycle as anywhere else.
                log.warning(
                    "could not list the occurrences of series %s: %s", series.master_graph_id, error
                )
                continue
            found = cancelled_occurrences(series, instances)
            for removal in found:
                log.info(
                    "CRM occurrence %s of series %s was cancelled in Outlook: it leaves the CRM",
                    removal.crm_event_id,
                    series.master_graph_id,
                )
            removals.extend(found)
        if not removals:
            return 0
        return self.gateway.remove_cancelled_occurrences(account.id, removals, lease=self.lease)

    def _store_page(
        self,
        account: Account,
        window: CalendarWindow,
        page: EventPage,
        figures: Counter[str],
        skipped: Counter[str],
    ) -> PageResult:
        if self._deleted_masters:
            kept = [e for e in page.events if e.series_master_id not in self._deleted_masters]
            skipped[SKIP_DELETED_IN_CRM] += len(page.events) - len(kept)
            page.events = kept
        masters = self.reader.masters(
            sorted({e.series_master_id for e in page.events if e.series_master_id})
        )
        # Masters first: each occurrence must find its series when stored.
        events: list[CalendarEvent] = [*masters.values(), *page.events]
        lookups = self._lookups(events)
        removed = self.reader.deleted(page.removed_ids)
        for attempt in range(1, STALE_PLAN_ATTEMPTS + 1):
            try:
                return self._plan_and_store(
                    account, window, page, events, lookups, removed, figures, skipped
                )
            except StalePlan as stale:
                # A CRM user edited (or another writer bound) an event of this page between
                # the plan and its write: nothing was written; plan again from fresh state.
                if attempt == STALE_PLAN_ATTEMPTS:
                    raise
                log.info("calendar page planned on stale state (%s): planning again", stale)
        raise AssertionError("unreachable")  # pragma: no cover

    def _plan_and_store(
        self,
        account: Account,
        window: CalendarWindow,
        page: EventPage,
        events: list[CalendarEvent],
        lookups: PartnerLookups,
        removed: list[str],
        figures: Counter[str],
        skipped: Counter[str],
    ) -> PageResult:
        state = inbound_state(self.gateway, account.id, events, crm_tag=self.crm_tag)
        bindings, candidates, last_event_id = state
        owner = normalise_address(account.address)
        plan = plan_inbound(
            events,
            bindings,
            lookups,
            self.policy,
            owner=owner,
            candidates=candidates,
            crm_tag=self.crm_tag,
            last_event_id=last_event_id,
        )
        # Before the page (and its cursor) is stored: a delete that fails stores nothing, and
        # the page comes again. A delete Graph finds done already (404) is done.
        for gone in plan.outlook_deletes:
            log.info(
                "Outlook event %s is our create of CRM event %s, which the CRM deleted before "
                "the create was recorded: deleted from Outlook%s",
                gone.graph_id,
                gone.crm_event_id,
                " with its series" if gone.is_series_master else "",
            )
            # Counted once: a plan made again (StalePlan) finds it gone already (False).
            figures["deleted_in_outlook"] += self.writer.delete(gone.graph_id)
            if gone.is_series_master:
                self._deleted_masters.add(gone.graph_id)
        for conflict in plan.conflicts:
            log.warning(
                "calendar conflict on event %s: Outlook changed it at %s, the CRM at %s; "
                "the %s version wins",
                conflict.graph_id,
                conflict.outlook_modified,
                conflict.crm_modified,
                conflict.winner,
            )
        page_skips = Counter(plan.skipped)
        for item in page.rejected:
            log.warning("skipped a malformed event: %s", item.reason)
            page_skips[SKIP_MALFORMED] += 1
        cursor = (
            Cursor(page.delta_link, CursorKind.DELTA)
            if page.delta_link
            else Cursor(page.next_link or "", CursorKind.NEXT)
        )
        if removed and plan.upserts:
            removed = removals(
                removed,
                self.gateway.event_bindings(account.id, removed),
                plan.upserts,
                bindings,
            )
        result = self.gateway.store_event_page(
            EventPageWrite(
                account_id=account.id,
                calendar_id=window.key,
                upserts=plan.upserts,
                removed_ids=removed,
                cursor=cursor,
                skipped=dict(page_skips),
                owner_address=owner,
            ),
            lease=self.lease,
        )
        skipped.update(page_skips)
        return result

    def _lookups(self, events: list[CalendarEvent]) -> PartnerLookups:
        addresses = event_addresses(events)
        if not addresses:
            return PartnerLookups()
        return PartnerLookups(
            self.gateway.find_partners_by_emails(addresses),
            self.gateway.find_companies_by_domains(page_domains(addresses, self.policy)),
        )

    # --- CRM -> Outlook ----------------------------------------------------------------------

    def push(
        self,
        account: Account,
        figures: Counter[str],
        skipped: Counter[str],
        *,
        creates_only: bool = False,
    ) -> None:
        """``creates_only``: the CRM's new events alone, and a create whose outcome is
        unknown stops the cycle (the pull must not run while Outlook may hold it unbound)."""
        changes = self.gateway.event_changes_to_push(account.id)
        actions = plan_outbound(
            changes, now=self.now(), account_address=account.address, crm_tag=self.crm_tag
        )
        for action in actions:
            if creates_only and not isinstance(action, PushCreate):
                continue
            change = action.change
            try:
                answer: CalendarEvent | None = change.event
                if isinstance(action, PushCreate):
                    item = change.event
                    answer = self.writer.create(
                        item,
                        transaction_id=action.transaction_id,
                        online_meeting=item.is_online_meeting,
                    )
                elif isinstance(action, PushUpdate):
                    body = event_body(change.event, details_only=action.details_only)
                    answer = self.writer.update(change.event.graph_id, body)
                elif isinstance(action, PushDelete):
                    self.writer.delete(change.event.graph_id)
                    answer = None
                elif isinstance(action, PushResponse):
                    self.writer.respond(change.event.graph_id, action.response)
                self._pushed(account, action, answer)
            except M365SyncError as error:
                if creates_only and not _refused(error):
                    raise
                # One event Outlook refuses must not stop the others; it stays pending.
                log.warning("could not push CRM event %s: %s", change.crm_event_id, error)
                skipped[PUSH_FAILED] += 1
                continue
            figures["pushed"] += not isinstance(action, ForgetDeleted)

    def _pushed(self, account: Account, action: PushAction, answer: CalendarEvent | None) -> None:
        """Record what Outlook now holds, under the version the push expected; a CRM edit
        made while it was pushed stays pending (the store says so) and goes next."""
        change = action.change
        current = self.gateway.mark_event_pushed(
            account.id,
            change.crm_event_id,
            graph_id=answer.graph_id if answer is not None else change.event.graph_id,
            change_key=recorded_change_key(action, answer),
            version=action.expected_version,
            ical_uid=answer.ical_uid if answer is not None else None,
            online_meeting_url=answer.online_meeting_url if answer is not None else None,
            unbind=action.unbinds,
            shape_pushed=action.carries_shape,
        )
        if not current and answer is not None and isinstance(action, PushCreate):
            held = self.gateway.meeting_candidates(account.id, [], [], [change.crm_event_id])
            if left_behind(action, current, held):
                log.info(
                    "CRM event %s was deleted while its create went to Outlook: the copy "
                    "Outlook made is deleted too",
                    change.crm_event_id,
                )
                self.writer.delete(answer.graph_id)
                return
        if not current:
            log.info(
                "CRM event %s was edited while version %s went to Outlook: the newer version "
                "stays pending and goes with the next push",
                change.crm_event_id,
                action.expected_version,
            )


def inbound_state(
    gateway: CrmGateway, account_id: int, events: Sequence[CalendarEvent], *, crm_tag: str = ""
) -> tuple[dict[str, EventBinding], list[MeetingCandidate], int]:
    """What the store holds that an inbound plan decides on (`sync.calendar.plan_inbound`):
    the bindings of the page's items (its series masters come first in it, so theirs too),
    the CRM events its unbound items may be the same meeting as (by our create's
    ``transactionId`` with this CRM's ``crm_tag``, iCalUId or series), and, only when an
    unbound item is our create of an event no candidate holds, the highest event id the
    store has given (`CrmGateway.last_event_id`; else 0). Two reads, three at most; the
    calendar contract plans its pages through this too."""
    bindings = gateway.event_bindings(account_id, [e.graph_id for e in events])
    unbound = [e for e in events if e.graph_id not in bindings]
    if not unbound:
        return bindings, [], 0
    candidates = gateway.meeting_candidates(
        account_id,
        [e.ical_uid for e in unbound if e.ical_uid],
        [e.series_master_id for e in unbound if e.series_master_id],
        [n for e in unbound if (n := crm_event_of(e.transaction_id, crm_tag)) is not None],
    )
    suspects = deleted_in_crm(
        unbound, bindings, candidates, crm_tag=crm_tag, last_event_id=sys.maxsize
    )
    return bindings, candidates, gateway.last_event_id() if suspects else 0


def _refused(error: M365SyncError) -> bool:
    """Graph answered that it will not make this event (a 4xx other than 401 and 429): it is
    not in Outlook, and the others may go on."""
    status = getattr(error, "status", None)
    return (
        isinstance(error, GraphError)
        and status is not None
        and 400 <= status < 500
        and (status not in (401, 429))
    )
