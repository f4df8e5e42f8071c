"""Graph v1.0 user and mail endpoints of the emulator, through werkzeug's test client (no
server, no TLS) and once over real HTTPS through the `emulator` fixture.

The delta tests replay what a sync client does -- follow @odata.nextLink to an
@odata.deltaLink, upsert items by id, drop @removed ids -- and check that the client's copy
equals the mailbox, however the mailbox changed between and during rounds.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from werkzeug.test import Client
from werkzeug.wrappers import Request, Response

from m365sync.emulator import graph_api
from m365sync.emulator.mailbox import Mailbox

BASE = "https://graph.test"
ALL_SCOPES = frozenset(["User.Read", "Mail.Read", "Mail.Send", "Calendars.ReadWrite"])
DELTA = "/v1.0/me/mailFolders/inbox/messages/delta"


def client_for(mailbox: Mailbox, scopes: frozenset[str] = ALL_SCOPES) -> Client:
    """A test client for `graph_api.handle` alone (the server's job is done by hand)."""

    @Request.application
    def app(request: Request) -> Response:
        return graph_api.handle(request, mailbox, scopes=scopes, public_base=BASE)

    return Client(app)


@pytest.fixture(scope="module")
def seeded() -> Mailbox:
    return Mailbox.seeded(120, seed=7)


@pytest.fixture
def mailbox() -> Mailbox:
    return Mailbox.seeded(60, seed=3)


@pytest.fixture
def client(mailbox: Mailbox) -> Client:
    return client_for(mailbox)


def message(subject: str, received: str | None = None, **extra: Any) -> dict[str, Any]:
    sender = {"emailAddress": {"name": "Kevin Cook", "address": "kevin.cook@fabrikam.com"}}
    out: dict[str, Any] = {
        "subject": subject,
        "from": sender,
        "sender": sender,
        "toRecipients": [
            {"emailAddress": {"name": "Megan Bowen", "address": "MeganB@contoso.com"}}
        ],
        "body": {"contentType": "html", "content": f"<html><body><p>{subject}</p></body></html>"},
    }
    if received:
        out["receivedDateTime"] = received
    out.update(extra)
    return out


class SyncClient:
    """What a delta consumer keeps: id -> item, and the link to follow next."""

    def __init__(self, client: Client, start: str = DELTA, headers: dict[str, str] | None = None):
        self.client = client
        self.link: str = start
        self.headers = headers or {}
        self.items: dict[str, dict[str, Any]] = {}
        self.pages: list[dict[str, Any]] = []

    def step(self) -> bool:
        """Fetch one page; True when it ended a round (it carried a delta link)."""
        response = self.client.get(self.link, headers=self.headers)
        assert response.status_code == 200, response.json
        page = response.json
        self.pages.append(page)
        for item in page["value"]:
            if "@removed" in item:
                self.items.pop(item["id"], None)
            else:
                self.items[item["id"]] = item
        if "@odata.nextLink" in page:
            self.link = page["@odata.nextLink"]
            return False
        self.link = page["@odata.deltaLink"]
        return True

    def round(self) -> list[dict[str, Any]]:
        """Finish the current round; returns the items it carried."""
        first = len(self.pages)
        while not self.step():
            pass
        return [item for page in self.pages[first:] for item in page["value"]]


def truth(mailbox: Mailbox, folder: str = "inbox") -> dict[str, str]:
    return {m["id"]: m["changeKey"] for m in mailbox.messages_in(folder)}


def seen(sync: SyncClient) -> dict[str, str]:
    return {i: item["changeKey"] for i, item in sync.items.items()}


# --------------------------------------------------------------------------- /me and scopes


def test_me_returns_the_default_user_properties(client: Client, mailbox: Mailbox) -> None:
    response = client.get("/v1.0/me")
    assert response.status_code == 200
    body = response.json
    assert body["@odata.context"] == f"{BASE}/v1.0/$metadata#users/$entity"
    assert body["mail"] == "MeganB@contoso.com"
    assert body["id"] == mailbox.user["id"]
    assert set(body) - {"@odata.context"} == {
        "businessPhones",
        "displayName",
        "givenName",
        "id",
        "jobTitle",
        "mail",
        "mobilePhone",
        "officeLocation",
        "preferredLanguage",
        "surname",
        "userPrincipalName",
    }


def test_me_select_returns_only_what_was_asked(client: Client) -> None:
    body = client.get("/v1.0/me?$select=displayName,MAIL").json
    assert body == {
        "@odata.context": f"{BASE}/v1.0/$metadata#users(displayName,mail)/$entity",
        "displayName": "Megan Bowen",
        "mail": "MeganB@contoso.com",
    }


def test_users_by_upn_is_the_same_user_and_others_are_invalid(client: Client) -> None:
    assert client.get("/v1.0/users/meganb@contoso.com").json["displayName"] == "Megan Bowen"
    response = client.get("/v1.0/users/someone@contoso.com/mailFolders")
    assert response.status_code == 404
    assert response.json["error"]["code"] == "ErrorInvalidUser"


@pytest.mark.parametrize(
    ("path", "scopes"),
    [
        ("/v1.0/me", {"Mail.Read"}),
        (DELTA, {"User.Read"}),
        ("/v1.0/me/mailFolders", {"User.Read"}),
        ("/v1.0/me/messages", {"User.Read", "Mail.Send"}),
    ],
)
def test_missing_scope_is_access_denied(mailbox: Mailbox, path: str, scopes: set[str]) -> None:
    response = client_for(mailbox, frozenset(scopes)).get(path)
    assert response.status_code == 403
    error = response.json["error"]
    assert error["code"] == "ErrorAccessDenied"
    assert error["message"] == "Access is denied. Check credentials and try again."


def test_scopes_may_come_as_full_uris_and_readwrite(mailbox: Mailbox) -> None:
    scopes = frozenset(["https://graph.microsoft.com/Mail.ReadWrite"])
    assert client_for(mailbox, scopes).get("/v1.0/me/mailFolders").status_code == 200


def test_unknown_segment_and_query_option_are_bad_requests(client: Client) -> None:
    response = client.get("/v1.0/me/contacts")
    assert (response.status_code, response.json["error"]["code"]) == (400, "BadRequest")
    response = client.get("/v1.0/me/mailFolders?$bogus=1")
    assert (response.status_code, response.json["error"]["code"]) == (400, "BadRequest")


# --------------------------------------------------------------------------- folders


def test_folder_list_pages_by_ten_and_hides_hidden_folders(
    client: Client, mailbox: Mailbox
) -> None:
    first = client.get("/v1.0/me/mailFolders").json
    assert len(first["value"]) == 10
    assert first["@odata.nextLink"].startswith(f"{BASE}/v1.0/me/mailFolders?")
    second = client.get(first["@odata.nextLink"]).json
    assert "@odata.nextLink" not in second
    names = [f["displayName"] for f in first["value"] + second["value"]]
    assert "Clutter" not in names and "Inbox" in names and "Sent Items" in names
    assert len(names) == len(set(names)) == 11
    root = mailbox.resolve_folder("msgfolderroot")
    assert root is not None
    assert {f["parentFolderId"] for f in first["value"]} == {root["id"]}


def test_folder_list_top_and_hidden(client: Client) -> None:
    link = "/v1.0/me/mailFolders?includeHiddenFolders=true&$top=4"
    names: list[str] = []
    while link:
        page = client.get(link).json
        assert len(page["value"]) <= 4
        names += [f["displayName"] for f in page["value"]]
        link = page.get("@odata.nextLink")
    assert "Clutter" in names and len(names) == len(set(names)) == 12


def test_folder_fields_and_counts(client: Client, mailbox: Mailbox) -> None:
    inbox = client.get("/v1.0/me/mailFolders/Inbox").json
    assert set(inbox) == {
        "@odata.context",
        "id",
        "displayName",
        "parentFolderId",
        "childFolderCount",
        "unreadItemCount",
        "totalItemCount",
        "isHidden",
    }  # no sizeInBytes: it is a beta property, not in v1.0's mailFolder (issue #14)
    assert inbox["totalItemCount"] == len(mailbox.messages_in("inbox"))
    assert inbox["unreadItemCount"] == sum(not m["isRead"] for m in mailbox.messages_in("inbox"))
    # Newsletters, Key accounts and the search folder Weekly digests.
    assert inbox["childFolderCount"] == 3 and inbox["isHidden"] is False
    by_id = client.get(f"/v1.0/me/mailFolders/{inbox['id']}").json
    by_key = client.get(f"/v1.0/me/mailFolders('{inbox['id']}')").json
    assert by_id["id"] == by_key["id"] == inbox["id"]
    assert client.get("/v1.0/me/mailFolders/SENTITEMS").json["displayName"] == "Sent Items"


def test_child_folders(client: Client) -> None:
    page = client.get("/v1.0/me/mailFolders/inbox/childFolders").json
    names = [f["displayName"] for f in page["value"]]
    assert names == ["Newsletters", "Key accounts", "Weekly digests"]
    # A mailSearchFolder in a mailFolder collection carries its derived type and its query
    # (docs `api/user-list-mailfolders.md`, example 1; `resources/mailsearchfolder.md`).
    search = page["value"][2]
    assert search["@odata.type"] == "#microsoft.graph.mailSearchFolder"
    assert search["sourceFolderIds"] == [search["parentFolderId"]]
    assert {"isSupported", "includeNestedFolders", "filterQuery"} <= set(search)
    assert "@odata.type" not in page["value"][0]
    selected = client.get("/v1.0/me/mailFolders/inbox/childFolders?$select=displayName").json
    assert selected["value"][2] == {
        "@odata.type": "#microsoft.graph.mailSearchFolder",
        "id": search["id"],
        "displayName": "Weekly digests",
    }
    customers = next(
        f
        for f in client.get("/v1.0/me/mailFolders").json["value"]
        if f["displayName"] == "Customers"
    )
    kids = client.get(f"/v1.0/me/mailFolders/{customers['id']}/childFolders").json["value"]
    assert [f["displayName"] for f in kids] == ["Fabrikam"]
    nested = client.get(f"/v1.0/me/mailFolders/{customers['id']}/childFolders/{kids[0]['id']}")
    assert nested.json["displayName"] == "Fabrikam"


def test_unknown_and_malformed_folder_ids(client: Client) -> None:
    missing = client.get("/v1.0/me/mailFolders/AAMkADNkNAAAgEMAAAAAAAAAAAAAAAA=")
    assert missing.status_code == 404
    assert missing.json["error"]["code"] == "ErrorItemNotFound"
    malformed = client.get("/v1.0/me/mailFolders/no such folder")
    assert malformed.status_code == 400
    assert malformed.json["error"]["code"] == "ErrorInvalidIdMalformed"
    assert client.get("/v1.0/me/mailFolders/bogus!/messages/delta").status_code == 400


# --------------------------------------------------------------------------- delta basics


def test_initial_round_returns_every_message_once(client: Client, mailbox: Mailbox) -> None:
    sync = SyncClient(client, headers={"Prefer": "odata.maxpagesize=7"})
    items = sync.round()
    assert len(items) == len({i["id"] for i in items}) == len(truth(mailbox))
    assert seen(sync) == truth(mailbox)
    assert all(len(p["value"]) <= 7 for p in sync.pages)
    assert len(sync.pages) > 1
    assert all(i["@odata.type"] == "#microsoft.graph.message" for i in items)
    assert all(i["@odata.etag"] == f'W/"{i["changeKey"]}"' for i in items)
    assert sync.round() == []  # nothing new: an empty second round


def test_links_use_the_rewritten_path_form_and_token_params(
    client: Client, mailbox: Mailbox
) -> None:
    inbox = mailbox.resolve_folder("inbox")
    assert inbox is not None
    page = client.get(DELTA, headers={"Prefer": "odata.maxpagesize=5"}).json
    prefix = f"{BASE}/v1.0/me/mailFolders('{inbox['id']}')/messages/delta?"
    assert page["@odata.context"] == f"{BASE}/v1.0/$metadata#Collection(message)"
    assert page["@odata.nextLink"].startswith(prefix + "$skiptoken=")
    sync = SyncClient(client, start=page["@odata.nextLink"])
    sync.round()
    assert sync.link.startswith(prefix + "$deltatoken=")
    # The plain path form with a token works too (docs' requests use both forms).
    plain = sync.link.replace(f"mailFolders('{inbox['id']}')", f"mailfolders/{inbox['id']}")
    assert client.get(plain).status_code == 200


def test_select_is_kept_by_the_tokens(client: Client) -> None:
    sync = SyncClient(
        client,
        start=DELTA + "?$select=subject,sender,isRead",
        headers={"Prefer": "odata.maxpagesize=4"},
    )
    items = sync.round()
    assert len(sync.pages) > 2
    for item in items:
        assert set(item) == {"@odata.type", "@odata.etag", "subject", "sender", "isRead", "id"}


def test_unknown_select_property_is_rejected(client: Client) -> None:
    response = client.get(DELTA + "?$select=subject,nosuch")
    assert response.status_code == 400
    assert "nosuch" in response.json["error"]["message"]


def test_max_page_size_is_a_capped_maximum_and_echoed(mailbox: Mailbox) -> None:
    for n in range(1100):
        mailbox.add_message("inbox", message(f"bulk {n}"))
    client = client_for(mailbox)
    response = client.get(DELTA, headers={"Prefer": "odata.maxpagesize=5000"})
    assert response.headers["Preference-Applied"] == "odata.maxpagesize=1000"
    assert len(response.json["value"]) == 1000
    default = client.get(DELTA)
    assert "Preference-Applied" not in default.headers
    assert len(default.json["value"]) == 10
    top = client.get(DELTA + "?$top=3").json
    assert len(top["value"]) == 3
    assert len(client.get(top["@odata.nextLink"]).json["value"]) == 3  # $top rides in the token


def test_several_preferences_in_one_header(client: Client) -> None:
    response = client.get(
        DELTA,
        headers={
            "Prefer": 'outlook.body-content-type="text", odata.maxpagesize=2, IdType="ImmutableId"'
        },
    )
    applied = {p.strip() for p in response.headers["Preference-Applied"].split(",")}
    assert applied == {
        'outlook.body-content-type="text"',
        "odata.maxpagesize=2",
        'IdType="ImmutableId"',
    }
    for item in response.json["value"]:
        assert item["body"]["contentType"] == "text"
        assert "<" not in item["body"]["content"]


def test_filter_window_first_round_only(client: Client, mailbox: Mailbox) -> None:
    cutoff = datetime.now(UTC) - timedelta(days=90)
    stamp = cutoff.strftime("%Y-%m-%dT%H:%M:%SZ")
    sync = SyncClient(client, start=f"{DELTA}?$filter=receivedDateTime ge {stamp}")
    items = sync.round()
    expected = {m["id"] for m in mailbox.messages_in("inbox") if m["receivedDateTime"] >= stamp}
    assert {i["id"] for i in items} == expected
    assert 0 < len(expected) < len(truth(mailbox))
    old = next(m for m in mailbox.messages_in("inbox") if m["id"] not in expected)
    mailbox.update_message(old["id"], {"isRead": not old["isRead"]})
    assert [i["id"] for i in sync.round()] == [old["id"]]  # later rounds report every change


def test_filter_gt_excludes_the_boundary(mailbox: Mailbox) -> None:
    folder = mailbox.add_folder("Window")
    for day in (1, 2, 3):
        mailbox.add_message(folder["id"], message(f"d{day}", f"2024-01-0{day}T00:00:00Z"))
    client = client_for(mailbox)
    base = f"/v1.0/me/mailFolders/{folder['id']}/messages/delta?$filter=receivedDateTime"
    ge = client.get(f"{base} ge 2024-01-02T00:00:00Z").json["value"]
    gt = client.get(f"{base} gt 2024-01-02T00:00:00Z").json["value"]
    assert sorted(i["subject"] for i in ge) == ["d2", "d3"]
    assert [i["subject"] for i in gt] == ["d3"]


def test_filter_returns_at_most_5000_messages(mailbox: Mailbox) -> None:
    folder = mailbox.add_folder("Big")
    start = datetime(2024, 1, 1, tzinfo=UTC)
    for n in range(5100):
        when = (start + timedelta(minutes=n)).strftime("%Y-%m-%dT%H:%M:%SZ")
        mailbox.add_message(folder["id"], message(f"m{n}", when))
    client = client_for(mailbox)
    link = (
        f"/v1.0/me/mailFolders/{folder['id']}/messages/delta?$filter=receivedDateTime ge 2023-01-01"
    )
    sync = SyncClient(client, start=link, headers={"Prefer": "odata.maxpagesize=1000"})
    items = sync.round()
    assert len(items) == 5000
    assert min(i["receivedDateTime"] for i in items) == "2024-01-01T01:40:00Z"  # the newest 5000
    full = SyncClient(client, start=f"/v1.0/me/mailFolders/{folder['id']}/messages/delta")
    full.headers = {"Prefer": "odata.maxpagesize=1000"}
    assert len(full.round()) == 5100  # no filter, no cap


@pytest.mark.parametrize(
    ("query", "code"),
    [
        ("$filter=subject eq 'x'", "ErrorInvalidUrlQuery"),
        ("$filter=receivedDateTime lt 2024-01-01", "ErrorInvalidUrlQuery"),
        ("$orderby=subject", "ErrorInvalidUrlQuery"),
        ("$search=pizza", "ErrorInvalidUrlQuery"),
        ("$skip=5", "ErrorInvalidUrlQuery"),
        ("changeType=moved", "ErrorInvalidUrlQuery"),
    ],
)
def test_unsupported_delta_options_are_400(client: Client, query: str, code: str) -> None:
    response = client.get(f"{DELTA}?{query}")
    assert response.status_code == 400
    assert response.json["error"]["code"] == code


def test_orderby_received_desc_is_supported(client: Client) -> None:
    sync = SyncClient(client, start=f"{DELTA}?$orderby=receivedDateTime desc")
    received = [i["receivedDateTime"] for i in sync.round()]
    assert received == sorted(received, reverse=True)


# --------------------------------------------------------------------------- delta changes


def test_changes_between_rounds(client: Client, mailbox: Mailbox) -> None:
    sync = SyncClient(client, headers={"Prefer": "odata.maxpagesize=9"})
    sync.round()
    inbox_ids = list(truth(mailbox))
    added = mailbox.add_message("inbox", message("new one"))
    mailbox.update_message(inbox_ids[0], {"isRead": True, "categories": ["Red"]})
    mailbox.move_message(inbox_ids[1], "archive")
    mailbox.delete_message(inbox_ids[2])
    sent = mailbox.messages_in("sentitems")[0]
    mailbox.move_message(sent["id"], "inbox")
    items = {i["id"]: i for i in sync.round()}
    assert set(items) == {added["id"], inbox_ids[0], inbox_ids[1], inbox_ids[2], sent["id"]}
    removed = {"@odata.type": "#microsoft.graph.message", "@removed": {"reason": "deleted"}}
    assert items[inbox_ids[1]] == {**removed, "id": inbox_ids[1]}
    assert items[inbox_ids[2]] == {**removed, "id": inbox_ids[2]}
    assert items[sent["id"]]["id"] == sent["id"]  # the moved-in message keeps its id
    assert items[inbox_ids[0]]["categories"] == ["Red"]
    assert seen(sync) == truth(mailbox)


def test_moves_show_in_both_folders(client: Client, mailbox: Mailbox) -> None:
    inbox = SyncClient(client)
    archive = SyncClient(client, start="/v1.0/me/mailFolders/archive/messages/delta")
    inbox.round()
    archive.round()
    moved = next(iter(truth(mailbox)))
    mailbox.move_message(moved, "archive")
    assert [i.get("@removed") for i in inbox.round()] == [{"reason": "deleted"}]
    arrived = archive.round()
    assert [i["id"] for i in arrived] == [moved] and arrived[0]["parentFolderId"]
    assert seen(archive) == truth(mailbox, "archive")


def test_changes_during_a_round_are_never_lost(client: Client, mailbox: Mailbox) -> None:
    sync = SyncClient(client, headers={"Prefer": "odata.maxpagesize=4"})
    sync.step()
    ids = list(truth(mailbox))
    mailbox.update_message(ids[0], {"subject": "changed after it was served"})
    mailbox.update_message(ids[-1], {"subject": "changed before it was served"})
    mailbox.delete_message(ids[-2])
    mailbox.add_message("inbox", message("arrived mid-round"))
    sync.step()
    mailbox.move_message(ids[-3], "archive")
    while not sync.step():
        pass
    sync.round()
    assert seen(sync) == truth(mailbox)
    assert sync.round() == []


def test_change_type_created_only_reports_new_messages(client: Client, mailbox: Mailbox) -> None:
    sync = SyncClient(client, start=f"{DELTA}?changeType=created")
    assert len(sync.round()) == len(truth(mailbox))  # the initial round has everything
    ids = list(truth(mailbox))
    mailbox.update_message(ids[0], {"isRead": True})
    mailbox.delete_message(ids[1])
    new = mailbox.add_message("inbox", message("fresh"))
    assert [i["id"] for i in sync.round()] == [new["id"]]


def test_replayed_links_are_legal_and_lose_nothing(client: Client, mailbox: Mailbox) -> None:
    first = client.get(DELTA, headers={"Prefer": "odata.maxpagesize=5"}).json
    again = client.get(first["@odata.nextLink"]).json
    replay = client.get(first["@odata.nextLink"]).json
    assert [i["id"] for i in again["value"]] == [i["id"] for i in replay["value"]]
    sync = SyncClient(client)
    sync.round()
    delta_link = sync.link
    mailbox.add_message("inbox", message("after"))
    once = SyncClient(client, start=delta_link).round()
    twice = SyncClient(client, start=delta_link).round()
    assert [i["id"] for i in once] == [i["id"] for i in twice] and len(once) == 1


def test_dropped_or_unknown_tokens_answer_410(client: Client, mailbox: Mailbox) -> None:
    first = client.get(DELTA, headers={"Prefer": "odata.maxpagesize=5"}).json
    sync = SyncClient(client)
    sync.round()
    assert mailbox.drop_sync_states() > 0
    for link in (first["@odata.nextLink"], sync.link, f"{DELTA}?$deltatoken=nonsense"):
        response = client.get(link)
        assert response.status_code == 410
        error = response.json["error"]
        assert error["code"] == "SyncStateNotFound"
        assert "innerError" not in error  # real 410 bodies carry none
    assert client.get(DELTA).status_code == 200  # starting over works


def test_a_token_from_another_folder_is_gone(client: Client) -> None:
    sync = SyncClient(client)
    sync.round()
    token = sync.link.split("?", 1)[1]
    response = client.get(f"/v1.0/me/mailFolders/sentitems/messages/delta?{token}")
    assert response.status_code == 410


def test_raw_items_come_back_as_stored(client: Client, mailbox: Mailbox) -> None:
    sync = SyncClient(client)
    sync.round()
    raw = {"id": "AAMkADbrokenbrokenbroken=", "subject": 42, "from": "not an object"}
    mailbox.add_raw_message("inbox", raw)
    assert sync.round() == [raw]


def test_get_message_by_id(client: Client, mailbox: Mailbox) -> None:
    target = mailbox.messages_in("sentitems")[0]
    body = client.get(
        f"/v1.0/me/messages/{target['id']}?$select=subject,internetMessageHeaders"
    ).json
    assert body["subject"] == target["subject"] and body["id"] == target["id"]
    assert "@odata.type" not in body and body["@odata.context"].endswith("/messages/$entity")
    assert client.get("/v1.0/me/messages/AAMkADNkNAAAgEMAAAAAAAAAAAAAAAA=").status_code == 404


# --------------------------------------------------------------------------- property test

operations = st.lists(
    st.tuples(
        st.sampled_from(["page", "add", "update", "move_out", "move_in", "delete", "raw"]),
        st.integers(min_value=0, max_value=10_000),
    ),
    max_size=40,
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(operations, st.integers(min_value=1, max_value=6))
def test_no_change_is_ever_lost(ops: list[tuple[str, int]], page_size: int) -> None:
    mailbox = Mailbox.seeded(30, seed=11)
    sync = SyncClient(client_for(mailbox), headers={"Prefer": f"odata.maxpagesize={page_size}"})
    for op, n in ops:
        inbox = mailbox.message_ids_in("inbox")
        archive = mailbox.message_ids_in("archive")
        if op == "page":
            sync.step()
        elif op == "add":
            mailbox.add_message("inbox", message(f"m{n}"))
        elif op == "raw":
            mailbox.add_raw_message("inbox", {"subject": f"raw {n}", "changeKey": f"raw{n}"})
        elif op == "update" and inbox:
            mailbox.update_message(inbox[n % len(inbox)], {"subject": f"edit {n}"})
        elif op == "move_out" and inbox:
            mailbox.move_message(inbox[n % len(inbox)], "archive")
        elif op == "move_in" and archive:
            mailbox.move_message(archive[n % len(archive)], "inbox")
        elif op == "delete" and inbox:
            mailbox.delete_message(inbox[n % len(inbox)])
    while not sync.step():  # finish whatever round is under way
        pass
    sync.round()  # and one more that starts after the last change
    assert seen(sync) == truth(mailbox)


# --------------------------------------------------------------------------- real HTTPS


def test_delta_over_https(emulator: Any) -> None:
    from m365sync.emulator.identity import DEFAULT_SCOPES

    token = emulator.identity.mint_access_token(DEFAULT_SCOPES)
    headers = {"Authorization": f"Bearer {token}", "Prefer": "odata.maxpagesize=25"}
    import requests

    link = f"{emulator.graph_url}/me/mailFolders/inbox/messages/delta?$select=subject,from"
    ids: list[str] = []
    while True:
        response = requests.get(link, headers=headers, verify=str(emulator.ca_path), timeout=10)
        assert response.status_code == 200, response.text
        assert response.headers["Preference-Applied"] == "odata.maxpagesize=25"
        page = response.json()
        ids += [item["id"] for item in page["value"]]
        if "@odata.deltaLink" in page:
            break
        link = page["@odata.nextLink"]
        assert link.startswith(emulator.graph_url)
    assert sorted(ids) == sorted(emulator.mailbox.message_ids_in("inbox"))
    me = requests.get(
        f"{emulator.graph_url}/me", headers=headers, verify=str(emulator.ca_path), timeout=10
    )
    assert me.json()["userPrincipalName"] == emulator.mailbox.user["userPrincipalName"]


def test_list_messages_expands_attachments_with_a_nested_select(
    client: Client, mailbox: Mailbox
) -> None:
    """List messages (not delta) honours ``$expand=attachments($select=...)`` and
    ``$filter=hasAttachments eq true``, alone or with a date clause."""
    flagged = {m["id"] for m in mailbox.messages_in("inbox") if m.get("hasAttachments")}
    assert flagged
    path = (
        "/v1.0/me/mailFolders/inbox/messages?$select=id&$top=1000"
        "&$filter=hasAttachments eq true and receivedDateTime ge 2000-01-01T00:00:00Z"
        "&$expand=attachments($select=name,size,contentType,isInline)"
    )
    answer = client.get(path)
    assert answer.status_code == 200, answer.json
    items = answer.json["value"]
    assert {item["id"] for item in items} == flagged
    for item in items:
        assert {k for k in item if not k.startswith("@odata")} == {"id", "attachments"}
        assert [a["name"] for a in item["attachments"]] == [
            a["name"] for a in mailbox.attachments(item["id"])
        ]
        for attachment in item["attachments"]:
            assert "contentBytes" not in attachment
            assert set(attachment) == {
                "@odata.type",
                "id",
                "name",
                "size",
                "contentType",
                "isInline",
            }
    whole = client.get("/v1.0/me/mailFolders/inbox/messages?$select=id&$expand=attachments&$top=5")
    assert whole.status_code == 200
    files = [a for item in whole.json["value"] for a in item["attachments"]]
    assert all("contentBytes" in a for a in files if a["@odata.type"].endswith("fileAttachment"))
    bad = client.get("/v1.0/me/mailFolders/inbox/messages?$expand=attachments($select=contentId)")
    assert bad.status_code == 400 and "contentId" in bad.json["error"]["message"]
    other = client.get("/v1.0/me/mailFolders/inbox/messages?$expand=singleValueExtendedProperties")
    assert other.status_code == 400
    odd = client.get("/v1.0/me/mailFolders/inbox/messages?$filter=isRead eq true")
    assert odd.status_code == 400


# --------------------------------------------------------------------------- the whole mailbox


def _list_all(client: Client, link: str) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Every item of a message list, following each @odata.nextLink whole; and the pages."""
    items: list[dict[str, Any]] = []
    pages: list[dict[str, Any]] = []
    while link:
        answer = client.get(link)
        assert answer.status_code == 200, answer.json
        pages.append(answer.json)
        items += answer.json["value"]
        link = answer.json.get("@odata.nextLink", "")
    return items, pages


def test_me_messages_lists_every_folder_of_the_mailbox_but_recoverable_items(
    client: Client, mailbox: Mailbox
) -> None:
    """GET /me/messages: "the messages in the signed-in user's mailbox (including the Deleted
    Items and Clutter folders)" (docs `api/user-list-messages.md`): a folder of the person's
    own, a nested one, Deleted Items and hidden Clutter are listed; Recoverable Items, outside
    the folder tree, is not."""
    filed = mailbox.add_folder("Filed by hand")
    nested = mailbox.add_folder("Fabrikam", filed["id"])
    in_own = mailbox.add_message(filed["id"], message("filed by hand"))["id"]
    in_nested = mailbox.add_message(nested["id"], message("filed deeper"))["id"]
    in_clutter = mailbox.add_message("clutter", message("low priority"))["id"]
    trashed = mailbox.messages_in("inbox")[0]["id"]
    mailbox.move_message(trashed, "deleteditems")
    purged = mailbox.messages_in("inbox")[0]["id"]
    mailbox.move_message(purged, "recoverableitemsdeletions")
    folders = {f["id"]: f for f in mailbox.folders()}
    root = folders[mailbox.resolve_folder("msgfolderroot")["id"]]

    def in_tree(folder: dict[str, Any]) -> bool:
        while folder["id"] != root["id"]:
            if folder["parentFolderId"] not in folders:
                return False
            folder = folders[folder["parentFolderId"]]
        return True

    visible = [
        mid for f in folders.values() if in_tree(f) for mid in mailbox.message_ids_in(f["id"])
    ]
    assert purged not in visible
    items, pages = _list_all(client, "/v1.0/me/messages?$select=id,subject&$top=7")
    ids = [item["id"] for item in items]
    assert sorted(ids) == sorted(visible) and len(ids) == len(set(ids))
    assert {in_own, in_nested, in_clutter, trashed} <= set(ids) and purged not in ids
    assert len(pages) == -(-len(visible) // 7) and all(len(p["value"]) == 7 for p in pages[:-1])
    user_id = mailbox.user["id"]
    assert {p["@odata.context"] for p in pages} == {
        f"{BASE}/v1.0/$metadata#users('{user_id}')/messages"
    }
    assert all(p["@odata.nextLink"].startswith(f"{BASE}/v1.0/me/messages?") for p in pages[:-1])
    for item in items:
        assert {k for k in item if not k.startswith("@odata")} == {"id", "subject"}
    received = [m["receivedDateTime"] for m in (mailbox.view(i) for i in ids)]
    assert received == sorted(received, reverse=True)  # newest first, as a folder's list
    default = client.get("/v1.0/me/messages").json
    assert len(default["value"]) == 10 and "@odata.nextLink" in default  # Graph's page of 10
    assert (
        client.get(f"/v1.0/users/{mailbox.user['userPrincipalName']}/messages").status_code == 200
    )


def test_me_messages_filters_by_sent_time_and_selects_internet_headers(
    client: Client, mailbox: Mailbox
) -> None:
    """The window a client reads to find a copy it sent, wherever it was filed since: mail
    sent since an instant, with its internet headers (selected, never by default)."""
    header = [{"name": "x-m365sync-outbox", "value": "m365sync-outbox-7"}]
    late = "2031-05-04T10:00:00Z"
    archived = mailbox.add_message(
        "archive", message("archived", late, sentDateTime=late, internetMessageHeaders=header)
    )["id"]
    deleted = mailbox.add_message(
        "deleteditems", message("deleted", late, sentDateTime="2031-05-04T10:05:00Z")
    )["id"]
    mailbox.add_message("recoverableitemsdeletions", message("purged", late, sentDateTime=late))
    mailbox.add_message("archive", message("older", "2031-05-04T09:00:00Z"))
    query = (
        "/v1.0/me/messages?$filter=sentDateTime ge 2031-05-04T09:30:00Z"
        "&$select=id,internetMessageId,internetMessageHeaders&$top=1"
    )
    items, pages = _list_all(client, query)
    assert sorted(i["id"] for i in items) == sorted([archived, deleted])
    assert len(pages) == 2  # the filter and $select ride along in the nextLink
    by_id = {i["id"]: i for i in items}
    assert by_id[archived]["internetMessageHeaders"] == header
    plain = client.get("/v1.0/me/messages?$filter=sentDateTime ge 2031-05-04T09:30:00Z").json
    assert plain["value"] and all("internetMessageHeaders" not in i for i in plain["value"])
    odd = client.get("/v1.0/me/messages?$filter=isRead eq true")
    assert odd.status_code == 400
