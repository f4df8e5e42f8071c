"""The stale-sync detector and where it shows: `m365sync status` and the service's metric."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from rich.console import Console

from m365sync.crm.gateway import AccountSpec
from m365sync.crm.sqlite import SqliteGateway
from m365sync.domain import Account, AccountStatus
from m365sync.sync.staleness import MINIMUM, is_stale, stale_after
from m365sync.ui import accounts_table

NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)


def account(status=AccountStatus.ACTIVE, ago=timedelta(hours=1), until=None) -> Account:
    return Account(
        1, "a@contoso.example", status=status, last_sync_at=NOW - ago, status_until=until
    )


def test_threshold_is_three_gaps_and_never_under_fifteen_minutes():
    assert stale_after(60) == MINIMUM
    assert stale_after(1800) == timedelta(minutes=90)


def test_only_accounts_expected_to_sync_go_stale():
    threshold = timedelta(minutes=15)
    assert is_stale(account(), NOW, threshold)
    assert not is_stale(account(ago=timedelta(minutes=10)), NOW, threshold)
    for status in (
        AccountStatus.PAUSED,
        AccountStatus.NEEDS_RECONNECT,
        AccountStatus.INSUFFICIENT_PERMISSIONS,
    ):
        assert not is_stale(account(status), NOW, threshold)
    assert not is_stale(Account(1, "a@x.example"), NOW, threshold)  # never synced yet
    throttled = account(AccountStatus.THROTTLED, until=NOW + timedelta(minutes=5))
    assert not is_stale(throttled, NOW, threshold)
    assert is_stale(
        account(AccountStatus.THROTTLED, until=NOW - timedelta(minutes=1)), NOW, threshold
    )
    assert is_stale(account(AccountStatus.FAILED), NOW, threshold)


def test_status_table_marks_stale_and_shows_push(tmp_path):
    store = SqliteGateway(tmp_path / "s.sqlite3")
    try:
        fresh = store.upsert_account(AccountSpec(address="fresh@contoso.example"))
        old = store.upsert_account(AccountSpec(address="old@contoso.example"))
        store.set_account_status(fresh.id, AccountStatus.ACTIVE, synced_at=NOW)
        store.set_account_status(old.id, AccountStatus.ACTIVE, synced_at=NOW - timedelta(hours=2))
        table = accounts_table(
            store.list_accounts(), store, stale_threshold=timedelta(minutes=15), now=NOW
        )
        console = Console(width=200, record=True)
        console.print(table)
        lines = console.export_text().splitlines()
        (old_line,) = [line for line in lines if "old@" in line]
        (fresh_line,) = [line for line in lines if "fresh@" in line]
        assert "(stale)" in old_line and "(stale)" not in fresh_line
        assert " off " in fresh_line  # no subscription
    finally:
        store.close()
