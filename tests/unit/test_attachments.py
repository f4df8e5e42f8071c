"""parse_attachments (pure) and fetch_attachment_metadata's per-message outcomes."""

from __future__ import annotations

import json

import pytest
import responses

from m365sync.domain import Attachment
from m365sync.errors import MalformedResponse, NeedsReconnect, Throttled
from m365sync.graph.attachments import (
    ATTACHMENT_SELECT,
    attachments_path,
    fetch_attachment_metadata,
    parse_attachments,
)
from m365sync.graph.client import GraphClient
from m365sync.graph.transport import make_session

BASE = "https://graph.example.test/v1.0"

# The shape of a list-attachments answer with $select (fileAttachment, itemAttachment with a
# null contentType as the itemAttachment resource documents, a referenceAttachment, an inline
# signature logo).
SELECTED = {
    "@odata.context": "https://graph.microsoft.com/v1.0/$metadata#users('u')/messages('m')"
    "/attachments(id,name,size,contentType,isInline)",
    "value": [
        {
            "@odata.type": "#microsoft.graph.fileAttachment",
            "id": "AAMkADI5MAAIT3drCAAABEgAQANAqbAe7qaROhYdTnUQwXm0=",
            "name": "Quote-2026-Q3.pdf",
            "contentType": "application/pdf",
            "size": 48213,
            "isInline": False,
        },
        {
            "@odata.type": "#microsoft.graph.itemAttachment",
            "id": "AAMkADI5MAAIT3drCAAABEgAQAMkpJI_X-LBFgvrv1PlZYd8=",
            "name": "Re: Kickoff agenda",
            "contentType": None,
            "size": 12804,
            "isInline": False,
        },
        {
            "@odata.type": "#microsoft.graph.referenceAttachment",
            "id": "AAMkADI5MAAIT3drCAAABEgAQAMkpJI_X-LBFgvrv1PlZYd9=",
            "name": "Budget.xlsx",
            "contentType": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
            "size": 512,
            "isInline": False,
        },
        {
            "@odata.type": "#microsoft.graph.fileAttachment",
            "id": "AAMkADI5MAAIT3drCAAABEgAQAMkpJI_X-LBFgvrv1PlZYe0=",
            "name": "image001.png",
            "contentType": "image/png",
            "size": 4096,
            "isInline": True,
        },
    ],
}


def test_parses_files_items_and_links_and_drops_inline_images() -> None:
    assert parse_attachments(SELECTED) == (
        Attachment("Quote-2026-Q3.pdf", 48213, "application/pdf"),
        Attachment("Re: Kickoff agenda", 12804, ""),
        Attachment(
            "Budget.xlsx",
            512,
            "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
        ),
    )


def test_tolerates_unknown_types_missing_fields_and_junk() -> None:
    payload = {
        "value": [
            {"@odata.type": "#microsoft.graph.somethingNew", "name": " plan.txt ", "size": 10},
            {"name": None, "size": "12", "contentType": 7},
            {"name": "negative", "size": -5, "contentType": "text/plain"},
            {"name": "flag", "size": True},
            "not an object",
            None,
            {"name": "inline but not true", "isInline": "yes", "size": 1},
        ]
    }
    assert parse_attachments(payload) == (
        Attachment("plan.txt", 10, ""),
        Attachment("", 0, ""),
        Attachment("negative", 0, "text/plain"),
        Attachment("flag", 0, ""),
        Attachment("inline but not true", 1, ""),
    )
    assert parse_attachments({"value": []}) == ()


@pytest.mark.parametrize("payload", [{}, {"value": None}, {"value": {}}, [], None, "x"])
def test_no_value_list_is_malformed(payload) -> None:
    with pytest.raises(MalformedResponse):
        parse_attachments(payload)


def test_the_full_documented_answer_parses_too() -> None:
    # docs api/message-list-attachments.md example (unselected: contentBytes and all)
    documented = {
        "value": [
            {
                "@odata.type": "microsoft.graph.fileAttachment",
                "contentType": "contentType-value",
                "contentLocation": "contentLocation-value",
                "contentBytes": "contentBytes-value",
                "contentId": "null",
                "lastModifiedDateTime": "datetime-value",
                "id": "id-value",
                "isInline": False,
                "name": "name-value",
                "size": 99,
            }
        ]
    }
    assert parse_attachments(documented) == (Attachment("name-value", 99, "contentType-value"),)


def test_paths_select_only_base_properties_and_quote_ids() -> None:
    path = attachments_path("AAMkAGI2+/x=")
    assert path == f"/me/messages/AAMkAGI2%2B%2Fx%3D/attachments?$select={ATTACHMENT_SELECT}"
    assert set(ATTACHMENT_SELECT.split(",")) <= {
        "id",
        "name",
        "size",
        "contentType",
        "isInline",
        "lastModifiedDateTime",
    }


# --- fetch_attachment_metadata --------------------------------------------------------------


def client() -> GraphClient:
    return GraphClient(
        make_session(None, user_agent="m365sync-test"),
        BASE,
        type("T", (), {"access_token": lambda self, force_refresh=False: "t"})(),
        sleep=lambda s: None,
        clock=lambda: 1_750_000_000.0,
    )


def serve(outcomes: dict[str, tuple[int, dict]]) -> list[dict]:
    """Answer each sub-request by message id (the path segment after /messages/)."""
    seen: list[dict] = []

    def callback(request):
        batch = json.loads(request.body)["requests"]
        seen.extend(batch)
        out = []
        for item in batch:
            mid = item["url"].split("/")[3]
            status, body = outcomes[mid]
            headers = {"Retry-After": "5"} if status == 429 else {}
            out.append({"id": item["id"], "status": status, "headers": headers, "body": body})
        return 200, {}, json.dumps({"responses": out})

    responses.add_callback(responses.POST, f"{BASE}/$batch", callback=callback)
    return seen


def error(code: str) -> dict:
    return {"error": {"code": code, "message": ""}}


@responses.activate
def test_fetch_maps_each_message_and_sends_immutable_ids(caplog) -> None:
    seen = serve(
        {
            "m1": (200, SELECTED),
            "m2": (404, error("ErrorItemNotFound")),
            "m3": (403, error("ErrorAccessDenied")),
            "m4": (200, {"unexpected": True}),
            "m5": (200, {"value": []}),
        }
    )
    found = fetch_attachment_metadata(client(), ["m1", "m2", "m3", "m4", "m5", "m1"])
    assert found == {"m1": parse_attachments(SELECTED), "m2": (), "m5": ()}
    assert len(seen) == 5
    assert all(item["headers"] == {"Prefer": 'IdType="ImmutableId"'} for item in seen)
    assert "m3" in caplog.text and "ErrorAccessDenied" in caplog.text
    assert "Quote-2026-Q3.pdf" not in caplog.text  # names are content, never logged


@responses.activate
def test_fetch_raises_what_concerns_the_whole_mailbox() -> None:
    serve({"m1": (200, SELECTED), "m2": (429, error("ApplicationThrottled"))})
    with pytest.raises(Throttled) as caught:
        fetch_attachment_metadata(client(), ["m1", "m2"], budget_seconds=1)
    assert caught.value.retry_after == 5.0


@responses.activate
def test_fetch_stops_on_a_revoked_grant() -> None:
    serve({"m1": (401, error("InvalidAuthenticationToken"))})
    with pytest.raises(NeedsReconnect):
        fetch_attachment_metadata(client(), ["m1"])


def test_fetch_of_nothing_sends_nothing() -> None:
    assert fetch_attachment_metadata(client(), []) == {}
