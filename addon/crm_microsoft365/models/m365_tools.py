"""Pure helpers shared by the models and the daemon API (no ORM here).

They mirror ``m365sync.sync.addresses`` and ``m365sync.crm.wire`` exactly, without importing
the daemon: the addon and the daemon meet only through the wire format. The address and
domain rules are pinned on both sides by one table of cases, ``tests/address_cases.json``
(``normalize_email`` is the daemon's ``address_key``, ``normalize_domain`` its
``normalise_domain``, ``email_domain(normalize_email(x))`` its ``domain_of_email`` and
``website_domain`` its ``domain_of_website``).
"""

import contextlib
import functools
import json
import unicodedata
from datetime import date, datetime, timezone
from urllib.parse import urlsplit


def _domain_to_unicode(domain):
    labels = []
    for label in domain.split("."):
        if label.startswith("xn--"):
            with contextlib.suppress(UnicodeError):
                label = label.encode("ascii").decode("idna")
        labels.append(label)
    return ".".join(labels)


def normalise_address(raw):
    """The daemon's comparable form of an address (NFC, casefold, Unicode domain), or None."""
    if not raw or not isinstance(raw, str):
        return None
    return _normalise(raw)


@functools.lru_cache(maxsize=8192)
def _normalise(raw):
    """normalise_address of a string, memoised: a page names the same few hundred addresses
    again and again (participants, senders, fingerprints)."""
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


def normalize_email(address):
    """Like the embedded store: the daemon's normalisation, or at least a casefold."""
    if not address:
        return None
    return normalise_address(address) or address.strip().casefold()


def normalize_domain(domain):
    """A work domain as companies are matched: no trailing dot, case-folded, no leading
    ``www.``, Unicode labels; None when nothing is left (the daemon's normalise_domain)."""
    domain = (domain or "").strip().rstrip(".").casefold()
    return _domain_to_unicode(domain.removeprefix("www.")) or None


def email_domain(email_normalized):
    if not email_normalized or "@" not in email_normalized:
        return None
    return normalize_domain(email_normalized.rsplit("@", 1)[1]) or None


def website_domain(website):
    """``https://www.Example.com/about`` -> ``example.com``; a bare ``example.com`` works too."""
    if not website or not website.strip():
        return None
    text = website.strip()
    try:
        host = urlsplit(text if "//" in text else f"//{text}").hostname
    except ValueError:
        return None
    return normalize_domain(host) if host else None


# --- the wire format (m365sync.crm.wire) -----------------------------------------------------


def dt_to_wire(value):
    """A naive-UTC Odoo datetime -> ISO-8601 with offset; False/None -> None."""
    if not value:
        return None
    if value.tzinfo is None:
        value = value.replace(tzinfo=timezone.utc)
    return value.astimezone(timezone.utc).isoformat()


def dt_from_wire(text):
    """ISO-8601 (with or without offset, taken as UTC) -> naive UTC datetime for the ORM."""
    if not text:
        return None
    value = text if isinstance(text, datetime) else datetime.fromisoformat(str(text).replace("Z", "+00:00"))
    if value.tzinfo is not None:
        value = value.astimezone(timezone.utc).replace(tzinfo=None)
    return value


def date_from_wire(text):
    if not text:
        return None
    if isinstance(text, date):
        return text
    text = str(text)
    return dt_from_wire(text).date() if "T" in text else date.fromisoformat(text)


def json_dumps(value):
    return json.dumps(value or {}, sort_keys=True, ensure_ascii=False)


def json_loads(text, default=None):
    if not text:
        return {} if default is None else default
    try:
        return json.loads(text)
    except ValueError:
        return {} if default is None else default
