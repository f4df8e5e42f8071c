"""The deterministic demo mailbox, the CRM truth that goes with it, and Graph-shaped JSON I/O.

Why lazy: 100,000 seeded messages as dicts would cost hundreds of megabytes. `build_mailbox`
plans every message as a small tuple (thread, position, folder, sender, recipients, time,
flags) and registers it with the mailbox through `SeedSource`, which builds the Graph resource
only when someone reads it. The same (size, seed, anchor) always gives the same mailbox.

What is in it: Megan Bowen <MeganB@contoso.com> (tenant contoso.com) corresponding with
colleagues, with contacts at several companies and at public mail providers; threads with
replies (shared conversationId, "RE:" subjects, inbox/sent items alternating, quoted history);
internal-only mail; odd addresses (upper case, plus tags, an IDN domain, a display name with a
comma, no display name); bulk senders with List-Id / Precedence headers; a few drafts;
attachments (metadata of files with deterministic names, an occasional attached message,
and signature logos as inline images -- which, as in Outlook, do not set hasAttachments);
receivedDateTime over the two years before `anchor` (default: today, 00:00 UTC,
so a "last 90 days" window is meaningful). And a calendar with single events, recurring series
in several time zones, an all-day event and a private one.

JSON format (`load_document` / `write_document`): ``{"user": {...}, "tenantId": "...",
"ownDomains": [...], "mailFolders": [mailFolder...], "messages": [message...],
"rawMessages": [{"folder": id, "message": {...}}], "events": [event...]}``. A message names its
folder by ``parentFolderId`` or by ``"folder": "<well-known name or id>"``, and may carry
``"attachments": [attachment...]`` as ``$expand=attachments`` returns them; a bare Graph
collection response ``{"value": [...]}`` is read as messages. A file that is not such a
document (not UTF-8, not JSON, not an object, an item Graph would refuse, a string that is not
text) raises `MailboxFileError`, one sentence naming the file and the item.
"""

from __future__ import annotations

import base64
import hashlib
import json
import random
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from m365sync.emulator.calendar import CalendarError, parse_local, zone
from m365sync.emulator.mailbox import (
    ROOT,
    SEARCH_FOLDER_TYPE,
    LazyRow,
    Mailbox,
    body_preview,
    default_user,
    make_change_key,
    make_id,
)
from m365sync.emulator.seed_calendar import build_events
from m365sync.emulator.seed_cast import (
    BULK_LOCAL_PARTS,
    COMPANIES,
    DAYS,
    EXCHANGE_HOSTS,
    EXTERNAL_SUBJECTS,
    INTERNAL_SUBJECTS,
    MONTHS,
    OWNER,
    PUBLIC_PROVIDERS,
    SENTENCES,
    THINGS,
    Person,
    default_anchor,
    esc,
    iso,
    people_for,
    recipient,
)

SEED_MAX_SIZE = 1_000_000  # messages a seeded mailbox may hold

# Spec tuple fields (a tuple, not an object, to keep 100k of them small).
T_THREAD, T_POS, T_FOLDER, T_SENDER, T_TO, T_CC, T_TIME, T_FLAGS = range(8)
F_ATTACH, F_READ, F_HIGH, F_FLAGGED = 1, 2, 4, 8

# ------------------------------------------------------------------------ the plan


class SeedSource:
    """Plans a seeded mailbox and builds each message resource on demand."""

    def __init__(
        self,
        mailbox: Mailbox,
        size: int,
        seed: int,
        anchor: datetime,
        user_folders: dict[str, str] | None = None,
    ) -> None:
        self.seed = seed
        self.key = mailbox.key
        self.folder_ids = {name: mailbox.resolve_folder(name)["id"] for name in _FOLDERS}  # type: ignore[index]
        # Folders a salesperson files mail into (key -> id): see `_filed`.
        self.folder_ids.update(user_folders or {})
        self.people = people_for(mailbox.user)
        self.threads: list[tuple[str, str]] = []  # (kind, subject)
        self.specs: list[tuple[Any, ...]] = []
        self.anchor = int(anchor.timestamp())
        self._plan(size)

    # planning -------------------------------------------------------------------

    def _indexes(self, kind: str) -> list[int]:
        return [i for i, p in enumerate(self.people) if p.kind == kind]

    def _plan(self, size: int) -> None:
        rng = random.Random(self.seed)
        colleagues = self._indexes("colleague")
        externals = self._indexes("external")
        publics = self._indexes("public")
        bulks = self._indexes("bulk")
        drafts = min(3, max(1, size // 50)) if size >= 10 else 0
        two_years = 730 * 86400
        while len(self.specs) < size - drafts:
            kind = rng.choices(("external", "public", "internal", "bulk"), (55, 12, 18, 15))[0]
            start = self.anchor - rng.randint(3600, two_years)
            if kind == "bulk":
                sender = rng.choice(bulks)
                subject = self._bulk_subject(sender, start, rng)
                folder = "junkemail" if rng.random() < 0.1 else "inbox"
                self._add(subject, kind, [(folder, sender, (OWNER,), (), start, 0)], rng)
                continue
            if kind == "internal":
                contact = rng.choice(colleagues)
                cc = tuple(rng.sample([c for c in colleagues if c != contact], rng.randint(0, 2)))
                subject = rng.choice(INTERNAL_SUBJECTS)
            else:
                contact = rng.choice(externals if kind == "external" else publics)
                cc = (rng.choice(colleagues),) if rng.random() < 0.25 else ()
                subject = rng.choice(EXTERNAL_SUBJECTS)
            person = self.people[contact]
            company = COMPANIES[person.company].name if person.company >= 0 else "Contoso"
            subject = subject.format(
                company=company,
                thing=rng.choice(THINGS),
                name=person.name or person.address,
                month=MONTHS[rng.randrange(12)],
            )
            length = rng.choices((1, 2, 3, 4, 5), (35, 30, 18, 10, 7))[0]
            incoming = rng.random() < 0.7
            when = start
            plan = []
            for _ in range(length):
                if incoming:
                    folder = "archive" if rng.random() < 0.04 else "inbox"
                    plan.append((folder, contact, (OWNER,), cc, when, 0))
                else:
                    plan.append(("sentitems", OWNER, (contact,), cc, when, 0))
                incoming = not incoming
                when = min(when + rng.randint(600, 3 * 86400), self.anchor - 60)
            self._add(subject, kind, plan[: size - drafts - len(self.specs)], rng)
        for _ in range(drafts):
            contact = rng.choice(externals)
            when = self.anchor - rng.randint(600, 5 * 86400)
            subject = (
                f"Draft: {rng.choice(THINGS)} for {COMPANIES[self.people[contact].company].name}"
            )
            self._add(subject, "draft", [("drafts", OWNER, (contact,), (), when, 0)], rng)

    def _bulk_subject(self, sender: int, start: int, rng: random.Random) -> str:
        month = MONTHS[datetime.fromtimestamp(start, UTC).month - 1]
        subjects = (
            f"Northwind Traders Newsletter - {month} edition",
            "You have late tasks!",
            f"Join us at Fabrikam Connect ({month})",
            rng.choice(("Scheduled maintenance this weekend", "Password expiry reminder")),
        )
        return subjects[self._indexes("bulk").index(sender) % len(subjects)]

    def _add(
        self, subject: str, kind: str, plan: list[tuple[Any, ...]], rng: random.Random
    ) -> None:
        thread = len(self.threads)
        self.threads.append((kind, subject))
        for pos, (planned, sender, to, cc, when, _) in enumerate(plan):
            folder = self._filed(planned, kind, thread)
            flags = 0
            if kind != "bulk" and rng.random() < 0.12:
                flags |= F_ATTACH
            outgoing = sender == OWNER
            recent = self.anchor - when < 14 * 86400
            if outgoing or rng.random() < (0.5 if recent else 0.95):
                flags |= F_READ
            if rng.random() < 0.05:
                flags |= F_HIGH
            if kind != "bulk" and rng.random() < 0.04:
                flags |= F_FLAGGED
            self.specs.append((thread, pos, folder, sender, tuple(to), tuple(cc), when, flags))

    def _filed(self, folder: str, kind: str, thread: int) -> str:
        """Where the owner filed a received message: some customer threads in Inbox/Key
        accounts, some newsletters in Inbox/Newsletters (no random draw, so the plan of a
        seed stays what it was; only the folder changes)."""
        if folder != "inbox":
            return folder
        if kind == "external" and thread % 7 == 3 and "keyaccounts" in self.folder_ids:
            return "keyaccounts"
        if kind == "bulk" and thread % 5 == 1 and "newsletters" in self.folder_ids:
            return "newsletters"
        return folder

    def rows(self) -> list[LazyRow]:
        """What the mailbox stores per planned message."""
        rows = []
        for index, spec in enumerate(self.specs):
            size = 1800 + 60 * spec[T_POS] + (48_000 if spec[T_FLAGS] & F_ATTACH else 0)
            rows.append(
                LazyRow(
                    id=make_id(self.key, 1, index + 1),
                    folder=self.folder_ids[spec[T_FOLDER]],
                    index=index,
                    unread=not spec[T_FLAGS] & F_READ,
                    size=size,
                )
            )
        return rows

    # building ------------------------------------------------------------------

    def received(self, index: int) -> str:
        """receivedDateTime of a planned message, without building it."""
        return iso(self.specs[index][T_TIME])

    def _sentence(self, index: int) -> str:
        rng = random.Random(self.seed * 1_000_003 + index)
        return rng.choice(SENTENCES).format(thing=rng.choice(THINGS), day=rng.choice(DAYS))

    def _message_id(self, index: int, sender: Person) -> str:
        digest = hashlib.sha256(f"{self.seed}:{index}".encode()).hexdigest().upper()
        domain = sender.address.rpartition("@")[2].lower()
        if domain == "gmail.com":
            token = base64.b64encode(bytes.fromhex(digest[:36])).decode()
            return f"<CA+{token}@mail.gmail.com>"
        if domain in PUBLIC_PROVIDERS and domain not in ("outlook.com", "hotmail.com"):
            return f"<{int(digest[:8], 16)}.{int(digest[8:14], 16)}@{domain}>"
        if sender.kind == "bulk":
            return f"<{digest[:32].lower()}@{domain}>"
        host = EXCHANGE_HOSTS[int(digest[-2:], 16) % len(EXCHANGE_HOSTS)]
        region = "eurprd04" if domain.endswith(".de") else "namprd11"
        return f"<{host}{digest[:12]}@{host}.{region}.prod.outlook.com>"

    def _body(self, index: int, spec: tuple[Any, ...], subject: str) -> str:
        sender = self.people[spec[T_SENDER]]
        first_to = self.people[spec[T_TO][0]] if spec[T_TO] else sender
        greeting = (first_to.name or first_to.address).split(",")[-1].split()[0]
        signature = (sender.name or sender.address).split(",")[-1].split()[0]
        if sender.kind == "bulk":
            text = f"<div>{esc(subject)}</div><div>Unsubscribe: https://{sender.address.split('@')[1]}/u</div>"
        else:
            text = (
                f"<div>Hi {esc(greeting)},</div><div>{esc(self._sentence(index))}</div>"
                f"<div>Best regards,<br>{esc(signature)}</div>"
            )
        quote = ""
        if spec[T_POS] > 0:
            before = self.specs[index - 1]
            previous = self.people[before[T_SENDER]]
            quote = (
                '<hr style="display:inline-block;width:98%"><div id="divRplyFwdMsg">'
                f"<b>From:</b> {esc(previous.name or previous.address)} "
                f"&lt;{esc(previous.address)}&gt;<br><b>Sent:</b> {iso(before[T_TIME])}<br>"
                f"<b>Subject:</b> {esc(self._subject(index - 1))}</div>"
                f"<div>{esc(self._sentence(index - 1))}</div>"
            )
        return (
            '<html><head><meta http-equiv="Content-Type" content="text/html; charset=utf-8">'
            f"</head><body>{text}{quote}</body></html>"
        )

    def _subject(self, index: int) -> str:
        spec = self.specs[index]
        _kind, subject = self.threads[spec[T_THREAD]]
        return f"RE: {subject}" if spec[T_POS] > 0 else subject

    def materialize(self, index: int) -> dict[str, Any]:
        """The Graph message resource of a planned message."""
        spec = self.specs[index]
        thread, pos, folder, sender_no, to, cc, when, flags = spec
        kind, _ = self.threads[thread]
        sender = self.people[sender_no]
        mid = make_id(self.key, 1, index + 1)
        change_key = make_change_key(self.key, index + 1)
        subject = self._subject(index)
        body = {"contentType": "html", "content": self._body(index, spec, subject)}
        conversation = make_id(self.key, 3, thread + 1)
        sent = when - 2 if folder != "drafts" else when
        message: dict[str, Any] = {
            "@odata.etag": f'W/"{change_key}"',
            "id": mid,
            "createdDateTime": iso(when),
            "lastModifiedDateTime": iso(when + 5),
            "changeKey": change_key,
            "categories": ["Customer"] if kind == "external" and flags & F_FLAGGED else [],
            "receivedDateTime": iso(when),
            "sentDateTime": iso(sent),
            "hasAttachments": bool(flags & F_ATTACH),
            "internetMessageId": self._message_id(index, sender),
            "subject": subject,
            "bodyPreview": body_preview(body),
            "importance": "high" if flags & F_HIGH else "normal",
            "parentFolderId": self.folder_ids[folder],
            "conversationId": conversation,
            "conversationIndex": base64.b64encode(
                hashlib.sha256(conversation.encode()).digest()[:22] + b"\x00" * 5 * pos
            ).decode(),
            "isDeliveryReceiptRequested": False,
            "isReadReceiptRequested": False,
            "isRead": bool(flags & F_READ),
            "isDraft": folder == "drafts",
            "webLink": "https://outlook.office365.com/owa/?ItemID="
            + mid.replace("=", "%3D")
            + "&exvsurl=1&viewmodel=ReadMessageItem",
            "inferenceClassification": "other" if kind == "bulk" else "focused",
            "body": body,
            "sender": recipient(sender),
            "from": recipient(sender),
            "toRecipients": [recipient(self.people[p]) for p in to],
            "ccRecipients": [recipient(self.people[p]) for p in cc],
            "bccRecipients": [],
            "replyTo": [],
            "flag": {"flagStatus": "flagged" if flags & F_FLAGGED else "notFlagged"},
        }
        if sender.kind == "bulk":
            headers = [{"name": "Precedence", "value": "bulk"}]
            if sender.list_id:
                headers.append({"name": "List-Id", "value": sender.list_id})
            headers.append({"name": "List-Unsubscribe", "value": f"<mailto:{sender.address}>"})
            message["internetMessageHeaders"] = headers
        return message

    def light(self, index: int) -> dict[str, Any]:
        """What a folder listing filters and sorts on (`materialize`'s values), without
        building the message: listing a large folder would otherwise build all of it."""
        folder, when, flags = self.specs[index][2], self.specs[index][6], self.specs[index][7]
        sent = when - 2 if folder != "drafts" else when
        return {
            "id": make_id(self.key, 1, index + 1),
            "receivedDateTime": iso(when),
            "sentDateTime": iso(sent),
            "hasAttachments": bool(flags & F_ATTACH),
        }

    def attachments(self, index: int) -> list[dict[str, Any]]:
        """Attachment resources of a planned message (metadata; no contentBytes).

        Messages flagged with attachments get one to three files (and now and then an
        attached message); about a third of external senders' mail carries their signature
        logo as an inline image, which leaves hasAttachments alone (docs: inline attachments
        are part of the body; a Microsoft docs writer in aspnet-snippets-sample#13).
        Deterministic per (seed, index), independent of the planning random stream.
        """
        spec = self.specs[index]
        sender = self.people[spec[T_SENDER]]
        rng = random.Random(self.seed * 7_000_003 + index)
        when = spec[T_TIME]
        found: list[dict[str, Any]] = []
        if spec[T_FLAGS] & F_ATTACH:
            moment = datetime.fromtimestamp(when, UTC)
            company = COMPANIES[sender.company].name if sender.company >= 0 else "Contoso"
            for _ in range(rng.choices((1, 2, 3), (60, 30, 10))[0]):
                name, kind, low, high = rng.choice(_FILES)
                found.append(
                    {
                        "@odata.type": "#microsoft.graph.fileAttachment",
                        "name": name.format(
                            year=moment.year,
                            quarter=(moment.month - 1) // 3 + 1,
                            company=company.split(",")[0],
                            number=1000 + index,
                        ),
                        "contentType": kind,
                        "size": rng.randint(low, high),
                        "isInline": False,
                        "lastModifiedDateTime": iso(when - 30),
                    }
                )
            if rng.random() < 0.1:
                found.append(
                    {
                        "@odata.type": "#microsoft.graph.itemAttachment",
                        "name": self._subject(index).removeprefix("RE: "),
                        "contentType": None,  # "Returned as null by default" (itemAttachment)
                        "size": rng.randint(8_000, 60_000),
                        "isInline": False,
                        "lastModifiedDateTime": iso(when - 30),
                    }
                )
        if sender.kind == "external" and rng.random() < 0.35:
            found.append(
                {
                    "@odata.type": "#microsoft.graph.fileAttachment",
                    "name": "image001.png",
                    "contentType": "image/png",
                    "size": rng.randint(3_000, 12_000),
                    "isInline": True,
                    "contentId": f"image001.png@01DA{index:04X}.5E0F7A30",
                    "lastModifiedDateTime": iso(when - 30),
                }
            )
        return found


_FOLDERS = ("inbox", "sentitems", "drafts", "archive", "junkemail")
_DOCX = "application/vnd.openxmlformats-officedocument.wordprocessingml.document"
_XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
#: (name pattern, contentType, smallest, largest size in bytes)
_FILES: tuple[tuple[str, str, int, int], ...] = (
    ("Quote-{year}-Q{quarter}.pdf", "application/pdf", 40_000, 400_000),
    ("Proposal - {company}.docx", _DOCX, 25_000, 250_000),
    ("Price list {year}.xlsx", _XLSX, 15_000, 90_000),
    ("Invoice {number}.pdf", "application/pdf", 30_000, 120_000),
    ("Signed contract.pdf", "application/pdf", 150_000, 2_500_000),
    ("Meeting notes.docx", _DOCX, 12_000, 60_000),
    ("Site photos.zip", "application/zip", 1_500_000, 9_000_000),
    ("IMG_2041.jpg", "image/jpeg", 800_000, 3_200_000),
    ("Shipping schedule.csv", "text/csv", 2_000, 20_000),
)


# ------------------------------------------------------------------------ entry points


def build_mailbox(size: int = 200, seed: int = 1, anchor: datetime | None = None) -> Mailbox:
    """A seeded mailbox: deterministic for (size, seed, anchor); built lazily."""
    if not 0 <= size <= SEED_MAX_SIZE:
        raise ValueError(f"size must be between 0 and {SEED_MAX_SIZE:,} messages")
    anchor = anchor or default_anchor()
    user = default_user()
    digest = hashlib.sha256(f"m365sync-emulator:{seed}".encode()).digest()
    user["id"] = str(uuid.UUID(bytes=digest[:16], version=4))
    tenant = str(uuid.UUID(bytes=digest[16:32], version=4))
    mailbox = Mailbox(user, tenant_id=tenant, own_domains=["contoso.com"])
    inbox = mailbox.resolve_folder("inbox")["id"]  # type: ignore[index]
    customers = mailbox.add_folder("Customers")
    mailbox.add_folder("Projects")
    mailbox.add_folder("Receipts")
    newsletters = mailbox.add_folder("Newsletters", inbox)
    key_accounts = mailbox.add_folder("Key accounts", inbox)
    mailbox.add_folder("Fabrikam", customers["id"])
    # A search folder as in Microsoft's list-mailFolders example (a mailSearchFolder under
    # the Inbox); "all mail folders" must leave it out, its mail lives in the Inbox.
    mailbox.add_search_folder(
        "Weekly digests",
        inbox,
        source_folders=[inbox],
        filter_query="contains(subject, 'weekly digest')",
    )
    source = SeedSource(
        mailbox,
        size,
        seed,
        anchor,
        {"keyaccounts": key_accounts["id"], "newsletters": newsletters["id"]},
    )
    mailbox.add_lazy_messages(source, source.rows())
    for event in build_events(mailbox.key, source.people, anchor):
        mailbox.add_event(event)
    return mailbox


def _domain(address: str) -> str:
    return address.rpartition("@")[2].lower()


def _is_bulk(address: str, message: dict[str, Any]) -> bool:
    local = address.partition("@")[0].lower()
    if any(local.startswith(prefix) for prefix in BULK_LOCAL_PARTS):
        return True
    for header in message.get("internetMessageHeaders") or []:
        name = str(header.get("name", "")).lower()
        value = str(header.get("value", "")).lower()
        if name == "list-id" or (name == "precedence" and value in ("bulk", "list", "junk")):
            return True
    return False


def crm_contacts(mailbox: Mailbox) -> list[dict[str, Any]]:
    """External people in the mailbox (not own domains, not bulk senders), with their company:
    name, email (as first seen), company, company_domain, website. People at public mail
    providers have company None. The demo pre-populates the CRM with some of these."""
    known = {c.domain: c for c in COMPANIES}
    own = {d.lower() for d in mailbox.own_domains}
    found: dict[str, dict[str, Any]] = {}
    with mailbox.lock:
        for _fid, message, raw in mailbox.iter_messages():
            if raw:
                continue
            parties = [message.get("from"), message.get("sender")]
            for field in ("toRecipients", "ccRecipients"):
                parties += message.get(field) or []
            for party in parties:
                address_info = (party or {}).get("emailAddress") or {}
                address = str(address_info.get("address") or "")
                domain = _domain(address)
                if "@" not in address or domain in own or address.lower() in found:
                    continue
                if _is_bulk(address, message):
                    continue
                name = str(address_info.get("name") or "")
                company = known.get(domain)
                public = domain in PUBLIC_PROVIDERS
                found[address.lower()] = {
                    "name": "" if name.lower() == address.lower() else name,
                    "email": address,
                    "company": None
                    if public
                    else (company.name if company else domain.split(".")[0].title()),
                    "company_domain": None if public else domain,
                    "website": None
                    if public
                    else (company.website if company else f"https://www.{domain}"),
                }
    return sorted(found.values(), key=lambda c: (c["company"] or "~", c["email"].lower()))


# ------------------------------------------------------------------------ JSON files


class MailboxFileError(ValueError):
    """A mailbox file that cannot be loaded; the message is one sentence naming the file, what
    is wrong (the item, when one is) and what to do."""


_FORMAT = (
    'give a JSON object such as {"messages": [...], "events": [...]} '
    "(the format `Mailbox.to_json` writes)"
)
_SECTIONS = ("mailFolders", "messages", "rawMessages", "events")
# What adding a malformed item raises: a refusal of that item, never a crash of the loader.
_REFUSALS = (ValueError, TypeError, KeyError, AttributeError, RecursionError, CalendarError)


def _json_kind(value: Any) -> str:
    kinds = {dict: "an object", list: "an array", str: "a string", bool: "a boolean"}
    if value is None:
        return "null"
    return kinds.get(type(value), "a number")


def load_document(path: str | Path) -> dict[str, Any]:
    """Read a mailbox document; a bare ``{"value": [...]}`` is read as its messages."""
    name = repr(str(path))
    try:
        with open(path, encoding="utf-8") as handle:
            text = handle.read()
    except FileNotFoundError:
        raise MailboxFileError(f"Mailbox file {name} does not exist: check the path.") from None
    except OSError as exc:
        raise MailboxFileError(
            f"Mailbox file {name} cannot be read ({exc.strerror}): check the path and its "
            "permissions."
        ) from None
    except UnicodeDecodeError:
        raise MailboxFileError(
            f"Mailbox file {name} is not UTF-8 text (a binary file?): {_FORMAT}."
        ) from None
    if not text.strip():
        raise MailboxFileError(f"Mailbox file {name} is empty: {_FORMAT}.")
    try:
        document = json.loads(text)
    except json.JSONDecodeError as exc:
        ends = " (it ends too early: truncated?)" if exc.pos >= len(text.rstrip()) else ""
        raise MailboxFileError(
            f"Mailbox file {name} is not valid JSON ({exc.msg}: line {exc.lineno}, column "
            f"{exc.colno}){ends}: {_FORMAT}."
        ) from None
    except RecursionError:
        raise MailboxFileError(
            f"Mailbox file {name} is nested too deeply to be a mailbox: {_FORMAT}."
        ) from None
    except ValueError as exc:  # e.g. an integer past Python's digit limit
        raise MailboxFileError(
            f"Mailbox file {name} is not usable JSON ({exc}): {_FORMAT}."
        ) from None
    if not isinstance(document, dict):
        raise MailboxFileError(
            f"Mailbox file {name} holds {_json_kind(document)} where an object is expected: "
            f"{_FORMAT}."
        )
    if "value" in document and "messages" not in document:
        document = {"messages": document["value"]}
    messages = document.get("messages")
    if isinstance(messages, dict):
        document["messages"] = messages.get("value", [])
    for section in _SECTIONS:
        if not isinstance(document.get(section) or [], list):
            raise MailboxFileError(
                f"Mailbox file {name}: {section} is {_json_kind(document[section])}, not an "
                f"array: {_FORMAT}."
            )
    try:
        where = _not_text(document)
    except RecursionError:
        raise MailboxFileError(
            f"Mailbox file {name} is nested too deeply to be a mailbox: {_FORMAT}."
        ) from None
    if where:
        raise MailboxFileError(
            f"Mailbox file {name}: {where} holds an unpaired UTF-16 surrogate (an escape such as "
            "\\ud800 without its pair), which is not text: correct or remove it."
        )
    return document


def _encodes(value: Any) -> bool:
    try:
        json.dumps(value, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _not_text(document: dict[str, Any]) -> str | None:
    """Where the document holds a string UTF-8 cannot encode (a lone surrogate), or None."""
    if _encodes(document):
        return None
    for key, value in document.items():
        if not _encodes(key):
            return "a key"
        if isinstance(value, list):
            for index, item in enumerate(value):
                if not _encodes(item):
                    return f"{key}[{index}]"
        elif not _encodes(value):
            return key
    return "a string"


def _why(error: Exception) -> str:
    """An item's refusal in words (the emulator's own messages are already sentences)."""
    if isinstance(error, RecursionError):
        return "it is nested too deeply"
    if isinstance(error, CalendarError):
        return error.message.removeprefix("Your request can't be completed. ").rstrip(".")
    if isinstance(error, KeyError) and error.args and isinstance(error.args[0], str):
        return error.args[0]
    if isinstance(error, TypeError | AttributeError):
        return f"a field has the wrong type: {error}"
    return str(error).rstrip(".")


def _label(item: dict[str, Any]) -> str:
    title = item.get("subject") or item.get("displayName") or item.get("id")
    return f" ({str(title)[:60]!r})" if isinstance(title, str) and title else ""


def _adopt_folders(mailbox: Mailbox, folders: list[dict[str, Any]]) -> None:
    """Create the document's folders, reusing standard ones matched by well-known name."""
    pending = list(folders)
    rename: dict[str, str] = {}
    while pending:
        progressed = False
        for folder in list(pending):
            fid = folder.get("id")
            wellknown = str(folder.get("wellKnownName") or "").lower()
            standard = mailbox.resolve_folder(wellknown) if wellknown else None
            if standard is not None:
                if fid and fid != standard["id"]:
                    mailbox.rekey_folder(standard["id"], fid)
                pending.remove(folder)
                progressed = True
                continue
            parent = folder.get("parentFolderId")
            parent = rename.get(parent, parent)
            if (
                parent
                and mailbox.resolve_folder(parent) is None
                and any(f.get("id") == parent for f in pending)
            ):
                continue  # its parent comes later
            if not parent or mailbox.resolve_folder(parent) is None:
                parent = ROOT
            mailbox.add_folder(
                str(folder.get("displayName") or fid),
                parent,
                hidden=bool(folder.get("isHidden")),
                folder_id=fid,
            )
            pending.remove(folder)
            progressed = True
        if not progressed:
            raise ValueError("mailFolders has a parent cycle")
    for folder in folders:  # search folders once every folder they search exists
        if folder.get("@odata.type") == SEARCH_FOLDER_TYPE and folder.get("id"):
            mailbox.make_search_folder(
                str(folder["id"]),
                source_folders=[
                    rename.get(f, f)
                    for f in folder.get("sourceFolderIds") or []
                    if mailbox.resolve_folder(rename.get(f, f)) is not None
                ],
                filter_query=str(folder.get("filterQuery") or ""),
                include_nested=bool(folder.get("includeNestedFolders", True)),
            )


def mailbox_from_document(
    document: dict[str, Any], source: str = "the mailbox document"
) -> Mailbox:
    """Build a mailbox from a loaded document (see the module docstring for the format).

    An item the emulator refuses raises `MailboxFileError` naming ``source`` and the item."""

    def refuse(where: str, error: Exception) -> MailboxFileError:
        return MailboxFileError(
            f"Mailbox file {source!r}: {where} is refused ({_why(error)}): correct or remove it."
        )

    for key, kind in (("user", dict), ("tenantId", str), ("ownDomains", list)):
        value = document.get(key)
        if value is not None and not isinstance(value, kind):
            raise refuse(key, ValueError(f"it is {_json_kind(value)}, not {_json_kind(kind())}"))
    try:
        mailbox = Mailbox(
            document.get("user"),
            tenant_id=document.get("tenantId"),
            own_domains=document.get("ownDomains"),
        )
        _adopt_folders(mailbox, list(document.get("mailFolders") or []))
    except (ValueError, TypeError, KeyError, AttributeError) as exc:
        raise refuse("the user or mailFolders", exc) from None

    def add_message(item: dict[str, Any]) -> None:
        item = dict(item)
        ref = item.pop("folder", None) or item.get("parentFolderId") or "inbox"
        if mailbox.resolve_folder(ref) is None:
            raise ValueError(f"it names an unknown folder {ref!r}")
        mailbox.add_message(ref, item)

    def add_event(item: dict[str, Any]) -> None:
        for key in ("start", "end"):
            value = item.get(key)
            if not isinstance(value, dict):
                continue  # the calendar says what is missing
            if zone(value.get("timeZone")) is None:
                raise ValueError(
                    f"its {key}.timeZone {value.get('timeZone')!r} is not a time zone: give an "
                    "IANA or Windows zone name"
                )
            try:
                parse_local(value.get("dateTime"))
            except (TypeError, ValueError):
                raise ValueError(
                    f"its {key}.dateTime {value.get('dateTime')!r} is not a date and time: give "
                    "one such as 2026-12-01T10:00:00"
                ) from None
        mailbox.add_event(item)

    adders = {
        "messages": add_message,
        "rawMessages": lambda entry: mailbox.add_raw_message(
            entry.get("folder") or "inbox", entry.get("message")
        ),
        "events": add_event,
    }
    for section, add in adders.items():
        for index, item in enumerate(document.get(section) or []):
            where = f"{section}[{index}]"
            if not isinstance(item, dict):
                raise refuse(where, ValueError(f"it is {_json_kind(item)}, not an object"))
            try:
                add(item)
            except _REFUSALS as exc:
                raise refuse(where + _label(item), exc) from None
    return mailbox


def write_document(mailbox: Mailbox, path: str | Path) -> None:
    """Write a mailbox as a document, streaming messages so 100k never sit in memory at once."""
    with mailbox.lock, open(path, "w", encoding="utf-8") as handle:
        folders = []
        for folder in mailbox.folders():
            record = {k: folder[k] for k in ("id", "displayName", "parentFolderId", "isHidden")}
            if folder.get("@odata.type") == SEARCH_FOLDER_TYPE:
                record = {"@odata.type": SEARCH_FOLDER_TYPE, **record}
                for key in ("sourceFolderIds", "filterQuery", "includeNestedFolders"):
                    record[key] = folder[key]
            name = mailbox.well_known_name(folder["id"])
            if name:
                record["wellKnownName"] = name
            folders.append(record)
        head = {
            "user": mailbox.user,
            "tenantId": mailbox.tenant_id,
            "ownDomains": sorted(mailbox.own_domains),
            "mailFolders": folders,
        }
        handle.write(json.dumps(head, ensure_ascii=False, indent=1)[:-2] + ',\n "messages": [')
        raws = []
        first = True
        for fid, message, raw in mailbox.iter_messages():
            if raw:
                raws.append({"folder": fid, "message": message})
                continue
            attachments = mailbox.attachments(message["id"])
            if attachments:
                message = {**message, "attachments": attachments}
            handle.write(("\n  " if first else ",\n  ") + json.dumps(message, ensure_ascii=False))
            first = False
        handle.write('\n ],\n "rawMessages": ' + json.dumps(raws, ensure_ascii=False))
        handle.write(',\n "events": ' + json.dumps(mailbox.events(), ensure_ascii=False) + "\n}\n")
