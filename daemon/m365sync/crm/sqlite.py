"""The embedded store: `CrmGateway` on one SQLite file, for the demo, CI and single users.

It is a real backend, not a mock: the contract suite in `tests/contract` runs on it exactly as
it runs on Odoo, and its tables mirror the Odoo addon's models so the two stay easy to compare.

How it keeps the gateway's rules:

* **One transaction per call that writes.** Every write opens ``BEGIN IMMEDIATE`` (the
  write lock is taken at once, so two daemon processes on one file serialise instead of
  failing half-way) and commits or rolls back as a whole. A page, its removals and its cursor
  are one transaction, so the cursor never runs ahead of the data.
* **Idempotent upserts.** A message is found by its (account, immutable id) link, else by its
  internetMessageId; its content carries a fingerprint, so a replayed page updates nothing.
* **Leases without a held lock.** A lease is a row's holder, token and expiry; tokens come from
  a sequence, so they only grow, even after a release.
* **Threads and processes.** One connection per thread (and per process after a fork); WAL
  lets readers run beside the one writer; ``busy_timeout`` makes writers wait their turn.

Datetimes are stored as ISO-8601 UTC text with microseconds (so text order is time order) and
come back as aware UTC datetimes. The file holds sealed tokens, so it is created mode 0600.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import sqlite3
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

from m365sync.crm.gateway import AccountSpec, CrmGateway
from m365sync.crm.sqlite_calendar import (
    V2_CALENDAR,
    V4_ONLINE_MEETINGS,
    V6_SERIES_RESHAPED,
    CalendarStore,
    upcoming_meeting,
)
from m365sync.crm.sqlite_folders import (
    CHOICE_COLUMNS,
    V10_MAIL_FOLDERS,
    FolderStore,
    folder_choice_of,
)
from m365sync.crm.sqlite_forms import NoCrmForms
from m365sync.crm.sqlite_outbox import V3_OUTBOX, OutboxStore
from m365sync.crm.sqlite_push import V5_PUSH, PushStore
from m365sync.crm.sqlite_rebuild import rebuild_with_autoincrement
from m365sync.crm.sqlite_time import dt_text as _dt_text
from m365sync.crm.sqlite_time import dt_value as _dt_value
from m365sync.domain import (
    Account,
    AccountStatus,
    Attachment,
    AutoCreate,
    Cursor,
    CursorKind,
    EmailAddress,
    Lease,
    MailMessage,
    PageResult,
    PageWrite,
    Partner,
    PartnerDraft,
    Privacy,
    StoredMessage,
    SyncRun,
    ThreadSummary,
)
from m365sync.errors import CrmError, CrmUnavailable, LeaseLost, UnknownAccount
from m365sync.sync.addresses import (
    address_key,
    domain_of_email,
    domain_of_website,
    normalise_address,
    normalise_domain,
)
from m365sync.sync.mail import content_fingerprint

__all__ = ["SCHEMA_VERSION", "SqliteGateway"]

# --- schema -------------------------------------------------------------------------------
#
# Each entry migrates the file from version i to i + 1 (PRAGMA user_version). Never edit a
# released entry: append a new one. Statements are separated by ";" at the end of a line.

_V1 = """
CREATE TABLE m365_sequence (
    name TEXT PRIMARY KEY,
    value INTEGER NOT NULL
);
INSERT INTO m365_sequence (name, value) VALUES ('lease_token', 0);

CREATE TABLE m365_account (
    id INTEGER PRIMARY KEY,
    address TEXT NOT NULL,
    address_normalized TEXT NOT NULL,
    display_name TEXT NOT NULL DEFAULT '',
    tenant_id TEXT NOT NULL DEFAULT '',
    object_id TEXT NOT NULL DEFAULT '',
    owner TEXT NOT NULL DEFAULT '',
    status TEXT NOT NULL DEFAULT 'connected',
    status_detail TEXT NOT NULL DEFAULT '',
    status_until TEXT,
    last_sync_at TEXT,
    privacy TEXT NOT NULL DEFAULT 'everything',
    auto_create TEXT NOT NULL DEFAULT 'none',
    own_domains TEXT NOT NULL DEFAULT '[]',
    sealed_token_cache TEXT,
    lease_holder TEXT,
    lease_token INTEGER,
    lease_expires_at TEXT,
    lease_attempts INTEGER NOT NULL DEFAULT 0
);
CREATE UNIQUE INDEX m365_account_identity ON m365_account (tenant_id, object_id)
    WHERE tenant_id != '' AND object_id != '';
CREATE INDEX m365_account_address ON m365_account (address_normalized);

CREATE TABLE m365_account_folder (
    id INTEGER PRIMARY KEY,
    account_id INTEGER NOT NULL REFERENCES m365_account (id) ON DELETE CASCADE,
    folder_id TEXT NOT NULL,
    cursor_link TEXT,
    cursor_kind TEXT CHECK (cursor_kind IN ('next', 'delta')),
    skipped TEXT NOT NULL DEFAULT '{}',
    UNIQUE (account_id, folder_id)
);

CREATE TABLE res_partner (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL,
    email TEXT,
    email_normalized TEXT,
    email_domain TEXT,
    is_company INTEGER NOT NULL DEFAULT 0,
    parent_id INTEGER REFERENCES res_partner (id) ON DELETE SET NULL,
    website TEXT,
    domain TEXT
);
CREATE INDEX res_partner_email ON res_partner (email_normalized);
CREATE INDEX res_partner_email_domain ON res_partner (email_domain) WHERE is_company = 1;
CREATE INDEX res_partner_domain ON res_partner (domain) WHERE is_company = 1;
CREATE INDEX res_partner_parent ON res_partner (parent_id);

CREATE TABLE m365_mail_thread (
    id INTEGER PRIMARY KEY,
    conversation_id TEXT NOT NULL UNIQUE
);

CREATE TABLE m365_mail_message (
    id INTEGER PRIMARY KEY,
    internet_message_id TEXT,
    conversation_id TEXT,
    thread_id INTEGER REFERENCES m365_mail_thread (id) ON DELETE SET NULL,
    subject TEXT,
    from_address TEXT,
    from_name TEXT,
    received_at TEXT,
    sent_at TEXT,
    body_html TEXT,
    body_preview TEXT,
    is_draft INTEGER NOT NULL DEFAULT 0,
    has_attachments INTEGER NOT NULL DEFAULT 0,
    headers TEXT NOT NULL DEFAULT '{}',
    content_hash TEXT NOT NULL
);
CREATE UNIQUE INDEX m365_mail_message_imid ON m365_mail_message (internet_message_id)
    WHERE internet_message_id IS NOT NULL;
CREATE INDEX m365_mail_message_thread ON m365_mail_message (thread_id);

CREATE TABLE m365_mail_message_link (
    id INTEGER PRIMARY KEY,
    message_id INTEGER NOT NULL REFERENCES m365_mail_message (id) ON DELETE CASCADE,
    account_id INTEGER NOT NULL REFERENCES m365_account (id) ON DELETE CASCADE,
    folder_id TEXT NOT NULL,
    graph_id TEXT NOT NULL,
    change_key TEXT,
    UNIQUE (account_id, graph_id)
);
CREATE INDEX m365_mail_message_link_message ON m365_mail_message_link (message_id);

CREATE TABLE m365_mail_participant (
    id INTEGER PRIMARY KEY,
    message_id INTEGER NOT NULL REFERENCES m365_mail_message (id) ON DELETE CASCADE,
    role TEXT NOT NULL,
    address TEXT NOT NULL,
    name TEXT NOT NULL DEFAULT '',
    partner_id INTEGER REFERENCES res_partner (id) ON DELETE SET NULL,
    company_id INTEGER REFERENCES res_partner (id) ON DELETE SET NULL
);
CREATE INDEX m365_mail_participant_message ON m365_mail_participant (message_id);
CREATE INDEX m365_mail_participant_partner ON m365_mail_participant (partner_id);
CREATE INDEX m365_mail_participant_company ON m365_mail_participant (company_id);

CREATE TABLE m365_mail_attachment (
    id INTEGER PRIMARY KEY,
    message_id INTEGER NOT NULL REFERENCES m365_mail_message (id) ON DELETE CASCADE,
    name TEXT NOT NULL,
    size INTEGER NOT NULL,
    content_type TEXT NOT NULL
);
CREATE INDEX m365_mail_attachment_message ON m365_mail_attachment (message_id);

CREATE TABLE m365_sync_run (
    id INTEGER PRIMARY KEY,
    account_id INTEGER NOT NULL REFERENCES m365_account (id) ON DELETE CASCADE,
    started_at TEXT NOT NULL,
    finished_at TEXT,
    figures TEXT NOT NULL DEFAULT '{}',
    error TEXT
);
CREATE INDEX m365_sync_run_account ON m365_sync_run (account_id, started_at);

CREATE TABLE m365_calendar_event (
    id INTEGER PRIMARY KEY,
    account_id INTEGER NOT NULL REFERENCES m365_account (id) ON DELETE CASCADE,
    graph_id TEXT NOT NULL,
    ical_uid TEXT,
    transaction_id TEXT,
    change_key TEXT,
    subject TEXT,
    body_html TEXT,
    location TEXT,
    start_at TEXT,
    end_at TEXT,
    time_zone TEXT,
    is_all_day INTEGER NOT NULL DEFAULT 0,
    sensitivity TEXT,
    show_as TEXT,
    event_type TEXT,
    series_master_id TEXT,
    rrule TEXT,
    organizer_address TEXT,
    is_cancelled INTEGER NOT NULL DEFAULT 0,
    UNIQUE (account_id, graph_id)
);
CREATE UNIQUE INDEX m365_calendar_event_transaction
    ON m365_calendar_event (account_id, transaction_id) WHERE transaction_id IS NOT NULL;

CREATE TABLE m365_calendar_attendee (
    id INTEGER PRIMARY KEY,
    event_id INTEGER NOT NULL REFERENCES m365_calendar_event (id) ON DELETE CASCADE,
    address TEXT NOT NULL,
    name TEXT NOT NULL DEFAULT '',
    attendee_type TEXT,
    response TEXT,
    partner_id INTEGER REFERENCES res_partner (id) ON DELETE SET NULL
);
CREATE INDEX m365_calendar_attendee_event ON m365_calendar_attendee (event_id);

CREATE TABLE m365_outbox (
    id INTEGER PRIMARY KEY,
    account_id INTEGER NOT NULL REFERENCES m365_account (id) ON DELETE CASCADE,
    idempotency_key TEXT NOT NULL UNIQUE,
    state TEXT NOT NULL DEFAULT 'queued'
        CHECK (state IN ('queued', 'sending', 'sent', 'failed')),
    partner_id INTEGER REFERENCES res_partner (id) ON DELETE SET NULL,
    payload TEXT NOT NULL DEFAULT '{}',
    internet_message_id TEXT,
    created_at TEXT NOT NULL,
    sent_at TEXT,
    error TEXT
);
CREATE INDEX m365_outbox_state ON m365_outbox (state);
"""

# Work domains were kept in their punycode form (xn--...) before the store used the sync's
# domain rule: recompute them with the rule itself (a function registered on each connection).
V7_UNICODE_DOMAINS = """
UPDATE res_partner SET domain = m365_domain_of_website(website)
    WHERE website IS NOT NULL AND domain LIKE '%xn--%';
UPDATE res_partner SET email_domain = m365_domain_of_email(email_normalized)
    WHERE email_domain LIKE '%xn--%';
"""

# Issue #13: a Message-ID alone never merges two mails (its sender controls it). A message is
# keyed by (internetMessageId, sender, content fingerprint); rows from before keep a NULL
# fingerprint and are adopted by the first copy from the same sender.
V8_MAIL_DEDUPE = """
DROP INDEX IF EXISTS m365_mail_message_imid;
CREATE INDEX IF NOT EXISTS m365_mail_message_imid_any ON m365_mail_message (internet_message_id)
    WHERE internet_message_id IS NOT NULL;
CREATE TABLE IF NOT EXISTS m365_mail_message_key (
    message_id INTEGER PRIMARY KEY REFERENCES m365_mail_message (id) ON DELETE CASCADE,
    internet_message_id TEXT NOT NULL,
    sender_key TEXT NOT NULL DEFAULT '',
    fingerprint TEXT NOT NULL
);
CREATE UNIQUE INDEX IF NOT EXISTS m365_mail_message_key_uniq
    ON m365_mail_message_key (internet_message_id, sender_key, fingerprint);
"""

# Issue #14: a full round (first sync, or after a 410) reconciles what it no longer lists.
# A folder numbers its full rounds; a link remembers the last round of its folder that listed
# it (or that was open when it entered the folder). Existing links start at round 0, so the
# first full round after the upgrade must list them to keep them.
V9_FULL_ROUNDS = """
ALTER TABLE m365_account_folder ADD COLUMN round_number INTEGER NOT NULL DEFAULT 0;
ALTER TABLE m365_account_folder ADD COLUMN round_open INTEGER NOT NULL DEFAULT 0;
ALTER TABLE m365_account_folder ADD COLUMN round_since TEXT;
ALTER TABLE m365_mail_message_link ADD COLUMN round_seen INTEGER NOT NULL DEFAULT 0;
CREATE INDEX IF NOT EXISTS m365_mail_message_link_folder
    ON m365_mail_message_link (account_id, folder_id);
"""


# Issue #17: a short random identity of this store, which our creates' transactionId carries
# (`CrmSettings.crm_tag`), so another CRM connected to the same mailbox never takes them for
# its own. Made once, with the file (or this step); never changed after.
V12_STORE_TAG = """
CREATE TABLE m365_store_setting (
    name TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
INSERT INTO m365_store_setting (name, value) VALUES ('crm_tag', lower(hex(randomblob(4))));
"""


def v11_ids_never_reused(conn: sqlite3.Connection) -> None:
    """Issue #17: a CRM event's id names its Graph create (``transactionId``), and a deleted
    event's row goes once Outlook has been told; without AUTOINCREMENT the next event could
    get the id of the last one deleted. Existing files are rebuilt in place."""
    rebuild_with_autoincrement(conn, "crm_calendar_event")


# What each privacy level withholds from what an account contributes to a message.
_WITHHELD = {
    Privacy.EVERYTHING: (),
    Privacy.SUBJECT: ("body_html", "body_preview", "attachments", "headers"),
    Privacy.METADATA: ("subject", "body_html", "body_preview", "attachments", "headers"),
}

# A step is SQL text, or a function of the connection for what SQL alone cannot say.
_MIGRATIONS: tuple[str | Callable[[sqlite3.Connection], None], ...] = (
    _V1,
    V2_CALENDAR,
    V3_OUTBOX,
    V4_ONLINE_MEETINGS,
    V5_PUSH,
    V6_SERIES_RESHAPED,
    V7_UNICODE_DOMAINS,
    V8_MAIL_DEDUPE,
    V9_FULL_ROUNDS,
    V10_MAIL_FOLDERS,
    v11_ids_never_reused,
    V12_STORE_TAG,
)
SCHEMA_VERSION = len(_MIGRATIONS)

_CHUNK = 500  # bound on the ``?`` of one IN (...) list, far below SQLite's limit


# --- small pure helpers -------------------------------------------------------------------


def _now(now: datetime | None) -> datetime:
    if now is None:
        return datetime.now(UTC)
    return now if now.tzinfo else now.replace(tzinfo=UTC)


def _chunks(items: Sequence[object]) -> Iterator[Sequence[object]]:
    for start in range(0, len(items), _CHUNK):
        yield items[start : start + _CHUNK]


def _marks(items: Sequence[object]) -> str:
    return ",".join("?" * len(items))


def _split_script(script: str) -> list[str]:
    """Split a migration into statements; `executescript` would commit our transaction."""
    statements, current = [], ""
    for line in script.splitlines(keepends=True):
        current += line
        if sqlite3.complete_statement(current):
            statements.append(current.strip())
            current = ""
    if current.strip():
        statements.append(current.strip())
    return statements


def _fingerprint(stored: StoredMessage) -> str:
    """What decides whether an upsert changes a stored message (ids and folder excluded)."""
    msg = stored.message

    def addr(items: Iterable[EmailAddress]) -> list[list[str]]:
        return [[a.address, a.name] for a in items]

    content = {
        "imid": msg.internet_message_id,
        "conv": msg.conversation_id,
        "subject": msg.subject,
        "from": addr([msg.sender]) if msg.sender else None,
        "to": addr(msg.to),
        "cc": addr(msg.cc),
        "bcc": addr(msg.bcc),
        "reply_to": addr(msg.reply_to),
        "received": _dt_text(msg.received_at),
        "sent": _dt_text(msg.sent_at),
        "body": msg.body_html,
        "preview": msg.body_preview,
        "draft": msg.is_draft,
        "has_att": msg.has_attachments,
        "att": [[a.name, a.size, a.content_type] for a in msg.attachments],
        "headers": msg.headers,
        "participants": [
            [p.role, address_key(p.address), p.name, p.partner_id, p.company_id]
            for p in stored.participants
        ],
    }
    blob = json.dumps(content, sort_keys=True, ensure_ascii=False).encode()
    return hashlib.sha256(blob).hexdigest()


def _sender_key(msg: MailMessage) -> str:
    return (normalise_address(msg.sender.address) or "") if msg.sender else ""


def _store_key(conn: sqlite3.Connection, message_id: int, msg: MailMessage) -> None:
    """The message's dedupe key (internetMessageId, sender, fingerprint); none without an id."""
    conn.execute("DELETE FROM m365_mail_message_key WHERE message_id = ?", (message_id,))
    if msg.internet_message_id is not None and msg.fingerprint is not None:
        conn.execute(
            "INSERT INTO m365_mail_message_key (message_id, internet_message_id, sender_key, "
            "fingerprint) VALUES (?, ?, ?, ?)",
            (message_id, msg.internet_message_id, _sender_key(msg), msg.fingerprint),
        )


def _translate(error: sqlite3.Error, path: Path) -> CrmError:
    """Turn a driver error into the contract's errors: unreachable vs. refused."""
    if isinstance(error, sqlite3.OperationalError):
        return CrmUnavailable(
            f"The embedded store at {path} cannot be used right now ({error}); check that the "
            "file and its directory are writable and that no other program holds it locked."
        )
    return CrmError(f"The embedded store at {path} refused a write ({error}).")


# --- row mapping --------------------------------------------------------------------------

_ACCOUNT_COLUMNS = (
    "id, address, display_name, tenant_id, object_id, owner, status, status_detail, "
    "status_until, last_sync_at, privacy, auto_create, own_domains, sealed_token_cache, "
    "sync_requested_at, " + CHOICE_COLUMNS
)
_PARTNER_COLUMNS = "id, name, email, is_company, parent_id, website"


def _account(row: sqlite3.Row) -> Account:
    choice, folders = folder_choice_of(row)
    return Account(
        id=row["id"],
        address=row["address"],
        display_name=row["display_name"],
        tenant_id=row["tenant_id"],
        object_id=row["object_id"],
        owner=row["owner"],
        status=AccountStatus(row["status"]),
        status_detail=row["status_detail"],
        status_until=_dt_value(row["status_until"]),
        last_sync_at=_dt_value(row["last_sync_at"]),
        privacy=Privacy(row["privacy"]),
        auto_create=AutoCreate(row["auto_create"]),
        own_domains=tuple(json.loads(row["own_domains"])),
        sealed_token_cache=row["sealed_token_cache"],
        sync_requested_at=_dt_value(row["sync_requested_at"]),
        folder_choice=choice,
        mail_folders=folders,
    )


def _partner(row: sqlite3.Row) -> Partner:
    return Partner(
        id=row["id"],
        name=row["name"],
        email=row["email"],
        is_company=bool(row["is_company"]),
        parent_id=row["parent_id"],
        website=row["website"],
    )


@dataclass(slots=True)
class _Tally:
    """The running figures of one `store_mail_page` call."""

    created: int = 0
    updated: int = 0
    linked: int = 0
    removed: int = 0

    def result(self) -> PageResult:
        return PageResult(self.created, self.updated, self.linked, self.removed)


# --- the gateway --------------------------------------------------------------------------


class SqliteGateway(CalendarStore, OutboxStore, PushStore, FolderStore, NoCrmForms, CrmGateway):
    """`CrmGateway` on one SQLite file. Safe to share between threads and processes.

    `PageResult` figures: ``created`` = messages inserted, ``updated`` = stored messages whose
    content changed, ``linked`` = (account, immutable id) links created or moved to another
    folder, ``removed`` = links deleted. A replayed page returns all zeros.
    """

    def __init__(self, path: str | Path, *, busy_timeout: float = 30.0) -> None:
        self._path = Path(path).expanduser()
        self._busy_timeout = busy_timeout
        self._local = threading.local()
        self._lock = threading.Lock()
        self._connections: list[sqlite3.Connection] = []
        self._pid = os.getpid()
        self._prepare_file()
        try:
            self._migrate()
        except BaseException:
            self.close()
            raise

    @property
    def path(self) -> Path:
        return self._path

    # --- connections and transactions ---------------------------------------------------------

    def _prepare_file(self) -> None:
        """Create the directory and an empty file mode 0600 before SQLite does (it would use
        the umask), and say which path is at fault when that is impossible."""
        try:
            self._path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            # Never open (and close) a descriptor of an existing store: closing any descriptor
            # of a file drops every POSIX lock this process holds on it, so another gateway of
            # this process would lose its SQLite locks, and another process could checkpoint
            # and remove the WAL under it ("file is not a database").
            if not self._path.exists():
                with contextlib.suppress(FileExistsError):  # another process made it meanwhile
                    os.close(os.open(self._path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600))
            if self._path.stat().st_mode & 0o077:
                os.chmod(self._path, 0o600)
        except OSError as error:
            raise CrmUnavailable(
                f"Cannot open the embedded store at {self._path} ({error.strerror or error}): "
                "check that the directory exists or can be created, and that the daemon's user "
                "may write to it."
            ) from error

    def _conn(self) -> sqlite3.Connection:
        """This thread's connection (a new one after a fork: SQLite handles must not cross)."""
        if self._pid != os.getpid():  # forked: the parent's handles are not ours to touch
            self._pid, self._local, self._connections = os.getpid(), threading.local(), []
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            return conn
        try:
            conn = sqlite3.connect(
                self._path,
                timeout=self._busy_timeout,
                isolation_level=None,  # we issue BEGIN / COMMIT ourselves
                check_same_thread=False,  # only so `close` may close it from another thread
            )
            conn.row_factory = sqlite3.Row
            conn.create_function("m365_domain_of_website", 1, domain_of_website, deterministic=True)
            conn.create_function("m365_domain_of_email", 1, domain_of_email, deterministic=True)
            conn.create_function("m365_upcoming_meeting", 6, upcoming_meeting, deterministic=True)
            conn.execute(f"PRAGMA busy_timeout = {int(self._busy_timeout * 1000)}")
            conn.execute("PRAGMA foreign_keys = ON")
            conn.execute("PRAGMA journal_mode = WAL")
            conn.execute("PRAGMA synchronous = NORMAL")  # WAL + NORMAL: consistent after a crash
        except sqlite3.Error as error:
            raise _translate(error, self._path) from error
        self._local.conn = conn
        with self._lock:
            self._connections.append(conn)
        return conn

    @contextmanager
    def _transaction(self, begin: str) -> Iterator[sqlite3.Connection]:
        conn = self._conn()
        try:
            conn.execute(begin)
        except sqlite3.Error as error:
            raise _translate(error, self._path) from error
        try:
            yield conn
            conn.execute("COMMIT")
        except BaseException as error:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            if isinstance(error, sqlite3.Error):
                raise _translate(error, self._path) from error
            raise

    def _write(self) -> AbstractContextManager[sqlite3.Connection]:
        """A write transaction holding the write lock from its first statement."""
        return self._transaction("BEGIN IMMEDIATE")

    def _read(self) -> AbstractContextManager[sqlite3.Connection]:
        """A read transaction: one consistent snapshot for several SELECTs."""
        return self._transaction("BEGIN")

    def _migrate(self) -> None:
        """Bring the file to `SCHEMA_VERSION` in one ``BEGIN IMMEDIATE``, so two processes
        opening a new file migrate it once, and a failed step leaves it as it was.

        Foreign keys are off while it runs (a table rebuilt in place is dropped and created
        again, which with them on would cascade to its children; the pragma does nothing inside
        a transaction, hence before it); a rebuild checks the references it touched."""
        conn = self._conn()
        try:
            conn.execute("PRAGMA foreign_keys = OFF")
        except sqlite3.Error as error:
            raise _translate(error, self._path) from error
        try:
            with self._write() as conn:
                version = conn.execute("PRAGMA user_version").fetchone()[0]
                if version > SCHEMA_VERSION:
                    raise CrmUnavailable(
                        f"The embedded store at {self._path} has schema version {version}, "
                        f"newer than this daemon's {SCHEMA_VERSION}: upgrade the daemon."
                    )
                for target, step in enumerate(_MIGRATIONS[version:], start=version + 1):
                    if callable(step):
                        step(conn)
                    else:
                        for statement in _split_script(step):
                            conn.execute(statement)
                    conn.execute(f"PRAGMA user_version = {target}")
        finally:
            conn.execute("PRAGMA foreign_keys = ON")

    def close(self) -> None:
        """Close every connection this gateway opened, in any thread."""
        with self._lock:
            connections, self._connections = self._connections, []
        for conn in connections:
            conn.close()
        self._local = threading.local()

    # --- accounts ---------------------------------------------------------------------------

    def upsert_account(self, spec: AccountSpec) -> Account:
        with self._write() as conn:
            account_id = self._find_account(conn, spec)
            values = {
                "address": spec.address,
                "address_normalized": address_key(spec.address),
                "display_name": spec.display_name,
                "owner": spec.owner,
                "privacy": Privacy(spec.privacy).value,
                "auto_create": AutoCreate(spec.auto_create).value,
                "own_domains": json.dumps([normalise_domain(d) for d in spec.own_domains]),
            }
            if spec.tenant_id and spec.object_id:
                values |= {"tenant_id": spec.tenant_id, "object_id": spec.object_id}
            if spec.sealed_token_cache is not None:
                values["sealed_token_cache"] = spec.sealed_token_cache
            values |= {"status": AccountStatus.CONNECTED.value, "status_detail": ""}
            if account_id is None:
                columns = ", ".join(values)
                cur = conn.execute(
                    f"INSERT INTO m365_account ({columns}) VALUES ({_marks(list(values))})",  # noqa: S608
                    tuple(values.values()),
                )
                account_id = cur.lastrowid
            else:
                assignments = ", ".join(f"{name} = ?" for name in values)
                conn.execute(
                    f"UPDATE m365_account SET {assignments}, status_until = NULL WHERE id = ?",  # noqa: S608
                    (*values.values(), account_id),
                )
            # The first connect is the line before which CRM events are never pushed.
            conn.execute(
                "UPDATE m365_account SET connected_at = COALESCE(connected_at, ?) WHERE id = ?",
                (_dt_text(datetime.now(UTC)), account_id),
            )
            return self._load_account(conn, account_id)

    @staticmethod
    def _find_account(conn: sqlite3.Connection, spec: AccountSpec) -> int | None:
        """(tenant, object id) when both are known; else the address, preferring an account
        stored without an identity (so a first connect by address upgrades in place)."""
        if spec.tenant_id and spec.object_id:
            row = conn.execute(
                "SELECT id FROM m365_account WHERE tenant_id = ? AND object_id = ?",
                (spec.tenant_id, spec.object_id),
            ).fetchone()
            if row:
                return row["id"]
            row = conn.execute(
                "SELECT id FROM m365_account WHERE address_normalized = ? "
                "AND (tenant_id = '' OR object_id = '') ORDER BY id LIMIT 1",
                (address_key(spec.address),),
            ).fetchone()
            return row["id"] if row else None
        row = conn.execute(
            "SELECT id FROM m365_account WHERE address_normalized = ? ORDER BY id LIMIT 1",
            (address_key(spec.address),),
        ).fetchone()
        return row["id"] if row else None

    @staticmethod
    def _load_account(conn: sqlite3.Connection, account_id: int) -> Account:
        row = conn.execute(
            f"SELECT {_ACCOUNT_COLUMNS} FROM m365_account WHERE id = ?",  # noqa: S608
            (account_id,),
        ).fetchone()
        if row is None:
            raise UnknownAccount(f"No account with id {account_id} in the embedded store.")
        return _account(row)

    @staticmethod
    def _require_account(conn: sqlite3.Connection, account_id: int) -> None:
        if conn.execute("SELECT 1 FROM m365_account WHERE id = ?", (account_id,)).fetchone():
            return
        raise UnknownAccount(f"No account with id {account_id} in the embedded store.")

    def get_account(self, account_id: int) -> Account:
        with self._read() as conn:
            return self._load_account(conn, account_id)

    def list_accounts(self) -> list[Account]:
        with self._read() as conn:
            rows = conn.execute(
                f"SELECT {_ACCOUNT_COLUMNS} FROM m365_account ORDER BY id"  # noqa: S608
            ).fetchall()
        return [_account(row) for row in rows]

    def set_account_status(
        self,
        account_id: int,
        status: AccountStatus,
        detail: str = "",
        *,
        until: datetime | None = None,
        synced_at: datetime | None = None,
    ) -> None:
        with self._write() as conn:
            self._require_account(conn, account_id)
            # A paused account stays paused; its sync time still counts.
            conn.execute(
                "UPDATE m365_account SET "
                "status = CASE WHEN status = 'paused' THEN status ELSE ? END, "
                "status_detail = CASE WHEN status = 'paused' THEN status_detail ELSE ? END, "
                "status_until = CASE WHEN status = 'paused' THEN status_until ELSE ? END, "
                "last_sync_at = COALESCE(?, last_sync_at) WHERE id = ?",
                (
                    AccountStatus(status).value,
                    detail,
                    _dt_text(until),
                    _dt_text(synced_at),
                    account_id,
                ),
            )

    def crm_pause(self, account_id: int, *, by: str = "") -> None:
        """The owner's Pause (a CRM user's action, not the daemon's): never leased until
        `crm_resume`; status writes of a cycle still running leave it paused."""
        with self._write() as conn:
            self._require_account(conn, account_id)
            conn.execute(
                "UPDATE m365_account SET status = 'paused', status_detail = ?, "
                "status_until = NULL WHERE id = ?",
                (f"Paused by {by}." if by else "Paused.", account_id),
            )

    def crm_resume(self, account_id: int) -> None:
        with self._write() as conn:
            self._require_account(conn, account_id)
            conn.execute(
                "UPDATE m365_account SET status = 'connected', status_detail = '' "
                "WHERE id = ? AND status = 'paused'",
                (account_id,),
            )

    def store_token_cache(
        self, account_id: int, sealed_token_cache: str, *, replaces: str | None = None
    ) -> bool:
        with self._write() as conn:
            self._require_account(conn, account_id)
            cursor = conn.execute(
                "UPDATE m365_account SET sealed_token_cache = ? "
                "WHERE id = ? AND (? IS NULL OR sealed_token_cache IS ?)",
                (sealed_token_cache, account_id, replaces, replaces),
            )
            return cursor.rowcount == 1

    # --- leases -----------------------------------------------------------------------------

    def lease_accounts(
        self, holder: str, *, limit: int, ttl_seconds: float, now: datetime | None = None
    ) -> list[Lease]:
        if limit <= 0:
            return []
        moment = _now(now)
        expires = moment + timedelta(seconds=ttl_seconds)
        with self._write() as conn:
            rows = conn.execute(
                "SELECT id FROM m365_account WHERE status != ? "
                "AND (lease_holder IS NULL OR lease_expires_at <= ?) "
                "ORDER BY last_sync_at IS NOT NULL, last_sync_at, id LIMIT ?",
                (AccountStatus.PAUSED.value, _dt_text(moment), limit),
            ).fetchall()
            leases = []
            for row in rows:
                token = self._next_token(conn)
                conn.execute(
                    "UPDATE m365_account SET lease_holder = ?, lease_token = ?, "
                    "lease_expires_at = ?, lease_attempts = lease_attempts + 1 WHERE id = ?",
                    (holder, token, _dt_text(expires), row["id"]),
                )
                leases.append(Lease(row["id"], token, holder, expires))
            return leases

    @staticmethod
    def _next_token(conn: sqlite3.Connection) -> int:
        """A sequence rather than max(token) + 1: a released lease's token is never reused."""
        conn.execute("UPDATE m365_sequence SET value = value + 1 WHERE name = 'lease_token'")
        return conn.execute(
            "SELECT value FROM m365_sequence WHERE name = 'lease_token'"
        ).fetchone()[0]

    @staticmethod
    def _check_lease(conn: sqlite3.Connection, lease: Lease, account_id: int) -> None:
        """The token proves the claim: an expiry nobody acted on does not void it, a takeover
        (new token) or a release does."""
        row = conn.execute(
            "SELECT lease_token, lease_holder FROM m365_account WHERE id = ?", (account_id,)
        ).fetchone()
        if row is None:
            raise UnknownAccount(f"No account with id {account_id} in the embedded store.")
        if (
            lease.account_id != account_id
            or row["lease_holder"] is None
            or row["lease_token"] != lease.token
        ):
            raise LeaseLost(
                f"The lease {lease.token} on account {account_id} is no longer held "
                f"by {lease.holder}."
            )

    def renew_lease(
        self, lease: Lease, *, ttl_seconds: float, now: datetime | None = None
    ) -> Lease:
        expires = _now(now) + timedelta(seconds=ttl_seconds)
        with self._write() as conn:
            self._check_lease(conn, lease, lease.account_id)
            conn.execute(
                "UPDATE m365_account SET lease_expires_at = ? WHERE id = ?",
                (_dt_text(expires), lease.account_id),
            )
        return Lease(lease.account_id, lease.token, lease.holder, expires)

    def release_lease(self, lease: Lease) -> None:
        with self._write() as conn:
            conn.execute(
                "UPDATE m365_account SET lease_holder = NULL, lease_expires_at = NULL, "
                "lease_attempts = 0 WHERE id = ? AND lease_token = ?",
                (lease.account_id, lease.token),
            )

    def lease_attempts(self, account_id: int) -> int:
        """Claims since the last clean release (SQLite only): 1 while a worker is alive, more
        when workers died holding the account."""
        with self._read() as conn:
            row = conn.execute(
                "SELECT lease_attempts FROM m365_account WHERE id = ?", (account_id,)
            ).fetchone()
        if row is None:
            raise UnknownAccount(f"No account with id {account_id} in the embedded store.")
        return row[0]

    # --- partners ---------------------------------------------------------------------------

    def find_partners_by_emails(self, emails: Iterable[str]) -> dict[str, Partner]:
        with self._read() as conn:
            return self._partners_by_emails(conn, emails)

    @staticmethod
    def _partners_by_emails(conn: sqlite3.Connection, emails: Iterable[str]) -> dict[str, Partner]:
        wanted = sorted({address_key(e) for e in emails if e and e.strip()})
        found: dict[str, Partner] = {}
        for chunk in _chunks(wanted):
            rows = conn.execute(
                f"SELECT {_PARTNER_COLUMNS}, email_normalized FROM res_partner "  # noqa: S608
                f"WHERE email_normalized IN ({_marks(chunk)}) ORDER BY is_company, id",
                tuple(chunk),
            ).fetchall()
            for row in rows:  # people before companies, then lowest id: the first one wins
                found.setdefault(row["email_normalized"], _partner(row))
        return found

    def find_companies_by_domains(self, domains: Iterable[str]) -> dict[str, Partner]:
        with self._read() as conn:
            return self._companies_by_domains(conn, domains)

    @staticmethod
    def _companies_by_domains(
        conn: sqlite3.Connection, domains: Iterable[str]
    ) -> dict[str, Partner]:
        wanted = sorted({normalise_domain(d) for d in domains if d and d.strip()})
        found: dict[str, Partner] = {}
        for chunk in _chunks(wanted):
            marks = _marks(chunk)
            rows = conn.execute(
                f"SELECT {_PARTNER_COLUMNS}, domain, email_domain FROM res_partner "  # noqa: S608
                f"WHERE is_company = 1 AND (domain IN ({marks}) OR email_domain IN ({marks})) "
                "ORDER BY id",
                (*chunk, *chunk),
            ).fetchall()
            asked = set(chunk)
            for row in rows:
                for key in (row["domain"], row["email_domain"]):
                    if key in asked:
                        found.setdefault(key, _partner(row))
        return found

    def get_partners(self, partner_ids: Iterable[int]) -> dict[int, Partner]:
        wanted = sorted(set(partner_ids))
        found: dict[int, Partner] = {}
        with self._read() as conn:
            for chunk in _chunks(wanted):
                rows = conn.execute(
                    f"SELECT {_PARTNER_COLUMNS} FROM res_partner "  # noqa: S608
                    f"WHERE id IN ({_marks(chunk)})",
                    tuple(chunk),
                ).fetchall()
                found.update((row["id"], _partner(row)) for row in rows)
        return found

    def create_partners(self, drafts: list[PartnerDraft]) -> list[Partner]:
        with self._write() as conn:
            made: dict[int, Partner] = {}
            order = sorted(range(len(drafts)), key=lambda i: not drafts[i].is_company)
            for index in order:
                made[index] = self._create_one(conn, drafts[index])
            return [made[i] for i in range(len(drafts))]

    def _create_one(self, conn: sqlite3.Connection, draft: PartnerDraft) -> Partner:
        if draft.email:
            existing = self._partners_by_emails(conn, [draft.email])
            if existing:
                return next(iter(existing.values()))
        if draft.is_company:
            domain = (
                (normalise_domain(draft.company_domain) if draft.company_domain else None)
                or domain_of_website(draft.website)
                or domain_of_email(draft.email)
            )
            if domain:
                existing = self._companies_by_domains(conn, [domain])
                if existing:
                    return existing[domain]
            return self._insert_partner(
                conn, draft.name, draft.email, True, None, draft.website, domain
            )
        parent_id = None
        if draft.company_domain:
            companies = self._companies_by_domains(conn, [draft.company_domain])
            company = companies.get(normalise_domain(draft.company_domain))
            parent_id = company.id if company else None
        return self._insert_partner(conn, draft.name, draft.email, False, parent_id, draft.website)

    @staticmethod
    def _insert_partner(
        conn: sqlite3.Connection,
        name: str,
        email: str | None,
        is_company: bool,
        parent_id: int | None,
        website: str | None,
        domain: str | None = None,
    ) -> Partner:
        normalized = address_key(email) if email else None
        cur = conn.execute(
            "INSERT INTO res_partner (name, email, email_normalized, email_domain, is_company, "
            "parent_id, website, domain) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (
                name,
                email,
                normalized,
                domain_of_email(normalized),
                int(is_company),
                parent_id,
                website,
                domain or domain_of_website(website),
            ),
        )
        return Partner(cur.lastrowid, name, email, is_company, parent_id, website)

    def add_partner(
        self,
        name: str,
        email: str | None = None,
        is_company: bool = False,
        parent_id: int | None = None,
        website: str | None = None,
    ) -> Partner:
        """Seed a CRM contact or company as a person would in Odoo (SQLite only; no
        idempotence, so tests can make two partners share an address)."""
        with self._write() as conn:
            return self._insert_partner(conn, name, email, is_company, parent_id, website)

    # --- mail -------------------------------------------------------------------------------

    def get_cursor(self, account_id: int, folder_id: str) -> Cursor | None:
        with self._read() as conn:
            row = conn.execute(
                "SELECT cursor_link, cursor_kind, round_open FROM m365_account_folder "
                "WHERE account_id = ? AND folder_id = ?",
                (account_id, folder_id),
            ).fetchone()
        if row is None or row["cursor_link"] is None:
            return None
        kind = CursorKind(row["cursor_kind"])
        return Cursor(row["cursor_link"], kind, kind is CursorKind.NEXT and bool(row["round_open"]))

    def store_mail_page(self, page: PageWrite, *, lease: Lease | None = None) -> PageResult:
        """Removals, then upserts, then the cursor, in one ``BEGIN IMMEDIATE``."""
        tally = _Tally()
        with self._write() as conn:
            if lease is not None:
                self._check_lease(conn, lease, page.account_id)
            else:
                self._require_account(conn, page.account_id)
            round_number = self._round_number(conn, page)
            for graph_id in page.removed_ids:
                tally.removed += self._unlink(conn, page.account_id, page.folder_id, graph_id)
            for graph_id, new_folder in page.moved.items():
                tally.linked += conn.execute(
                    "UPDATE m365_mail_message_link SET folder_id = ?, round_seen = COALESCE("
                    "(SELECT round_number FROM m365_account_folder WHERE account_id = ? AND "
                    "folder_id = ?), 0) WHERE account_id = ? AND graph_id = ? AND folder_id = ?",
                    (
                        new_folder,
                        page.account_id,
                        new_folder,
                        page.account_id,
                        graph_id,
                        page.folder_id,
                    ),
                ).rowcount
            for stored in page.upserts:
                self._upsert_message(
                    conn, page.account_id, page.folder_id, stored, tally, round_number
                )
            if page.round is not None:
                listed = list(page.round.listed_ids)
                for chunk in _chunks(listed):
                    conn.execute(
                        "UPDATE m365_mail_message_link SET round_seen = ? "  # noqa: S608
                        f"WHERE account_id = ? AND folder_id = ? AND graph_id IN ({_marks(chunk)})",
                        (round_number, page.account_id, page.folder_id, *chunk),
                    )
            self._store_cursor(conn, page)
        return tally.result()

    @staticmethod
    def _round_number(conn: sqlite3.Connection, page: PageWrite) -> int:
        """The folder's current full round, after opening a new one if the page starts it."""
        row = conn.execute(
            "SELECT round_number FROM m365_account_folder WHERE account_id = ? AND folder_id = ?",
            (page.account_id, page.folder_id),
        ).fetchone()
        number = row["round_number"] if row else 0
        if page.round is None or not page.round.starts:
            return number
        number += 1
        conn.execute(
            "INSERT INTO m365_account_folder (account_id, folder_id, round_number, round_open, "
            "round_since) VALUES (?, ?, ?, 1, ?) ON CONFLICT (account_id, folder_id) DO UPDATE "
            "SET round_number = excluded.round_number, round_open = 1, "
            "round_since = excluded.round_since",
            (page.account_id, page.folder_id, number, _dt_text(page.round.since)),
        )
        return number

    def unlisted_in_round(self, account_id: int, folder_id: str) -> list[str]:
        with self._read() as conn:
            rows = conn.execute(
                "SELECT l.graph_id FROM m365_mail_message_link l "
                "JOIN m365_account_folder f ON f.account_id = l.account_id "
                "AND f.folder_id = l.folder_id "
                "JOIN m365_mail_message m ON m.id = l.message_id "
                "WHERE l.account_id = ? AND l.folder_id = ? AND f.round_open = 1 "
                "AND l.round_seen < f.round_number AND m.received_at IS NOT NULL "
                "AND (f.round_since IS NULL OR m.received_at >= f.round_since) "
                "ORDER BY l.graph_id",
                (account_id, folder_id),
            ).fetchall()
        return [row["graph_id"] for row in rows]

    def _upsert_message(
        self,
        conn: sqlite3.Connection,
        account_id: int,
        folder_id: str,
        stored: StoredMessage,
        tally: _Tally,
        round_number: int = 0,
    ) -> None:
        """Upsert by (account, immutable id), and across folders and accounts by
        (internetMessageId, sender, fingerprint): only what is provably one message merges.
        A copy never blanks what another account contributed (see `_keep_others`)."""
        msg = stored.message
        if msg.fingerprint is None:
            msg = replace(msg, fingerprint=content_fingerprint(msg))
            stored = StoredMessage(msg, stored.participants)
        sender_key = _sender_key(msg)
        link = conn.execute(
            "SELECT id, message_id, folder_id, change_key FROM m365_mail_message_link "
            "WHERE account_id = ? AND graph_id = ?",
            (account_id, msg.graph_id),
        ).fetchone()
        message_id = None
        if msg.internet_message_id is not None:
            row = conn.execute(
                "SELECT message_id AS id FROM m365_mail_message_key WHERE internet_message_id = ? "
                "AND sender_key = ? AND fingerprint = ?",
                (msg.internet_message_id, sender_key, msg.fingerprint),
            ).fetchone()
            if row is None:  # a row stored before fingerprints: the same sender adopts it
                row = conn.execute(
                    "SELECT id FROM m365_mail_message m WHERE internet_message_id = ? "
                    "AND lower(from_address) IS ? AND NOT EXISTS (SELECT 1 FROM "
                    "m365_mail_message_key k WHERE k.message_id = m.id) ORDER BY id LIMIT 1",
                    (msg.internet_message_id, sender_key or None),
                ).fetchone()
            message_id = row["id"] if row else None
        if message_id is None and link is not None:
            # The same immutable id with new content: rewrite it in place when this link alone
            # holds it, else the others keep theirs and this copy becomes its own message.
            others = conn.execute(
                "SELECT 1 FROM m365_mail_message_link WHERE message_id = ? AND id != ? LIMIT 1",
                (link["message_id"], link["id"]),
            ).fetchone()
            message_id = None if others else link["message_id"]
        fingerprint = None
        if message_id is not None:
            stored = self._keep_others(conn, account_id, message_id, stored)
            fingerprint = _fingerprint(stored)
        if message_id is None:
            message_id = self._insert_message(conn, stored, _fingerprint(stored))
            tally.created += 1
        else:
            if self._update_message(conn, message_id, stored, fingerprint):
                tally.updated += 1
            _store_key(conn, message_id, msg)
        self._link(conn, account_id, folder_id, msg, message_id, link, tally, round_number)

    def _keep_others(
        self, conn: sqlite3.Connection, account_id: int, message_id: int, stored: StoredMessage
    ) -> StoredMessage:
        """What this account's privacy withholds keeps its stored value while another account
        holds the message: each mailbox's privacy limits its own contribution only."""
        privacy = Privacy(
            conn.execute("SELECT privacy FROM m365_account WHERE id = ?", (account_id,)).fetchone()[
                "privacy"
            ]
        )
        withheld = _WITHHELD[privacy]
        if (
            not withheld
            or not conn.execute(
                "SELECT 1 FROM m365_mail_message_link WHERE message_id = ? AND account_id != ? "
                "LIMIT 1",
                (message_id, account_id),
            ).fetchone()
        ):
            return stored
        row = conn.execute(
            "SELECT subject, body_html, body_preview, headers FROM m365_mail_message WHERE id = ?",
            (message_id,),
        ).fetchone()
        kept: dict[str, object] = {
            "subject": row["subject"],
            "body_html": row["body_html"],
            "body_preview": row["body_preview"],
            "headers": json.loads(row["headers"] or "{}"),
            "attachments": tuple(
                Attachment(r["name"], r["size"], r["content_type"])
                for r in conn.execute(
                    "SELECT name, size, content_type FROM m365_mail_attachment "
                    "WHERE message_id = ? ORDER BY id",
                    (message_id,),
                )
            ),
        }
        return StoredMessage(
            replace(stored.message, **{name: kept[name] for name in withheld}),
            stored.participants,
        )

    def _link(
        self,
        conn: sqlite3.Connection,
        account_id: int,
        folder_id: str,
        msg: MailMessage,
        message_id: int,
        link: sqlite3.Row | None,
        tally: _Tally,
        round_number: int,
    ) -> None:
        """Create the (account, immutable id) link, or follow the item to its new folder (and,
        should its internetMessageId now name another stored message, to that message). A
        link entering the folder counts as seen by the folder's current round."""
        if link is None:
            conn.execute(
                "INSERT INTO m365_mail_message_link (message_id, account_id, folder_id, "
                "graph_id, change_key, round_seen) VALUES (?, ?, ?, ?, ?, ?)",
                (message_id, account_id, folder_id, msg.graph_id, msg.change_key, round_number),
            )
            tally.linked += 1
            return
        same = (link["message_id"], link["folder_id"], link["change_key"]) == (
            message_id,
            folder_id,
            msg.change_key,
        )
        if same:
            return
        conn.execute(
            "UPDATE m365_mail_message_link SET message_id = ?, folder_id = ?, change_key = ? "
            "WHERE id = ?",
            (message_id, folder_id, msg.change_key, link["id"]),
        )
        if link["folder_id"] != folder_id:
            conn.execute(
                "UPDATE m365_mail_message_link SET round_seen = ? WHERE id = ?",
                (round_number, link["id"]),
            )
            tally.linked += 1
        if link["message_id"] != message_id:
            self._drop_if_orphan(conn, link["message_id"])

    def _insert_message(
        self, conn: sqlite3.Connection, stored: StoredMessage, fingerprint: str
    ) -> int:
        msg = stored.message
        thread_id = self._thread_for(conn, msg.conversation_id)
        cur = conn.execute(
            "INSERT INTO m365_mail_message (internet_message_id, conversation_id, thread_id, "
            "subject, from_address, from_name, received_at, sent_at, body_html, body_preview, "
            "is_draft, has_attachments, headers, content_hash) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                msg.internet_message_id,
                msg.conversation_id,
                thread_id,
                *self._fields(msg),
                fingerprint,
            ),
        )
        message_id = cur.lastrowid
        _store_key(conn, message_id, msg)
        self._replace_parts(conn, message_id, stored)
        return message_id

    def _update_message(
        self, conn: sqlite3.Connection, message_id: int, stored: StoredMessage, fingerprint: str
    ) -> bool:
        """Overwrite with exactly what the sync gives (None stays None); False if unchanged.

        The thread is kept once set: the same message seen from another mailbox may carry
        that mailbox's conversation id, and one message must not hop between threads.
        """
        row = conn.execute(
            "SELECT content_hash, thread_id FROM m365_mail_message WHERE id = ?", (message_id,)
        ).fetchone()
        if row["content_hash"] == fingerprint:
            return False
        msg = stored.message
        thread_id = row["thread_id"] or self._thread_for(conn, msg.conversation_id)
        conn.execute(
            "UPDATE m365_mail_message SET internet_message_id = ?, conversation_id = ?, "
            "thread_id = ?, subject = ?, from_address = ?, from_name = ?, received_at = ?, "
            "sent_at = ?, body_html = ?, body_preview = ?, is_draft = ?, has_attachments = ?, "
            "headers = ?, content_hash = ? WHERE id = ?",
            (
                msg.internet_message_id,
                msg.conversation_id,
                thread_id,
                *self._fields(msg),
                fingerprint,
                message_id,
            ),
        )
        self._replace_parts(conn, message_id, stored)
        return True

    @staticmethod
    def _fields(msg: MailMessage) -> tuple[object, ...]:
        return (
            msg.subject,
            msg.sender.address if msg.sender else None,
            msg.sender.name if msg.sender else None,
            _dt_text(msg.received_at),
            _dt_text(msg.sent_at),
            msg.body_html,
            msg.body_preview,
            int(msg.is_draft),
            int(msg.has_attachments),
            json.dumps(msg.headers, sort_keys=True, ensure_ascii=False),
        )

    @staticmethod
    def _replace_parts(conn: sqlite3.Connection, message_id: int, stored: StoredMessage) -> None:
        """Participants and attachment metadata are replaced whole with the message."""
        conn.execute("DELETE FROM m365_mail_participant WHERE message_id = ?", (message_id,))
        conn.executemany(
            "INSERT INTO m365_mail_participant (message_id, role, address, name, partner_id, "
            "company_id) VALUES (?, ?, ?, ?, ?, ?)",
            [
                (message_id, p.role, address_key(p.address), p.name, p.partner_id, p.company_id)
                for p in stored.participants
            ],
        )
        conn.execute("DELETE FROM m365_mail_attachment WHERE message_id = ?", (message_id,))
        conn.executemany(
            "INSERT INTO m365_mail_attachment (message_id, name, size, content_type) "
            "VALUES (?, ?, ?, ?)",
            [(message_id, a.name, a.size, a.content_type) for a in stored.message.attachments],
        )

    @staticmethod
    def _thread_for(conn: sqlite3.Connection, conversation_id: str | None) -> int | None:
        if conversation_id is None:
            return None
        conn.execute(
            "INSERT INTO m365_mail_thread (conversation_id) VALUES (?) "
            "ON CONFLICT (conversation_id) DO NOTHING",
            (conversation_id,),
        )
        return conn.execute(
            "SELECT id FROM m365_mail_thread WHERE conversation_id = ?", (conversation_id,)
        ).fetchone()[0]

    def _unlink(
        self, conn: sqlite3.Connection, account_id: int, folder_id: str, graph_id: str
    ) -> int:
        row = conn.execute(
            "SELECT id, message_id FROM m365_mail_message_link "
            "WHERE account_id = ? AND graph_id = ? AND folder_id = ?",
            (account_id, graph_id, folder_id),
        ).fetchone()
        if row is None:
            return 0
        conn.execute("DELETE FROM m365_mail_message_link WHERE id = ?", (row["id"],))
        self._drop_if_orphan(conn, row["message_id"])
        return 1

    @staticmethod
    def _drop_if_orphan(conn: sqlite3.Connection, message_id: int) -> None:
        """A message lives as long as one account's folder holds it; its thread likewise."""
        if conn.execute(
            "SELECT 1 FROM m365_mail_message_link WHERE message_id = ? LIMIT 1", (message_id,)
        ).fetchone():
            return
        row = conn.execute(
            "SELECT thread_id FROM m365_mail_message WHERE id = ?", (message_id,)
        ).fetchone()
        conn.execute("DELETE FROM m365_mail_message WHERE id = ?", (message_id,))
        if row and row["thread_id"] is not None:
            conn.execute(
                "DELETE FROM m365_mail_thread WHERE id = ? AND NOT EXISTS "
                "(SELECT 1 FROM m365_mail_message WHERE thread_id = ?)",
                (row["thread_id"], row["thread_id"]),
            )

    @staticmethod
    def _store_cursor(conn: sqlite3.Connection, page: PageWrite) -> None:
        """The cursor, the round's state, and the page's skips: a full round's first page
        restarts the folder's tally (one round's count, however many rounds ran), other pages
        add theirs unless the page is a replay (same cursor as stored)."""
        row = conn.execute(
            "SELECT cursor_link, skipped FROM m365_account_folder "
            "WHERE account_id = ? AND folder_id = ?",
            (page.account_id, page.folder_id),
        ).fetchone()
        mark = page.round
        starts = mark is not None and mark.starts
        skipped: dict[str, int] = json.loads(row["skipped"]) if row and not starts else {}
        if starts or row is None or row["cursor_link"] != page.cursor.link:
            for reason, count in page.skipped.items():
                skipped[reason] = skipped.get(reason, 0) + count
        conn.execute(
            "INSERT INTO m365_account_folder (account_id, folder_id, cursor_link, cursor_kind, "
            "skipped, round_open) VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (account_id, folder_id) "
            "DO UPDATE SET cursor_link = excluded.cursor_link, "
            "cursor_kind = excluded.cursor_kind, skipped = excluded.skipped, "
            "round_open = excluded.round_open",
            (
                page.account_id,
                page.folder_id,
                page.cursor.link,
                CursorKind(page.cursor.kind).value,
                json.dumps(skipped, sort_keys=True),
                int(mark is not None and not mark.completes),
            ),
        )

    def folder_skips(self, account_id: int, folder_id: str) -> dict[str, int]:
        """Items skipped in this folder so far, by reason (SQLite only; for status output)."""
        with self._read() as conn:
            row = conn.execute(
                "SELECT skipped FROM m365_account_folder WHERE account_id = ? AND folder_id = ?",
                (account_id, folder_id),
            ).fetchone()
        return json.loads(row["skipped"]) if row else {}

    def reset_folder(self, account_id: int, folder_id: str) -> None:
        with self._write() as conn:
            self._require_account(conn, account_id)
            conn.execute(
                "UPDATE m365_account_folder SET cursor_link = NULL, cursor_kind = NULL, "
                "round_open = 0 WHERE account_id = ? AND folder_id = ?",
                (account_id, folder_id),
            )

    def record_sync_run(self, run: SyncRun) -> None:
        figures = {
            "pages": run.pages,
            "imported": run.imported,
            "updated": run.updated,
            "removed": run.removed,
            "skipped": run.skipped,
            "calendar": run.calendar,
            "outbox": run.outbox,
            "graph_requests": run.graph_requests,
            "token_requests": run.token_requests,
            "parts": run.parts,
        }
        with self._write() as conn:
            self._require_account(conn, run.account_id)
            conn.execute(
                "INSERT INTO m365_sync_run (account_id, started_at, finished_at, figures, error) "
                "VALUES (?, ?, ?, ?, ?)",
                (
                    run.account_id,
                    _dt_text(run.started_at),
                    _dt_text(run.finished_at),
                    json.dumps(figures, sort_keys=True),
                    run.error,
                ),
            )

    def last_sync_run(self, account_id: int) -> SyncRun | None:
        with self._read() as conn:
            row = conn.execute(
                "SELECT account_id, started_at, finished_at, figures, error FROM m365_sync_run "
                "WHERE account_id = ? ORDER BY started_at DESC, id DESC LIMIT 1",
                (account_id,),
            ).fetchone()
        if row is None:
            return None
        figures = json.loads(row["figures"])
        return SyncRun(
            account_id=row["account_id"],
            started_at=_dt_value(row["started_at"]),  # type: ignore[arg-type]
            finished_at=_dt_value(row["finished_at"]),
            pages=figures.get("pages", 0),
            imported=figures.get("imported", 0),
            updated=figures.get("updated", 0),
            removed=figures.get("removed", 0),
            skipped=dict(figures.get("skipped", {})),
            error=row["error"],
            calendar=dict(figures.get("calendar", {})),
            outbox=dict(figures.get("outbox", {})),
            graph_requests=figures.get("graph_requests", 0),
            token_requests=figures.get("token_requests", 0),
            parts=dict(figures.get("parts", {})),
        )

    # --- reading back -------------------------------------------------------------------------

    def count_messages(self, account_id: int | None = None) -> int:
        with self._read() as conn:
            if account_id is None:
                row = conn.execute("SELECT COUNT(*) FROM m365_mail_message").fetchone()
            else:
                row = conn.execute(
                    "SELECT COUNT(DISTINCT message_id) FROM m365_mail_message_link "
                    "WHERE account_id = ?",
                    (account_id,),
                ).fetchone()
        return row[0]

    def message_ids_for_account(self, account_id: int) -> dict[str, str | None]:
        with self._read() as conn:
            rows = conn.execute(
                "SELECT l.graph_id, m.internet_message_id FROM m365_mail_message_link l "
                "JOIN m365_mail_message m ON m.id = l.message_id WHERE l.account_id = ?",
                (account_id,),
            ).fetchall()
        return {row[0]: row[1] for row in rows}

    # A thread is its mail_thread row, or the message itself when Graph gave no conversation.
    _THREAD_KEY = "COALESCE(m.thread_id, -m.id)"

    def threads_for_partner(self, partner_id: int) -> list[ThreadSummary]:
        key = self._THREAD_KEY
        with self._read() as conn:
            rows = conn.execute(
                f"""
                WITH touched AS (
                    SELECT DISTINCT {key} AS tkey
                    FROM m365_mail_participant p JOIN m365_mail_message m ON m.id = p.message_id
                    WHERE p.partner_id = :pid OR p.company_id = :pid
                       OR p.partner_id IN (SELECT id FROM res_partner WHERE parent_id = :pid)
                )
                SELECT {key} AS tkey, m.id, m.subject, t.conversation_id,
                       COALESCE(m.received_at, m.sent_at) AS at
                FROM m365_mail_message m LEFT JOIN m365_mail_thread t ON t.id = m.thread_id
                WHERE m.thread_id IN (SELECT tkey FROM touched WHERE tkey > 0)
                   OR m.id IN (SELECT -tkey FROM touched WHERE tkey < 0)
                ORDER BY tkey, at IS NULL, at, m.id
                """,  # noqa: S608 - only our own constant is formatted in
                {"pid": partner_id},
            ).fetchall()
            addresses = self._addresses_of(conn, [row["id"] for row in rows])
        return self._summaries(rows, addresses)

    @staticmethod
    def _addresses_of(
        conn: sqlite3.Connection, message_ids: list[int]
    ) -> dict[int, tuple[set[str], set[int]]]:
        """Per message: its participants' addresses and the partners they matched."""
        found: dict[int, tuple[set[str], set[int]]] = {}
        for chunk in _chunks(message_ids):
            rows = conn.execute(
                "SELECT message_id, address, partner_id, company_id "  # noqa: S608
                f"FROM m365_mail_participant WHERE message_id IN ({_marks(chunk)})",
                tuple(chunk),
            ).fetchall()
            for row in rows:
                addresses, partners = found.setdefault(row[0], (set(), set()))
                addresses.add(row[1])
                partners.update(pid for pid in (row[2], row[3]) if pid is not None)
        return found

    @staticmethod
    def _summaries(
        rows: list[sqlite3.Row], addresses: dict[int, tuple[set[str], set[int]]]
    ) -> list[ThreadSummary]:
        groups: dict[int, list[sqlite3.Row]] = {}
        for row in rows:  # already ordered oldest first within each thread
            groups.setdefault(row["tkey"], []).append(row)
        summaries = []
        for members in groups.values():
            dates = [row["at"] for row in members if row["at"] is not None]
            empty: tuple[set[str], set[int]] = (set(), set())
            people = set().union(*(addresses.get(row["id"], empty)[0] for row in members))
            matched = set().union(*(addresses.get(row["id"], empty)[1] for row in members))
            summaries.append(
                ThreadSummary(
                    conversation_id=members[0]["conversation_id"] or "",
                    subject=next((r["subject"] for r in members if r["subject"]), ""),
                    message_count=len(members),
                    last_at=_dt_value(max(dates)) if dates else None,
                    participants=tuple(sorted(people)),
                    partner_ids=tuple(sorted(matched)),
                )
            )
        epoch = datetime.min.replace(tzinfo=UTC)
        summaries.sort(key=lambda s: s.conversation_id)
        summaries.sort(key=lambda s: s.last_at or epoch, reverse=True)
        return summaries

    def mail_counts_by_partner(self) -> list[tuple[Partner, int, int]]:
        key = self._THREAD_KEY
        with self._read() as conn:
            rows = conn.execute(
                f"""
                WITH linked (pid, message_id) AS (
                    SELECT partner_id, message_id FROM m365_mail_participant
                    WHERE partner_id IS NOT NULL
                    UNION
                    SELECT company_id, message_id FROM m365_mail_participant
                    WHERE company_id IS NOT NULL
                    UNION
                    SELECT c.parent_id, p.message_id
                    FROM m365_mail_participant p JOIN res_partner c ON c.id = p.partner_id
                    WHERE c.parent_id IS NOT NULL
                )
                SELECT r.id, r.name, r.email, r.is_company, r.parent_id, r.website,
                       COUNT(DISTINCT {key}) AS threads, COUNT(DISTINCT m.id) AS messages
                FROM linked JOIN m365_mail_message m ON m.id = linked.message_id
                JOIN res_partner r ON r.id = linked.pid
                GROUP BY r.id ORDER BY messages DESC, r.id
                """  # noqa: S608 - only our own constant is formatted in
            ).fetchall()
        return [(_partner(row), row["threads"], row["messages"]) for row in rows]
