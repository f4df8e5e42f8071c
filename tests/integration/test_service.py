"""`m365sync run` as operators run it: real processes sharing one embedded store, 20 accounts
read over HTTPS from the emulator, leases between the replicas, signals, health and metrics."""

from __future__ import annotations

import itertools
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections import defaultdict
from datetime import datetime
from pathlib import Path

import pytest

from m365sync.crm.gateway import AccountSpec
from m365sync.emulator.mailbox import Mailbox
from m365sync.service.account_sync import sync_account_mail
from m365sync.service.connect import connect_account

from .conftest import Stack, build_stack, free_port

ACCOUNTS = 20


@pytest.fixture
def fleet(tmp_path: Path):
    """One real connect, then 19 more accounts with the same sealed sign-in (all of them read
    the emulator's one mailbox), in one store."""
    stack = build_stack(tmp_path, Mailbox.seeded(size=60, seed=11), page_size=10)
    first = connect_account(stack.runtime, browser="follow", announce=lambda _text: None)
    ids = [first.id]
    for n in range(1, ACCOUNTS):
        account = stack.gateway.upsert_account(
            AccountSpec(
                address=f"replica-test-{n}@contoso.example",
                tenant_id=f"tenant-{n}",
                object_id=f"object-{n}",
                sealed_token_cache=first.sealed_token_cache,
            )
        )
        ids.append(account.id)
    assert len(set(ids)) == ACCOUNTS
    stack.ids = ids  # type: ignore[attr-defined]
    try:
        yield stack
    finally:
        stack.runtime.close()
        stack.emulator.stop()


class Replica:
    def __init__(
        self, stack: Stack, name: str, *, workers: int = 4, ttl: float = 3.0, interval: int = 600
    ) -> None:
        self.port = free_port()
        self.log_path = stack.config_path.parent / f"{name}.log"
        env = dict(os.environ)
        env.pop("M365SYNC_CONFIG", None)
        env.update(
            {
                "M365SYNC_SYNC__MAIL_INTERVAL_SECONDS": str(interval),
                "M365SYNC_SYNC__CALENDAR": "false",
                "M365SYNC_SERVICE__TICK_SECONDS": "0.3",
                "M365SYNC_SERVICE__CONNECT_INTERVAL_SECONDS": "1",
                "M365SYNC_SERVICE__FREE_BUSY_INTERVAL_SECONDS": "1",
            }
        )
        self._log = self.log_path.open("w", encoding="utf-8")
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "m365sync",
                "-c",
                str(stack.config_path),
                "run",
                "--log-json",
                "--workers",
                str(workers),
                "--lease-ttl",
                str(ttl),
                "--health-port",
                str(self.port),
            ],
            stdout=self._log,
            stderr=subprocess.STDOUT,
            env=env,
        )

    def events(self, kind: str | None = None) -> list[dict]:
        found = []
        for line in self.log_path.read_text(encoding="utf-8").splitlines():
            try:
                record = json.loads(line)
            except ValueError:
                continue
            if kind is None or record.get("event") == kind:
                found.append(record)
        return found

    @property
    def holder(self) -> str:
        return f"{socket.gethostname()}:{self.proc.pid}"

    def get(self, path: str) -> tuple[int, bytes]:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}{path}", timeout=5) as r:
                return r.status, r.read()
        except urllib.error.HTTPError as error:
            return error.code, error.read()

    def wait_healthy(self, timeout: float = 20) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, self.log_path.read_text()
            try:
                if self.get("/healthz")[0] == 200:
                    return
            except OSError:
                pass
            time.sleep(0.1)
        raise AssertionError("no /healthz: " + self.log_path.read_text())

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout=timeout)
        finally:
            self._log.close()


def synced(stack: Stack) -> set[int]:
    """Accounts whose last run ended without error."""
    done = set()
    for account_id in stack.ids:  # type: ignore[attr-defined]
        run = stack.gateway.last_sync_run(account_id)
        if run is not None and not run.error:
            done.add(account_id)
    return done


def wait_for(condition, timeout: float, what: str, replicas=()) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        for replica in replicas:
            assert replica.proc.poll() is None, replica.log_path.read_text()[-3000:]
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def cycles(*replicas: Replica) -> dict[int, list[tuple[datetime, datetime, str]]]:
    by_account: dict[int, list[tuple[datetime, datetime, str]]] = defaultdict(list)
    for replica in replicas:
        for event in replica.events("cycle_end"):
            by_account[event["account"]].append(
                (
                    datetime.fromisoformat(event["started"]),
                    datetime.fromisoformat(event["ended"]),
                    event["holder"],
                )
            )
    return by_account


def assert_no_overlap(by_account) -> None:
    for account_id, spans in by_account.items():
        spans = sorted(spans)
        for (_s1, e1, h1), (s2, _e2, h2) in itertools.pairwise(spans):
            assert e1 <= s2, f"account {account_id} synced by {h1} and {h2} at once"


def assert_no_duplicates(stack: Stack) -> None:
    gateway = stack.gateway
    per_account = {gateway.count_messages(a) for a in stack.ids}  # type: ignore[attr-defined]
    assert len(per_account) == 1, per_account  # one mailbox: the same messages everywhere
    assert gateway.count_messages() == per_account.pop()  # ... stored once


def lease_holders(stack: Stack) -> dict[int, str | None]:
    with stack.gateway._read() as conn:
        rows = conn.execute("SELECT id, lease_holder FROM m365_account").fetchall()
    return {row["id"]: row["lease_holder"] for row in rows}


def test_two_replicas_share_twenty_accounts_without_overlap_or_gap(fleet):
    # A one-second interval: every account is synced again and again, by either replica.
    a = Replica(fleet, "a", interval=1)
    b = Replica(fleet, "b", interval=1)
    try:
        wait_for(lambda: len(synced(fleet)) == ACCOUNTS, 40, "all accounts synced", (a, b))
        wait_for(
            lambda: sum(map(len, cycles(a, b).values())) >= 3 * ACCOUNTS,
            20,
            "repeated cycles",
            (a, b),
        )
        by_account = cycles(a, b)
        assert set(by_account) == set(fleet.ids)  # none missed
        assert_no_overlap(by_account)
        holders = {h for spans in by_account.values() for _s, _e, h in spans}
        assert holders == {a.holder, b.holder}  # both took part
        moved = [i for i, spans in by_account.items() if len({h for *_t, h in spans}) == 2]
        assert moved  # accounts move between replicas, never synced by both at once
        assert_no_duplicates(fleet)

        status, body = a.get("/healthz")
        health = json.loads(body)
        assert status == 200 and health["status"] == "ok"
        assert health["holder"] == a.holder and health["last_cycle_at"]
        assert "accounts_held" in health
        status, metrics = b.get("/metrics")
        text = metrics.decode()
        assert status == 200
        for name in (
            "m365sync_cycles_total",
            "m365sync_messages_imported_total",
            "m365sync_pages_total",
            "m365sync_leases_held",
        ):
            assert name in text
        assert "Bearer" not in text and "eyJ" not in text
    finally:
        codes = (a.stop(), b.stop())
    assert codes == (0, 0)
    assert set(lease_holders(fleet).values()) == {None}


def test_sigkill_hands_accounts_over_after_lease_expiry_without_duplicates(fleet):
    fleet.emulator.faults.slow(r"delta", 0.15, times=None)  # keep cycles in flight
    a = Replica(fleet, "a", workers=4, ttl=3.0)
    try:
        wait_for(
            lambda: a.events("cycle_end") and a.holder in lease_holders(fleet).values(),
            40,
            "a's cycles in flight",
            (a,),
        )
        a.proc.send_signal(signal.SIGKILL)
        a.proc.wait(timeout=10)
        killed_at = time.time()
    finally:
        a.stop(signal.SIGKILL)
    orphaned = {i for i, h in lease_holders(fleet).items() if h == a.holder}
    assert orphaned, "the kill should have caught cycles in flight"
    b = Replica(fleet, "b", workers=8, ttl=3.0)
    try:
        wait_for(lambda: len(synced(fleet)) == ACCOUNTS, 45, "all accounts synced", (b,))
    finally:
        assert b.stop() == 0
    taken = cycles(b)
    for account_id in orphaned:
        starts = [s for s, _e, _h in taken[account_id]]
        assert starts, f"account {account_id} was not taken over"
        assert min(starts).timestamp() >= killed_at + 2.0  # only after the lease expired
    assert_no_duplicates(fleet)
    assert set(lease_holders(fleet).values()) == {None}


def test_sigterm_mid_page_exits_zero_and_leaves_a_consistent_store(fleet):
    fleet.emulator.faults.slow(r"delta", 0.15, times=None)
    a = Replica(fleet, "a", workers=4)
    try:
        a.wait_healthy()
        wait_for(
            lambda: len(a.events("cycle_end")) >= 2 and a.holder in lease_holders(fleet).values(),
            30,
            "finished cycles and cycles in flight",
            (a,),
        )
    finally:
        code = a.stop(signal.SIGTERM)
    assert code == 0, a.log_path.read_text()[-3000:]
    assert a.events("stopped")
    assert set(lease_holders(fleet).values()) == {None}  # every lease released
    # No account is left saying it is importing: those stopped mid-cycle say so.
    details = {acc.status_detail for acc in fleet.gateway.list_accounts()}
    assert "Importing mail." not in details
    assert any("stopped during a cycle" in d for d in details)
    fleet.emulator.faults.clear()

    # Every stored cursor matches the stored data: resuming completes each account, and the
    # accounts that had finished import nothing new.
    finished = synced(fleet)
    assert finished and finished != set(fleet.ids)
    runtime = fleet.new_runtime()
    try:
        for account_id in fleet.ids:
            run = sync_account_mail(runtime, runtime.gateway.get_account(account_id))
            assert not run.error, run.error
            if account_id in finished:
                assert (run.imported, run.updated, run.removed) == (0, 0, 0)
        for account_id in fleet.ids:
            again = sync_account_mail(runtime, runtime.gateway.get_account(account_id))
            assert (again.imported, again.updated, again.removed) == (0, 0, 0)
    finally:
        runtime.close()
    assert_no_duplicates(fleet)


def test_healthz_says_503_when_the_loop_is_stuck(stack):
    from m365sync.service.daemon import Service, ServiceOptions
    from m365sync.service.health import HealthServer

    service = Service(stack.runtime, ServiceOptions(holder="h:1", tick_seconds=1, health_port=0))
    server = HealthServer("127.0.0.1", 0, service.status, service.metrics).start()
    try:
        url = f"http://127.0.0.1:{server.port}/healthz"
        with urllib.request.urlopen(url, timeout=5) as answer:
            assert json.loads(answer.read())["status"] == "ok"
        service._last_loop -= 10  # three intervals without a loop turn
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(url, timeout=5)
        assert refused.value.code == 503
        assert json.loads(refused.value.read())["holder"] == "h:1"
    finally:
        server.stop()
        service._pool.shutdown()


def test_sd_notify_speaks_the_notify_socket_protocol(tmp_path):
    from m365sync.service.daemon import sd_notify

    path = tmp_path / "notify"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as listener:
        listener.bind(str(path))
        assert sd_notify("READY=1\nSTATUS=x", {"NOTIFY_SOCKET": str(path)})
        assert listener.recv(256) == b"READY=1\nSTATUS=x"
    assert not sd_notify("READY=1", {})
