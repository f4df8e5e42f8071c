"""The page plan: what is stored, what is skipped and why, what privacy leaves out (pure)."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from m365sync.domain import Attachment, EmailAddress, MailMessage, Partner, Privacy
from m365sync.sync.mail import (
    SKIP_BLOCKLISTED,
    SKIP_DRAFT,
    SKIP_INTERNAL,
    SKIP_NO_PARTICIPANTS,
    SKIP_UNMATCHED,
    MailPolicy,
    PartnerLookups,
    page_addresses,
    page_domains,
    plan_page,
)

ME = EmailAddress("MeganB@contoso.com", "Megan Bowen")
ANNA = Partner(id=1, name="Anna", email="anna@fabrikam.com", parent_id=10)
FABRIKAM = Partner(id=10, name="Fabrikam", email="info@fabrikam.com", is_company=True)
NORTHWIND = Partner(id=20, name="Northwind", is_company=True, website="northwindtraders.com")
LOOKUPS = PartnerLookups(
    by_email={"anna@fabrikam.com": ANNA, "info@fabrikam.com": FABRIKAM},
    companies_by_domain={"fabrikam.com": FABRIKAM, "northwindtraders.com": NORTHWIND},
)
POLICY = MailPolicy.build(["contoso.com"], Privacy.EVERYTHING, ["*@noreply.example.com"])


def mail(sender, *to, draft=False, body="<p>Hi</p><script>alert(1)</script>", n=1):
    return MailMessage(
        graph_id=f"id{n}",
        internet_message_id=f"<{n}@x>",
        conversation_id="c1",
        folder_id="inbox",
        subject="Quote",
        sender=EmailAddress(sender) if sender else None,
        to=tuple(EmailAddress(a) for a in to),
        body_html=body,
        body_preview="Hi",
        is_draft=draft,
        attachments=(Attachment("quote.pdf", 1200, "application/pdf"),),
    )


def test_contact_and_its_company_are_linked():
    plan = plan_page([mail("ANNA@Fabrikam.com", ME.address)], LOOKUPS, POLICY)
    assert not plan.skipped
    (stored,) = plan.upserts
    sender = next(p for p in stored.participants if p.role == "from")
    assert (sender.address, sender.partner_id, sender.company_id) == ("anna@fabrikam.com", 1, 10)


def test_unknown_person_at_known_company_domain_matches_the_company():
    plan = plan_page([mail("new.person@northwindtraders.com", ME.address)], LOOKUPS, POLICY)
    sender = plan.upserts[0].participants[0]
    assert sender.partner_id is None and sender.company_id == 20


def test_skip_reasons_are_counted():
    page = [
        mail("anna@fabrikam.com", ME.address, draft=True, n=1),
        mail("colleague@contoso.com", ME.address, n=2),
        mail("robot@noreply.example.com", ME.address, n=3),
        mail("stranger@gmail.com", ME.address, n=4),
        mail(None, n=5),
        mail("not an address", "also@bad", n=6),
        mail("anna@fabrikam.com", ME.address, n=7),
    ]
    plan = plan_page(page, LOOKUPS, POLICY)
    assert [s.message.graph_id for s in plan.upserts] == ["id7"]
    assert plan.skipped == {
        SKIP_DRAFT: 1,
        SKIP_INTERNAL: 1,
        SKIP_BLOCKLISTED: 1,
        SKIP_UNMATCHED: 1,
        SKIP_NO_PARTICIPANTS: 2,
    }


def test_public_provider_domain_never_matches_a_company():
    lookups = PartnerLookups(companies_by_domain={"gmail.com": FABRIKAM})
    plan = plan_page([mail("someone@gmail.com", ME.address)], lookups, POLICY)
    assert plan.skipped == {SKIP_UNMATCHED: 1}


def test_privacy_levels_do_not_hand_over_what_is_not_shared():
    message = mail("anna@fabrikam.com", ME.address)
    full = plan_page([message], LOOKUPS, POLICY).upserts[0].message
    assert "<script>" not in full.body_html and "Hi" in full.body_html
    subject_only = (
        plan_page([message], LOOKUPS, MailPolicy.build(["contoso.com"], Privacy.SUBJECT))
        .upserts[0]
        .message
    )
    assert subject_only.subject == "Quote"
    assert subject_only.body_html is None and subject_only.body_preview is None
    assert subject_only.attachments == ()
    metadata = (
        plan_page([message], LOOKUPS, MailPolicy.build(["contoso.com"], Privacy.METADATA))
        .upserts[0]
        .message
    )
    assert metadata.subject is None and metadata.body_html is None
    assert metadata.sender == message.sender and metadata.received_at == message.received_at


def test_page_lookups_cover_every_participant_once():
    page = [
        mail("anna@fabrikam.com", ME.address, "Bob@Northwindtraders.com", n=i) for i in range(50)
    ]
    addresses = page_addresses(page)
    assert addresses == {"anna@fabrikam.com", "meganb@contoso.com", "bob@northwindtraders.com"}
    assert page_domains(addresses, POLICY) == {"fabrikam.com", "northwindtraders.com"}


addresses = st.sampled_from(
    ["anna@fabrikam.com", "x@gmail.com", "c@contoso.com", "r@noreply.example.com", "bad", ""]
)


@given(st.lists(st.tuples(addresses, st.lists(addresses, max_size=3), st.booleans()), max_size=30))
def test_every_message_is_either_stored_or_counted(rows):
    page = [mail(s or None, *to, draft=d, n=i) for i, (s, to, d) in enumerate(rows)]
    plan = plan_page(page, LOOKUPS, POLICY)
    assert len(plan.upserts) + sum(plan.skipped.values()) == len(page)
    for stored in plan.upserts:
        assert any(p.partner_id or p.company_id for p in stored.participants)
        assert not stored.message.is_draft


def test_preview_keeps_the_new_text_and_drops_the_quoted_history():
    body = (
        "<div>Thanks, Tuesday works for us.</div>"
        '<div id="divRplyFwdMsg"><b>From:</b> Megan Bowen<br><b>Sent:</b> Monday</div>'
        "<div>Would Tuesday at 10 suit you? Long quoted history follows.</div>"
    )
    plan = plan_page([mail("anna@fabrikam.com", ME.address, body=body)], LOOKUPS, POLICY)
    preview = plan.upserts[0].message.body_preview
    assert preview == "Thanks, Tuesday works for us."
