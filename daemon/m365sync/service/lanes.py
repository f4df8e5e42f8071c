"""Work through a list side by side: a few lanes, each taking the next item when it is free.

Why: a mailbox's folders synced one after another leave Graph idle while a folder's pages are
planned and stored, and a small folder waits for a large one. Lanes let the folders of one
mailbox run together; they add no Graph concurrency of their own: every request still goes
through the account's one Graph client, whose cap (Outlook's 4 concurrent requests per app
and mailbox) stays the one gate, so lanes only let folders queue for it together.

Threads: the caller's own thread is a lane, and the others come from one process-wide pool,
so a long-running daemon reuses a few threads (and each thread's CRM connection) instead of
starting new ones every cycle. A helper lane still queued in a busy pool when the caller's
lane runs out of items is cancelled: a cycle never waits for a thread it no longer needs.

Failure: an item whose work raises sets ``stop``; the other lanes finish what they are doing
(work functions check ``stop`` at their own safe points, e.g. between pages) and take nothing
new; the error of the first failing item (in list order) is raised once every lane is done.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

T = TypeVar("T")

MAX_LANES = 4  # Outlook's concurrent requests per mailbox: more lanes would only queue
_POOL = ThreadPoolExecutor(max_workers=8, thread_name_prefix="m365sync-lane")


def run_lanes(
    items: Sequence[T], work: Callable[[T, threading.Event], None], *, lanes: int | None = None
) -> None:
    """``work(item, stop)`` for every item, up to ``lanes`` (default `MAX_LANES`) at a time;
    see the module doc."""
    lanes = MAX_LANES if lanes is None else lanes
    pending = deque(enumerate(items))
    lock = threading.Lock()
    stop = threading.Event()
    errors: dict[int, BaseException] = {}

    def lane() -> None:
        while not stop.is_set():
            with lock:
                if not pending:
                    return
                index, item = pending.popleft()
            try:
                work(item, stop)
            except BaseException as error:  # re-raised by the caller below
                with lock:
                    errors[index] = error
                stop.set()
                return

    helpers = [_POOL.submit(lane) for _ in range(min(lanes, len(items)) - 1)]
    try:
        lane()
    finally:
        for helper in helpers:
            if not helper.cancel():
                helper.result()
    if errors:
        raise errors[min(errors)]
