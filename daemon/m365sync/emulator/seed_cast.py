"""Who is in the seeded mailbox: colleagues, companies, people at public mail providers,
bulk senders, and the phrases their mail is made of.

Why a table: the demo pre-populates the CRM with some of these people and companies, and the
tests look for the awkward cases on purpose -- an upper-case address (ROB.YOUNG@FABRIKAM.COM),
a plus tag, an internationalised domain (bäckerei-müller.de), a display name with a comma
("Leverling, Janet"), one with no display name, and bulk senders with List-Id / Precedence.
"""

from __future__ import annotations

import html
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

OWNER = 0
COLLEAGUES = (
    ("Adele Vance", "AdeleV"),
    ("Alex Wilber", "AlexW"),
    ("Diego Siciliani", "DiegoS"),
    ("Isaiah Langer", "IsaiahL"),
    ("Johanna Lorenz", "JohannaL"),
    ("Lee Gu", "LeeG"),
    ("Lidia Holloway", "LidiaH"),
    ("Nestor Wilke", "NestorW"),
    ("Patti Fernandez", "PattiF"),
    ("Pradeep Gupta", "PradeepG"),
)


@dataclass(frozen=True)
class Company:
    """An external organisation with a work domain (what the CRM knows as a company)."""

    name: str
    domain: str
    people: tuple[tuple[str, str], ...]  # (display name, full address)

    @property
    def website(self) -> str:
        return f"https://www.{self.domain}"


COMPANIES = (
    Company(
        "Fabrikam, Inc.",
        "fabrikam.com",
        (
            ("Kevin Cook", "kevin.cook@fabrikam.com"),
            ("Rob Young", "ROB.YOUNG@FABRIKAM.COM"),  # upper-case address
            ("Dana Birkby", "dana.birkby@fabrikam.com"),
        ),
    ),
    Company(
        "Northwind Traders",
        "northwindtraders.com",
        (
            ("Nancy Davolio", "nancy.davolio@northwindtraders.com"),
            ("Andrew Fuller", "andrew.fuller+crm@northwindtraders.com"),  # plus tag
            ("Leverling, Janet", "janet.leverling@northwindtraders.com"),  # comma in the name
        ),
    ),
    Company(
        "Tailspin Toys",
        "tailspintoys.com",
        (("Elliot Hyde", "elliot-hyde@tailspintoys.com"), ("", "mary.baker@tailspintoys.com")),
    ),
    Company(
        "Adventure Works Cycles",
        "adventure-works.com",
        (
            ("Lori Penor", "lori.penor@adventure-works.com"),
            ("Ken Sánchez", "ken0@adventure-works.com"),
        ),
    ),
    Company(
        "Litware, Inc.",
        "litwareinc.com",
        (
            ("Amy Alberts", "amy.alberts@litwareinc.com"),
            ("Ben Miller", "ben.miller@litwareinc.com"),
        ),
    ),
    Company(
        "Wingtip Toys",
        "wingtiptoys.com",
        (
            ("Aroha Ngata", "aroha.ngata@wingtiptoys.com"),
            ("Sean Chai", "sean.chai@wingtiptoys.com"),
        ),
    ),
    Company(
        "Woodgrove Bank", "woodgrovebank.com", (("Terry Adams", "terry.adams@woodgrovebank.com"),)
    ),
    Company(
        "Bäckerei Müller GmbH",
        "bäckerei-müller.de",  # an internationalised (IDN) domain
        (("Jürgen Müller", "juergen@bäckerei-müller.de"),),
    ),
)
PUBLIC_PEOPLE = (
    ("Sam Taylor", "sam.taylor1987@gmail.com"),
    ("Chris Green", "chris.green@outlook.com"),
    ("Priya Patel", "priya_patel@yahoo.com"),
    ("Tom Lee", "TomLee@hotmail.com"),
    ("Olivia Brown", "olivia.brown@icloud.com"),
    ("Lukas Schmidt", "lukas.schmidt@gmx.de"),
)
PUBLIC_PROVIDERS = frozenset(
    ["gmail.com", "outlook.com", "yahoo.com", "hotmail.com", "icloud.com", "gmx.de", "live.com"]
)
BULK_SENDERS = (
    (
        "Northwind Traders Newsletter",
        "newsletter@northwindtraders.com",
        "<news.northwindtraders.com>",
    ),
    ("Microsoft Planner", "noreply@planner.office365.com", ""),
    ("Fabrikam Events", "no-reply@events.fabrikam.com", "<events.fabrikam.com>"),
    ("Contoso IT", "it-notifications@contoso.com", "<it.contoso.com>"),
)
BULK_LOCAL_PARTS = (
    "noreply",
    "no-reply",
    "newsletter",
    "notifications",
    "mailer-daemon",
    "donotreply",
)

THINGS = (
    "proposal",
    "pricing sheet",
    "contract draft",
    "purchase order",
    "shipping schedule",
    "Q3 forecast",
    "marketing plan",
    "product samples",
    "invoice",
    "statement of work",
)
DAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday")
SENTENCES = (
    "Thanks for the quick turnaround on the {thing}.",
    "Could you send over the updated {thing} by {day}?",
    "I've attached the {thing} we discussed.",
    "Let's find 30 minutes next week to go through the {thing}.",
    "Following up on the {thing} - any news on your side?",
    "The team reviewed the {thing} and we're good to go.",
    "Can we move our call to {day}? Something came up.",
    "Please find the revised {thing} below & let me know what you think.",
)
EXTERNAL_SUBJECTS = (
    "{company} - {thing}",
    "Question about the {thing}",
    "Updated {thing}",
    "Next steps on the {thing}",
    "Intro: {name} <> Megan",
    "{thing} for {month}",
)
INTERNAL_SUBJECTS = (
    "Team offsite planning",
    "Budget review",
    "Campaign assets for {month}",
    "1:1 notes",
    "Launch checklist",
    "Can you cover the {thing} meeting?",
)
MONTHS = (
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
)

EXCHANGE_HOSTS = ("DM6PR11MB4107", "BY5PR13MB3315", "AM0PR04MB6452", "SN6PR2101MB0944")


@dataclass(frozen=True)
class Person:
    """Someone who writes to or is written to by the owner."""

    name: str
    address: str
    kind: str  # owner | colleague | external | public | bulk
    company: int = -1  # index into COMPANIES
    list_id: str = ""


def people_for(owner: dict[str, Any]) -> list[Person]:
    """The cast, owner first; indexes into this list are what message specs store."""
    domain = str(owner["mail"]).rpartition("@")[2]
    cast = [Person(owner["displayName"], owner["mail"], "owner")]
    cast += [Person(name, f"{alias}@{domain}", "colleague") for name, alias in COLLEAGUES]
    for number, company in enumerate(COMPANIES):
        cast += [Person(n, a, "external", number) for n, a in company.people]
    cast += [Person(n, a, "public") for n, a in PUBLIC_PEOPLE]
    cast += [Person(n, a, "bulk", list_id=lid) for n, a, lid in BULK_SENDERS]
    return cast


def recipient(person: Person) -> dict[str, Any]:
    # With no display name Exchange shows the address itself as the name.
    return {"emailAddress": {"name": person.name or person.address, "address": person.address}}


def esc(text: str) -> str:
    return html.escape(text, quote=False)


def iso(epoch: int) -> str:
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def default_anchor() -> datetime:
    """Today at 00:00 UTC: stable within a day, so seeded dates stay recent."""
    today = datetime.now(UTC).date()
    return datetime(today.year, today.month, today.day, tzinfo=UTC)
