"""Auto-creation of contacts and companies from a page of mail (pure, plus one store check)."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from m365sync.crm.sqlite import SqliteGateway
from m365sync.domain import AutoCreate, EmailAddress, MailMessage, Partner, PartnerDraft, Privacy
from m365sync.sync.addresses import domain_of, in_domains, matches_blocklist, normalise_address
from m365sync.sync.autocreate import (
    AutoCreatePolicy,
    company_name_from_domain,
    merge_created,
    name_from_address,
    partners_to_create,
    real_name,
)
from m365sync.sync.mail import MailPolicy, PartnerLookups, page_addresses, plan_page
from m365sync.sync.senders import strip_plus_tag

OWNER = "MeganB@contoso.com"
SENT = "sentitems-id"
FABRIKAM = Partner(id=10, name="Fabrikam", email="info@fabrikam.com", is_company=True)
ANNA = Partner(id=1, name="Anna Smith", email="anna@fabrikam.com", parent_id=10)
LOOKUPS = PartnerLookups(
    by_email={"anna@fabrikam.com": ANNA, "info@fabrikam.com": FABRIKAM},
    companies_by_domain={"fabrikam.com": FABRIKAM},
)


def policy(mode=AutoCreate.SENT_AND_RECEIVED, **kwargs):
    settings = {
        "owner_addresses": [OWNER],
        "own_domains": ["contoso.com"],
        "blocklist": ["*@spam.example", "eve@litwareinc.com"],
        "sent_folder_ids": [SENT],
    } | kwargs
    return AutoCreatePolicy.build(mode, **settings)


_ids = itertools.count()


def person(entry):
    if isinstance(entry, EmailAddress):
        return entry
    if isinstance(entry, tuple):  # (display name, address), as mail clients show them
        return EmailAddress(entry[1], entry[0])
    return EmailAddress(entry)


def mail(sender, to=(), cc=(), bcc=(), *, folder="inbox", draft=False, headers=None):
    n = next(_ids)
    return MailMessage(
        graph_id=f"id{n}",
        internet_message_id=f"<{n}@x>",
        conversation_id="c1",
        folder_id=folder,
        subject="Quote",
        sender=person(sender) if sender else None,
        to=tuple(person(a) for a in to),
        cc=tuple(person(a) for a in cc),
        bcc=tuple(person(a) for a in bcc),
        is_draft=draft,
        headers=headers or {},
    )


def emails(drafts):
    return [d.email for d in drafts if not d.is_company]


def companies(drafts):
    return [d for d in drafts if d.is_company]


# --- modes ----------------------------------------------------------------------------------


def test_none_creates_nothing():
    page = [mail(OWNER, [("Bob Lee", "bob@northwindtraders.com")])]
    assert partners_to_create(page, LOOKUPS, policy(AutoCreate.NONE)) == []


def test_sent_creates_every_recipient_of_sent_mail():
    page = [
        mail(
            ("Megan Bowen", OWNER),
            to=[("Bob Lee", "bob@northwindtraders.com")],
            cc=["carol@gmail.com"],
            bcc=["dan@adventure-works.com"],
        ),
        mail(("Zoe", "zoe@tailspintoys.com"), to=[OWNER], cc=["yan@tailspintoys.com"]),
    ]
    drafts = partners_to_create(page, LOOKUPS, policy(AutoCreate.SENT))
    assert emails(drafts) == [
        "bob@northwindtraders.com",
        "carol@gmail.com",
        "dan@adventure-works.com",
    ]


def test_sent_items_folder_counts_as_sent_even_without_a_known_sender():
    page = [mail("megan.alias@contoso.onmicrosoft.com", ["bob@northwindtraders.com"], folder=SENT)]
    drafts = partners_to_create(page, LOOKUPS, policy(AutoCreate.SENT))
    assert emails(drafts) == ["bob@northwindtraders.com"]


def test_owner_plus_address_is_the_owner():
    page = [mail("meganb+crm@contoso.com", ["bob@northwindtraders.com"])]
    assert emails(partners_to_create(page, LOOKUPS, policy(AutoCreate.SENT))) == [
        "bob@northwindtraders.com"
    ]


def test_sent_and_received_adds_senders_and_other_recipients_of_received_mail():
    page = [
        mail(
            ("Zoe Ray", "zoe@tailspintoys.com"),
            to=[OWNER, "yan@tailspintoys.com"],
            cc=["carol@gmail.com"],
            bcc=["hidden@tailspintoys.com"],  # never visible on received mail, never used
        ),
    ]
    drafts = partners_to_create(page, LOOKUPS, policy())
    assert emails(drafts) == ["zoe@tailspintoys.com", "yan@tailspintoys.com", "carol@gmail.com"]


# --- exclusions -----------------------------------------------------------------------------


def test_never_the_owner_own_domains_blocklist_or_known_addresses():
    page = [
        mail(
            OWNER,
            to=[
                OWNER,
                "Colleague@Contoso.com",
                "someone@eu.contoso.com",  # a subdomain of our own
                "x@spam.example",
                "eve@litwareinc.com",
                "ANNA@fabrikam.com",  # known
                "anna+quotes@fabrikam.com",  # known mailbox behind a plus-tag
                "not an address",
                "",
            ],
        )
    ]
    assert partners_to_create(page, LOOKUPS, policy()) == []


def test_never_machines_lists_or_role_addresses():
    page = [
        mail(OWNER, to=["noreply@northwindtraders.com", "sales@northwindtraders.com"]),
        mail("notifications@github.com", to=[OWNER]),
        mail("bob@northwindtraders.com", to=[OWNER], headers={"List-Id": "<x.lists.example>"}),
        mail("bob@northwindtraders.com", to=[OWNER], headers={"Precedence": "bulk"}),
        mail("bob@northwindtraders.com", to=[OWNER], headers={"Auto-Submitted": "auto-replied"}),
    ]
    assert partners_to_create(page, LOOKUPS, policy()) == []


def test_never_from_drafts_internal_mail_or_blocklisted_senders():
    page = [
        mail(OWNER, to=["bob@northwindtraders.com"], draft=True),
        mail("colleague@contoso.com", to=[OWNER]),
        mail("x@spam.example", to=[OWNER], cc=["carol@gmail.com"]),
    ]
    assert partners_to_create(page, LOOKUPS, policy()) == []


def test_plus_tagged_twins_make_one_contact_with_the_plain_address():
    page = [mail(OWNER, to=["zoe+crm@gmail.com", "bob+a@gmail.com", "zoe@gmail.com"])]
    assert emails(partners_to_create(page, LOOKUPS, policy())) == [
        "zoe@gmail.com",
        "bob+a@gmail.com",
    ]


def test_received_mail_creates_nothing_in_sent_mode():
    page = [mail("bob@northwindtraders.com", to=[OWNER])]
    assert partners_to_create(page, LOOKUPS, policy(AutoCreate.SENT)) == []


# --- names ----------------------------------------------------------------------------------


def test_names_come_from_the_most_frequent_real_display_name():
    page = [
        mail(OWNER, to=[("'bob@northwindtraders.com'", "bob@northwindtraders.com")]),
        mail(("Robert Lee", "bob@northwindtraders.com"), to=[OWNER]),
        mail(("Bob Lee", "bob@northwindtraders.com"), to=[OWNER]),
        mail(("Bob Lee", "Bob@Northwindtraders.com"), to=[OWNER]),
    ]
    (draft,) = [d for d in partners_to_create(page, LOOKUPS, policy()) if not d.is_company]
    assert draft.name == "Bob Lee"


def test_a_bare_address_as_name_is_replaced_by_one_from_the_local_part():
    page = [mail(OWNER, to=[("anna.smith@tailspintoys.com", "anna.smith@tailspintoys.com")])]
    (_company, contact) = partners_to_create(page, LOOKUPS, policy())
    assert contact.name == "Anna Smith"


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("Anna Smith", "Anna Smith"),
        ("  Anna   Smith ", "Anna Smith"),
        ("'Anna Smith'", "Anna Smith"),
        ("Anna Smith <anna@x.com>", "Anna Smith"),
        ("'anna@x.com'", None),
        ("<anna@x.com>", None),
        ("(anna@x.com)", None),
        ("", None),
        ("  ", None),
        ("''", None),
        (None, None),
    ],
)
def test_real_name(name, expected):
    assert real_name(name, "anna@x.com") == expected


@pytest.mark.parametrize(
    ("address", "expected"),
    [
        ("anna.smith@x.com", "Anna Smith"),
        ("jsmith@x.com", "Jsmith"),
        ("anna_smith-jones@x.com", "Anna Smith Jones"),
        ("anna+crm@x.com", "Anna"),
        ("j.r.r.tolkien@x.com", "J R R Tolkien"),
    ],
)
def test_name_from_address(address, expected):
    assert name_from_address(address) == expected


# --- companies ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("domain", "expected"),
    [
        ("northwindtraders.com", "Northwindtraders"),
        ("adventure-works.com", "Adventure Works"),
        ("mail.fabrikam.co.uk", "Fabrikam"),
        ("contoso.com.au", "Contoso"),
        ("eu.litwareinc.com", "Litwareinc"),
        ("www.tailspin-toys.de", "Tailspin Toys"),
        ("localhost", "Localhost"),
    ],
)
def test_company_name_from_domain(domain, expected):
    assert company_name_from_domain(domain) == expected


def test_one_company_per_new_work_domain_before_the_contacts():
    page = [
        mail(OWNER, to=["bob@northwindtraders.com", "dan@adventure-works.com"]),
        mail(OWNER, to=["sue@northwindtraders.com", "carol@gmail.com"]),
    ]
    drafts = partners_to_create(page, LOOKUPS, policy())
    assert drafts == [
        PartnerDraft(
            "Northwindtraders",
            is_company=True,
            company_domain="northwindtraders.com",
            website="https://northwindtraders.com",
        ),
        PartnerDraft(
            "Adventure Works",
            is_company=True,
            company_domain="adventure-works.com",
            website="https://adventure-works.com",
        ),
        PartnerDraft("Bob", "bob@northwindtraders.com", company_domain="northwindtraders.com"),
        PartnerDraft("Dan", "dan@adventure-works.com", company_domain="adventure-works.com"),
        PartnerDraft("Sue", "sue@northwindtraders.com", company_domain="northwindtraders.com"),
        PartnerDraft("Carol", "carol@gmail.com"),  # a public provider: no company
    ]


def test_no_company_draft_when_the_crm_has_one_for_the_domain():
    page = [mail(OWNER, to=["new.person@fabrikam.com"])]
    assert partners_to_create(page, LOOKUPS, policy()) == [
        PartnerDraft("New Person", "new.person@fabrikam.com", company_domain="fabrikam.com")
    ]


def test_organisation_header_names_the_company():
    page = [
        mail(
            ("Zoe Ray", "zoe@tailspintoys.com"),
            to=[OWNER],
            headers={"Organization": "Tailspin Toys, Inc."},
        )
    ]
    company, _contact = partners_to_create(page, LOOKUPS, policy())
    assert company.name == "Tailspin Toys, Inc."


def test_companies_can_be_switched_off():
    page = [mail(OWNER, to=["bob@northwindtraders.com"])]
    drafts = partners_to_create(page, LOOKUPS, policy(create_companies=False))
    assert companies(drafts) == []
    assert emails(drafts) == ["bob@northwindtraders.com"]


def test_a_role_address_alone_creates_no_company_either():
    page = [mail(OWNER, to=["sales@northwindtraders.com"])]
    assert partners_to_create(page, LOOKUPS, policy()) == []


def test_policy_from_the_mail_policy_shares_domains_and_blocklist():
    mail_policy = MailPolicy.build(["Contoso.com"], Privacy.EVERYTHING, ["*@Spam.example"])
    auto = AutoCreatePolicy.from_mail_policy(
        mail_policy, "sent", owner_addresses=[OWNER, "bad"], sent_folder_ids=[SENT, ""]
    )
    assert auto.mode is AutoCreate.SENT
    assert auto.owner_addresses == {"meganb@contoso.com"}
    assert auto.own_domains == {"contoso.com"}
    assert auto.blocklist == {"*@spam.example"}
    assert auto.sent_folder_ids == {SENT}


# --- wiring: drafts -> created -> merged -> plan -----------------------------------------------


class FakeGateway:
    """create_partners as the contract says: in order, companies parent their contacts."""

    def __init__(self):
        self.ids = itertools.count(100)
        self.calls = 0

    def create_partners(self, drafts):
        self.calls += 1
        by_domain = {}
        made = []
        for draft in sorted(drafts, key=lambda d: not d.is_company):
            if draft.is_company:
                partner = Partner(next(self.ids), draft.name, None, True, None, draft.website)
                by_domain[draft.company_domain] = partner
            else:
                parent = by_domain.get(draft.company_domain)
                partner = Partner(
                    next(self.ids), draft.name, draft.email, False, parent and parent.id
                )
            made.append((draft, partner))
        order = {id(d): p for d, p in made}
        return [order[id(d)] for d in drafts]


def test_created_partners_make_the_plan_store_the_mail():
    page = [
        mail(OWNER, to=["bob@northwindtraders.com"]),
        mail("carol@gmail.com", to=[OWNER]),
        mail("sales@northwindtraders.com", to=[OWNER]),
    ]
    mail_policy = MailPolicy.build(["contoso.com"], Privacy.EVERYTHING)
    before = plan_page(page, LOOKUPS, mail_policy)
    assert before.upserts == []

    gateway = FakeGateway()
    drafts = partners_to_create(page, LOOKUPS, policy())
    lookups = merge_created(LOOKUPS, gateway.create_partners(drafts), drafts)
    plan = plan_page(page, lookups, mail_policy)

    assert gateway.calls == 1
    assert len(plan.upserts) == 3  # the role address now matches the new company
    links = {p.address: p for s in plan.upserts for p in s.participants}
    bob, carol, sales = (
        links["bob@northwindtraders.com"],
        links["carol@gmail.com"],
        links["sales@northwindtraders.com"],
    )
    assert bob.partner_id is not None and bob.company_id is not None
    assert carol.partner_id is not None and carol.company_id is None
    assert sales.partner_id is None and sales.company_id == bob.company_id
    assert LOOKUPS.by_email.keys() == {"anna@fabrikam.com", "info@fabrikam.com"}  # unchanged


def test_merge_created_without_drafts_uses_website_or_email():
    web = Partner(7, "Northwind", None, True, None, "https://www.northwindtraders.com/about")
    mailed = Partner(8, "Tailspin", "hello@tailspintoys.com", True)
    lookups = merge_created(PartnerLookups(), [web, mailed])
    assert lookups.companies_by_domain == {"northwindtraders.com": web, "tailspintoys.com": mailed}
    assert lookups.by_email == {"hello@tailspintoys.com": mailed}


def test_merge_created_keeps_a_person_over_a_company_with_the_same_email():
    anna = Partner(1, "Anna", "anna@x.com")
    company = Partner(2, "X", "anna@x.com", True)
    assert merge_created(PartnerLookups({"anna@x.com": anna}), [company]).by_email == {
        "anna@x.com": anna
    }


def test_drafts_are_accepted_by_the_embedded_store(tmp_path: Path):
    gateway = SqliteGateway(tmp_path / "m365sync.db")
    try:
        page = [mail(OWNER, to=[("Bob Lee", "bob@northwindtraders.com"), "carol@gmail.com"])]
        drafts = partners_to_create(page, PartnerLookups(), policy())
        created = gateway.create_partners(drafts)
        company, bob, carol = created
        assert company.is_company and bob.parent_id == company.id and carol.parent_id is None
        lookups = merge_created(PartnerLookups(), created, drafts)
        again = gateway.find_partners_by_emails(page_addresses(page))
        assert {k: v.id for k, v in again.items()} == {k: v.id for k, v in lookups.by_email.items()}
        replay = partners_to_create(page, lookups, policy())
        assert replay == []
    finally:
        gateway.close()


# --- properties -----------------------------------------------------------------------------

POOL = [
    OWNER,
    "colleague@contoso.com",
    "anna@fabrikam.com",
    "new@fabrikam.com",
    "bob@northwindtraders.com",
    "Bob@NorthwindTraders.com",
    "sue@northwindtraders.com",
    "dan@adventure-works.com",
    "carol@gmail.com",
    "x@spam.example",
    "eve@litwareinc.com",
    "noreply@tailspintoys.com",
    "sales@tailspintoys.com",
    "zoe@tailspintoys.com",
    "zoe+crm@tailspintoys.com",
    "bad",
    "",
]
people = st.builds(
    EmailAddress, st.sampled_from(POOL), st.sampled_from(["", "Real Name", "'x@y.com'"])
)
messages = st.builds(
    lambda s, to, cc, bcc, folder, draft, bulk: mail(
        s, to, cc, bcc, folder=folder, draft=draft, headers={"Precedence": "bulk"} if bulk else {}
    ),
    people,
    st.lists(people, max_size=4),
    st.lists(people, max_size=2),
    st.lists(people, max_size=2),
    st.sampled_from(["inbox", SENT]),
    st.booleans(),
    st.booleans(),
)
modes = st.sampled_from(list(AutoCreate))


@given(st.lists(messages, max_size=12), modes)
def test_properties_of_the_drafts(page, mode):
    auto = policy(mode)
    drafts = partners_to_create(page, LOOKUPS, auto)
    contacts = [d for d in drafts if not d.is_company]
    made_companies = [d for d in drafts if d.is_company]
    addresses = [normalise_address(d.email) for d in contacts]
    if mode is AutoCreate.NONE:
        assert drafts == []
    # companies first, each address and each domain once
    assert drafts == made_companies + contacts
    assert len(addresses) == len(set(addresses))
    assert len({strip_plus_tag(a) for a in addresses}) == len(addresses)
    assert len({c.company_domain for c in made_companies}) == len(made_companies)
    for address in addresses:
        assert address is not None
        assert address not in LOOKUPS.by_email
        assert not in_domains(address, auto.own_domains)
        assert not matches_blocklist(address, auto.blocklist)
        assert address != normalise_address(OWNER)
        assert domain_of(address) != "tailspintoys.com" or address.startswith("zoe")
    drafted = {c.company_domain for c in made_companies}
    for contact in contacts:
        assert contact.name and "@" not in contact.name
        if contact.company_domain:
            domain = contact.company_domain
            assert domain in drafted or domain in LOOKUPS.companies_by_domain
    for company in made_companies:
        assert company.company_domain not in LOOKUPS.companies_by_domain
        assert company.website == f"https://{company.company_domain}"


@given(st.lists(messages, max_size=12), modes)
def test_deterministic_and_idempotent_once_created(page, mode):
    auto = policy(mode)
    drafts = partners_to_create(page, LOOKUPS, auto)
    assert partners_to_create(page, LOOKUPS, auto) == drafts
    lookups = merge_created(LOOKUPS, FakeGateway().create_partners(drafts), drafts)
    assert partners_to_create(page, lookups, auto) == []


def test_a_mailing_to_many_recipients_creates_nobody():
    from m365sync.domain import AutoCreate, EmailAddress, MailMessage
    from m365sync.sync.autocreate import MAX_RECIPIENTS, AutoCreatePolicy, partners_to_create
    from m365sync.sync.mail import PartnerLookups

    def sent(count: int) -> MailMessage:
        return MailMessage(
            graph_id=f"g{count}",
            internet_message_id=None,
            conversation_id=None,
            folder_id="sent",
            subject="Announcement",
            sender=EmailAddress("meganb@contoso.com", "Megan"),
            to=tuple(EmailAddress(f"person{i}@fabrikam.com", f"Person {i}") for i in range(count)),
        )

    policy = AutoCreatePolicy.build(
        AutoCreate.SENT, owner_addresses=["meganb@contoso.com"], own_domains=["contoso.com"]
    )
    assert partners_to_create([sent(MAX_RECIPIENTS + 1)], PartnerLookups(), policy) == []
    drafts = partners_to_create([sent(3)], PartnerLookups(), policy)
    assert [d.email for d in drafts if not d.is_company] == [
        "person0@fabrikam.com",
        "person1@fabrikam.com",
        "person2@fabrikam.com",
    ]
