"""`m365sync folders`: an account's mail folder tree with ids and counts, what its folder
choice syncs, and (embedded store) setting that choice.

The tree is read from Graph as a cycle reads it (every page of every level) and handed to the
CRM like a cycle does, so the account form's list is current too.
"""

from __future__ import annotations

from rich.console import Console
from rich.table import Table

from m365sync.domain import FolderChoice, MailFolder
from m365sync.errors import ConfigError
from m365sync.service.actions import _account
from m365sync.service.mail_folders import FolderPlan, plan_folders, settings_for
from m365sync.service.runtime import Runtime
from m365sync.sync.folders import NOT_MAIL, descendants

CHOICE_WORDS = {
    FolderChoice.INBOX_SENT: "Inbox and Sent Items",
    FolderChoice.ALL: "all mail folders",
    FolderChoice.CHOSEN: "chosen folders",
}


def folders_command(
    runtime: Runtime,
    console: Console,
    *,
    account_id: int | None = None,
    choose: str | None = None,
    folders: tuple[str, ...] = (),
) -> int:
    """Print the tree; with ``choose``, first store the account's choice (`set_folder_choice`:
    Odoo refuses it, its account form holds the choice). Exit 1 when a chosen folder cannot
    be found."""
    account = _account(runtime, account_id)
    if choose is not None:
        choice = None if choose == "config" else FolderChoice(choose)
        if choice is FolderChoice.CHOSEN and not folders:
            raise ConfigError("--choose chosen needs at least one --folder.")
        runtime.gateway.set_folder_choice(account.id, choice, folders)
        account = runtime.gateway.get_account(account.id)
    cfg = runtime.config.sync
    settings = settings_for(
        account, cfg.folder_choice(), cfg.mail_folders, cfg.include_child_folders
    )
    graph = runtime.graph_for(account)
    plan = plan_folders(graph, runtime.mail_reader_for(account, graph), settings)
    synced = frozenset(f.graph_id for f in plan.folders)
    runtime.gateway.store_mail_folders(account.id, plan.tree, synced)
    source = "this account's choice" if account.folder_choice else "the configuration"
    title = f"Mail folders of {account.address}: {CHOICE_WORDS[settings.choice]} ({source})"
    console.print(folders_table(plan, synced, title=title, choice=settings.choice))
    for sentence in plan.problems.values():
        console.print(f"[red]{sentence}[/]")
    return 1 if plan.problems else 0


def folders_table(
    plan: FolderPlan, synced: frozenset[str], *, title: str, choice: FolderChoice
) -> Table:
    """One row per folder, indented under its parent, with why an unsynced one is left out."""
    table = Table(title=title)
    for column, justify in (
        ("Folder", "left"),
        ("Id", "left"),
        ("Items", "right"),
        ("Unread", "right"),
        ("Synced", "left"),
    ):
        table.add_column(column, justify=justify)  # type: ignore[arg-type]
    names = {f.graph_id: n for n, f in plan.well_known.items()}
    not_mail = descendants(
        plan.tree, [f.graph_id for n, f in plan.well_known.items() if n in NOT_MAIL]
    )
    for folder in _ordered(plan.tree):
        depth = folder.path.count("/")
        name = "  " * depth + folder.display_name
        if folder.graph_id in names:
            name += f" [dim]({names[folder.graph_id]})[/]"
        table.add_row(
            name,
            folder.graph_id,
            str(folder.total_items),
            str(folder.unread_items),
            _why(folder, synced, not_mail if choice is FolderChoice.ALL else set()),
        )
    return table


def _why(folder: MailFolder, synced: frozenset[str], not_mail: set[str]) -> str:
    if folder.graph_id in synced:
        return "[green]yes[/]"
    if folder.is_search:
        return "[dim]no: search folder[/]"
    if folder.graph_id in not_mail:
        return "[dim]no: trash, junk, drafts, outbox or chats[/]"
    return "[dim]no[/]"


def _ordered(tree: list[MailFolder]) -> list[MailFolder]:
    """Parents before children, siblings by name, as Outlook's folder pane shows them."""
    return sorted(tree, key=lambda f: [p.casefold() for p in f.path.split("/")])
