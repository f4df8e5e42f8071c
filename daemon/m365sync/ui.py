"""Terminal output: tables and progress bars (rich). Presentation only, no decisions."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import UTC, datetime, timedelta

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Table

from m365sync.crm.gateway import CrmGateway
from m365sync.domain import Account, AccountStatus, SyncRun
from m365sync.service.account_sync import sync_account_mail
from m365sync.service.mail_cycle import PageProgress
from m365sync.service.runtime import Runtime
from m365sync.sync.notifications import is_live
from m365sync.sync.staleness import is_stale

STATUS_STYLE = {
    AccountStatus.CONNECTED: "cyan",
    AccountStatus.SYNCING: "blue",
    AccountStatus.ACTIVE: "green",
    AccountStatus.NEEDS_RECONNECT: "bold red",
    AccountStatus.INSUFFICIENT_PERMISSIONS: "bold red",
    AccountStatus.THROTTLED: "yellow",
    AccountStatus.FAILED: "red",
    AccountStatus.PAUSED: "dim",
}


def _when(value) -> str:
    return value.strftime("%Y-%m-%d %H:%M:%S UTC") if value else "never"


def accounts_table(
    accounts: Sequence[Account],
    gateway: CrmGateway,
    *,
    stale_threshold: timedelta | None = None,
    now: datetime | None = None,
) -> Table:
    """One row per account; ``stale_threshold`` marks accounts that should be syncing and
    have not for that long (`sync.staleness`)."""
    now = now or datetime.now(UTC)
    table = Table(title="Microsoft 365 accounts", title_justify="left")
    columns = ("Id", "Mailbox", "Status", "Last sync", "Messages", "Push", "Details")
    for column in columns:
        table.add_column(column, overflow="fold")
    if not accounts:
        table.add_row("-", "no account connected yet: run `m365sync connect`", *[""] * 5)
    for account in accounts:
        style = STATUS_STYLE.get(account.status, "")
        status = account.status.value.replace("_", " ")
        if account.status is AccountStatus.THROTTLED and account.status_until:
            status += f" until {account.status_until:%H:%M:%S}"
        last = _when(account.last_sync_at)
        if stale_threshold is not None and is_stale(account, now, stale_threshold):
            last = f"[bold yellow]{last} (stale)[/]"
        table.add_row(
            str(account.id),
            account.address,
            f"[{style}]{status}[/]",
            last,
            str(gateway.count_messages(account.id)),
            _push(gateway, account, now),
            account.status_detail,
        )
    return table


def _push(gateway: CrmGateway, account: Account, now: datetime) -> str:
    subscriptions = gateway.subscriptions(account.id)
    if not subscriptions:
        return "off"
    parts = []
    for sub in subscriptions:
        if is_live(sub, now):
            parts.append(f"[green]{sub.kind.value} until {sub.expires_at:%m-%d %H:%M}[/]")
        else:
            parts.append(f"[yellow]{sub.kind.value} {sub.state.value}[/]")
    return ", ".join(parts)


def runs_table(runs: Iterable[tuple[Account, SyncRun, float]]) -> Table:
    table = Table(title="Sync cycle (mail, then calendar)", title_justify="left")
    columns = (
        "Mailbox",
        "Pages",
        "New",
        "Updated",
        "Removed",
        "Calendar",
        "Skipped",
        "Time",
        "Result",
    )
    for column in columns:
        table.add_column(column, overflow="fold")
    for account, run, seconds in runs:
        skipped = ", ".join(f"{n} {reason}" for reason, n in sorted(run.skipped.items())) or "0"
        table.add_row(
            account.address,
            str(run.pages),
            str(run.imported),
            str(run.updated),
            str(run.removed),
            _calendar_figures(run),
            skipped,
            f"{seconds:.1f} s",
            f"[red]{run.error}[/]" if run.error else "[green]ok[/]",
        )
    return table


def _calendar_figures(run: SyncRun) -> str:
    c = run.calendar
    if not c:
        return "-"
    return (
        f"{c.get('new', 0)} new, {c.get('updated', 0)} updated, {c.get('removed', 0)} removed, "
        f"{c.get('pushed', 0)} pushed"
    )


def sync_accounts(
    runtime: Runtime, console: Console, account_ids: Sequence[int] | None = None
) -> list[tuple[Account, SyncRun, float]]:
    """One mail cycle for each account, with a progress bar per account."""
    import time

    accounts = [
        a for a in runtime.gateway.list_accounts() if not account_ids or a.id in account_ids
    ]
    results = []
    with Progress(
        SpinnerColumn(),
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("items"),
        TimeElapsedColumn(),
        console=console,
        transient=False,
    ) as progress:
        for account in accounts:
            task = progress.add_task(f"{account.address}", total=None)

            def on_page(step: PageProgress, task=task, address=account.address) -> None:
                progress.update(
                    task,
                    advance=step.items,
                    description=f"{address} \u00b7 {step.folder.display_name}",
                )

            started = time.monotonic()
            run = sync_account_mail(runtime, account, on_page=on_page)
            elapsed = time.monotonic() - started
            done = progress.tasks[task].completed
            progress.update(task, total=done or 1, completed=done or 1)
            results.append((runtime.gateway.get_account(account.id), run, elapsed))
    return results


def sync_all_with_progress(
    runtime: Runtime, console: Console, account_ids: Sequence[int] | None = None
) -> int:
    results = sync_accounts(runtime, console, account_ids)
    if not results:
        console.print("No account to sync: connect one with `m365sync connect`.")
        return 1
    console.print(runs_table(results))
    return 1 if any(run.error for _, run, _ in results) else 0
