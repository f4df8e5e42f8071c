"""The contract between the sync engine and a CRM.

Everything the daemon stores goes through `CrmGateway`; its two adapters are the embedded
SQLite store (`crm.sqlite`, the default) and Odoo (`crm.odoo`, the product). One contract test
suite (`tests/contract`) runs against both, so the sync engine never learns which one it has.

The words (account, folder, immutable id, internetMessageId, cursor, lease) are defined in
`m365sync.domain`. Rules every adapter keeps:

* Writes are idempotent. A page replayed after a crash, or an item seen twice in one delta
  round, changes nothing the second time: messages are upserted by immutable id within an
  account, and by internetMessageId across folders and accounts (one stored message, linked
  to every account and folder that holds it).
* A cursor is stored in the same transaction as the page it covers (`store_mail_page`), never
  before; a failed call leaves both untouched.
* The number of calls per Graph page is constant: partners are looked up for a whole set of
  addresses at once, a page is written at once.
* Adapters raise only `m365sync.errors.CrmError` subclasses: `CrmUnavailable` when the CRM
  cannot be reached, `UnknownAccount`, `LeaseLost` when a lease token is stale.
* Every method is abstract: both adapters implement the whole contract, with no default
  behaviour inherited and no capability flags (an Odoo whose addon lacks a method answers
  with a sentence saying to upgrade the addon, `crm.odoo.AddonMethodMissing`).
"""

from __future__ import annotations

import abc
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime

from m365sync.domain import (
    Account,
    AccountStatus,
    AutoCreate,
    CalendarEvent,
    CrmEventChange,
    CrmSettings,
    Cursor,
    EmailAddress,
    EventBinding,
    EventLink,
    EventPageWrite,
    EventSummary,
    FolderChoice,
    KnownFolder,
    Lease,
    MailFolder,
    MeetingCandidate,
    OccurrenceRemoval,
    OutboxState,
    OutgoingAttachment,
    OutgoingMail,
    PageResult,
    PageWrite,
    Partner,
    PartnerDraft,
    PendingConnect,
    Privacy,
    ReceivedNotification,
    Subscription,
    SubscriptionKind,
    SyncRun,
    ThreadSummary,
    UnconfirmedOccurrences,
)


@dataclass(slots=True)
class AccountSpec:
    """What `connect` knows about a mailbox when it stores (or refreshes) the account.

    An account is identified by (tenant_id, object_id) when both are known, else by address.
    """

    address: str
    display_name: str = ""
    tenant_id: str = ""
    object_id: str = ""
    owner: str = ""
    sealed_token_cache: str | None = None
    privacy: Privacy = Privacy.EVERYTHING
    auto_create: AutoCreate = AutoCreate.NONE
    own_domains: tuple[str, ...] = field(default_factory=tuple)


@dataclass(frozen=True, slots=True)
class FreeBusyRequest:
    """A CRM form (Schedule Meeting) asking for the attendees' free/busy, answered by the
    daemon with ``getSchedule`` through the account's mailbox (`service.free_busy`): the
    addresses' busy times from ``start`` to ``end`` (the whole ``day`` in ``time_zone``)."""

    id: int
    account_id: int
    addresses: tuple[str, ...]
    start: datetime
    end: datetime
    day: date | None = None
    time_zone: str = "UTC"


class CrmGateway(abc.ABC):
    """What the sync engine may ask of a CRM. See the module docstring for the rules."""

    # --- accounts ---------------------------------------------------------------------------

    @abc.abstractmethod
    def upsert_account(self, spec: AccountSpec) -> Account:
        """Create the account, or update the one with the same identity; status -> connected.

        Reconnecting an account keeps its cursors and its stored mail.
        """

    @abc.abstractmethod
    def get_account(self, account_id: int) -> Account:
        """Raises `UnknownAccount`."""

    @abc.abstractmethod
    def list_accounts(self) -> list[Account]:
        """All accounts, ordered by id."""

    @abc.abstractmethod
    def set_account_status(
        self,
        account_id: int,
        status: AccountStatus,
        detail: str = "",
        *,
        until: datetime | None = None,
        synced_at: datetime | None = None,
    ) -> None:
        """Record what the account list shows. ``until`` belongs to the status: a call without
        it clears an older one. ``synced_at`` also sets the last sync time (kept without it).
        A paused account stays paused: pausing is its owner's decision, which a cycle running
        at that moment does not undo (only resuming does); its sync time still counts."""

    @abc.abstractmethod
    def store_token_cache(
        self, account_id: int, sealed_token_cache: str, *, replaces: str | None = None
    ) -> bool:
        """Replace the account's sealed msal token cache (a JWE; adapters never see it open).

        With ``replaces``, only while the stored one is still that one (compare and set), and
        False when it is not: a process storing the sign-in it refreshed must not overwrite
        one the person renewed meanwhile (a reconnect landing while a refresh was in flight
        left the account on the revoked grant: reliability soak against Odoo, seed
        682835213). True when stored."""

    # --- leases -----------------------------------------------------------------------------

    @abc.abstractmethod
    def lease_accounts(
        self, holder: str, *, limit: int, ttl_seconds: float, now: datetime | None = None
    ) -> list[Lease]:
        """Claim up to ``limit`` accounts that are free or whose lease expired, atomically.

        Paused accounts are never leased. Accounts never synced come first, then the longest
        unsynced, so none starves. Each claim gets a new, larger token and counts as an attempt
        on the account.
        """

    @abc.abstractmethod
    def renew_lease(
        self, lease: Lease, *, ttl_seconds: float, now: datetime | None = None
    ) -> Lease:
        """Extend a lease still held with this token, or raise `LeaseLost`."""

    @abc.abstractmethod
    def release_lease(self, lease: Lease) -> None:
        """Give the account back; a stale token is ignored (someone else holds it now). A clean
        release resets the account's attempt count: its holder did not die."""

    # --- partners ---------------------------------------------------------------------------

    @abc.abstractmethod
    def find_partners_by_emails(self, emails: Iterable[str]) -> dict[str, Partner]:
        """Contacts (and companies) whose email is one of ``emails``, keyed by normalised email.

        Emails are compared case-insensitively; when several partners share one address the
        person wins over the company, then the lowest id.
        """

    @abc.abstractmethod
    def find_companies_by_domains(self, domains: Iterable[str]) -> dict[str, Partner]:
        """Companies whose email domain or website domain is one of ``domains`` (lower case)."""

    @abc.abstractmethod
    def get_partners(self, partner_ids: Iterable[int]) -> dict[int, Partner]:
        """Partners by id (unknown ids are left out)."""

    @abc.abstractmethod
    def create_partners(self, drafts: list[PartnerDraft]) -> list[Partner]:
        """Create contacts and companies in one call, in order; a contact whose
        ``company_domain`` names a company created in the same call (or existing) gets it as
        parent. Companies are created first, so contacts of the same call hang under them.
        Idempotent, so a replayed auto-creation makes no twin: a draft whose email exists
        returns the existing partner, and a company draft also the company with its work
        domain (its ``company_domain``, website or email domain). Also under concurrency:
        two workers (or processes) creating the same drafts at the same moment, as two
        accounts' cycles meeting one new sender do, get the same partners, made once."""

    # --- mail -------------------------------------------------------------------------------

    @abc.abstractmethod
    def get_cursor(self, account_id: int, folder_id: str) -> Cursor | None:
        """The folder's stored cursor, or None before its first page is stored."""

    @abc.abstractmethod
    def store_mail_page(self, page: PageWrite, *, lease: Lease | None = None) -> PageResult:
        """Upsert the page's messages, unlink its removed ids, count its skips, and store its
        cursor: all in one transaction. With a lease, a stale token raises `LeaseLost` and
        nothing is written.

        ``removed_ids`` unlink an id from this page's folder only: after a move, the old
        folder reports the id as removed while the new folder already holds it. Removals go
        first, so an id the page both removes and upserts stays: losing mail is worse than
        keeping a deleted message until the next round. A message is
        deleted when its last link goes. ``moved`` (id -> folder) re-points the link of an
        id that left this folder for one we do not sync (archived mail stays in the CRM).

        ``PageResult``: created = messages inserted, updated = stored messages whose content
        changed, linked = links created or moved, removed = links deleted; a replayed page
        gives zeros.

        ``round`` (a page of a full round, `domain.RoundMark`; the sync decides, the store
        executes): ``starts`` opens a new round of the folder with its window and restarts
        the folder's skip tally from this page's skips; ``listed_ids`` marks the account's
        links to this folder among them as seen by the open round (a link that enters the
        folder while a round is open counts as seen: it was not there to be listed);
        ``completes`` closes the round. The cursor is stored with ``full_round`` true while
        the round stays open. Without ``round`` (a round of changes) the page's skips are
        added to the folder's tally, unless the page is a replay (its cursor is the one
        stored)."""

    @abc.abstractmethod
    def unlisted_in_round(self, account_id: int, folder_id: str) -> list[str]:
        """Immutable ids linked to the folder for the account that no stored page of the
        folder's open full round listed, among messages received within the round's window
        (a message older than the window, or without a received time, is never unlisted):
        what the round's last page must settle. Empty when no round is open."""

    @abc.abstractmethod
    def reset_folder(self, account_id: int, folder_id: str) -> None:
        """Forget the folder's cursor (after a 410), keeping its messages: the restarted round
        upserts them again without duplicates, and reconciles what it no longer lists when
        it completes (see `store_mail_page`'s ``round``)."""

    @abc.abstractmethod
    def store_mail_folders(
        self, account_id: int, folders: list[MailFolder], synced: frozenset[str]
    ) -> None:
        """Keep the mailbox's folder tree as this cycle listed it, and which folders it synced
        (ids in ``synced``), replacing the last one: a folder deleted in Outlook leaves, a
        renamed or moved one keeps its row (its id is constant), and with it the owner's
        choice of it. The CRM shows the tree (the account's folder choice); it never decides.
        Raises ``UnknownAccount``."""

    @abc.abstractmethod
    def list_mail_folders(self, account_id: int) -> list[KnownFolder]:
        """The folder tree last stored for the account, by path."""

    @abc.abstractmethod
    def record_sync_run(self, run: SyncRun) -> None:
        """Keep the figures of a finished cycle (the sync log)."""

    @abc.abstractmethod
    def last_sync_run(self, account_id: int) -> SyncRun | None:
        """The newest recorded cycle of an account."""

    # --- reading back (summary, UI, tests) ---------------------------------------------------

    @abc.abstractmethod
    def count_messages(self, account_id: int | None = None) -> int:
        """Stored messages (each counted once however many folders or accounts hold it)."""

    @abc.abstractmethod
    def message_ids_for_account(self, account_id: int) -> dict[str, str | None]:
        """Immutable Graph id -> internetMessageId of every message linked to the account."""

    @abc.abstractmethod
    def threads_for_partner(self, partner_id: int) -> list[ThreadSummary]:
        """Whole threads (every message, every participant) with a message linked to the
        partner (for a company: or to its contacts), newest activity first; a thread is named
        by the subject of its oldest message that has one."""

    @abc.abstractmethod
    def mail_counts_by_partner(self) -> list[tuple[Partner, int, int]]:
        """(partner, threads, messages) for every partner with mail, most messages first;
        a company counts its contacts' mail too."""

    # --- calendar ------------------------------------------------------------------------
    #
    # Events live once in the CRM (Odoo ``calendar.event``) and are bound to each account's
    # Outlook copy by (account, graph id). The sync decides (`sync.calendar`): which items are
    # echoes, which are the same meeting as a CRM event (`meeting_candidates` gives it the
    # state), where each goes; the store only executes, under the plan's preconditions. An
    # inbound write never counts as a CRM edit, so it is never pushed back (no echo); a CRM
    # edit bumps the event's version until it is pushed.

    @abc.abstractmethod
    def store_event_page(self, page: EventPageWrite, *, lease: Lease | None = None) -> PageResult:
        """Unbind removed ids (an event goes when its last binding goes), write each upsert
        where the plan placed it (``StoredEvent.crm_event_id``: its bound event, the same
        meeting, or None for a new event; this account's binding follows the item's graph
        id), and store the cursor: one transaction. ``created``/``updated``/``linked`` count
        new events, bound ones and newly bound existing ones. Raises `StalePlan`, writing
        nothing, when the state moved since the plan: the item's binding is not the plan's
        (bound since, or to another event) or the target's version is not
        ``expected_version`` (edited in the CRM meanwhile), or the target is gone."""

    @abc.abstractmethod
    def meeting_candidates(
        self,
        account_id: int,
        ical_uids: Iterable[str],
        series_master_ids: Iterable[str],
        crm_event_ids: Iterable[int] = (),
    ) -> list[MeetingCandidate]:
        """The CRM events an unbound Outlook item may be the same meeting as: those with one
        of these iCalUIds or ids (deleted ones included, flagged), and the occurrences of the
        series whose master is bound to this account under one of ``series_master_ids`` or
        is a series master with one of these iCalUIds."""

    @abc.abstractmethod
    def last_event_id(self) -> int:
        """The highest id the store has given a CRM event, deleted ones included (0: none).
        Ids are never given twice, so an Outlook item our create made for an id up to this one
        that no candidate holds is of an event the CRM deleted; a higher id is one this copy
        of the database never gave (an older copy restored): `sync.calendar.deleted_in_crm`."""

    @abc.abstractmethod
    def event_bindings(self, account_id: int, graph_ids: Iterable[str]) -> dict[str, EventBinding]:
        """The bindings of these Outlook ids for the account (unknown ids left out)."""

    @abc.abstractmethod
    def bound_event_ids(self, account_id: int) -> list[str]:
        """The Outlook ids bound to the account, sorted: a full calendar round (after a 410)
        lists what Outlook holds, never what it deleted, so it checks those it did not list."""

    @abc.abstractmethod
    def unconfirmed_series_ids(self, account_id: int) -> list[str]:
        """The Outlook ids of the account's bound series masters none of whose occurrences is
        bound to the account, sorted: a series the CRM made (or reshaped) whose occurrences
        Outlook has not listed yet. calendarView delta never names a master, so a series
        deleted in Outlook before its occurrences came back is only seen by asking for it."""

    @abc.abstractmethod
    def unconfirmed_occurrences(
        self, account_id: int, start: datetime, end: datetime, *, limit: int
    ) -> list[UnconfirmedOccurrences]:
        """The account's bound series masters with no CRM change pending (not deleted, their
        version pushed), each with its CRM occurrences starting in [start, end) that no
        mailbox holds, in slot order (not bound to any account; deleted and cancelled ones
        left out): at
        most ``limit`` series, the newest masters first; series with no such occurrence are
        left out. A store that never holds an occurrence Outlook has not sent (the embedded
        store: its occurrences come from Outlook) has none to list."""

    @abc.abstractmethod
    def remove_cancelled_occurrences(
        self, account_id: int, removals: Sequence[OccurrenceRemoval], *, lease: Lease | None = None
    ) -> int:
        """Remove each occurrence the daemon found cancelled in Outlook, gone from the CRM
        like a deletion that came from Outlook (nothing is pushed), only if it is still as
        the plan saw it (`OccurrenceRemoval`); the others are left as they are. One
        transaction; answers how many were removed. Raises `LeaseLost` for a stale lease."""

    @abc.abstractmethod
    def event_changes_to_push(self, account_id: int) -> list[CrmEventChange]:
        """CRM-side creations, edits and deletions of the account owner's events that Outlook
        has not seen yet (version > pushed version). Events the CRM held before the account
        was connected are never pushed: connecting must not spam attendees."""

    @abc.abstractmethod
    def mark_event_pushed(
        self,
        account_id: int,
        crm_event_id: int,
        *,
        graph_id: str,
        change_key: str | None,
        version: int,
        ical_uid: str | None = None,
        online_meeting_url: str | None = None,
        unbind: bool = False,
        shape_pushed: bool = False,
    ) -> bool:
        """Outlook now has ``version`` of the event (the version the push carried: its
        expected version) as ``graph_id`` with ``change_key``. ``unbind``: the push removed
        Outlook's copy (a deletion, or a tombstone forgotten), so this account's binding goes;
        a tombstone goes with its last binding. What Outlook filled in on creation (iCalUId,
        the online meeting's join link) is kept.

        ``shape_pushed``: the push carried the event's pattern and times (the organizer's
        create or whole PATCH: `sync.calendar`'s ``carries_shape``), so a pending reshape of
        the series (``CrmEventChange.reshapes_series``) is done and its mark is cleared, if the
        event is still at ``version`` or older. Any other record (another mailbox's answer or
        forget, a details-only PATCH) leaves the mark for the push that carries the shape: the
        store never decides that itself.

        Answers whether the event was still at ``version``. When it was edited since (a stale
        push), only what Outlook now holds is recorded: the binding and its change key, never
        a removal of the event; the newer edit stays pending (its version is above the
        binding's) and goes with the next push. A push never writes over a CRM edit it did
        not see."""

    @abc.abstractmethod
    def upcoming_events_for_partner(
        self, partner_id: int, *, since: datetime, limit: int = 20
    ) -> list[EventSummary]:
        """Meetings with the partner (a company: or its contacts) that have not ended by
        ``since``, soonest first; series masters, deleted and cancelled ones are no meetings.
        The rule is `sync.meetings.is_upcoming`; the partner form's Meetings tab and count
        follow it (the addon's ``res.partner._m365_meeting_domain``, pinned by the shared
        ``meeting_cases.json``)."""

    # --- outbox ------------------------------------------------------------------------------

    @abc.abstractmethod
    def outgoing_mail(self, account_id: int, *, limit: int = 20) -> list[OutgoingMail]:
        """The account's mail to send: queued ones, and ones left ``sending`` (outcome
        unknown: the sender confirms those from their sent copy before anything else), oldest
        first; after them, within ``limit``, the ``sent`` ones whose sent copy is not linked
        yet (no ``graph_id`` or no ``internet_message_id``) and whose ``send_started_at`` is
        within `sync.outbox.LINK_WINDOW` of now, oldest first: the sender only looks for
        their copy (the look right after the send may have failed, and the mail sync links
        only copies in synced folders), never sends them again. A sent mail older than that,
        or without a start time, is not returned."""

    @abc.abstractmethod
    def update_outgoing(
        self,
        mail_id: int,
        state: OutboxState,
        *,
        graph_id: str | None = None,
        internet_message_id: str | None = None,
        conversation_id: str | None = None,
        error: str | None = None,
        send_started_at: datetime | None = None,
    ) -> None:
        """Record a step of a send: ``sending`` with ``send_started_at`` before the send is
        attempted, ``sent`` after Graph's 202, and the sent copy's ids when found."""

    @abc.abstractmethod
    def claim_outgoing(self, mail_id: int, started: datetime) -> bool:
        """Take a queued mail for sending: queued -> ``sending`` with ``started`` (and one
        more attempt), in one conditional write; True only if the mail was still ``queued``.

        The one gate before a send (DESIGN.md, invariant 7): two workers holding the same
        stale outbox list (one lost the account's lease while the CRM was down, the other
        took it over) both try the claim, and only one wins; the loser never sends. A mail
        already ``sending``, ``sent`` or ``failed``, or one deleted meanwhile, is not claimed."""

    # --- free/busy for the CRM's forms (the embedded store has none: it asks Graph directly) -

    @abc.abstractmethod
    def pending_free_busy(self) -> list[FreeBusyRequest]:
        """Free/busy questions the CRM's forms asked and nobody answered yet."""

    @abc.abstractmethod
    def store_free_busy(
        self, request_id: int, results: Sequence[object], *, error: str | None = None
    ) -> None:
        """Answer a request: one ``graph.schedule.Availability`` (address, busy slots, or the
        error Graph gave for that address) per address asked; or ``error``, in words, when
        Outlook could not be asked at all."""

    # --- connecting from the CRM (the embedded store has no web callback) -------------------

    @abc.abstractmethod
    def publish_daemon_info(self, info: dict[str, object]) -> None:
        """Tell the CRM what the daemon is: its public keys (a JWKS, so the CRM can seal
        authorization codes to it), version, and the client secret's expiry date."""

    @abc.abstractmethod
    def pending_connects(self) -> list[PendingConnect]:
        """Authorizations received by the CRM's OAuth callback, not yet redeemed."""

    @abc.abstractmethod
    def claim_connect(self, connect_id: int, holder: str, *, ttl_seconds: float = 120.0) -> bool:
        """Take a pending connect for this replica, so two replicas never redeem the same
        code (the second would fail and could overwrite the first one's success). False when
        another holder took it less than ``ttl_seconds`` ago. Stores served by one process
        need no claim."""

    @abc.abstractmethod
    def claim_free_busy(self, request_id: int, holder: str, *, ttl_seconds: float = 60.0) -> bool:
        """As `claim_connect`, for a free/busy request (one getSchedule per request)."""

    @abc.abstractmethod
    def finish_connect(
        self, connect_id: int, *, account_id: int | None = None, error: str | None = None
    ) -> None:
        """Close a pending connect: it became ``account_id``, or failed with ``error`` (words
        for the user who clicked Connect)."""

    # --- settings the CRM's administrators set ------------------------------------------------

    @abc.abstractmethod
    def crm_settings(self) -> CrmSettings:
        """The sync interval, blocklist and notification URL set in the CRM; they override
        the daemon's own configuration where given. Stores without settings return defaults,
        but every store gives its ``crm_tag`` (the identity our creates carry)."""

    # --- push: Graph change notifications ----------------------------------------------------

    @abc.abstractmethod
    def request_sync(self, account_id: int, at: datetime) -> None:
        """Ask for a cycle of the account (Sync now, a notification): sets
        ``Account.sync_requested_at`` to ``at`` unless a later request is already there."""

    @abc.abstractmethod
    def subscriptions(self, account_id: int) -> list[Subscription]:
        """The account's Graph subscriptions, one per kind at most."""

    @abc.abstractmethod
    def save_subscription(self, subscription: Subscription, *, lease: Lease | None = None) -> None:
        """Create or replace the account's subscription of that kind (one per kind).
        With a lease, a stale one raises `LeaseLost` and nothing is written."""

    @abc.abstractmethod
    def drop_subscription(self, account_id: int, kind: SubscriptionKind) -> None:
        """Forget the account's subscription of that kind (deleted in Graph, or push off)."""

    @abc.abstractmethod
    def subscriptions_by_graph_id(self, graph_ids: Iterable[str]) -> dict[str, Subscription]:
        """The stored subscriptions Graph ids name (a notification endpoint's lookup, to
        check each notification's clientState against the stored hash). Unknown ids are absent."""

    @abc.abstractmethod
    def record_notifications(
        self, notifications: Sequence[ReceivedNotification], at: datetime
    ) -> list[int]:
        """Apply checked notifications in one call: each marks its subscription's
        ``last_notified_at`` and asks its account for a cycle (`request_sync`);
        ``subscriptionRemoved`` sets the subscription's state to ``removed`` and
        ``reauthorizationRequired`` to ``reauthorize``; ``missed`` only asks for a cycle.
        Notifications naming unknown subscriptions are ignored. Returns the account ids asked
        to sync, sorted, without repeats."""

    # --- the command line's own CRM actions (`m365sync send`, `meet`, `folders --choose`) -----
    #
    # What a CRM user does in the CRM's own forms (Compose Email, Schedule Meeting, the
    # account's folder choice), for a CRM without forms. A CRM whose users act in its forms,
    # under their own rights, refuses them with `CrmHasForms` (the sentence names the form to
    # use instead).

    @abc.abstractmethod
    def queue_mail(
        self,
        account_id: int,
        *,
        to: Sequence[EmailAddress],
        subject: str,
        body_html: str,
        cc: Sequence[EmailAddress] = (),
        attachments: Sequence[OutgoingAttachment] = (),
        reply_to_graph_id: str | None = None,
    ) -> int:
        """Record an outgoing mail in the account's outbox (queued); its id."""

    @abc.abstractmethod
    def create_meeting(
        self, account_id: int, event: CalendarEvent, attendees: Sequence[EventLink]
    ) -> int:
        """Record a meeting the account's owner organizes (pushed by the next calendar
        cycle, which sends the invitations); its CRM event id."""

    @abc.abstractmethod
    def busy_times(self, account_id: int, start: datetime, end: datetime) -> list[EventSummary]:
        """The account's own meetings overlapping [start, end), from the synced calendar."""

    @abc.abstractmethod
    def set_folder_choice(
        self, account_id: int, choice: FolderChoice | None, folders: Iterable[str] = ()
    ) -> None:
        """Store which mail folders the account syncs (`m365sync folders --choose`): the
        ``choice``, with the ``folders`` it names (well-known names, display paths or ids) for
        `FolderChoice.CHOSEN`; None returns the account to the daemon's configuration.
        Raises `UnknownAccount`."""

    @abc.abstractmethod
    def close(self) -> None:
        """Release connections."""
