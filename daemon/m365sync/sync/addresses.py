"""Email address normalisation and domain rules, shared by every matching decision.

Addresses are compared case-insensitively and Unicode-safely (NFC, then casefold); plus-tags
are kept because ``anna+crm@x`` may really be another mailbox. Internationalised domains are
compared in their Unicode form so ``bücher.example`` and ``xn--bcher-kva.example`` agree.

These are the only copies of the rules in the daemon; the embedded store uses them too. The
Odoo addon cannot import the daemon and mirrors them in ``m365_tools.py``; one table of cases,
``addon/crm_microsoft365/tests/address_cases.json``, is read by both test suites, so the two
copies cannot drift apart unnoticed.
"""

from __future__ import annotations

import contextlib
import unicodedata
from functools import lru_cache
from urllib.parse import urlsplit

# Public mail providers never identify a company (a gmail.com sender is a person, not Google).
PUBLIC_PROVIDERS = frozenset(
    {
        "gmail.com",
        "googlemail.com",
        "outlook.com",
        "hotmail.com",
        "hotmail.co.uk",
        "hotmail.fr",
        "live.com",
        "live.fr",
        "msn.com",
        "yahoo.com",
        "yahoo.co.uk",
        "yahoo.fr",
        "ymail.com",
        "aol.com",
        "icloud.com",
        "me.com",
        "mac.com",
        "gmx.de",
        "gmx.net",
        "gmx.com",
        "web.de",
        "t-online.de",
        "orange.fr",
        "free.fr",
        "laposte.net",
        "wanadoo.fr",
        "protonmail.com",
        "proton.me",
        "pm.me",
        "zoho.com",
        "yandex.ru",
        "yandex.com",
        "mail.ru",
        "qq.com",
        "163.com",
        "126.com",
        "fastmail.com",
        "hey.com",
        "tutanota.com",
        "mail.com",
    }
)


def _domain_to_unicode(domain: str) -> str:
    labels = []
    for label in domain.split("."):
        if label.startswith("xn--"):
            with contextlib.suppress(UnicodeError):
                label = label.encode("ascii").decode("idna")
        labels.append(label)
    return ".".join(labels)


def wire_address(address: str) -> str:
    """An address as mail servers take it without SMTPUTF8: the domain's Unicode labels as
    their A-labels (``bäckerei-müller.de`` -> ``xn--bckerei-mller-bfb28a.de``, RFC 5890); the
    rest as given. Anything IDNA cannot encode is left as it is, for the server to judge."""
    local, at, domain = address.rpartition("@")
    if not at or domain.isascii():
        return address
    labels = []
    for label in domain.split("."):
        if not label.isascii():
            with contextlib.suppress(UnicodeError):
                label = label.encode("idna").decode("ascii")
        labels.append(label)
    return f"{local}@{'.'.join(labels)}"


def normalise_address(raw: str | None) -> str | None:
    """The comparable form of an address, or None when it is not a usable address."""
    if not raw or not isinstance(raw, str):
        return None
    return _normalise(raw)


@lru_cache(maxsize=16384)
def _normalise(raw: str) -> str | None:
    """Memoised: a page's planning, auto-creation and store each ask about the same few
    addresses (about 8 calls per message), and the answer depends on the text alone."""
    text = unicodedata.normalize("NFC", raw.strip()).strip("<>").strip()
    if text.lower().startswith("mailto:"):
        text = text[7:]
    if text.count("@") != 1 or any(ch.isspace() for ch in text):
        return None
    local, domain = text.split("@")
    domain = domain.rstrip(".")
    if not local or not domain or "." not in domain or ".." in domain:
        return None
    return f"{local.casefold()}@{_domain_to_unicode(domain.casefold())}"


def address_key(raw: str | None) -> str | None:
    """How a CRM's stored address is compared: its normalised form, else (an odd value a
    person typed) the trimmed, case-folded text, so it still finds itself."""
    if not raw or not isinstance(raw, str):
        return None
    return normalise_address(raw) or raw.strip().casefold() or None


def domain_of(address: str) -> str:
    """The domain of a normalised address."""
    return address.rpartition("@")[2]


def normalise_domain(domain: str | None) -> str | None:
    """A domain as companies are matched: no trailing dot, case-folded, no leading ``www.``,
    Unicode labels (``WWW.Xn--Bcher-Kva.Example.`` -> ``bücher.example``)."""
    text = (domain or "").strip().rstrip(".").casefold().removeprefix("www.")
    return _domain_to_unicode(text) or None


def domain_of_email(raw: str | None) -> str | None:
    """The work domain a CRM address gives its company (``anna@WWW.x.com`` -> ``x.com``)."""
    key = address_key(raw)
    if not key or "@" not in key:
        return None
    return normalise_domain(key.rpartition("@")[2])


def domain_of_website(website: str | None) -> str | None:
    """``https://www.Fabrikam.com/about`` -> ``fabrikam.com``; a bare ``fabrikam.com`` (with a
    port, a path or credentials) works too; a host that is no domain gives None."""
    if not website or not website.strip():
        return None
    text = website.strip()
    try:
        host = urlsplit(text if "//" in text else f"//{text}").hostname
    except ValueError:
        return None
    return normalise_domain(host) if host else None


def is_work_domain(domain: str, own_domains: frozenset[str]) -> bool:
    """A domain that may identify a customer company: not ours, not a public provider."""
    return domain not in PUBLIC_PROVIDERS and domain not in own_domains


def in_domains(address: str, domains: frozenset[str]) -> bool:
    """True when the address's domain is one of ``domains`` or a subdomain of one."""
    domain = domain_of(address)
    return any(domain == d or domain.endswith("." + d) for d in domains)


def matches_blocklist(address: str, patterns: frozenset[str]) -> bool:
    """Blocklist entries: a full address, ``*@domain`` or a bare domain (subdomains too)."""
    if address in patterns:
        return True
    domain = domain_of(address)
    for pattern in patterns:
        bare = pattern[2:] if pattern.startswith("*@") else pattern
        if "@" in bare:
            continue
        if domain == bare or domain.endswith("." + bare):
            return True
    return False
