"""The embedded store (SQLite) as the soak's CRM: a person's meetings and mail through the
store's own CRM-side methods, read back straight from its tables, and a misbehaving CRM as a
long write transaction that holds the database (every writer of the daemon waits)."""

from __future__ import annotations

import random
import sqlite3
import threading
import time
from contextlib import closing
from datetime import datetime
from pathlib import Path
from typing import Any

from m365sync.domain import EmailAddress
from m365sync.emulator.mailbox import Mailbox
from m365sync.service.connect import connect_account
from m365sync.service.runtime import Runtime
from tests.integration.conftest import Stack, build_stack

from . import truth
from .harness import Daemon, crm_event, links


class EmbeddedCrm:
    """`harness.Crm` over the embedded store of a `Stack`."""

    def __init__(self, stack: Stack) -> None:
        self.stack = stack
        self.gateway = stack.gateway
        self.path = str(stack.config.store.sqlite_path())
        self.account_id = connect_account(
            stack.runtime, browser="follow", announce=lambda _text: None
        ).id
        self.address = self.gateway.get_account(self.account_id).address
        self._holder: threading.Thread | None = None

    def runtime(self) -> Runtime:
        return self.stack.new_runtime()

    def _rows(self, sql: str, *args: Any) -> list[dict[str, Any]]:
        with closing(sqlite3.connect(self.path, timeout=30)) as raw:
            raw.row_factory = sqlite3.Row
            return [dict(r) for r in raw.execute(sql, args)]

    def partner_emails(self) -> list[tuple[int, str, str]]:
        rows = self._rows(
            "SELECT id, email, name FROM res_partner WHERE is_company = 0 AND email IS NOT NULL "
            "ORDER BY id LIMIT 8"
        )
        return [(r["id"], r["email"], r["name"]) for r in rows]

    def create_meeting(self, subject, start, hours, count, people) -> None:
        event = crm_event(subject, start, hours, count, self.address)
        self.gateway.crm_create_event(self.account_id, event, links(people))

    def meetings(self) -> list[dict[str, Any]]:
        return self._rows(
            "SELECT DISTINCT e.id, e.subject, e.series_id, e.is_series_master "
            "FROM crm_calendar_event e LEFT JOIN m365_event_binding b ON b.crm_event_id = e.id "
            "WHERE e.deleted = 0 AND e.is_cancelled = 0 "
            "AND (e.owner_account_id = ? OR b.account_id = ?) ORDER BY e.id",
            self.account_id,
            self.account_id,
        )

    def edit_meeting(self, row: dict[str, Any], changes: dict[str, Any]) -> None:
        changes = dict(changes)
        people = changes.pop("attendees", None)
        self.gateway.crm_update_event(
            row["id"], attendees=None if people is None else links(people), **changes
        )

    def delete_meeting(self, row: dict[str, Any]) -> None:
        self.gateway.crm_delete_event(row["id"])

    def queue_mail(self, partner: tuple[int, str, str], subject: str) -> int:
        pid, email, name = partner
        return self.gateway.crm_queue_mail(
            self.account_id,
            to=[EmailAddress(email, name)],
            subject=subject,
            body_html=f"<p>{subject}: the figures you asked for.</p>",
            partner_id=pid,
        )

    def outbox(self) -> dict[int, Any]:
        ids = self._rows("SELECT id FROM m365_outbox WHERE account_id = ?", self.account_id)
        return {r["id"]: self.gateway.outbox_item(r["id"]) for r in ids}

    def retry_mail(self, mail_id: int) -> None:
        self.gateway.crm_retry_mail(mail_id)

    def stored_mail(self) -> list[dict[str, Any]]:
        return truth.stored_mail(self.path, self.account_id)

    def message_count(self) -> int:
        return self.gateway.count_messages()

    def calendar(self, low: datetime, high: datetime) -> dict[str, Any]:
        return truth.crm_series(self.path, self.account_id, low, high)

    def misbehave(self, rng: random.Random) -> str | None:
        """The store holds its write lock for a while (a long transaction elsewhere)."""
        seconds = rng.uniform(0.3, 2.5)  # drawn first: the schedule never depends on timing
        if self._holder is not None and self._holder.is_alive():
            return None

        def hold() -> None:
            with closing(sqlite3.connect(self.path, timeout=30, isolation_level=None)) as raw:
                raw.execute("BEGIN IMMEDIATE")
                time.sleep(seconds)
                raw.execute("COMMIT")

        self._holder = threading.Thread(target=hold, daemon=True)
        self._holder.start()
        return f"store locked for {seconds:.1f}s"

    def calm(self) -> None:
        if self._holder is not None:
            self._holder.join(timeout=30)


def embedded_world(tmp_path: Path, mailbox: Mailbox) -> tuple[Stack, EmbeddedCrm, Daemon]:
    """Emulator, embedded store with the mailbox's contacts, one connected account, and the
    daemon process (not started)."""
    stack = build_stack(tmp_path, mailbox, page_size=5, window=0)
    crm = EmbeddedCrm(stack)
    daemon = Daemon(stack.config_path, tmp_path / "daemon.log")
    return stack, crm, daemon
