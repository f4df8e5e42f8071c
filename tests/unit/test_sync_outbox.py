"""What makes an outgoing mail unsendable (pure)."""

from __future__ import annotations

from m365sync.domain import EmailAddress, OutboxState, OutgoingAttachment, OutgoingMail
from m365sync.sync.outbox import MAX_ATTACHMENT_BYTES, awaits_link, problem_with


def mail(**changes) -> OutgoingMail:
    values = {
        "id": 1,
        "account_id": 1,
        "to": (EmailAddress("anna@fabrikam.com"),),
        "subject": "Offer",
        "body_html": "<p>Hi</p>",
    }
    values.update(changes)
    return OutgoingMail(**values)


def test_a_good_mail_has_no_problem():
    assert problem_with(mail()) is None
    assert mail().idempotency_key == "m365sync-outbox-1"


def test_each_bad_input_has_its_words():
    assert "no recipient" in problem_with(mail(to=()))
    assert "'not-an-address'" in problem_with(mail(cc=(EmailAddress("not-an-address"),)))
    big = OutgoingAttachment(
        "deck.pptx", "application/vnd.ms-powerpoint", b"x" * (MAX_ATTACHMENT_BYTES + 1)
    )
    assert "3 MB" in problem_with(mail(attachments=(big,)))
    small = OutgoingAttachment("quote.pdf", "application/pdf", b"%PDF" * 10)
    assert problem_with(mail(attachments=(small,))) is None


def test_only_a_sent_mail_without_its_copys_ids_awaits_its_link():
    assert awaits_link(mail(state=OutboxState.SENT))
    assert awaits_link(mail(state=OutboxState.SENT, graph_id="g"))
    assert awaits_link(mail(state=OutboxState.SENT, internet_message_id="<m@x>"))
    assert not awaits_link(mail(state=OutboxState.SENT, graph_id="g", internet_message_id="<m@x>"))
    for state in (OutboxState.QUEUED, OutboxState.SENDING, OutboxState.FAILED):
        assert not awaits_link(mail(state=state))
