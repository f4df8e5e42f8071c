"""The emulator's mail folder tree as Graph serves it (issue #14, point 2).

From Microsoft's documentation: `/me/mailFolders` lists the root's children only, ten per
page by default with an @odata.nextLink (docs `api/user-list-mailfolders.md`); childFolders
the same way (`api/mailfolder-list-childfolders.md`); hidden folders only with
``includeHiddenFolders=true``; a mailSearchFolder carries its ``@odata.type``; well-known names
resolve in place of ids whatever the folder's place (`resources/mailfolder.md`); folder ids
stay when a folder is renamed or moved (`concepts/outlook-immutable-id.md`).
"""

from __future__ import annotations

from urllib.parse import urlsplit

from m365sync.emulator.mailbox import Mailbox
from tests.emulator.test_graph_mail import client_for


def follow(client, url: str) -> list[dict]:
    """Every item of a collection, following @odata.nextLink; asserts pages of at most 10."""
    items: list[dict] = []
    while url:
        page = client.get(url).json
        assert len(page["value"]) <= 10
        items += page["value"]
        link = page.get("@odata.nextLink")
        url = urlsplit(link).path + "?" + urlsplit(link).query if link else ""
    return items


def test_child_folders_page_by_ten_and_hidden_ones_only_when_asked() -> None:
    mailbox = Mailbox()
    parent = mailbox.add_folder("Regions")
    for n in range(13):
        mailbox.add_folder(f"Region {n:02d}", parent["id"])
    mailbox.add_folder("Secret", parent["id"], hidden=True)
    client = client_for(mailbox)

    first = client.get(f"/v1.0/me/mailFolders/{parent['id']}/childFolders").json
    assert len(first["value"]) == 10 and "@odata.nextLink" in first
    listed = follow(client, f"/v1.0/me/mailFolders/{parent['id']}/childFolders")
    assert [f["displayName"] for f in listed] == [f"Region {n:02d}" for n in range(13)]
    with_hidden = follow(
        client, f"/v1.0/me/mailFolders/{parent['id']}/childFolders?includeHiddenFolders=true"
    )
    assert len(with_hidden) == 14 and with_hidden[-1]["isHidden"] is True
    assert client.get(f"/v1.0/me/mailFolders/{parent['id']}").json["childFolderCount"] == 14


def test_well_known_folders_outside_the_tree_resolve_but_are_not_listed() -> None:
    mailbox = Mailbox()
    client = client_for(mailbox)
    listed = follow(client, "/v1.0/me/mailFolders?includeHiddenFolders=true")
    names = {f["displayName"] for f in listed}
    for well_known in ("searchfolders", "recoverableitemsdeletions"):
        folder = client.get(f"/v1.0/me/mailFolders/{well_known}").json
        assert folder["id"] and folder["displayName"] not in names
    for well_known in ("inbox", "ARCHIVE", "deletedItems", "conversationhistory", "msgfolderroot"):
        assert client.get(f"/v1.0/me/mailFolders/{well_known}").status_code == 200


def test_a_moved_and_renamed_folder_keeps_its_id_and_its_delta() -> None:
    mailbox = Mailbox()
    projects = mailbox.add_folder("Projects")
    mailbox.add_message(projects["id"], {"subject": "Kick-off"})
    client = client_for(mailbox)
    url = f"/v1.0/me/mailFolders/{projects['id']}/messages/delta"
    page = client.get(url).json
    assert [m["subject"] for m in page["value"]] == ["Kick-off"]
    delta = urlsplit(page["@odata.deltaLink"])

    mailbox.move_folder(projects["id"], "inbox")
    mailbox.rename_folder(projects["id"], "Projects 2026")

    moved = client.get(f"/v1.0/me/mailFolders/{projects['id']}").json
    assert moved["parentFolderId"] == mailbox.resolve_folder("inbox")["id"]
    assert moved["displayName"] == "Projects 2026"
    assert client.get(f"{delta.path}?{delta.query}").json["value"] == []  # nothing changed


def test_a_deleted_folder_answers_404() -> None:
    mailbox = Mailbox()
    projects = mailbox.add_folder("Projects")
    child = mailbox.add_folder("Old", projects["id"])
    mailbox.add_message(child["id"], {"subject": "Gone with it"})
    client = client_for(mailbox)

    mailbox.delete_folder(projects["id"])

    for fid in (projects["id"], child["id"]):
        answer = client.get(f"/v1.0/me/mailFolders/{fid}/messages/delta")
        assert answer.status_code == 404
        assert answer.json["error"]["code"] == "ErrorItemNotFound"
    assert mailbox.message_count() == 0


def test_the_demo_mailbox_files_mail_in_user_folders() -> None:
    mailbox = Mailbox.seeded(size=2000, seed=1)
    by_name = {f["displayName"]: f for f in mailbox.folders()}
    assert by_name["Key accounts"]["totalItemCount"] > 20
    assert by_name["Newsletters"]["totalItemCount"] > 10
    inbox = mailbox.resolve_folder("inbox")["id"]
    assert by_name["Key accounts"]["parentFolderId"] == inbox
    digests = by_name["Weekly digests"]
    assert digests["@odata.type"] == "#microsoft.graph.mailSearchFolder"
    assert digests["totalItemCount"] == 0 and digests["sourceFolderIds"] == [inbox]
