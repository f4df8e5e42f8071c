"""Server-side sync states for message delta: rounds, pages and opaque tokens.

Why server-side: Graph's state tokens are opaque (docs `concepts/delta-query-overview.md`), and
the emulator must never lose a change however the mailbox changes during a round. So:

* A **round** starts from a delta link's watermark W (or from nothing: the initial round). It
  snapshots, under the mailbox lock, the ordered ids whose latest change in the folder has a
  sequence number above W (initial round: every id now in the folder) and records the current
  sequence number as its own watermark W'. Query options ($select, changeType, $top, $filter,
  $orderby) are kept with the round, so later links need not repeat them.
* A **page** serves the next slice of the snapshot as the items are *now*: present items in
  full, absent ones as ``@removed``. A change made during the round gets a sequence number
  above W' and so comes again in the next round: replays are possible (Graph allows them),
  losses are not.
* Every page gets a fresh token: a ``$skiptoken`` (round + offset) or, on the last page, a
  ``$deltatoken`` (folder + W' + options). Replaying an old link serves the same slice again.
  `drop()` forgets every token (-> 410 SyncStateNotFound), and the table is bounded, so the
  oldest tokens expire like Outlook's "internal delta token cache" does.

Documented limits honoured here (docs `concepts/delta-query-messages.md` @ 028b8e35):
``$filter`` only ``receivedDateTime ge|gt`` and "Applying $filter in a delta query returns only
up to 5,000 messages"; ``$orderby`` only ``receivedDateTime desc``. The filter shapes the
initial round only; later rounds report every change in the folder.
"""

from __future__ import annotations

import secrets
import threading
from collections import OrderedDict
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    from m365sync.emulator.mailbox import Mailbox

FILTER_CAP = 5000
TOKEN_CAPACITY = 200_000


@dataclass(frozen=True)
class DeltaQuery:
    """The options of a delta round, fixed by its first request."""

    select: tuple[str, ...] | None = None
    change_type: Literal["created", "updated", "deleted"] | None = None
    top: int | None = None
    filter_op: Literal["ge", "gt"] | None = None
    filter_since: datetime | None = None
    order_desc: bool = False


@dataclass
class Round:
    """One round's snapshot of ids and the watermark its delta link will carry."""

    folder_id: str
    ids: list[str]
    watermark: int
    since: int | None
    query: DeltaQuery


@dataclass(frozen=True)
class PageCursor:
    """What a $skiptoken stands for."""

    round: Round
    offset: int


@dataclass(frozen=True)
class DeltaCursor:
    """What a $deltatoken stands for."""

    folder_id: str
    watermark: int
    query: DeltaQuery


@dataclass
class Page:
    """One page: ('item' | 'removed', id) entries and the token of the next link."""

    entries: list[tuple[str, str]]
    next_token: str | None
    delta_token: str | None
    query: DeltaQuery


class SyncStates:
    """Opaque token -> cursor, bounded; `drop` makes every existing link answer 410."""

    def __init__(self, capacity: int = TOKEN_CAPACITY) -> None:
        self._lock = threading.Lock()
        self._tokens: OrderedDict[str, PageCursor | DeltaCursor] = OrderedDict()
        self._capacity = capacity
        self.generation = 1

    def issue(self, cursor: PageCursor | DeltaCursor) -> str:
        """A new opaque token for a cursor."""
        token = secrets.token_urlsafe(32)
        with self._lock:
            self._tokens[token] = cursor
            while len(self._tokens) > self._capacity:
                self._tokens.popitem(last=False)
        return token

    def lookup(self, token: str) -> PageCursor | DeltaCursor | None:
        """The cursor of a token, or None if unknown, expired or dropped."""
        with self._lock:
            return self._tokens.get(token)

    def drop(self) -> int:
        """Forget every token; returns how many there were."""
        with self._lock:
            count = len(self._tokens)
            self._tokens.clear()
            self.generation += 1
            return count


def parse_instant(value: str) -> datetime:
    """An OData DateTimeOffset literal (or a bare date) as an aware datetime."""
    text = value.strip()
    if len(text) == 10:
        text += "T00:00:00"
    parsed = datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _received(mailbox: Mailbox, mid: str) -> datetime | None:
    text = mailbox.received_of(mid)
    try:
        return parse_instant(text) if text else None
    except ValueError:
        return None


def start_round(mailbox: Mailbox, folder_id: str, since: int | None, query: DeltaQuery) -> Round:
    """Snapshot the ids a round will serve (call with the mailbox lock held)."""
    if since is not None:
        return Round(
            folder_id, mailbox.changed_since(folder_id, since), mailbox.sequence, since, query
        )
    ids = mailbox.members_in_change_order(folder_id)
    if query.filter_op and query.filter_since is not None:
        bound = query.filter_since
        dated = [(_received(mailbox, mid), mid) for mid in ids]
        kept = [
            (when, mid)
            for when, mid in dated
            if when is not None and (when > bound if query.filter_op == "gt" else when >= bound)
        ]
        if len(kept) > FILTER_CAP:
            kept = sorted(kept, key=lambda pair: pair[0], reverse=True)[:FILTER_CAP]
            wanted = {mid for _, mid in kept}
            ids = [mid for mid in ids if mid in wanted]
        else:
            ids = [mid for _, mid in kept]
    if query.order_desc:
        epoch = datetime.min.replace(tzinfo=UTC)
        ids = sorted(ids, key=lambda mid: _received(mailbox, mid) or epoch, reverse=True)
    return Round(folder_id, ids, mailbox.sequence, None, query)


def serve_page(mailbox: Mailbox, states: SyncStates, cursor: PageCursor, page_size: int) -> Page:
    """The slice of a round at `cursor`, as the items are now (call with the lock held)."""
    rnd = cursor.round
    end = cursor.offset + page_size
    entries: list[tuple[str, str]] = []
    for mid in rnd.ids[cursor.offset : end]:
        entered = mailbox.presence(rnd.folder_id, mid)
        if rnd.since is not None and rnd.query.change_type:
            kind = "deleted" if entered is None else "updated"
            if entered is not None and entered > rnd.since:
                kind = "created"
            if kind != rnd.query.change_type:
                continue
        entries.append(("removed" if entered is None else "item", mid))
    if end < len(rnd.ids):
        return Page(entries, states.issue(PageCursor(rnd, end)), None, rnd.query)
    delta = states.issue(DeltaCursor(rnd.folder_id, rnd.watermark, rnd.query))
    return Page(entries, None, delta, rnd.query)
