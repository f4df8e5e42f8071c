"""The emulator's latency model: each Graph answer held for latency + per-item cost."""

from __future__ import annotations

import threading
import time

import pytest

from m365sync.emulator.latency import LatencyModel, count_items


def test_count_items_of_collections_resources_batches_and_errors():
    assert count_items({"value": [1, 2, 3], "@odata.nextLink": "x"}) == 3
    assert count_items({"id": "m1", "subject": "Hi"}) == 1
    assert count_items({"error": {"code": "ErrorItemNotFound"}}) == 0
    batch = {
        "responses": [
            {"id": "1", "status": 200, "body": {"value": [{"id": "a"}, {"id": "b"}]}},
            {"id": "2", "status": 200, "body": {"id": "m"}},
            {"id": "3", "status": 404, "body": {"error": {"code": "NotFound"}}},
        ]
    }
    assert count_items(batch) == 3
    assert count_items([1, 2]) == 0


def test_seconds_for_an_answer():
    model = LatencyModel(300, 2)
    assert model.seconds_for(b'{"value": [{}, {}, {}]}', "application/json") == pytest.approx(0.306)
    assert model.seconds_for(b"not json", "application/json") == pytest.approx(0.3)
    assert model.seconds_for(b"<html>", "text/html") == pytest.approx(0.3)
    assert not LatencyModel().active
    with pytest.raises(ValueError):
        LatencyModel(-1, 0)


def test_graph_answers_are_held_and_overlap_when_concurrent(emulator, graph, http):
    started = time.monotonic()
    assert graph.get("/me").status_code == 200
    fast = time.monotonic() - started
    answer = http.post("/_emulator/latency", json={"latency_ms": 250, "per_item_ms": 10})
    assert answer.status_code == 204
    started = time.monotonic()
    page = graph.get("/me/mailFolders/inbox/messages?$top=5&$select=id")
    held = time.monotonic() - started
    assert len(page.json()["value"]) == 5
    assert held >= 0.25 + 5 * 0.01 > fast
    # four requests at once take about one request's time, not four (threads sleep apart)
    times: list[float] = []

    def one() -> None:
        t0 = time.monotonic()
        graph.get("/me")
        times.append(time.monotonic() - t0)

    started = time.monotonic()
    threads = [threading.Thread(target=one) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(times) == 4 and min(times) >= 0.26
    assert time.monotonic() - started < 4 * 0.26
    # control requests are never held
    emulator.latency = LatencyModel(2000, 0)
    started = time.monotonic()
    http.get("/_emulator/info")
    assert time.monotonic() - started < 1.5
