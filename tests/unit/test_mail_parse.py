"""Mail parsing on Graph-shaped payloads, and the delta reader's requests."""

from __future__ import annotations

import copy
from datetime import UTC, datetime, timedelta, timezone
from urllib.parse import parse_qs, urlsplit

import pytest
import responses
from responses import matchers

from m365sync.domain import MailFolder
from m365sync.errors import MalformedResponse
from m365sync.graph.client import GraphClient
from m365sync.graph.mail import (
    MESSAGE_FIELDS,
    MESSAGE_SELECT,
    PARTIAL_UPDATE,
    SUBJECT_LIMIT,
    BadItem,
    MailDeltaReader,
    parse_delta_page,
    parse_message,
)
from m365sync.graph.transport import make_session

BASE = "https://graph.example.test/v1.0"
INBOX = "AAMkAGI2TGuLAAA="
DELTA_CONTEXT = "https://graph.microsoft.com/v1.0/$metadata#Collection(message)"


def recipient(address, name=""):
    return {"emailAddress": {"name": name, "address": address}}


MESSAGE = {
    "@odata.type": "#microsoft.graph.message",
    "@odata.etag": 'W/"CQAAABYAAAAiIsqMbYjsT5e/T7KzowPTAAAYbvvR"',
    "id": "AAkALgAAAAAAHYQDEapmEc2byACqAC-EWg0AIiLKjG2I7E-v",
    "changeKey": "CQAAABYAAAAiIsqMbYjsT5e/T7KzowPTAAAYbvvR",
    "receivedDateTime": "2024-05-02T08:15:31Z",
    "sentDateTime": "2024-05-02T08:15:29.1234567Z",
    "hasAttachments": False,
    "internetMessageId": "<DM6PR11MB4691.namprd11.prod.outlook.com>",
    "subject": "Quarterly numbers",
    "bodyPreview": "Hi Megan, here are the numbers",
    "isDraft": False,
    "parentFolderId": INBOX,
    "conversationId": "AAQkAGI2TGuLAAAQAKY3",
    "body": {"contentType": "html", "content": "<html><body><p>Hi Megan</p></body></html>"},
    "sender": recipient("Anna@Fabrikam.com", "Anna Lee"),
    "from": recipient("Anna@Fabrikam.com", "Anna Lee"),
    "toRecipients": [recipient("MeganB@contoso.com", "Megan Bowen")],
    "ccRecipients": [],
    "bccRecipients": [],
    "replyTo": [],
    "internetMessageHeaders": [
        {"name": "Received", "value": "from a by b"},
        {"name": "Received", "value": "from c by d"},
        {"name": "Message-ID", "value": "<DM6PR11MB4691.namprd11.prod.outlook.com>"},
        {"name": "In-Reply-To", "value": "<parent@fabrikam.com>"},
    ],
    "flag": {"flagStatus": "notFlagged"},  # not selected by us; must be ignored
}


def msg(**changes):
    item = copy.deepcopy(MESSAGE)
    for key, value in changes.items():
        if value is ...:
            item.pop(key, None)
        else:
            item[key] = value
    return item


def page(*items, next_link=None, delta_link=None):
    payload = {"@odata.context": DELTA_CONTEXT, "value": list(items)}
    if next_link:
        payload["@odata.nextLink"] = next_link
    if delta_link:
        payload["@odata.deltaLink"] = delta_link
    return payload


# --- parse_message ------------------------------------------------------------------------


def test_parses_a_full_message():
    m = parse_message(MESSAGE, INBOX)
    assert m.graph_id == MESSAGE["id"]
    assert m.internet_message_id == "<DM6PR11MB4691.namprd11.prod.outlook.com>"
    assert m.conversation_id == "AAQkAGI2TGuLAAAQAKY3"
    assert m.folder_id == INBOX
    assert m.subject == "Quarterly numbers"
    assert m.sender is not None and m.sender.address == "Anna@Fabrikam.com"
    assert m.sender.name == "Anna Lee"
    assert [a.address for a in m.to] == ["MeganB@contoso.com"]
    assert m.received_at == datetime(2024, 5, 2, 8, 15, 31, tzinfo=UTC)
    assert m.sent_at == datetime(2024, 5, 2, 8, 15, 29, 123456, tzinfo=UTC)
    assert m.body_html.startswith("<html>")
    assert m.body_preview.startswith("Hi Megan")
    assert m.change_key == MESSAGE["changeKey"]
    assert m.headers["Received"] == "from a by b"
    assert m.headers["In-Reply-To"] == "<parent@fabrikam.com>"


def test_unknown_fields_and_missing_optionals_are_fine():
    item = {
        "id": "AAk1",
        "subject": None,
        "receivedDateTime": "2024-05-02T08:15:31Z",
        "someFutureField": {"nested": [1, 2]},
        "@odata.etag": "x",
    }
    m = parse_message(item, INBOX)
    assert m.subject is None
    assert m.sender is None
    assert m.to == () and m.headers == {} and m.body_html is None
    assert m.is_draft is False and m.has_attachments is False


def test_missing_from_falls_back_to_sender_or_none():
    m = parse_message(msg(**{"from": ...}), INBOX)
    assert m.sender.address == "Anna@Fabrikam.com"
    draft = parse_message(msg(**{"from": ..., "sender": ..., "isDraft": True}), INBOX)
    assert draft.sender is None
    assert draft.is_draft is True


def test_from_without_address_uses_sender_else_rejects():
    nameless = {"emailAddress": {"name": "Microsoft Outlook"}}
    m = parse_message(msg(**{"from": nameless}), INBOX)
    assert m.sender.address == "Anna@Fabrikam.com"
    with pytest.raises(BadItem, match="from has no address") as info:
        parse_message(msg(**{"from": nameless, "sender": nameless}), INBOX)
    assert info.value.graph_id == MESSAGE["id"]


def test_odd_addresses_are_kept_and_empty_ones_dropped():
    item = msg(
        toRecipients=[
            recipient(" <Bob@Northwind.com> ", " Bob "),
            recipient("", "Nobody"),
            {"emailAddress": None},
            recipient("/O=EXCHANGELABS/OU=EXCHANGE ADMINISTRATIVE GROUP/CN=RECIPIENTS/CN=abc"),
            recipient("undisclosed-recipients:;"),
            recipient("josé@exämple.com", "José"),
        ]
    )
    to = parse_message(item, INBOX).to
    assert [a.address for a in to] == [
        "Bob@Northwind.com",
        "/O=EXCHANGELABS/OU=EXCHANGE ADMINISTRATIVE GROUP/CN=RECIPIENTS/CN=abc",
        "undisclosed-recipients:;",
        "josé@exämple.com",
    ]
    assert to[0].name == "Bob"


def test_huge_subject_is_kept_cut_with_a_mark():
    m = parse_message(msg(subject="x" * 10_000), INBOX)
    assert len(m.subject) == SUBJECT_LIMIT
    assert m.subject.endswith("…")


def test_text_body_is_escaped_into_pre():
    m = parse_message(msg(body={"contentType": "text", "content": "a < b & c"}), INBOX)
    assert m.body_html == "<pre>a &lt; b &amp; c</pre>"


def test_broken_html_is_left_for_the_sanitiser():
    m = parse_message(msg(body={"contentType": "html", "content": "<p><b>unclosed"}), INBOX)
    assert m.body_html == "<p><b>unclosed"


def test_dates_with_offsets_and_without_zone_become_utc():
    m = parse_message(
        msg(receivedDateTime="2024-05-02T10:15:31+02:00", sentDateTime="2024-05-02T08:00:00"),
        INBOX,
    )
    assert m.received_at == datetime(2024, 5, 2, 8, 15, 31, tzinfo=UTC)
    assert m.sent_at == datetime(2024, 5, 2, 8, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("changes", "reason"),
    [
        ({"id": ...}, "no id"),
        ({"id": ""}, "no id"),
        ({"id": 42}, "no id"),
        ({"receivedDateTime": "yesterday"}, "receivedDateTime is not a date"),
        ({"sentDateTime": "2024-13-45T99:00:00Z"}, "sentDateTime is not a date"),
        ({"subject": ["a", "b"]}, "subject is a list"),
        ({"toRecipients": "anna@fabrikam.com"}, "toRecipients is not a list"),
        ({"toRecipients": ["anna@fabrikam.com"]}, "toRecipients is not a recipient"),
        ({"isDraft": "yes"}, "isDraft is a str"),
        ({"body": "plain"}, "body is not an object"),
        ({"from": {"emailAddress": {"address": 7}}}, "from address is not a string"),
    ],
)
def test_unusable_items_raise_bad_item(changes, reason):
    with pytest.raises(BadItem, match=reason):
        parse_message(msg(**changes), INBOX)


def test_bad_item_is_a_value_error():
    assert issubclass(BadItem, ValueError)


def test_partial_update_is_rejected_as_such():
    with pytest.raises(BadItem, match=PARTIAL_UPDATE):
        parse_message({"id": "AAk1", "isRead": True, "parentFolderId": INBOX}, INBOX)


# --- parse_delta_page ---------------------------------------------------------------------


def test_page_with_removed_item():
    removed = {
        "@odata.type": "#microsoft.graph.message",
        "id": "AAk-gone",
        "@removed": {"reason": "deleted"},
    }
    result = parse_delta_page(page(MESSAGE, removed, next_link=f"{BASE}/next"), INBOX)
    assert [m.graph_id for m in result.messages] == [MESSAGE["id"]]
    assert result.removed_ids == ["AAk-gone"]
    assert result.rejected == []
    assert result.next_link == f"{BASE}/next"
    assert result.delta_link is None


def test_malformed_item_among_good_ones_is_rejected_not_raised():
    bad = msg(id="AAk-bad", receivedDateTime="not a date")
    good2 = msg(id="AAk-good2")
    result = parse_delta_page(page(MESSAGE, bad, "garbage", good2, delta_link="d"), INBOX)
    assert [m.graph_id for m in result.messages] == [MESSAGE["id"], "AAk-good2"]
    reasons = {r.graph_id: r.reason for r in result.rejected}
    assert "receivedDateTime" in reasons["AAk-bad"]
    assert reasons[None] == "item is not an object"
    assert result.delta_link == "d"


def test_duplicates_keep_the_last_usable_occurrence():
    first = msg(subject="first")
    second = msg(subject="second")
    broken = msg(receivedDateTime="broken")
    result = parse_delta_page(page(first, second, broken, next_link="n"), INBOX)
    assert [m.subject for m in result.messages] == ["second"]
    assert result.rejected == []

    removed = {"id": MESSAGE["id"], "@removed": {"reason": "changed"}}
    result = parse_delta_page(page(first, removed, next_link="n"), INBOX)
    assert result.messages == [] and result.removed_ids == [MESSAGE["id"]]
    result = parse_delta_page(page(removed, second, next_link="n"), INBOX)
    assert [m.subject for m in result.messages] == ["second"] and result.removed_ids == []


def test_empty_page_with_next_link_is_fine():
    result = parse_delta_page(page(next_link="n"), INBOX)
    assert result.messages == [] and result.next_link == "n"


def test_page_without_links_is_malformed():
    with pytest.raises(MalformedResponse, match="neither"):
        parse_delta_page(page(MESSAGE), INBOX)
    with pytest.raises(MalformedResponse):
        parse_delta_page({"@odata.deltaLink": "d"}, INBOX)
    with pytest.raises(MalformedResponse):
        parse_delta_page(page(delta_link=["not", "a", "link"]), INBOX)


def test_removed_item_without_id_is_rejected():
    result = parse_delta_page(page({"@removed": {"reason": "deleted"}}, delta_link="d"), INBOX)
    assert result.rejected[0].graph_id is None


# --- MESSAGE_SELECT -----------------------------------------------------------------------


def test_select_lists_only_stored_fields_and_the_headers():
    assert "internetMessageHeaders" in MESSAGE_FIELDS
    assert "uniqueBody" not in MESSAGE_FIELDS and "attachments" not in MESSAGE_FIELDS
    assert MESSAGE_SELECT.split(",") == list(MESSAGE_FIELDS)


# --- MailDeltaReader ----------------------------------------------------------------------


class Tokens:
    def access_token(self, force_refresh: bool = False) -> str:
        return "t"


def reader(**kw) -> MailDeltaReader:
    graph = GraphClient(make_session(None, user_agent="t"), BASE, Tokens(), sleep=lambda s: None)
    return MailDeltaReader(graph, **kw)


@responses.activate
def test_delta_round_sends_prefer_on_every_request_and_query_only_first():
    first = f"{BASE}/me/mailFolders/AAMkAGI2TGuLAAA%3D/messages/delta"
    next_link = f"{BASE}/me/mailFolders('AAMkAGI2TGuLAAA%3D')/messages/delta?$skiptoken=S1"
    delta_link = f"{BASE}/me/mailFolders('AAMkAGI2TGuLAAA%3D')/messages/delta?$deltatoken=D1"
    responses.get(first, json=page(MESSAGE, next_link=next_link))
    responses.get(next_link, json=page(next_link=delta_link.replace("deltatoken", "skiptoken")))
    responses.get(
        delta_link.replace("deltatoken", "skiptoken"),
        json=page(msg(id="AAk2"), delta_link=delta_link),
    )
    since = datetime(2024, 5, 1, 12, 0, tzinfo=timezone(timedelta(hours=2)))
    pages = list(reader(page_size=250).pages(INBOX, resume_link=None, received_since=since))
    assert [len(p.messages) for p in pages] == [1, 0, 1]
    assert pages[-1].delta_link == delta_link

    prefer = 'odata.maxpagesize=250, IdType="ImmutableId"'
    assert [c.request.headers["Prefer"] for c in responses.calls] == [prefer] * 3
    query = parse_qs(urlsplit(responses.calls[0].request.url).query)
    assert query["$select"] == [MESSAGE_SELECT]
    assert query["$filter"] == ["receivedDateTime ge 2024-05-01T10:00:00Z"]
    assert "+" not in urlsplit(responses.calls[0].request.url).query
    assert responses.calls[1].request.url == next_link
    for call in responses.calls[1:]:
        assert "$select" not in call.request.url and "$filter" not in call.request.url


@responses.activate
def test_resume_link_is_followed_verbatim_with_prefer():
    link = f"{BASE}/me/mailFolders('x')/messages/delta?$deltatoken=abc%3D%3D"
    responses.get(link, json=page(delta_link=link))
    pages = list(reader(immutable_ids=False, page_size=10).pages(INBOX, resume_link=link))
    assert responses.calls[0].request.url == link
    assert responses.calls[0].request.headers["Prefer"] == "odata.maxpagesize=10"
    assert pages[0].delta_link == link


@responses.activate
def test_folders_follow_pages_and_recurse_into_children():
    top = f"{BASE}/me/mailFolders"
    responses.get(
        top,
        json={
            "value": [
                {"id": "F1", "displayName": "Inbox", "childFolderCount": 1, "totalItemCount": 9}
            ],
            "@odata.nextLink": f"{BASE}/me/mailFolders?$skip=1",
        },
        match=[matchers.query_param_matcher({"$top": "100"}, strict_match=False)],
    )
    responses.get(
        f"{BASE}/me/mailFolders?$skip=1",
        json={"value": [{"id": "F2", "displayName": "Sent Items", "childFolderCount": 0}]},
    )
    responses.get(
        f"{BASE}/me/mailFolders/F1/childFolders",
        json={"value": [{"id": "F3", "displayName": "Clients", "parentFolderId": "F1"}]},
    )
    flat = reader().folders()
    assert [f.graph_id for f in flat] == ["F1", "F2"]
    assert flat[0].total_items == 9 and flat[0].child_folder_count == 1
    deep = reader().folders(recursive=True)
    assert [f.graph_id for f in deep] == ["F1", "F2", "F3"]
    assert deep[2].parent_id == "F1"
    assert [f.graph_id for f in reader().with_child_folders(flat[1:])] == ["F2"]


@responses.activate
def test_with_child_folders_walks_grandchildren():
    inbox = MailFolder(graph_id="F1", display_name="Inbox", child_folder_count=1)
    responses.get(
        f"{BASE}/me/mailFolders/F1/childFolders",
        json={"value": [{"id": "F3", "displayName": "Clients", "childFolderCount": 1}]},
    )
    responses.get(
        f"{BASE}/me/mailFolders/F3/childFolders",
        json={"value": [{"id": "F4", "displayName": "Contoso", "parentFolderId": "F3"}]},
    )
    tree = reader().with_child_folders([inbox])
    assert [f.graph_id for f in tree] == ["F1", "F3", "F4"]


@responses.activate
def test_resolve_folder_by_well_known_name():
    responses.get(
        f"{BASE}/me/mailFolders/inbox",
        json={"id": INBOX, "displayName": "Inbox", "parentFolderId": "ROOT"},
    )
    folder = reader().resolve_folder("inbox")
    assert folder.graph_id == INBOX
    assert folder.well_known_name == "inbox"
    assert folder.display_name == "Inbox"
