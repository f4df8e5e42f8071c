"""Sending over real HTTPS: the documented immutable-id recipe, faults on ``/send`` (a 503
before, a dropped connection after the send took effect), and the control API's view."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import requests

from m365sync.emulator.server import Emulator, EmulatorSession

SCOPES = ["User.Read", "Mail.ReadWrite", "Mail.Send", "Calendars.ReadWrite"]
IMMUTABLE = {"Prefer": 'IdType="ImmutableId"'}
MESSAGE = {
    "subject": "Our offer",
    "body": {"contentType": "HTML", "content": "<p>Please find our offer.</p>"},
    "toRecipients": [{"emailAddress": {"address": "dana.birkby@fabrikam.com"}}],
    "internetMessageHeaders": [{"name": "x-m365sync-outbox", "value": "outbox-1"}],
}


@pytest.fixture
def writer(emulator: Emulator) -> Iterator[EmulatorSession]:
    """A Graph session whose token also carries Mail.ReadWrite (drafts need it)."""
    with EmulatorSession(emulator.ca_path, emulator.graph_url) as session:
        token = emulator.identity.mint_access_token(SCOPES)
        session.headers["Authorization"] = f"Bearer {token}"
        yield session


def test_create_send_then_get_the_same_id(writer: EmulatorSession, emulator: Emulator) -> None:
    created = writer.post("/me/messages", json=MESSAGE, headers=IMMUTABLE)
    assert created.status_code == 201
    assert created.headers["Preference-Applied"] == 'IdType="ImmutableId"'
    draft = created.json()
    sent = writer.post(f"/me/messages/{draft['id']}/send", headers=IMMUTABLE)
    assert sent.status_code == 202 and sent.content == b""
    copy_ = writer.get(
        f"/me/messages/{draft['id']}",
        params={"$select": "isDraft,internetMessageId,internetMessageHeaders"},
        headers=IMMUTABLE,
    ).json()
    assert copy_["isDraft"] is False
    assert copy_["internetMessageId"] == draft["internetMessageId"]
    assert copy_["internetMessageHeaders"] == MESSAGE["internetMessageHeaders"]
    assert [s["id"] for s in emulator.mailbox.sent()] == [draft["id"]]


def test_the_daemons_token_cannot_create_drafts(graph: EmulatorSession) -> None:
    answer = graph.post("/me/messages", json=MESSAGE)
    assert answer.status_code == 403
    assert answer.json()["error"]["code"] == "ErrorAccessDenied"


def test_a_503_on_send_sends_nothing(writer: EmulatorSession, emulator: Emulator) -> None:
    draft = writer.post("/me/messages", json=MESSAGE).json()
    emulator.faults.unavailable(r"/send$", times=1, retry_after="1")
    first = writer.post(f"/me/messages/{draft['id']}/send")
    assert first.status_code == 503 and first.headers["Retry-After"] == "1"
    assert emulator.mailbox.sent() == []
    assert writer.post(f"/me/messages/{draft['id']}/send").status_code == 202
    assert len(emulator.mailbox.sent()) == 1


def test_send_then_drop_sends_but_loses_the_answer(
    writer: EmulatorSession, emulator: Emulator, http: EmulatorSession
) -> None:
    draft = writer.post("/me/messages", json=MESSAGE, headers=IMMUTABLE).json()
    http.post("/_emulator/faults", json={"kind": "send_then_drop", "path": r"/send$"})
    with pytest.raises(requests.ConnectionError):
        writer.post(f"/me/messages/{draft['id']}/send", headers=IMMUTABLE)
    # The send took effect: the log, the Sent Items copy and the control API all show it ...
    (record,) = emulator.mailbox.sent()
    assert record["id"] == draft["id"]
    state = writer.get(f"/me/messages/{draft['id']}", params={"$select": "isDraft"}).json()
    assert state["isDraft"] is False
    assert [s["id"] for s in http.get("/_emulator/mail/sent").json()["value"]] == [draft["id"]]
    # ... so a client that retries blindly is told the draft is gone, and nothing goes twice.
    again = writer.post(f"/me/messages/{draft['id']}/send", headers=IMMUTABLE)
    assert again.status_code == 404 and again.json()["error"]["code"] == "ErrorItemNotFound"
    assert len(emulator.mailbox.sent()) == 1
    dropped = [r for r in emulator.requests if r.fault == "send_then_drop"]
    assert [(r.method, r.status) for r in dropped] == [("POST", None)]
    assert http.delete("/_emulator/mail/sent").status_code == 204
    assert emulator.mailbox.sent() == []


def test_control_api_settings_and_free_busy(
    writer: EmulatorSession, emulator: Emulator, http: EmulatorSession
) -> None:
    settings = http.post("/_emulator/mail/settings", json={"sendKeepsId": False}).json()
    assert settings == {"sendKeepsId": False, "sentCopyDelay": 0.0}
    draft = writer.post("/me/messages", json=MESSAGE).json()
    assert writer.post(f"/me/messages/{draft['id']}/send").status_code == 202
    assert writer.get(f"/me/messages/{draft['id']}").status_code == 404
    busy = [{"status": "busy", "start": "2030-01-07T10:00:00Z", "end": "2030-01-07T11:00:00Z"}]
    assert http.post(
        "/_emulator/calendar/free-busy", json={"address": "ben@litwareinc.com", "items": busy}
    ).ok
    answer = writer.post(
        "/me/calendar/getSchedule",
        json={
            "schedules": ["ben@litwareinc.com"],
            "startTime": {"dateTime": "2030-01-07T09:00:00", "timeZone": "UTC"},
            "endTime": {"dateTime": "2030-01-07T12:00:00", "timeZone": "UTC"},
            "availabilityViewInterval": 60,
        },
    ).json()
    assert answer["value"][0]["availabilityView"] == "020"
