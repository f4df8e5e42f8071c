"""The emulator's answers have the shape of Microsoft's documented examples.

Each file in docs_examples/ is a response body copied from microsoft-graph-docs-contrib, with a
"_source" naming the page, the commit read and the section. The comparison is structural: every
field of the documented example must be in the emulator's answer with the same JSON type
(recursively; a list's items are compared with the documented item they resemble most). Values
are not compared. Fields the emulator adds beyond a (shortened) example are listed per test, so
any drift shows up as a failing test rather than passing unnoticed.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from werkzeug.test import Client
from werkzeug.wrappers import Request, Response

from m365sync.emulator import graph_api
from m365sync.emulator.mailbox import Mailbox

EXAMPLES = Path(__file__).parent / "docs_examples"
SCOPES = frozenset(["User.Read", "Mail.Read"])
SELECT = "$select=subject,sender,isRead"


def example(name: str) -> tuple[dict[str, Any], set[str]]:
    """The documented body (metadata removed) and the paths of known errors in the docs."""
    document = json.loads((EXAMPLES / name).read_text(encoding="utf-8"))
    assert "_source" in document and document["_source"]["commit"]
    known = set(document.get("_known_doc_errors", {}))
    return {k: v for k, v in document.items() if not k.startswith("_")}, known


def kind(value: Any) -> str:
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    return {str: "string", list: "array", dict: "object", type(None): "null"}[type(value)]


def differences(
    doc: Any, got: Any, path: str = "$", known: frozenset[str] = frozenset()
) -> list[str]:
    """Where `got` lacks a documented field or has another JSON type."""
    if path in known:
        return []
    if kind(doc) != kind(got):
        return [f"{path}: documented {kind(doc)}, emulator {kind(got)}"]
    if isinstance(doc, dict):
        found: list[str] = []
        for name, value in doc.items():
            if name not in got:
                found.append(f"{path}.{name}: missing")
            else:
                found += differences(value, got[name], f"{path}.{name}", known)
        return found
    if isinstance(doc, list) and doc:
        found = []
        for item in got:
            candidates = [differences(d, item, f"{path}[]", known) for d in doc]
            found += min(candidates, key=len)
        return found
    return []


def extras(doc: dict[str, Any], got: dict[str, Any]) -> set[str]:
    return set(got) - set(doc)


@pytest.fixture(scope="module")
def mailbox() -> Mailbox:
    return Mailbox.seeded(50, seed=4)


@pytest.fixture(scope="module")
def client(mailbox: Mailbox) -> Client:
    @Request.application
    def app(request: Request) -> Response:
        return graph_api.handle(request, mailbox, scopes=SCOPES, public_base="https://graph.test")

    return Client(app)


def test_user_get(client: Client) -> None:
    doc, known = example("user_get.json")
    got = client.get("/v1.0/me").json
    assert differences(doc, got, known=frozenset(known)) == []
    assert extras(doc, got) == {"@odata.context"}  # real /me answers carry it; the example is cut


def test_list_mail_folders(client: Client) -> None:
    doc, known = example("list_mailfolders.json")
    got = client.get("/v1.0/me/mailFolders").json
    assert differences(doc, got, known=frozenset(known)) == []
    assert extras(doc, got) == {"@odata.nextLink"}  # 11 visible folders, default page of 10
    # v1.0's mailFolder has no sizeInBytes (beta only): the items are the docs' shape exactly.
    assert extras(doc["value"][0], got["value"][0]) == set()


def test_list_child_folders_with_hidden(client: Client, mailbox: Mailbox) -> None:
    doc, known = example("list_childfolders_hidden.json")
    mailbox.add_folder("Clutters", "inbox", hidden=True)
    got = client.get("/v1.0/me/mailFolders/inbox/childFolders?includeHiddenFolders=true").json
    assert differences(doc, got, known=frozenset(known)) == []
    assert {f["isHidden"] for f in got["value"]} == {True, False}
    assert extras(doc, got) == {"@odata.context"}


def test_get_mail_folder(client: Client) -> None:
    doc, known = example("mailfolder_get.json")
    got = client.get("/v1.0/me/mailFolders/inbox").json
    assert differences(doc, got, known=frozenset(known)) == []
    assert extras(doc, got) == {"@odata.context", "isHidden"}


def test_message_delta_pages(client: Client) -> None:
    headers = {"Prefer": "odata.maxpagesize=2"}
    first = client.get(f"/v1.0/me/mailFolders/inbox/messages/delta?{SELECT}", headers=headers).json
    doc, known = example("message_delta_first_page.json")
    assert differences(doc, first, known=frozenset(known)) == []
    assert extras(doc, first) == set()
    assert all(extras(doc["value"][0], item) == set() for item in first["value"])
    page = first
    while "@odata.nextLink" in page:
        page = client.get(page["@odata.nextLink"], headers=headers).json
    doc, known = example("message_delta_last_page.json")
    assert differences(doc, page, known=frozenset(known)) == []
    assert extras(doc, page) == set()


def test_message_delta_next_round(client: Client, mailbox: Mailbox) -> None:
    folder = mailbox.add_folder("Shapes")
    sender = {"emailAddress": {"name": "Dana Swope", "address": "danas@contoso.com"}}
    kept = mailbox.add_message(folder["id"], {"subject": "Holiday hours update", "sender": sender})
    gone = mailbox.add_message(
        folder["id"], {"subject": "Holiday promotion sale", "sender": sender}
    )
    page = client.get(f"/v1.0/me/mailFolders/{folder['id']}/messages/delta?{SELECT}").json
    mailbox.delete_message(gone["id"])
    mailbox.update_message(kept["id"], {"isRead": True})
    got = client.get(page["@odata.deltaLink"]).json
    doc, known = example("message_delta_next_round.json")
    assert differences(doc, got, known=frozenset(known)) == []
    removed = next(item for item in got["value"] if "@removed" in item)
    assert set(removed) == set(doc["value"][0])
    assert known == {"$.value[].isRead"}


def test_error_body(client: Client) -> None:
    doc, known = example("error.json")
    got = client.get("/v1.0/me/mailFolders/AAMkADNkNAAAgEMAAAAAAAAAAAAAAAA=").json
    assert differences(doc, got, known=frozenset(known)) == []
    assert extras(doc["error"]["innerError"], got["error"]["innerError"]) == {"client-request-id"}


def test_the_comparison_catches_drift() -> None:
    doc, _ = example("user_get.json")
    broken = dict(doc, businessPhones="+1 425 555 0109")
    del broken["surname"]
    assert sorted(differences(doc, broken)) == [
        "$.businessPhones: documented array, emulator string",
        "$.surname: missing",
    ]
