"""Which mail folders an account syncs: pure decisions on a listed folder tree (issue #14).

Facts this relies on (docs = microsoftgraph/microsoft-graph-docs-contrib, learn.microsoft.com):

- ``GET /me/mailFolders`` lists only the children of the root ("This operation does not return
  all mail folders in a mailbox, only the child folders of the root folder. To return all mail
  folders in a mailbox, each child folder must be traversed separately"); by default hidden
  folders are left out (``includeHiddenFolders=true`` adds them); the collection "includes any
  mail search folders directly under the root" (docs `api/user-list-mailfolders.md`,
  `api/mailfolder-list-childfolders.md`). A search folder is a ``mailSearchFolder``
  (``@odata.type``): a saved query over other folders, whose mail is synced where it lives.
- Well-known names work in place of ids, whatever the mailbox's language (docs
  `resources/mailfolder.md`, table "Well-known folder names"). Folder ids do not change when a
  folder is renamed or moved: "Containers (mailFolder, calendar) ... their regular IDs were
  already constant" (docs `concepts/outlook-immutable-id.md`), so a folder's delta cursor is
  keyed by its id and a moved folder keeps it.

- Deleted mail lives on in two places: Deleted Items, and Recoverable Items' Deletions
  (``recoverableitemsdeletions``: "The folder that contains soft-deleted items: deleted either
  from the Deleted Items folder, or by pressing shift+delete in Outlook. This folder is not
  visible in any Outlook email client", docs `resources/mailfolder.md`). Found there by its
  immutable id, a message left a synced folder because it was deleted, not filed.

A folder that cannot be found is that folder's problem, in words naming it; the others sync.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace

from m365sync.domain import FolderChoice, MailFolder

# Graph's well-known folder names (docs `resources/mailfolder.md`).
WELL_KNOWN_NAMES = frozenset(
    {
        "archive",
        "clutter",
        "conflicts",
        "conversationhistory",
        "deleteditems",
        "drafts",
        "inbox",
        "junkemail",
        "localfailures",
        "msgfolderroot",
        "outbox",
        "recoverableitemsdeletions",
        "scheduled",
        "searchfolders",
        "sentitems",
        "serverfailures",
        "syncissues",
    }
)

INBOX_SENT: tuple[str, ...] = ("inbox", "sentitems")

# "All mail folders" leaves out these folders and everything under them: trash, spam, unsent
# mail, mail on its way out, and Skype/Teams chat logs.
NOT_MAIL: tuple[str, ...] = (
    "deleteditems",
    "junkemail",
    "drafts",
    "outbox",
    "conversationhistory",
)

NOT_FOUND_ADVICE = (
    "choose the folder again in the account's mail folders (Odoo) or correct "
    "sync.mail_folders (a well-known name such as inbox, a path such as Inbox/Key accounts, "
    "or a folder id from `m365sync folders`)"
)


NONE_CHOSEN = (
    "The account syncs chosen mail folders, but none is chosen: tick folders in the "
    "account's mail folders (Odoo), or choose Inbox and Sent Items or all mail folders."
)


def not_found_sentence(label: str) -> str:
    """What the account's line says for a chosen folder the mailbox does not have."""
    return f"Mail folder '{label}' was not found in the mailbox (deleted or renamed?): " + (
        NOT_FOUND_ADVICE + "."
    )


def with_paths(folders: Iterable[MailFolder]) -> list[MailFolder]:
    """The folders with their display paths, parents before children where known."""
    listed = list(folders)
    by_id = {f.graph_id: f for f in listed}
    paths: dict[str, str] = {}

    def path_of(folder: MailFolder, depth: int = 0) -> str:
        if folder.graph_id in paths:
            return paths[folder.graph_id]
        parent = by_id.get(folder.parent_id or "")
        if parent is None or depth > 64:  # a child of the root (or a loop: never recurse on)
            path = folder.display_name
        else:
            path = f"{path_of(parent, depth + 1)}/{folder.display_name}"
        paths[folder.graph_id] = path
        return path

    return [replace(f, path=path_of(f)) for f in listed]


def path_key(path: str) -> str:
    """Paths compare by their names, case-insensitively, ignoring spaces around ``/``."""
    return "/".join(part.strip().casefold() for part in path.strip().strip("/").split("/"))


# Where deleted mail goes: Deleted Items (and any folder under it) and Recoverable Items.
DELETED: tuple[str, ...] = ("deleteditems", "recoverableitemsdeletions")


def deleted_folder_ids(
    tree: list[MailFolder], well_known: Mapping[str, MailFolder]
) -> frozenset[str]:
    """The folders whose mail was deleted by the person: a message that left a synced folder
    for one of them is unlinked, one that went anywhere else was filed and stays."""
    return frozenset(
        descendants(tree, [well_known[n].graph_id for n in DELETED if n in well_known])
    )


def descendants(tree: list[MailFolder], roots: Iterable[str]) -> set[str]:
    """The ids of ``roots`` and of every folder under them."""
    children: dict[str, list[str]] = {}
    for folder in tree:
        children.setdefault(folder.parent_id or "", []).append(folder.graph_id)
    found: set[str] = set()
    pending = [r for r in roots if r]
    while pending:
        fid = pending.pop()
        if fid in found:
            continue
        found.add(fid)
        pending.extend(children.get(fid, ()))
    return found


@dataclass(slots=True)
class FolderSelection:
    """What to sync: ``folders`` found, ``lookups`` (refs that may be ids of folders the tree
    does not show, such as hidden ones: ask Graph), ``problems`` (label -> sentence)."""

    folders: list[MailFolder] = field(default_factory=list)
    lookups: list[str] = field(default_factory=list)
    problems: dict[str, str] = field(default_factory=dict)


def looks_like_id(ref: str) -> bool:
    """Graph ids are long base64 strings; a short name or a path is never sent as an id."""
    return len(ref) >= 20 and "/" not in ref.strip("/") and " " not in ref


def select_folders(
    tree: list[MailFolder],
    well_known: Mapping[str, MailFolder],
    choice: FolderChoice,
    refs: Iterable[str] = (),
    *,
    include_children: bool = False,
    labels: Mapping[str, str] | None = None,
) -> FolderSelection:
    """The folders ``choice`` means in this mailbox.

    ``tree`` is every listed folder (paths filled, hidden ones absent); ``well_known`` maps the
    well-known names Graph resolved to their folders (a name Graph does not know is absent).
    ``labels`` names chosen ids in sentences (the CRM's last known path of a chosen folder).
    """
    selection = FolderSelection()
    if choice is FolderChoice.ALL:
        excluded = descendants(
            tree,
            [well_known[n].graph_id for n in NOT_MAIL if n in well_known]
            + [f.graph_id for f in tree if f.is_search],
        )
        selection.folders = [f for f in tree if f.graph_id not in excluded]
        return selection
    wanted = INBOX_SENT if choice is FolderChoice.INBOX_SENT else tuple(refs)
    if not wanted:
        selection.problems["mail folders"] = NONE_CHOSEN
        return selection
    by_id = {f.graph_id: f for f in tree}
    by_path = {path_key(f.path or f.display_name): f for f in tree}
    chosen: list[MailFolder] = []
    for ref in wanted:
        folder = _find(ref, by_id, by_path, well_known)
        if folder is not None:
            chosen.append(folder)
        elif looks_like_id(ref) and ref.lower() not in WELL_KNOWN_NAMES:
            selection.lookups.append(ref)
        else:
            label = (labels or {}).get(ref, ref)
            selection.problems[label] = not_found_sentence(label)
    if include_children:
        under = descendants(tree, [f.graph_id for f in chosen])
        chosen += [f for f in tree if f.graph_id in under and not f.is_search]
    selection.folders = unique(chosen)
    return selection


def _find(
    ref: str,
    by_id: Mapping[str, MailFolder],
    by_path: Mapping[str, MailFolder],
    well_known: Mapping[str, MailFolder],
) -> MailFolder | None:
    if ref.lower() in WELL_KNOWN_NAMES:
        found = well_known.get(ref.lower())
        return by_id.get(found.graph_id, found) if found else None
    if ref in by_id:  # ids are case-sensitive
        return by_id[ref]
    return by_path.get(path_key(ref))


def unique(folders: Iterable[MailFolder]) -> list[MailFolder]:
    """Each folder once (by id), in the order first seen."""
    seen: dict[str, MailFolder] = {}
    for folder in folders:
        if folder.is_search:
            continue  # a search folder's mail is synced in the folders that hold it
        seen.setdefault(folder.graph_id, folder)
    return list(seen.values())
