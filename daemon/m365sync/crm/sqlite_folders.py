"""The embedded store's half of mail folders: the tree each cycle listed, and a per-account
folder choice (issue #14).

A mixin of `SqliteGateway`, like the calendar and the outbox. An account's choice is NULL
until someone sets one (`m365sync folders --choose`): such an account follows the daemon's
configuration (``sync.mail_folder_choice`` / ``sync.mail_folders``), as every account did
before. Folder rows are keyed by (account, Graph id): ids are constant, so a folder renamed
or moved in Outlook keeps its row.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

from m365sync.domain import FolderChoice, KnownFolder, MailFolder

# Idempotent (IF NOT EXISTS): the choice lives in a table of its own rather than in new
# columns of m365_account, so re-running the step (a store rewound by hand) is harmless.
V10_MAIL_FOLDERS = """
CREATE TABLE IF NOT EXISTS m365_account_folder_choice (
    account_id INTEGER PRIMARY KEY REFERENCES m365_account (id) ON DELETE CASCADE,
    choice TEXT NOT NULL,
    folders TEXT NOT NULL DEFAULT '[]'
);

CREATE TABLE IF NOT EXISTS m365_mail_folder (
    id INTEGER PRIMARY KEY,
    account_id INTEGER NOT NULL REFERENCES m365_account (id) ON DELETE CASCADE,
    graph_id TEXT NOT NULL,
    parent_graph_id TEXT,
    display_name TEXT NOT NULL DEFAULT '',
    path TEXT NOT NULL DEFAULT '',
    total_items INTEGER NOT NULL DEFAULT 0,
    unread_items INTEGER NOT NULL DEFAULT 0,
    child_folder_count INTEGER NOT NULL DEFAULT 0,
    is_search INTEGER NOT NULL DEFAULT 0,
    synced INTEGER NOT NULL DEFAULT 0,
    UNIQUE (account_id, graph_id)
);
"""


# Added to the columns an account is read with (``m365_account`` is the outer table).
CHOICE_COLUMNS = (
    "(SELECT choice FROM m365_account_folder_choice c WHERE c.account_id = m365_account.id) "
    "AS mail_folder_choice, "
    "(SELECT folders FROM m365_account_folder_choice c WHERE c.account_id = m365_account.id) "
    "AS mail_folders"
)


def folder_choice_of(row: Any) -> tuple[FolderChoice | None, tuple[str, ...]]:
    """An account row's folder choice (None: follow the configuration) and chosen folders."""
    choice = row["mail_folder_choice"]
    if not choice:
        return None, ()
    return FolderChoice(choice), tuple(json.loads(row["mail_folders"] or "[]"))


class FolderStore:
    """The folder half of `SqliteGateway` (see the module docstring)."""

    _write: Any
    _read: Any
    _require_account: Any

    def store_mail_folders(
        self, account_id: int, folders: list[MailFolder], synced: frozenset[str]
    ) -> None:
        with self._write() as conn:
            self._require_account(conn, account_id)
            ids = [f.graph_id for f in folders]
            marks = ", ".join("?" for _ in ids)  # placeholders only: the ids are bound
            conn.execute(
                "DELETE FROM m365_mail_folder WHERE account_id = ? "  # noqa: S608
                f"AND graph_id NOT IN ({marks})",
                (account_id, *ids),
            )
            conn.executemany(
                "INSERT INTO m365_mail_folder (account_id, graph_id, parent_graph_id, "
                "display_name, path, total_items, unread_items, child_folder_count, is_search, "
                "synced) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
                "ON CONFLICT (account_id, graph_id) DO UPDATE SET "
                "parent_graph_id = excluded.parent_graph_id, "
                "display_name = excluded.display_name, path = excluded.path, "
                "total_items = excluded.total_items, unread_items = excluded.unread_items, "
                "child_folder_count = excluded.child_folder_count, "
                "is_search = excluded.is_search, synced = excluded.synced",
                [
                    (
                        account_id,
                        f.graph_id,
                        f.parent_id,
                        f.display_name,
                        f.path or f.display_name,
                        f.total_items,
                        f.unread_items,
                        f.child_folder_count,
                        int(f.is_search),
                        int(f.graph_id in synced),
                    )
                    for f in folders
                ],
            )

    def list_mail_folders(self, account_id: int) -> list[KnownFolder]:
        with self._read() as conn:
            self._require_account(conn, account_id)
            rows = conn.execute(
                "SELECT * FROM m365_mail_folder WHERE account_id = ? ORDER BY path COLLATE NOCASE",
                (account_id,),
            ).fetchall()
        return [
            KnownFolder(
                MailFolder(
                    graph_id=row["graph_id"],
                    display_name=row["display_name"],
                    parent_id=row["parent_graph_id"],
                    total_items=row["total_items"],
                    unread_items=row["unread_items"],
                    child_folder_count=row["child_folder_count"],
                    path=row["path"],
                    is_search=bool(row["is_search"]),
                ),
                bool(row["synced"]),
            )
            for row in rows
        ]

    def set_folder_choice(
        self, account_id: int, choice: FolderChoice | None, folders: Iterable[str] = ()
    ) -> None:
        refs = [f.strip() for f in folders if f.strip()]
        with self._write() as conn:
            self._require_account(conn, account_id)
            conn.execute(
                "DELETE FROM m365_account_folder_choice WHERE account_id = ?", (account_id,)
            )
            if choice is not None:
                conn.execute(
                    "INSERT INTO m365_account_folder_choice (account_id, choice, folders) "
                    "VALUES (?, ?, ?)",
                    (account_id, choice.value, json.dumps(refs)),
                )
