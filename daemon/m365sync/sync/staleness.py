"""The stale-sync detector: an account that should be syncing but has not for too long.

A failing account says so in its status; a stale one is the silent case (a replica wedged,
every replica down, the CRM rejecting status writes). "Too long" is three of the account's
longest expected gaps between cycles, and never under fifteen minutes, so one slow cycle or
a throttling pause does not raise it.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from m365sync.domain import Account, AccountStatus

MINIMUM = timedelta(minutes=15)
# Statuses that need a person already say so; stale is for accounts expected to sync.
EXPECTED_TO_SYNC = frozenset(
    {
        AccountStatus.CONNECTED,
        AccountStatus.SYNCING,
        AccountStatus.ACTIVE,
        AccountStatus.THROTTLED,
        AccountStatus.FAILED,
    }
)


def stale_after(longest_gap_seconds: float) -> timedelta:
    return max(MINIMUM, timedelta(seconds=3 * longest_gap_seconds))


def is_stale(account: Account, now: datetime, threshold: timedelta) -> bool:
    if account.status not in EXPECTED_TO_SYNC or account.last_sync_at is None:
        return False
    throttled = account.status is AccountStatus.THROTTLED
    if throttled and account.status_until and account.status_until > now:
        return False  # Microsoft asked for the pause
    return now - account.last_sync_at > threshold
