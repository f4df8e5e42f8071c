"""One part's failure never hides another's success (issue #14, point 4).

A cycle runs the outbox, mail, the calendar and push in that order. When one of them fails
(the calendar answering 404, say), the others still run; the account's line says which part
needs attention and what to do, the last sync (the mail's) moves on when mail was stored, and
`m365sync sync --once` exits non-zero naming the part.
"""

from __future__ import annotations

from m365sync.domain import AccountStatus
from m365sync.service.account_sync import sync_account_mail
from m365sync.service.connect import connect_account
from tests.integration.test_cli import _words, m365sync

CALENDAR_DELTA = r"/v1.0/me/calendarView/delta"


def test_calendar_404_leaves_mail_synced_and_names_the_calendar(stack):
    m365sync(stack, "connect")
    stack.emulator.faults.error(
        CALENDAR_DELTA,
        404,
        "ErrorItemNotFound",
        "The specified object was not found in the store.",
        times=None,
    )

    result = m365sync(stack, "sync", "--once", check=False)

    # Something failed, so the exit code is non-zero, and the message names the part.
    assert result.returncode == 1, result.stdout + result.stderr
    out = _words(result.stdout)
    assert "Calendar failed:" in out, out
    assert "404" in out
    assert "Traceback" not in result.stdout + result.stderr

    # Every mail is stored, and the account says so: last sync is now, the line starts with
    # the part that needs attention and goes on with what did sync.
    [account] = stack.gateway.list_accounts()
    stored = stack.gateway.count_messages(account.id)
    assert stored > 0
    assert account.last_sync_at is not None
    detail = account.status_detail
    assert detail.startswith("Calendar needs attention: Microsoft Graph refused a request (404"), (
        detail
    )
    assert "The next cycle retries." in detail
    assert "Outbox, mail and push notifications synced: Imported" in detail, detail
    run = stack.gateway.last_sync_run(account.id)
    assert run is not None and run.imported == stored
    assert run.error and run.error.startswith("Calendar failed:")

    status = _words(m365sync(stack, "status").stdout)
    assert "Calendar needs attention" in status
    assert "never" not in status

    # The calendar comes back: the next cycle is all green and exits 0.
    stack.emulator.faults.clear()
    again = m365sync(stack, "sync", "--once", check=False)
    assert again.returncode == 0, again.stdout + again.stderr
    [account] = stack.gateway.list_accounts()
    assert account.status is AccountStatus.ACTIVE
    assert account.status_detail.startswith("Imported 0 new"), account.status_detail


def test_calendar_permission_alone_says_insufficient_permissions_and_mail_goes_on(stack):
    account = connect_account(stack.runtime, browser="follow")
    stack.emulator.faults.error(
        CALENDAR_DELTA, 403, "ErrorAccessDenied", "Access is denied.", times=None
    )

    run = sync_account_mail(stack.runtime, account)

    after = stack.gateway.get_account(account.id)
    assert after.last_sync_at is not None
    assert after.status is AccountStatus.INSUFFICIENT_PERMISSIONS
    assert after.status_detail.startswith("Calendar needs attention: Microsoft denied access")
    assert run.imported == stack.gateway.count_messages(account.id) > 0
    assert run.parts["mail"] is None and run.parts["outbox"] is None
    assert run.parts["calendar"] and "Calendars.ReadWrite" in run.parts["calendar"]


def test_throttled_calendar_stops_the_cycle_but_keeps_the_mails_last_sync(stack):
    account = connect_account(stack.runtime, browser="follow")
    stack.emulator.faults.throttle(CALENDAR_DELTA, retry_after="600", times=None)

    run = sync_account_mail(stack.runtime, account)

    after = stack.gateway.get_account(account.id)
    assert after.status is AccountStatus.THROTTLED
    assert after.last_sync_at is not None
    assert "Outbox and mail synced: Imported" in after.status_detail, after.status_detail
    assert run.parts == {"outbox": None, "mail": None}
