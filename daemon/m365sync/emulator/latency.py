"""A latency model for the emulator: real Graph answers in hundreds of milliseconds, not one.

Why: without latency the emulator's own CPU, not the client, sets the pace of a benchmark, and
nothing rewards a client for overlapping requests or for making fewer round trips. With the
model each Graph request (``/v1.0/...``, a ``$batch`` envelope counting as one) is held for
``latency_ms`` plus ``per_item_ms`` for every item it returns: the entries of a collection's
``value`` list, one for a single resource, and for a ``$batch`` the items of each sub-response.
The hold is a sleep in the request's own server thread, so concurrent requests overlap as they
do at Graph, and the emulator's CPU stays free. The modelled time is the whole answer's: the
emulator's own work on the request counts towards it (a request that took the emulator 200 ms
to answer is held 100 ms more under a 300 ms model), so a benchmark measures the client against
Graph's pace, not against how fast one Python process on a shared machine builds a page. Only
work that exceeds the modelled time shows. Identity (token) and control requests are not held.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class LatencyModel:
    """Milliseconds per request and per item returned; zero for both means no model."""

    latency_ms: float = 0.0
    per_item_ms: float = 0.0

    def __post_init__(self) -> None:
        if self.latency_ms < 0 or self.per_item_ms < 0:
            raise ValueError("latency figures cannot be negative")

    @property
    def active(self) -> bool:
        return bool(self.latency_ms or self.per_item_ms)

    def seconds_for(self, body: bytes, content_type: str | None) -> float:
        """How long Graph would have taken to send this answer."""
        items = 0
        if self.per_item_ms and content_type and "json" in content_type and body:
            try:
                items = count_items(json.loads(body))
            except ValueError:
                items = 0
        return (self.latency_ms + self.per_item_ms * items) / 1000.0


def count_items(payload: Any) -> int:
    """Items an answer carries: a collection's entries, one resource, or a batch's sum."""
    if not isinstance(payload, dict):
        return 0
    responses = payload.get("responses")
    if isinstance(responses, list):
        return sum(count_items(sub.get("body")) for sub in responses if isinstance(sub, dict))
    value = payload.get("value")
    if isinstance(value, list):
        return len(value)
    return 0 if "error" in payload else 1
