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

from urllib.parse import quote

from m365sync.graph.batch import batch_get
from m365sync.graph.client import GraphClient
from m365sync.graph.mail import MESSAGE_SELECT, MailDeltaReader, parse_message

PEER_PAGE_SIZE = 999
IMMUTABLE = 'IdType="ImmutableId"'


def peer_fetch(graph: GraphClient, reader: MailDeltaReader, folders: tuple[str, ...]) -> int:
    """Messages fetched by the peer's strategy across ``folders``; parsed, never stored."""
    fetched = 0
    for ref in folders:
        folder = reader.resolve_folder(ref)
        ids: list[str] = []
        start = f"/me/mailFolders/{quote(folder.graph_id, safe='')}/messages/delta?$select=id"
        headers = {"Prefer": f"odata.maxpagesize={PEER_PAGE_SIZE}, {IMMUTABLE}"}
        for page in graph.iter_pages(start, headers=headers):
            ids.extend(
                item["id"]
                for item in page.get("value", [])
                if isinstance(item, dict) and "@removed" not in item and "id" in item
            )
        paths = [f"/me/messages/{quote(i, safe='')}?$select={MESSAGE_SELECT}" for i in ids]
        answers = batch_get(graph, paths, headers={"Prefer": IMMUTABLE})
        for answer in answers.values():
            if isinstance(answer, dict):
                parse_message(answer, folder.graph_id)
                fetched += 1
    return fetched
