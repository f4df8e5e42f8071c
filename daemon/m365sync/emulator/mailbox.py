"""One user's mailbox as the emulator holds it: folders, messages, a calendar, and a change log.

Why a change log: Graph's message delta is per folder and must never lose a change, even when
the mailbox changes while a client is in the middle of a round. Every mutation here takes the
next value of one global sequence number and is recorded in the log of each folder it touches
(a move is a removal in one folder and an arrival in the other). A folder's log is a dict kept
in sequence order -- an id is popped and re-inserted on every change -- so "what changed since
sequence W" is a walk from the end. `delta.py` builds rounds from that log.

Messages are Graph `message` resources (plain dicts). A seeded mailbox of 100,000 messages
does not hold 100,000 dicts: `add_lazy_messages` stores an index per message and a source that
builds the resource on demand (see `seed.py`); the first update turns it into a real dict.
`add_raw_message` stores an item exactly as given (malformed on purpose) for tests of clients
that must survive one bad item in a page.

Ids follow Outlook's shapes (base64url of a binary key, case-sensitive) and never change on a
move: the emulator behaves as if every client sent `Prefer: IdType="ImmutableId"`
(docs `concepts/outlook-immutable-id.md`). All public methods take the one re-entrant `lock`.
"""

from __future__ import annotations

import base64
import copy
import hashlib
import html
import json
import re
import threading
import time
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

from m365sync.emulator.calendar import Calendar
from m365sync.emulator.delta import SyncStates

# Well-known folder names Graph accepts in place of ids (docs `resources/mailfolder.md`),
# with the display names Exchange gives them and whether they are hidden.
STANDARD_FOLDERS: tuple[tuple[str, str, bool], ...] = (
    ("archive", "Archive", False),
    ("clutter", "Clutter", True),
    ("conversationhistory", "Conversation History", False),
    ("deleteditems", "Deleted Items", False),
    ("drafts", "Drafts", False),
    ("inbox", "Inbox", False),
    ("junkemail", "Junk Email", False),
    ("outbox", "Outbox", False),
    ("sentitems", "Sent Items", False),
)
ROOT = "msgfolderroot"
# Well-known folders outside the message folder tree ("Top of Information Store"): listing
# /me/mailFolders never shows them, their well-known names still resolve. "searchfolders" is
# the parent of the search folders Outlook defines (EWS calls it the Finder).
OUTSIDE_TREE: tuple[tuple[str, str], ...] = (
    ("searchfolders", "Finder"),
    ("recoverableitemsdeletions", "Deletions"),
)
WELL_KNOWN_NAMES = frozenset(
    [ROOT, *(name for name, _, _ in STANDARD_FOLDERS), *(name for name, _ in OUTSIDE_TREE)]
)
SEARCH_FOLDER_TYPE = "#microsoft.graph.mailSearchFolder"

_ID_CHARS = re.compile(r"^[A-Za-z0-9+/_=-]+$")
_TAG = re.compile(r"<[^>]+>")
_SPACE = re.compile(r"\s+")
_HEAD = re.compile(r"<head>.*?</head>", re.IGNORECASE | re.DOTALL)


def now_iso() -> str:
    """Graph's timestamp form: UTC with a Z and no fraction."""
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def html_to_text(content: str) -> str:
    """A crude HTML-to-text for bodyPreview and `outlook.body-content-type="text"`."""
    text = _HEAD.sub(" ", content)
    text = re.sub(r"<br\s*/?>|</div>|</p>", "\n", text, flags=re.IGNORECASE)
    text = html.unescape(_TAG.sub(" ", text))
    lines = (_SPACE.sub(" ", line).strip() for line in text.splitlines())
    return "\n".join(line for line in lines if line)


def body_preview(body: dict[str, Any] | None) -> str:
    """bodyPreview is the first 255 characters of the body as text (docs `resources/message.md`)."""
    if not isinstance(body, dict):
        return ""
    content = str(body.get("content") or "")
    if str(body.get("contentType", "html")).lower() == "html":
        content = html_to_text(content)
    return _SPACE.sub(" ", content).strip()[:255]


def make_id(key: bytes, kind: int, number: int) -> str:
    """An Outlook-looking id: base64url of a binary entry id (``AAMkA...=`` for items)."""
    prefix = {1: b"\x00\x03\x24\x00", 2: b"\x00\x03\x24\x00", 3: b"\x00\x04\x24\x00"}[kind]
    raw = prefix + key[:16] + bytes([kind]) + number.to_bytes(8, "big")
    return base64.urlsafe_b64encode(raw).decode("ascii")


def make_change_key(key: bytes, version: int) -> str:
    """A changeKey shaped like Exchange's (``CQAAABYAAA...``); it changes on every write."""
    raw = b"\x09\x00\x00\x00\x16\x00\x00\x00" + key[:16] + version.to_bytes(6, "big")
    return base64.b64encode(raw).decode("ascii")


def is_well_formed_id(ref: str) -> bool:
    """Whether `ref` could be an Outlook id; Graph answers 400 ErrorInvalidIdMalformed if not."""
    return len(ref) >= 16 and bool(_ID_CHARS.match(ref))


def default_user() -> dict[str, Any]:
    """The mailbox owner of an empty `Mailbox()`: the docs' demo persona in contoso.com."""
    return {
        "id": "4b9a6c2e-8d1f-4e7a-9c3b-5f2d1e0a7b64",
        "displayName": "Megan Bowen",
        "givenName": "Megan",
        "surname": "Bowen",
        "mail": "MeganB@contoso.com",
        "userPrincipalName": "MeganB@contoso.com",
        "jobTitle": "Marketing Manager",
        "businessPhones": ["+1 412 555 0109"],
        "mobilePhone": "+1 412 555 0110",
        "officeLocation": "12/1110",
        "preferredLanguage": "en-US",
    }


class LazySource(Protocol):
    """Builds seeded messages on demand, so a 100k mailbox costs indexes, not dicts.

    A source may also have ``attachments(index) -> list[dict]`` (attachment resources of a
    planned message); without it, lazy messages have none.
    """

    def materialize(self, index: int) -> dict[str, Any]: ...

    def received(self, index: int) -> str: ...


def make_attachment_id(message_id: str, number: int) -> str:
    """An attachment id shaped like Outlook's: the message's entry id, a tag, a number."""
    try:
        raw = base64.urlsafe_b64decode(message_id + "=" * (-len(message_id) % 4))
    except ValueError:
        raw = hashlib.sha256(message_id.encode()).digest()
    return base64.urlsafe_b64encode(raw + b"\x12\x00\x10\x00" + number.to_bytes(4, "big")).decode(
        "ascii"
    )


@dataclass(frozen=True, slots=True)
class LazyRow:
    """What the mailbox needs to know of a lazy message without building it."""

    id: str
    folder: str
    index: int
    unread: bool
    size: int


class Mailbox:
    """A thread-safe mailbox: standard folders, messages, events and per-folder change logs."""

    def __init__(
        self,
        user: dict[str, Any] | None = None,
        *,
        tenant_id: str | None = None,
        own_domains: Iterable[str] | None = None,
    ) -> None:
        self.lock = threading.RLock()
        self.user: dict[str, Any] = dict(user or default_user())
        self.user.setdefault("id", str(uuid.uuid4()))
        self.tenant_id: str = tenant_id or str(
            uuid.UUID(bytes=hashlib.sha256(b"tenant:" + self._key_of(self.user)).digest()[:16])
        )
        mail = str(self.user.get("mail") or self.user.get("userPrincipalName") or "")
        self.own_domains: frozenset[str] = frozenset(
            d.lower() for d in (own_domains or ([mail.rpartition("@")[2]] if "@" in mail else []))
        )
        self.key = self._key_of(self.user)
        self.sync_states = SyncStates()
        self._seq = 0
        self._counter = 0
        self._folders: dict[str, dict[str, Any]] = {}
        self._wellknown: dict[str, str] = {}
        self._store: dict[str, dict[str, Any] | int] = {}
        self._raw: set[str] = set()
        self._folder_of: dict[str, str] = {}
        self._members: dict[str, dict[str, None]] = {}
        self._log: dict[str, dict[str, tuple[int, int]]] = {}
        self._unread: set[str] = set()
        self._size: dict[str, int] = {}
        self._lazy: LazySource | None = None
        self._attachments: dict[str, list[dict[str, Any]]] = {}
        self.calendar = Calendar(self.key, self.user, self.lock)
        # Sending (send_api.py): what went out, copies on their way to Sent Items, and knobs.
        self._sent: list[dict[str, Any]] = []
        self._in_transit: dict[str, tuple[float, dict[str, Any], list[dict[str, Any]]]] = {}
        self.send_keeps_id = True
        """Whether the Sent Items copy keeps the draft's id (docs `concepts/outlook-immutable-id.md`
        say so; `resources/mail-api-overview.md` excepts "sending a draft message", and
        microsoft-graph-docs#1533 saw a new id). False gives the copy a new id."""
        self.sent_copy_delay = 0.0
        """Seconds before a sent message's copy shows up in Sent Items ("may not succeed
        immediately after sending", docs `concepts/outlook-immutable-id.md`); until then a GET
        of its id answers 404."""
        # getSchedule (schedule.py): other people's busy times by address, and working hours.
        self.free_busy: dict[str, list[dict[str, Any]]] = {}
        self.working_hours: dict[str, Any] = {
            "daysOfWeek": ["monday", "tuesday", "wednesday", "thursday", "friday"],
            "startTime": "08:00:00.0000000",
            "endTime": "17:00:00.0000000",
            "timeZone": {"name": "UTC"},
        }
        self._create_standard_folders()

    # ----------------------------------------------------------------- construction

    @classmethod
    def seeded(cls, size: int = 200, seed: int = 1) -> Mailbox:
        """A deterministic demo mailbox with `size` messages and a calendar (see `seed.py`)."""
        from m365sync.emulator import seed as seed_module

        return seed_module.build_mailbox(size=size, seed=seed)

    @classmethod
    def from_json(cls, path: str | Path) -> Mailbox:
        """A mailbox loaded from a Graph-shaped JSON file (format in `seed.load_document`)."""
        from m365sync.emulator import seed as seed_module

        return seed_module.mailbox_from_document(seed_module.load_document(path), str(path))

    def to_json(self, path: str | Path) -> None:
        """Write the mailbox in the format `from_json` reads (a round trip keeps ids)."""
        from m365sync.emulator import seed as seed_module

        seed_module.write_document(self, path)

    @staticmethod
    def _key_of(user: dict[str, Any]) -> bytes:
        try:
            return uuid.UUID(str(user["id"])).bytes
        except ValueError:
            return hashlib.sha256(str(user["id"]).encode()).digest()[:16]

    def _create_standard_folders(self) -> None:
        root = self._new_folder("Top of Information Store", parent=None, hidden=False)
        self._wellknown[ROOT] = root["id"]
        for name, display, hidden in STANDARD_FOLDERS:
            folder = self._new_folder(display, parent=root["id"], hidden=hidden)
            self._wellknown[name] = folder["id"]
        for name, display in OUTSIDE_TREE:
            folder = self._new_folder(display, parent=None, hidden=False)
            self._wellknown[name] = folder["id"]

    def _new_folder(
        self, display_name: str, *, parent: str | None, hidden: bool, folder_id: str | None = None
    ) -> dict[str, Any]:
        self._counter += 1
        fid = folder_id or make_id(self.key, 2, 1_000_000_000 + self._counter)
        record = {
            "id": fid,
            "displayName": display_name,
            "parentFolderId": parent or make_id(self.key, 2, 999_999_999),
            "isHidden": hidden,
        }
        self._folders[fid] = record
        self._members[fid] = {}
        self._log[fid] = {}
        return record

    # ----------------------------------------------------------------- folders

    def resolve_folder(self, ref: str) -> dict[str, Any] | None:
        """The folder resource for an id (case-sensitive) or well-known name (case-insensitive)."""
        with self.lock:
            fid = self._folder_id(ref)
            return self._folder_resource(fid) if fid else None

    def _folder_id(self, ref: str) -> str | None:
        if ref in self._folders:
            return ref
        return self._wellknown.get(ref.lower())

    def _require_folder(self, ref: str) -> str:
        fid = self._folder_id(ref)
        if fid is None:
            raise KeyError(f"no mail folder {ref!r}")
        return fid

    def _folder_resource(self, fid: str) -> dict[str, Any]:
        record = self._folders[fid]
        members = self._members[fid]
        return {
            "id": fid,
            "displayName": record["displayName"],
            "parentFolderId": record["parentFolderId"],
            "childFolderCount": sum(
                1 for f in self._folders.values() if f["parentFolderId"] == fid
            ),
            "unreadItemCount": sum(1 for mid in members if mid in self._unread),
            "totalItemCount": len(members),
            "sizeInBytes": sum(self._size.get(mid, 0) for mid in members),
            "isHidden": record["isHidden"],
            **copy.deepcopy(record.get("search", {})),
        }

    def folders(self) -> list[dict[str, Any]]:
        """Every folder (the root included) as a mailFolder resource, in creation order."""
        with self.lock:
            return [self._folder_resource(fid) for fid in self._folders]

    def child_folders(self, ref: str) -> list[dict[str, Any]]:
        """The immediate children of a folder (hidden ones included; callers filter)."""
        with self.lock:
            fid = self._require_folder(ref)
            return [
                self._folder_resource(cid)
                for cid, rec in self._folders.items()
                if rec["parentFolderId"] == fid
            ]

    def well_known_name(self, folder_id: str) -> str | None:
        """The well-known name of a folder id, if it has one."""
        with self.lock:
            return next((n for n, fid in self._wellknown.items() if fid == folder_id), None)

    def add_folder(
        self,
        display_name: str,
        parent_ref: str | None = None,
        *,
        hidden: bool = False,
        folder_id: str | None = None,
    ) -> dict[str, Any]:
        """Create a folder under `parent_ref` (default: the root, i.e. a top-level folder)."""
        with self.lock:
            parent = self._require_folder(parent_ref or ROOT)
            for record in self._folders.values():
                same_parent = record["parentFolderId"] == parent
                if same_parent and record["displayName"].lower() == display_name.lower():
                    raise ValueError(f"a folder named {display_name!r} already exists there")
            if folder_id is not None and folder_id in self._folders:
                raise ValueError(f"folder id {folder_id!r} already exists")
            record = self._new_folder(
                display_name, parent=parent, hidden=hidden, folder_id=folder_id
            )
            return self._folder_resource(record["id"])

    def add_search_folder(
        self,
        display_name: str,
        parent_ref: str | None = None,
        *,
        source_folders: list[str],
        filter_query: str,
        include_nested: bool = True,
    ) -> dict[str, Any]:
        """A mailSearchFolder (docs `resources/mailsearchfolder.md`): a saved query over
        ``source_folders``; listed among its parent's children with its ``@odata.type``. It
        holds no messages of its own here."""
        created = self.add_folder(display_name, parent_ref or "searchfolders")
        return self.make_search_folder(
            created["id"],
            source_folders=source_folders,
            filter_query=filter_query,
            include_nested=include_nested,
        )

    def make_search_folder(
        self,
        ref: str,
        *,
        source_folders: list[str],
        filter_query: str,
        include_nested: bool = True,
    ) -> dict[str, Any]:
        """Turn an (empty) folder into a mailSearchFolder (loading one from a JSON file)."""
        with self.lock:
            fid = self._require_folder(ref)
            self._folders[fid]["search"] = {
                "@odata.type": SEARCH_FOLDER_TYPE,
                "isSupported": True,
                "includeNestedFolders": include_nested,
                "sourceFolderIds": [self._require_folder(f) for f in source_folders],
                "filterQuery": filter_query,
            }
            return self._folder_resource(fid)

    def rename_folder(self, ref: str, display_name: str) -> dict[str, Any]:
        """Rename a folder in place (its id does not change)."""
        with self.lock:
            fid = self._require_folder(ref)
            parent = self._folders[fid]["parentFolderId"]
            self._check_free_name(parent, display_name, but=fid)
            self._folders[fid]["displayName"] = display_name
            return self._folder_resource(fid)

    def move_folder(self, ref: str, parent_ref: str) -> dict[str, Any]:
        """Move a folder (and what it holds) under another one; ids do not change, and each
        folder's messages and change log go with it, as in Outlook."""
        with self.lock:
            fid = self._require_folder(ref)
            parent = self._require_folder(parent_ref)
            if fid in self._wellknown.values():
                raise ValueError("a well-known folder cannot be moved")
            if parent in self._subtree(fid):
                raise ValueError("a folder cannot be moved under itself")
            self._check_free_name(parent, self._folders[fid]["displayName"], but=fid)
            self._folders[fid]["parentFolderId"] = parent
            return self._folder_resource(fid)

    def delete_folder(self, ref: str) -> None:
        """Delete a folder for good, with its subfolders and their messages (Outlook's
        "delete permanently"); a delta on it then answers 404."""
        with self.lock:
            fid = self._require_folder(ref)
            if fid in self._wellknown.values():
                raise ValueError("a well-known folder cannot be deleted")
            for gone in self._subtree(fid):
                for mid in list(self._members[gone]):
                    self.delete_message(mid)
                del self._folders[gone]
                del self._members[gone]
                del self._log[gone]

    def _subtree(self, fid: str) -> list[str]:
        found, pending = [], [fid]
        while pending:
            current = pending.pop()
            found.append(current)
            pending.extend(c for c, r in self._folders.items() if r["parentFolderId"] == current)
        return found

    def _check_free_name(self, parent: str, display_name: str, *, but: str) -> None:
        for cid, record in self._folders.items():
            same_place = cid != but and record["parentFolderId"] == parent
            if same_place and record["displayName"].lower() == display_name.lower():
                raise ValueError(f"a folder named {display_name!r} already exists there")

    def rekey_folder(self, old_id: str, new_id: str) -> None:
        """Give a folder another id (to adopt ids from a JSON file); only while it is empty."""
        with self.lock:
            if new_id in self._folders:
                raise ValueError(f"folder id {new_id!r} already exists")
            if self._members[old_id] or self._log[old_id]:
                raise ValueError("only an empty folder can change its id")
            record = self._folders.pop(old_id)
            record["id"] = new_id
            self._folders[new_id] = record
            self._members[new_id] = self._members.pop(old_id)
            self._log[new_id] = self._log.pop(old_id)
            for other in self._folders.values():
                if other["parentFolderId"] == old_id:
                    other["parentFolderId"] = new_id
            for name, fid in list(self._wellknown.items()):
                if fid == old_id:
                    self._wellknown[name] = new_id

    # ----------------------------------------------------------------- change log

    def _touch(self, fid: str, mid: str, *, entered: bool) -> None:
        """Record a change of `mid` in folder `fid`'s log at the next sequence number."""
        self._seq += 1
        log = self._log[fid]
        previous = log.pop(mid, None)
        entered_at = self._seq if entered or previous is None else previous[1]
        log[mid] = (self._seq, entered_at)

    @property
    def sequence(self) -> int:
        """The sequence number of the latest change (a delta round's watermark)."""
        return self._seq

    def changed_since(self, folder_id: str, watermark: int) -> list[str]:
        """Ids whose latest change in the folder has a sequence number above `watermark`,
        oldest change first. Includes ids no longer in the folder (removed since)."""
        with self.lock:
            found: list[str] = []
            for mid, (seq, _entered) in reversed(self._log[folder_id].items()):
                if seq <= watermark:
                    break
                found.append(mid)
            found.reverse()
            return found

    def members_in_change_order(self, folder_id: str) -> list[str]:
        """The ids now in a folder, oldest change first (an initial round's order)."""
        with self.lock:
            members = self._members[folder_id]
            return [mid for mid in self._log[folder_id] if mid in members]

    def presence(self, folder_id: str, mid: str) -> int | None:
        """The sequence number at which `mid` entered the folder, or None if it is not there."""
        with self.lock:
            if mid not in self._members[folder_id]:
                return None
            return self._log[folder_id][mid][1]

    def received_of(self, mid: str) -> str:
        """receivedDateTime of a message without building a lazy one ('' if absent)."""
        with self.lock:
            value = self._store[mid]
            if isinstance(value, int):
                assert self._lazy is not None
                return self._lazy.received(value)
            return str(value.get("receivedDateTime") or "")

    def is_raw(self, mid: str) -> bool:
        """Whether the item was stored raw (returned exactly as stored)."""
        with self.lock:
            return mid in self._raw

    def view(self, mid: str) -> dict[str, Any]:
        """The stored resource without a copy: callers hold `lock` and must not mutate it."""
        with self.lock:
            value = self._store[mid]
            if isinstance(value, int):
                assert self._lazy is not None
                return self._lazy.materialize(value)
            return value

    def listing_view(self, mid: str) -> dict[str, Any]:
        """The fields a listing filters and sorts on (id, received, sent, hasAttachments): a
        planned message not built yet answers them without being built (callers hold `lock`)."""
        with self.lock:
            value = self._store[mid]
            if isinstance(value, int):
                assert self._lazy is not None
                return self._lazy.light(value)
            return value

    # ----------------------------------------------------------------- messages

    def _next_item_id(self) -> str:
        while True:
            self._counter += 1
            mid = make_id(self.key, 1, self._counter)
            if mid not in self._store:
                return mid

    def _stamp(self, message: dict[str, Any]) -> None:
        """Give the message a new changeKey, etag and lastModifiedDateTime."""
        change_key = make_change_key(self.key, self._seq + 1)
        message["changeKey"] = change_key
        message["@odata.etag"] = f'W/"{change_key}"'
        message["lastModifiedDateTime"] = now_iso()

    def _fill(self, fid: str, message: dict[str, Any]) -> dict[str, Any]:
        """Fill what Graph fills on a message resource; keep what the caller gave."""
        mid = message.get("id") or self._next_item_id()
        created = message.get("createdDateTime") or now_iso()
        received = message.get("receivedDateTime") or created
        body = message.get("body") or {"contentType": "html", "content": ""}
        is_draft = message.get("isDraft", fid == self._wellknown.get("drafts"))
        sender = message.get("sender") or message.get("from")
        conversation = message.get("conversationId") or make_id(
            self.key, 3, int.from_bytes(hashlib.sha256(mid.encode()).digest()[:6], "big")
        )
        filled: dict[str, Any] = {
            "@odata.etag": "",
            "id": mid,
            "createdDateTime": created,
            "lastModifiedDateTime": message.get("lastModifiedDateTime") or created,
            "changeKey": "",
            "categories": [],
            "receivedDateTime": received,
            "sentDateTime": message.get("sentDateTime") or received,
            "hasAttachments": False,
            "internetMessageId": "<"
            + hashlib.sha256(mid.encode()).hexdigest()[:24].upper()
            + "@DM6PR11MB4107.namprd11.prod.outlook.com>",
            "subject": "",
            "bodyPreview": body_preview(body),
            "importance": "normal",
            "parentFolderId": fid,
            "conversationId": conversation,
            "conversationIndex": base64.b64encode(
                b"\x01" + hashlib.sha256(conversation.encode()).digest()[:21]
            ).decode("ascii"),
            "isDeliveryReceiptRequested": False,
            "isReadReceiptRequested": False,
            "isRead": bool(is_draft),
            "isDraft": bool(is_draft),
            "webLink": "https://outlook.office365.com/owa/?ItemID="
            + mid.replace("=", "%3D")
            + "&exvsurl=1&viewmodel=ReadMessageItem",
            "inferenceClassification": "focused",
            "body": body,
            "sender": sender,
            "from": message.get("from") or sender,
            "toRecipients": [],
            "ccRecipients": [],
            "bccRecipients": [],
            "replyTo": [],
            "flag": {"flagStatus": "notFlagged"},
        }
        for name, value in message.items():
            if name not in ("parentFolderId", "@odata.etag", "changeKey"):
                filled[name] = copy.deepcopy(value)
        if message.get("changeKey"):
            filled["changeKey"] = message["changeKey"]
            filled["@odata.etag"] = f'W/"{message["changeKey"]}"'
        else:
            change_key = make_change_key(self.key, self._seq + 1)
            filled["changeKey"] = change_key
            filled["@odata.etag"] = f'W/"{change_key}"'
        filled["parentFolderId"] = fid
        if filled.get("sender") is None:
            filled.pop("sender")
        if filled.get("from") is None:
            filled.pop("from")
        return filled

    def _insert(
        self, fid: str, mid: str, value: dict[str, Any] | int, *, unread: bool, size: int
    ) -> None:
        if mid in self._store:
            raise ValueError(f"a message with id {mid!r} already exists")
        self._store[mid] = value
        self._folder_of[mid] = fid
        self._members[fid][mid] = None
        self._size[mid] = size
        if unread:
            self._unread.add(mid)
        self._touch(fid, mid, entered=True)

    def add_message(self, folder_ref: str, message: dict[str, Any]) -> dict[str, Any]:
        """Store a message in a folder, filling id, changeKey, etag, dates, conversationId,
        internetMessageId and parentFolderId as Graph does; returns a copy of the resource."""
        with self.lock:
            fid = self._require_folder(folder_ref)
            message = dict(message)
            attachments = message.pop("attachments", None)
            if isinstance(attachments, list) and "hasAttachments" not in message:
                # hasAttachments does not count inline attachments (by design, see graph_api)
                message["hasAttachments"] = any(
                    isinstance(a, dict) and not a.get("isInline") for a in attachments
                )
            filled = self._fill(fid, message)
            size = len(json.dumps(filled, ensure_ascii=False).encode("utf-8"))
            self._insert(fid, filled["id"], filled, unread=not filled.get("isRead"), size=size)
            if isinstance(attachments, list):
                self._attachments[filled["id"]] = [
                    self._attachment(filled["id"], number, a)
                    for number, a in enumerate(attachments, start=1)
                    if isinstance(a, dict)
                ]
            return copy.deepcopy(filled)

    def add_raw_message(self, folder_ref: str, raw: dict[str, Any]) -> str:
        """Store an item exactly as given (malformed allowed); an id is added if absent."""
        with self.lock:
            fid = self._require_folder(folder_ref)
            stored = copy.deepcopy(raw) if isinstance(raw, dict) else {"value": raw}
            mid = stored.get("id") if isinstance(stored.get("id"), str) else None
            if not mid:
                mid = self._next_item_id()
                stored["id"] = mid
            self._insert(fid, mid, stored, unread=False, size=len(repr(stored)))
            self._raw.add(mid)
            return mid

    def add_lazy_messages(self, source: LazySource, rows: Iterable[LazyRow]) -> int:
        """Register messages that `source` builds on demand (used by the seed generator)."""
        with self.lock:
            if self._lazy is not None and self._lazy is not source:
                raise ValueError("a mailbox takes one lazy source")
            self._lazy = source
            count = 0
            for row in rows:
                self._insert(row.folder, row.id, row.index, unread=row.unread, size=row.size)
                count += 1
            return count

    def _materialized(self, mid: str) -> dict[str, Any]:
        value = self._store.get(mid)
        if value is None:
            raise KeyError(f"no message {mid!r}")
        if isinstance(value, int):
            assert self._lazy is not None
            value = self._lazy.materialize(value)
            self._store[mid] = value
        return value

    def get_message(self, mid: str) -> dict[str, Any]:
        """A copy of the message resource; KeyError if there is none."""
        with self.lock:
            if mid not in self._store:
                raise KeyError(f"no message {mid!r}")
            return copy.deepcopy(self.view(mid))

    def folder_of(self, mid: str) -> str:
        """The id of the folder holding a message."""
        with self.lock:
            return self._folder_of[mid]

    def update_message(self, mid: str, changes: dict[str, Any]) -> dict[str, Any]:
        """Apply top-level property changes (not id); the message gets a new changeKey."""
        with self.lock:
            message = self._materialized(mid)
            for name, value in changes.items():
                if name not in ("id", "parentFolderId"):
                    message[name] = copy.deepcopy(value)
            if mid not in self._raw:
                if "body" in changes and "bodyPreview" not in changes:
                    message["bodyPreview"] = body_preview(message.get("body"))
                self._stamp(message)
                if message.get("isRead"):
                    self._unread.discard(mid)
                else:
                    self._unread.add(mid)
            self._touch(self._folder_of[mid], mid, entered=False)
            return copy.deepcopy(message)

    def move_message(self, mid: str, folder_ref: str) -> dict[str, Any]:
        """Move a message; its (immutable) id is kept. The source folder's delta reports it
        removed, the target folder's delta reports it added."""
        with self.lock:
            target = self._require_folder(folder_ref)
            message = self._materialized(mid)
            source = self._folder_of[mid]
            if source == target:
                return copy.deepcopy(message)
            del self._members[source][mid]
            self._touch(source, mid, entered=False)
            self._members[target][mid] = None
            self._folder_of[mid] = target
            if mid not in self._raw:
                message["parentFolderId"] = target
                self._stamp(message)
            self._touch(target, mid, entered=True)
            return copy.deepcopy(message)

    def delete_message(self, mid: str) -> None:
        """Delete a message for good (Graph's DELETE moves to Deleted Items; use move_message
        for that). Its folder's delta reports it removed."""
        with self.lock:
            if mid not in self._store:
                raise KeyError(f"no message {mid!r}")
            fid = self._folder_of.pop(mid)
            del self._store[mid]
            del self._members[fid][mid]
            self._size.pop(mid, None)
            self._unread.discard(mid)
            self._raw.discard(mid)
            self._attachments.pop(mid, None)
            self._touch(fid, mid, entered=False)

    def message_ids_in(self, folder_ref: str) -> list[str]:
        """Ids of the messages in a folder, in the order they were stored."""
        with self.lock:
            return list(self._members[self._require_folder(folder_ref)])

    def tree_folder_ids(self) -> list[str]:
        """The folders of the message folder tree: the root and every folder under it, hidden
        ones (Clutter) included; not the well-known folders outside it (`OUTSIDE_TREE`:
        Recoverable Items, the search folders' parent) nor anything under those."""
        with self.lock:
            return self._subtree(self._wellknown[ROOT])

    def message_ids_in_tree(self) -> list[str]:
        """Ids of the messages in the message folder tree (`tree_folder_ids`): what ``GET
        /me/messages`` lists, folder by folder, each in stored order."""
        with self.lock:
            return [mid for fid in self.tree_folder_ids() for mid in self._members[fid]]

    def messages_in(self, folder_ref: str) -> list[dict[str, Any]]:
        """Copies of the messages in a folder (builds lazy ones; fine for tests and exports)."""
        with self.lock:
            return [copy.deepcopy(self.view(mid)) for mid in self.message_ids_in(folder_ref)]

    def iter_messages(self) -> Iterator[tuple[str, dict[str, Any], bool]]:
        """(folder id, resource, raw?) for every message, without copies. The caller holds
        `lock` for the whole iteration (a generator must not own a lock it may never release)."""
        for fid, members in self._members.items():
            for mid in list(members):
                yield fid, self.view(mid), mid in self._raw

    def message_count(self) -> int:
        """How many messages the mailbox holds."""
        with self.lock:
            return len(self._store)

    # ----------------------------------------------------------------- attachments

    def _attachment(self, mid: str, number: int, given: dict[str, Any]) -> dict[str, Any]:
        """Fill what Graph fills on an attachment resource; keep what the caller gave."""
        kind = str(given.get("@odata.type") or "#microsoft.graph.fileAttachment")
        if not kind.startswith("#"):
            kind = "#" + kind
        filled: dict[str, Any] = {
            "@odata.type": kind,
            "id": given.get("id") or make_attachment_id(mid, number),
            "lastModifiedDateTime": given.get("lastModifiedDateTime") or now_iso(),
            "name": given.get("name"),
            "contentType": given.get("contentType"),
            "size": int(given.get("size") or 0),
            "isInline": bool(given.get("isInline", False)),
        }
        if kind == "#microsoft.graph.fileAttachment":
            filled["contentId"] = given.get("contentId")
            filled["contentLocation"] = given.get("contentLocation")
        for name, value in given.items():
            if name not in filled:
                filled[name] = copy.deepcopy(value)
        return filled

    def attachments(self, mid: str) -> list[dict[str, Any]]:
        """Copies of a message's attachment resources (base and derived properties, without
        ``contentBytes`` unless one was given); KeyError if there is no such message."""
        with self.lock:
            if mid not in self._store:
                raise KeyError(f"no message {mid!r}")
            if mid in self._attachments:
                return copy.deepcopy(self._attachments[mid])
            value = self._store[mid]
            lazy = getattr(self._lazy, "attachments", None)
            if isinstance(value, int) and lazy is not None:
                return [
                    self._attachment(mid, number, a)
                    for number, a in enumerate(lazy(value), start=1)
                ]
            return []

    def add_attachment(self, mid: str, attachment: dict[str, Any]) -> dict[str, Any]:
        """Attach to a stored message (fills id, type, dates). A non-inline attachment sets
        hasAttachments, which is a change of the message (new changeKey, seen by delta)."""
        with self.lock:
            current = self.attachments(mid)
            filled = self._attachment(mid, len(current) + 1, attachment)
            self._attachments[mid] = [*current, filled]
            if not filled["isInline"] and not self.view(mid).get("hasAttachments"):
                self.update_message(mid, {"hasAttachments": True})
            return copy.deepcopy(filled)

    # ----------------------------------------------------------------- drafts and sending

    def owner_recipient(self) -> dict[str, Any]:
        """The mailbox owner as a recipient (the from/sender of what it sends)."""
        address = self.user.get("mail") or self.user.get("userPrincipalName")
        return {"emailAddress": {"name": self.user.get("displayName"), "address": address}}

    def create_draft(self, message: dict[str, Any], folder_ref: str = "drafts") -> dict[str, Any]:
        """Store a new draft (isDraft and isRead true; unless given, from/sender are filled
        only when it is sent, as Graph's documented answer shows) with any attachments given
        inline; returns a copy of the resource."""
        with self.lock:
            given = {k: v for k, v in message.items() if k != "id"}
            given.update(isDraft=True, isRead=True)
            return self.add_message(folder_ref, given)

    def send_draft(self, mid: str, *, kind: str = "send", in_reply_to: str | None = None) -> dict:
        """Send a stored draft: it leaves its folder and its copy lands in Sent Items (isDraft
        false, sentDateTime now, from/sender the owner), with the same id unless
        `send_keeps_id` is off. Returns the sent-log record. KeyError if `mid` is no draft."""
        with self.lock:
            self.settle_sends()
            if mid not in self._store or mid in self._raw:
                raise KeyError(f"no draft {mid!r}")
            message = copy.deepcopy(self._materialized(mid))
            if not message.get("isDraft"):
                raise KeyError(f"{mid!r} is not a draft")
            attachments = self.attachments(mid)
            self.delete_message(mid)
            if not self.send_keeps_id:
                message.pop("id", None)
                attachments = [{k: v for k, v in a.items() if k != "id"} for a in attachments]
            return self._deliver(
                message, attachments, kind=kind, draft_id=mid, save=True, in_reply_to=in_reply_to
            )

    def send_new(
        self,
        message: dict[str, Any],
        *,
        kind: str = "sendMail",
        save: bool = True,
        in_reply_to: str | None = None,
    ) -> dict[str, Any]:
        """Send a message at once (sendMail, reply): its copy lands in Sent Items unless
        `save` is false. Returns the sent-log record."""
        with self.lock:
            message = {k: v for k, v in message.items() if k != "id"}
            attachments = [a for a in message.pop("attachments", None) or [] if isinstance(a, dict)]
            if attachments and "hasAttachments" not in message:
                message["hasAttachments"] = any(not a.get("isInline") for a in attachments)
            return self._deliver(
                message, attachments, kind=kind, draft_id=None, save=save, in_reply_to=in_reply_to
            )

    def _deliver(
        self,
        message: dict[str, Any],
        attachments: list[dict[str, Any]],
        *,
        kind: str,
        draft_id: str | None,
        save: bool,
        in_reply_to: str | None,
    ) -> dict[str, Any]:
        stamp = now_iso()
        for name in ("@odata.etag", "changeKey", "parentFolderId", "lastModifiedDateTime"):
            message.pop(name, None)
        message.update(isDraft=False, isRead=True, sentDateTime=stamp, receivedDateTime=stamp)
        for name in ("from", "sender"):
            if not message.get(name):
                message[name] = self.owner_recipient()
        sent_folder = self._wellknown["sentitems"]
        if save and self.sent_copy_delay <= 0:
            filled = self.add_message(sent_folder, {**message, "attachments": attachments})
        else:
            filled = self._fill(sent_folder, message)
            if save:
                due = time.monotonic() + self.sent_copy_delay
                self._in_transit[filled["id"]] = (due, filled, attachments)
        record = {
            "kind": kind,
            "id": filled["id"] if save else None,
            "draftId": draft_id,
            "inReplyTo": in_reply_to,
            "internetMessageId": filled.get("internetMessageId"),
            "conversationId": filled.get("conversationId"),
            "subject": filled.get("subject"),
            "from": copy.deepcopy(filled.get("from")),
            "toRecipients": copy.deepcopy(filled.get("toRecipients") or []),
            "ccRecipients": copy.deepcopy(filled.get("ccRecipients") or []),
            "bccRecipients": copy.deepcopy(filled.get("bccRecipients") or []),
            "recipients": [
                str((r.get("emailAddress") or {}).get("address"))
                for field in ("toRecipients", "ccRecipients", "bccRecipients")
                for r in filled.get(field) or []
                if isinstance(r, dict)
            ],
            "internetMessageHeaders": copy.deepcopy(filled.get("internetMessageHeaders") or []),
            "body": copy.deepcopy(filled.get("body")),
            "attachments": [
                {
                    "name": a.get("name"),
                    "contentType": a.get("contentType"),
                    "size": int(a.get("size") or 0),
                    "isInline": bool(a.get("isInline", False)),
                }
                for a in attachments
            ],
            "sentDateTime": stamp,
            "savedToSentItems": save,
        }
        self._sent.append(record)
        return copy.deepcopy(record)

    def settle_sends(self) -> int:
        """Put the copies whose `sent_copy_delay` has passed into Sent Items (delta sees them
        then); returns how many. Graph calls this before answering each request."""
        with self.lock:
            if not self._in_transit:
                return 0
            now = time.monotonic()
            due = [mid for mid, (at, _, _) in self._in_transit.items() if at <= now]
            for mid in due:
                _, message, attachments = self._in_transit.pop(mid)
                for name in ("@odata.etag", "changeKey", "parentFolderId"):
                    message.pop(name, None)
                self.add_message("sentitems", {**message, "attachments": attachments})
            return len(due)

    def sent(self) -> list[dict[str, Any]]:
        """What was sent, oldest first: kind (send, sendMail, reply), id (of the Sent Items
        copy, None if not saved), draftId, internetMessageId, conversationId, subject,
        from, to/cc/bcc and the flat ``recipients`` addresses, internetMessageHeaders, body,
        attachments (name, contentType, size, isInline), sentDateTime, savedToSentItems."""
        with self.lock:
            self.settle_sends()
            return copy.deepcopy(self._sent)

    def clear_sent(self) -> None:
        """Forget the sent log (the Sent Items copies stay)."""
        with self.lock:
            self._sent.clear()

    # ----------------------------------------------------------------- calendar and states

    def add_event(self, event: dict[str, Any]) -> dict[str, Any]:
        """Store a calendar event resource (single, series master, or an exception of a master
        added before); ids and changeKeys are kept. See `Calendar.add_event`."""
        return self.calendar.add_event(event)

    def events(self) -> list[dict[str, Any]]:
        """Copies of the calendar as stored: single events and series masters (start/end in
        their own zones; masters list ``cancelledOccurrences``), then exceptions."""
        return self.calendar.export()

    def drop_sync_states(self) -> int:
        """Forget every delta/next link: the next use of any answers 410 SyncStateNotFound."""
        with self.lock:
            return self.sync_states.drop() + self.calendar.sync_states.drop()
