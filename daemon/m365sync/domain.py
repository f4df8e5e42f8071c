"""Plain data shared by every layer.

`graph/` parses Graph JSON into these types, `sync/` decides on them, `crm/` stores them.
None of them knows about HTTP, SQL or RPC, which is what lets `sync/` stay pure.

Words used across the project (defined once, here):

account
    One connected Microsoft mailbox, owned by one CRM user.
folder
    A Graph mail folder, named by its (constant) Graph id; well-known names such as
    ``inbox`` are resolved to ids before anything is stored.
immutable id
    A Graph item id obtained with ``Prefer: IdType="ImmutableId"``; it survives moves
    between folders of the same mailbox. Ids are case-sensitive.
internetMessageId
    The RFC 5322 ``Message-ID``; the same for every copy of a message, in every folder
    and every mailbox, so it is the key that stops duplicates across folders and accounts.
cursor
    Where a folder's delta round stands: the last ``@odata.nextLink`` stored (a round in
    progress) or the ``@odata.deltaLink`` (round finished). Opaque, copied whole.
full round
    A delta round started without a cursor (the first sync, or again after a 410): it lists
    every message of the folder (within the initial window), not changes. What it does not
    list is no longer in the folder, which is decided once the round completes.
lease
    A time-limited claim of one account by one worker, proven by a lease token.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from datetime import date, datetime


class AccountStatus(enum.StrEnum):
    """What the account list shows; `errors.advice_for` maps failures onto it."""

    CONNECTED = "connected"
    SYNCING = "syncing"
    ACTIVE = "active"
    NEEDS_RECONNECT = "needs_reconnect"
    INSUFFICIENT_PERMISSIONS = "insufficient_permissions"
    THROTTLED = "throttled"
    FAILED = "failed"
    PAUSED = "paused"


class Privacy(enum.StrEnum):
    """How much of an account's mail the CRM may keep. What is not shared is never stored."""

    EVERYTHING = "everything"
    SUBJECT = "subject"
    METADATA = "metadata"


class AutoCreate(enum.StrEnum):
    """Which mail may create missing contacts."""

    NONE = "none"
    SENT = "sent"
    SENT_AND_RECEIVED = "sent_and_received"


class FolderChoice(enum.StrEnum):
    """Which mail folders an account syncs (issue #14)."""

    INBOX_SENT = "inbox_sent"  # Inbox and Sent Items: the default
    ALL = "all"  # every mail folder of the tree but trash, junk, drafts, outbox, chats, searches
    CHOSEN = "chosen"  # the folders listed (well-known name, display path or id)


class CursorKind(enum.StrEnum):
    NEXT = "next"  # a round in progress: resume from this @odata.nextLink
    DELTA = "delta"  # a finished round: the next round starts from this @odata.deltaLink


@dataclass(frozen=True, slots=True)
class EmailAddress:
    """One participant of a message. ``address`` keeps the case Graph gave; compare normalised."""

    address: str
    name: str = ""


@dataclass(frozen=True, slots=True)
class Attachment:
    name: str
    size: int
    content_type: str


@dataclass(slots=True)
class MailMessage:
    """One Outlook message as Graph describes it (only the fields we store)."""

    graph_id: str
    internet_message_id: str | None
    conversation_id: str | None
    folder_id: str
    subject: str | None
    sender: EmailAddress | None
    to: tuple[EmailAddress, ...] = ()
    cc: tuple[EmailAddress, ...] = ()
    bcc: tuple[EmailAddress, ...] = ()
    reply_to: tuple[EmailAddress, ...] = ()
    received_at: datetime | None = None
    sent_at: datetime | None = None
    body_html: str | None = None
    body_preview: str | None = None
    is_draft: bool = False
    has_attachments: bool = False
    attachments: tuple[Attachment, ...] = ()
    headers: dict[str, str] = field(default_factory=dict)
    change_key: str | None = None
    # What the message said, before the account's privacy removed anything (sender, subject,
    # body text: m365sync.sync.mail.content_fingerprint). The CRM merges two copies of one
    # internetMessageId only when sender and fingerprint agree too: the sender controls the
    # Message-ID, so it alone never proves two mails are the same message.
    fingerprint: str | None = None


@dataclass(frozen=True, slots=True)
class RejectedItem:
    """A delta item that could not be parsed: counted and reported, never silently dropped."""

    graph_id: str | None
    reason: str


@dataclass(slots=True)
class DeltaPage:
    """One page of a delta round, already parsed.

    Exactly one of ``next_link`` and ``delta_link`` is set on a well-formed page.
    """

    messages: list[MailMessage]
    removed_ids: list[str]
    rejected: list[RejectedItem]
    next_link: str | None
    delta_link: str | None


@dataclass(frozen=True, slots=True)
class MailFolder:
    """A mail folder as Graph lists it. ``path`` is its display names from the top of the
    mailbox joined by ``/`` (``Inbox/Key accounts``), filled when the tree was walked."""

    graph_id: str
    display_name: str
    parent_id: str | None = None
    well_known_name: str | None = None
    total_items: int = 0
    child_folder_count: int = 0
    unread_items: int = 0
    path: str = ""
    # A mailSearchFolder: a saved search whose members live in other folders (never synced).
    is_search: bool = False
    is_hidden: bool = False

    @property
    def label(self) -> str:
        """How a sentence names the folder: its path, else its name, else its id."""
        return self.path or self.display_name or self.graph_id


@dataclass(frozen=True, slots=True)
class KnownFolder:
    """A folder of the tree the last cycle listed, as the CRM keeps it, and whether that cycle
    synced it."""

    folder: MailFolder
    synced: bool = False


@dataclass(frozen=True, slots=True)
class Cursor:
    link: str
    kind: CursorKind
    # A next link of a full round still open (not of a round of changes): the pages that
    # follow keep listing the folder, and its last page reconciles (`RoundMark`).
    full_round: bool = False


@dataclass(frozen=True, slots=True)
class RoundMark:
    """What a page of a full round tells the store besides its data (`sync.rounds` decides).

    ``starts``: the round's first page; the store opens a new round of the folder (numbered
    by the store), with the round's window ``since`` (None: the whole folder), and the
    folder's skip tally starts again from this page's skips (one round's count, never two).
    ``listed_ids``: every id the page lists as present, stored or skipped; the store marks the
    account's links to this folder among them as seen by the round.
    ``completes``: the round's last page (its cursor is the delta link); the store closes the
    round. What the round did not list is in this same page's ``removed_ids`` / ``moved``:
    the reconciliation commits with the delta link, or not at all.
    """

    starts: bool = False
    since: datetime | None = None
    listed_ids: tuple[str, ...] = ()
    completes: bool = False


@dataclass(slots=True)
class Account:
    """A connected mailbox as the CRM stores it. ``sealed_token_cache`` is a JWE, never plain."""

    id: int
    address: str
    display_name: str = ""
    tenant_id: str = ""
    object_id: str = ""
    owner: str = ""
    status: AccountStatus = AccountStatus.CONNECTED
    status_detail: str = ""
    status_until: datetime | None = None
    last_sync_at: datetime | None = None
    privacy: Privacy = Privacy.EVERYTHING
    auto_create: AutoCreate = AutoCreate.NONE
    own_domains: tuple[str, ...] = ()
    sealed_token_cache: str | None = None
    # When someone (Sync now, a Graph change notification) last asked for a cycle; a cycle
    # that started after it answers it, so nothing ever has to clear it.
    sync_requested_at: datetime | None = None
    # The account's own folder choice; None follows the daemon's configuration
    # (``sync.mail_folder_choice`` / ``sync.mail_folders``). ``mail_folders`` are the chosen
    # folders (well-known names, display paths or ids) when the choice is CHOSEN.
    folder_choice: FolderChoice | None = None
    mail_folders: tuple[str, ...] = ()
    # How the CRM last saw each chosen id (its path), so a sentence can name a folder gone.
    mail_folder_labels: dict[str, str] = field(default_factory=dict)
    # False when the CRM says the owner is not an internal user (a portal user, say): such an
    # account is never synced, however its row got there (issue #13).
    owner_internal: bool = True


@dataclass(frozen=True, slots=True)
class Lease:
    account_id: int
    token: int
    holder: str
    expires_at: datetime


@dataclass(slots=True)
class Partner:
    """A CRM contact or company (Odoo ``res.partner``)."""

    id: int
    name: str
    email: str | None = None
    is_company: bool = False
    parent_id: int | None = None
    website: str | None = None


@dataclass(slots=True)
class PartnerDraft:
    """A contact or company the sync wants created (auto-creation)."""

    name: str
    email: str | None = None
    is_company: bool = False
    company_domain: str | None = None
    website: str | None = None


@dataclass(frozen=True, slots=True)
class ParticipantLink:
    """A participant of a stored message and the partners it matched."""

    role: str  # from, to, cc, bcc, reply_to
    address: str  # normalised
    name: str
    partner_id: int | None
    company_id: int | None


@dataclass(slots=True)
class StoredMessage:
    """What the sync hands the CRM for one message: the message (privacy applied) and its links."""

    message: MailMessage
    participants: list[ParticipantLink]


@dataclass(slots=True)
class PageWrite:
    """Everything one Graph page changes in the CRM, written in one gateway call with its cursor."""

    account_id: int
    folder_id: str
    upserts: list[StoredMessage]
    removed_ids: list[str]
    cursor: Cursor
    skipped: dict[str, int] = field(default_factory=dict)
    # Removed from this folder but still in the mailbox (archived, moved to an unsynced
    # folder): graph id -> the folder it lives in now. Kept, not deleted.
    moved: dict[str, str] = field(default_factory=dict)
    # Set on the pages of a full round (None on a round of changes): see `RoundMark`.
    round: RoundMark | None = None


@dataclass(frozen=True, slots=True)
class PageResult:
    created: int
    updated: int
    linked: int
    removed: int


@dataclass(frozen=True, slots=True)
class ThreadSummary:
    conversation_id: str
    subject: str
    message_count: int
    last_at: datetime | None
    participants: tuple[str, ...]
    # The contacts and companies the participants matched (ids of CRM partners).
    partner_ids: tuple[int, ...] = ()


@dataclass(frozen=True, slots=True)
class PendingConnect:
    """An authorization the CRM's OAuth callback received for the daemon to redeem.

    ``sealed`` is a JWE (purpose ``authorization-code``) sealed to the daemon's public key,
    holding JSON ``{"code", "code_verifier", "redirect_uri"}``: the CRM cannot open it.
    """

    id: int
    owner: str
    sealed: str
    # False when the owner is not an internal user of the CRM: never redeemed.
    owner_internal: bool = True


@dataclass(slots=True)
class SyncRun:
    """The figures of one mail cycle for one account, shown in the summary and the status."""

    account_id: int
    started_at: datetime
    finished_at: datetime | None = None
    pages: int = 0
    imported: int = 0
    updated: int = 0
    removed: int = 0
    skipped: dict[str, int] = field(default_factory=dict)
    error: str | None = None
    # The calendar's figures of the same cycle: pulled (new, updated, removed) and pushed.
    calendar: dict[str, int] = field(default_factory=dict)
    # The outbox's: sent, failed, pending.
    outbox: dict[str, int] = field(default_factory=dict)
    # Push notifications after the cycle, in words ("" when push is not used).
    push: str = ""
    # Round trips of the cycle: to Graph (a JSON batch counts once; retries and the 401
    # retry count), and to the identity platform's token endpoint (refreshes).
    graph_requests: int = 0
    token_requests: int = 0
    # Each part the cycle ran (outbox, mail, calendar, push, in that order): None when it
    # succeeded, else the sentence saying why it failed and what to do. One part's failure
    # never hides another's success (issue #14); ``error`` then names the failed parts.
    parts: dict[str, str | None] = field(default_factory=dict)
    # Mail folders that could not be synced this cycle: the folder's label -> the sentence.
    # The other folders synced; the account's line says which folder needs attention.
    folder_problems: dict[str, str] = field(default_factory=dict)


# --- calendar -----------------------------------------------------------------------------


class EventType(enum.StrEnum):
    """Graph's event ``type``: a series master expands into occurrences and exceptions."""

    SINGLE = "singleInstance"
    OCCURRENCE = "occurrence"
    EXCEPTION = "exception"
    SERIES_MASTER = "seriesMaster"


class Sensitivity(enum.StrEnum):
    NORMAL = "normal"
    PERSONAL = "personal"
    PRIVATE = "private"
    CONFIDENTIAL = "confidential"


class ShowAs(enum.StrEnum):
    FREE = "free"
    TENTATIVE = "tentative"
    BUSY = "busy"
    OOF = "oof"
    WORKING_ELSEWHERE = "workingElsewhere"
    UNKNOWN = "unknown"


class ResponseStatus(enum.StrEnum):
    NONE = "none"
    ORGANIZER = "organizer"
    TENTATIVE = "tentativelyAccepted"
    ACCEPTED = "accepted"
    DECLINED = "declined"
    NOT_RESPONDED = "notResponded"


@dataclass(frozen=True, slots=True)
class Attendee:
    address: str
    name: str = ""
    kind: str = "required"  # required | optional | resource
    response: ResponseStatus = ResponseStatus.NONE


@dataclass(frozen=True, slots=True)
class Recurrence:
    """Graph's ``patternedRecurrence``, field for field (names in snake case).

    pattern_type: daily, weekly, absoluteMonthly, relativeMonthly, absoluteYearly,
    relativeYearly. range_type: endDate, noEnd, numbered. ``start_date`` is the date of the
    first occurrence (Graph requires it to equal the date of the master's start).
    """

    pattern_type: str
    start_date: date
    interval: int = 1
    days_of_week: tuple[str, ...] = ()  # "monday"...
    day_of_month: int = 0
    month: int = 0
    first_day_of_week: str = "sunday"
    index: str = "first"  # first, second, third, fourth, last
    range_type: str = "noEnd"
    end_date: date | None = None
    number_of_occurrences: int = 0
    time_zone: str = ""  # recurrenceTimeZone, as Graph gives it (often a Windows name)


@dataclass(slots=True)
class CalendarEvent:
    """One Outlook event (single, occurrence, exception or series master).

    Timed events carry ``start``/``end`` as aware UTC datetimes; all-day events carry
    ``start_date``/``end_date`` (end exclusive) instead, so they stay on their day in every
    zone. ``time_zone`` is the IANA zone the organiser planned it in (from Graph's
    ``originalStartTimeZone``, mapped from Windows names), used to expand recurrences.
    ``end_time_zone`` is the IANA zone of the end when it was planned in another one (a
    flight: Graph's ``originalEndTimeZone``); empty when the end is in ``time_zone``.
    """

    graph_id: str
    ical_uid: str | None
    event_type: EventType
    subject: str | None
    start: datetime | None
    end: datetime | None
    time_zone: str = "UTC"
    is_all_day: bool = False
    start_date: date | None = None
    end_date: date | None = None
    series_master_id: str | None = None
    original_start: datetime | None = None  # occurrences and exceptions: the slot they fill
    recurrence: Recurrence | None = None  # series masters only
    body_html: str | None = None
    location: str | None = None
    online_meeting_url: str | None = None
    sensitivity: Sensitivity = Sensitivity.NORMAL
    show_as: ShowAs = ShowAs.BUSY
    is_cancelled: bool = False
    organizer: EmailAddress | None = None
    attendees: tuple[Attendee, ...] = ()
    change_key: str | None = None
    last_modified: datetime | None = None
    transaction_id: str | None = None
    # The mailbox owner's own answer to the invitation (Graph's ``responseStatus``).
    my_response: ResponseStatus = ResponseStatus.NONE
    # Outlook attaches its default online meeting (Teams) and fills online_meeting_url.
    is_online_meeting: bool = False
    end_time_zone: str = ""  # see above: only when the end's zone differs from time_zone
    # Graph's ``isOrganizer``: the mailbox's owner organizes it (its own copy, not an
    # invitation); None when Graph did not say.
    is_organizer: bool | None = None


@dataclass(frozen=True, slots=True)
class EventLink:
    """An organizer or attendee of a stored event and the partners it matched."""

    role: str  # organizer | required | optional | resource
    address: str  # normalised
    name: str
    response: ResponseStatus
    partner_id: int | None
    company_id: int | None


@dataclass(slots=True)
class StoredEvent:
    """What the sync hands the CRM for one Outlook event (privacy already applied).

    ``keep_details``: a private Outlook event already bound to a CRM event. The event comes
    reduced to busy time, so the store updates only what is not its details (times, time zone,
    all-day, show-as, sensitivity, recurrence, change key) and keeps the CRM's subject, body,
    location, online meeting and attendees.

    ``crm_event_id`` and ``expected_version`` are the plan's verdict on where it goes
    (`sync.calendar.place`): the CRM event it updates (the one bound to it, or the same meeting
    another mailbox brought) and the version the plan saw of that event; None, None: a new
    CRM event. A store whose state no longer matches (another binding, another version)
    raises `StalePlan` and writes nothing of the page."""

    event: CalendarEvent
    attendees: list[EventLink]
    keep_details: bool = False
    crm_event_id: int | None = None
    expected_version: int | None = None


@dataclass(slots=True)
class EventPageWrite:
    """One calendarView delta page for the CRM, written in one call with its cursor.

    Series masters (fetched separately for their recurrence) come among the upserts, before
    their occurrences, so every occurrence finds its series. ``owner_address`` is the
    mailbox's own (normalised) address the page was planned for: whose answers are the
    account's user's (`sync.attendees.odoo_people_values`).
    """

    account_id: int
    calendar_id: str
    upserts: list[StoredEvent]
    removed_ids: list[str]
    cursor: Cursor
    skipped: dict[str, int] = field(default_factory=dict)
    owner_address: str | None = None


@dataclass(frozen=True, slots=True)
class EventBinding:
    """What the CRM knows of one Outlook event for one account: the echo and conflict state.

    ``version`` counts the CRM-side edits of the event; ``pushed_version`` is the version
    Outlook has (written by us, or received from it). ``change_key`` is the last changeKey we
    wrote or read: a delta item carrying it is our own echo.
    """

    crm_event_id: int
    graph_id: str
    change_key: str | None
    version: int
    pushed_version: int
    crm_modified_at: datetime | None


@dataclass(frozen=True, slots=True)
class MeetingCandidate:
    """A CRM event an unbound Outlook item may be the same meeting as (`sync.calendar.
    same_meeting` decides), as the store reports it for one account.

    ``series_master_id`` is the CRM event holding its series (None for a single event or a
    master); ``bound_graph_id`` the graph id this account's binding gives it (None: unbound
    here). ``start`` / ``start_date`` are its slot (timed / all-day)."""

    crm_event_id: int
    version: int
    ical_uid: str | None
    is_series_master: bool
    deleted: bool
    series_master_id: int | None
    bound_graph_id: str | None
    is_all_day: bool
    start: datetime | None
    start_date: date | None


@dataclass(frozen=True, slots=True)
class UnconfirmedOccurrences:
    """A series bound to the account, with no CRM change of its master pending, and the CRM
    occurrences of it that no mailbox holds (`CrmGateway.unconfirmed_occurrences`).

    Odoo expands a series into events of its own; they are bound when Outlook's occurrences
    come back, by their slot. An occurrence Outlook cancelled before then never comes back
    (calendarView delta reports only the removal of an id the CRM never had), so the daemon
    asks Outlook for the series' instances over these slots and removes the CRM occurrences
    none of them fills (`sync.calendar.cancelled_occurrences`)."""

    master_graph_id: str
    master_crm_event_id: int
    master_version: int
    occurrences: tuple[MeetingCandidate, ...]


@dataclass(frozen=True, slots=True)
class OccurrenceRemoval:
    """Remove a CRM occurrence Outlook cancelled, only if it is still as the plan saw it: at
    ``expected_version``, no mailbox holding it, not deleted, and its series' master still at
    ``master_version`` with no change pending (a CRM edit made meanwhile is never lost)."""

    crm_event_id: int
    expected_version: int
    master_crm_event_id: int
    master_version: int


@dataclass(slots=True)
class CrmEventChange:
    """A CRM-side change waiting to go to Outlook (created, edited or deleted in the CRM)."""

    crm_event_id: int
    event: CalendarEvent  # graph_id is "" until the event exists in Outlook
    version: int
    deleted: bool = False
    attendee_addresses: tuple[str, ...] = ()
    # The event was made in the CRM for this account (its owner account). Whether the account
    # organizes it, or may only answer it, is `sync.calendar.organizes`.
    owned_by_account: bool = True
    my_response: ResponseStatus = ResponseStatus.NONE
    # A series master's change: False when only its details changed (not its pattern, start or
    # end), so the PATCH leaves those out and Outlook keeps the series' exceptions.
    reshapes_series: bool = True


@dataclass(frozen=True, slots=True)
class EventSummary:
    """A meeting as the partner form and the demo list it."""

    crm_event_id: int
    subject: str
    start: datetime | None
    end: datetime | None
    is_all_day: bool
    start_date: date | None
    recurring: bool
    attendees: tuple[str, ...]


# --- outbox -------------------------------------------------------------------------------


class OutboxState(enum.StrEnum):
    QUEUED = "queued"
    SENDING = "sending"
    SENT = "sent"
    FAILED = "failed"


@dataclass(frozen=True, slots=True)
class OutgoingAttachment:
    name: str
    content_type: str
    content: bytes


@dataclass(slots=True)
class OutgoingMail:
    """A mail the CRM queued for sending through an account (Compose Email).

    ``send_started_at`` is written before the send is attempted: a mail found ``sending`` is
    one whose outcome is unknown, confirmed from its sent copy wherever the person filed it
    (never sent again blindly). ``graph_id`` and ``internet_message_id`` are those of the
    sent copy once found (its immutable id stays the same in any folder).
    ``reply_to_graph_id`` makes it a reply in that message's thread.
    """

    id: int
    account_id: int
    to: tuple[EmailAddress, ...]
    subject: str
    body_html: str
    cc: tuple[EmailAddress, ...] = ()
    bcc: tuple[EmailAddress, ...] = ()
    attachments: tuple[OutgoingAttachment, ...] = ()
    reply_to_graph_id: str | None = None
    state: OutboxState = OutboxState.QUEUED
    graph_id: str | None = None
    send_started_at: datetime | None = None
    internet_message_id: str | None = None
    conversation_id: str | None = None
    error: str | None = None
    attempts: int = 0
    # The CRM user who queued it: only the account's owner may send through it.
    requested_by: str = ""

    @property
    def idempotency_key(self) -> str:
        """Carried as the ``x-m365sync-outbox`` internet header of the message."""
        return f"m365sync-outbox-{self.id}"  # graph.send.OUTBOX_PREFIX + id


# --- push: Graph change notifications -------------------------------------------------------


class SubscriptionKind(enum.StrEnum):
    """What a Graph subscription watches for one account."""

    MAIL = "mail"  # me/messages: every folder
    CALENDAR = "calendar"  # me/events


class SubscriptionState(enum.StrEnum):
    """``active``: Graph delivers; ``lapsed``: expired or could not be renewed or created
    (the account polls at the normal interval); ``removed``: Graph said subscriptionRemoved;
    ``reauthorize``: Graph said reauthorizationRequired (renew at the next cycle)."""

    ACTIVE = "active"
    LAPSED = "lapsed"
    REMOVED = "removed"
    REAUTHORIZE = "reauthorize"


@dataclass(slots=True)
class Subscription:
    """A Graph change-notification subscription of one account, as the CRM stores it.

    The clientState secret is never stored: only its SHA-256 (hex), which is all the
    notification endpoint needs to check a notification came from Graph for this subscription.
    """

    account_id: int
    kind: SubscriptionKind
    graph_id: str
    resource: str
    expires_at: datetime
    client_state_hash: str
    state: SubscriptionState = SubscriptionState.ACTIVE
    last_notified_at: datetime | None = None
    detail: str = ""
    # Where Graph posts for it: a subscription's URL cannot be changed, so a new URL (Odoo's
    # web.base.url moved, notifications.url edited) means a new subscription at once.
    notification_url: str = ""


@dataclass(frozen=True, slots=True)
class ReceivedNotification:
    """One checked notification: the subscription it names and what it says (a change, or a
    lifecycle event: ``subscriptionRemoved``, ``reauthorizationRequired``, ``missed``)."""

    subscription_id: str
    change_type: str | None = None
    lifecycle_event: str | None = None
    resource: str = ""


@dataclass(frozen=True, slots=True)
class CrmSettings:
    """What the CRM's administrators set for the daemon (Odoo's Settings page): they win over
    the daemon's own configuration when given. ``notification_url`` is where Graph should post
    change notifications (the addon's endpoint), empty when push is off in the CRM.

    ``crm_tag`` is a short stable identity of the CRM's database (1-16 lowercase letters and
    digits: Odoo's derives from its ``database.uuid``, the embedded store's is random, made
    with its file): our creates' ``transactionId`` carries it (`sync.calendar.
    transaction_id`), so two CRMs connected to one mailbox never take each other's creates
    for their own. Empty from a CRM that gives none (an older addon): the legacy untagged
    form."""

    sync_interval_seconds: int | None = None
    blocklist: tuple[str, ...] = ()
    notification_url: str = ""
    crm_tag: str = ""
