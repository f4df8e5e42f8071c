"""Graph error bodies -> typed errors: by status and case-insensitive code, never by message."""

from __future__ import annotations

import pytest
import responses

from m365sync.errors import (
    GraphError,
    InsufficientPermissions,
    MailboxUnavailable,
    NotFound,
    PreconditionFailed,
    SyncStateGone,
    Throttled,
    Transient,
)
from m365sync.graph.client import GraphClient, error_details, error_for
from m365sync.graph.transport import make_session

BASE = "https://graph.example.test/v1.0"


class Tokens:
    def access_token(self, force_refresh: bool = False) -> str:
        return "t"


def client() -> GraphClient:
    return GraphClient(
        make_session(None, user_agent="t"), BASE, Tokens(), sleep=lambda s: None, max_attempts=2
    )


def body(code: str, message: str = "", inner: bool = True) -> dict:
    error: dict = {"code": code, "message": message}
    if inner:
        error["innerError"] = {"date": "2024-05-01T10:00:00", "request-id": "rid-1"}
    return {"error": error}


@pytest.mark.parametrize(
    ("status", "code", "expected"),
    [
        # 410 with any spelling, or none
        (410, "SyncStateNotFound", SyncStateGone),
        (410, "syncStateNotFound", SyncStateGone),
        (410, "resyncRequired", SyncStateGone),
        (410, "fullSyncRequired", SyncStateGone),
        (410, "SomethingNew", SyncStateGone),
        # access denied
        (403, "ErrorAccessDenied", InsufficientPermissions),
        (403, "accessDenied", InsufficientPermissions),
        (403, "Authorization_RequestDenied", InsufficientPermissions),
        (403, "AUTHORIZATION_REQUESTDENIED", InsufficientPermissions),
        # mailbox states (Twenty's list)
        (404, "MailboxNotEnabledForRESTAPI", MailboxUnavailable),
        (404, "mailboxnotenabledforrestapi", MailboxUnavailable),
        (404, "RESTAPINotEnabledForComponentSharedMailbox", MailboxUnavailable),
        (403, "ErrorInvalidLicense", MailboxUnavailable),
        (404, "ErrorNonExistentMailbox", MailboxUnavailable),
        (500, "ErrorNonExistentMailbox", MailboxUnavailable),
        (403, "ErrorOrganizationAccessBlocked", MailboxUnavailable),
        # others
        (404, "ErrorItemNotFound", NotFound),
        (404, "itemNotFound", NotFound),
        (404, None, NotFound),
        (412, "ErrorIrresolvableConflict", PreconditionFailed),
        (400, "ErrorInvalidRequest", GraphError),
        (409, "ErrorIrresolvableConflict", GraphError),
        (403, "SomeOtherForbidden", GraphError),
        (500, "UnknownError", Transient),
        (502, None, Transient),
        (503, "ServiceUnavailable", Transient),
        (429, "ApplicationThrottled", Throttled),
    ],
)
def test_error_for_maps_status_and_code(status, code, expected):
    error = error_for(status, code, "")
    assert type(error) is expected
    assert error.status == status
    assert error.code == code


def test_message_is_never_used_to_decide():
    misleading = error_for(404, "ErrorItemNotFound", "SyncStateNotFound access denied 410")
    assert type(misleading) is NotFound


@responses.activate
@pytest.mark.parametrize(
    ("status", "payload", "expected"),
    [
        (
            410,
            body("SyncStateNotFound", "The sync state generation is not found", inner=False),
            SyncStateGone,
        ),
        (
            404,
            body("MailboxNotEnabledForRESTAPI", "The mailbox is either inactive"),
            MailboxUnavailable,
        ),
        (403, body("ErrorAccessDenied", "Access is denied."), InsufficientPermissions),
        (412, body("ErrorIrresolvableConflict", ""), PreconditionFailed),
        (400, body("ErrorInvalidIdMalformed", ""), GraphError),
    ],
)
def test_client_raises_typed_errors(status, payload, expected):
    responses.get(f"{BASE}/me/x", status=status, json=payload)
    with pytest.raises(expected) as info:
        client().get_json("/me/x")
    assert info.value.status == status


@responses.activate
def test_mailbox_unavailable_on_5xx_is_not_retried():
    responses.get(f"{BASE}/me/x", status=503, json=body("ErrorNonExistentMailbox"))
    with pytest.raises(MailboxUnavailable):
        client().get_json("/me/x")
    assert len(responses.calls) == 1


def _response(status: int, content: bytes, headers: dict | None = None):
    import requests

    response = requests.Response()
    response.status_code = status
    response._content = content
    response.headers.update(headers or {})
    return response


@pytest.mark.parametrize(
    "content",
    [
        b"",
        b"<html><head><title>502 Bad Gateway</title></head></html>",
        b"{not json",
        b"[]",
        b'"just a string"',
        b'{"error": null}',
        b'{"error": {}}',
        b'{"error": {"code": 42, "message": ["x"]}}',
        b'{"error": {"code": "X", "innerError": "oops"}}',
        b'{"unexpected": true}',
        b"\xff\xfe\x00garbage",
    ],
)
def test_error_details_never_crash(content):
    code, message, request_id = error_details(_response(400, content))
    assert code is None or isinstance(code, str)
    assert isinstance(message, str)
    assert request_id is None


def test_error_details_reads_code_message_and_request_id():
    payload = (
        b'{"error": {"code": "ErrorItemNotFound", "message": "Not found.", '
        b'"innerError": {"request-id": "rid-9", "date": "2024-01-01T00:00:00"}}}'
    )
    assert error_details(_response(404, payload)) == ("ErrorItemNotFound", "Not found.", "rid-9")
    headers = {"request-id": "from-header"}
    assert error_details(_response(404, payload, headers))[2] == "from-header"


def test_oauth_style_error_string_is_a_code():
    assert error_details(_response(401, b'{"error": "invalid_token"}'))[0] == "invalid_token"


def test_long_messages_are_cut():
    payload = b'{"error": {"code": "X", "message": "' + b"a" * 5000 + b'"}}'
    assert len(error_details(_response(400, payload))[1]) < 400


@responses.activate
def test_html_error_page_with_5xx_is_transient():
    responses.get(f"{BASE}/me/x", status=500, body="<html>oops</html>", content_type="text/html")
    with pytest.raises(Transient) as info:
        client().get_json("/me/x")
    assert info.value.code is None
