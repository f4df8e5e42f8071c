"""Change-notification subscriptions over real HTTPS, delivered to a real receiver.

The receiver is a small threaded ``http.server`` on loopback (plain http, which the emulator
lets through with ``allow_http``; one test serves it over TLS with its own trustme CA). Timeouts
and retry delays are shortened on the running emulator so the file stays fast.
"""

from __future__ import annotations

import json
import ssl
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import trustme

from m365sync.emulator.server import Emulator, EmulatorSession

CLIENT_STATE = "s3cret-client-state"
MESSAGE = {
    "subject": "Quote for 40 chairs",
    "from": {"emailAddress": {"name": "Dana", "address": "dana.birkby@fabrikam.com"}},
    "body": {"contentType": "text", "content": "Hello"},
}
EVENT = {
    "subject": "Kick-off",
    "start": {"dateTime": "2027-03-01T10:00:00", "timeZone": "UTC"},
    "end": {"dateTime": "2027-03-01T10:30:00", "timeZone": "UTC"},
}


# --------------------------------------------------------------------------- the receiver


class Receiver:
    """Records POSTs; answers validation requests by echoing the token unless told otherwise."""

    def __init__(self, *, tls: ssl.SSLContext | None = None) -> None:
        self.posts: list[dict[str, Any]] = []
        self.validations: list[dict[str, Any]] = []
        self.validation_answer: Callable[[str], tuple[int, str]] = lambda t: (200, t)
        self.validation_delay = 0.0
        self.statuses: list[int] = []  # answers for notification POSTs, then 202
        self._cond = threading.Condition()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                parts = urlsplit(self.path)
                query = parse_qs(parts.query)
                data = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                if "validationToken" in query:
                    token = query["validationToken"][0]
                    with receiver._cond:
                        receiver.validations.append(
                            {
                                "path": parts.path,
                                "query": query,
                                "content_type": self.headers.get("Content-Type"),
                                "token": token,
                            }
                        )
                    time.sleep(receiver.validation_delay)
                    status, body = receiver.validation_answer(token)
                    self._answer(status, body.encode(), "text/plain")
                    return
                with receiver._cond:
                    status = receiver.statuses.pop(0) if receiver.statuses else 202
                    receiver.posts.append(
                        {
                            "path": parts.path,
                            "query": query,
                            "content_type": self.headers.get("Content-Type"),
                            "body": json.loads(data),
                            "status": status,
                            "at": time.monotonic(),
                        }
                    )
                    receiver._cond.notify_all()
                self._answer(status, b"", "text/plain")

            def _answer(self, status: int, body: bytes, content_type: str) -> None:
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        if tls is not None:
            self.server.socket = tls.wrap_socket(self.server.socket, server_side=True)
        scheme = "https" if tls else "http"
        self.base = f"{scheme}://127.0.0.1:{self.server.server_port}"
        self.thread = threading.Thread(
            target=lambda: self.server.serve_forever(poll_interval=0.05), daemon=True
        )
        self.thread.start()

    def url(self, path: str = "/notify") -> str:
        return self.base + path

    def accepted(self, path: str = "/notify") -> list[dict[str, Any]]:
        """Notification items of the 2xx-answered POSTs to ``path``, in order."""
        with self._cond:
            return [
                item
                for post in self.posts
                if post["path"] == path and post["status"] < 300
                for item in post["body"]["value"]
            ]

    def wait_for(self, count: int, path: str = "/notify", timeout: float = 2.0) -> list[dict]:
        """Wait until ``count`` items were accepted at ``path``; returns them."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while len(self.accepted(path)) < count:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self._cond.wait(left)
            return self.accepted(path)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    recv = Receiver()
    yield recv
    recv.close()


@pytest.fixture
def emu(emulator: Emulator) -> Emulator:
    """The conftest emulator, with http to loopback allowed and short timeouts and backoff."""
    service = emulator.subscriptions
    service.allow_http = True
    service.validation_timeout = 0.5
    service.delivery_timeout = 0.5
    service.retry_delays = (0.05, 0.1)
    return emulator


def expiry(minutes: float) -> str:
    return (datetime.now(UTC) + timedelta(minutes=minutes)).isoformat().replace("+00:00", "Z")


def subscribe(
    graph: EmulatorSession, receiver: Receiver, resource: str = "me/messages", **extra: Any
) -> Any:
    body = {
        "changeType": "created,updated,deleted",
        "notificationUrl": receiver.url(),
        "resource": resource,
        "expirationDateTime": expiry(600),
        "clientState": CLIENT_STATE,
        **extra,
    }
    return graph.post("/subscriptions", json=body)


def created(graph: EmulatorSession, receiver: Receiver, **kw: Any) -> dict[str, Any]:
    answer = subscribe(graph, receiver, **kw)
    assert answer.status_code == 201, answer.text
    return answer.json()


def add_message(http: EmulatorSession, folder: str = "inbox") -> dict[str, Any]:
    answer = http.post("/_emulator/mailbox/messages", json={"folder": folder, "message": MESSAGE})
    assert answer.status_code == 201
    return answer.json()


def logged(emu: Emulator, kind: str, count: int, timeout: float = 2.0) -> list[dict[str, Any]]:
    """The delivery log's entries of a kind, once there are ``count`` (the receiver sees a POST
    a moment before the emulator logs its answer)."""
    deadline = time.monotonic() + timeout
    while True:
        entries = [e for e in emu.notification_log() if e["kind"] == kind]
        if len(entries) >= count or time.monotonic() > deadline:
            return entries
        time.sleep(0.02)


def counters(emu: Emulator, timeout: float = 3.0, **expected: int) -> dict[str, Any]:
    """The (only) subscription's control view once its counters are as expected (or the
    timeout passed: the caller's assertion then shows what they were)."""
    deadline = time.monotonic() + timeout
    while True:
        [info] = emu.subscription_list()
        if all(info[k] == v for k, v in expected.items()) or time.monotonic() > deadline:
            return info
        time.sleep(0.02)


def quiet(receiver: Receiver, seconds: float = 0.4, path: str = "/notify") -> list[dict]:
    time.sleep(seconds)
    return receiver.accepted(path)


# --------------------------------------------------------------------------- creation


def test_creation_validates_the_endpoint_and_answers_201(
    emu: Emulator, graph: EmulatorSession, receiver: Receiver
) -> None:
    answer = subscribe(graph, receiver, notificationUrl=receiver.url("/notify?tenant=acme"))
    assert answer.status_code == 201, answer.text
    sub = answer.json()
    [validation] = receiver.validations
    assert validation["path"] == "/notify"
    assert validation["query"]["tenant"] == ["acme"]  # the URL's own query is kept
    assert validation["content_type"].startswith("text/plain")
    assert " " in validation["token"]  # URL-decoded by the receiver: it was encoded
    assert sub["@odata.context"].endswith("/v1.0/$metadata#subscriptions/$entity")
    assert sub["resource"] == "me/messages"
    assert sub["changeType"] == "created,updated,deleted"
    assert sub["clientState"] == CLIENT_STATE
    assert sub["notificationUrl"] == receiver.url("/notify?tenant=acme")
    assert sub["lifecycleNotificationUrl"] is None
    assert sub["applicationId"] == emu.client_id
    assert sub["creatorId"] == emu.mailbox.user["id"]
    assert sub["latestSupportedTlsVersion"] == "v1_2"
    assert sub["includeResourceData"] is False
    assert len(sub["id"]) == 36
    got = graph.get(f"/subscriptions/{sub['id']}")
    assert got.status_code == 200
    assert got.json() == sub
    listed = graph.get("/subscriptions").json()
    assert [s["id"] for s in listed["value"]] == [sub["id"]]


@pytest.mark.parametrize(
    ("answer", "message"),
    [
        (lambda t: (200, "not the token"), "Response must exactly match validationToken"),
        (lambda t: (404, t), "HTTP status code is 'NotFound'"),
        (lambda t: (200, t + "\n"), "Response must exactly match validationToken"),
    ],
)
def test_a_wrong_validation_answer_is_a_400_and_no_subscription(
    emu: Emulator, graph: EmulatorSession, receiver: Receiver, answer: Any, message: str
) -> None:
    receiver.validation_answer = answer
    response = subscribe(graph, receiver)
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "ValidationError"
    assert message in error["message"]
    assert "innerError" in error
    assert graph.get("/subscriptions").json()["value"] == []


def test_a_slow_validation_answer_times_out(
    emu: Emulator, graph: EmulatorSession, receiver: Receiver
) -> None:
    receiver.validation_delay = 1.0
    started = time.monotonic()
    response = subscribe(graph, receiver)
    assert time.monotonic() - started < 1.0  # the emulator gave up at its 0.5 s timeout
    assert response.status_code == 400
    assert response.json()["error"]["message"] == "Subscription validation request timed out."
    assert graph.get("/subscriptions").json()["value"] == []


def test_an_unreachable_endpoint_fails_validation(emu: Emulator, graph: EmulatorSession) -> None:
    closed = Receiver()
    closed.close()
    response = subscribe(graph, closed)
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "ValidationError"


def test_http_is_refused_unless_allowed(
    emu: Emulator, graph: EmulatorSession, receiver: Receiver
) -> None:
    emu.subscriptions.allow_http = False
    response = subscribe(graph, receiver)
    assert response.status_code == 400
    assert response.json()["error"] == {
        **response.json()["error"],
        "code": "InvalidRequest",
        "message": "NotificationUrl scheme='http' is not supported.",
    }
    assert receiver.validations == []
    emu.subscriptions.allow_http = True
    assert subscribe(graph, receiver).status_code == 201


def test_http_is_allowed_on_loopback_only(emu: Emulator, graph: EmulatorSession) -> None:
    body = {
        "changeType": "created",
        "notificationUrl": "http://192.0.2.10/notify",
        "resource": "me/messages",
        "expirationDateTime": expiry(600),
    }
    response = graph.post("/subscriptions", json=body)
    assert response.status_code == 400
    assert "scheme='http'" in response.json()["error"]["message"]


def test_the_lifecycle_url_is_validated_too(
    emu: Emulator, graph: EmulatorSession, receiver: Receiver
) -> None:
    sub = created(graph, receiver, lifecycleNotificationUrl=receiver.url("/lifecycle"))
    assert sub["lifecycleNotificationUrl"] == receiver.url("/lifecycle")
    assert sorted(v["path"] for v in receiver.validations) == ["/lifecycle", "/notify"]
    receiver.validations.clear()
    created(graph, receiver, lifecycleNotificationUrl=receiver.url())  # the same URL: once
    assert [v["path"] for v in receiver.validations] == ["/notify"]


def test_a_failing_lifecycle_url_fails_creation(
    emu: Emulator, graph: EmulatorSession, receiver: Receiver
) -> None:
    broken = Receiver()
    broken.validation_answer = lambda t: (403, "")
    try:
        response = subscribe(graph, receiver, lifecycleNotificationUrl=broken.url("/lc"))
    finally:
        broken.close()
    assert response.status_code == 400
    assert "HTTP status code is 'Forbidden'" in response.json()["error"]["message"]
    assert graph.get("/subscriptions").json()["value"] == []


INVALID: list[tuple[dict[str, Any], int, str]] = [
    ({"clientState": "x" * 129}, 400, "InvalidRequest"),
    ({"changeType": "created,moved"}, 400, "InvalidRequest"),
    ({"resource": "me/contacts"}, 400, "InvalidRequest"),
    ({"resource": "me/mailFolders('nowhere')/messages"}, 404, "ErrorItemNotFound"),
    ({"resource": "users/someone@else.example/messages"}, 404, "ErrorInvalidUser"),
    ({"expirationDateTime": None}, 400, "InvalidRequest"),
    ({"expirationDateTime": "tomorrow"}, 400, "InvalidRequest"),
    ({"bogus": 1}, 400, "InvalidRequest"),
]


def test_invalid_payloads(emu: Emulator, graph: EmulatorSession, receiver: Receiver) -> None:
    for change, status, code in INVALID:
        response = subscribe(graph, receiver, **change)
        assert response.status_code == status, (change, response.text)
        assert response.json()["error"]["code"] == code, change
    assert receiver.validations == []  # a payload is checked before the endpoint
    assert graph.post("/subscriptions", data=b"{not json").status_code == 400
    assert graph.put("/subscriptions").status_code == 405


def test_client_state_of_128_characters_is_fine(
    emu: Emulator, graph: EmulatorSession, receiver: Receiver
) -> None:
    assert subscribe(graph, receiver, clientState="x" * 128).status_code == 201


RESOURCES = (
    "/me/messages",
    "ME/MESSAGES",
    "me/mailFolders('Inbox')/messages",
    "me/mailfolders('inbox')/messages",
    "/me/mailfolders/inbox/messages",
    "me/events",
    "Me/Events",
)


def test_resources_are_accepted_case_insensitively(
    emu: Emulator, graph: EmulatorSession, receiver: Receiver
) -> None:
    for resource in RESOURCES:
        assert created(graph, receiver, resource=resource)["resource"] == resource
    assert len(graph.get("/subscriptions").json()["value"]) == len(RESOURCES)


def test_users_resources_by_id_and_upn(
    emu: Emulator, graph: EmulatorSession, receiver: Receiver
) -> None:
    user = emu.mailbox.user
    folder = emu.mailbox.resolve_folder("inbox")["id"]
    for resource in (
        f"users/{user['id']}/messages",
        f"users/{user['userPrincipalName']}/events",
        f"users/{user['id']}/mailFolders/{folder}/messages",
    ):
        assert subscribe(graph, receiver, resource=resource).status_code == 201


def test_permissions_follow_the_resource(
    emu: Emulator, receiver: Receiver, graph: EmulatorSession
) -> None:
    def session(scopes: list[str]) -> EmulatorSession:
        s = EmulatorSession(emu.ca_path, emu.graph_url)
        s.headers["Authorization"] = "Bearer " + emu.identity.mint_access_token(scopes)
        return s

    with session(["User.Read", "Calendars.Read"]) as calendar_only:
        assert subscribe(calendar_only, receiver, resource="me/events").status_code == 201
        denied = subscribe(calendar_only, receiver, resource="me/messages")
        assert denied.status_code == 403
        assert denied.json()["error"]["code"] == "ExtensionError"
    with session(["User.Read", "Mail.ReadBasic"]) as mail_only:
        assert subscribe(mail_only, receiver, resource="me/messages").status_code == 201
        assert subscribe(mail_only, receiver, resource="me/events").status_code == 403
    anonymous = EmulatorSession(emu.ca_path, emu.graph_url)
    assert anonymous.get("/subscriptions").status_code == 401


# --------------------------------------------------------------------------- lifetime


def test_expiry_limits(emu: Emulator, graph: EmulatorSession, receiver: Receiver) -> None:
    too_long = subscribe(graph, receiver, expirationDateTime=expiry(4231))
    assert too_long.status_code == 400
    assert too_long.json()["error"]["code"] == "ExtensionError"
    assert too_long.json()["error"]["message"] == (
        "Subscription expiration can only be 4230 minutes in the future."
    )
    past = subscribe(graph, receiver, expirationDateTime=expiry(-1))
    assert past.status_code == 400
    assert receiver.validations == []
    longest = created(graph, receiver, expirationDateTime=expiry(4229))
    assert _minutes_left(longest) == pytest.approx(4229, abs=0.1)
    short = created(graph, receiver, expirationDateTime=expiry(10))
    assert _minutes_left(short) == pytest.approx(45, abs=0.1)  # bumped to 45 minutes


def _minutes_left(sub: dict[str, Any]) -> float:
    moment = datetime.fromisoformat(sub["expirationDateTime"].replace("0Z", "+00:00"))
    return (moment - datetime.now(UTC)).total_seconds() / 60


def test_patch_renews_and_accepts_only_an_expiry(
    emu: Emulator, graph: EmulatorSession, receiver: Receiver
) -> None:
    sub = created(graph, receiver, expirationDateTime=expiry(60))
    renewed = graph.patch(f"/subscriptions/{sub['id']}", json={"expirationDateTime": expiry(4000)})
    assert renewed.status_code == 200
    assert _minutes_left(renewed.json()) == pytest.approx(4000, abs=0.1)
    assert _minutes_left(graph.get(f"/subscriptions/{sub['id']}").json()) > 3999
    for body in (
        {"expirationDateTime": expiry(5000)},
        {"clientState": "other"},
        {"expirationDateTime": expiry(100), "lifecycleNotificationUrl": receiver.url("/lc")},
        {},
    ):
        answer = graph.patch(f"/subscriptions/{sub['id']}", json=body)
        assert answer.status_code == 400, body
    short = graph.patch(f"/subscriptions/{sub['id']}", json={"expirationDateTime": expiry(1)})
    assert _minutes_left(short.json()) == pytest.approx(45, abs=0.1)
    assert graph.patch("/subscriptions/nope", json={"expirationDateTime": expiry(60)}).json()[
        "error"
    ]["code"] == ("ResourceNotFound")


def test_delete(emu: Emulator, graph: EmulatorSession, receiver: Receiver, http: Any) -> None:
    sub = created(graph, receiver)
    deleted = graph.delete(f"/subscriptions/{sub['id']}")
    assert deleted.status_code == 204 and deleted.content == b""
    gone = graph.get(f"/subscriptions/{sub['id']}")
    assert gone.status_code == 404
    assert gone.json()["error"]["code"] == "ResourceNotFound"
    assert graph.delete(f"/subscriptions/{sub['id']}").status_code == 404
    assert graph.get("/subscriptions").json()["value"] == []
    add_message(http)
    assert quiet(receiver) == []


def test_expire_stops_deliveries(
    emu: Emulator, graph: EmulatorSession, receiver: Receiver, http: EmulatorSession
) -> None:
    sub = created(graph, receiver)
    add_message(http)
    assert len(receiver.wait_for(1)) == 1
    counters(emu, delivered=1)
    assert http.post(f"/_emulator/subscriptions/{sub['id']}/expire").status_code == 204
    assert graph.get(f"/subscriptions/{sub['id']}").status_code == 404
    renew = graph.patch(f"/subscriptions/{sub['id']}", json={"expirationDateTime": expiry(60)})
    assert renew.status_code == 404
    add_message(http)
    assert len(quiet(receiver)) == 1
    [listed] = http.get("/_emulator/subscriptions").json()["value"]
    assert listed["state"] == "expired" and listed["delivered"] == 1


# --------------------------------------------------------------------------- delivery


def test_a_new_message_reaches_the_receiver_with_graphs_fields(
    emu: Emulator, graph: EmulatorSession, receiver: Receiver, http: EmulatorSession
) -> None:
    sub = created(graph, receiver, notificationUrl=receiver.url("/notify?account=7"))
    started = time.monotonic()
    message = add_message(http)
    [item] = receiver.wait_for(1)
    [post] = receiver.posts
    assert post["at"] - started < 2.0
    assert post["query"] == {"account": ["7"]}  # the notificationUrl's query is kept
    assert post["content_type"].startswith("application/json")
    oid = emu.mailbox.user["id"]
    assert item == {
        "subscriptionId": sub["id"],
        "subscriptionExpirationDateTime": sub["expirationDateTime"],
        "changeType": "created",
        "clientState": CLIENT_STATE,
        "resource": f"Users/{oid}/Messages/{message['id']}",
        "resourceData": {
            "@odata.type": "#Microsoft.Graph.Message",
            "@odata.id": f"Users/{oid}/Messages/{message['id']}",
            "@odata.etag": f'W/"{message["changeKey"]}"',
            "id": message["id"],
        },
        "tenantId": emu.tenant_id,
    }
    [entry] = logged(emu, "change", 1)
    assert entry["status"] == 202 and entry["items"] == 1 and entry["error"] is None
    assert entry["subscriptionId"] == sub["id"] and entry["latencyMs"] < 2000


def test_updated_and_deleted_change_types(
    emu: Emulator, graph: EmulatorSession, receiver: Receiver, http: EmulatorSession
) -> None:
    created(graph, receiver)
    message = add_message(http)
    receiver.wait_for(1)
    changed = http.patch(f"/_emulator/mailbox/messages/{message['id']}", json={"isRead": True})
    assert changed.status_code == 200
    receiver.wait_for(2)
    assert http.delete(f"/_emulator/mailbox/messages/{message['id']}").status_code == 204
    items = receiver.wait_for(3)
    assert [i["changeType"] for i in items] == ["created", "updated", "deleted"]
    assert items[1]["resourceData"]["@odata.etag"] == f'W/"{changed.json()["changeKey"]}"'
    assert items[1]["resourceData"]["@odata.etag"] != items[0]["resourceData"]["@odata.etag"]
    assert "@odata.etag" not in items[2]["resourceData"]
    assert {i["resourceData"]["id"] for i in items} == {message["id"]}


def test_changes_between_deliveries_come_in_one_post(
    emu: Emulator, graph: EmulatorSession, receiver: Receiver
) -> None:
    created(graph, receiver)
    with emu.mailbox.lock:  # the deliverer cannot look in between
        ids = [emu.mailbox.add_message("inbox", MESSAGE)["id"] for _ in range(3)]
    items = receiver.wait_for(3)
    assert len(receiver.posts) == 1
    assert [i["resourceData"]["id"] for i in items] == ids


def test_a_folder_subscription_sees_its_folder_only(
    emu: Emulator, graph: EmulatorSession, receiver: Receiver, http: EmulatorSession
) -> None:
    created(graph, receiver, resource="me/mailFolders('inbox')/messages")
    created(graph, receiver, resource="me/messages", notificationUrl=receiver.url("/all"))
    elsewhere = add_message(http, folder="archive")
    inbox = add_message(http, folder="inbox")
    receiver.wait_for(1)
    receiver.wait_for(2, path="/all")
    moved = http.post(
        f"/_emulator/mailbox/messages/{inbox['id']}/move", json={"folder": "deleteditems"}
    )
    assert moved.status_code == 200
    folder_items = receiver.wait_for(2)
    all_items = receiver.wait_for(3, path="/all")
    assert len(quiet(receiver, 0.2)) == 2
    assert [(i["changeType"], i["resourceData"]["id"]) for i in folder_items] == [
        ("created", inbox["id"]),
        ("deleted", inbox["id"]),  # it left the folder
    ]
    kinds = sorted((i["changeType"], i["resourceData"]["id"]) for i in all_items)
    assert kinds == sorted(
        [
            ("created", elsewhere["id"]),
            ("created", inbox["id"]),
            ("updated", inbox["id"]),  # for me/messages a move is an update: the id survives
        ]
    )


def test_the_change_type_list_filters(
    emu: Emulator, graph: EmulatorSession, receiver: Receiver, http: EmulatorSession
) -> None:
    created(graph, receiver, changeType="deleted")
    message = add_message(http)
    time.sleep(0.2)  # let the deliverer see it (an item created and deleted unseen is silent)
    http.patch(f"/_emulator/mailbox/messages/{message['id']}", json={"isRead": True})
    http.delete(f"/_emulator/mailbox/messages/{message['id']}")
    [item] = receiver.wait_for(1)
    assert item["changeType"] == "deleted"
    assert len(quiet(receiver, 0.2)) == 1


def test_an_events_subscription_gets_event_changes_only(
    emu: Emulator, graph: EmulatorSession, receiver: Receiver, http: EmulatorSession
) -> None:
    sub = created(graph, receiver, resource="me/events")
    created(graph, receiver, resource="me/messages", notificationUrl=receiver.url("/mail"))
    add_message(http)
    event = http.post("/_emulator/calendar/events", json=EVENT)
    assert event.status_code == 201
    eid = event.json()["id"]
    [first] = receiver.wait_for(1)
    oid = emu.mailbox.user["id"]
    assert first["subscriptionId"] == sub["id"]
    assert first["changeType"] == "created"
    assert first["resource"] == f"Users/{oid}/Events/{eid}"
    assert first["resourceData"] == {
        "@odata.type": "#Microsoft.Graph.Event",
        "@odata.id": f"Users/{oid}/Events/{eid}",
        "@odata.etag": f'W/"{event.json()["changeKey"]}"',
        "id": eid,
    }
    assert http.patch(f"/_emulator/calendar/events/{eid}", json={"subject": "x"}).ok
    receiver.wait_for(2)
    assert http.delete(f"/_emulator/calendar/events/{eid}").status_code == 204
    items = receiver.wait_for(3)
    assert [i["changeType"] for i in items] == ["created", "updated", "deleted"]
    assert len(receiver.accepted("/mail")) == 1  # the message; no event there
    assert receiver.accepted("/mail")[0]["resourceData"]["@odata.type"] == (
        "#Microsoft.Graph.Message"
    )


def test_a_failing_receiver_gets_retries_then_the_batch_is_dropped(
    emu: Emulator, graph: EmulatorSession, receiver: Receiver, http: EmulatorSession
) -> None:
    sub = created(graph, receiver)
    receiver.statuses = [500, 503, 500]  # first try + two retries, then give up
    add_message(http)
    info = counters(emu, dropped=1)
    assert (info["failed"], info["dropped"], info["delivered"]) == (3, 1, 0)
    assert len(receiver.posts) == 3
    bodies = [p["body"] for p in receiver.posts]
    assert bodies[0] == bodies[1] == bodies[2]  # the same notification, resent
    log = [e for e in emu.notification_log() if e["kind"] == "change"]
    assert [(e["attempt"], e["status"]) for e in log] == [(1, 500), (2, 503), (3, 500)]
    add_message(http)  # the endpoint recovered: later notifications flow again
    assert len(receiver.wait_for(1)) == 1
    assert counters(emu, delivered=1)["delivered"] == 1
    assert emu.subscriptions.find(sub["id"]).delivered == 1


def test_a_retry_that_succeeds_delivers(
    emu: Emulator, graph: EmulatorSession, receiver: Receiver, http: EmulatorSession
) -> None:
    created(graph, receiver)
    receiver.statuses = [503]
    add_message(http)
    assert len(receiver.wait_for(1)) == 1
    info = counters(emu, delivered=1)
    assert (info["failed"], info["dropped"], info["delivered"]) == (1, 0, 1)


def test_a_receiver_slower_than_the_timeout_counts_as_failed(
    emu: Emulator, graph: EmulatorSession, http: EmulatorSession
) -> None:
    slow = Receiver()
    try:
        created(graph, slow)
        emu.subscriptions.retry_delays = ()
        original = slow.server.RequestHandlerClass.do_POST

        def sleepy(handler: Any) -> None:
            time.sleep(0.8)
            original(handler)

        slow.server.RequestHandlerClass.do_POST = sleepy  # type: ignore[method-assign]
        add_message(http)
        assert counters(emu, dropped=1)["dropped"] == 1
        [entry] = logged(emu, "change", 1)
        assert entry["error"] == "timeout" and entry["status"] is None
    finally:
        slow.close()


def test_pause_loses_notifications(
    emu: Emulator, graph: EmulatorSession, receiver: Receiver, http: EmulatorSession
) -> None:
    created(graph, receiver)
    assert http.post("/_emulator/notifications/pause", json={"paused": True}).json() == {
        "paused": True
    }
    lost = add_message(http)
    assert quiet(receiver) == []
    assert http.post("/_emulator/notifications/pause", json={"paused": False}).ok
    kept = add_message(http)
    [item] = receiver.wait_for(1)
    assert item["resourceData"]["id"] == kept["id"] != lost["id"]
    assert len(quiet(receiver, 0.2)) == 1  # the lost one never comes
    counters(emu, delivered=1)
    [info] = http.get("/_emulator/subscriptions").json()["value"]
    assert (info["lost"], info["delivered"]) == (1, 1)
    assert http.post("/_emulator/notifications/pause", json={"paused": "yes"}).status_code == 400


# --------------------------------------------------------------------------- lifecycle


def test_subscription_removed_deletes_and_notifies(
    emu: Emulator, graph: EmulatorSession, receiver: Receiver, http: EmulatorSession
) -> None:
    sub = created(graph, receiver, lifecycleNotificationUrl=receiver.url("/lifecycle"))
    answer = http.post(
        f"/_emulator/subscriptions/{sub['id']}/lifecycle", json={"event": "subscriptionRemoved"}
    )
    assert answer.status_code == 202
    [item] = receiver.wait_for(1, path="/lifecycle")
    assert item == {
        "subscriptionId": sub["id"],
        "subscriptionExpirationDateTime": sub["expirationDateTime"],
        "tenantId": emu.tenant_id,
        "clientState": CLIENT_STATE,
        "lifecycleEvent": "subscriptionRemoved",
    }
    assert answer.json()["notification"] == item
    assert graph.get(f"/subscriptions/{sub['id']}").status_code == 404
    add_message(http)
    assert quiet(receiver) == []
    [info] = emu.subscription_list()
    assert info["state"] == "removed"
    again = http.post(f"/_emulator/subscriptions/{sub['id']}/lifecycle", json={"event": "missed"})
    assert again.status_code == 404


@pytest.mark.parametrize("event", ["missed", "reauthorizationRequired"])
def test_other_lifecycle_events_keep_the_subscription(
    emu: Emulator, graph: EmulatorSession, receiver: Receiver, event: str
) -> None:
    sub = created(graph, receiver, lifecycleNotificationUrl=receiver.url())
    sent = emu.send_lifecycle_notification(sub["id"], event)
    assert sent is not None and sent["lifecycleEvent"] == event
    [item] = receiver.wait_for(1)
    assert item["lifecycleEvent"] == event and "changeType" not in item
    assert graph.get(f"/subscriptions/{sub['id']}").status_code == 200


def test_no_lifecycle_url_no_lifecycle_notification(
    emu: Emulator, graph: EmulatorSession, receiver: Receiver, http: EmulatorSession
) -> None:
    sub = created(graph, receiver)
    answer = http.post(
        f"/_emulator/subscriptions/{sub['id']}/lifecycle", json={"event": "subscriptionRemoved"}
    )
    assert answer.status_code == 202 and answer.json() == {"notification": None}
    assert quiet(receiver, 0.2) == []
    assert graph.get(f"/subscriptions/{sub['id']}").status_code == 404
    bad = http.post(f"/_emulator/subscriptions/{sub['id']}/lifecycle", json={"event": "nope"})
    assert bad.status_code == 400
    assert http.post("/_emulator/subscriptions/unknown/expire").status_code == 404


# --------------------------------------------------------------------------- plumbing


def test_faults_can_target_subscriptions(
    emu: Emulator, graph: EmulatorSession, receiver: Receiver
) -> None:
    emu.faults.throttle(r"^/v1\.0/subscriptions$", method="POST", retry_after="1")
    throttled = subscribe(graph, receiver)
    assert throttled.status_code == 429 and throttled.headers["Retry-After"] == "1"
    assert receiver.validations == []
    assert subscribe(graph, receiver).status_code == 201
    faulted = [r for r in emu.requests if r.fault]
    assert [(r.method, r.path, r.status) for r in faulted] == [("POST", "/v1.0/subscriptions", 429)]


def test_subscriptions_inside_a_batch(
    emu: Emulator, graph: EmulatorSession, receiver: Receiver
) -> None:
    sub = created(graph, receiver)
    batch = graph.post(
        "/$batch",
        json={
            "requests": [
                {"id": "1", "method": "GET", "url": f"/subscriptions/{sub['id']}"},
                {"id": "2", "method": "DELETE", "url": f"/subscriptions/{sub['id']}"},
            ]
        },
    ).json()
    assert [r["status"] for r in batch["responses"]] == [200, 204]
    assert graph.get("/subscriptions").json()["value"] == []


def test_control_api_lists_subscriptions_and_the_log(
    emu: Emulator, graph: EmulatorSession, receiver: Receiver, http: EmulatorSession
) -> None:
    sub = created(graph, receiver)
    add_message(http)
    receiver.wait_for(1)
    counters(emu, delivered=1)
    [listed] = http.get("/_emulator/subscriptions").json()["value"]
    assert listed["id"] == sub["id"] and listed["state"] == "active"
    assert (listed["delivered"], listed["failed"], listed["dropped"]) == (1, 0, 0)
    log = http.get("/_emulator/notifications").json()["value"]
    assert [e["kind"] for e in log] == ["validation", "change"]
    assert set(log[1]) >= {"at", "subscriptionId", "status", "error", "items", "latencyMs"}
    assert http.delete("/_emulator/notifications").status_code == 204
    assert http.get("/_emulator/notifications").json()["value"] == []


def test_https_receiver_verified_against_the_given_ca(
    emu: Emulator, graph: EmulatorSession, http: EmulatorSession, tmp_path: Any
) -> None:
    ca = trustme.CA()
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ca.issue_cert("127.0.0.1").configure_cert(context)
    ca_path = tmp_path / "receiver-ca.pem"
    ca.cert_pem.write_to_path(str(ca_path))
    secure = Receiver(tls=context)
    try:
        untrusted = subscribe(graph, secure)  # the system's CAs do not know this one
        assert untrusted.status_code == 400
        assert untrusted.json()["error"]["code"] == "ValidationError"
        emu.subscriptions.verify = str(ca_path)
        emu.subscriptions.allow_http = False
        sub = created(graph, secure)
        assert sub["notificationUrl"].startswith("https://")
        add_message(http)
        [item] = secure.wait_for(1)
        assert item["clientState"] == CLIENT_STATE
    finally:
        secure.close()


def test_the_emulator_option_and_stop(tmp_path: Any, receiver: Receiver) -> None:
    from m365sync.emulator.identity import DEFAULT_SCOPES
    from m365sync.emulator.mailbox import Mailbox

    emulator = Emulator(
        Mailbox(), state_dir=tmp_path, allow_http_notifications=True, validation_timeout=1
    )
    with emulator:
        with EmulatorSession(emulator.ca_path, emulator.graph_url) as graph:
            token = emulator.identity.mint_access_token(DEFAULT_SCOPES)
            graph.headers["Authorization"] = f"Bearer {token}"
            assert subscribe(graph, receiver).status_code == 201
        assert emulator.subscriptions._thread is not None
    assert emulator.subscriptions._thread is None  # the deliverer stopped with the server
