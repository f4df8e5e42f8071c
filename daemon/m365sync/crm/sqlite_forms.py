"""What the embedded store answers for the CRM's own forms and settings: it has none.

Odoo's addon has a web callback for Connect, a Schedule Meeting form that asks for free/busy
times, and Settings an administrator fills in; the embedded store is used from the command
line, where `m365sync connect` redeems its code itself, `m365sync meet` asks Graph directly,
and `m365sync send` / `meet` are its Compose Email and Schedule Meeting (the contract's
`queue_mail` and `create_meeting` are the store's own CRM-side writes, `crm_queue_mail` and
`crm_create_event`). So nothing is ever pending here, a claim is always this process's, and
the daemon's own configuration is the only settings. These are the store's answers, stated
once here rather than inherited as defaults from the contract (`crm.gateway.CrmGateway`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from m365sync.crm.gateway import FreeBusyRequest
from m365sync.domain import (
    CrmSettings,
    PendingConnect,
)


class NoCrmForms:
    """The forms half of `SqliteGateway` (see the module docstring)."""

    _read: Any  # provided by SqliteGateway

    def pending_free_busy(self) -> list[FreeBusyRequest]:
        return []

    def store_free_busy(
        self, request_id: int, results: Sequence[object], *, error: str | None = None
    ) -> None:
        """Nothing asks, so nothing is answered (`pending_free_busy` is always empty)."""

    def publish_daemon_info(self, info: dict[str, object]) -> None:
        """No web callback seals codes here: the daemon's keys stay with the daemon."""

    def pending_connects(self) -> list[PendingConnect]:
        return []

    def claim_connect(self, connect_id: int, holder: str, *, ttl_seconds: float = 120.0) -> bool:
        return True

    def claim_free_busy(self, request_id: int, holder: str, *, ttl_seconds: float = 60.0) -> bool:
        return True

    def finish_connect(
        self, connect_id: int, *, account_id: int | None = None, error: str | None = None
    ) -> None:
        """No connect is ever pending here (`pending_connects` is always empty)."""

    def crm_settings(self) -> CrmSettings:
        """No administrator settings: the daemon's configuration is the only one; the tag is
        the random one the file was given when made (or migrated to V12)."""
        with self._read() as conn:
            row = conn.execute("SELECT value FROM m365_store_setting WHERE name = 'crm_tag'")
            return CrmSettings(crm_tag=row.fetchone()["value"])
