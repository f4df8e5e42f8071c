"""Reads an account's mail folder tree and turns its folder choice into folders to sync.

Per cycle: the tree (every page of every level: ``/me/mailFolders`` then ``childFolders`` of
each folder that has children), one JSON batch resolving the well-known names the choice needs,
and, only for chosen ids the tree does not show (a hidden folder), one more batch. The tree is
handed to the CRM (the account form's folder list, `m365sync folders`), so a folder created in
Outlook appears there, and in "all mail folders", at the next cycle.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from urllib.parse import quote

from m365sync.domain import Account, FolderChoice, MailFolder
from m365sync.errors import GraphError, NotFound
from m365sync.graph.batch import batch_get
from m365sync.graph.client import GraphClient
from m365sync.graph.mail import FOLDER_SELECT, MailDeltaReader, parse_folder
from m365sync.sync.folders import (
    DELETED,
    INBOX_SENT,
    NOT_MAIL,
    WELL_KNOWN_NAMES,
    not_found_sentence,
    select_folders,
    unique,
    with_paths,
)

log = logging.getLogger(__name__)

# Resolved every cycle: the default pair, where deleted mail goes (a removed message found
# there was deleted) and what "all mail folders" leaves out.
ALWAYS_RESOLVED = (*INBOX_SENT, *DELETED, *NOT_MAIL)
# Not knowing these costs only precision (mail deleted with Shift+Delete counts as filed, as
# before), so a refusal of them never fails the cycle.
OPTIONAL = frozenset({"recoverableitemsdeletions"})


@dataclass(frozen=True, slots=True)
class FolderSettings:
    """An account's folder choice, from the account (CRM) or else the configuration."""

    choice: FolderChoice
    refs: tuple[str, ...] = ()
    include_children: bool = False
    labels: Mapping[str, str] = field(default_factory=dict)


def settings_for(
    account: Account,
    config_choice: FolderChoice,
    config_refs: tuple[str, ...],
    include_children: bool,
) -> FolderSettings:
    """The account's own choice wins; an account without one follows the configuration."""
    if account.folder_choice is not None:
        return FolderSettings(
            account.folder_choice,
            account.mail_folders,
            include_children,
            dict(account.mail_folder_labels),
        )
    return FolderSettings(config_choice, config_refs, include_children)


@dataclass(slots=True)
class FolderPlan:
    """The cycle's folders, the problems of chosen folders not found, and what was read."""

    folders: list[MailFolder]
    problems: dict[str, str]
    tree: list[MailFolder]
    well_known: dict[str, MailFolder]

    def well_known_id(self, name: str) -> str | None:
        found = self.well_known.get(name)
        return found.graph_id if found else None


def plan_folders(
    graph: GraphClient, reader: MailDeltaReader, settings: FolderSettings
) -> FolderPlan:
    """Read the tree and the well-known folders, and decide (`sync.folders.select_folders`)."""
    tree = with_paths(reader.folders(recursive=True))
    names = set(ALWAYS_RESOLVED)
    names.update(r.lower() for r in settings.refs if r.lower() in WELL_KNOWN_NAMES)
    well_known = {
        name: folder
        for name, folder in _get_folders(graph, sorted(names), optional=OPTIONAL).items()
        if isinstance(folder, MailFolder)
    }
    selection = select_folders(
        tree,
        well_known,
        settings.choice,
        settings.refs,
        include_children=settings.include_children,
        labels=settings.labels,
    )
    found = _get_folders(graph, selection.lookups) if selection.lookups else {}
    extra: list[MailFolder] = []
    for ref in selection.lookups:
        answer = found.get(ref)
        if isinstance(answer, MailFolder):
            extra.append(answer)
        else:
            label = settings.labels.get(ref, ref)
            selection.problems[label] = not_found_sentence(label)
    return FolderPlan(unique([*selection.folders, *extra]), selection.problems, tree, well_known)


def _get_folders(
    graph: GraphClient, refs: list[str], *, optional: frozenset[str] = frozenset()
) -> dict[str, MailFolder | None]:
    """Each folder by well-known name or id, in JSON batches: a 404 (or a malformed id's 400)
    is None; any other failure raises, since not knowing is not "not found" (an ``optional``
    ref's failure is None too, with a log line)."""
    paths = {ref: f"/me/mailFolders/{quote(ref, safe='')}?$select={FOLDER_SELECT}" for ref in refs}
    answers = batch_get(graph, list(paths.values())) if paths else {}
    result: dict[str, MailFolder | None] = {}
    for ref, path in paths.items():
        answer = answers.get(path)
        if isinstance(answer, dict):
            well_known = ref.lower() if ref.lower() in WELL_KNOWN_NAMES else None
            result[ref] = parse_folder(answer, well_known_name=well_known)
        elif isinstance(answer, NotFound) or (
            isinstance(answer, GraphError) and answer.status == 400
        ):
            result[ref] = None
        elif isinstance(answer, GraphError):
            if ref not in optional:
                raise answer
            log.info("mail folder %s not resolved this cycle: %s", ref, answer)
            result[ref] = None
        else:
            result[ref] = None
    return result
