"""A mailbox's folders sync side by side (service/lanes.py), within Outlook's 4 concurrent
requests per mailbox, and a folder interrupted mid-round keeps exactly its own cursor.

Proof from the emulator's request log under its latency model: a Graph request is answered
when the model's time has passed since it arrived (or when the emulator is done with it, if
later), so it was in flight from ``at - duration`` to that plus ``max(duration, latency)``;
overlapping intervals are concurrent requests."""

from __future__ import annotations

import threading
import time
from urllib.parse import urlsplit

import pytest

from m365sync.crm.sqlite import SqliteGateway
from m365sync.demo import seed_crm
from m365sync.domain import CursorKind
from m365sync.emulator.latency import LatencyModel
from m365sync.emulator.mailbox import Mailbox
from m365sync.errors import CrmUnavailable
from m365sync.service import lanes
from m365sync.service.account_sync import sync_account_mail
from m365sync.service.connect import connect_account
from m365sync.service.runtime import Runtime

from .conftest import build_stack

DELTA = "/messages/delta"
FOLDERS = ("inbox", "sentitems", "archive", "junkemail")
LATENCY_S = 0.25


@pytest.fixture
def four(tmp_path):
    """Four folders with mail, pages of 30: more requests want to run than the cap allows."""
    built = build_stack(
        tmp_path,
        Mailbox.seeded(size=300, seed=3),
        page_size=30,
        sync_extra=f"mail_folders = {list(FOLDERS)!r}\n".replace("'", '"'),
    )
    try:
        yield built
    finally:
        built.runtime.close()
        built.emulator.stop()


def peak_in_flight(records, latency: float) -> int:
    """Most Graph requests in flight at once (a $batch envelope counting once)."""
    edges = []
    for r in records:
        if r.path.startswith("/v1.0/") and not r.in_batch:
            start = r.at - r.duration
            edges += [(start, 1), (start + max(r.duration, latency), -1)]
    peak = current = 0
    for _, step in sorted(edges, key=lambda e: (e[0], e[1])):
        current += step
        peak = max(peak, current)
    return peak


def delta_times(records, folder_id: str) -> list[float]:
    return [r.at for r in records if DELTA in r.path and folder_id in r.path]


def fresh_runtime(stack, tmp_path, name):
    gateway = SqliteGateway(tmp_path / f"{name}.sqlite3")
    seed_crm(gateway, stack.emulator.mailbox, share=1.0)
    runtime = Runtime.build(stack.config, gateway)
    return runtime, gateway, connect_account(runtime, browser="follow")


def test_folders_run_side_by_side_within_four_requests(four, tmp_path, monkeypatch):
    mailbox = four.emulator.mailbox
    ids = {name: mailbox.resolve_folder(name)["id"] for name in FOLDERS}
    assert all(mailbox.messages_in(name) for name in FOLDERS)
    # The same mailbox one folder at a time: what the side-by-side cycle must store too.
    monkeypatch.setattr(lanes, "MAX_LANES", 1)
    runtime, gateway, account = fresh_runtime(four, tmp_path, "one-lane")
    alone = sync_account_mail(runtime, gateway.get_account(account.id))
    assert alone.error is None
    expected = gateway.message_ids_for_account(account.id)
    runtime.close()
    monkeypatch.undo()

    four.emulator.latency = LatencyModel(latency_ms=LATENCY_S * 1000)
    four.emulator.request_log.clear()
    runtime, gateway, account = fresh_runtime(four, tmp_path, "lanes")
    four.emulator.request_log.clear()
    run = sync_account_mail(runtime, gateway.get_account(account.id))
    records = four.emulator.requests
    runtime.close()
    assert run.error is None
    assert gateway.message_ids_for_account(account.id) == expected
    assert (run.imported, run.pages) == (alone.imported, alone.pages)
    for folder_id in ids.values():
        assert gateway.get_cursor(account.id, folder_id).kind is CursorKind.DELTA
    # Folders overlap: each folder's first page was asked for before the Inbox (the
    # largest, many pages) had its last one, not after it as folder after folder would.
    inbox = delta_times(records, ids["inbox"])
    assert len(inbox) >= 4
    for name in ("sentitems", "archive", "junkemail"):
        assert min(delta_times(records, ids[name])) < max(inbox)
    # Many requests wanted to run at once; the mailbox's cap let four at a time through.
    assert peak_in_flight(records, LATENCY_S) == 4


class FailsOnPage:
    """A CRM that dies on ``folder``'s Nth page write (other folders' pages pass), recording
    the cursor of every page write it let through, per folder."""

    def __init__(self, inner, folder: str, page: int) -> None:
        self.inner, self.folder, self.page = inner, folder, page
        self.cursors: dict[str, list[str]] = {}

    def store_mail_page(self, page, *, lease=None):
        written = self.cursors.setdefault(page.folder_id, [])
        if page.folder_id == self.folder and len(written) + 1 == self.page:
            raise CrmUnavailable("simulated crash on one folder's page")
        result = self.inner.store_mail_page(page, lease=lease)
        written.append(page.cursor.link)
        return result

    def __getattr__(self, name):
        return getattr(self.inner, name)


def test_an_interrupted_folder_keeps_its_cursor_while_the_others_keep_theirs(four, tmp_path):
    mailbox = four.emulator.mailbox
    ids = {name: mailbox.resolve_folder(name)["id"] for name in FOLDERS}
    reference_runtime, reference, ref_account = fresh_runtime(four, tmp_path, "reference")
    assert sync_account_mail(reference_runtime, reference.get_account(ref_account.id)).error is None
    expected = reference.message_ids_for_account(ref_account.id)
    reference_runtime.close()

    four.emulator.latency = LatencyModel(latency_ms=50)
    runtime, gateway, account = fresh_runtime(four, tmp_path, "crashing")
    crashing = FailsOnPage(gateway, ids["inbox"], page=3)
    runtime.gateway = crashing
    four.emulator.request_log.clear()
    crashed = sync_account_mail(runtime, gateway.get_account(account.id))
    assert crashed.error and "CRM could not be reached" in crashed.error
    # The Inbox keeps page 2's cursor: the link page 3 was read from, nothing beyond it.
    inbox = gateway.get_cursor(account.id, ids["inbox"])
    assert inbox.kind is CursorKind.NEXT and inbox.link == crashing.cursors[ids["inbox"]][-1]
    assert len(crashing.cursors[ids["inbox"]]) == 2
    read = [r for r in four.emulator.requests if DELTA in r.path and ids["inbox"] in r.path]
    assert read[2].query == urlsplit(inbox.link).query
    in_inbox = {m["id"] for m in mailbox.messages_in("inbox")}
    assert 0 < len(in_inbox & set(gateway.message_ids_for_account(account.id))) <= 2 * 30
    # Every other folder's cursor is its own last stored page's, or none if it stored none.
    for name in ("sentitems", "archive", "junkemail"):
        cursor = gateway.get_cursor(account.id, ids[name])
        written = crashing.cursors.get(ids[name], [])
        assert (cursor.link if cursor else None) == (written[-1] if written else None)
    # Resuming stores exactly what an uninterrupted sync stores.
    runtime.gateway = gateway
    resumed = sync_account_mail(runtime, gateway.get_account(account.id))
    assert resumed.error is None
    assert gateway.message_ids_for_account(account.id) == expected
    runtime.close()


class OverlapWatch:
    """A CRM that notes how many page writes and partner lookups are in progress at once;
    each write takes a while, as a page into Odoo does."""

    def __init__(self, inner) -> None:
        self.inner = inner
        self.lock = threading.Lock()
        self.busy = self.peak = 0

    def _watched(self, call, *args, **kwargs):
        with self.lock:
            self.busy += 1
            self.peak = max(self.peak, self.busy)
        try:
            time.sleep(0.05)
            return call(*args, **kwargs)
        finally:
            with self.lock:
                self.busy -= 1

    def store_mail_page(self, page, *, lease=None):
        return self._watched(self.inner.store_mail_page, page, lease=lease)

    def find_partners_by_emails(self, emails):
        return self._watched(self.inner.find_partners_by_emails, emails)

    def __getattr__(self, name):
        return getattr(self.inner, name)


def test_the_crm_takes_one_folders_page_at_a_time(four, tmp_path):
    """Folders overlap on Graph's side; their lookups and page writes do not (two writes of
    one account at once would race for a shared conversation's thread in Odoo)."""
    four.emulator.latency = LatencyModel(latency_ms=100)
    runtime, gateway, account = fresh_runtime(four, tmp_path, "watched")
    watch = OverlapWatch(gateway)
    runtime.gateway = watch
    four.emulator.request_log.clear()
    run = sync_account_mail(runtime, gateway.get_account(account.id))
    records = four.emulator.requests
    runtime.close()
    assert run.error is None and run.pages > len(FOLDERS)
    assert watch.peak == 1
    assert peak_in_flight(records, 0.1) > 1  # while Graph's side overlapped
