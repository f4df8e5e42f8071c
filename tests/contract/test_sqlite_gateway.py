"""The contract suite on the embedded store, plus what only SQLite can be asked about:
its file, its schema, atomicity under failure, threads and processes sharing one file."""

from __future__ import annotations

import multiprocessing
import os
import shutil
import sqlite3
import stat
import tempfile
import threading
from dataclasses import replace
from datetime import timedelta
from pathlib import Path

import pytest

from m365sync.crm.gateway import CrmGateway
from m365sync.crm.sqlite import SCHEMA_VERSION, SqliteGateway
from m365sync.domain import (
    Account,
    AccountStatus,
    Attachment,
    EmailAddress,
    Lease,
    ParticipantLink,
    Partner,
    PartnerDraft,
    Sensitivity,
    StoredMessage,
)
from m365sync.errors import CrmError, CrmUnavailable

from .gateway_contract import (
    INBOX,
    T0,
    GatewayContract,
    message,
    page,
    spec,
    stored,
    unique,
)


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "state" / "m365sync.db"


@pytest.fixture
def sqlite_gateway(db_path: Path) -> SqliteGateway:
    gateway = SqliteGateway(db_path)
    yield gateway
    gateway.close()


class TestSqliteContract(GatewayContract):
    @pytest.fixture
    def gateway(self, sqlite_gateway: SqliteGateway) -> CrmGateway:
        return sqlite_gateway

    @pytest.fixture
    def other_gateway(self, sqlite_gateway: SqliteGateway, db_path: Path):
        """A second worker: its own connection to the same file, as a second process has."""
        store = SqliteGateway(db_path)
        yield store
        store.close()

    def folder_skips(self, gateway, account, folder):
        return gateway.folder_skips(account.id, folder)

    def crm_pause(self, gateway, account):
        gateway.crm_pause(account.id, by="the owner")

    def crm_resume(self, gateway, account):
        gateway.crm_resume(account.id)

    def seed_partner(
        self,
        gateway: CrmGateway,
        name: str,
        email: str | None = None,
        *,
        is_company: bool = False,
        parent_id: int | None = None,
        website: str | None = None,
    ) -> Partner:
        assert isinstance(gateway, SqliteGateway)
        return gateway.add_partner(name, email, is_company, parent_id, website)


# --- the file -----------------------------------------------------------------------------


def test_file_is_private_and_versioned(sqlite_gateway: SqliteGateway, db_path: Path) -> None:
    assert stat.S_IMODE(db_path.stat().st_mode) == 0o600
    with sqlite3.connect(db_path) as raw:
        assert raw.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
        assert raw.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        tables = {r[0] for r in raw.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    assert {
        "m365_account",
        "m365_account_folder",
        "res_partner",
        "m365_mail_thread",
        "m365_mail_message",
        "m365_mail_message_link",
        "m365_mail_participant",
        "m365_mail_attachment",
        "m365_sync_run",
        "crm_calendar_event",
        "crm_calendar_series",
        "crm_calendar_attendee",
        "m365_event_binding",
        "m365_outbox",
    } <= tables


def test_an_existing_file_is_tightened_to_0600(db_path: Path) -> None:
    db_path.parent.mkdir(parents=True)
    db_path.touch(mode=0o644)
    os.chmod(db_path, 0o644)
    SqliteGateway(db_path).close()
    assert stat.S_IMODE(db_path.stat().st_mode) == 0o600


def test_reopening_keeps_data_and_does_not_migrate_twice(db_path: Path) -> None:
    first = SqliteGateway(db_path)
    account = first.upsert_account(spec())
    first.close()
    second = SqliteGateway(db_path)
    assert second.get_account(account.id) == account
    second.close()


def test_punycode_work_domains_of_an_older_store_become_unicode(db_path: Path) -> None:
    """Before version 7 the store kept website and mail domains as written (xn--...): the
    upgrade recomputes them with the sync's rule, so mail from the Unicode domain matches."""
    from m365sync.crm import sqlite as module

    db_path.parent.mkdir(parents=True, exist_ok=True)
    with sqlite3.connect(db_path) as raw:  # a file of version 6, as that release left it
        for script in module._MIGRATIONS[:6]:
            raw.executescript(script)
        raw.execute(
            "INSERT INTO res_partner (name, email, email_normalized, email_domain, is_company, "
            "website, domain) VALUES ('Bücher', 'info@xn--bcher-kva.example', "
            "'info@xn--bcher-kva.example', 'xn--bcher-kva.example', 1, "
            "'https://www.xn--bcher-kva.example', 'xn--bcher-kva.example')"
        )
        raw.execute("PRAGMA user_version = 6")
    gateway = SqliteGateway(db_path)
    found = gateway.find_companies_by_domains(["bücher.example"])
    assert [p.name for p in found.values()] == ["Bücher"]
    with sqlite3.connect(db_path) as raw:
        assert raw.execute("SELECT domain, email_domain FROM res_partner").fetchall() == [
            ("bücher.example", "bücher.example")
        ]
    gateway.close()


def test_a_store_from_before_autoincrement_keeps_its_events_and_never_reuses_an_id(
    db_path: Path,
) -> None:
    """Issue #17: version 10 files gave a new CRM event the id of the last one deleted (its
    Graph transactionId with it). The upgrade rebuilds the table in place: rows, ids,
    attendees, bindings and indexes stay, foreign keys still act, and an id is never reused."""
    from m365sync.crm import sqlite as module
    from m365sync.sync.addresses import domain_of_email, domain_of_website
    from m365sync.sync.calendar import transaction_id

    from .calendar_contract import event

    db_path.parent.mkdir(parents=True, exist_ok=True)
    with sqlite3.connect(db_path) as raw:  # a file of version 10, as that release left it
        raw.create_function("m365_domain_of_website", 1, domain_of_website)
        raw.create_function("m365_domain_of_email", 1, domain_of_email)
        for script in module._MIGRATIONS[:10]:
            raw.executescript(script)
        raw.execute(
            "INSERT INTO m365_account (id, address, address_normalized, owner) "
            "VALUES (1, 'a@contoso.example', 'a@contoso.example', 'admin')"
        )
        raw.execute("INSERT INTO res_partner (id, name) VALUES (7, 'Dana')")
        for event_id in (1, 2, 3):
            raw.execute(
                "INSERT INTO crm_calendar_event (id, owner_account_id, subject, start_at, end_at, "
                "created_at, modified_at, series_reshaped) VALUES (?, 1, ?, "
                "'2030-01-01T09:00:00+00:00', '2030-01-01T10:00:00+00:00', "
                "'2029-01-01T00:00:00+00:00', '2029-01-01T00:00:00+00:00', 1)",
                (event_id, f"Meeting {event_id}"),
            )
        raw.execute(
            "INSERT INTO crm_calendar_attendee (event_id, role, address, partner_id) "
            "VALUES (2, 'required', 'dana@fabrikam.example', 7)"
        )
        raw.execute(
            "INSERT INTO m365_event_binding (account_id, graph_id, crm_event_id, pushed_version) "
            "VALUES (1, 'AAMk-2', 2, 1)"
        )
        raw.execute("DELETE FROM crm_calendar_event WHERE id = 3")  # its tombstone, pushed
        raw.execute("PRAGMA user_version = 10")
    raw.close()

    gateway = SqliteGateway(db_path)
    try:
        with sqlite3.connect(db_path) as raw:
            assert raw.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
            (create,) = raw.execute(
                "SELECT sql FROM sqlite_master WHERE name = 'crm_calendar_event'"
            ).fetchone()
            assert "AUTOINCREMENT" in create and "series_reshaped" in create
            indexes = {
                r[0]
                for r in raw.execute(
                    "SELECT name FROM sqlite_master WHERE type = 'index' "
                    "AND tbl_name = 'crm_calendar_event'"
                )
            }
            assert {"crm_calendar_event_uid", "crm_calendar_event_start"} <= indexes
            assert raw.execute(
                "SELECT id, subject, series_reshaped FROM crm_calendar_event ORDER BY id"
            ).fetchall() == [(1, "Meeting 1", 1), (2, "Meeting 2", 1)]
            assert raw.execute("SELECT event_id FROM crm_calendar_attendee").fetchall() == [(2,)]
            assert raw.execute("PRAGMA foreign_key_check").fetchall() == []
        assert set(gateway.event_bindings(1, ["AAMk-2"])) == {"AAMk-2"}

        account = gateway.get_account(1)
        new = gateway.crm_create_event(account.id, event(""))
        assert new == 3  # above every id the file held; the one deleted before is unknowable
        (change,) = [c for c in gateway.event_changes_to_push(1) if c.crm_event_id == new]
        gateway.mark_event_pushed(1, new, graph_id="AAMk-3", change_key="a", version=1)
        gateway.crm_delete_event(new)
        (gone,) = [c for c in gateway.event_changes_to_push(1) if c.crm_event_id == new]
        gateway.mark_event_pushed(1, new, graph_id="AAMk-3", change_key=None, version=gone.version)
        again = gateway.crm_create_event(account.id, event(""))
        (fresh,) = [c for c in gateway.event_changes_to_push(1) if c.crm_event_id == again]
        assert again == 4 and transaction_id(fresh) != transaction_id(change)

        gateway.crm_delete_event(2)  # foreign keys act again: the last binding's push
        (two,) = [c for c in gateway.event_changes_to_push(1) if c.crm_event_id == 2]
        gateway.mark_event_pushed(1, 2, graph_id="AAMk-2", change_key=None, version=two.version)
        with sqlite3.connect(db_path) as raw:
            assert raw.execute("SELECT count(*) FROM crm_calendar_attendee").fetchone() == (0,)
    finally:
        gateway.close()


def test_a_newer_schema_is_refused(db_path: Path) -> None:
    SqliteGateway(db_path).close()
    with sqlite3.connect(db_path) as raw:
        raw.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    with pytest.raises(CrmUnavailable, match="upgrade the daemon"):
        SqliteGateway(db_path)


def test_an_unusable_path_says_which(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("")
    target = blocker / "m365sync.db"
    with pytest.raises(CrmUnavailable, match=str(target)):
        SqliteGateway(target)


def test_datetimes_come_back_aware_utc(sqlite_gateway: SqliteGateway) -> None:
    account = sqlite_gateway.upsert_account(spec())
    naive = T0.replace(tzinfo=None)
    sqlite_gateway.set_account_status(account.id, AccountStatus.ACTIVE, synced_at=naive)
    assert sqlite_gateway.get_account(account.id).last_sync_at == T0


# --- what the interface cannot show ---------------------------------------------------------


def _row(db_path: Path, sql: str, *args: object) -> sqlite3.Row | None:
    with sqlite3.connect(db_path) as raw:
        raw.row_factory = sqlite3.Row
        return raw.execute(sql, args).fetchone()


def test_replay_reports_no_update(sqlite_gateway: SqliteGateway) -> None:
    account = sqlite_gateway.upsert_account(spec())
    written = page(account, INBOX, [message(unique("g")), message(unique("g"))])
    sqlite_gateway.store_mail_page(written)
    again = sqlite_gateway.store_mail_page(written)
    assert (again.created, again.updated, again.linked, again.removed) == (0, 0, 0, 0)


def test_privacy_reduced_fields_are_stored_as_given(
    sqlite_gateway: SqliteGateway, db_path: Path
) -> None:
    account = sqlite_gateway.upsert_account(spec())
    msg = message(unique("g"), body="<p>secret</p>")
    sqlite_gateway.store_mail_page(page(account, INBOX, [msg]))
    reduced = replace(msg, body_html=None, body_preview=None, subject=None)
    result = sqlite_gateway.store_mail_page(page(account, INBOX, [reduced]))
    assert result.updated == 1
    row = _row(
        db_path,
        "SELECT subject, body_html, body_preview FROM m365_mail_message "
        "WHERE internet_message_id = ?",
        msg.internet_message_id,
    )
    assert tuple(row) == (None, None, None)


def test_participants_and_attachments_are_replaced(
    sqlite_gateway: SqliteGateway, db_path: Path
) -> None:
    account = sqlite_gateway.upsert_account(spec())
    msg = replace(
        message(unique("g"), to=("b@example.com", "c@example.com")),
        has_attachments=True,
        attachments=(
            Attachment("a.pdf", 10, "application/pdf"),
            Attachment("b.txt", 2, "text/plain"),
        ),
    )
    sqlite_gateway.store_mail_page(page(account, INBOX, [msg]))
    fewer = replace(msg, to=(EmailAddress("B@Example.com"),), attachments=msg.attachments[:1])
    sqlite_gateway.store_mail_page(page(account, INBOX, [fewer]))
    with sqlite3.connect(db_path) as raw:
        rows = raw.execute(
            "SELECT role, address FROM m365_mail_participant ORDER BY role, address"
        ).fetchall()
        files = raw.execute("SELECT name, size, content_type FROM m365_mail_attachment").fetchall()
    assert rows == [("from", "alice@example.com"), ("to", "b@example.com")]
    assert files == [("a.pdf", 10, "application/pdf")]


def test_skips_are_counted_once_per_page(sqlite_gateway: SqliteGateway) -> None:
    account = sqlite_gateway.upsert_account(spec())
    written = page(account, INBOX, [])
    written.skipped = {"internal": 2}
    sqlite_gateway.store_mail_page(written)
    sqlite_gateway.store_mail_page(written)  # a replay
    following = page(account, INBOX, [])
    following.skipped = {"internal": 1, "blocklisted": 3}
    sqlite_gateway.store_mail_page(following)
    assert sqlite_gateway.folder_skips(account.id, INBOX) == {"internal": 3, "blocklisted": 3}


def test_a_page_failing_midway_leaves_nothing(sqlite_gateway: SqliteGateway) -> None:
    """The second message names a partner that does not exist: the database refuses it after
    the first message was written; the whole page, cursor included, must roll back."""
    account = sqlite_gateway.upsert_account(spec())
    good = stored(message(unique("g")))
    bad_msg = message(unique("g"))
    bad = StoredMessage(bad_msg, [ParticipantLink("to", "x@example.com", "", 2**31 - 7, None)])
    with pytest.raises(CrmError):
        sqlite_gateway.store_mail_page(page(account, INBOX, [good, bad]))
    assert sqlite_gateway.count_messages() == 0
    assert sqlite_gateway.get_cursor(account.id, INBOX) is None


def test_threads_follow_their_messages_out(sqlite_gateway: SqliteGateway, db_path: Path) -> None:
    account = sqlite_gateway.upsert_account(spec())
    msg = message(unique("g"), conversation="conv-gone")
    sqlite_gateway.store_mail_page(page(account, INBOX, [msg]))
    sqlite_gateway.store_mail_page(page(account, INBOX, [], [msg.graph_id]))
    assert _row(db_path, "SELECT COUNT(*) FROM m365_mail_thread")[0] == 0
    assert _row(db_path, "SELECT COUNT(*) FROM m365_mail_participant")[0] == 0


def test_a_message_keeps_its_first_thread(sqlite_gateway: SqliteGateway) -> None:
    """conversationId is per mailbox: the same message seen from a second mailbox with another
    conversation id stays in the thread it was first filed under."""
    partner = sqlite_gateway.add_partner("Ann", "ann@example.com")
    first, second = sqlite_gateway.upsert_account(spec()), sqlite_gateway.upsert_account(spec())
    known = {"ann@example.com": partner}
    imid = f"<{unique()}@example.com>"
    a = message(unique("g"), imid, conversation="conv-A", to=("ann@example.com",))
    b = message(unique("g"), imid, conversation="conv-B", to=("ann@example.com",))
    sqlite_gateway.store_mail_page(page(first, INBOX, [stored(a, known)]))
    sqlite_gateway.store_mail_page(page(second, INBOX, [stored(b, known)]))
    assert [t.conversation_id for t in sqlite_gateway.threads_for_partner(partner.id)] == ["conv-A"]


def test_upsert_without_token_cache_keeps_the_stored_one(sqlite_gateway: SqliteGateway) -> None:
    account = sqlite_gateway.upsert_account(spec(sealed_token_cache="eyJ.sealed.1"))
    again = sqlite_gateway.upsert_account(
        spec(
            address=account.address,
            tenant_id=account.tenant_id,
            object_id=account.object_id,
            sealed_token_cache=None,
        )
    )
    assert again.sealed_token_cache == "eyJ.sealed.1"


def test_lease_attempts_count_dead_claims(sqlite_gateway: SqliteGateway) -> None:
    account = sqlite_gateway.upsert_account(spec())
    for step in range(3):  # three workers die holding it
        sqlite_gateway.lease_accounts(
            "w", limit=5, ttl_seconds=10, now=T0 + timedelta(minutes=step)
        )
    assert sqlite_gateway.lease_attempts(account.id) == 3
    (lease,) = sqlite_gateway.lease_accounts(
        "w", limit=5, ttl_seconds=10, now=T0 + timedelta(hours=1)
    )
    sqlite_gateway.release_lease(lease)
    assert sqlite_gateway.lease_attempts(account.id) == 0


# --- sharing one file -----------------------------------------------------------------------


def test_two_gateways_on_one_file_see_each_other(db_path: Path) -> None:
    first, second = SqliteGateway(db_path), SqliteGateway(db_path)
    try:
        account = first.upsert_account(spec())
        second.store_mail_page(page(account, INBOX, [message(unique("g"))]))
        assert first.count_messages(account.id) == 1
    finally:
        first.close()
        second.close()


def test_threads_share_a_gateway(sqlite_gateway: SqliteGateway) -> None:
    account = sqlite_gateway.upsert_account(spec())
    errors: list[BaseException] = []

    def work(n: int) -> None:
        try:
            for i in range(10):
                sqlite_gateway.store_mail_page(
                    page(account, f"folder-{n}", [message(f"t{n}-{i}", f"<shared-{i}@x>")])
                )
        except BaseException as error:  # collected, asserted below
            errors.append(error)

    workers = [threading.Thread(target=work, args=(n,)) for n in range(4)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    assert errors == []
    assert sqlite_gateway.count_messages(account.id) == 10  # shared internetMessageIds
    assert len(sqlite_gateway.message_ids_for_account(account.id)) == 40


def _claim_in_process(path: str, holder: str, rounds: int, queue: multiprocessing.Queue) -> None:
    gateway = SqliteGateway(path)
    claimed = []
    for step in range(rounds):
        now = T0 + timedelta(hours=step)
        claimed += [
            (lease.account_id, lease.token, step)
            for lease in gateway.lease_accounts(holder, limit=2, ttl_seconds=3600, now=now)
        ]
    gateway.close()
    queue.put(claimed)


def test_processes_never_share_a_lease(db_path: Path) -> None:
    """Four processes claim the same accounts in the same hours: each (account, hour) goes to
    one holder only, and every token is unique."""
    gateway = SqliteGateway(db_path)
    accounts = [gateway.upsert_account(spec()) for _ in range(6)]
    gateway.close()
    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    procs = [
        context.Process(target=_claim_in_process, args=(str(db_path), f"p{n}", 5, queue))
        for n in range(4)
    ]
    for proc in procs:
        proc.start()
    results = [queue.get(timeout=60) for _ in procs]
    for proc in procs:
        proc.join(timeout=60)
        assert proc.exitcode == 0
    claims = [claim for result in results for claim in result]
    tokens = [token for _, token, _ in claims]
    assert len(tokens) == len(set(tokens))
    per_hour = {}
    for account_id, _, step in claims:
        per_hour.setdefault(step, []).append(account_id)
    for ids in per_hour.values():
        assert len(ids) == len(set(ids))
    assert {a.id for a in accounts} == {account_id for account_id, _, _ in claims}


def test_a_lease_renews_from_another_thread(sqlite_gateway: SqliteGateway) -> None:
    """A Lease is plain data a worker's heartbeat thread may renew on its own connection."""
    account: Account = sqlite_gateway.upsert_account(spec())
    (lease,) = sqlite_gateway.lease_accounts("w", limit=1, ttl_seconds=60, now=T0)
    out: list[Lease] = []
    thread = threading.Thread(
        target=lambda: out.append(sqlite_gateway.renew_lease(lease, ttl_seconds=60, now=T0))
    )
    thread.start()
    thread.join()
    assert (out[0].account_id, out[0].token) == (account.id, lease.token)


def _store_in_process(gateway: SqliteGateway, account_id: int, folder: str) -> None:
    """Runs in a forked child, on the parent's gateway object: it must open its own handle."""
    for i in range(20):
        gateway.store_mail_page(page(account_id, folder, [message(f"{folder}-{i}", f"<m{i}@x>")]))


def test_forked_processes_write_one_file_without_duplicates(
    sqlite_gateway: SqliteGateway,
) -> None:
    """Two processes store the same internetMessageIds at once: each message is stored once."""
    first, second = sqlite_gateway.upsert_account(spec()), sqlite_gateway.upsert_account(spec())
    context = multiprocessing.get_context("fork")
    procs = [
        context.Process(target=_store_in_process, args=(sqlite_gateway, account.id, folder))
        for account, folder in ((first, "inbox-1"), (second, "inbox-2"))
    ]
    for proc in procs:
        proc.start()
    for proc in procs:
        proc.join(timeout=60)
        assert proc.exitcode == 0
    assert sqlite_gateway.count_messages() == 20
    assert sqlite_gateway.count_messages(first.id) == sqlite_gateway.count_messages(second.id) == 20



def _create_in_process(gateway: SqliteGateway, domains: list[str]) -> None:
    """Runs in a forked child, on the parent's gateway object: it must open its own handle."""
    for domain in domains:
        gateway.create_partners(
            [
                PartnerDraft("Dana Birkby", f"dana@{domain}", company_domain=domain),
                PartnerDraft("Fabrikam", is_company=True, company_domain=domain),
            ]
        )


def test_two_daemon_processes_on_one_file_create_each_new_sender_once(
    sqlite_gateway: SqliteGateway, db_path: Path
) -> None:
    """Two daemons on one file meet the same new senders at once: each ``create_partners``
    looks up and inserts inside one ``BEGIN IMMEDIATE``, whose write lock is the file's (so
    across processes too) and whose snapshot starts after it, so the later call sees what
    the earlier one made: one contact and one company per domain."""
    domains = [f"{unique('fabrikam')}.example" for _ in range(20)]
    context = multiprocessing.get_context("fork")
    procs = [
        context.Process(target=_create_in_process, args=(sqlite_gateway, domains))
        for _ in range(2)
    ]
    for proc in procs:
        proc.start()
    for proc in procs:
        proc.join(timeout=60)
        assert proc.exitcode == 0
    with sqlite3.connect(db_path) as raw:
        counts = raw.execute(
            "SELECT d, is_company, count(*) FROM (SELECT is_company, CASE is_company WHEN 1 "  # noqa: S608
            "THEN domain ELSE email_domain END AS d FROM res_partner) WHERE d IN "
            f"({','.join('?' * len(domains))}) GROUP BY d, is_company",
            domains,
        ).fetchall()
    assert sorted(counts) == sorted((d, c, 1) for d in domains for c in (0, 1))


# --- calendar (staged contract) -------------------------------------------------------------

from tests.contract.calendar_contract import CalendarContract  # noqa: E402
from tests.contract.sqlite_series import expand_series, series_occurrences  # noqa: E402


class TestSqliteCalendar(CalendarContract):
    @pytest.fixture
    def gateway(self, tmp_path: Path):
        store = SqliteGateway(tmp_path / "calendar.sqlite3")
        yield store
        store.close()

    def seed_partner(self, gateway, name, email=None, *, is_company=False, parent_id=None):
        return gateway.add_partner(name, email=email, is_company=is_company, parent_id=parent_id)

    def crm_create(self, gateway, account, item, partner_ids):
        from m365sync.domain import EventLink, ResponseStatus

        people = [
            EventLink("required", f"p{pid}@example.com", "", ResponseStatus.NONE, pid, None)
            for pid in partner_ids
        ]
        return gateway.crm_create_event(account.id, item, people)

    def crm_update(self, gateway, event_id, **changes):
        gateway.crm_update_event(event_id, **changes)

    def crm_delete(self, gateway, event_id):
        gateway.crm_delete_event(event_id)

    def crm_expand(self, gateway, event_id, count):
        expand_series(gateway.path, event_id, count)

    def crm_occurrences(self, gateway, event_id):
        return series_occurrences(gateway.path, event_id)


def test_events_from_before_the_account_was_connected_are_never_pushed(tmp_path: Path) -> None:
    from datetime import UTC, datetime, timedelta

    from tests.contract.calendar_contract import event
    from tests.contract.gateway_contract import spec

    store = SqliteGateway(tmp_path / "old.sqlite3")
    account = store.upsert_account(spec())
    old = store.crm_create_event(account.id, event(""))
    with sqlite3.connect(tmp_path / "old.sqlite3") as raw:  # the account was connected later
        later = (datetime.now(UTC) + timedelta(minutes=5)).isoformat()
        raw.execute("UPDATE m365_account SET connected_at = ? WHERE id = ?", (later, account.id))
    assert [c.crm_event_id for c in store.event_changes_to_push(account.id)] == []
    assert old > 0
    store.close()


# --- push (subscriptions, sync requests) ----------------------------------------------------

from tests.contract.push_contract import PushContract  # noqa: E402


class TestSqlitePush(PushContract):
    @pytest.fixture
    def gateway(self, tmp_path: Path):
        store = SqliteGateway(tmp_path / "push.sqlite3")
        yield store
        store.close()

    def test_a_store_made_before_push_is_migrated(self, tmp_path: Path):
        """A V4 file (the previous release) gains the columns and keeps its accounts."""
        from m365sync.crm import sqlite as module

        path = tmp_path / "old.sqlite3"
        conn = sqlite3.connect(path)
        for script in module._MIGRATIONS[:4]:
            conn.executescript(script)
        conn.execute(
            "INSERT INTO m365_account (address, address_normalized, display_name, tenant_id, "
            "object_id, owner, status, status_detail, privacy, auto_create, own_domains) "
            "VALUES ('a@contoso.example', 'a@contoso.example', 'A', 't', 'o', 'admin', "
            "'active', '', 'everything', 'none', '[]')"
        )
        conn.execute("PRAGMA user_version = 4")
        conn.commit()
        conn.close()
        store = SqliteGateway(path)
        try:
            (account,) = store.list_accounts()
            assert account.sync_requested_at is None
            assert store.subscriptions(account.id) == []
        finally:
            store.close()


# --- the mail state machine -----------------------------------------------------------------

from tests.contract.machine_common import machine_for, run_regressions  # noqa: E402
from tests.contract.mail_machine import MailSyncMachine  # noqa: E402


def _fresh_store() -> SqliteGateway:
    folder = Path(tempfile.mkdtemp(prefix="m365-machine-"))
    return SqliteGateway(folder / "store.sqlite3")


def _close_store(gateway: SqliteGateway) -> None:
    gateway.close()
    shutil.rmtree(gateway.path.parent, ignore_errors=True)


TestMailSyncMachine = machine_for(
    MailSyncMachine,
    _fresh_store,
    lambda gateway, name, email: gateway.add_partner(name, email, False, None, None),
    close_gateway=_close_store,
    steps=40,
)


def test_opening_the_store_again_never_touches_the_files_descriptors(tmp_path, monkeypatch):
    """Found by the reliability soak (RELIABILITY_SEED=100): a second gateway on a store this
    process already had open used to open and close a descriptor of the file; closing any
    descriptor drops every POSIX lock the process holds on the file, so the daemon, stopping,
    found itself the last user, checkpointed and removed the WAL under the first gateway, whose
    next read said "file is not a database"."""
    path = tmp_path / "store.sqlite3"
    first = SqliteGateway(path)
    first.add_partner("Ann", email="ann@fabrikam.example")
    opened: list[str] = []
    real_open = os.open

    def watching_open(file, *args, **kwargs):
        opened.append(os.fspath(file))
        return real_open(file, *args, **kwargs)

    monkeypatch.setattr(os, "open", watching_open)
    second = SqliteGateway(path)
    try:
        assert os.fspath(path) not in opened
        assert second.find_partners_by_emails(["ann@fabrikam.example"])
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
    finally:
        second.close()
        first.close()


# --- the calendar state machine -------------------------------------------------------------

from tests.contract.calendar_machine import (  # noqa: E402
    CalendarSyncMachine,
    CrmActions,
    SeriesRef,
)


def _embedded_read(gateway: SqliteGateway, event_ids: list[int]) -> dict[int, tuple[bool, bool]]:
    """What the embedded store's user sees of events: private or not, free or not."""
    with gateway._read() as conn:
        rows = conn.execute("SELECT id, sensitivity, show_as FROM crm_calendar_event").fetchall()
    return {
        row["id"]: (row["sensitivity"] in ("private", "confidential"), row["show_as"] == "free")
        for row in rows
        if row["id"] in event_ids
    }


def _master(series: SeriesRef) -> int:
    assert series.master is not None, "the store binds the series' master"
    return series.master


TestCalendarSyncMachine = machine_for(
    CalendarSyncMachine,
    _fresh_store,
    lambda gateway, name, email: gateway.add_partner(name, email, False, None, None),
    close_gateway=_close_store,
    crm=CrmActions(
        create=lambda gateway, account, item, partner_ids: TestSqliteCalendar.crm_create(
            None, gateway, account, item, partner_ids
        ),
        rename=lambda gateway, event_id, subject: gateway.crm_update_event(
            event_id, subject=subject
        ),
        move=lambda gateway, event_id, start, end: gateway.crm_update_event(
            event_id, start=start, end=end
        ),
        set_private=lambda gateway, event_id, private: gateway.crm_update_event(
            event_id, sensitivity=Sensitivity.PRIVATE if private else Sensitivity.NORMAL
        ),
        delete=lambda gateway, event_id: gateway.crm_delete_event(event_id),
        read=_embedded_read,
        create_series=lambda gateway, account, item, partner_ids: TestSqliteCalendar.crm_create(
            None, gateway, account, item, partner_ids
        ),
        edit_occurrence=lambda gateway, event_id, changes: gateway.crm_update_event(
            event_id, **changes
        ),
        delete_occurrence=lambda gateway, event_id: gateway.crm_delete_event(event_id),
        rename_series=lambda gateway, series, subject: gateway.crm_update_event(
            _master(series), subject=subject
        ),
        reshape_series=lambda gateway, series, recurrence, start: gateway.crm_update_event(
            _master(series), recurrence=recurrence
        ),
        delete_series=lambda gateway, series: gateway.crm_delete_event(_master(series)),
    ),
)


def test_what_the_calendar_machine_found() -> None:
    """Its failing examples and a seldom path, as steps (`CalendarSyncMachine.regressions`)."""
    assert run_regressions(TestCalendarSyncMachine) == 6


def test_a_series_reshaped_in_the_crm_while_an_invitee_syncs_first() -> None:
    """Only the organizer's push of the new shape ends a pending reshape (it was cleared by
    the invitee's record of the change: the sequence's docstring)."""
    from tests.contract.calendar_machine import series_reshaped_while_an_invitee_syncs_first

    run = TestCalendarSyncMachine.machine()
    try:
        series_reshaped_while_an_invitee_syncs_first(run)
    finally:
        run.teardown()


# --- outbox (the claim) ---------------------------------------------------------------------

from tests.contract.outbox_contract import OutboxContract  # noqa: E402


class TestSqliteOutbox(OutboxContract):
    @pytest.fixture
    def gateway(self, tmp_path: Path):
        store = SqliteGateway(tmp_path / "outbox.sqlite3")
        yield store
        store.close()

    @pytest.fixture
    def other_gateway(self, tmp_path: Path):
        """A second worker: its own connection to the same file."""
        store = SqliteGateway(tmp_path / "outbox.sqlite3")
        yield store
        store.close()

    def crm_queue(self, gateway, account, subject):
        return gateway.crm_queue_mail(
            account.id,
            to=[EmailAddress("dana@fabrikam.example", "Dana")],
            subject=subject,
            body_html=f"<p>{subject}</p>",
        )
