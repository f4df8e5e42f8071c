"""Drafts, sending, replies and getSchedule over werkzeug's test client: what Graph does, the
errors it answers, and what the mailbox and its sent log show afterwards."""

from __future__ import annotations

import base64
import time
from typing import Any

import pytest
from werkzeug.test import Client
from werkzeug.wrappers import Request

from m365sync.emulator import graph_api
from m365sync.emulator.mailbox import Mailbox
from m365sync.emulator.send_api import MAX_ATTACHMENT_BYTES

ALL = frozenset(["User.Read", "Mail.ReadWrite", "Mail.Send", "Calendars.ReadWrite"])
DAEMON = frozenset(["User.Read", "Mail.Read", "Mail.Send", "Calendars.ReadWrite"])
DANA = {"emailAddress": {"name": "Dana", "address": "dana@fabrikam.com"}}
HEADER = {"name": "x-m365sync-outbox", "value": "outbox-7"}


def client_for(mailbox: Mailbox, scopes: frozenset[str] = ALL) -> Client:
    def app(environ: dict[str, Any], start_response: Any) -> Any:
        response = graph_api.handle(
            Request(environ), mailbox, scopes=scopes, public_base="https://graph.test/v1.0"
        )
        return response(environ, start_response)

    return Client(app)


@pytest.fixture
def mailbox() -> Mailbox:
    return Mailbox()


@pytest.fixture
def client(mailbox: Mailbox) -> Client:
    return client_for(mailbox)


def draft(client: Client, **changes: Any) -> dict[str, Any]:
    body = {
        "subject": "Our offer",
        "body": {"contentType": "HTML", "content": "<p>Offer</p>"},
        "toRecipients": [DANA],
        "internetMessageHeaders": [HEADER],
        **changes,
    }
    answer = client.post("/v1.0/me/messages", json=body)
    assert answer.status_code == 201, answer.json
    return answer.json


def error(answer: Any) -> tuple[int, str]:
    return answer.status_code, answer.json["error"]["code"]


def delta_ids(client: Client, folder: str) -> tuple[set[str], set[str], str]:
    page = client.get(f"/v1.0/me/mailFolders/{folder}/messages/delta").json
    while "@odata.nextLink" in page:
        page = client.get(page["@odata.nextLink"]).json
    return (*_split(page), page["@odata.deltaLink"])


def _split(page: dict[str, Any]) -> tuple[set[str], set[str]]:
    present = {m["id"] for m in page["value"] if "@removed" not in m}
    return present, {m["id"] for m in page["value"] if "@removed" in m}


def next_round(client: Client, link: str) -> tuple[set[str], set[str]]:
    return _split(client.get(link).json)


# --------------------------------------------------------------------------- drafts


def test_a_draft_has_its_ids_at_once_and_waits_in_drafts(client: Client, mailbox: Mailbox) -> None:
    created = draft(client)
    assert created["id"] and created["internetMessageId"] and created["conversationId"]
    assert mailbox.message_ids_in("drafts") == [created["id"]]
    assert mailbox.sent() == []
    got = client.get(f"/v1.0/me/messages/{created['id']}").json
    assert got["internetMessageId"] == created["internetMessageId"] and got["isDraft"] is True


def test_creating_a_draft_needs_mail_readwrite(mailbox: Mailbox) -> None:
    # The daemon's scopes (Mail.Read, Mail.Send) are not enough: docs `user-post-messages.md`.
    daemon = client_for(mailbox, DAEMON)
    assert error(daemon.post("/v1.0/me/messages", json={"subject": "x"})) == (
        403,
        "ErrorAccessDenied",
    )
    original = mailbox.add_message("inbox", {"subject": "Hi", "from": DANA})
    assert error(daemon.post(f"/v1.0/me/messages/{original['id']}/createReply")) == (
        403,
        "ErrorAccessDenied",
    )
    # ... while sendMail and reply need Mail.Send only.
    assert (
        daemon.post("/v1.0/me/sendMail", json={"message": {"toRecipients": [DANA]}}).status_code
        == 202
    )
    assert daemon.post(f"/v1.0/me/messages/{original['id']}/reply", json={}).status_code == 202


def test_sending_needs_mail_send(mailbox: Mailbox) -> None:
    writer = client_for(mailbox, frozenset(["Mail.ReadWrite"]))
    created = draft(writer)
    assert error(writer.post(f"/v1.0/me/messages/{created['id']}/send")) == (
        403,
        "ErrorAccessDenied",
    )
    assert error(writer.post("/v1.0/me/sendMail", json={"message": {}})) == (
        403,
        "ErrorAccessDenied",
    )


@pytest.mark.parametrize("name", ["In-Reply-To", "References", "List-Unsubscribe", "xheader"])
def test_only_x_headers_may_be_set(client: Client, name: str) -> None:
    answer = client.post(
        "/v1.0/me/messages",
        json={"subject": "x", "internetMessageHeaders": [{"name": name, "value": "v"}]},
    )
    assert error(answer) == (400, "InvalidInternetMessageHeader")
    assert name in answer.json["error"]["message"]


def test_at_most_five_custom_headers(client: Client) -> None:
    headers = [{"name": f"X-Custom-{n}", "value": str(n)} for n in range(6)]
    answer = client.post("/v1.0/me/messages", json={"internetMessageHeaders": headers})
    assert error(answer) == (400, "InvalidInternetMessageHeaderCollection")
    assert draft(client, internetMessageHeaders=headers[:5])["id"]


def test_unknown_properties_and_bodies_are_refused(client: Client) -> None:
    assert error(client.post("/v1.0/me/messages", json={"subjekt": "x"})) == (
        400,
        "RequestBodyRead",
    )
    assert error(client.post("/v1.0/me/messages", data="")) == (400, "BadRequest")
    mime = client.post("/v1.0/me/messages", data="not base64!", content_type="text/plain")
    assert error(mime) == (400, "ErrorMimeContentInvalidBase64String")


def test_attachments_under_3_mb_only(client: Client, mailbox: Mailbox) -> None:
    created = draft(client)
    url = f"/v1.0/me/messages/{created['id']}/attachments"
    small = base64.b64encode(b"%PDF-1.7 offer").decode()
    answer = client.post(
        url,
        json={
            "@odata.type": "#microsoft.graph.fileAttachment",
            "name": "offer.pdf",
            "contentBytes": small,
        },
    )
    assert answer.status_code == 201
    assert answer.json["size"] == 14 and answer.json["contentType"] == "application/pdf"
    big = base64.b64encode(b"x" * MAX_ATTACHMENT_BYTES).decode()
    too_big = client.post(
        url,
        json={
            "@odata.type": "#microsoft.graph.fileAttachment",
            "name": "v.mp4",
            "contentBytes": big,
        },
    )
    assert error(too_big) == (400, "BadRequest")
    assert "4MB" in too_big.json["error"]["message"]
    assert error(client.post(url + "/createUploadSession", json={})) == (501, "NotImplemented")
    assert [a["name"] for a in mailbox.attachments(created["id"])] == ["offer.pdf"]
    assert client.get(f"/v1.0/me/messages/{created['id']}?$select=hasAttachments").json[
        "hasAttachments"
    ]
    no_type = client.post(url, json={"name": "a.txt", "contentBytes": small})
    assert error(no_type) == (400, "ErrorInvalidParameter")


def test_a_draft_may_carry_attachments_at_creation(client: Client, mailbox: Mailbox) -> None:
    file = {
        "@odata.type": "#microsoft.graph.fileAttachment",
        "name": "a.txt",
        "contentBytes": base64.b64encode(b"hello").decode(),
    }
    created = draft(client, attachments=[file])
    assert created["hasAttachments"] is True
    assert [(a["name"], a["size"]) for a in mailbox.attachments(created["id"])] == [("a.txt", 5)]


# --------------------------------------------------------------------------- send


def test_send_moves_the_draft_to_sent_items_keeping_id_and_headers(
    client: Client, mailbox: Mailbox
) -> None:
    created = draft(
        client,
        attachments=[
            {
                "@odata.type": "#microsoft.graph.fileAttachment",
                "name": "a.txt",
                "contentBytes": base64.b64encode(b"hello").decode(),
            }
        ],
    )
    _, _, drafts_link = delta_ids(client, "drafts")
    _, _, sent_link = delta_ids(client, "sentitems")
    answer = client.post(f"/v1.0/me/messages/{created['id']}/send")
    assert answer.status_code == 202 and answer.get_data() == b""
    got = client.get(
        f"/v1.0/me/messages/{created['id']}"
        "?$select=isDraft,sentDateTime,from,sender,parentFolderId,internetMessageId,"
        "internetMessageHeaders,conversationId"
    ).json
    assert got["isDraft"] is False and got["sentDateTime"]
    assert got["parentFolderId"] == mailbox.resolve_folder("sentitems")["id"]
    assert (
        got["from"]["emailAddress"]["address"]
        == "MeganB@contoso.com"
        == got["sender"]["emailAddress"]["address"]
    )
    assert got["internetMessageId"] == created["internetMessageId"]
    assert got["conversationId"] == created["conversationId"]
    assert got["internetMessageHeaders"] == [HEADER]
    assert [a["name"] for a in mailbox.attachments(created["id"])] == ["a.txt"]
    # Delta: gone from Drafts, arrived in Sent Items -- the mail sync sees it there.
    assert next_round(client, drafts_link) == (set(), {created["id"]})
    assert next_round(client, sent_link) == ({created["id"]}, set())
    (sent,) = mailbox.sent()
    assert sent["kind"] == "send" and sent["id"] == sent["draftId"] == created["id"]
    assert sent["recipients"] == ["dana@fabrikam.com"]
    assert sent["internetMessageHeaders"] == [HEADER]
    assert sent["attachments"] == [
        {"name": "a.txt", "contentType": "text/plain", "size": 5, "isInline": False}
    ]
    mailbox.clear_sent()
    assert mailbox.sent() == []


def test_a_second_send_of_the_same_id_is_not_found(client: Client, mailbox: Mailbox) -> None:
    created = draft(client)
    assert client.post(f"/v1.0/me/messages/{created['id']}/send").status_code == 202
    assert error(client.post(f"/v1.0/me/messages/{created['id']}/send")) == (
        404,
        "ErrorItemNotFound",
    )
    received = mailbox.add_message("inbox", {"subject": "Hi", "from": DANA})
    assert error(client.post(f"/v1.0/me/messages/{received['id']}/send")) == (
        404,
        "ErrorItemNotFound",
    )
    assert error(client.post("/v1.0/me/messages/not-an-id/send")) == (
        400,
        "ErrorInvalidIdMalformed",
    )
    assert len(mailbox.sent()) == 1


def test_invalid_or_missing_recipients_fail_the_send_and_keep_the_draft(
    client: Client, mailbox: Mailbox
) -> None:
    bad = draft(client, toRecipients=[{"emailAddress": {"address": "not-an-address"}}])
    answer = client.post(f"/v1.0/me/messages/{bad['id']}/send")
    assert error(answer) == (400, "ErrorInvalidRecipients")
    assert '"not-an-address"' in answer.json["error"]["message"]
    nobody = draft(client, toRecipients=[])
    answer = client.post(f"/v1.0/me/messages/{nobody['id']}/send")
    assert error(answer) == (400, "ErrorInvalidRecipients")
    assert "contains no recipients" in answer.json["error"]["message"]
    assert set(mailbox.message_ids_in("drafts")) == {bad["id"], nobody["id"]}
    assert mailbox.sent() == []
    bcc_only = draft(client, toRecipients=[], bccRecipients=[DANA])
    assert client.post(f"/v1.0/me/messages/{bcc_only['id']}/send").status_code == 202


def test_without_kept_ids_the_sent_copy_gets_a_new_id(client: Client, mailbox: Mailbox) -> None:
    mailbox.send_keeps_id = False
    created = draft(client)
    assert client.post(f"/v1.0/me/messages/{created['id']}/send").status_code == 202
    assert error(client.get(f"/v1.0/me/messages/{created['id']}")) == (404, "ErrorItemNotFound")
    (copy_id,) = mailbox.message_ids_in("sentitems")
    assert copy_id != created["id"]
    copy_ = client.get(
        f"/v1.0/me/messages/{copy_id}?$select=internetMessageId,internetMessageHeaders"
    ).json
    assert copy_["internetMessageId"] == created["internetMessageId"]
    assert copy_["internetMessageHeaders"] == [HEADER]
    assert mailbox.sent()[0]["id"] == copy_id and mailbox.sent()[0]["draftId"] == created["id"]


def test_the_sent_copy_may_arrive_late(client: Client, mailbox: Mailbox) -> None:
    mailbox.sent_copy_delay = 0.2
    created = draft(client)
    assert client.post(f"/v1.0/me/messages/{created['id']}/send").status_code == 202
    assert error(client.get(f"/v1.0/me/messages/{created['id']}")) == (404, "ErrorItemNotFound")
    assert mailbox.message_ids_in("sentitems") == []
    time.sleep(0.25)
    assert client.get(f"/v1.0/me/messages/{created['id']}").json["isDraft"] is False
    assert mailbox.message_ids_in("sentitems") == [created["id"]]


def test_send_inside_a_batch(client: Client, mailbox: Mailbox) -> None:
    created = draft(client)
    batch = client.post(
        "/v1.0/$batch",
        json={
            "requests": [
                {"id": "1", "method": "POST", "url": f"/me/messages/{created['id']}/send"},
                {
                    "id": "2",
                    "method": "GET",
                    "url": f"/me/messages/{created['id']}?$select=isDraft",
                    "dependsOn": ["1"],
                },
            ]
        },
    ).json
    statuses = {r["id"]: r["status"] for r in batch["responses"]}
    assert statuses == {"1": 202, "2": 200}
    assert len(mailbox.sent()) == 1


# --------------------------------------------------------------------------- sendMail


def test_send_mail_saves_a_copy_by_default(client: Client, mailbox: Mailbox) -> None:
    _, _, link = delta_ids(client, "sentitems")
    answer = client.post(
        "/v1.0/me/sendMail",
        json={
            "message": {
                "subject": "Lunch?",
                "toRecipients": [DANA],
                "internetMessageHeaders": [HEADER],
            }
        },
    )
    assert answer.status_code == 202 and answer.get_data() == b""
    (sent,) = mailbox.sent()
    assert sent["kind"] == "sendMail" and sent["savedToSentItems"] is True
    present, _ = next_round(client, link)
    assert present == {sent["id"]}
    assert mailbox.get_message(sent["id"])["internetMessageHeaders"] == [HEADER]


def test_send_mail_checks_what_it_sends(client: Client, mailbox: Mailbox) -> None:
    assert error(client.post("/v1.0/me/sendMail", json={"saveToSentItems": False})) == (
        400,
        "ErrorInvalidParameter",
    )
    assert error(client.post("/v1.0/me/sendMail", json={"message": {}})) == (
        400,
        "ErrorInvalidRecipients",
    )
    bad = {"message": {"toRecipients": [{"emailAddress": {"address": "dana at fabrikam"}}]}}
    assert error(client.post("/v1.0/me/sendMail", json=bad)) == (400, "ErrorInvalidRecipients")
    header = {
        "message": {
            "toRecipients": [DANA],
            "internetMessageHeaders": [{"name": "Foo", "value": "1"}],
        }
    }
    assert error(client.post("/v1.0/me/sendMail", json=header)) == (
        400,
        "InvalidInternetMessageHeader",
    )
    assert mailbox.sent() == [] and mailbox.message_ids_in("sentitems") == []


# --------------------------------------------------------------------------- replies


def test_create_reply_answers_reply_to_and_keeps_the_conversation(
    client: Client, mailbox: Mailbox
) -> None:
    helpdesk = {"emailAddress": {"name": "Help", "address": "help@fabrikam.com"}}
    original = mailbox.add_message(
        "inbox", {"subject": "Question", "from": DANA, "replyTo": [helpdesk]}
    )
    answer = client.post(
        f"/v1.0/me/messages/{original['id']}/createReply",
        json={"comment": "Thanks!", "message": {"internetMessageHeaders": [HEADER]}},
    )
    assert answer.status_code == 201
    reply = answer.json
    assert reply["subject"] == "RE: Question" and reply["isDraft"] is True
    assert reply["toRecipients"] == [helpdesk]
    assert reply["conversationId"] == original["conversationId"]
    assert "Thanks!" in reply["body"]["content"]
    assert mailbox.message_ids_in("drafts") == [reply["id"]]
    assert client.post(f"/v1.0/me/messages/{reply['id']}/send").status_code == 202
    (sent,) = mailbox.sent()
    assert sent["conversationId"] == original["conversationId"]
    assert sent["internetMessageHeaders"] == [HEADER]
    again = client.post(f"/v1.0/me/messages/{original['id']}/createReply").json
    assert again["subject"] == "RE: Question"
    assert (
        client.post(f"/v1.0/me/messages/{again['id']}/createReply").json["subject"]
        == "RE: Question"
    )  # no "RE: RE:"


def test_comment_and_body_together_are_refused(client: Client, mailbox: Mailbox) -> None:
    original = mailbox.add_message("inbox", {"subject": "Q", "from": DANA})
    both = {"comment": "a", "message": {"body": {"contentType": "Text", "content": "b"}}}
    for action in ("createReply", "reply"):
        answer = client.post(f"/v1.0/me/messages/{original['id']}/{action}", json=both)
        assert answer.status_code == 400
    assert mailbox.sent() == [] and mailbox.message_ids_in("drafts") == []


def test_reply_sends_at_once_into_the_thread(client: Client, mailbox: Mailbox) -> None:
    original = mailbox.add_message("inbox", {"subject": "Q", "from": DANA})
    answer = client.post(
        f"/v1.0/me/messages/{original['id']}/reply",
        json={"message": {"body": {"contentType": "Text", "content": "Yes."}}},
    )
    assert answer.status_code == 202 and answer.get_data() == b""
    (sent,) = mailbox.sent()
    assert sent["kind"] == "reply" and sent["inReplyTo"] == original["id"]
    assert sent["subject"] == "RE: Q" and sent["recipients"] == ["dana@fabrikam.com"]
    copy_ = mailbox.get_message(sent["id"])
    assert copy_["conversationId"] == original["conversationId"] and copy_["isDraft"] is False
    assert error(
        client.post(
            "/v1.0/me/messages/AAMkAGVmMDEzMTM4LTZmYWUtNDdkNC1hMDZiLTU1OGY5OTZhYmY4OAB=/reply",
            json={},
        )
    ) == (
        404,
        "ErrorItemNotFound",
    )


# --------------------------------------------------------------------------- getSchedule


def schedule_body(*addresses: str, interval: int = 30) -> dict[str, Any]:
    return {
        "schedules": list(addresses),
        "startTime": {"dateTime": "2030-01-07T09:00:00", "timeZone": "UTC"},
        "endTime": {"dateTime": "2030-01-07T12:00:00", "timeZone": "UTC"},
        "availabilityViewInterval": interval,
    }


def test_get_schedule_of_the_owner_and_a_listed_address(client: Client, mailbox: Mailbox) -> None:
    mailbox.calendar.create(
        {
            "subject": "Standup",
            "showAs": "busy",
            "sensitivity": "private",
            "start": {"dateTime": "2030-01-07T09:30:00", "timeZone": "UTC"},
            "end": {"dateTime": "2030-01-07T10:00:00", "timeZone": "UTC"},
        }
    )
    mailbox.free_busy["Dana@Fabrikam.com"] = [
        {"status": "oof", "start": "2030-01-07T11:00:00Z", "end": "2030-01-07T13:00:00Z"},
        {"status": "tentative", "start": "2030-01-06T11:00:00Z", "end": "2030-01-06T13:00:00Z"},
    ]
    got = client.post(
        "/v1.0/me/calendar/getSchedule",
        json=schedule_body("meganb@contoso.com", "dana@fabrikam.com", "who@nowhere.test"),
    ).json["value"]
    megan, dana, unknown = got
    assert megan["availabilityView"] == "020000"
    (item,) = megan["scheduleItems"]
    assert item["isPrivate"] is True and item["status"] == "busy" and item["subject"] == "Standup"
    assert item["start"] == {"dateTime": "2030-01-07T09:30:00.0000000", "timeZone": "UTC"}
    assert megan["workingHours"]["daysOfWeek"][0] == "monday"
    assert dana["availabilityView"] == "000033" and len(dana["scheduleItems"]) == 1
    assert set(unknown) == {"scheduleId", "error"} and unknown["error"]["responseCode"] == "5009"
    hourly = client.post(
        "/v1.0/me/calendar/getSchedule", json=schedule_body("dana@fabrikam.com", interval=60)
    ).json["value"][0]
    assert hourly["availabilityView"] == "003"


def test_get_schedule_checks_its_input(client: Client, mailbox: Mailbox) -> None:
    url = "/v1.0/me/calendar/getSchedule"
    assert client.post(url, json=schedule_body("a@b.com", interval=4)).status_code == 400
    assert client.post(url, json=schedule_body("a@b.com", interval=1441)).status_code == 400
    assert client.post(url, json={**schedule_body("a@b.com"), "schedules": []}).status_code == 400
    reversed_ = {**schedule_body("a@b.com"), "endTime": schedule_body()["startTime"]}
    assert client.post(url, json=reversed_).status_code == 400
    zone = schedule_body("a@b.com")
    zone["startTime"] = {"dateTime": "2030-01-07T09:00:00", "timeZone": "Mars/Olympus"}
    assert error(client.post(url, json=zone)) == (400, "TimeZoneNotSupportedException")
    mail_only = client_for(mailbox, frozenset(["Mail.Read"]))
    assert error(mail_only.post(url, json=schedule_body("a@b.com"))) == (403, "ErrorAccessDenied")
    basic = client_for(mailbox, frozenset(["Calendars.ReadBasic"]))
    assert basic.post(url, json=schedule_body("a@b.com")).status_code == 200
