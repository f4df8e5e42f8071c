"""What to store of a page of mail, decided without I/O.

The service looks up the partners for a whole page once (`page_addresses`, `page_domains`),
then `plan_page` returns the messages to upsert (privacy already applied: what is not shared is
not even handed to the CRM) and the count of skipped messages by reason.
"""

from __future__ import annotations

import hashlib
import html
import json
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace

import nh3

from m365sync.domain import (
    EmailAddress,
    MailMessage,
    ParticipantLink,
    Partner,
    Privacy,
    StoredMessage,
)
from m365sync.sync.addresses import (
    domain_of,
    in_domains,
    is_work_domain,
    matches_blocklist,
    normalise_address,
)
from m365sync.sync.preview import text_preview

# Skip reasons, as the run summary and the account status show them.
SKIP_DRAFT = "draft"
SKIP_NO_PARTICIPANTS = "no valid address"
SKIP_INTERNAL = "internal only"
SKIP_BLOCKLISTED = "blocklisted"
SKIP_UNMATCHED = "no matching contact or company"


@dataclass(frozen=True, slots=True)
class MailPolicy:
    """An account's rules: its own domains, its privacy level, the blocklist."""

    own_domains: frozenset[str] = frozenset()
    privacy: Privacy = Privacy.EVERYTHING
    blocklist: frozenset[str] = frozenset()

    @classmethod
    def build(
        cls, own_domains: Iterable[str], privacy: Privacy, blocklist: Iterable[str] = ()
    ) -> MailPolicy:
        def clean(values: Iterable[str]) -> frozenset[str]:
            return frozenset(v.strip().casefold() for v in values if v and v.strip())

        return cls(clean(own_domains), privacy, clean(blocklist))


@dataclass(slots=True)
class PartnerLookups:
    """The CRM's answers for one page: partners by normalised email, companies by domain."""

    by_email: Mapping[str, Partner] = field(default_factory=dict)
    companies_by_domain: Mapping[str, Partner] = field(default_factory=dict)


@dataclass(slots=True)
class PagePlan:
    upserts: list[StoredMessage]
    skipped: Counter[str]


_ROLES = ("from", "to", "cc", "bcc", "reply_to")


def participants(message: MailMessage) -> list[tuple[str, EmailAddress]]:
    """(role, address) for every participant, sender first."""
    people: list[tuple[str, EmailAddress]] = []
    if message.sender is not None:
        people.append(("from", message.sender))
    for role, group in (
        ("to", message.to),
        ("cc", message.cc),
        ("bcc", message.bcc),
        ("reply_to", message.reply_to),
    ):
        people.extend((role, address) for address in group)
    return people


def page_addresses(messages: Iterable[MailMessage]) -> set[str]:
    """Every normalised address of a page: one CRM lookup instead of one per message."""
    found = set()
    for message in messages:
        for _, address in participants(message):
            normalised = normalise_address(address.address)
            if normalised:
                found.add(normalised)
    return found


def page_domains(addresses: Iterable[str], policy: MailPolicy) -> set[str]:
    """The work domains among a page's addresses (public providers and our own left out)."""
    return {domain_of(a) for a in addresses if is_work_domain(domain_of(a), policy.own_domains)}


def content_fingerprint(message: MailMessage) -> str:
    """The message's sender, subject and body text, hashed: equal for two copies of one
    message (another folder, another mailbox), different for a mail that reuses its
    internetMessageId with other content. Markup and whitespace do not count."""
    if message.body_html:
        text = html.unescape(nh3.clean(message.body_html, tags=set()))
    else:
        text = message.body_preview or ""
    sender = (normalise_address(message.sender.address) or "") if message.sender else ""
    content = [sender, " ".join((message.subject or "").split()), " ".join(text.split())]
    blob = json.dumps(content, ensure_ascii=False).encode()
    return hashlib.sha256(blob).hexdigest()


def apply_privacy(message: MailMessage, privacy: Privacy) -> MailMessage:
    """Drop what the account does not share, and sanitise the HTML we keep. The fingerprint
    is taken first, from the whole message, so copies shared at any level still match."""
    message = replace(message, fingerprint=message.fingerprint or content_fingerprint(message))
    if privacy is Privacy.METADATA:
        return replace(
            message, subject=None, body_html=None, body_preview=None, attachments=(), headers={}
        )
    if privacy is Privacy.SUBJECT:
        return replace(message, body_html=None, body_preview=None, attachments=(), headers={})
    if not message.body_html:
        return message
    # Our own preview collapses quoted history; Graph's bodyPreview repeats it.
    preview = text_preview(message.body_html) or message.body_preview
    return replace(message, body_html=nh3.clean(message.body_html), body_preview=preview)


def _company_for(
    address: str, partner: Partner | None, lookups: PartnerLookups, policy: MailPolicy
) -> int | None:
    if partner is not None:
        if partner.is_company:
            return partner.id
        if partner.parent_id is not None:
            return partner.parent_id
    domain = domain_of(address)
    if is_work_domain(domain, policy.own_domains):
        company = lookups.companies_by_domain.get(domain)
        if company is not None:
            return company.id
    return None


def _links(
    message: MailMessage, lookups: PartnerLookups, policy: MailPolicy
) -> list[ParticipantLink]:
    links = []
    for role, address in participants(message):
        normalised = normalise_address(address.address)
        if normalised is None:
            continue
        partner = lookups.by_email.get(normalised)
        links.append(
            ParticipantLink(
                role=role,
                address=normalised,
                name=(address.name or "").strip(),
                partner_id=partner.id if partner and not partner.is_company else None,
                company_id=_company_for(normalised, partner, lookups, policy),
            )
        )
    return links


def skip_reason(
    message: MailMessage, links: list[ParticipantLink], policy: MailPolicy
) -> str | None:
    """Why a message is not stored, or None to store it. Order matters: cheapest, clearest first."""
    if message.is_draft:
        return SKIP_DRAFT
    if not links:
        return SKIP_NO_PARTICIPANTS
    if policy.own_domains and all(in_domains(link.address, policy.own_domains) for link in links):
        return SKIP_INTERNAL
    sender = next((link for link in links if link.role == "from"), None)
    if sender is not None and matches_blocklist(sender.address, policy.blocklist):
        return SKIP_BLOCKLISTED
    external = [link for link in links if not matches_blocklist(link.address, policy.blocklist)]
    if not any(link.partner_id or link.company_id for link in external):
        return SKIP_UNMATCHED
    return None


def plan_page(
    messages: Iterable[MailMessage], lookups: PartnerLookups, policy: MailPolicy
) -> PagePlan:
    """Decide, for each message of a page, whether and what to store."""
    upserts: list[StoredMessage] = []
    skipped: Counter[str] = Counter()
    for message in messages:
        links = _links(message, lookups, policy)
        reason = skip_reason(message, links, policy)
        if reason is not None:
            skipped[reason] += 1
            continue
        upserts.append(StoredMessage(apply_privacy(message, policy.privacy), links))
    return PagePlan(upserts, skipped)
