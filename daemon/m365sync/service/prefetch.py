"""Read one page ahead: Graph answers page N+1 while the CRM stores page N.

Why: a first sync alternates a Graph round trip (hundreds of milliseconds at real Graph) with
planning and storing a page; done one after the other, each waits for the other. `ahead`
keeps exactly one fetch in flight on a worker thread while the caller works on the page it
was handed, so at most two pages are in memory. It changes no rule about cursors: pages are
handed over in Graph's order and the caller stores each page (and its cursor) before it asks
for the next, so a page's cursor is stored only after that page and every page before it.
A prefetched page the caller never asked for is simply dropped (a crash between prefetch and
store loses nothing: the stored cursor still points before it). An error fetching page N+1
reaches the caller when it asks for page N+1, after page N was stored, exactly as without
prefetching. The fetching thread goes through the same Graph client, so the per-mailbox cap
of concurrent requests stays the one gate.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator
from concurrent.futures import Executor, Future
from typing import TypeVar

T = TypeVar("T")
_DONE = object()


def ahead(items: Iterable[T], pool: Executor) -> Iterator[T]:
    """``items`` in order, the next one already being produced on ``pool`` while the caller
    handles the current one. Closing the iterator waits for the fetch in flight (at most one
    request) and closes ``items``."""
    source = iter(items)
    pending: Future = pool.submit(next, source, _DONE)
    try:
        while True:
            item = pending.result()
            if item is _DONE:
                return
            pending = pool.submit(next, source, _DONE)
            yield item  # type: ignore[misc]
    finally:
        # The source must not be closed while the worker runs it: wait, then close.
        with contextlib.suppress(BaseException):
            pending.result()
        close = getattr(source, "close", None)
        if close is not None:
            close()
