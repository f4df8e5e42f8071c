"""The embedded store's outbox: mail the CRM queued for sending through an account.

A mixin of `SqliteGateway`, like the calendar. The row moves queued -> sending -> sent or
failed; ``sending`` (with its start time) is written before the send, by a claim that
succeeds only on a row still ``queued`` (`claim_outgoing`: of two workers, one sends), so a
daemon that stops between Graph's 202 and the ``sent`` write finds the sent copy (wherever
the person filed it) instead of sending again (DESIGN.md, invariant 7).
"""

from __future__ import annotations

import base64
import json
import uuid
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

from m365sync.domain import (
    EmailAddress,
    OutboxState,
    OutgoingAttachment,
    OutgoingMail,
)
from m365sync.sync.outbox import LINK_WINDOW

V3_OUTBOX = """
ALTER TABLE m365_outbox ADD COLUMN graph_id TEXT;
ALTER TABLE m365_outbox ADD COLUMN send_started_at TEXT;
ALTER TABLE m365_outbox ADD COLUMN conversation_id TEXT;
ALTER TABLE m365_outbox ADD COLUMN attempts INTEGER NOT NULL DEFAULT 0;
ALTER TABLE m365_outbox ADD COLUMN updated_at TEXT;
"""


def _addresses(values: Iterable[EmailAddress]) -> list[dict[str, str]]:
    return [{"address": a.address, "name": a.name} for a in values]


def _read_addresses(values: list[dict[str, str]]) -> tuple[EmailAddress, ...]:
    return tuple(EmailAddress(v["address"], v.get("name", "")) for v in values)


class OutboxStore:
    """The outbox half of `SqliteGateway` (see the module docstring)."""

    _write: Any
    _read: Any
    _require_account: Any

    def crm_queue_mail(
        self,
        account_id: int,
        *,
        to: Iterable[EmailAddress],
        subject: str,
        body_html: str,
        cc: Iterable[EmailAddress] = (),
        bcc: Iterable[EmailAddress] = (),
        attachments: Iterable[OutgoingAttachment] = (),
        reply_to_graph_id: str | None = None,
        partner_id: int | None = None,
        requested_by: str | None = None,
    ) -> int:
        """What Compose Email does in the CRM: record the mail, state queued. ``requested_by``
        is the CRM user writing it (default: the account's owner)."""
        payload = {
            "to": _addresses(to),
            "cc": _addresses(cc),
            "bcc": _addresses(bcc),
            "subject": subject,
            "body_html": body_html,
            "reply_to_graph_id": reply_to_graph_id,
            "attachments": [
                {
                    "name": a.name,
                    "content_type": a.content_type,
                    "content": base64.b64encode(a.content).decode("ascii"),
                }
                for a in attachments
            ],
        }
        now = datetime.now(UTC).isoformat()
        with self._write() as conn:
            self._require_account(conn, account_id)
            if requested_by is None:
                row = conn.execute("SELECT owner FROM m365_account WHERE id = ?", (account_id,))
                requested_by = row.fetchone()["owner"]
            return conn.execute(
                "INSERT INTO m365_outbox (account_id, idempotency_key, state, partner_id, "
                "payload, created_at, updated_at, requested_by) "
                "VALUES (?, ?, 'queued', ?, ?, ?, ?, ?)",
                (
                    account_id,
                    uuid.uuid4().hex,
                    partner_id,
                    json.dumps(payload),
                    now,
                    now,
                    requested_by,
                ),
            ).lastrowid

    def outgoing_mail(self, account_id: int, *, limit: int = 20) -> list[OutgoingMail]:
        # Mail to send first (a sent mail awaiting its link never holds back a queued one);
        # julianday compares the times as times, whatever their offset and fraction.
        since = (datetime.now(UTC) - LINK_WINDOW).isoformat()
        with self._read() as conn:
            rows = conn.execute(
                "SELECT * FROM m365_outbox WHERE account_id = ? AND (state IN ('queued', "
                "'sending') OR (state = 'sent' AND (graph_id IS NULL OR graph_id = '' "
                "OR internet_message_id IS NULL OR internet_message_id = '') "
                "AND julianday(send_started_at) >= julianday(?))) "
                "ORDER BY state = 'sent', id LIMIT ?",
                (account_id, since, limit),
            ).fetchall()
        return [self._mail(row) for row in rows]

    def outbox_item(self, mail_id: int) -> OutgoingMail:
        """One outbox row, whatever its state (for the CLI and tests)."""
        with self._read() as conn:
            row = conn.execute("SELECT * FROM m365_outbox WHERE id = ?", (mail_id,)).fetchone()
        if row is None:
            raise KeyError(mail_id)
        return self._mail(row)

    @staticmethod
    def _mail(row: Any) -> OutgoingMail:
        payload = json.loads(row["payload"])
        return OutgoingMail(
            id=row["id"],
            account_id=row["account_id"],
            to=_read_addresses(payload.get("to", [])),
            cc=_read_addresses(payload.get("cc", [])),
            bcc=_read_addresses(payload.get("bcc", [])),
            subject=payload.get("subject", ""),
            body_html=payload.get("body_html", ""),
            attachments=tuple(
                OutgoingAttachment(a["name"], a["content_type"], base64.b64decode(a["content"]))
                for a in payload.get("attachments", [])
            ),
            reply_to_graph_id=payload.get("reply_to_graph_id"),
            state=OutboxState(row["state"]),
            graph_id=row["graph_id"],
            send_started_at=datetime.fromisoformat(row["send_started_at"])
            if row["send_started_at"]
            else None,
            internet_message_id=row["internet_message_id"],
            conversation_id=row["conversation_id"],
            error=row["error"],
            attempts=row["attempts"],
            requested_by=row["requested_by"] or "",
        )

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
        now = datetime.now(UTC).isoformat()
        with self._write() as conn:
            conn.execute(
                "UPDATE m365_outbox SET state = ?, graph_id = COALESCE(?, graph_id), "
                "send_started_at = COALESCE(?, send_started_at), "
                "internet_message_id = COALESCE(?, internet_message_id), "
                "conversation_id = COALESCE(?, conversation_id), error = ?, updated_at = ?, "
                "attempts = attempts + (CASE WHEN ? = 'sending' AND state = 'queued' "
                "THEN 1 ELSE 0 END), sent_at = CASE WHEN ? = 'sent' THEN ? ELSE sent_at END "
                "WHERE id = ?",
                (
                    OutboxState(state).value,
                    graph_id,
                    send_started_at.isoformat() if send_started_at else None,
                    internet_message_id,
                    conversation_id,
                    error,
                    now,
                    OutboxState(state).value,
                    OutboxState(state).value,
                    now,
                    mail_id,
                ),
            )

    def claim_outgoing(self, mail_id: int, started: datetime) -> bool:
        # One UPDATE guarded by the state: SQLite serialises writers, so of two claims of the
        # same mail exactly one sees it queued.
        with self._write() as conn:
            claimed = conn.execute(
                "UPDATE m365_outbox SET state = 'sending', send_started_at = ?, error = NULL, "
                "attempts = attempts + 1, updated_at = ? WHERE id = ? AND state = 'queued'",
                (started.isoformat(), datetime.now(UTC).isoformat(), mail_id),
            ).rowcount
        return claimed == 1

    # The command line's Compose Email (`m365sync send`) is the CRM-side write itself.
    queue_mail = crm_queue_mail

    def crm_retry_mail(self, mail_id: int) -> None:
        """A failed send retried from the CRM (the person looked: it is not in their mailbox)."""
        with self._write() as conn:
            conn.execute(
                "UPDATE m365_outbox SET state = 'queued', error = NULL, send_started_at = NULL "
                "WHERE id = ? "
                "AND state = 'failed'",
                (mail_id,),
            )
