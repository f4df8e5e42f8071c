"""Which contacts and companies a page of mail should create, decided without I/O.

The service wires it between the page's lookups and its plan, so a page costs one more CRM
call at most, whatever its size::

    lookups = <partners of the page's addresses, companies of its work domains>
    drafts = partners_to_create(page.messages, lookups, auto_policy)
    if drafts:
        lookups = merge_created(lookups, gateway.create_partners(drafts), drafts)
    plan = plan_page(page.messages, lookups, mail_policy)

Rules (``AutoCreatePolicy.mode``):

- ``NONE``: nothing is ever created.
- ``SENT``: the recipients (To, Cc, Bcc) of mail the owner sent: the sender is one of the
  owner's addresses, or the message sits in a Sent Items folder. Writing to someone is the
  clearest sign they belong in the CRM.
- ``SENT_AND_RECEIVED``: also the sender and the other To/Cc people of received mail.

Never created, whatever the mode: drafts (not sent yet), internal-only mail, mail from a
blocklisted sender (the plan skips it too), mail a machine or a list produced
(`senders.message_reason`), the owner, addresses in the account's own domains, blocklisted
addresses, machine and role addresses (`senders.address_reason`: ``noreply@``, ``sales@``),
invalid addresses, addresses the CRM already has, and the recipients of a message sent to more
than ``MAX_RECIPIENTS`` people (a mailing, not a conversation). A replayed page therefore proposes
nothing new, and the gateway is idempotent by email anyway.

Companies: a new contact at a work domain (neither a public provider nor our own) with no
company for that domain in the lookups brings ONE company draft for the domain, listed
before the contacts; every such contact carries ``company_domain`` so the gateway makes the
company its parent. People at public providers get no company: a gmail.com address says
nothing about an employer.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field

from m365sync.domain import AutoCreate, EmailAddress, MailMessage, Partner, PartnerDraft
from m365sync.sync.addresses import (
    domain_of,
    domain_of_website,
    in_domains,
    is_work_domain,
    matches_blocklist,
    normalise_address,
)
from m365sync.sync.mail import MailPolicy, PartnerLookups, participants
from m365sync.sync.senders import address_reason, message_reason, strip_plus_tag

# Second-level labels under which companies register (fabrikam.co.uk, contoso.com.au).
_SECOND_LEVEL = frozenset({"co", "com", "net", "org", "ac", "gov", "edu", "ne", "or", "go", "ltd"})
_ORGANISATION_HEADERS = ("organization", "organisation", "x-organization")
# More recipients than this and a message is a mailing, not a conversation: it creates nobody.
MAX_RECIPIENTS = 25


@dataclass(frozen=True, slots=True)
class AutoCreatePolicy:
    """An account's auto-creation settings, normalised once (see the module docstring)."""

    mode: AutoCreate = AutoCreate.NONE
    owner_addresses: frozenset[str] = frozenset()
    own_domains: frozenset[str] = frozenset()
    blocklist: frozenset[str] = frozenset()
    sent_folder_ids: frozenset[str] = frozenset()
    create_companies: bool = True

    @classmethod
    def build(
        cls,
        mode: AutoCreate | str,
        *,
        owner_addresses: Iterable[str],
        own_domains: Iterable[str] = (),
        blocklist: Iterable[str] = (),
        sent_folder_ids: Iterable[str] = (),
        create_companies: bool = True,
    ) -> AutoCreatePolicy:
        """Normalise raw settings: addresses as `normalise_address`, domains casefolded."""
        owners = {normalise_address(a) for a in owner_addresses}
        owners.discard(None)
        return cls(
            mode=AutoCreate(mode),
            owner_addresses=frozenset(strip_plus_tag(a) for a in owners if a),
            own_domains=_clean(own_domains),
            blocklist=_clean(blocklist),
            sent_folder_ids=frozenset(f for f in sent_folder_ids if f),
            create_companies=create_companies,
        )

    @classmethod
    def from_mail_policy(
        cls,
        mail_policy: MailPolicy,
        mode: AutoCreate | str,
        *,
        owner_addresses: Iterable[str],
        sent_folder_ids: Iterable[str] = (),
        create_companies: bool = True,
    ) -> AutoCreatePolicy:
        """The same own domains and blocklist as the page plan, so both agree."""
        return cls.build(
            mode,
            owner_addresses=owner_addresses,
            own_domains=mail_policy.own_domains,
            blocklist=mail_policy.blocklist,
            sent_folder_ids=sent_folder_ids,
            create_companies=create_companies,
        )


def _clean(values: Iterable[str]) -> frozenset[str]:
    return frozenset(v.strip().casefold() for v in values if v and v.strip())


@dataclass(slots=True)
class _Candidate:
    address: str
    domain: str


@dataclass(slots=True)
class _PageNames:
    """Every real display name the page gives each address, to pick the best one."""

    counts: dict[str, Counter[str]] = field(default_factory=dict)
    order: dict[tuple[str, str], int] = field(default_factory=dict)

    def add(self, address: str, name: str) -> None:
        self.counts.setdefault(address, Counter())[name] += 1
        self.order.setdefault((address, name), len(self.order))

    def best(self, address: str) -> str | None:
        names = self.counts.get(address)
        if not names:
            return None
        return max(names, key=lambda n: (names[n], -self.order[(address, n)]))


# --- which mail, which people -------------------------------------------------------------


def _is_owner(address: str, policy: AutoCreatePolicy) -> bool:
    return strip_plus_tag(address) in policy.owner_addresses


def _was_sent_by_owner(message: MailMessage, policy: AutoCreatePolicy) -> bool:
    if message.folder_id in policy.sent_folder_ids:
        return True
    sender = normalise_address(message.sender.address) if message.sender else None
    return sender is not None and _is_owner(sender, policy)


def _candidate_people(message: MailMessage, policy: AutoCreatePolicy) -> tuple[EmailAddress, ...]:
    """The participants this message may turn into contacts, before any address rule."""
    if _was_sent_by_owner(message, policy):
        if policy.mode in (AutoCreate.SENT, AutoCreate.SENT_AND_RECEIVED):
            return message.to + message.cc + message.bcc
        return ()
    if policy.mode is AutoCreate.SENT_AND_RECEIVED:
        sender = (message.sender,) if message.sender else ()
        return sender + message.to + message.cc
    return ()


def _all_addresses(message: MailMessage) -> Iterator[str]:
    for _role, person in participants(message):
        normalised = normalise_address(person.address)
        if normalised:
            yield normalised


def _message_excluded(message: MailMessage, policy: AutoCreatePolicy) -> bool:
    """Drafts, internal-only mail, blocklisted senders and machine-made mail create nobody."""
    if message.is_draft:
        return True
    addresses = list(_all_addresses(message))
    if policy.own_domains and all(in_domains(a, policy.own_domains) for a in addresses):
        return True
    sender = normalise_address(message.sender.address) if message.sender else None
    if sender and matches_blocklist(sender, policy.blocklist):
        return True
    if len(message.to) + len(message.cc) + len(message.bcc) > MAX_RECIPIENTS:
        return True  # a mass mailing: its audience is not a list of contacts to create
    return message_reason(message) is not None


def _address_excluded(address: str, lookups: PartnerLookups, policy: AutoCreatePolicy) -> bool:
    return (
        _is_owner(address, policy)
        or in_domains(address, policy.own_domains)
        or matches_blocklist(address, policy.blocklist)
        or address in lookups.by_email
        or strip_plus_tag(address) in lookups.by_email
        or address_reason(address) is not None
    )


def _candidates(
    messages: Sequence[MailMessage], lookups: PartnerLookups, policy: AutoCreatePolicy
) -> dict[str, _Candidate]:
    """New addresses by mailbox: ``zoe@`` and ``zoe+crm@`` are one person, so one draft
    (the untagged address when the page has it)."""
    found: dict[str, _Candidate] = {}
    for message in messages:
        if _message_excluded(message, policy):
            continue
        for person in _candidate_people(message, policy):
            address = normalise_address(person.address)
            if address is None or _address_excluded(address, lookups, policy):
                continue
            mailbox = strip_plus_tag(address)
            if mailbox not in found:
                found[mailbox] = _Candidate(address, domain_of(address))
            elif address == mailbox:
                found[mailbox].address = address
    return found


# --- names ----------------------------------------------------------------------------------


def real_name(name: str | None, address: str | None = None) -> str | None:
    """A display name worth keeping: not empty, not quotes, not itself an address.

    ``'anna@x.com'`` is no name; ``Anna Smith <anna@x.com>`` gives ``Anna Smith``.
    """
    if not name:
        return None
    text = " ".join(name.split()).strip().strip("'\"").strip()
    head, bracket, tail = text.rpartition("<")
    if bracket and tail.endswith(">") and normalise_address(tail[:-1]) is not None:
        text = head.strip().strip("'\"").strip()
    if not text or normalise_address(text.strip("()[] ")) is not None:
        return None
    if address and text.casefold() == address.strip().casefold():
        return None
    return text


def name_from_address(address: str) -> str:
    """``anna.smith@x`` -> ``Anna Smith``, ``jsmith@x`` -> ``Jsmith`` (plus-tag dropped)."""
    local = strip_plus_tag(address).rpartition("@")[0]
    words = [w for w in local.replace("_", ".").replace("-", ".").split(".") if w]
    return " ".join(w[:1].upper() + w[1:] for w in words) or local or address


def _page_names(messages: Sequence[MailMessage]) -> _PageNames:
    names = _PageNames()
    for message in messages:
        for _role, person in participants(message):
            address = normalise_address(person.address)
            name = real_name(person.name, person.address)
            if address and name:
                names.add(address, name)
    return names


# --- companies -------------------------------------------------------------------------------


def company_name_from_domain(domain: str) -> str:
    """``northwindtraders.com`` -> ``Northwindtraders``, ``adventure-works.co.uk`` ->
    ``Adventure Works``: the registered label, words split on hyphens, capitalised."""
    labels = [label for label in domain.casefold().split(".") if label]
    if labels and labels[0] in {"www", "mail", "email", "mx", "smtp"}:
        labels = labels[1:]
    if len(labels) >= 3 and labels[-2] in _SECOND_LEVEL and len(labels[-1]) == 2:
        labels = labels[:-1]
    label = labels[-2] if len(labels) >= 2 else (labels[0] if labels else domain)
    words = [w for w in label.replace("_", "-").split("-") if w]
    return " ".join(w[:1].upper() + w[1:] for w in words) or domain


def _organisation_hints(messages: Sequence[MailMessage]) -> dict[str, str]:
    """Domain -> the ``Organization`` header of received mail whose sender is at that domain.

    The header is set by the sender's own mail system, so it names the sender's company."""
    hints: dict[str, str] = {}
    for message in messages:
        sender = normalise_address(message.sender.address) if message.sender else None
        if sender is None:
            continue
        headers = {k.strip().casefold(): v for k, v in (message.headers or {}).items()}
        for header in _ORGANISATION_HEADERS:
            value = " ".join((headers.get(header) or "").split())
            if value and normalise_address(value) is None:
                hints.setdefault(domain_of(sender), value[:128])
                break
    return hints


def _company_drafts(
    contacts: Iterable[_Candidate],
    lookups: PartnerLookups,
    policy: AutoCreatePolicy,
    hints: Mapping[str, str],
) -> list[PartnerDraft]:
    drafts: dict[str, PartnerDraft] = {}
    for contact in contacts:
        domain = contact.domain
        if domain in drafts or domain in lookups.companies_by_domain:
            continue
        if not is_work_domain(domain, policy.own_domains):
            continue
        name = hints.get(domain) or company_name_from_domain(domain)
        drafts[domain] = PartnerDraft(
            name=name, is_company=True, company_domain=domain, website=f"https://{domain}"
        )
    return list(drafts.values())


# --- the decision -----------------------------------------------------------------------------


def partners_to_create(
    messages: Iterable[MailMessage], lookups: PartnerLookups, policy: AutoCreatePolicy
) -> list[PartnerDraft]:
    """The contacts (and their companies, first) one page of mail should create.

    Deterministic: companies in the order their domain first appears, then contacts in the
    order their address first appears. Each address and each domain at most once.
    """
    if policy.mode is AutoCreate.NONE:
        return []
    page = list(messages)
    candidates = _candidates(page, lookups, policy)
    if not candidates:
        return []
    names = _page_names(page)
    companies = (
        _company_drafts(candidates.values(), lookups, policy, _organisation_hints(page))
        if policy.create_companies
        else []
    )
    contacts = [
        PartnerDraft(
            name=names.best(c.address) or name_from_address(c.address),
            email=c.address,
            company_domain=c.domain if is_work_domain(c.domain, policy.own_domains) else None,
        )
        for c in candidates.values()
    ]
    return companies + contacts


def merge_created(
    lookups: PartnerLookups,
    created: Sequence[Partner],
    drafts: Sequence[PartnerDraft] = (),
) -> PartnerLookups:
    """New lookups with the partners `CrmGateway.create_partners` returned, for `plan_page`.

    Contacts (and companies with an email) are added by normalised email; companies by the
    domain of their draft (``drafts`` in the order given to the gateway, which answers in
    the same order), else of their website, else of their email. The inputs are not changed.
    """
    by_email = dict(lookups.by_email)
    companies = dict(lookups.companies_by_domain)
    for index, partner in enumerate(created):
        email = normalise_address(partner.email)
        known = by_email.get(email) if email else None
        if email and (known is None or (known.is_company and not partner.is_company)):
            by_email[email] = partner  # the person wins over a company, as the gateway does
        if partner.is_company:
            draft = drafts[index] if index < len(drafts) else None
            domain = _company_domain(partner, draft)
            if domain:
                companies.setdefault(domain, partner)
    return PartnerLookups(by_email, companies)


def _company_domain(partner: Partner, draft: PartnerDraft | None) -> str | None:
    if draft is not None and draft.company_domain:
        return draft.company_domain.strip().casefold()
    website = domain_of_website(partner.website)
    if website:
        return website
    email = normalise_address(partner.email)
    return domain_of(email) if email else None
