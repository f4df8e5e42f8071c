"""The peer's first-sync strategy (Twenty CRM's Microsoft driver), as a fetch-only client.

Twenty lists a folder's message ids through message delta (``$select=id``, pages of up to 999
by ``Prefer: odata.maxpagesize``), then fetches the messages themselves with JSON ``$batch``
envelopes of 20 ``GET /me/messages/{id}`` each, one envelope after another. Nothing is
stored and no attachment metadata is read: this is only the Graph side of its import, so the
comparison flatters the peer. It uses our Graph client (auth, retries, the per-mailbox cap of
4), so only the strategy differs; the fields fetched per message are ours, so the payloads
match too.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from urllib.parse import quote

from m365sync.graph.batch import batch_get
from m365sync.graph.client import GraphClient
from m365sync.graph.mail import MESSAGE_SELECT, MailDeltaReader, parse_message

PEER_PAGE_SIZE = 999
IMMUTABLE = 'IdType="ImmutableId"'


@dataclass(frozen=True, slots=True)
class PeerResult:
    """What the peer fetched; ``listed`` is how many ids its delta pages named, which took
    ``pages`` requests and ``listing_s`` seconds (all of them, bounded or not)."""

    fetched: int
    listed: int
    pages: int = 0
    listing_s: float = 0.0

    @property
    def bounded(self) -> bool:
        return self.fetched < self.listed


def peer_fetch(
    graph: GraphClient,
    reader: MailDeltaReader,
    folders: tuple[str, ...],
    *,
    budget_s: float | None = None,
) -> PeerResult:
    """Messages fetched by the peer's strategy across ``folders``; parsed, never stored.

    ``budget_s`` bounds a run that would take too long (100,000 messages under the latency
    model: about half an hour): past it, no further chunk of 10 envelopes is sent, and the
    result says how many of the listed messages were fetched, so the caller can extrapolate.
    """
    deadline = time.monotonic() + budget_s if budget_s else None
    fetched = listed = pages = 0
    listing_s = 0.0
    for ref in folders:
        folder = reader.resolve_folder(ref)
        ids: list[str] = []
        start = f"/me/mailFolders/{quote(folder.graph_id, safe='')}/messages/delta?$select=id"
        headers = {"Prefer": f"odata.maxpagesize={PEER_PAGE_SIZE}, {IMMUTABLE}"}
        started = time.monotonic()
        for page in graph.iter_pages(start, headers=headers):
            pages += 1
            ids.extend(
                item["id"]
                for item in page.get("value", [])
                if isinstance(item, dict) and "@removed" not in item and "id" in item
            )
        listing_s += time.monotonic() - started
        listed += len(ids)
        paths = [f"/me/messages/{quote(i, safe='')}?$select={MESSAGE_SELECT}" for i in ids]
        for start in range(0, len(paths), CHUNK):
            if deadline is not None and time.monotonic() > deadline:
                break
            chunk = paths[start : start + CHUNK]
            answers = batch_get(graph, chunk, headers={"Prefer": IMMUTABLE})
            for answer in answers.values():
                if isinstance(answer, dict):
                    parse_message(answer, folder.graph_id)
                    fetched += 1
    return PeerResult(fetched, listed, pages, listing_s)


CHUNK = 200  # ten envelopes of 20 between checks of the budget
