"""Which senders and recipients are machines, lists or shared mailboxes (pure).

Auto-creation turns addresses into CRM *people*. A newsletter, a bounce, an out-of-office
reply or ``sales@`` is not a person, and a CRM that fills up with "Noreply" and "Info"
contacts is worse than one that misses a few, so these rules err on the side of "not a
person". They only stop *creation*: a role address the CRM already has (a company's
``info@``) still matches, because matching is `sync.mail`'s job and is not affected.

Rules, in the order `is_automated` applies them:

1. **The address** (its local part, after `strip_plus_tag`, compared without ``.-_``):

   - ``noreply``, ``no-reply``, ``donotreply``, ``do-not-reply`` and anything containing
     them (``calendar-noreply@``): nobody reads replies there -> "no-reply address".
   - ``mailer-daemon``, ``postmaster``, ``bounce``/``bounces`` (also VERP forms such as
     ``bounces-123@``): the mail system itself -> "mail system address".
   - ``notification(s)``, ``newsletter(s)``, ``alerts``, ``news``, ``updates``, ...:
     machine senders by convention -> "notification or newsletter address".
   - ``dl-sales``, ``sales-dl``, ``all-staff``, ``everyone``, ``all``: Exchange
     distribution lists and all-hands groups -> "distribution list".
   - ``info``, ``sales``, ``support``, ``team``, ``hello``, ``contact``, ``billing``,
     ``admin``... (whole local part, or only such words as in ``sales-team``): shared
     mailboxes read by whoever is on duty -> "group or role address".

2. **The message's internet headers** (names compared case-insensitively). They describe
   how the message was produced, so they disqualify every participant of that message: the
   people on a newsletter's or a list's To line are not our contacts either.

   - ``List-Id``, ``List-Unsubscribe``, ``List-Post``, ``Mailing-List``: sent through a
     mailing list (RFC 2369, 2919) -> "mailing list (List-Id)".
   - ``Precedence: bulk | list | junk``: the old convention for mass mail -> "bulk
     (Precedence)"; ``Precedence: auto_reply`` -> "auto reply".
   - ``Auto-Submitted`` with any value but ``no`` (RFC 3834: auto-generated,
     auto-replied, auto-notified) -> "auto-submitted".
   - ``X-Auto-Response-Suppress`` naming ``All`` or ``OOF``, ``X-Autoreply``,
     ``X-Autorespond``: what Exchange and other servers put on out-of-office and other
     automatic replies -> "auto reply".
   - ``Content-Type: multipart/report`` or an empty ``Return-Path: <>``: a delivery or
     read report (RFC 3462, 5321) -> "delivery report".

Graph only returns ``internetMessageHeaders`` when asked for, and not for mail the owner
wrote in Outlook (Sent Items); then only the address rules apply, which is what we want:
the owner's own mail is never "bulk".
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from m365sync.domain import MailMessage
from m365sync.sync.addresses import normalise_address

REASON_NO_REPLY = "no-reply address"
REASON_MAIL_SYSTEM = "mail system address"
REASON_NOTIFICATIONS = "notification or newsletter address"
REASON_DISTRIBUTION_LIST = "distribution list"
REASON_ROLE = "group or role address"
REASON_MAILING_LIST = "mailing list (List-Id)"
REASON_BULK = "bulk (Precedence)"
REASON_AUTO_SUBMITTED = "auto-submitted"
REASON_AUTO_REPLY = "auto reply"
REASON_DELIVERY_REPORT = "delivery report"
REASON_INVALID = "invalid address"

_NO_REPLY_MARKERS = ("noreply", "donotreply", "dontreply")
_MAIL_SYSTEM = frozenset({"mailerdaemon", "postmaster", "bounce", "bounces", "mailer"})
_NOTIFICATIONS = frozenset(
    {
        "notification",
        "notifications",
        "notify",
        "newsletter",
        "newsletters",
        "news",
        "alert",
        "alerts",
        "updates",
        "digest",
        "automated",
        "autoreply",
        "robot",
    }
)
_ALL_HANDS = frozenset({"all", "everyone", "allstaff", "allhands", "allemployees", "staff"})
_ROLE_WORDS = frozenset(
    {
        "info",
        "information",
        "sales",
        "support",
        "team",
        "hello",
        "hi",
        "contact",
        "contactus",
        "billing",
        "admin",
        "administrator",
        "office",
        "help",
        "helpdesk",
        "service",
        "services",
        "customerservice",
        "customercare",
        "care",
        "accounts",
        "accounting",
        "finance",
        "invoice",
        "invoices",
        "payments",
        "orders",
        "hr",
        "jobs",
        "careers",
        "recruiting",
        "marketing",
        "press",
        "media",
        "pr",
        "enquiries",
        "inquiries",
        "feedback",
        "webmaster",
        "hostmaster",
        "abuse",
        "security",
        "privacy",
        "legal",
        "compliance",
        "reception",
        "frontdesk",
        "mail",
        "it",
        "noc",
        "ops",
        "operations",
        "partners",
        "partner",
        "purchasing",
        "procurement",
        "dept",
        "desk",
        "group",
        "de",
        "uk",
        "us",
        "fr",
        "eu",
    }
)
# Words that only qualify as part of a role address ("sales-de"), never alone ("de@").
_QUALIFIERS = frozenset({"dept", "desk", "de", "uk", "us", "fr", "eu"})
_LIST_HEADERS = ("list-id", "list-unsubscribe", "list-post", "mailing-list", "x-mailing-list")
_AUTO_REPLY_HEADERS = ("x-autoreply", "x-autorespond", "x-auto-reply")
_SEPARATORS = re.compile(r"[.\-_]+")


def strip_plus_tag(address: str) -> str:
    """``anna+crm@x.com`` -> ``anna@x.com``: the mailbox behind a sub-address (RFC 5233).

    Only the part between the first ``+`` and the ``@`` goes; a string that is not an
    address, or a local part that *starts* with ``+``, is returned unchanged.
    """
    local, at, domain = address.rpartition("@")
    if not at:
        return address
    base, plus, _tag = local.partition("+")
    if not plus or not base:
        return address
    return f"{base}@{domain}"


def _local_words(address: str) -> tuple[str, list[str]]:
    local = strip_plus_tag(address).rpartition("@")[0].casefold()
    words = [w for w in _SEPARATORS.split(local) if w]
    return "".join(words), words


def address_reason(address: str) -> str | None:
    """Why an address (raw or normalised) is not a person, from its local part alone."""
    normalised = normalise_address(address)
    if normalised is None:
        return REASON_INVALID
    compact, words = _local_words(normalised)
    if any(marker in compact for marker in _NO_REPLY_MARKERS):
        return REASON_NO_REPLY
    if compact in _MAIL_SYSTEM or (words and words[0] in {"bounce", "bounces"}):
        return REASON_MAIL_SYSTEM
    if compact in _NOTIFICATIONS:
        return REASON_NOTIFICATIONS
    if _is_distribution_list(compact, words):
        return REASON_DISTRIBUTION_LIST
    if _is_role(compact, words):
        return REASON_ROLE
    return None


def _is_distribution_list(compact: str, words: list[str]) -> bool:
    if compact in _ALL_HANDS:
        return True
    return len(words) > 1 and ("dl" in (words[0], words[-1]) or words[0] == "all")


def _is_role(compact: str, words: list[str]) -> bool:
    if compact in _ROLE_WORDS and compact not in _QUALIFIERS:
        return True
    meaningful = [w for w in words if w not in _QUALIFIERS]
    return bool(meaningful) and all(w in _ROLE_WORDS for w in words)


def is_role_address(address: str) -> bool:
    """True for shared mailboxes and distribution lists (``sales@``, ``dl-emea@``)."""
    return address_reason(address) in {REASON_ROLE, REASON_DISTRIBUTION_LIST}


def _header_map(headers: Mapping[str, str]) -> dict[str, str]:
    return {name.strip().casefold(): (value or "").strip() for name, value in headers.items()}


def _tokens(value: str) -> set[str]:
    return {t for t in re.split(r"[\s,;]+", value.casefold()) if t}


def message_reason(message: MailMessage) -> str | None:
    """Why a whole message was written by a machine or sent to a list, from its headers."""
    headers = _header_map(message.headers or {})
    if not headers:
        return None
    if any(headers.get(name) for name in _LIST_HEADERS):
        return REASON_MAILING_LIST
    precedence = headers.get("precedence", "").casefold()
    if precedence in {"bulk", "list", "junk"}:
        return REASON_BULK
    if precedence in {"auto_reply", "auto-reply"}:
        return REASON_AUTO_REPLY
    submitted = headers.get("auto-submitted", "").casefold()
    if submitted and submitted.split(";")[0].strip() != "no":
        return REASON_AUTO_SUBMITTED
    if _tokens(headers.get("x-auto-response-suppress", "")) & {"all", "oof"}:
        return REASON_AUTO_REPLY
    if any(headers.get(name) for name in _AUTO_REPLY_HEADERS):
        return REASON_AUTO_REPLY
    if "multipart/report" in headers.get("content-type", "").casefold():
        return REASON_DELIVERY_REPORT
    if headers.get("return-path", "x").strip() in {"", "<>"}:
        return REASON_DELIVERY_REPORT
    return None


def is_automated(message: MailMessage, address: str) -> str | None:
    """Why ``address``, seen on ``message``, must not become a person contact; None if it may.

    The address rules come first (the most specific reason), then the message's headers.
    See the module docstring for every rule and why it exists.
    """
    return address_reason(address) or message_reason(message)
