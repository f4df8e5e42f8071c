"""One soak run: a seeded mailbox and calendar, the daemon as a real process, faults, kills and
changes on both sides, then every record compared with the truth (`truth.py`).

Everything random comes from one ``random.Random(seed)``: the mailbox, which changes are made,
which faults are planned on which Graph paths, when the daemon is killed. The daemon itself is
a separate process (``m365sync run``), so the exact instant a fault or a kill meets it depends
on the machine; the seed replays the same plan, and a failure prints it.

The store is behind `Crm` (the embedded store here, Odoo in `odoo_crm.py`): what a CRM user
does (meetings, Compose Email, a retry) and what the comparison reads back.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Protocol, TypeVar

from m365sync.domain import CalendarEvent, EmailAddress, EventLink, EventType, Recurrence
from m365sync.domain import ResponseStatus as RS
from m365sync.emulator.mailbox import Mailbox
from m365sync.emulator.seed import crm_contacts
from m365sync.emulator.server import Emulator
from m365sync.errors import Conflict
from m365sync.service import outbox_cycle
from m365sync.service.account_sync import policy_for, sync_account_mail
from m365sync.service.connect import connect_account
from m365sync.service.outbox_cycle import UNCONFIRMED
from m365sync.service.runtime import Runtime

from . import truth
from .truth import Figures

WALL = "%Y-%m-%dT%H:%M:%S.0000000"
DAY = timedelta(days=1)

# Graph paths the faults aim at (re.search on the request path).
PATHS = {
    "mail delta": r"/mailFolders/[^/]+/messages/delta",
    "calendar delta": r"/calendarView/delta",
    "events": r"/me/events",
    "batch": r"/\$batch",
    "send": r"/(sendMail|reply)$",
    "messages": r"/me/messages",
    "any": r"^/v1\.0/",
}
CURSORS = ("mail delta", "calendar delta")
CURSOR_QUERY = r"[$](delta|skip)token="  # a nextLink or deltaLink of a round

T = TypeVar("T")
PERSON_TRIES = 4  # a person retries "another writer changed the same records first" a few times
PERSON_PAUSE = 0.3  # seconds before the first retry, doubled each time


def as_a_person(
    action: Callable[[], T],
    *,
    tries: int = PERSON_TRIES,
    pause: float = PERSON_PAUSE,
    sleep: Callable[[float], None] = time.sleep,
) -> T:
    """``action`` (a save, a sign-in, a read of the comparison) as a person does it: a
    `Conflict` (PostgreSQL's serialization failure Odoo gave up retrying: the daemon wrote the
    same records at that moment, nothing of the call was kept) is met by saving again after a
    short pause, as the message says. Only the last try's Conflict counts against the run; any
    other error leaves at once. The daemon's own calls never come through here: it retries a
    Conflict in its next cycle."""
    for attempt in range(tries):
        try:
            return action()
        except Conflict:
            if attempt == tries - 1:
                raise
            sleep(pause * 2**attempt)
    raise AssertionError("tries must be at least 1")


class Crm(Protocol):
    """The store's side of a soak: what its users do, and what the comparison reads."""

    account_id: int

    def runtime(self) -> Runtime: ...
    def partner_emails(self) -> list[tuple[int, str, str]]: ...
    def create_meeting(self, subject: str, start: datetime, hours: int, count: int,
                       people: list[tuple[int, str, str]]) -> None: ...  # fmt: skip
    def meetings(self) -> list[dict[str, Any]]: ...
    def edit_meeting(self, row: dict[str, Any], changes: dict[str, Any]) -> None: ...
    def delete_meeting(self, row: dict[str, Any]) -> None: ...
    def queue_mail(self, partner: tuple[int, str, str], subject: str) -> int: ...
    def outbox(self) -> dict[int, Any]: ...
    def retry_mail(self, mail_id: int) -> None: ...
    def stored_mail(self) -> list[dict[str, Any]]: ...
    def message_count(self) -> int: ...
    def calendar(self, low: datetime, high: datetime) -> dict[str, Any]: ...
    def misbehave(self, rng: random.Random) -> str | None: ...
    def calm(self) -> None: ...


@dataclass
class Daemon:
    """``m365sync run`` as a child process, killed and restarted at will."""

    config_path: Path
    log_path: Path
    env_extra: dict[str, str] = field(default_factory=dict)
    proc: subprocess.Popen | None = None
    starts: int = 0

    def start(self) -> None:
        env = dict(os.environ)
        env.pop("M365SYNC_CONFIG", None)
        env.update(
            {
                "M365SYNC_SYNC__MAIL_INTERVAL_SECONDS": "1",
                "M365SYNC_SYNC__OUTBOX_INTERVAL_SECONDS": "1",
                "M365SYNC_SERVICE__TICK_SECONDS": "0.2",
                "M365SYNC_NOTIFICATIONS__ENABLED": "false",
                "PYTHONFAULTHANDLER": "1",  # SIGABRT dumps every thread (`stop`)
                **self.env_extra,
            }
        )
        self.starts += 1
        log = self.log_path.open("a", encoding="utf-8")
        log.write(f"\n--- start {self.starts} ---\n")
        log.flush()
        # RELIABILITY_VERBOSE=1: the daemon logs every Graph request (debug), for a finding
        # that depends on timing and must be understood from its log.
        verbose = ["-vv"] if os.environ.get("RELIABILITY_VERBOSE") else []
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "m365sync", *verbose, "-c", str(self.config_path), "run",
             "--workers", "2", "--lease-ttl", "2", "--health-port", "-1"],
            stdout=log, stderr=subprocess.STDOUT, env=env,
        )  # fmt: skip
        log.close()

    def kill(self) -> None:
        """SIGKILL: no cleanup at all, the lease stays until it expires."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(timeout=30)

    def stop(self) -> int | None:
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                return self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self._why_not_stopped()
                self.proc.kill()
                self.proc.wait(timeout=10)
                return -9
        return self.proc.returncode

    def _why_not_stopped(self) -> None:
        """Into the log: each thread's signal state (pending, blocked, caught) and, by SIGABRT
        to the fault handler, its stack; a daemon deaf to SIGTERM is understood from these."""
        assert self.proc is not None
        lines = [f"--- no stop within 60 s of SIGTERM (pid {self.proc.pid}) ---"]
        for task in sorted(Path(f"/proc/{self.proc.pid}/task").glob("*")):
            try:
                status = (task / "status").read_text().splitlines()
            except OSError:
                continue
            keep = ("SigPnd", "ShdPnd", "SigBlk", "SigIgn", "SigCgt")
            lines.append(f"task {task.name}: " + " ".join(x for x in status if x.startswith(keep)))
        with self.log_path.open("a", encoding="utf-8") as log:
            log.write("\n".join(lines) + "\n")
        self.proc.send_signal(signal.SIGABRT)
        with suppress(subprocess.TimeoutExpired):
            self.proc.wait(timeout=10)

    def serving(self) -> bool:
        """Whether the last start got as far as serving (its signal handlers installed)."""
        text = self.tail(1_000_000)
        return "service started" in text.rpartition(f"--- start {self.starts} ---")[2]

    def tail(self, chars: int = 4000) -> str:
        try:
            return self.log_path.read_text(encoding="utf-8", errors="replace")[-chars:]
        except OSError:
            return ""


def graph_when(moment: datetime) -> dict[str, str]:
    return {"dateTime": moment.astimezone(UTC).strftime(WALL), "timeZone": "UTC"}


def daily(start: datetime, count: int) -> dict[str, Any]:
    return {
        "pattern": {"type": "daily", "interval": 1},
        "range": {"type": "numbered", "startDate": start.date().isoformat(),
                  "numberOfOccurrences": count},
    }  # fmt: skip


def domain_recurrence(start: datetime, count: int) -> Recurrence:
    return Recurrence(
        pattern_type="daily",
        start_date=start.date(),
        range_type="numbered",
        number_of_occurrences=count,
        time_zone="UTC",
    )


def crm_event(subject: str, start: datetime, hours: int, count: int, organizer: str):
    return CalendarEvent(
        graph_id="",
        ical_uid=None,
        event_type=EventType.SERIES_MASTER if count > 1 else EventType.SINGLE,
        subject=subject,
        start=start,
        end=start + timedelta(hours=hours),
        time_zone="UTC",
        recurrence=domain_recurrence(start, count) if count > 1 else None,
        organizer=EmailAddress(organizer),
    )


def links(people: list[tuple[int, str, str]]) -> list[EventLink]:
    return [EventLink("required", email, name, RS.NONE, pid, None) for pid, email, name in people]


class Soak:
    """One seeded run against one store (see the module docstring)."""

    def __init__(
        self,
        seed: int,
        emulator: Emulator,
        crm: Crm,
        daemon: Daemon,
        *,
        steps: int | None = None,
        log: Callable[[str], None] = lambda _text: None,
    ) -> None:
        self.seed = seed
        # The schedule (which step, which fault where, when to kill, pauses) comes from ``rng``
        # and never depends on what the stores hold; which record a change picks, and its
        # details, come from ``pick``, so a replay runs the same schedule whatever the timing.
        self.rng = random.Random(seed)
        self.pick = random.Random(f"{seed}-pick")
        self.emulator = emulator
        self.mailbox = emulator.mailbox
        self.crm = crm
        self.daemon = daemon
        self.steps = steps if steps is not None else self.rng.randint(8, 14)
        self.log = log
        self.figures = Figures(runs=1)
        self.now = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
        self.serial = 0
        self.alive: set[str] = set()  # event tags created and not deleted as a whole
        # Tags deleted as a whole -> where; occurrences cancelled in Outlook (tag, start) ->
        # where: none may be on either side at the end. A deleted event changed on the other
        # side before the daemon carried the deletion over may rightly come back (the later
        # change wins): it leaves ``dead`` for ``contested``, which the check leaves out.
        self.dead: dict[str, str] = {}
        self.cancelled: dict[tuple[str, datetime], str] = {}
        self.contested: set[str] = set()
        self.deleted_mail: dict[str, str] = {}  # mail deleted in Outlook -> subject
        self.split: set[str] = set()  # series that had one occurrence changed already
        self.archived: dict[str, str] = {}  # mail archived while the CRM held it -> subject
        self.filed: set[str] = set()  # every mail archived
        self.purges = 0
        # Outbox mails whose copy the person deleted for good (their own act: they know it went).
        self.purged_outbox: set[int] = set()
        self.queued: list[int] = []
        self.revoked = False
        self.people = crm.partner_emails()

    # --- the run ------------------------------------------------------------------------------

    def run(self) -> Figures:
        for _ in range(self.rng.randint(1, 3)):
            self.outlook_event()
        self.daemon.start()
        try:
            for _ in range(self.steps):
                time.sleep(self.rng.uniform(0.1, 0.9))
                self.step()
                if self.daemon.proc is not None and self.daemon.proc.poll() is not None:
                    code = self.daemon.proc.returncode
                    if code not in (0, -signal.SIGKILL):
                        self.figures.problem("wrong", f"the daemon exited by itself ({code})")
                    self.daemon.start()
            time.sleep(self.rng.uniform(0.5, 1.5))
        finally:
            self.emulator.faults.clear()
            self.crm.calm()
            code = self.daemon.stop()
        if code not in (0, None) and not (code == -signal.SIGTERM and not self.daemon.serving()):
            # (A SIGTERM before the service installed its handlers ends it at once: fine.)
            self.figures.problem("wrong", f"SIGTERM ended the daemon with {code}")
        self.converge()
        self.compare()
        return self.figures

    def step(self) -> None:
        actions: list[tuple[int, Callable[[], None]]] = [
            (5, self.outlook_mail),
            (3, self.outlook_event),
            (3, self.crm_meeting),
            (2, self.crm_mail),
            (5, self.fault),
            (1, self.expire_tokens),
            (1, self.revoke_or_reconnect),
            (2, self.kill),
            (getattr(self.crm, "misbehaviour_weight", 1), self.crm_misbehaves),
        ]
        weights = [w for w, _ in actions]
        (_, action) = self.rng.choices(actions, weights)[0]
        action()
        if self.revoked and self.rng.random() < 0.5:
            self.reconnect()

    # --- Outlook -----------------------------------------------------------------------------

    def _message_ids(self, *refs: str) -> list[str]:
        return sorted(mid for ref in refs for mid in self.mailbox.message_ids_in(ref))

    def outlook_mail(self) -> None:
        rng, pick = self.rng, self.pick
        kind = rng.choice(["add", "add", "edit", "move", "archive", "delete", "purge"])
        synced = self._message_ids("inbox", "sentitems")
        self.figures.changes += 1
        if kind == "add" or not synced:
            self.serial += 1
            _pid, email, name = pick.choice(self.people)
            known = pick.random() < 0.8
            sender = email if known else f"stranger{self.serial}@unknown-{self.serial}.example"
            self.mailbox.add_message(
                "inbox",
                {
                    "subject": f"M{self.serial} question about the offer",
                    "from": {"emailAddress": {"address": sender, "name": name}},
                    "toRecipients": [self.mailbox.owner_recipient()],
                    "body": {"contentType": "html", "content": f"<p>Offer {self.serial}</p>"},
                },
            )
            return
        mid = pick.choice(synced)
        if kind == "edit":
            subject = self.mailbox.get_message(mid).get("subject") or ""
            changes: dict[str, Any] = {"isRead": pick.random() < 0.5, "categories": ["Soak"]}
            if pick.random() < 0.5:
                changes["subject"] = f"{subject} (edited)"
            self.mailbox.update_message(mid, changes)
        elif kind == "move":
            inbox = self.mailbox.resolve_folder("inbox")["id"]
            target = "sentitems" if self.mailbox.folder_of(mid) == inbox else "inbox"
            self.mailbox.move_message(mid, target)
        elif kind == "archive":
            # Mail a person files away stays in the CRM, if the CRM had it.
            held = {row["graph_id"] for row in self.crm.stored_mail()}
            self.mailbox.move_message(mid, "archive")
            self.filed.add(mid)  # a page in flight may still store it: then it stays
            if mid in held:
                self.archived[mid] = self.mailbox.get_message(mid).get("subject") or ""
        elif kind == "delete":
            self.deleted_mail[mid] = self.mailbox.get_message(mid).get("subject") or ""
            self.mailbox.move_message(mid, "deleteditems")
        else:
            self.deleted_mail[mid] = self.mailbox.get_message(mid).get("subject") or ""
            # Deleting for good (Shift+Delete) puts the mail in Recoverable Items, where Graph
            # still finds it by id; every other time here it is gone altogether (retention
            # over). Alternating draws nothing from the seeds, so their schedules stay.
            self.purges += 1
            if self.purges % 2:
                self.mailbox.move_message(mid, "recoverableitemsdeletions")
            else:
                if (sent := truth.outbox_id_of(self.mailbox.view(mid))) is not None:
                    self.purged_outbox.add(sent)
                self.mailbox.delete_message(mid)

    def _tag(self) -> str:
        self.serial += 1
        tag = f"E{self.serial}"
        self.alive.add(tag)
        return tag

    def _slot(self) -> datetime:
        return self.now + DAY * self.pick.randint(1, 20) + timedelta(hours=self.pick.randint(0, 10))

    def _attendees(self) -> list[tuple[int, str, str]]:
        return self.pick.sample(self.people, self.pick.randint(1, 2))

    def outlook_event(self) -> None:
        rng, pick = self.rng, self.pick
        calendar = self.mailbox.calendar
        events = [e for e in calendar.events() if (e.get("subject") or "")[:1] == "E"]
        kind = rng.choice(["create", "create", "edit", "exception", "cancel", "delete"])
        self.figures.changes += 1
        if kind == "create" or not events:
            start, count = self._slot(), pick.choice([1, 1, 3, 4])
            body: dict[str, Any] = {
                "subject": f"{self._tag()} call from Outlook",
                "start": graph_when(start),
                "end": graph_when(start + timedelta(hours=1)),
                "attendees": [
                    {"emailAddress": {"address": e, "name": n}, "type": "required"}
                    for _p, e, n in self._attendees()
                ],
            }
            if count > 1:
                body["recurrence"] = daily(start, count)
            calendar.create(body)
            return
        event = pick.choice(events)
        tag = event["subject"].split(" ")[0]
        if kind != "delete":
            self._contest(tag, "the CRM")
        if kind == "edit":
            start = self._slot() if pick.random() < 0.4 else None
            changes: dict[str, Any] = {"subject": f"{tag} edited in Outlook {self.serial}"}
            if start is not None and event.get("type") != "seriesMaster":
                changes["start"], changes["end"] = graph_when(start), graph_when(start + DAY / 24)
            if pick.random() < 0.4:
                changes["attendees"] = [
                    {"emailAddress": {"address": e, "name": n}, "type": "required"}
                    for _p, e, n in self._attendees()
                ]
            calendar.update(event["id"], changes)
        elif kind in ("exception", "cancel") and event.get("type") == "seriesMaster":
            if tag in self.split:
                return
            low, high = self.now - DAY, self.now + DAY * 40
            instances = sorted(
                calendar.instances(event["id"], low, high), key=lambda i: i["start"]["dateTime"]
            )
            if len(instances) < 3:
                return
            self.split.add(tag)
            target = instances[1]
            if kind == "cancel":
                calendar.delete(target["id"])
                if tag not in self.contested:
                    when = truth.parse_instant_in(target["start"]["dateTime"], "UTC")
                    self.cancelled[(tag, when)] = "Outlook"
            else:
                start = truth.parse_instant_in(target["start"]["dateTime"], "UTC")
                # Within its own day: Graph refuses an occurrence crossing its neighbours.
                moved = start + timedelta(minutes=30 if start.hour < 23 else -30)
                calendar.update(
                    target["id"],
                    {"subject": f"{tag} moved in Outlook", "start": graph_when(moved),
                     "end": graph_when(moved + DAY / 24)},
                )  # fmt: skip
        elif kind == "delete":
            calendar.delete(event["id"])
            self._dies(tag, "Outlook")

    # --- the CRM ------------------------------------------------------------------------------

    def crm_meeting(self) -> None:
        rng, pick = self.rng, self.pick
        rows = [r for r in self.crm.meetings() if (r["subject"] or "")[:1] == "E"]
        kind = rng.choice(["create", "create", "edit", "occurrence", "delete"])
        self.figures.changes += 1
        if kind == "create" or not rows:
            count = pick.choice([1, 1, 1, 3])
            start = self._slot()
            self.crm.create_meeting(
                f"{self._tag()} meeting from the CRM", start, 1, count, self._attendees()
            )
            return
        row = pick.choice(rows)
        tag = row["subject"].split(" ")[0]
        if kind in ("edit", "occurrence"):
            self._contest(tag, "Outlook")
        if kind == "edit" and not row["series_id"]:
            changes: dict[str, Any] = {"subject": f"{tag} edited in the CRM {self.serial}"}
            if pick.random() < 0.5:
                start = self._slot()
                changes.update(start=start, end=start + timedelta(hours=1))
            if pick.random() < 0.4:
                changes["attendees"] = self._attendees()
            self.crm.edit_meeting(row, changes)
        elif kind == "occurrence" and row["series_id"] and not row["is_series_master"]:
            if tag in self.split:
                return
            self.split.add(tag)
            self.crm.edit_meeting(row, {"subject": f"{tag} one occurrence renamed"})
        elif kind == "delete" and (row["is_series_master"] or not row["series_id"]):
            self.crm.delete_meeting(row)
            self._dies(tag, "the CRM")

    def _dies(self, tag: str, where: str) -> None:
        """``tag`` deleted as a whole in ``where``: it must end on neither side, unless
        already contested."""
        self.alive.discard(tag)
        if tag not in self.contested:
            self.dead.setdefault(tag, where)

    def _contest(self, tag: str, other: str) -> None:
        """A change in one place to an event deleted in ``other`` (the deletion not carried
        over yet): whichever ends up is right, so the tag is checked for neither."""
        if self.dead.get(tag) == other:
            del self.dead[tag]
            self.contested.add(tag)
            for key in [k for k in self.cancelled if k[0] == tag]:
                del self.cancelled[key]

    def crm_mail(self) -> None:
        self.serial += 1
        self.figures.changes += 1
        self.queued.append(
            self.crm.queue_mail(self.pick.choice(self.people), f"Q{self.serial} our proposal")
        )

    def crm_misbehaves(self) -> None:
        what = self.crm.misbehave(self.rng)
        if what:
            self.figures.faults += 1
            self.log(f"crm: {what}")

    # --- faults -------------------------------------------------------------------------------

    def fault(self) -> None:
        rng = self.rng
        faults = self.emulator.faults
        kind = rng.choice(
            ["throttle", "unavailable", "gateway_timeout", "drop_connection", "slow", "gone",
             "send_then_drop", "html_error"]
        )  # fmt: skip
        where = rng.choice(CURSORS if kind == "gone" else sorted(PATHS))
        if kind == "send_then_drop":
            where = "send"
        path, times = PATHS[where], rng.randint(1, 3)
        if kind == "throttle":
            # Graph's decimal Retry-After, sometimes the mailbox-concurrency variant.
            wait = f"{rng.uniform(0.05, 1.2):.3f}"
            code = rng.choice(["TooManyRequests", "ApplicationThrottled"])
            faults.throttle(path, times=times, retry_after=wait, code=code)
        elif kind == "unavailable":
            faults.unavailable(path, times=times, retry_after=rng.choice([None, "0.5"]))
        elif kind == "slow":
            faults.slow(path, rng.uniform(0.3, 2.5), times=times)
        elif kind == "gone":
            faults.gone(path, times=1, query=CURSOR_QUERY)  # a request carrying a cursor
        else:
            faults.add(kind, path, times=times)
        self.figures.faults += 1
        self.log(f"fault: {kind} x{times} on {where}")

    def expire_tokens(self) -> None:
        """Every access token expires at once: the next Graph call (mid-page) answers 401."""
        self.emulator.faults.expired_token()
        self.figures.faults += 1

    def revoke_or_reconnect(self) -> None:
        if self.revoked:
            self.reconnect()
            return
        self.emulator.identity.revoke_grants()
        self.emulator.identity.expire_access_tokens()
        self.revoked = True
        self.figures.faults += 1

    def reconnect(self) -> None:
        """What the person does after "needs reconnect": sign in again."""
        runtime = self.crm.runtime()
        try:
            as_a_person(
                lambda: connect_account(runtime, browser="follow", announce=lambda _text: None)
            )
        finally:
            runtime.close()
        self.revoked = False

    def kill(self) -> None:
        self.daemon.kill()
        self.figures.kills += 1
        if self.rng.random() < 0.7:
            time.sleep(self.rng.uniform(0.0, 0.5))
        self.daemon.start()

    # --- the end ------------------------------------------------------------------------------

    def converge(self) -> None:
        """No more faults: the daemon's own cycles until quiet, and what a person does on the
        way (reconnect; retry a mail that failed, after looking for it in the mailbox when the
        daemon said its send could not be confirmed). The five minutes an unconfirmed send
        waits for its sent copy are taken as past."""
        if self.revoked:
            self.reconnect()
        runtime = self.crm.runtime()
        try:
            with patched(outbox_cycle, "CONFIRM_GRACE", timedelta(0)):
                for _round in range(2):
                    self._retry_failed_mail()
                    last = self._cycles(runtime)
            if last is not None and last.error:
                self.figures.problem("wrong", f"the last cycle failed: {last.error}")
            self.policy = policy_for(runtime, self._account(runtime))
            self.gateway = runtime.gateway
            self._compare_mail()
        finally:
            runtime.close()

    def _account(self, runtime: Runtime) -> Any:
        """The account as the comparison reads it (a read meeting a Conflict is read again)."""
        return as_a_person(lambda: runtime.gateway.get_account(self.crm.account_id))

    def _cycles(self, runtime: Runtime) -> Any:
        last = None
        for _ in range(4):
            last = sync_account_mail(runtime, self._account(runtime))
            quiet = (
                not last.error
                and not (last.imported or last.updated or last.removed)
                and not any(v for k, v in (last.calendar or {}).items() if k != "seen")
                and not any((last.outbox or {}).values())
            )
            if quiet:
                break
        return last

    def _retry_failed_mail(self) -> None:
        """The person retries what failed; a mail whose send could not be confirmed only
        after looking for it where the words say (the mailbox, wherever they filed it, and
        Recover Deleted Items): found there, it went, and is not sent again; nor is one whose
        copy they deleted for good themselves (no one can find it, and they know it went)."""
        with self.mailbox.lock:
            ids = [*self.mailbox.message_ids_in_tree()]
            ids += self.mailbox.message_ids_in("recoverableitemsdeletions")
            found = {truth.outbox_id_of(self.mailbox.view(mid)) for mid in ids}
        for mail_id, item in self.crm.outbox().items():
            if item.state.value != "failed":
                continue
            if item.error == UNCONFIRMED and mail_id in found | self.purged_outbox:
                continue  # the person looked: it went, do not send it again
            self.crm.retry_mail(mail_id)

    def _compare_mail(self) -> None:
        expected = self.expected = truth.expected_mail(self.mailbox, self.gateway, self.policy)
        stored = self.crm.stored_mail()
        filed = {mid: self.mailbox.folder_of(mid) for mid in self.filed}  # where it is now
        truth.check_mail(
            self.figures,
            expected,
            stored,
            self.archived,
            self.crm.message_count(),
            filed,
            self.deleted_mail,
        )

    def compare(self) -> None:
        low, high = self.now - DAY * 30, self.now + DAY * 60
        truth.check_calendar(
            self.figures,
            truth.outlook_series(self.mailbox.calendar, low, high),
            self.crm.calendar(low, high),
            self.alive - self.contested,
            self.dead,
            self.cancelled,
        )
        truth.check_outbox(
            self.figures, self.queued, self.mailbox.sent(), self.crm.outbox(),
            self.crm.stored_mail(), {imid for imid, _s, _f in self.expected.values()},
            self.purged_outbox,
        )  # fmt: skip


@contextmanager
def patched(owner: Any, name: str, value: Any) -> Iterator[None]:
    saved = getattr(owner, name)
    setattr(owner, name, value)
    try:
        yield
    finally:
        setattr(owner, name, saved)


def seeded_mailbox(seed: int) -> Mailbox:
    """A small seeded mailbox with an empty calendar (the soak makes its own events)."""
    mailbox = Mailbox.seeded(size=24, seed=seed)
    for item in mailbox.calendar.events():
        mailbox.calendar.delete(item["id"])
    return mailbox


def contact_rows(mailbox: Mailbox) -> list[dict[str, Any]]:
    return crm_contacts(mailbox)
