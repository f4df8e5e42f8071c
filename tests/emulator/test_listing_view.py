"""A folder listing filters and sorts on a light view of planned messages: the same values
the built message has, without building it."""

from __future__ import annotations

from m365sync.emulator.mailbox import Mailbox

FIELDS = ("id", "receivedDateTime", "sentDateTime", "hasAttachments")


def test_the_listing_view_of_every_planned_message_matches_the_built_one():
    mailbox = Mailbox.seeded(size=400, seed=5)
    with mailbox.lock:
        for name in ("inbox", "sentitems", "drafts", "archive"):
            for mid in mailbox.message_ids_in(name):
                light = mailbox.listing_view(mid)
                built = mailbox.view(mid)
                assert {k: light[k] for k in FIELDS} == {k: built[k] for k in FIELDS}
    assert any(
        mailbox.listing_view(mid)["hasAttachments"] for mid in mailbox.message_ids_in("inbox")
    )
