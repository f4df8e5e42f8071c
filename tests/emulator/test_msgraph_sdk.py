"""Microsoft's own typed client (msgraph-sdk) against the emulator, for every call the daemon
makes (issue #14, point 8).

The SDK sends action parameters in PascalCase (``Message``, ``SaveToSentItems``, ``Comment``,
``SendResponse``, ``Schedules``, ``StartTime``, ``EndTime``, ``AvailabilityViewInterval``), as
Graph accepts them; each test checks the parameter took effect, not only that the call passed.
The access token comes from the emulator's token endpoint (authorization code + PKCE); httpx
is given the emulator's CA explicitly (it does not read REQUESTS_CA_BUNDLE the way requests
does). msgraph-sdk is a test extra (setup.cfg), never a runtime dependency.
"""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, date, datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
from azure.core.credentials import AccessToken
from kiota_abstractions.base_request_configuration import RequestConfiguration
from kiota_authentication_azure.azure_identity_authentication_provider import (
    AzureIdentityAuthenticationProvider,
)
from msgraph import GraphRequestAdapter, GraphServiceClient
from msgraph.generated.models.attendee import Attendee
from msgraph.generated.models.attendee_type import AttendeeType
from msgraph.generated.models.body_type import BodyType
from msgraph.generated.models.date_time_time_zone import DateTimeTimeZone
from msgraph.generated.models.email_address import EmailAddress
from msgraph.generated.models.event import Event
from msgraph.generated.models.item_body import ItemBody
from msgraph.generated.models.message import Message
from msgraph.generated.models.patterned_recurrence import PatternedRecurrence
from msgraph.generated.models.recipient import Recipient
from msgraph.generated.models.recurrence_pattern import RecurrencePattern
from msgraph.generated.models.recurrence_pattern_type import RecurrencePatternType
from msgraph.generated.models.recurrence_range import RecurrenceRange
from msgraph.generated.models.recurrence_range_type import RecurrenceRangeType
from msgraph.generated.users.item.calendar.get_schedule.get_schedule_post_request_body import (
    GetSchedulePostRequestBody,
)
from msgraph.generated.users.item.calendar_view.delta.delta_request_builder import (
    DeltaRequestBuilder as CalendarViewDelta,
)
from msgraph.generated.users.item.events.item.accept.accept_post_request_body import (
    AcceptPostRequestBody,
)
from msgraph.generated.users.item.events.item.decline.decline_post_request_body import (
    DeclinePostRequestBody,
)
from msgraph.generated.users.item.messages.item.create_reply.create_reply_post_request_body import (
    CreateReplyPostRequestBody,
)
from msgraph.generated.users.item.messages.item.reply.reply_post_request_body import (
    ReplyPostRequestBody,
)
from msgraph.generated.users.item.send_mail.send_mail_post_request_body import (
    SendMailPostRequestBody,
)
from msgraph.graph_request_adapter import options as SDK_OPTIONS
from msgraph_core import GraphClientFactory

from m365sync.emulator.server import Emulator, EmulatorSession
from tests.emulator.test_identity import SCOPE, get_code, redeem
from tests.invitations import add_invitation


class EmulatorCredential:
    """An azure-core TokenCredential holding one access token from the emulator."""

    def __init__(self, token: str, expires_in: int) -> None:
        self._token = AccessToken(token, int(time.time()) + expires_in)

    def get_token(self, *scopes: str, **kwargs: Any) -> AccessToken:
        return self._token


@pytest.fixture
def sdk(emulator: Emulator, http: EmulatorSession) -> GraphServiceClient:
    # The daemon's scopes, and Mail.ReadWrite for createReply (a draft), which it does not use.
    answer = redeem(http, emulator, get_code(http, emulator, scope=f"{SCOPE} Mail.ReadWrite"))
    assert answer.status_code == 200, answer.text
    body = answer.json()
    credential = EmulatorCredential(body["access_token"], int(body["expires_in"]))
    host = urlsplit(emulator.graph_url).hostname
    auth = AzureIdentityAuthenticationProvider(
        credential, scopes=["https://graph.microsoft.com/.default"], allowed_hosts=[host]
    )
    # The SDK's own middleware (its /users/me-token-to-replace -> /me rewrite included) on an
    # httpx client that trusts the emulator's CA.
    client = GraphClientFactory.create_with_default_middleware(
        client=httpx.AsyncClient(verify=str(emulator.ca_path), timeout=30), options=SDK_OPTIONS
    )
    adapter = GraphRequestAdapter(auth, client=client)
    adapter.base_url = emulator.graph_url
    return GraphServiceClient(request_adapter=adapter)


def run(coroutine):
    return asyncio.run(coroutine)


def _zone(moment: datetime) -> DateTimeTimeZone:
    return DateTimeTimeZone(date_time=moment.strftime("%Y-%m-%dT%H:%M:%S"), time_zone="UTC")


def _owner(emulator: Emulator) -> str:
    return str(emulator.mailbox.user["mail"])


# --- mail ---------------------------------------------------------------------------------


def test_mail_folders_and_messages_delta(sdk, emulator):
    folders = run(sdk.me.mail_folders.get())
    names = {f.display_name for f in folders.value}
    assert {"Inbox", "Sent Items"} <= names
    # v1.0's mailFolder has no sizeInBytes: the SDK's model would keep it as unknown data.
    assert all("sizeInBytes" not in f.additional_data for f in folders.value)

    inbox = run(sdk.me.mail_folders.by_mail_folder_id("inbox").get())
    page = run(sdk.me.mail_folders.by_mail_folder_id(inbox.id).messages.delta.get())
    seen = [m.id for m in page.value]
    while page.odata_next_link:
        builder = sdk.me.mail_folders.by_mail_folder_id(inbox.id).messages.delta
        page = run(builder.with_url(page.odata_next_link).get())
        seen += [m.id for m in page.value]
    assert page.odata_delta_link
    assert len(seen) == len(set(seen)) == inbox.total_item_count


def test_send_mail_takes_message_and_save_to_sent_items(sdk, emulator):
    message = Message(
        subject="Quote for the Lisbon office",
        body=ItemBody(content_type=BodyType.Html, content="<p>Here it is.</p>"),
        to_recipients=[Recipient(email_address=EmailAddress(address="nadia@fabrikam.com"))],
    )
    run(sdk.me.send_mail.post(SendMailPostRequestBody(message=message, save_to_sent_items=False)))
    sent = emulator.mailbox.sent()[-1]
    assert sent["kind"] == "sendMail"
    assert sent["subject"] == "Quote for the Lisbon office"
    assert sent["recipients"] == ["nadia@fabrikam.com"]
    assert sent["savedToSentItems"] is False  # SaveToSentItems=false was honoured


def test_reply_and_create_reply_take_the_comment(sdk, emulator):
    inbox = run(sdk.me.mail_folders.by_mail_folder_id("inbox").messages.get())
    original = inbox.value[0]
    run(
        sdk.me.messages.by_message_id(original.id).reply.post(
            ReplyPostRequestBody(comment="Thanks, Tuesday works.")
        )
    )
    sent = emulator.mailbox.sent()[-1]
    assert sent["kind"] == "reply" and sent["subject"].startswith("RE:")
    assert "Thanks, Tuesday works." in sent["body"]["content"]

    draft = run(
        sdk.me.messages.by_message_id(original.id).create_reply.post(
            CreateReplyPostRequestBody(comment="Draft: let me check the figures.")
        )
    )
    assert draft.is_draft is True
    assert "Draft: let me check the figures." in draft.body.content


# --- calendar -----------------------------------------------------------------------------


def test_events_calendar_view_delta_and_get_schedule(sdk, emulator):
    start = datetime.now(UTC).replace(hour=9, minute=0, second=0, microsecond=0)
    start += timedelta(days=3)
    event = Event(
        subject="Daily stand-up with Fabrikam",
        start=_zone(start),
        end=_zone(start + timedelta(minutes=30)),
        attendees=[
            Attendee(
                email_address=EmailAddress(address="nadia@fabrikam.com"),
                type=AttendeeType.Required,
            )
        ],
        recurrence=PatternedRecurrence(
            pattern=RecurrencePattern(type=RecurrencePatternType.Daily, interval=1),
            range=RecurrenceRange(
                type=RecurrenceRangeType.Numbered,
                start_date=start.date(),
                number_of_occurrences=3,
            ),
        ),
    )
    created = run(sdk.me.events.post(event))
    assert created.subject == "Daily stand-up with Fabrikam"
    assert created.recurrence.pattern.type == RecurrencePatternType.Daily
    # A daily pattern has no days: Graph sends no daysOfWeek key for it.
    assert (
        "daysOfWeek"
        not in emulator_json(emulator, f"/me/events/{created.id}")["recurrence"]["pattern"]
    )

    changed = run(
        sdk.me.events.by_event_id(created.id).patch(Event(subject="Stand-up (moved room)"))
    )
    assert changed.subject == "Stand-up (moved room)"

    window = RequestConfiguration(
        query_parameters=CalendarViewDelta.DeltaRequestBuilderGetQueryParameters(
            start_date_time=(start - timedelta(days=1)).isoformat(),
            end_date_time=(start + timedelta(days=5)).isoformat(),
        )
    )
    page = run(sdk.me.calendar_view.delta.get(request_configuration=window))
    items = list(page.value)
    while page.odata_next_link:
        page = run(sdk.me.calendar_view.delta.with_url(page.odata_next_link).get())
        items += page.value
    ours = [i for i in items if i.series_master_id == created.id]
    assert len(ours) == 3

    schedule = run(
        sdk.me.calendar.get_schedule.post(
            GetSchedulePostRequestBody(
                schedules=[_owner(emulator)],
                start_time=_zone(start),
                end_time=_zone(start + timedelta(hours=2)),
                availability_view_interval=60,
            )
        )
    )
    [info] = schedule.value
    assert info.schedule_id.lower() == _owner(emulator).lower()
    assert len(info.availability_view) == 2  # two hours at AvailabilityViewInterval=60
    assert info.availability_view[0] == "2"  # busy: the stand-up

    run(sdk.me.events.by_event_id(created.id).delete())
    assert created.id not in {e["id"] for e in emulator.mailbox.calendar.events()}


def test_accept_and_decline_honour_send_response_and_comment(sdk, emulator):
    first, second = (_invitation(emulator, f"Review {n}", n) for n in (1, 2))
    before = len(emulator.mailbox.sent())

    run(
        sdk.me.events.by_event_id(first["id"]).accept.post(
            AcceptPostRequestBody(comment="See you there", send_response=False)
        )
    )
    assert emulator_json(emulator, f"/me/events/{first['id']}")["responseStatus"]["response"] == (
        "accepted"
    )
    assert len(emulator.mailbox.sent()) == before  # SendResponse=false: the organizer is not told

    run(
        sdk.me.events.by_event_id(second["id"]).decline.post(
            DeclinePostRequestBody(comment="I am on leave that week.", send_response=True)
        )
    )
    answer = emulator.mailbox.sent()[-1]
    assert answer["subject"] == "Declined: Review 2"
    assert answer["recipients"] == ["anna.lidman@fabrikam.com"]
    assert answer["body"]["content"] == "I am on leave that week."


# --- helpers ------------------------------------------------------------------------------


def emulator_json(emulator: Emulator, path: str) -> dict[str, Any]:
    """A raw Graph answer, to see keys the SDK's models would hide."""
    from m365sync.emulator.identity import DEFAULT_SCOPES

    with EmulatorSession(emulator.ca_path, emulator.graph_url) as session:
        token = emulator.identity.mint_access_token(DEFAULT_SCOPES)
        session.headers["Authorization"] = f"Bearer {token}"
        response = session.get(path)
        assert response.status_code == 200, response.text
        return response.json()


def _invitation(emulator: Emulator, subject: str, days: int) -> dict[str, Any]:
    start = datetime.combine(date.today() + timedelta(days=days + 5), datetime.min.time())
    return add_invitation(emulator.mailbox, subject, start.replace(hour=14, tzinfo=UTC))
