"""The emulator's attachments listing and JSON batching: documented shapes, limits, faults."""

from __future__ import annotations

from collections import Counter
from urllib.parse import quote

import pytest
from werkzeug.test import Client
from werkzeug.wrappers import Request, Response

from m365sync.emulator import graph_api
from m365sync.emulator.mailbox import Mailbox
from m365sync.emulator.server import Emulator, EmulatorSession
from tests.emulator.test_docs_shapes import differences, example, extras

SELECT = "$select=id,name,size,contentType,isInline"
IMMUTABLE = {"Prefer": 'IdType="ImmutableId"'}


def shape_differences(doc, got, known) -> list[str]:
    """`differences`, with documented fields the docs themselves call wrong left out."""
    return [
        d for d in differences(doc, got, known=frozenset(known)) if d.split(":")[0] not in known
    ]


@pytest.fixture(scope="module")
def mailbox() -> Mailbox:
    return Mailbox.seeded(200, seed=3)


def client_for(mailbox: Mailbox, scopes=("User.Read", "Mail.Read")) -> Client:
    @Request.application
    def app(request: Request) -> Response:
        return graph_api.handle(
            request, mailbox, scopes=frozenset(scopes), public_base="https://graph.test"
        )

    return Client(app)


@pytest.fixture(scope="module")
def client(mailbox: Mailbox) -> Client:
    return client_for(mailbox)


def with_attachments(mailbox: Mailbox) -> list[str]:
    with mailbox.lock:
        return [m["id"] for _f, m, raw in mailbox.iter_messages() if m.get("hasAttachments")]


def url(mid: str, query: str = SELECT) -> str:
    return f"/me/messages/{quote(mid, safe='')}/attachments?{query}"


def get(mid: str, query: str = SELECT) -> dict:
    return {"id": mid[-8:], "method": "GET", "url": url(mid, query), "headers": IMMUTABLE}


# --- the seeded attachments -----------------------------------------------------------------


def test_seeded_attachments_are_deterministic_and_match_has_attachments(mailbox) -> None:
    again = Mailbox.seeded(200, seed=3)
    flagged = with_attachments(mailbox)
    assert flagged
    for mid in flagged:
        files = [a for a in mailbox.attachments(mid) if not a["isInline"]]
        assert files, "hasAttachments true means at least one non-inline attachment"
        assert mailbox.attachments(mid) == again.attachments(mid)
        assert all(a["name"] and a["size"] > 0 for a in files)
    with mailbox.lock:
        others = [m["id"] for _f, m, _r in mailbox.iter_messages() if not m.get("hasAttachments")]
    inline_only = [mid for mid in others if mailbox.attachments(mid)]
    assert inline_only, "signature logos on mail without hasAttachments, as in Outlook"
    assert all(a["isInline"] for mid in inline_only for a in mailbox.attachments(mid))
    names = {a["name"] for mid in flagged for a in mailbox.attachments(mid)}
    assert any(name.startswith("Quote-") and name.endswith(".pdf") for name in names)


def test_added_messages_keep_their_attachments_and_round_trip(tmp_path) -> None:
    box = Mailbox()
    message = box.add_message(
        "inbox",
        {
            "subject": "Quote",
            "attachments": [
                {"name": "Quote-2026-Q3.pdf", "contentType": "application/pdf", "size": 48213},
                {
                    "name": "image001.png",
                    "contentType": "image/png",
                    "size": 4000,
                    "isInline": True,
                },
            ],
        },
    )
    assert message["hasAttachments"] is True and "attachments" not in message
    plain = box.add_message(
        "inbox",
        {
            "subject": "Logo only",
            "attachments": [
                {"name": "image001.png", "contentType": "image/png", "size": 4000, "isInline": True}
            ],
        },
    )
    assert plain["hasAttachments"] is False
    box.to_json(tmp_path / "box.json")
    loaded = Mailbox.from_json(tmp_path / "box.json")
    assert loaded.attachments(message["id"]) == box.attachments(message["id"])
    added = box.add_attachment(plain["id"], {"name": "Offer.docx", "size": 10})
    assert added["@odata.type"] == "#microsoft.graph.fileAttachment"
    assert box.get_message(plain["id"])["hasAttachments"] is True
    box.delete_message(plain["id"])
    with pytest.raises(KeyError):
        box.attachments(plain["id"])


# --- list attachments --------------------------------------------------------------------------


def test_list_attachments_has_the_documented_shape(client, mailbox) -> None:
    doc, known = example("message_list_attachments.json")
    mid = with_attachments(mailbox)[0]
    got = client.get("/v1.0" + url(mid, "")).json
    assert shape_differences(doc, got, known) == []
    assert extras(doc, got) == {"@odata.context"}
    assert extras(doc["value"][0], got["value"][0]) == {"@odata.mediaContentType"}


def test_select_returns_only_metadata(client, mailbox) -> None:
    mid = with_attachments(mailbox)[0]
    response = client.get("/v1.0" + url(mid), headers=IMMUTABLE)
    assert response.status_code == 200
    assert response.headers["Preference-Applied"] == 'IdType="ImmutableId"'
    body = response.json
    assert body["@odata.context"].endswith("/attachments(id,name,size,contentType,isInline)")
    for item in body["value"]:
        assert set(item) == {"@odata.type", "id", "name", "size", "contentType", "isInline"}


def test_select_of_a_derived_property_and_unknown_messages(client, mailbox) -> None:
    mid = with_attachments(mailbox)[0]
    bad = client.get("/v1.0" + url(mid, "$select=name,contentId"))
    assert bad.status_code == 400
    assert bad.json["error"]["code"] == "RequestBroker--ParseUri"
    assert "microsoft.graph.attachment" in bad.json["error"]["message"]
    gone = client.get("/v1.0" + url("AAMkAGI2TAAAAAAAAAAAAAAAAAAAAA="))
    assert (gone.status_code, gone.json["error"]["code"]) == (404, "ErrorItemNotFound")
    inbox = mailbox.resolve_folder("inbox")["id"]
    elsewhere = next(m for m in with_attachments(mailbox) if mailbox.folder_of(m) != inbox)
    path = f"/v1.0/me/mailFolders/inbox/messages/{quote(elsewhere, safe='')}/attachments"
    assert client.get(path).status_code == 404
    here = next(m for m in with_attachments(mailbox) if mailbox.folder_of(m) == inbox)
    path = f"/v1.0/me/mailFolders/inbox/messages/{quote(here, safe='')}/attachments?{SELECT}"
    assert client.get(path).status_code == 200
    assert client_for(mailbox, ("User.Read",)).get("/v1.0" + url(mid)).status_code == 403


# --- $batch ----------------------------------------------------------------------------------


def test_batch_answers_in_the_documented_shape(mailbox) -> None:
    """The docs' example: a 200 sub-response with a collection, and a 403 one."""
    doc, known = example("json_batch_response.json")
    request = {"id": "1", "method": "GET", "url": url(with_attachments(mailbox)[0])}
    ok = client_for(mailbox).post("/v1.0/$batch", json={"requests": [request]})
    denied = client_for(mailbox, ("User.Read",)).post(
        "/v1.0/$batch", json={"requests": [dict(request, id="3")]}
    )
    assert ok.status_code == denied.status_code == 200
    envelope = {"responses": ok.json["responses"] + denied.json["responses"]}
    assert [r["status"] for r in envelope["responses"]] == [200, 403]
    assert shape_differences(doc, envelope, known) == []
    assert extras(doc, envelope) == set()
    assert all(set(r) == {"id", "status", "headers", "body"} for r in envelope["responses"])


def test_batch_runs_each_request_with_its_own_headers(client, mailbox) -> None:
    mids = with_attachments(mailbox)[:3]
    body = client.post("/v1.0/$batch", json={"requests": [get(m) for m in mids]}).json
    by_id = {r["id"]: r for r in body["responses"]}
    for mid in mids:
        answer = by_id[mid[-8:]]
        assert answer["status"] == 200
        assert answer["headers"]["Preference-Applied"] == 'IdType="ImmutableId"'
        direct = client.get("/v1.0" + url(mid)).json
        assert answer["body"]["value"] == direct["value"]


@pytest.mark.parametrize(
    ("payload", "fragment"),
    [
        ({"requests": []}, "Invalid batch"),
        ({"nope": 1}, "Invalid batch"),
        ({"requests": [{"id": "1", "method": "GET"}]}, "'url'"),
        (
            {
                "requests": [
                    {"id": "a", "method": "GET", "url": "/me"},
                    {"id": "A", "method": "GET", "url": "/me"},
                ]
            },
            "not unique",
        ),
        (
            {"requests": [{"id": str(i), "method": "GET", "url": "/me"} for i in range(21)]},
            "at most 20",
        ),
    ],
)
def test_malformed_batches_are_400(client, payload, fragment) -> None:
    response = client.post("/v1.0/$batch", json=payload)
    assert response.status_code == 400
    assert fragment in response.json["error"]["message"]


def test_twenty_requests_are_fine_and_get_is_not(client) -> None:
    requests = [{"id": str(i), "method": "GET", "url": "/me"} for i in range(20)]
    response = client.post("/v1.0/$batch", json={"requests": requests})
    assert response.status_code == 200
    assert Counter(r["status"] for r in response.json["responses"]) == {200: 20}
    assert client.get("/v1.0/$batch").status_code == 405


def test_depends_on_a_failed_request_is_424(client) -> None:
    requests = [
        {"id": "1", "method": "GET", "url": "/me/nothing"},
        {"id": "2", "method": "GET", "url": "/me", "dependsOn": ["1"]},
        {"id": "3", "method": "GET", "url": "/me"},
        {"id": "4", "method": "GET", "url": "https://graph.microsoft.com/v1.0/me"},
    ]
    statuses = {
        r["id"]: r["status"]
        for r in client.post("/v1.0/$batch", json={"requests": requests}).json["responses"]
    }
    assert statuses == {"1": 400, "2": 424, "3": 200, "4": 400}


# --- over HTTPS, with the fault plan -----------------------------------------------------------


def test_a_fault_on_a_sub_request_path_throttles_only_that_request(
    emulator: Emulator, graph: EmulatorSession
) -> None:
    mids = with_attachments(emulator.mailbox)[:4]
    emulator.faults.throttle("/attachments", times=2, retry_after="0.5")
    response = graph.post("/$batch", json={"requests": [get(m) for m in mids]})
    assert response.status_code == 200
    statuses = Counter(r["status"] for r in response.json()["responses"])
    assert statuses == {200: 2, 429: 2}
    throttled = [r for r in response.json()["responses"] if r["status"] == 429]
    assert all(r["headers"]["Retry-After"] == "0.5" for r in throttled)
    assert all(r["body"]["error"]["code"] == "TooManyRequests" for r in throttled)
    records = emulator.requests
    subs = [r for r in records if r.in_batch]
    assert len(subs) == 4 and Counter(r.status for r in subs) == {200: 2, 429: 2}
    assert all(r.prefer == 'IdType="ImmutableId"' for r in subs)
    envelope = [r for r in records if not r.in_batch and r.path == "/v1.0/$batch"]
    assert [r.status for r in envelope] == [200]


def test_a_fault_on_the_batch_path_fails_the_whole_batch(
    emulator: Emulator, graph: EmulatorSession
) -> None:
    emulator.faults.throttle(r"/\$batch$", retry_after="1")
    response = graph.post(
        "/$batch", json={"requests": [{"id": "1", "method": "GET", "url": "/me"}]}
    )
    assert response.status_code == 429 and response.headers["Retry-After"] == "1"
