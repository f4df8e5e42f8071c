"""The Odoo adapter without an Odoo: marshalling, Odoo's conventions, error mapping, one RPC per
call, and no API key in any message.

Three stand-ins, from the smallest to the fullest:

* `FakeTransport` records each call and answers what a test gives it;
* `FakeOdoo`, a `xmlrpc.server` on loopback that speaks Odoo's XML-RPC (``/xmlrpc/2/common``
  and ``/xmlrpc/2/object``, integer fault codes, a marshaller that refuses None) in front of
  `FakeAddon`, which answers ``m365.daemon.api`` the way the addon does, over the embedded
  store;
* `FakeJson2Session`, a `requests` session that answers like Odoo 19's ``/json/2`` in front
  of the same `FakeAddon`.

The gateway contract runs over XML-RPC against the real addon in a real Odoo 18 (the live
suite, tests/contract/test_odoo_gateway.py); here it runs only over JSON-2, which Odoo 18
cannot serve, so that protocol's encoders are exercised too. What stays on `FakeOdoo` is what
a real Odoo cannot be made to do on demand: HTTP errors in front of it, answers that are not
XML-RPC, a silent server, a key revoked mid-run, an old addon without a part.
"""

from __future__ import annotations

import collections.abc
import json
import logging
import socket
import socketserver
import threading
import traceback
import typing
import xmlrpc.client
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from xmlrpc.server import MultiPathXMLRPCServer, SimpleXMLRPCDispatcher, SimpleXMLRPCRequestHandler

import pytest
import requests
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from m365sync.config import Config, OdooConfig, StoreConfig
from m365sync.crm.gateway import AccountSpec, CrmGateway, FreeBusyRequest
from m365sync.crm.odoo import (
    API_MODEL,
    KEY_REJECTED,
    AddonMethodMissing,
    Json2Transport,
    OdooGateway,
    OdooTransport,
    XmlRpcTransport,
    error_from_refusal,
)
from m365sync.crm.odoo_recurrence import to_odoo
from m365sync.crm.sqlite import SqliteGateway
from m365sync.crm.wire import from_wire, to_wire
from m365sync.domain import (
    Account,
    AccountStatus,
    CalendarEvent,
    CrmEventChange,
    CrmSettings,
    Cursor,
    CursorKind,
    EmailAddress,
    EventBinding,
    EventType,
    FolderChoice,
    Lease,
    MailFolder,
    OccurrenceRemoval,
    OutboxState,
    OutgoingAttachment,
    OutgoingMail,
    PageResult,
    PageWrite,
    Partner,
    PartnerDraft,
    PendingConnect,
    ReceivedNotification,
    Recurrence,
    ResponseStatus,
    Sensitivity,
    ShowAs,
    StoredEvent,
    Subscription,
    SubscriptionKind,
    SubscriptionState,
    SyncRun,
)
from m365sync.errors import (
    Conflict,
    CrmError,
    CrmHasForms,
    CrmUnavailable,
    LeaseLost,
    StalePlan,
    UnknownAccount,
    advice_for,
)
from m365sync.graph.schedule import Availability, BusySlot
from m365sync.service.runtime import open_gateway
from m365sync.sync.attendees import (
    ExtraAttendee,
    OdooAttendee,
    OdooPeople,
    odoo_people_values,
    odoo_state,
)
from m365sync.sync.event_mapping import OdooEvent, odoo_values
from tests.contract import calendar_contract
from tests.contract.calendar_contract import CalendarContract
from tests.contract.gateway_contract import INBOX, GatewayContract, message, page, spec, unique
from tests.contract.push_contract import PushContract
from tests.contract.sqlite_series import expand_series, series_occurrences

KEY = "0123456789abcdef0123456789abcdef01234567"  # shaped like an Odoo API key
DB = "m365_unit"
USER = "m365sync-daemon"
UID = 7
T0 = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)


# --- the addon, as the daemon sees it -------------------------------------------------------


class Refusal(Exception):
    """A UserError the addon raises: its message is what crosses the wire."""


CALENDAR_METHODS = {
    "store_event_page",
    "event_bindings",
    "bound_event_ids",
    "unconfirmed_series_ids",
    "unconfirmed_occurrences",
    "remove_cancelled_occurrences",
    "meeting_candidates",
    "last_event_id",
    "event_changes_to_push",
    "mark_event_pushed",
    "upcoming_events_for_partner",
}
OUTBOX_METHODS = {"outgoing_mail", "update_outgoing", "claim_outgoing"}
FREE_BUSY_METHODS = {"pending_free_busy", "store_free_busy"}
PUSH_METHODS = {
    "crm_settings",
    "request_sync",
    "subscriptions",
    "save_subscription",
    "drop_subscription",
    "subscriptions_by_graph_id",
    "record_notifications",
}
CLAIM_METHODS = {"claim_connect", "claim_free_busy"}
ALL_FEATURES = ("calendar", "outbox", "free_busy", "push", "claims")


class FakeAddon:
    """``m365.daemon.api`` as the addon implements it: wire payload in, wire answer out, with
    Odoo's conventions (None -> True / False), over the embedded store. ``features`` picks
    the later parts the addon version has (an old addon: none)."""

    EXTRA = {"publish_daemon_info", "pending_connects", "finish_connect"}
    FEATURES = {
        "calendar": CALENDAR_METHODS,
        "outbox": OUTBOX_METHODS,
        "free_busy": FREE_BUSY_METHODS,
        "push": PUSH_METHODS,
        "claims": CLAIM_METHODS,
    }

    def __init__(self, store: SqliteGateway, features: tuple[str, ...] = ALL_FEATURES) -> None:
        self.store = store
        self.features = features
        self.calls: list[tuple[str, dict[str, Any]]] = []
        self.published: list[dict[str, Any]] = []
        self.free_busy_pending: list[dict[str, Any]] = []
        self.free_busy_answers: dict[int, dict[str, Any]] = {}
        self.claims: dict[tuple[str, int], tuple[str, float]] = {}  # -> (holder, at)
        self.finished: set[tuple[str, int]] = set()
        self.clock = 1000.0  # seconds; tests move it

    def has(self, method: str) -> bool:
        every_later = set().union(*self.FEATURES.values())
        first = set(CrmGateway.__abstractmethods__) - every_later
        later = set().union(*(self.FEATURES[f] for f in self.features))
        return method in first | self.EXTRA | later

    def claim(self, kind: str, request_id: int, holder: str, ttl_seconds: float) -> bool:
        """The addon's one UPDATE: a pending request, unclaimed, this holder's, or expired."""
        key = (kind, int(request_id))
        if key in self.finished or not holder:
            return False
        taken = self.claims.get(key)
        if taken and taken[0] != holder and taken[1] >= self.clock - ttl_seconds:
            return False
        self.claims[key] = (holder, self.clock)
        return True

    def dispatch(self, method: str, payload: dict[str, Any]) -> Any:
        self.calls.append((method, payload))
        if method == "claim_connect":
            return self.claim(
                "connect", payload["connect_id"], payload["holder"], payload["ttl_seconds"]
            )
        if method == "claim_free_busy":
            return self.claim(
                "free_busy", payload["request_id"], payload["holder"], payload["ttl_seconds"]
            )
        if method == "finish_connect":
            self.finished.add(("connect", int(payload["connect_id"])))
        if method == "pending_free_busy":
            return [r for r in self.free_busy_pending if r["id"] not in self.free_busy_answers]
        if method == "store_free_busy":
            self.free_busy_answers[int(payload["request_id"])] = payload
            self.finished.add(("free_busy", int(payload["request_id"])))
            return True
        function = getattr(type(self.store), method)
        hints = typing.get_type_hints(function)
        arguments = {
            name: from_wire(_concrete(hints[name]), value) for name, value in payload.items()
        }
        try:
            if method == "publish_daemon_info":
                self.published.append(payload["info"])
                result = None
            elif method == "event_changes_to_push":
                owner = self.store.get_account(arguments["account_id"]).address
                changes = function(self.store, **arguments)
                return [_as_odoo_change(c, owner) for c in changes]
            else:
                result = function(self.store, **arguments)
        except UnknownAccount as error:
            raise Refusal(f"M365:UnknownAccount: {error}") from None
        except LeaseLost as error:
            raise Refusal(f"M365:LeaseLost: {error}") from None
        except StalePlan as error:
            raise Refusal(f"M365:StalePlan: {error}") from None
        except Conflict as error:
            raise Refusal(f"M365:Conflict: {error}") from None
        if hints.get("return") is type(None):
            return True
        return _odoo_values(to_wire(result))


def _concrete(kind: Any) -> Any:
    """``Sequence[X]`` / ``Iterable[X]`` parameters are read as ``list[X]`` (`from_wire` reads
    concrete containers)."""
    if typing.get_origin(kind) in (collections.abc.Sequence, collections.abc.Iterable):
        return list[typing.get_args(kind)]  # type: ignore[misc]
    return kind


def _as_odoo_change(change: CrmEventChange, owner: str) -> dict[str, Any]:
    """A change as the addon sends it: a series made in Odoo carries Odoo's recurrence fields
    (``odoo_recurrence``), not Graph's pattern; its people as stored (``odoo_people``), with
    neither the organizer, the attendees nor the owner's answer decided."""
    wire = to_wire(change)
    for decided in ("attendee_addresses", "my_response"):
        wire.pop(decided)
    wire["event"].pop("organizer")
    wire["event"].pop("attendees")
    wire["odoo_event"] = to_wire(_odoo_event_of(change.event))
    wire["odoo_people"] = to_wire(_odoo_people_of(change, owner))
    recurrence = change.event.recurrence
    if recurrence is not None:
        day = change.event.start.date() if change.event.start else recurrence.start_date
        wire["odoo_recurrence"] = to_odoo(replace(recurrence, start_date=day), tz="UTC")
        wire["event"]["recurrence"] = None
    return _odoo_values(wire)


def _odoo_people_of(change: CrmEventChange, owner: str) -> OdooPeople:
    """The stored people the addon would report for a change the embedded store decided: its
    attendees as kept Outlook lines (their kinds and answers as they are), the owner's own
    answer as the account user's attendee row, its organizer as stored."""
    mine = ()
    if change.my_response is not ResponseStatus.NONE:
        mine = (OdooAttendee(99, owner, "Owner", odoo_state(change.my_response), is_user=True),)
    return OdooPeople(
        attendees=mine,
        extra_attendees=tuple(
            ExtraAttendee(a.address, a.name, a.kind, a.response) for a in change.event.attendees
        ),
        organizer=change.event.organizer,
        owner_address=owner,
    )


def _odoo_event_of(event: CalendarEvent) -> OdooEvent:
    """The stored Odoo fields the addon would report for an event (the stand-in's side of
    `sync.event_mapping`: what Odoo stores for it)."""
    private = event.sensitivity in (Sensitivity.PRIVATE, Sensitivity.CONFIDENTIAL)
    return OdooEvent(
        privacy="private" if private else "public",
        show_as="free" if event.show_as is ShowAs.FREE else "busy",
        outlook_sensitivity=event.sensitivity.value,
        outlook_show_as=event.show_as.value,
        all_day=event.is_all_day,
        start=event.start,
        stop=event.end,
        start_date=event.start_date,
        stop_date=event.end_date - timedelta(days=1) if event.end_date else None,
        time_zone=event.time_zone,
        is_series_master=event.event_type is EventType.SERIES_MASTER,
        outlook_type=event.event_type.value,
        bound=bool(event.graph_id),
    )


def _odoo_values(value: Any) -> Any:
    """Odoo's XML-RPC marshaller refuses None: the addon answers False instead."""
    if value is None:
        return False
    if isinstance(value, dict):
        return {k: _odoo_values(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_odoo_values(v) for v in value]
    return value


# --- Odoo's XML-RPC, on loopback ------------------------------------------------------------


class _Handler(SimpleXMLRPCRequestHandler):
    rpc_paths = ()  # every path; the server routes by path

    def do_POST(self) -> None:
        owner: FakeOdoo = self.server.owner  # type: ignore[attr-defined]
        owner.requests.append(self.path)
        if owner.fail_status or owner.garbage:
            self.rfile.read(int(self.headers.get("content-length", 0)))
            body = b"<html><body>Maintenance</body></html>" if owner.garbage else b""
            self.send_response(200 if owner.garbage else owner.fail_status)
            self.send_header("Content-Type", "text/html")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
            return
        super().do_POST()

    def log_message(self, *args: Any) -> None:
        pass


class _Server(socketserver.ThreadingMixIn, MultiPathXMLRPCServer):
    daemon_threads = True


class FakeOdoo:
    """Odoo 18's external API in front of `FakeAddon`."""

    def __init__(self, addon: FakeAddon, *, in_group: bool = True) -> None:
        self.addon = addon
        self.in_group = in_group
        self.requests: list[str] = []
        self.fail_status = 0
        self.garbage = False
        self.server = _Server(
            ("127.0.0.1", 0), requestHandler=_Handler, allow_none=False, logRequests=False
        )
        self.server.owner = self  # type: ignore[attr-defined]
        common = SimpleXMLRPCDispatcher(allow_none=False)
        common.register_function(self.authenticate, "authenticate")
        common.register_function(lambda: {"server_version": "18.0"}, "version")
        obj = SimpleXMLRPCDispatcher(allow_none=False)
        obj.register_function(self.execute_kw, "execute_kw")
        self.server.add_dispatcher("/xmlrpc/2/common", common)
        self.server.add_dispatcher("/xmlrpc/2/object", obj)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )

    def start(self) -> FakeOdoo:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def object_calls(self) -> int:
        return self.requests.count("/xmlrpc/2/object")

    def authenticate(self, db: str, login: str, password: str, env: dict) -> Any:
        self._check_db(db)
        return UID if (login, password) == (USER, KEY) else False

    def execute_kw(self, db, uid, password, model, method, args, kw=None) -> Any:
        self._check_db(db)
        if (uid, password) != (UID, KEY):
            raise xmlrpc.client.Fault(3, "Access Denied")
        if model != API_MODEL:
            raise xmlrpc.client.Fault(2, f"Object {model} doesn't exist")
        if not self.in_group:
            raise xmlrpc.client.Fault(
                4,
                "You are not allowed to access 'Microsoft 365 daemon API' (m365.daemon.api) "
                "records.\n\nThis operation is allowed for the following groups:\n"
                "\t- Microsoft 365/Daemon",
            )
        if not self.addon.has(method):
            raise xmlrpc.client.Fault(
                1,
                'Traceback (most recent call last):\n  File "odoo/api.py", line 500\n'
                f"AttributeError: The method '{method}' does not exist on the model "
                f"'{API_MODEL}'\n",
            )
        (payload,) = args
        try:
            return self.addon.dispatch(method, payload)
        except Refusal as refusal:
            raise xmlrpc.client.Fault(2, str(refusal)) from None
        except Exception:
            raise xmlrpc.client.Fault(1, traceback.format_exc()) from None

    @staticmethod
    def _check_db(db: str) -> None:
        if db != DB:
            raise xmlrpc.client.Fault(
                1,
                "Traceback (most recent call last):\n  ...\npsycopg2.OperationalError: "
                'connection to server failed: FATAL:  database "' + db + '" does not exist\n',
            )


# --- Odoo 19's JSON-2, in process -----------------------------------------------------------


class FakeJson2Session:
    """A `requests.Session` that answers like Odoo 19's ``/json/2`` in front of `FakeAddon`."""

    def __init__(self, addon: FakeAddon, *, in_group: bool = True) -> None:
        self.addon = addon
        self.in_group = in_group
        self.sent: list[dict[str, Any]] = []
        self.fail: Exception | None = None
        self.status: int = 0

    def post(self, url: str, **kw: Any) -> requests.Response:
        prepared = requests.PreparedRequest()
        prepared.prepare_headers(kw["headers"])
        kw["headers"] = dict(kw["auth"](prepared).headers)  # what goes on the wire
        self.sent.append({"url": url, **kw})
        if self.fail:
            raise self.fail
        if self.status:
            return _response(self.status, {"name": "", "message": "", "arguments": []})
        if kw["headers"].get("Authorization") != f"bearer {KEY}":
            return _response(
                401,
                _error("werkzeug.exceptions.Unauthorized", "Invalid apikey", debug=KEY[:4]),
            )
        if kw["headers"].get("X-Odoo-Database") != DB:
            return _response(404, "Not Found")
        _, _, tail = url.partition("/json/2/")
        model, _, method = tail.partition("/")
        if model != API_MODEL:
            return _response(404, _error("NotFound", f"the model {model!r} does not exist"))
        if not self.in_group:
            return _response(
                403,
                _error(
                    "odoo.exceptions.AccessError",
                    "You are not allowed to access 'Microsoft 365 daemon API' "
                    "(m365.daemon.api) records.",
                ),
            )
        if not self.addon.has(method):
            return _response(
                404,
                _error("NotFound", f"The method {method!r} does not exist on the model {model!r}"),
            )
        body = json.loads(kw["data"])
        try:
            return _response(200, self.addon.dispatch(method, body["payload"]))
        except Refusal as refusal:
            return _response(422, _error("odoo.exceptions.UserError", str(refusal)))

    def close(self) -> None:
        pass


def _error(name: str, message: str, debug: str = "Traceback ...") -> dict[str, Any]:
    return {"name": name, "message": message, "arguments": [message], "context": {}, "debug": debug}


def _response(status: int, body: Any) -> requests.Response:
    response = requests.Response()
    response.status_code = status
    response._content = json.dumps(body).encode("utf-8")
    response.headers["Content-Type"] = "application/json; charset=utf-8"
    return response


# --- fixtures -------------------------------------------------------------------------------


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SqliteGateway]:
    gateway = SqliteGateway(tmp_path / "addon.sqlite3")
    yield gateway
    gateway.close()


@pytest.fixture
def addon(store: SqliteGateway) -> FakeAddon:
    return FakeAddon(store)


@pytest.fixture
def odoo(addon: FakeAddon) -> Iterator[FakeOdoo]:
    server = FakeOdoo(addon).start()
    yield server
    server.stop()


def xmlrpc_gateway(url: str, **kw: Any) -> OdooGateway:
    options = {"db": DB, "user": USER, "api_key": KEY, "timeout": 10.0} | kw
    return OdooGateway(
        XmlRpcTransport(
            url,
            options.pop("db"),
            options.pop("user"),
            options.pop("api_key"),
            **options,
        )
    )


@pytest.fixture
def over_xmlrpc(odoo: FakeOdoo) -> Iterator[OdooGateway]:
    gateway = xmlrpc_gateway(odoo.url)
    yield gateway
    gateway.close()


# --- the contract over JSON-2 ----------------------------------------------------------------
# Over XML-RPC the contract runs against the real addon in a real Odoo 18
# (tests/contract/test_odoo_gateway.py). Odoo 18 cannot serve JSON-2 (Odoo 19's protocol), so
# that transport's marshalling is checked here, against the stand-in.


class _OdooAdapterContract(GatewayContract):
    """The contract for an Odoo transport. Each subclass takes its own property test function
    (`own_property_test`): Hypothesis refuses one @given function run by several classes
    (differing executors), and the embedded store's suite runs the base class's."""

    def seed_partner(
        self,
        gateway: CrmGateway,
        name: str,
        email: str | None = None,
        *,
        is_company: bool = False,
        parent_id: int | None = None,
        website: str | None = None,
    ) -> Partner:
        store: SqliteGateway = gateway.fake_store  # type: ignore[attr-defined]
        return store.add_partner(name, email, is_company, parent_id, website)

    def crm_pause(self, gateway, account):
        gateway.fake_store.crm_pause(account.id, by="the owner")  # type: ignore[attr-defined]

    def crm_resume(self, gateway, account):
        gateway.fake_store.crm_resume(account.id)  # type: ignore[attr-defined]

    def folder_skips(self, gateway, account, folder):
        return gateway.fake_store.folder_skips(account.id, folder)  # type: ignore[attr-defined]


def own_property_test():
    """A fresh @given function around the contract's property, for one class."""

    @settings(deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
    @given(data=st.data())
    def test_any_interleaving_with_replays_equals_each_page_once(
        self: GatewayContract, gateway: CrmGateway, data: st.DataObject
    ) -> None:
        prop = GatewayContract.test_any_interleaving_with_replays_equals_each_page_once
        prop.hypothesis.inner_test(self, gateway, data)

    return test_any_interleaving_with_replays_equals_each_page_once


class TestContractOverJson2(_OdooAdapterContract):
    test_any_interleaving_with_replays_equals_each_page_once = own_property_test()

    @pytest.fixture
    def gateway(self, addon: FakeAddon, store: SqliteGateway) -> CrmGateway:
        session = FakeJson2Session(addon)
        gateway = OdooGateway(
            Json2Transport("https://odoo.example", DB, KEY, session_factory=lambda: session)
        )
        gateway.fake_store = store  # type: ignore[attr-defined]
        return gateway

    @pytest.fixture
    def other_gateway(self, store: SqliteGateway) -> Iterator[CrmGateway]:
        """A second worker: its own stand-in, on its own connection to the same store."""
        second = SqliteGateway(store.path)
        session = FakeJson2Session(FakeAddon(second))
        yield OdooGateway(
            Json2Transport("https://odoo.example", DB, KEY, session_factory=lambda: session)
        )
        second.close()


class _OdooAdapterCalendar(CalendarContract):
    """The calendar contract through the adapter; the CRM user's actions act on the fake
    addon's store (what a salesperson does in Odoo's calendar)."""

    def seed_partner(self, gateway, name, email=None, *, is_company=False, parent_id=None):
        return gateway.fake_store.add_partner(name, email, is_company, parent_id)

    def crm_create(self, gateway, account, item, partner_ids):
        people = calendar_contract.links(*partner_ids)
        return gateway.fake_store.crm_create_event(account.id, item, people)

    def crm_update(self, gateway, event_id, **changes):
        gateway.fake_store.crm_update_event(event_id, **changes)

    def crm_delete(self, gateway, event_id):
        gateway.fake_store.crm_delete_event(event_id)

    def crm_expand(self, gateway, event_id, count):
        expand_series(gateway.fake_store.path, event_id, count)

    def crm_occurrences(self, gateway, event_id):
        return series_occurrences(gateway.fake_store.path, event_id)


class TestCalendarOverJson2(_OdooAdapterCalendar):
    @pytest.fixture
    def gateway(self, addon: FakeAddon, store: SqliteGateway) -> CrmGateway:
        session = FakeJson2Session(addon)
        gateway = OdooGateway(
            Json2Transport("https://odoo.example", DB, KEY, session_factory=lambda: session)
        )
        gateway.fake_store = store  # type: ignore[attr-defined]
        return gateway


# --- marshalling, with a recording transport ------------------------------------------------


class FakeTransport(OdooTransport):
    url = "https://odoo.example"

    def __init__(self, answers: dict[str, Any] | None = None) -> None:
        self.answers = answers or {}
        self.calls: list[tuple[str, dict[str, Any]]] = []

    def call(self, method: str, payload: dict[str, Any]) -> Any:
        self.calls.append((method, json.loads(json.dumps(payload))))  # must be JSON already
        answer = self.answers.get(method, True)
        if isinstance(answer, Exception):
            raise answer
        return answer


LEASE = Lease(3, 41, "worker-a", T0)
WIRE_LEASE = {"account_id": 3, "token": 41, "holder": "worker-a", "expires_at": T0.isoformat()}
SUBSCRIPTION = Subscription(
    3, SubscriptionKind.MAIL, "s1", "me/messages", T0 + timedelta(days=2), "ab" * 32
)
WIRE_SUBSCRIPTION = {
    "account_id": 3,
    "kind": "mail",
    "graph_id": "s1",
    "resource": "me/messages",
    "expires_at": (T0 + timedelta(days=2)).isoformat(),
    "client_state_hash": "ab" * 32,
    "state": "active",
    "last_notified_at": None,
    "detail": "",
    "notification_url": "",
}
# As the addon answers it: Odoo's False for the absent time and the empty detail and URL.
ODOO_SUBSCRIPTION = WIRE_SUBSCRIPTION | {
    "last_notified_at": False,
    "detail": False,
    "notification_url": False,
}
PARTNER = {
    "id": 5,
    "name": "Ann",
    "email": "ann@example.com",
    "is_company": False,
    "parent_id": False,
    "website": False,
}
ACCOUNT = {
    "id": 3,
    "address": "megan@contoso.example",
    "display_name": "Megan",
    "tenant_id": "t",
    "object_id": "o",
    "owner": "admin",
    "status": "throttled",
    "status_detail": "slow down",
    "status_until": "2026-11-25 12:05:00",  # Odoo's own datetime format, UTC
    "last_sync_at": False,
    "privacy": "subject",
    "auto_create": "none",
    "own_domains": ["contoso.example"],
    "sealed_token_cache": False,
    "sync_requested_at": False,
    "folder_choice": "chosen",
    "mail_folders": ["AAMkKey"],
    "mail_folder_labels": {"AAMkKey": "Inbox/Key accounts"},
}


def call_table() -> list[tuple[str, Any, dict[str, Any]]]:
    """(method, gateway call, expected payload) for every method."""
    draft = PartnerDraft("Hank", "hank@globex.example", company_domain="globex.example")
    written = page(3, INBOX, [message("g1")], ["gone"], link="https://g/delta?1")
    run = SyncRun(3, T0, T0 + timedelta(seconds=5), pages=1, skipped={"internal": 2})
    single = StoredEvent(calendar_contract.event("e1"), calendar_contract.links(5))
    events = calendar_contract.page(Account(3, "a@b.example"), [single], ["gone"])
    events_wire = to_wire(events)
    values = odoo_values(single, today=datetime.now(UTC).date())
    events_wire["upserts"][0] |= {
        "odoo_recurrence": None,
        "odoo_recurrence_note": None,
        "odoo_values": to_wire(values),
        "odoo_kept_values": {},
        "odoo_people_values": to_wire(odoo_people_values(single, owner="a@b.example")),
    }
    busy = Availability("ann@example.com", (BusySlot(T0, T0 + timedelta(hours=1), "busy"),))
    folder = MailFolder(INBOX, "Inbox", "ROOT", total_items=4, path="Inbox")
    return [
        (
            "upsert_account",
            lambda g: g.upsert_account(AccountSpec("a@b.example", privacy="subject")),
            {"spec": to_wire(AccountSpec("a@b.example", privacy="subject"))},
        ),
        ("get_account", lambda g: g.get_account(3), {"account_id": 3}),
        ("list_accounts", lambda g: g.list_accounts(), {}),
        (
            "set_account_status",
            lambda g: g.set_account_status(3, AccountStatus.THROTTLED, "wait", until=T0),
            {
                "account_id": 3,
                "status": "throttled",
                "detail": "wait",
                "until": "2026-11-25T12:00:00+00:00",
                "synced_at": None,
            },
        ),
        (
            "store_token_cache",
            lambda g: g.store_token_cache(3, "eyJ.sealed", replaces="eyJ.old"),
            {"account_id": 3, "sealed_token_cache": "eyJ.sealed", "replaces": "eyJ.old"},
        ),
        (
            "lease_accounts",
            lambda g: g.lease_accounts("w", limit=2, ttl_seconds=60, now=T0),
            {"holder": "w", "limit": 2, "ttl_seconds": 60, "now": T0.isoformat()},
        ),
        (
            "renew_lease",
            lambda g: g.renew_lease(LEASE, ttl_seconds=30.5),
            {"lease": WIRE_LEASE, "ttl_seconds": 30.5, "now": None},
        ),
        ("release_lease", lambda g: g.release_lease(LEASE), {"lease": WIRE_LEASE}),
        (
            "find_partners_by_emails",
            lambda g: g.find_partners_by_emails(e for e in ["a@x.example"]),
            {"emails": ["a@x.example"]},
        ),
        (
            "find_companies_by_domains",
            lambda g: g.find_companies_by_domains({"x.example"}),
            {"domains": ["x.example"]},
        ),
        ("get_partners", lambda g: g.get_partners(range(1, 3)), {"partner_ids": [1, 2]}),
        ("create_partners", lambda g: g.create_partners([draft]), {"drafts": [to_wire(draft)]}),
        (
            "get_cursor",
            lambda g: g.get_cursor(3, INBOX),
            {"account_id": 3, "folder_id": INBOX},
        ),
        (
            "store_mail_page",
            lambda g: g.store_mail_page(written, lease=LEASE),
            {"page": to_wire(written), "lease": WIRE_LEASE},
        ),
        ("reset_folder", lambda g: g.reset_folder(3, INBOX), {"account_id": 3, "folder_id": INBOX}),
        (
            "unlisted_in_round",
            lambda g: g.unlisted_in_round(3, INBOX),
            {"account_id": 3, "folder_id": INBOX},
        ),
        (
            "store_mail_folders",
            lambda g: g.store_mail_folders(3, [folder], frozenset({INBOX})),
            {"account_id": 3, "folders": [to_wire(folder)], "synced": [INBOX]},
        ),
        ("list_mail_folders", lambda g: g.list_mail_folders(3), {"account_id": 3}),
        ("record_sync_run", lambda g: g.record_sync_run(run), {"run": to_wire(run)}),
        ("last_sync_run", lambda g: g.last_sync_run(3), {"account_id": 3}),
        ("count_messages", lambda g: g.count_messages(), {"account_id": None}),
        ("message_ids_for_account", lambda g: g.message_ids_for_account(3), {"account_id": 3}),
        ("threads_for_partner", lambda g: g.threads_for_partner(5), {"partner_id": 5}),
        ("mail_counts_by_partner", lambda g: g.mail_counts_by_partner(), {}),
        (
            "publish_daemon_info",
            lambda g: g.publish_daemon_info({"kid": "k1", "jwks": {"keys": []}}),
            {"info": {"kid": "k1", "jwks": {"keys": []}}},
        ),
        ("pending_connects", lambda g: g.pending_connects(), {}),
        (
            "finish_connect",
            lambda g: g.finish_connect(9, account_id=3),
            {"connect_id": 9, "account_id": 3, "error": None},
        ),
        (
            "claim_connect",
            lambda g: g.claim_connect(9, "host:1"),
            {"connect_id": 9, "holder": "host:1", "ttl_seconds": 120.0},
        ),
        (
            "claim_free_busy",
            lambda g: g.claim_free_busy(7, "host:1", ttl_seconds=30),
            {"request_id": 7, "holder": "host:1", "ttl_seconds": 30},
        ),
        (
            "store_event_page",
            lambda g: g.store_event_page(events, lease=LEASE),
            {"page": events_wire, "lease": WIRE_LEASE},
        ),
        (
            "event_bindings",
            lambda g: g.event_bindings(3, ["a", "b", "a"]),
            {"account_id": 3, "graph_ids": ["a", "b"]},
        ),
        (
            "bound_event_ids",
            lambda g: g.bound_event_ids(3),
            {"account_id": 3},
        ),
        (
            "unconfirmed_series_ids",
            lambda g: g.unconfirmed_series_ids(3),
            {"account_id": 3},
        ),
        (
            "unconfirmed_occurrences",
            lambda g: g.unconfirmed_occurrences(3, T0, T0 + timedelta(days=30), limit=5),
            {
                "account_id": 3,
                "start": T0.isoformat(),
                "end": (T0 + timedelta(days=30)).isoformat(),
                "limit": 5,
            },
        ),
        (
            "remove_cancelled_occurrences",
            lambda g: g.remove_cancelled_occurrences(
                3, [OccurrenceRemoval(9, 2, 8, 4)], lease=LEASE
            ),
            {
                "account_id": 3,
                "removals": [
                    {
                        "crm_event_id": 9,
                        "expected_version": 2,
                        "master_crm_event_id": 8,
                        "master_version": 4,
                    }
                ],
                "lease": WIRE_LEASE,
            },
        ),
        (
            "meeting_candidates",
            lambda g: g.meeting_candidates(3, ["u2", "u1", "u2"], ["m1"], [9, 4]),
            {
                "account_id": 3,
                "ical_uids": ["u1", "u2"],
                "series_master_ids": ["m1"],
                "crm_event_ids": [4, 9],
            },
        ),
        ("event_changes_to_push", lambda g: g.event_changes_to_push(3), {"account_id": 3}),
        (
            "mark_event_pushed",
            lambda g: g.mark_event_pushed(3, 9, graph_id="g", change_key="ck", version=2),
            {
                "account_id": 3,
                "crm_event_id": 9,
                "graph_id": "g",
                "change_key": "ck",
                "version": 2,
                "ical_uid": None,
                "online_meeting_url": None,
                "unbind": False,
                "shape_pushed": False,
            },
        ),
        (
            "mark_event_pushed",
            lambda g: g.mark_event_pushed(
                3, 9, graph_id="g", change_key="ck", version=2, shape_pushed=True
            ),
            {
                "account_id": 3,
                "crm_event_id": 9,
                "graph_id": "g",
                "change_key": "ck",
                "version": 2,
                "ical_uid": None,
                "online_meeting_url": None,
                "unbind": False,
                "shape_pushed": True,
            },
        ),
        (
            "upcoming_events_for_partner",
            lambda g: g.upcoming_events_for_partner(5, since=T0, limit=3),
            {"partner_id": 5, "since": T0.isoformat(), "limit": 3},
        ),
        ("outgoing_mail", lambda g: g.outgoing_mail(3), {"account_id": 3, "limit": 20}),
        (
            "update_outgoing",
            lambda g: g.update_outgoing(4, OutboxState.SENDING, send_started_at=T0),
            {
                "mail_id": 4,
                "state": "sending",
                "graph_id": None,
                "internet_message_id": None,
                "conversation_id": None,
                "error": None,
                "send_started_at": T0.isoformat(),
            },
        ),
        (
            "claim_outgoing",
            lambda g: g.claim_outgoing(4, T0),
            {"mail_id": 4, "started": T0.isoformat()},
        ),
        ("pending_free_busy", lambda g: g.pending_free_busy(), {}),
        ("crm_settings", lambda g: g.crm_settings(), {}),
        ("last_event_id", lambda g: g.last_event_id(), {}),
        (
            "request_sync",
            lambda g: g.request_sync(3, T0),
            {"account_id": 3, "at": T0.isoformat()},
        ),
        ("subscriptions", lambda g: g.subscriptions(3), {"account_id": 3}),
        (
            "save_subscription",
            lambda g: g.save_subscription(SUBSCRIPTION, lease=LEASE),
            {"subscription": WIRE_SUBSCRIPTION, "lease": WIRE_LEASE},
        ),
        (
            "drop_subscription",
            lambda g: g.drop_subscription(3, SubscriptionKind.CALENDAR),
            {"account_id": 3, "kind": "calendar"},
        ),
        (
            "subscriptions_by_graph_id",
            lambda g: g.subscriptions_by_graph_id(iter(["s1", "s2", "s1", ""])),
            {"graph_ids": ["s1", "s2"]},
        ),
        (
            "record_notifications",
            lambda g: g.record_notifications(
                [
                    ReceivedNotification(
                        "s1", change_type="created", resource="Users/o/Messages/1"
                    ),
                    ReceivedNotification("s2", lifecycle_event="subscriptionRemoved"),
                ],
                T0,
            ),
            {
                "notifications": [
                    {
                        "subscription_id": "s1",
                        "change_type": "created",
                        "lifecycle_event": None,
                        "resource": "Users/o/Messages/1",
                    },
                    {
                        "subscription_id": "s2",
                        "change_type": None,
                        "lifecycle_event": "subscriptionRemoved",
                        "resource": "",
                    },
                ],
                "at": T0.isoformat(),
            },
        ),
        (
            "store_free_busy",
            lambda g: g.store_free_busy(7, [busy]),
            {
                "request_id": 7,
                "results": [
                    {
                        "address": "ann@example.com",
                        "slots": [
                            {
                                "start": T0.isoformat(),
                                "end": (T0 + timedelta(hours=1)).isoformat(),
                                "status": "busy",
                            }
                        ],
                        "error": None,
                    }
                ],
                "error": None,
            },
        ),
    ]


ANSWERS: dict[str, Any] = {
    "upsert_account": ACCOUNT,
    "get_account": ACCOUNT,
    "list_accounts": [ACCOUNT],
    "lease_accounts": [WIRE_LEASE],
    "renew_lease": WIRE_LEASE,
    "find_partners_by_emails": {"ann@example.com": PARTNER},
    "find_companies_by_domains": {},
    "get_partners": {"5": PARTNER},
    "create_partners": [PARTNER],
    "get_cursor": False,
    "store_mail_page": {"created": 1, "updated": 0, "linked": 1, "removed": 0},
    "unlisted_in_round": ["g7"],
    "last_sync_run": False,
    "count_messages": 4,
    "message_ids_for_account": {"g1": "<g1@example.com>", "draft": False},
    "list_mail_folders": [
        {
            "folder": {
                "graph_id": "F1",
                "display_name": "Key accounts",
                "parent_id": False,
                "well_known_name": False,
                "path": "Inbox/Key accounts",
                "total_items": 2,
            },
            "synced": True,
        }
    ],
    "threads_for_partner": [],
    "mail_counts_by_partner": [[PARTNER, 2, 3]],
    "pending_connects": [{"id": 9, "owner": "megan", "sealed": "eyJ.x"}],
    "store_event_page": {"created": 1, "updated": 0, "linked": 0, "removed": 1},
    "event_bindings": {},
    "bound_event_ids": ["g1", "g2"],
    "unconfirmed_series_ids": ["m1"],
    "unconfirmed_occurrences": [],
    "remove_cancelled_occurrences": 1,
    "meeting_candidates": [],
    "last_event_id": 41,
    "event_changes_to_push": [],
    "upcoming_events_for_partner": [],
    "outgoing_mail": [],
    "pending_free_busy": [],
    "crm_settings": {
        "sync_interval_seconds": 180,
        "blocklist": ["noreply@contoso.example"],
        "notification_url": "https://crm.contoso.example/m365/notifications",
        "crm_tag": "15d2625c",
    },
    "subscriptions": [ODOO_SUBSCRIPTION],
    "subscriptions_by_graph_id": {"s1": ODOO_SUBSCRIPTION},
    "record_notifications": [3],
}


COMMAND_LINE_ACTIONS = {"queue_mail", "create_meeting", "busy_times", "set_folder_choice"}


def test_every_gateway_method_is_in_the_table() -> None:
    named = {name for name, _, _ in call_table()}
    # Every method of the contract is one RPC, except closing the connections and the
    # command line's own CRM actions, which Odoo refuses (its users act in its forms).
    assert set(CrmGateway.__abstractmethods__) - {"close", *COMMAND_LINE_ACTIONS} == named


REFUSALS = {
    "queue_mail": (
        lambda g: g.queue_mail(3, to=[EmailAddress("a@b.example")], subject="s", body_html=""),
        "in Odoo use the wizards",
    ),
    "create_meeting": (
        lambda g: g.create_meeting(3, calendar_contract.event(""), []),
        "in Odoo use the wizards",
    ),
    "busy_times": (
        lambda g: g.busy_times(3, T0, T0 + timedelta(hours=1)),
        "in Odoo use the wizards",
    ),
    "set_folder_choice": (
        lambda g: g.set_folder_choice(3, FolderChoice.ALL),
        "open the account in Settings > Microsoft 365 Accounts",
    ),
}


def test_each_command_line_action_has_its_refusal() -> None:
    assert set(REFUSALS) == COMMAND_LINE_ACTIONS


@pytest.mark.parametrize(("invoke", "words"), REFUSALS.values(), ids=REFUSALS)
def test_odoo_refuses_the_command_lines_crm_actions_with_words_and_no_rpc(invoke, words) -> None:
    transport = FakeTransport()
    with pytest.raises(CrmHasForms, match=words):
        invoke(OdooGateway(transport))
    assert transport.calls == []


@pytest.mark.parametrize(("method", "invoke", "payload"), call_table(), ids=lambda v: "")
def test_each_call_is_one_rpc_with_the_arguments_by_name(method, invoke, payload) -> None:
    transport = FakeTransport(ANSWERS)
    invoke(OdooGateway(transport))
    assert transport.calls == [(method, payload)]


def test_answers_follow_odoos_conventions() -> None:
    gateway = OdooGateway(FakeTransport(ANSWERS))
    account = gateway.get_account(3)
    assert account.status is AccountStatus.THROTTLED
    assert account.status_until == datetime(2026, 11, 25, 12, 5, tzinfo=UTC)
    assert (account.last_sync_at, account.sealed_token_cache) == (None, None)  # False -> None
    assert account.own_domains == ("contoso.example",)
    # The owner's folder choice in Odoo (issue #14): ticked folders by id, with their paths.
    assert account.folder_choice is FolderChoice.CHOSEN
    assert account.mail_folders == ("AAMkKey",)
    assert account.mail_folder_labels == {"AAMkKey": "Inbox/Key accounts"}
    assert gateway.get_partners([5]) == {5: Partner(5, "Ann", "ann@example.com")}  # int keys
    assert gateway.get_cursor(3, INBOX) is None
    assert gateway.last_sync_run(3) is None
    assert gateway.count_messages() == 4
    assert gateway.message_ids_for_account(3) == {"g1": "<g1@example.com>", "draft": None}
    [known] = gateway.list_mail_folders(3)
    assert known.synced and known.folder.path == "Inbox/Key accounts"
    assert known.folder.parent_id is None and known.folder.total_items == 2
    assert gateway.mail_counts_by_partner() == [(Partner(5, "Ann", "ann@example.com"), 2, 3)]
    assert gateway.pending_connects() == [PendingConnect(9, "megan", "eyJ.x")]
    assert gateway.lease_accounts("w", limit=1, ttl_seconds=1) == [LEASE]
    assert gateway.store_mail_page(page(3)) == PageResult(1, 0, 1, 0)
    assert gateway.set_account_status(3, AccountStatus.ACTIVE) is None  # True -> None


def test_present_optionals_are_read() -> None:
    cursor = {"link": "https://g/delta?2", "kind": "delta"}
    run = to_wire(SyncRun(3, T0, None, error=None))
    run["finished_at"] = False
    run["error"] = False
    gateway = OdooGateway(FakeTransport({"get_cursor": cursor, "last_sync_run": run}))
    assert gateway.get_cursor(3, INBOX) == Cursor("https://g/delta?2", CursorKind.DELTA)
    assert gateway.last_sync_run(3) == SyncRun(3, T0)


@pytest.mark.parametrize(
    ("message", "kind", "text"),
    [
        ("M365:UnknownAccount: no account 12", UnknownAccount, "no account 12"),
        ("M365:LeaseLost: account 3 is leased by w2", LeaseLost, "account 3 is leased by w2"),
        ("M365:Conflict: changed meanwhile", Conflict, "changed meanwhile"),
        ("M365:StalePlan: event 4 changed since the plan", StalePlan, "event 4 changed"),
        ("Validation: prefix later M365:LeaseLost: stale", LeaseLost, "stale"),
        ("could not serialize access due to concurrent update", Conflict, "another writer"),
        ("The partner is archived", CrmError, "The partner is archived"),
    ],
)
def test_refusals_become_typed_errors(message: str, kind: type, text: str) -> None:
    error = error_from_refusal(message, where="Odoo at https://odoo.example")
    assert type(error) is kind
    assert text in str(error)


def test_a_typed_error_from_the_transport_passes_through() -> None:
    gateway = OdooGateway(FakeTransport({"renew_lease": LeaseLost("stale")}))
    with pytest.raises(LeaseLost):
        gateway.renew_lease(LEASE, ttl_seconds=1)


# --- XML-RPC on loopback ----------------------------------------------------------------------


def test_one_login_then_exactly_one_rpc_per_call(odoo: FakeOdoo, over_xmlrpc: OdooGateway):
    account = over_xmlrpc.upsert_account(spec())
    assert odoo.requests.count("/xmlrpc/2/common") == 1
    before = odoo.object_calls()
    written = page(account, INBOX, [message(unique("g")) for _ in range(200)])
    over_xmlrpc.store_mail_page(written)
    assert odoo.object_calls() == before + 1  # a whole Graph page is one RPC
    over_xmlrpc.get_cursor(account.id, INBOX)
    over_xmlrpc.find_partners_by_emails(f"{unique()}@x.example" for _ in range(500))
    assert odoo.object_calls() == before + 3
    assert odoo.requests.count("/xmlrpc/2/common") == 1


def test_characters_xml_cannot_carry_do_not_break_a_page(
    over_xmlrpc: OdooGateway, store: SqliteGateway
):
    account = over_xmlrpc.upsert_account(spec())
    odd = replace(
        message(unique("g")), subject="Price\x0clist\x00 \ud800ok", body_html="<p>\x1b</p>"
    )
    result = over_xmlrpc.store_mail_page(page(account, INBOX, [odd]))
    assert result.created == 1
    assert over_xmlrpc.count_messages(account.id) == 1


def test_the_contracts_refusals_come_back_typed(over_xmlrpc: OdooGateway) -> None:
    with pytest.raises(UnknownAccount):
        over_xmlrpc.get_account(2**31 - 7)
    account = over_xmlrpc.upsert_account(spec())
    (lease,) = [
        lease
        for lease in over_xmlrpc.lease_accounts("a", limit=10_000, ttl_seconds=60, now=T0)
        if lease.account_id == account.id
    ]
    over_xmlrpc.lease_accounts("b", limit=10_000, ttl_seconds=60, now=T0 + timedelta(hours=1))
    with pytest.raises(LeaseLost):
        over_xmlrpc.store_mail_page(page(account, INBOX, [message(unique("g"))]), lease=lease)


def test_a_wrong_key_is_named_and_never_shown(odoo: FakeOdoo, caplog) -> None:
    caplog.set_level(logging.DEBUG)
    gateway = xmlrpc_gateway(odoo.url, api_key="f" * 40)
    with pytest.raises(CrmError) as caught:
        gateway.list_accounts()
    assert not isinstance(caught.value, CrmUnavailable)
    assert KEY_REJECTED in str(caught.value)
    assert "f" * 40 not in str(caught.value) + repr(gateway) + caplog.text
    assert odoo.object_calls() == 0  # refused at login


def test_a_key_revoked_while_running_is_named(odoo: FakeOdoo, over_xmlrpc: OdooGateway) -> None:
    over_xmlrpc.list_accounts()
    over_xmlrpc.transport._key = type(over_xmlrpc.transport._key)("e" * 40)  # revoked
    with pytest.raises(CrmError, match=r"rejected the daemon's API key \(expired or revoked\?\)"):
        over_xmlrpc.list_accounts()


def test_a_user_outside_the_daemon_group_is_told_so(addon: FakeAddon) -> None:
    server = FakeOdoo(addon, in_group=False).start()
    try:
        with pytest.raises(CrmError, match="group") as caught:
            xmlrpc_gateway(server.url).list_accounts()
        assert USER in str(caught.value)
        assert not isinstance(caught.value, CrmUnavailable)
    finally:
        server.stop()


def test_a_missing_addon_or_method_is_named(odoo: FakeOdoo) -> None:
    transport = xmlrpc_gateway(odoo.url).transport
    with pytest.raises(CrmError, match=r"no model m365\.daemon\.api"):
        transport.execute_kw("m365.daemon.api.old", "x", [{}])  # no such model
    with pytest.raises(CrmError, match="crm_microsoft365 has no lease_calendar"):
        transport.call("lease_calendar", {})


def test_a_missing_database_is_named(odoo: FakeOdoo) -> None:
    with pytest.raises(CrmError, match="no database 'nope'"):
        xmlrpc_gateway(odoo.url, db="nope").list_accounts()


def test_an_addon_bug_is_a_crm_error_with_its_last_line(odoo: FakeOdoo, over_xmlrpc) -> None:
    with pytest.raises(CrmError) as caught:
        over_xmlrpc.transport.call("get_account", {"account_id": "not a number"})
    assert "ValueError" in str(caught.value)
    assert "Traceback" not in str(caught.value)


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_odoo_down_is_unavailable_naming_the_url_not_the_key(caplog) -> None:
    caplog.set_level(logging.DEBUG)
    url = f"http://127.0.0.1:{_closed_port()}"
    gateway = xmlrpc_gateway(url)
    with pytest.raises(CrmUnavailable) as caught:
        gateway.count_messages()
    text = str(caught.value)
    assert url in text and "connection refused" in text
    assert KEY not in text + caplog.text + repr(caught.value.__context__)
    assert caught.value.__cause__ is None
    sentence = advice_for(caught.value).sentence
    assert url in sentence and KEY not in sentence


def test_a_silent_odoo_times_out() -> None:
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(1)
        gateway = xmlrpc_gateway(f"http://127.0.0.1:{silent.getsockname()[1]}", timeout=0.3)
        with pytest.raises(CrmUnavailable, match=r"did not answer within 0\.3 s"):
            gateway.list_accounts()


@pytest.mark.parametrize(("status", "kind"), [(502, CrmUnavailable), (503, CrmUnavailable)])
def test_http_errors_in_front_of_odoo(odoo: FakeOdoo, status: int, kind: type) -> None:
    odoo.fail_status = status
    with pytest.raises(kind, match=f"HTTP {status}"):
        xmlrpc_gateway(odoo.url).list_accounts()


def test_a_page_too_large_says_what_to_lower(odoo: FakeOdoo, over_xmlrpc) -> None:
    over_xmlrpc.list_accounts()
    odoo.fail_status = 413
    with pytest.raises(CrmError, match="page_size"):
        over_xmlrpc.store_mail_page(page(1))


def test_an_answer_that_is_not_xmlrpc_is_unavailable(odoo: FakeOdoo) -> None:
    odoo.garbage = True
    with pytest.raises(CrmUnavailable, match="not XML-RPC"):
        xmlrpc_gateway(odoo.url).list_accounts()


def test_recovers_when_odoo_comes_back(odoo: FakeOdoo, over_xmlrpc: OdooGateway) -> None:
    odoo.fail_status = 503
    with pytest.raises(CrmUnavailable):
        over_xmlrpc.list_accounts()
    odoo.fail_status = 0
    assert isinstance(over_xmlrpc.list_accounts(), list)


def test_threads_share_one_gateway(over_xmlrpc: OdooGateway) -> None:
    account = over_xmlrpc.upsert_account(spec())
    errors: list[BaseException] = []

    def work(n: int) -> None:
        try:
            for i in range(5):
                over_xmlrpc.store_mail_page(page(account, f"f{n}", [message(f"t{n}-{i}")]))
        except BaseException as error:  # collected, asserted below
            errors.append(error)

    workers = [threading.Thread(target=work, args=(n,)) for n in range(4)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    assert errors == []
    assert over_xmlrpc.count_messages(account.id) == 20


def test_https_uses_the_configured_ca_bundle(tmp_path: Path) -> None:
    trustme = pytest.importorskip("trustme")
    import ssl

    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1")
    server = FakeOdoo(FakeAddon(SqliteGateway(tmp_path / "s.sqlite3")))
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    cert.configure_cert(context)
    server.server.socket = context.wrap_socket(server.server.socket, server_side=True)
    server.start()
    url = server.url.replace("http://", "https://")
    bundle = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(bundle))
    try:
        assert xmlrpc_gateway(url, ca_bundle=str(bundle)).list_accounts() == []
        with pytest.raises(CrmUnavailable, match="TLS certificate"):
            xmlrpc_gateway(url).list_accounts()  # the system store does not know this CA
    finally:
        server.stop()


def test_no_repr_shows_the_key() -> None:
    for gateway in (
        xmlrpc_gateway("https://odoo.example"),
        OdooGateway(Json2Transport("https://odoo.example", DB, KEY)),
    ):
        assert KEY not in repr(gateway) + repr(gateway.transport) + repr(vars(gateway.transport))


def test_credentials_in_the_url_are_not_repeated() -> None:
    gateway = xmlrpc_gateway(f"http://someone:{KEY}@127.0.0.1:{_closed_port()}")
    with pytest.raises(CrmUnavailable) as caught:
        gateway.list_accounts()
    assert KEY not in str(caught.value)


# --- JSON-2 -----------------------------------------------------------------------------------


@pytest.fixture
def json2(addon: FakeAddon) -> tuple[OdooGateway, FakeJson2Session]:
    session = FakeJson2Session(addon)
    transport = Json2Transport(
        "https://odoo.example/", DB, KEY, ca_bundle="/etc/ca.pem", session_factory=lambda: session
    )
    return OdooGateway(transport), session


def test_json2_request_shape(json2) -> None:
    gateway, session = json2
    gateway.get_cursor(2**31 - 7, INBOX)
    (sent,) = session.sent
    assert sent["url"] == "https://odoo.example/json/2/m365.daemon.api/get_cursor"
    assert sent["headers"]["Authorization"] == f"bearer {KEY}"
    assert sent["headers"]["X-Odoo-Database"] == DB
    assert sent["headers"]["Content-Type"].startswith("application/json")
    assert json.loads(sent["data"]) == {"payload": {"account_id": 2**31 - 7, "folder_id": INBOX}}
    assert sent["verify"] == "/etc/ca.pem"
    assert sent["timeout"] > 0


def test_json2_errors(json2, addon: FakeAddon, caplog) -> None:
    caplog.set_level(logging.DEBUG)
    gateway, session = json2
    with pytest.raises(UnknownAccount):
        gateway.get_account(2**31 - 7)
    wrong = OdooGateway(
        Json2Transport("https://odoo.example", DB, "f" * 40, session_factory=lambda: session)
    )
    with pytest.raises(CrmError, match=r"expired or revoked\?") as caught:
        wrong.list_accounts()
    assert "f" * 40 not in str(caught.value) + caplog.text
    outsider = FakeJson2Session(addon, in_group=False)
    with pytest.raises(CrmError, match="group"):
        OdooGateway(
            Json2Transport("https://odoo.example", DB, KEY, session_factory=lambda: outsider)
        ).list_accounts()
    with pytest.raises(CrmError, match="crm_microsoft365 has no lease_calendar"):
        gateway.transport.call("lease_calendar", {})
    session.status = 503
    with pytest.raises(CrmUnavailable, match="HTTP 503"):
        gateway.list_accounts()
    session.status = 0
    session.fail = requests.ConnectionError(
        "Max retries exceeded", ConnectionRefusedError(111, "x")
    )
    with pytest.raises(CrmUnavailable, match=r"https://odoo.example cannot be reached"):
        gateway.list_accounts()
    session.fail = requests.ReadTimeout("read timed out")
    with pytest.raises(CrmUnavailable, match="did not answer"):
        gateway.list_accounts()
    assert KEY not in caplog.text


def test_json2_string_error_bodies_are_read(json2) -> None:
    """Odoo 19 development versions answered errors as a plain JSON string."""
    gateway, session = json2
    session.post = lambda url, **kw: _response(422, "M365:LeaseLost: account 3 moved on")
    with pytest.raises(LeaseLost, match="account 3 moved on"):
        gateway.release_lease(LEASE)


# --- wiring -----------------------------------------------------------------------------------


def test_the_configuration_chooses_the_protocol() -> None:
    for protocol, kind in (("xmlrpc", XmlRpcTransport), ("json2", Json2Transport)):
        config = Config(
            store=StoreConfig(backend="odoo"),
            odoo=OdooConfig("https://odoo.example", DB, USER, KEY, protocol=protocol),
        )
        gateway = open_gateway(config)
        assert isinstance(gateway, OdooGateway)
        assert isinstance(gateway.transport, kind)
        assert gateway.transport.url == "https://odoo.example"
    with pytest.raises(CrmError, match="protocol"):
        OdooGateway.from_config(OdooConfig("https://odoo.example", DB, USER, KEY, protocol="soap"))


def test_account_round_trip_keeps_every_field(over_xmlrpc: OdooGateway) -> None:
    wanted = spec(own_domains=("a.example", "b.example"))
    account = over_xmlrpc.upsert_account(wanted)
    over_xmlrpc.set_account_status(
        account.id, AccountStatus.THROTTLED, "slow", until=T0, synced_at=T0 - timedelta(hours=1)
    )
    got = over_xmlrpc.get_account(account.id)
    assert isinstance(got, Account)
    assert (got.status_until, got.last_sync_at) == (T0, T0 - timedelta(hours=1))
    assert got.own_domains == ("a.example", "b.example")
    assert over_xmlrpc.list_accounts()[-1] == got


def test_a_page_round_trip_keeps_every_field(over_xmlrpc: OdooGateway, store) -> None:
    account = over_xmlrpc.upsert_account(spec())
    written: PageWrite = page(account, INBOX, [message(unique("g"))])
    written.skipped = {"internal": 2}
    over_xmlrpc.store_mail_page(written)
    assert store.get_cursor(account.id, INBOX) == written.cursor
    assert store.folder_skips(account.id, INBOX) == {"internal": 2}


# --- the key never shows in a traceback ----------------------------------------------------------


def _traceback_with_locals(error: BaseException) -> str:
    """What pytest or a crash report could print: every frame's arguments and locals."""
    shown = traceback.TracebackException.from_exception(error, capture_locals=True)
    return "".join(shown.format())


def test_tracebacks_never_hold_the_key(odoo: FakeOdoo, addon: FakeAddon) -> None:
    failures: list[BaseException] = []
    attempts = [
        lambda: xmlrpc_gateway(odoo.url).get_account(2**31 - 7),  # a Fault
        lambda: xmlrpc_gateway(f"http://127.0.0.1:{_closed_port()}").list_accounts(),
        lambda: xmlrpc_gateway(odoo.url).transport.call("get_account", {"account_id": "x"}),
        lambda: xmlrpc_gateway(odoo.url).transport.execute_kw("m", "x", [object()]),  # marshal
    ]
    session = FakeJson2Session(addon)
    over_json2 = OdooGateway(
        Json2Transport("https://odoo.example", DB, KEY, session_factory=lambda: session)
    )
    attempts.append(lambda: over_json2.get_account(2**31 - 7))

    def refuse(url: str, **kw: Any) -> requests.Response:
        raise requests.ConnectionError("refused")

    broken = FakeJson2Session(addon)
    broken.post = refuse
    attempts.append(
        lambda: OdooGateway(
            Json2Transport("https://odoo.example", DB, KEY, session_factory=lambda: broken)
        ).list_accounts()
    )
    for attempt in attempts:
        with pytest.raises(CrmError) as caught:
            attempt()
        failures.append(caught.value)
    for failure in failures:
        text = _traceback_with_locals(failure)
        assert KEY not in text, text
        # the frames below, which held it, are not shown
        assert failure.__suppress_context__ or failure.__context__ is None


# --- later addon parts: calendar, outbox, free/busy ----------------------------------------------


@pytest.mark.parametrize(
    ("features", "call"),
    [
        ((), lambda g: g.event_bindings(1, [])),
        (("calendar",), lambda g: g.outgoing_mail(1)),
        (("calendar", "outbox"), lambda g: g.pending_free_busy()),
        (("calendar", "outbox", "free_busy"), lambda g: g.crm_settings()),
        (("calendar", "outbox", "free_busy"), lambda g: g.subscriptions(1)),
        (("calendar", "outbox", "free_busy", "push"), lambda g: g.claim_connect(9, "a:1")),
    ],
)
def test_an_addon_older_than_the_daemon_is_named_with_what_to_do(tmp_path, features, call) -> None:
    """Daemon and addon ship together: no probes or capability flags. A method the addon on
    the server lacks fails that call with a sentence saying to upgrade the addon."""
    store = SqliteGateway(tmp_path / "old.sqlite3")
    server = FakeOdoo(FakeAddon(store, features=features)).start()
    try:
        with pytest.raises(AddonMethodMissing, match="older than this daemon: upgrade the addon"):
            call(xmlrpc_gateway(server.url))
    finally:
        server.stop()
        store.close()


def test_a_series_master_carries_odoos_recurrence_or_the_reason() -> None:
    transport = FakeTransport(ANSWERS)
    start = datetime(2026, 12, 7, 9, 0, tzinfo=UTC)  # a Monday
    weekly = Recurrence(
        "weekly", start.date(), days_of_week=("monday",), time_zone="W. Europe Standard Time"
    )
    last_friday = Recurrence(
        "relativeYearly", start.date(), days_of_week=("friday",), index="last", month=11
    )
    master = replace(
        calendar_contract.event("m1", start=start, event_type=EventType.SERIES_MASTER),
        recurrence=weekly,
    )
    odd = replace(master, graph_id="m2", recurrence=last_friday)
    occurrence = calendar_contract.event(
        "o1", start=start, event_type=EventType.OCCURRENCE, master="m1"
    )
    written = calendar_contract.page(
        Account(3, "a@b.example"),
        [StoredEvent(e, []) for e in (master, odd, occurrence)],
    )
    OdooGateway(transport).store_event_page(written)
    ((method, payload),) = transport.calls
    first, second, third = payload["page"]["upserts"]
    assert method == "store_event_page"
    assert first["event"]["recurrence"] == to_wire(weekly)  # Graph's pattern stays as is
    values = first["odoo_recurrence"]
    assert (values["rrule_type"], values["mon"], values["tue"]) == ("weekly", True, False)
    assert (values["end_type"], values["event_tz"]) == ("forever", "Europe/Berlin")
    assert first["odoo_recurrence_note"] is None
    assert second["odoo_recurrence"] is None
    assert "Odoo cannot repeat yearly on a weekday" in second["odoo_recurrence_note"]
    assert (third["odoo_recurrence"], third["odoo_recurrence_note"]) == (None, None)


def _odoo_change(crm_event_id: int, values: dict[str, Any], *, deleted: bool = False) -> dict:
    start = datetime(2026, 12, 8, 8, 0, tzinfo=UTC)  # Tuesday 9:00 in Paris
    event = replace(calendar_contract.event("", start=start), time_zone="Europe/Paris")
    change = CrmEventChange(crm_event_id, event, 1, deleted=deleted)
    wire = _odoo_values(_as_odoo_change(change, "a@b.example"))
    # The base event of a series made in Odoo (or, without values, a single event).
    odoo = replace(_odoo_event_of(event), in_series=bool(values), is_series_base=bool(values))
    wire["odoo_event"] = _odoo_values(to_wire(odoo))
    wire["odoo_recurrence"] = values
    return wire


ODOO_MONTHLY = {
    "rrule_type": "monthly",
    "interval": 1,
    "month_by": "day",
    "weekday": "TUE",
    "byday": "2",
    "day": 1,
    "end_type": "count",
    "count": 5,
    "until": False,
    "event_tz": "Europe/Paris",
    **dict.fromkeys(("mon", "tue", "wed", "thu", "fri", "sat", "sun"), False),
}


def test_a_series_made_in_odoo_is_pushed_with_graphs_recurrence(caplog) -> None:
    day_31 = ODOO_MONTHLY | {"month_by": "date", "day": 31}
    answer = [
        _odoo_change(1, ODOO_MONTHLY),
        _odoo_change(2, day_31),  # Outlook would move it to shorter months' last day
        _odoo_change(3, day_31, deleted=True),  # a deletion still goes
        _odoo_change(4, False),  # a single event
    ]
    gateway = OdooGateway(FakeTransport({"event_changes_to_push": answer}))
    monthly, deleted, single = gateway.event_changes_to_push(3)
    assert [c.crm_event_id for c in (monthly, deleted, single)] == [1, 3, 4]
    assert monthly.event.event_type is EventType.SERIES_MASTER
    assert monthly.event.recurrence == Recurrence(
        "relativeMonthly",
        datetime(2026, 12, 8).date(),
        days_of_week=("tuesday",),
        index="second",
        range_type="numbered",
        number_of_occurrences=5,
        time_zone="Europe/Paris",
    )
    assert deleted.deleted and deleted.event.recurrence is None
    assert single.event.recurrence is None and single.event.event_type is EventType.SINGLE
    assert "CRM event 2" in caplog.text and "not pushed" in caplog.text


def test_an_addon_that_does_not_give_an_events_people_is_to_be_upgraded() -> None:
    """An older addon decided the people itself and sends none of ``odoo_people``: pushing
    its changes would drop the attendees, so the daemon says to upgrade the addon instead."""
    old = _odoo_change(1, False)
    del old["odoo_people"]
    gateway = OdooGateway(FakeTransport({"event_changes_to_push": [old]}))
    with pytest.raises(AddonMethodMissing, match="upgrade the addon"):
        gateway.event_changes_to_push(3)


def test_a_series_round_trips_through_the_addon(over_xmlrpc: OdooGateway, store) -> None:
    account = over_xmlrpc.upsert_account(spec())
    start = datetime.now(UTC).replace(microsecond=0) + timedelta(days=2)
    weekly = Recurrence(
        "weekly",
        start.date(),
        days_of_week=(start.strftime("%A").lower(),),
        range_type="numbered",
        number_of_occurrences=4,
    )
    item = replace(
        calendar_contract.event("", start=start, event_type=EventType.SERIES_MASTER),
        recurrence=weekly,
        time_zone="UTC",
    )
    event_id = store.crm_create_event(account.id, item)
    (change,) = over_xmlrpc.event_changes_to_push(account.id)
    assert change.crm_event_id == event_id
    got = change.event.recurrence
    assert (got.pattern_type, got.days_of_week, got.number_of_occurrences) == (
        "weekly",
        weekly.days_of_week,
        4,
    )
    assert over_xmlrpc.event_bindings(account.id, []) == {}
    over_xmlrpc.mark_event_pushed(account.id, event_id, graph_id="g-1", change_key="c", version=1)
    (binding,) = over_xmlrpc.event_bindings(account.id, ["g-1"]).values()
    assert isinstance(binding, EventBinding) and binding.pushed_version == 1
    assert over_xmlrpc.upcoming_events_for_partner(2**31 - 7, since=start) == []


def test_outgoing_mail_and_its_attachment_bytes_cross_xmlrpc(
    over_xmlrpc: OdooGateway, store
) -> None:
    account = over_xmlrpc.upsert_account(spec())
    content = bytes(range(256)) * 4
    mail_id = store.crm_queue_mail(
        account.id,
        to=[EmailAddress("anna@fabrikam.example", "Anna")],
        subject="Quote",
        body_html="<p>see attached</p>",
        attachments=[OutgoingAttachment("q.pdf", "application/pdf", content)],
    )
    (mail,) = over_xmlrpc.outgoing_mail(account.id)
    assert isinstance(mail, OutgoingMail)
    assert (mail.id, mail.state, mail.graph_id, mail.error) == (
        mail_id,
        OutboxState.QUEUED,
        None,
        None,
    )
    assert mail.attachments == (OutgoingAttachment("q.pdf", "application/pdf", content),)
    over_xmlrpc.update_outgoing(mail_id, OutboxState.SENDING, send_started_at=T0)
    over_xmlrpc.update_outgoing(mail_id, OutboxState.SENT, graph_id="g", conversation_id="c")
    stored = store.outbox_item(mail_id)
    assert (stored.state, stored.graph_id, stored.send_started_at) == (OutboxState.SENT, "g", T0)
    assert over_xmlrpc.outgoing_mail(account.id) == []


def test_free_busy_requests_and_answers(addon: FakeAddon, over_xmlrpc: OdooGateway) -> None:
    addon.free_busy_pending.append(
        {
            "id": 7,
            "account_id": 3,
            "addresses": ["ann@example.com"],
            "day": "2026-11-25",
            "time_zone": "Europe/Paris",
            "start": "2026-11-24T23:00:00+00:00",
            "end": "2026-11-25T23:00:00+00:00",
        }
    )
    (request,) = over_xmlrpc.pending_free_busy()
    assert request == FreeBusyRequest(
        7,
        3,
        ("ann@example.com",),
        datetime(2026, 11, 24, 23, tzinfo=UTC),
        datetime(2026, 11, 25, 23, tzinfo=UTC),
        datetime(2026, 11, 25).date(),
        "Europe/Paris",
    )
    over_xmlrpc.store_free_busy(7, [Availability("ann@example.com", (), "not found")])
    assert addon.free_busy_answers[7]["results"] == [
        {"address": "ann@example.com", "slots": [], "error": "not found"}
    ]
    assert over_xmlrpc.pending_free_busy() == []


# --- push and the CRM's settings -------------------------------------------------------------


def test_push_answers_follow_odoos_conventions() -> None:
    gateway = OdooGateway(FakeTransport(ANSWERS))
    assert gateway.subscriptions(3) == [SUBSCRIPTION]  # False -> None and ""
    assert gateway.subscriptions_by_graph_id(["s1"]) == {"s1": SUBSCRIPTION}
    assert gateway.record_notifications([ReceivedNotification("s1", "created")], T0) == [3]
    assert gateway.request_sync(3, T0) is None  # True -> None
    assert gateway.save_subscription(SUBSCRIPTION) is None
    assert gateway.crm_settings() == CrmSettings(
        180,
        ("noreply@contoso.example",),
        "https://crm.contoso.example/m365/notifications",
        "15d2625c",
    )
    assert gateway.last_event_id() == 41
    assert gateway.get_account(3).sync_requested_at is None


def test_present_push_values_are_read() -> None:
    notified = WIRE_SUBSCRIPTION | {
        "state": "reauthorize",
        "last_notified_at": "2026-11-25T12:00:05+00:00",
        "detail": "renew",
    }
    answers = ANSWERS | {
        "get_account": ACCOUNT | {"sync_requested_at": "2026-11-25T12:00:05+00:00"},
        "subscriptions": [notified],
        "crm_settings": {"sync_interval_seconds": False, "blocklist": [], "notification_url": ""},
        "record_notifications": [9, 3],
    }
    gateway = OdooGateway(FakeTransport(answers))
    later = T0 + timedelta(seconds=5)
    assert gateway.get_account(3).sync_requested_at == later
    (subscription,) = gateway.subscriptions(3)
    assert (subscription.state, subscription.last_notified_at) == (
        SubscriptionState.REAUTHORIZE,
        later,
    )
    assert subscription.detail == "renew"
    # Push off, nothing set, and an older addon that gives no tag: the defaults (untagged).
    assert gateway.crm_settings() == CrmSettings()
    assert gateway.record_notifications([], T0) == [3, 9]


def test_a_stale_lease_on_save_is_lease_lost() -> None:
    transport = FakeTransport({"save_subscription": LeaseLost("stale")})
    with pytest.raises(LeaseLost):
        OdooGateway(transport).save_subscription(SUBSCRIPTION, lease=LEASE)


class TestPushOverJson2(PushContract):
    @pytest.fixture
    def gateway(self, addon: FakeAddon) -> CrmGateway:
        session = FakeJson2Session(addon)
        return OdooGateway(
            Json2Transport("https://odoo.example", DB, KEY, session_factory=lambda: session)
        )


# --- claims: which replica answers a pending connect or free/busy request ----------------------


def test_claims_answer_the_addons_boolean() -> None:
    gateway = OdooGateway(FakeTransport({"claim_connect": False, "claim_free_busy": True}))
    assert gateway.claim_connect(9, "host-b:2") is False
    assert gateway.claim_free_busy(7, "host-b:2") is True


def test_of_two_replicas_one_claims_until_its_claim_expires(odoo: FakeOdoo) -> None:
    first, second = xmlrpc_gateway(odoo.url), xmlrpc_gateway(odoo.url)
    try:
        assert first.claim_connect(9, "host-a:1") is True
        assert second.claim_connect(9, "host-b:2") is False
        assert first.claim_connect(9, "host-a:1") is True  # its own claim, renewed
        assert second.claim_free_busy(7, "host-b:2", ttl_seconds=60) is True
        assert first.claim_free_busy(7, "host-a:1", ttl_seconds=60) is False
        odoo.addon.clock += 121  # host-a went quiet
        assert second.claim_connect(9, "host-b:2") is True
        assert first.claim_connect(9, "host-a:1") is False
        # A finished request is nobody's to claim.
        second.finish_connect(9, error="declined")
        second.store_free_busy(7, [])
        odoo.addon.clock += 3600
        assert not first.claim_connect(9, "host-a:1")
        assert not first.claim_free_busy(7, "host-a:1")
    finally:
        first.close()
        second.close()


def test_claims_over_json2(addon: FakeAddon) -> None:
    session = FakeJson2Session(addon)
    gateway = OdooGateway(
        Json2Transport("https://odoo.example", DB, KEY, session_factory=lambda: session)
    )
    assert gateway.claim_free_busy(7, "host-a:1") is True
    assert gateway.claim_free_busy(7, "host-b:2") is False
    assert addon.calls[-1] == (
        "claim_free_busy",
        {"request_id": 7, "holder": "host-b:2", "ttl_seconds": 60.0},
    )


def test_a_claim_the_crm_cannot_answer_raises_and_is_asked_again() -> None:
    transport = FakeTransport({"claim_connect": CrmUnavailable("down")})
    gateway = OdooGateway(transport)
    with pytest.raises(CrmUnavailable):
        gateway.claim_connect(9, "host-a:1")
    transport.answers["claim_connect"] = True
    assert gateway.claim_connect(9, "host-a:1") is True
    assert len(transport.calls) == 2
