"""service/prefetch.ahead: in order, one fetch in flight, errors after the item before."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from m365sync.service.prefetch import ahead


def test_items_in_order_with_the_next_one_fetched_while_the_caller_works():
    produced: list[int] = []

    def source():
        for n in range(5):
            produced.append(n)
            yield n

    seen = []
    with ThreadPoolExecutor(2) as pool:
        for item in ahead(source(), pool):
            time.sleep(0.05)  # the caller's work on this item
            # the next item was produced meanwhile, never two ahead
            assert len(produced) == min(item + 2, 5)
            seen.append(item)
    assert seen == [0, 1, 2, 3, 4]


def test_an_error_reaches_the_caller_after_the_item_before_it():
    def source():
        yield "page 1"
        raise RuntimeError("410 on page 2")

    handled = []
    with ThreadPoolExecutor(1) as pool, pytest.raises(RuntimeError, match="410"):
        for item in ahead(source(), pool):
            handled.append(item)
    assert handled == ["page 1"]


def test_closing_early_waits_for_the_fetch_in_flight_and_closes_the_source():
    release = threading.Event()
    closed = threading.Event()

    def source():
        try:
            yield 1
            release.wait(5)
            yield 2
            yield 3
        finally:
            closed.set()

    with ThreadPoolExecutor(1) as pool:
        iterator = ahead(source(), pool)
        assert next(iterator) == 1
        threading.Timer(0.1, release.set).start()
        iterator.close()  # the caller failed on item 1: item 2 is dropped, never handed over
        assert closed.is_set()
