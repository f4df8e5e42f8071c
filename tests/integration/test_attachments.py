"""Attachment metadata over real HTTPS: JSON batching against the emulator, with throttling."""

from __future__ import annotations

import math
from collections import Counter

import pytest

from m365sync.domain import Attachment
from m365sync.errors import Throttled
from m365sync.graph.attachments import fetch_attachment_metadata
from m365sync.service.connect import connect_account


@pytest.fixture
def account(stack):
    return connect_account(stack.runtime, browser="follow")


def expected(mailbox, mid: str) -> tuple[Attachment, ...]:
    return tuple(
        Attachment(a["name"], a["size"], a["contentType"] or "")
        for a in mailbox.attachments(mid)
        if not a["isInline"]
    )


def flagged(mailbox) -> list[str]:
    with mailbox.lock:
        return [m["id"] for _f, m, raw in mailbox.iter_messages() if m.get("hasAttachments")]


def test_metadata_of_every_flagged_message_in_few_batches_across_429(stack, account):
    mailbox = stack.emulator.mailbox
    ids = flagged(mailbox)
    assert len(ids) > 20  # more than one batch
    gone = ids[-1]
    mailbox.delete_message(gone)
    stack.emulator.faults.throttle("/attachments", times=3, retry_after="0.2")
    stack.emulator.request_log.clear()

    found = fetch_attachment_metadata(stack.runtime.graph_for(account), ids)

    assert found[gone] == ()  # 404: the message went away since its delta page
    assert {mid: found[mid] for mid in ids[:-1]} == {
        mid: expected(mailbox, mid) for mid in ids[:-1]
    }
    assert any(len(v) > 1 for v in found.values())
    records = stack.emulator.requests
    envelopes = [r for r in records if r.path == "/v1.0/$batch"]
    assert len(envelopes) == math.ceil(len(ids) / 20) + 1  # one more batch for the 3 throttled
    assert all(r.status == 200 for r in envelopes)
    subs = [r for r in records if r.in_batch]
    assert Counter(r.status for r in subs) == {200: len(ids) - 1, 429: 3, 404: 1}
    assert all(r.query == "$select=id,name,size,contentType,isInline" for r in subs)
    assert all(r.prefer == 'IdType="ImmutableId"' for r in subs)
    assert not [r for r in records if not r.in_batch and r.path != "/v1.0/$batch"]


def test_still_throttled_past_the_budget_raises_throttled(stack, account):
    ids = flagged(stack.emulator.mailbox)[:5]
    stack.emulator.faults.throttle("/attachments", times=None, retry_after="0.3")
    with pytest.raises(Throttled) as caught:
        fetch_attachment_metadata(
            stack.runtime.graph_for(account), ids, budget_seconds=0.5, max_rounds=5
        )
    assert caught.value.retry_after == pytest.approx(0.3)
    batches = [r for r in stack.emulator.requests if r.path == "/v1.0/$batch"]
    assert len(batches) == 2  # 0.3 s waited once; a second wait would pass 0.5 s
