"""Rebuilding an embedded-store table in place, for schema changes ALTER TABLE cannot make.

Why: SQLite gives a new row of an ``INTEGER PRIMARY KEY`` table ``max(id) + 1``, so once the
row holding the largest id is deleted, the next insert gets that id again. A CRM event's id
reaches Graph in its create's ``transactionId`` (`m365sync.sync.calendar.transaction_id`),
so a reused id would make a new event look like a retry of a deleted one (Graph may
deduplicate it, and an unbound Outlook copy of the old one would bind to the new). Only
``AUTOINCREMENT`` promises ids that are never reused, and it can only be given by creating
the table again.

The procedure is SQLite's own (https://sqlite.org/lang_altertable.html, "Making Other Kinds
Of Table Schema Changes"): with foreign keys off (the caller's job: the pragma does nothing
inside a transaction, and a ``DROP TABLE`` with them on would cascade to every child row),
create the new table from the stored ``CREATE TABLE`` text, copy the rows, drop the old,
rename the new, recreate its indexes and triggers, then check the foreign keys that involve
it. Run inside the migration's transaction, a failure leaves the file as it was.
"""

from __future__ import annotations

import re
import sqlite3

__all__ = ["rebuild_with_autoincrement"]

_PRIMARY_KEY = re.compile(r"\bINTEGER\s+PRIMARY\s+KEY\b(?!\s+AUTOINCREMENT)", re.IGNORECASE)


def _quoted(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def rebuild_with_autoincrement(conn: sqlite3.Connection, table: str) -> None:
    """Give ``table``'s ``id INTEGER PRIMARY KEY`` the ``AUTOINCREMENT`` keyword, keeping
    its rows, ids, indexes and triggers; the ids handed out from then on are above every id
    the table holds now. A table that has it already is left alone."""
    row = conn.execute(
        "SELECT sql FROM sqlite_master WHERE type = 'table' AND name = ?", (table,)
    ).fetchone()
    if row is None:
        raise sqlite3.OperationalError(f"no table {table} to rebuild")
    create = row[0]
    if re.search(r"\bAUTOINCREMENT\b", create, re.IGNORECASE):
        return
    if conn.execute("PRAGMA foreign_keys").fetchone()[0]:
        raise sqlite3.OperationalError(
            f"rebuilding {table} needs foreign keys off (a DROP would cascade to its children)"
        )
    interim = f"{table}__rebuild"
    head = re.compile(r"^\s*CREATE\s+TABLE\s+(\"[^\"]+\"|\w+)", re.IGNORECASE)
    new_create, named = head.subn(f"CREATE TABLE {_quoted(interim)}", create, count=1)
    new_create, keyed = _PRIMARY_KEY.subn("INTEGER PRIMARY KEY AUTOINCREMENT", new_create, 1)
    if (named, keyed) != (1, 1):
        raise sqlite3.OperationalError(f"cannot read the definition of {table}: {create}")
    extras = [
        sql
        for (sql,) in conn.execute(
            "SELECT sql FROM sqlite_master WHERE tbl_name = ? AND type IN ('index', 'trigger') "
            "AND sql IS NOT NULL ORDER BY type, name",
            (table,),
        )
    ]
    columns = ", ".join(_quoted(r[1]) for r in conn.execute(f"PRAGMA table_info({_quoted(table)})"))
    conn.execute(new_create)
    conn.execute(
        f"INSERT INTO {_quoted(interim)} ({columns}) "  # noqa: S608 - names from the schema
        f"SELECT {columns} FROM {_quoted(table)}"
    )
    conn.execute(f"DROP TABLE {_quoted(table)}")
    conn.execute(f"ALTER TABLE {_quoted(interim)} RENAME TO {_quoted(table)}")
    for sql in extras:
        conn.execute(sql)
    children = [
        name
        for (name,) in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
        if any(ref[2] == table for ref in conn.execute(f"PRAGMA foreign_key_list({_quoted(name)})"))
    ]
    for name in [table, *children]:
        broken = conn.execute(f"PRAGMA foreign_key_check({_quoted(name)})").fetchone()
        if broken is not None:
            raise sqlite3.IntegrityError(
                f"rebuilding {table} left a broken reference in {name}: {tuple(broken)}"
            )
