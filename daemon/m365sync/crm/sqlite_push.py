"""The embedded store's half of push: Graph subscriptions and sync requests.

A mixin of `SqliteGateway`, like the calendar and the outbox. One row per (account, kind);
the clientState secret is never stored, only its SHA-256, which is all the notification
endpoint (`service.notify_server`) needs. ``sync_requested_at`` on the account is the time of
the latest request for a cycle (Sync now, a notification): the service runs a cycle when it is
later than the last cycle's start, so a request that arrives during a cycle is never lost and
nothing has to clear it.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

from m365sync.crm.sqlite_time import dt_text as _text
from m365sync.crm.sqlite_time import dt_value as _time
from m365sync.domain import (
    Lease,
    ReceivedNotification,
    Subscription,
    SubscriptionKind,
    SubscriptionState,
)
from m365sync.sync.notifications import state_after

V5_PUSH = """
ALTER TABLE m365_account ADD COLUMN sync_requested_at TEXT;

CREATE TABLE m365_subscription (
    id INTEGER PRIMARY KEY,
    account_id INTEGER NOT NULL REFERENCES m365_account (id) ON DELETE CASCADE,
    kind TEXT NOT NULL CHECK (kind IN ('mail', 'calendar')),
    graph_id TEXT NOT NULL UNIQUE,
    resource TEXT NOT NULL,
    expires_at TEXT NOT NULL,
    client_state_hash TEXT NOT NULL,
    state TEXT NOT NULL DEFAULT 'active'
        CHECK (state IN ('active', 'lapsed', 'removed', 'reauthorize')),
    last_notified_at TEXT,
    detail TEXT NOT NULL DEFAULT '',
    notification_url TEXT NOT NULL DEFAULT '',
    UNIQUE (account_id, kind)
);
"""

_COLUMNS = (
    "account_id, kind, graph_id, resource, expires_at, client_state_hash, state, "
    "last_notified_at, detail, notification_url"
)


def _subscription(row: Any) -> Subscription:
    return Subscription(
        account_id=row["account_id"],
        kind=SubscriptionKind(row["kind"]),
        graph_id=row["graph_id"],
        resource=row["resource"],
        expires_at=_time(row["expires_at"]),  # type: ignore[arg-type]
        client_state_hash=row["client_state_hash"],
        state=SubscriptionState(row["state"]),
        last_notified_at=_time(row["last_notified_at"]),
        detail=row["detail"],
        notification_url=row["notification_url"],
    )


class PushStore:
    """The push half of `SqliteGateway` (see the module docstring)."""

    _write: Any
    _read: Any
    _require_account: Any
    _check_lease: Any

    @staticmethod
    def _request(conn: Any, account_id: int, at: datetime) -> None:
        conn.execute(
            "UPDATE m365_account SET sync_requested_at = ? WHERE id = ? "
            "AND (sync_requested_at IS NULL OR sync_requested_at < ?)",
            (_text(at), account_id, _text(at)),
        )

    def request_sync(self, account_id: int, at: datetime) -> None:
        with self._write() as conn:
            self._require_account(conn, account_id)
            self._request(conn, account_id, at)

    def subscriptions(self, account_id: int) -> list[Subscription]:
        with self._read() as conn:
            self._require_account(conn, account_id)
            rows = conn.execute(
                f"SELECT {_COLUMNS} FROM m365_subscription WHERE account_id = ? "  # noqa: S608
                "ORDER BY kind",
                (account_id,),
            ).fetchall()
        return [_subscription(row) for row in rows]

    def save_subscription(self, subscription: Subscription, *, lease: Lease | None = None) -> None:
        with self._write() as conn:
            self._require_account(conn, subscription.account_id)
            if lease is not None:
                self._check_lease(conn, lease, subscription.account_id)
            # One per kind; a recreated subscription has a new Graph id, an old row holding
            # that id (another account's, impossible in Graph) would be replaced too.
            conn.execute(
                "DELETE FROM m365_subscription WHERE (account_id = ? AND kind = ?) OR graph_id = ?",
                (subscription.account_id, subscription.kind.value, subscription.graph_id),
            )
            conn.execute(
                f"INSERT INTO m365_subscription ({_COLUMNS}) "  # noqa: S608
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    subscription.account_id,
                    SubscriptionKind(subscription.kind).value,
                    subscription.graph_id,
                    subscription.resource,
                    _text(subscription.expires_at),
                    subscription.client_state_hash,
                    SubscriptionState(subscription.state).value,
                    _text(subscription.last_notified_at),
                    subscription.detail,
                    subscription.notification_url,
                ),
            )

    def drop_subscription(self, account_id: int, kind: SubscriptionKind) -> None:
        with self._write() as conn:
            conn.execute(
                "DELETE FROM m365_subscription WHERE account_id = ? AND kind = ?",
                (account_id, SubscriptionKind(kind).value),
            )

    def subscriptions_by_graph_id(self, graph_ids: Iterable[str]) -> dict[str, Subscription]:
        wanted = sorted({g for g in graph_ids if g})
        if not wanted:
            return {}
        marks = ", ".join("?" for _ in wanted)
        with self._read() as conn:
            rows = conn.execute(
                f"SELECT {_COLUMNS} FROM m365_subscription "  # noqa: S608
                f"WHERE graph_id IN ({marks})",
                wanted,
            ).fetchall()
        return {row["graph_id"]: _subscription(row) for row in rows}

    def record_notifications(
        self, notifications: Sequence[ReceivedNotification], at: datetime
    ) -> list[int]:
        asked: set[int] = set()
        with self._write() as conn:
            for note in notifications:
                row = conn.execute(
                    "SELECT account_id FROM m365_subscription WHERE graph_id = ?",
                    (note.subscription_id,),
                ).fetchone()
                if row is None:
                    continue
                state = state_after(note)
                conn.execute(
                    "UPDATE m365_subscription SET last_notified_at = ?, "
                    "state = COALESCE(?, state) WHERE graph_id = ?",
                    (_text(at), state.value if state else None, note.subscription_id),
                )
                self._request(conn, row["account_id"], at)
                asked.add(row["account_id"])
        return sorted(asked)
