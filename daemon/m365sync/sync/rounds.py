"""Full rounds: which delta pages list a whole folder, and what a completed one reconciles.

A delta round that starts without a cursor (the first sync of a folder, or again after a 410
``SyncStateNotFound``) lists every message of the folder within the initial window; Graph
reports no deletions in it, so a message deleted while the cursor was lost shows only by its
absence. The rule, in three parts:

* every page of a full round lists what it holds (`round_mark`), and the store marks the
  account's links to the folder among them as seen by the round;
* only when the round completes (its last page, the one with the delta link) are the links
  the round did not see looked at, in the same page write as the delta link, so an
  interrupted round (crash, kill, a failure half-way) reconciles nothing: the next attempt
  resumes it from its stored next link, or starts a new round after another 410;
* an unseen id is asked of Graph before anything goes (`settle_unlisted`): gone or in a
  folder of deleted mail (Deleted Items, under it, Recoverable Items) is removed (this
  folder's link; the message only with its last link, as for any removal), elsewhere in the
  mailbox is moved (archived mail stays, as for a delta removal), and still in this very
  folder is kept: the round missed it, which proves nothing.

Pure: plain data in, plain data out.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime

from m365sync.domain import Cursor, DeltaPage, RoundMark


def listed_ids(page: DeltaPage) -> tuple[str, ...]:
    """Every id a page lists as present: stored, skipped or malformed alike (a stored message
    now skipped, or unreadable this time, is still in the folder and must not go)."""
    ids = [message.graph_id for message in page.messages]
    ids += [item.graph_id for item in page.rejected if item.graph_id]
    return tuple(dict.fromkeys(ids))


def round_mark(
    resumed_from: Cursor | None, page: DeltaPage, since: datetime | None
) -> RoundMark | None:
    """The round mark of ``page``, fetched from ``resumed_from`` (None: the round's start).

    None for a page of a round of changes (from a delta link, or from a next link of such a
    round): its removals are reported by Graph and nothing is reconciled.
    """
    if resumed_from is not None and not resumed_from.full_round:
        return None
    return RoundMark(
        starts=resumed_from is None,
        since=since if resumed_from is None else None,
        listed_ids=listed_ids(page),
        completes=page.delta_link is not None,
    )


def still_open(mark: RoundMark | None) -> bool:
    """Whether the cursor stored with a page continues a full round (`Cursor.full_round`)."""
    return mark is not None and not mark.completes


def to_check(unlisted: Iterable[str], mark: RoundMark) -> list[str]:
    """The ids the completing round did not see: the store's unlisted ids of the round's
    earlier pages, less what its last page lists (not yet marked when the store was asked)."""
    return sorted(set(unlisted) - set(mark.listed_ids))


@dataclass(slots=True)
class Reconciliation:
    """What a completed round does with the ids it did not list."""

    removed: list[str] = field(default_factory=list)
    moved: dict[str, str] = field(default_factory=dict)
    kept: list[str] = field(default_factory=list)


def settle_unlisted(
    where: Mapping[str, str | None], folder_id: str, deleted_folders: Collection[str]
) -> Reconciliation:
    """Split unlisted ids by where Graph says each lives now (``None``: not found).

    Gone or in a folder of deleted mail (`sync.folders.deleted_folder_ids`): removed. In
    another folder: moved there (kept in the CRM, as archived mail is). Still in this folder:
    kept, for the round only failed to list it.
    """
    result = Reconciliation()
    for graph_id, now_in in sorted(where.items()):
        if now_in is None or now_in in deleted_folders:
            result.removed.append(graph_id)
        elif now_in == folder_id:
            result.kept.append(graph_id)
        else:
            result.moved[graph_id] = now_in
    return result
