"""After a soak run: every record compared with the truth, and the figures the line prints.

Mail: what the CRM must hold is computed from the mailbox as it ends, with the product's own
rules (`m365sync.graph.mail.parse_message`, `m365sync.sync.mail.plan_page` over the store's
partner lookups and the account's `policy_for`), never with a copy of them. Mail moved by the
person to a folder that is not synced stays in the CRM (the mail cycle's rule): the soak
remembers which of those the CRM already held when they were moved, and requires them kept;
any filed mail the CRM holds (a page read before the move may store it) must be linked to
the folder it was filed to. Mail the person deleted (to Deleted Items or for good) must have
left the CRM.

Calendar: Outlook's calendar and the CRM's are compared occurrence by occurrence over the
window, grouped by series (a series on one side must be one series on the other), each
occurrence by subject, start and end instants and attendee addresses. Every event the soak
created and did not delete must exist; every event the soak deleted as a whole (in Outlook or
in the CRM), and every occurrence it cancelled in Outlook, must be on neither side: one that
is back (a resurrection: pulled back, pushed back, or never removed) is wrong even when both
sides agree on it. An event changed on the other side after its deletion (before the daemon
carried the deletion over) may rightly come back (the later change wins), so it is left out.

Outbox: each queued mail went out exactly once (the emulator's sent log, by the outbox header)
and its Sent Items copy is linked to it and stored once.
"""

from __future__ import annotations

import sqlite3
from collections import Counter
from collections.abc import Collection, Mapping
from contextlib import closing
from dataclasses import dataclass, field
from datetime import UTC, datetime
from types import MappingProxyType
from typing import Any

from m365sync.crm.gateway import CrmGateway
from m365sync.emulator.delta import parse_instant
from m365sync.graph.mail import BadItem, parse_message
from m365sync.graph.send import OUTBOX_HEADER, OUTBOX_PREFIX
from m365sync.service.outbox_cycle import UNCONFIRMED
from m365sync.sync.mail import MailPolicy, PartnerLookups, page_addresses, page_domains, plan_page

SYNCED = ("inbox", "sentitems")


@dataclass
class Figures:
    """The soak's line: ``runs, kills, faults, changes, expected, lost, duplicated, wrong,
    sent twice`` (and the words of each problem, for the failure message)."""

    runs: int = 0
    kills: int = 0
    faults: int = 0
    changes: int = 0
    expected: int = 0
    lost: int = 0
    duplicated: int = 0
    wrong: int = 0
    sent_twice: int = 0
    problems: list[str] = field(default_factory=list)

    def add(self, other: Figures) -> None:
        for name in ("runs", "kills", "faults", "changes", "expected", "lost", "duplicated"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.wrong += other.wrong
        self.sent_twice += other.sent_twice
        self.problems += other.problems

    def bad(self) -> int:
        return self.lost + self.duplicated + self.wrong + self.sent_twice

    def line(self, store: str) -> str:
        return (
            f"reliability [{store}]: runs {self.runs}, kills {self.kills}, faults {self.faults}, "
            f"changes {self.changes}, expected {self.expected}, lost {self.lost}, "
            f"duplicated {self.duplicated}, wrong {self.wrong}, sent twice {self.sent_twice}"
        )

    def problem(self, kind: str, text: str) -> None:
        setattr(self, kind, getattr(self, kind) + 1)
        self.problems.append(f"{kind}: {text}")


# --- mail ---------------------------------------------------------------------------------------


def expected_mail(mailbox: Any, gateway: CrmGateway, policy: MailPolicy) -> dict[str, tuple]:
    """graph id -> (internetMessageId, subject as stored, folder id) of what the synced folders
    hold and the rules store."""
    messages = []
    for ref in SYNCED:
        folder_id = mailbox.resolve_folder(ref)["id"]
        for item in mailbox.messages_in(ref):
            try:
                messages.append(parse_message(item, folder_id))
            except BadItem:
                continue
    addresses = page_addresses(messages)
    lookups = PartnerLookups(
        dict(gateway.find_partners_by_emails(addresses)),
        gateway.find_companies_by_domains(page_domains(addresses, policy)),
    )
    plan = plan_page(messages, lookups, policy)
    return {
        s.message.graph_id: (s.message.internet_message_id, s.message.subject, s.message.folder_id)
        for s in plan.upserts
    }


def stored_mail(store_path: str, account_id: int) -> list[dict[str, Any]]:
    """The embedded store's messages of the account (graph id, internetMessageId, subject)."""
    with closing(sqlite3.connect(store_path, timeout=30)) as raw:
        raw.row_factory = sqlite3.Row
        return [
            dict(row)
            for row in raw.execute(
                "SELECT l.graph_id, l.folder_id, m.internet_message_id, m.subject, "
                "m.id AS message_id "
                "FROM m365_mail_message_link l JOIN m365_mail_message m ON m.id = l.message_id "
                "WHERE l.account_id = ?",
                (account_id,),
            )
        ]


def check_mail(
    figures: Figures,
    expected: dict[str, tuple],
    stored: list[dict[str, Any]],
    archived_stored: dict[str, str],
    total_messages: int,
    filed: Mapping[str, str] = MappingProxyType({}),
    deleted: Mapping[str, str] = MappingProxyType({}),
) -> None:
    """Compare stored mail with the expected: lost, duplicated, wrong (stale or altered).

    ``filed``: every mail moved to a folder that is not synced -> the folder it is in now.
    Such mail may stay when a page read before the move stored it (the CRM then held it
    when the daemon learnt of the move), but then linked to where it is now: a link still
    naming the synced folder means the daemon missed the move. ``deleted``: every mail the
    person deleted (graph id -> subject); one the CRM still holds says so in its line."""
    figures.expected += len(expected) + len(archived_stored)
    by_graph: dict[str, list[dict[str, Any]]] = {}
    for row in stored:
        by_graph.setdefault(row["graph_id"], []).append(row)
    for graph_id, (imid, subject, folder_id) in expected.items():
        rows = by_graph.get(graph_id, [])
        if not rows:
            figures.problem("lost", f"mail {graph_id} ({subject!r}) is not in the CRM")
        elif len(rows) > 1:
            figures.problem("duplicated", f"mail {graph_id} ({subject!r}) is linked {len(rows)}x")
        elif (rows[0]["internet_message_id"], rows[0]["subject"]) != (imid, subject):
            figures.problem(
                "wrong", f"mail {graph_id}: stored {rows[0]['subject']!r}, Outlook {subject!r}"
            )
        elif rows[0]["folder_id"] != folder_id:
            figures.problem("wrong", f"mail {graph_id} ({subject!r}) is stored in another folder")
    for graph_id, subject in archived_stored.items():
        if graph_id not in by_graph:
            figures.problem("lost", f"mail {graph_id} ({subject!r}), archived, left the CRM")
    for graph_id, rows in by_graph.items():
        if graph_id in expected:
            continue
        if graph_id in deleted:
            figures.problem(
                "wrong",
                f"mail {graph_id} ({deleted[graph_id]!r}) was deleted in Outlook and is still "
                "in the CRM",
            )
        elif graph_id not in archived_stored and graph_id not in filed:
            figures.problem(
                "wrong", f"mail {graph_id} ({rows[0]['subject']!r}) is in the CRM, not in Outlook"
            )
        elif graph_id in filed and any(row["folder_id"] != filed[graph_id] for row in rows):
            figures.problem(
                "wrong",
                f"mail {graph_id} ({rows[0]['subject']!r}) was filed away, and its link still "
                "names the folder it left",
            )
    imids = Counter(row["internet_message_id"] for row in stored)
    for imid, count in imids.items():
        if count > 1:
            figures.problem("duplicated", f"mail {imid} is stored {count}x")
    distinct = len({row["message_id"] for row in stored})
    if total_messages > distinct:
        figures.problem(
            "duplicated", f"the CRM holds {total_messages} messages for {distinct} linked ones"
        )


# --- calendar -----------------------------------------------------------------------------------


Occurrence = tuple[str, datetime, datetime, frozenset[str]]


def _instant(value: dict[str, Any]) -> datetime:
    return parse_instant_in(value["dateTime"], value.get("timeZone") or "UTC")


def parse_instant_in(wall: str, zone: str) -> datetime:
    """Graph's wall time in a zone as a UTC instant (the soak writes UTC only)."""
    assert zone.upper() == "UTC", zone
    return parse_instant(wall if wall.endswith("Z") else wall + "Z").astimezone(UTC)


def outlook_series(calendar: Any, low: datetime, high: datetime) -> dict[str, Counter]:
    """Outlook's occurrences in the window grouped by series (a single is its own group)."""
    groups: dict[str, Counter] = {}
    for item in calendar.view(low, high):
        if item.get("isCancelled"):
            continue
        group = item.get("seriesMasterId") or item["id"]
        people = frozenset(
            a["emailAddress"]["address"].lower()
            for a in item.get("attendees") or []
            if (a.get("emailAddress") or {}).get("address")
        )
        key = (item.get("subject") or "", _instant(item["start"]), _instant(item["end"]), people)
        groups.setdefault(group, Counter())[key] += 1
    return groups


def crm_series(store_path: str, account_id: int, low: datetime, high: datetime) -> dict:
    """The CRM's occurrences in the window grouped by series, the same way."""
    groups: dict[str, Counter] = {}
    with closing(sqlite3.connect(store_path, timeout=30)) as raw:
        raw.row_factory = sqlite3.Row
        rows = raw.execute(
            "SELECT DISTINCT e.* FROM crm_calendar_event e LEFT JOIN m365_event_binding b "
            "ON b.crm_event_id = e.id WHERE (b.account_id = ? OR e.owner_account_id = ?) "
            "AND e.deleted = 0 AND e.is_cancelled = 0 AND e.is_series_master = 0",
            (account_id, account_id),
        ).fetchall()
        for row in rows:
            start = datetime.fromisoformat(row["start_at"]).astimezone(UTC)
            end = datetime.fromisoformat(row["end_at"]).astimezone(UTC)
            if end <= low or start >= high:
                continue
            people = frozenset(
                r["address"].lower()
                for r in raw.execute(
                    "SELECT address FROM crm_calendar_attendee WHERE event_id = ? "
                    "AND role != 'organizer'",
                    (row["id"],),
                )
            )
            group = f"series-{row['series_id']}" if row["series_id"] else f"event-{row['id']}"
            groups.setdefault(group, Counter())[(row["subject"] or "", start, end, people)] += 1
    return groups


def check_calendar(
    figures: Figures,
    outlook: dict[str, Counter],
    crm: dict[str, Counter],
    alive: set[str],
    dead: Mapping[str, str] = MappingProxyType({}),
    cancelled: Mapping[tuple[str, datetime], str] = MappingProxyType({}),
) -> None:
    """Same series on both sides, each with the same occurrences; every live tag present;
    no deleted event and no cancelled occurrence on either side.

    ``dead``: tag -> where the event was deleted as a whole ("Outlook", "the CRM");
    ``cancelled``: (tag, start instant) -> where that occurrence was cancelled. What is back
    is one wrong each, then left out of the side-by-side comparison (so one fault is one
    problem, not also a mismatch)."""
    outlook = _without_dead(figures, "Outlook", outlook, dead, cancelled)
    crm = _without_dead(figures, "the CRM", crm, dead, cancelled)
    figures.expected += len(outlook)
    remaining = list(crm.values())
    for group, occurrences in outlook.items():
        if occurrences in remaining:
            remaining.remove(occurrences)
            continue
        subject = next(iter(occurrences))[0]
        near = [c for c in remaining if {k[0] for k in c} & {k[0] for k in occurrences}]
        if near:
            figures.problem(
                "wrong", f"event {subject!r}: Outlook {_show(occurrences)} CRM {_show(near[0])}"
            )
            remaining.remove(near[0])
        else:
            figures.problem("lost", f"Outlook event {subject!r} ({group}) is not in the CRM")
    for occurrences in remaining:
        subject = next(iter(occurrences))[0]
        outlook_subjects = {k[0] for c in outlook.values() for k in c}
        kind = "duplicated" if subject in outlook_subjects else "lost"
        figures.problem(kind, f"CRM event {subject!r} {_show(occurrences)} has no Outlook match")
    seen = {k[0].split(" ")[0] for c in [*outlook.values(), *crm.values()] for k in c}
    for tag in sorted(alive - seen):
        figures.problem("lost", f"event {tag} is on neither side")


def _tag_of(occurrences: Counter) -> str:
    return next(iter(occurrences))[0].split(" ")[0]


def _without_dead(
    figures: Figures,
    side: str,
    groups: dict[str, Counter],
    dead: Mapping[str, str],
    cancelled: Mapping[tuple[str, datetime], str],
) -> dict[str, Counter]:
    """``groups`` less the deleted events and cancelled occurrences it holds, each counted
    wrong with where it was deleted and where it is back."""
    kept: dict[str, Counter] = {}
    for group, occurrences in groups.items():
        tag = _tag_of(occurrences)
        if tag in dead:
            figures.problem(
                "wrong",
                f"event {tag} was deleted in {dead[tag]} and is in {side} {_show(occurrences)}",
            )
            continue
        left = Counter(occurrences)
        for key in list(left):
            if (key[0].split(" ")[0], key[1]) in cancelled:
                figures.problem(
                    "wrong",
                    f"occurrence of {tag} at {key[1]:%m-%d %H:%M} was cancelled in "
                    f"{cancelled[(key[0].split(' ')[0], key[1])]} and is in {side}",
                )
                del left[key]
        if left:
            kept[group] = left
    return kept


def _show(occurrences: Counter) -> str:
    return str(
        sorted(
            (s, a.strftime("%m-%d %H:%M"), (b - a).seconds // 60, sorted(p), n)
            for (s, a, b, p), n in occurrences.items()
        )
    )


# --- outbox -------------------------------------------------------------------------------------


def outbox_id_of(record: dict[str, Any]) -> int | None:
    for header in record.get("internetMessageHeaders") or []:
        if str(header.get("name", "")).lower() == OUTBOX_HEADER:
            value = str(header.get("value", ""))
            if value.startswith(OUTBOX_PREFIX) and value[len(OUTBOX_PREFIX) :].isdigit():
                return int(value[len(OUTBOX_PREFIX) :])
    return None


def check_outbox(
    figures: Figures,
    queued: list[int],
    sent_log: list[dict[str, Any]],
    outbox: dict[int, Any],
    stored: list[dict[str, Any]],
    in_outlook: set[str | None],
    purged: Collection[int] = (),
) -> None:
    """Each queued mail sent once, marked sent, its Sent copy linked, and stored once while
    Outlook still holds it in a synced folder (``in_outlook``: their internetMessageIds; a
    person may delete or file the copy, like any mail). A mail whose copy the person deleted
    for good (``purged``) may stay unconfirmed or unlinked: nothing in the mailbox tells any
    more that it went, and the daemon's words say it could not confirm it; it still must
    have gone out exactly once."""
    figures.expected += len(queued)
    sends = Counter(outbox_id_of(r) for r in sent_log)
    imids = Counter(row["internet_message_id"] for row in stored)
    for mail_id in queued:
        item = outbox[mail_id]
        if sends[mail_id] > 1:
            figures.problem("sent_twice", f"outbox {mail_id} went out {sends[mail_id]}x")
        elif sends[mail_id] == 0:
            figures.problem("lost", f"outbox {mail_id} never went out ({item.state}: {item.error})")
            continue
        state = item.state.value
        if mail_id in purged and (
            state == "sent" or (state == "failed" and item.error == UNCONFIRMED)
        ):
            continue
        if item.state.value != "sent":
            figures.problem("wrong", f"outbox {mail_id} was sent but says {item.state}")
        elif not item.graph_id or not item.internet_message_id:
            figures.problem("wrong", f"outbox {mail_id} is sent but its Sent copy is not linked")
        elif imids[item.internet_message_id] > 1 or (
            item.internet_message_id in in_outlook and imids[item.internet_message_id] != 1
        ):
            figures.problem(
                "duplicated" if imids[item.internet_message_id] else "lost",
                f"outbox {mail_id}'s Sent copy is stored {imids[item.internet_message_id]}x",
            )
