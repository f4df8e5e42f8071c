"""The product's CRM adapter: `CrmGateway` over Odoo's external API and the addon's RPC model.

The addon ``crm_microsoft365`` exposes one model, ``m365.daemon.api``, with a public method
per gateway method (same name). Each takes one positional argument, ``payload``: a dict of
the Python method's arguments in wire form (`m365sync.crm.wire.to_wire`, keys = parameter
names), and returns the wire form of the result. Conventions that XML-RPC forces on Odoo
(its server marshaller refuses ``None``):

* a method returning None answers ``True``; an Optional result that is absent (`get_cursor`,
  `last_sync_run`) answers ``False``; a ``False`` in place of any optional value is None;
* dicts keyed by integers (`get_partners`) arrive with string keys;
* `mail_counts_by_partner` answers ``[[partner, threads, messages], ...]``;
* refusals are ``UserError`` messages prefixed ``M365:UnknownAccount:``, ``M365:LeaseLost:``
  ``M365:StalePlan:`` or ``M365:Conflict:``, mapped onto `UnknownAccount`, `LeaseLost`,
  `StalePlan` and `Conflict`.

**One addon version.** The daemon and the addon ship together: every gateway method is on the
addon's ``m365.daemon.api``, with no probes or capability flags. An addon older than the
daemon lacks a method, and the call fails with `AddonMethodMissing`, a sentence naming the
method and saying to upgrade the addon.

Beside the plain wire form:

* in ``store_event_page`` each stored event also carries ``odoo_values`` (the Odoo field
  values the item decides: name, privacy, show-as, times, ...; `sync.event_mapping.
  odoo_values`) with ``odoo_kept_values`` (stored values those writes leave in place),
  ``odoo_people_values`` (what the item makes of the event's people: `sync.attendees.
  odoo_people_values`), ``odoo_recurrence`` (a series master's ``calendar.recurrence`` values from
  `m365sync.crm.odoo_recurrence.to_odoo`, or null) and ``odoo_recurrence_note`` (the
  sentence saying why Odoo cannot hold the pattern, or null);
* an ``event_changes_to_push`` item carries ``odoo_event``, the event's stored Odoo fields
  (`sync.event_mapping.OdooEvent`), mapped to Outlook's type, times, zone, sensitivity and
  show-as by `sync.event_mapping` (which also leaves out the occurrences Odoo expanded), and
  ``odoo_people``, its stored attendees, kept Outlook lines, organizer and user
  (`sync.attendees.OdooPeople`), turned into its Outlook attendees, organizer and the owner's
  answer by `sync.attendees.push_people_of_odoo`, and
  may carry ``odoo_recurrence`` (the Odoo fields of a series made in Odoo), read back into
  Graph's pattern with ``from_odoo``; a series Outlook cannot repeat the same way is left
  pending with a warning naming it;
* bytes (an outgoing attachment's content) travel as base64 text (`m365sync.crm.wire`).

**One RPC per gateway call.** Every gateway method is exactly one request (a Graph page is
one `store_mail_page`); the addon does the whole call in one transaction, which is also what
Odoo 19's JSON-2 API requires (each of its calls is its own transaction). XML-RPC adds one
``authenticate`` per process, the first time it is needed.

**Two protocols**, chosen by ``odoo.protocol``:

* ``xmlrpc`` (Odoo 17 and 18): ``/xmlrpc/2/common`` ``authenticate(db, login, key, {})``
  gives the uid, then ``/xmlrpc/2/object`` ``execute_kw(db, uid, key, model, method, args)``.
  Faults carry an integer code: 1 application error (a traceback), 2 ``UserError``,
  3 ``AccessDenied`` (wrong or expired key), 4 ``AccessError`` (missing group).
* ``json2`` (Odoo 19 and later): ``POST {url}/json/2/{model}/{method}`` with
  ``Authorization: bearer <key>``, ``X-Odoo-Database: <db>`` and a JSON object of named
  arguments (here ``{"payload": ...}``); the answer is the JSON result, or a 4xx/5xx with a JSON
  error object (``name``, ``message``, ``arguments``, ``debug``): 401 for a rejected key, the
  exception's ``http_status`` for a ``UserError``. Parameters are named at the top level of
  the body (no ``args``/``kwargs`` since odoo/odoo#218389). Each call is its own transaction.
  Sources: Odoo 19 "External JSON-2 API" (odoo/documentation
  content/developer/reference/external_api.rst, sections Request, Response, Transaction);
  odoo/odoo 19.0 addons/rpc/controllers/json2.py (``web_json_2_rpc``, ``handle_error``).

**Errors.** Only `m365sync.errors.CrmError` subclasses leave this module. A CRM that cannot
be reached (refused connection, time-out, TLS failure, HTTP 5xx, an answer that is not the
protocol) raises `CrmUnavailable` with a sentence naming the URL; a rejected key or a user
outside the daemon's group raises `CrmError` saying which. The API key never appears in an
exception, a log line or a ``repr``.

**The technical user's API key.** The daemon logs in as a dedicated technical user, a member
of the addon's group *Sync daemon (technical)* (``crm_microsoft365.group_m365_daemon``), with
an API key as its password. Odoo 18 limits the lifetime of the keys users make for
themselves (``odoo/addons/base/models/res_users.py`` of Odoo 18.0):

* ``res.users.apikeys._check_expiration_date`` (line 2369) makes a non-administrator give an
  expiration date, at most the largest ``api_key_duration`` of the user's groups (line 2377;
  the field is ``res.groups.api_key_duration``, line 194; *Internal User* sets 90 days in
  ``base/security/base_groups.xml`` line 27, the addon's daemon group 366; 1 day if no group
  sets one). The key wizard offers only those durations (line 2437).
* Only a system user, or code in sudo, may create a key without expiry (``env.is_system()``,
  line 2373; the wizard's "Persistent Key" choice, line 2433, is offered to them only).
* An expired key stops working at once (``_check_credentials``, line 2350, accepts rows with
  ``expiration_date IS NULL`` or in the future) and the autovacuum deletes it
  (``_gc_user_apikeys``, line 2410).

So an administrator makes the daemon's lasting key, for the technical user, with no expiry
(``_generate``, line 2381: scope ``"rpc"``; the key belongs to ``env.user``, hence
``with_user``), e.g. in ``odoo-bin shell``::

    user = env["res.users"].search([("login", "=", "m365sync-daemon")])
    key = env["res.users.apikeys"].with_user(user).sudo()._generate("rpc", "m365sync", None)
    env.cr.commit()

and puts it in ``odoo.api_key`` (or ``M365SYNC_ODOO__API_KEY``). A key the technical user makes
itself in Preferences > Account Security lasts at most 366 days. When a key lapses or is
revoked, every call fails with "the CRM rejected the daemon's API key (expired or revoked?)".
"""

from __future__ import annotations

import abc
import contextlib
import dataclasses
import http.client
import json
import logging
import os
import re
import socket
import ssl
import threading
import time
import xmlrpc.client
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit, urlunsplit
from xml.parsers.expat import ExpatError

import requests
from requests.auth import AuthBase

from m365sync.config import OdooConfig
from m365sync.crm import odoo_recurrence
from m365sync.crm.gateway import AccountSpec, CrmGateway, FreeBusyRequest
from m365sync.crm.wire import from_wire, to_wire
from m365sync.domain import (
    Account,
    AccountStatus,
    CalendarEvent,
    CrmEventChange,
    CrmSettings,
    Cursor,
    EmailAddress,
    EventBinding,
    EventLink,
    EventPageWrite,
    EventSummary,
    EventType,
    FolderChoice,
    KnownFolder,
    Lease,
    MailFolder,
    MeetingCandidate,
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
    Subscription,
    SubscriptionKind,
    SyncRun,
    ThreadSummary,
    UnconfirmedOccurrences,
)
from m365sync.errors import (
    Conflict,
    CrmError,
    CrmHasForms,
    CrmUnavailable,
    LeaseLost,
    StalePlan,
    UnknownAccount,
)
from m365sync.sync import event_mapping
from m365sync.sync import recurrence as recurrences
from m365sync.sync.attendees import OdooPeople, odoo_people_values, push_people_of_odoo
from m365sync.sync.timezones import UnknownTimeZone, zone

__all__ = [
    "API_MODEL",
    "KEY_REJECTED",
    "AddonMethodMissing",
    "Json2Transport",
    "OdooGateway",
    "OdooTransport",
    "XmlRpcTransport",
    "change_from_odoo",
    "error_from_refusal",
    "odoo_recurrence_of",
]

log = logging.getLogger(__name__)

API_MODEL = "m365.daemon.api"
ADDON = "crm_microsoft365"
DEFAULT_TIMEOUT = 120.0  # seconds; a page of 1000 messages is one call
KEY_REJECTED = "the CRM rejected the daemon's API key (expired or revoked?)"
GROUP_HINT = (
    "The daemon's technical user (odoo.user) must be in the group 'Sync daemon (technical)' "
    f"({ADDON}.group_m365_daemon; Settings > Users, in developer mode)."
)
_REFUSALS: tuple[tuple[str, type[CrmError]], ...] = (
    ("M365:UnknownAccount:", UnknownAccount),
    ("M365:LeaseLost:", LeaseLost),
    ("M365:StalePlan:", StalePlan),
    ("M365:Conflict:", Conflict),
)
# PostgreSQL concurrency failures Odoo gave up retrying: another writer was first.
_CONCURRENCY = re.compile(
    r"SerializationFailure|could not serialize access|deadlock detected|LockNotAvailable"
)
# XML 1.0 cannot carry these (a mail subject with a form feed would make the whole page
# unreadable to Odoo's parser); Odoo strips the same characters from its own answers.
_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")


def display_url(url: str) -> str:
    """The URL without any user:password part, fit for messages and logs."""
    parts = urlsplit(url)
    if "@" not in parts.netloc:
        return url.rstrip("/")
    host = parts.netloc.rpartition("@")[2]
    return urlunsplit((parts.scheme, host, parts.path, parts.query, parts.fragment)).rstrip("/")


def error_from_refusal(message: str, *, where: str) -> CrmError:
    """A refusal the addon (or Odoo) put in words -> the typed error the sync engine expects."""
    for prefix, kind in _REFUSALS:
        at = message.find(prefix)
        if at >= 0:
            return kind(message[at + len(prefix) :].strip() or message.strip())
    if _CONCURRENCY.search(message):
        return Conflict(f"{where}: another writer changed the same records first; retry.")
    return CrmError(f"{where} refused the call: {message.strip()}")


class OdooTransport(abc.ABC):
    """One call of ``m365.daemon.api`` over some protocol: the adapter's only seam.

    ``call`` sends ``payload`` (already in wire form) to the method of that name and returns
    the decoded answer, or raises a `CrmError` subclass. Implementations never put the API
    key in an exception or a log line.
    """

    url: str = ""

    @abc.abstractmethod
    def call(self, method: str, payload: dict[str, Any]) -> Any:
        """Call ``m365.daemon.api.<method>(payload)`` once."""

    def close(self) -> None:  # noqa: B027 - nothing to release by default
        """Release connections."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.url!r})"


class _Secret:
    """Keeps the API key out of reprs, tracebacks' arguments and locals, and f-strings: it is
    passed around wrapped and revealed only inside the call that sends it."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def scrub(self, text: str) -> str:
        return text.replace(self._value, "***") if self._value else text

    def __repr__(self) -> str:
        return "'***'"

    __str__ = __repr__


# --- XML-RPC (Odoo 17/18) -------------------------------------------------------------------


class _HttpTransport(xmlrpc.client.Transport):
    """xmlrpc.client's transport with a socket time-out."""

    def __init__(self, timeout: float) -> None:
        super().__init__()
        self._timeout = timeout

    def make_connection(self, host: Any) -> http.client.HTTPConnection:
        connection = super().make_connection(host)
        connection.timeout = self._timeout
        return connection


class _HttpsTransport(xmlrpc.client.SafeTransport):
    """xmlrpc.client's TLS transport with a socket time-out and our CA bundle."""

    def __init__(self, timeout: float, context: ssl.SSLContext) -> None:
        super().__init__(context=context)
        self._timeout = timeout

    def make_connection(self, host: Any) -> http.client.HTTPConnection:
        connection = super().make_connection(host)
        connection.timeout = self._timeout
        return connection


def _xml_safe(value: Any) -> Any:
    """Drop the characters XML 1.0 cannot carry, in every string of a wire value."""
    if isinstance(value, str):
        return _NOT_XML.sub("", value) if _NOT_XML.search(value) else value
    if isinstance(value, dict):
        return {_xml_safe(k): _xml_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_xml_safe(v) for v in value]
    return value


class XmlRpcTransport(OdooTransport):
    """Odoo 17/18 external API: ``/xmlrpc/2/common`` to log in, ``/xmlrpc/2/object`` to call.

    Thread-safe: each thread (and each process after a fork) gets its own connection; the uid
    is fetched once per process.
    """

    def __init__(
        self,
        url: str,
        db: str,
        user: str,
        api_key: str,
        *,
        timeout: float = DEFAULT_TIMEOUT,
        ca_bundle: str | None = None,
    ) -> None:
        self.url = display_url(url)
        self._base = url.rstrip("/")
        self.db = db
        self.user = user
        self._key = _Secret(api_key)
        self.timeout = timeout
        self.ca_bundle = ca_bundle or None
        self._local = threading.local()
        self._uid: int | None = None
        self._login_lock = threading.Lock()

    # -- connections --

    def _proxy(self, endpoint: str) -> xmlrpc.client.ServerProxy:
        local = self._local
        if getattr(local, "pid", None) != os.getpid():
            local.pid = os.getpid()
            local.proxies = {}
        proxy = local.proxies.get(endpoint)
        if proxy is None:
            if urlsplit(self._base).scheme == "https":
                context = ssl.create_default_context(cafile=self.ca_bundle)
                transport: xmlrpc.client.Transport = _HttpsTransport(self.timeout, context)
            else:
                transport = _HttpTransport(self.timeout)
            proxy = xmlrpc.client.ServerProxy(
                f"{self._base}/xmlrpc/2/{endpoint}", transport=transport, allow_none=True
            )
            local.proxies[endpoint] = proxy
        return proxy

    def _drop_connections(self) -> None:
        for proxy in getattr(self._local, "proxies", {}).values():
            with contextlib.suppress(Exception):
                proxy("close")()
        self._local.proxies = {}

    def close(self) -> None:
        self._drop_connections()

    # -- calls --

    def _login(self) -> int:
        with self._login_lock:
            if self._uid is None:
                uid = self._rpc(
                    "common",
                    "authenticate",
                    (self.db, self.user, self._key, {}),
                    what="authenticate",
                )
                if not uid:
                    raise CrmError(
                        f"{KEY_REJECTED}: Odoo at {self.url} (database {self.db!r}) refused to "
                        f"log in user {self.user!r} with it. Ask an Odoo administrator for a new "
                        "key for the daemon's technical user and set odoo.api_key."
                    )
                self._uid = int(uid)
            return self._uid

    def execute_kw(
        self,
        model: str,
        method: str,
        args: list[Any],
        kwargs: dict[str, Any] | None = None,
    ) -> Any:
        """One ``execute_kw`` (after the process's one login); any model, for tests and tools."""
        uid = self._login()
        params = (self.db, uid, self._key, model, method, _xml_safe(args))
        if kwargs:
            params += (_xml_safe(kwargs),)
        return self._rpc("object", "execute_kw", params, what=f"{model}.{method}")

    def call(self, method: str, payload: dict[str, Any]) -> Any:
        return self.execute_kw(API_MODEL, method, [payload])

    def _rpc(self, endpoint: str, method: str, params: tuple[Any, ...], *, what: str) -> Any:
        """One request. ``params`` holds the key wrapped; it is revealed only in the call
        expression, and every failure leaves as a new exception from here (``from None``), so
        no traceback shows a frame whose arguments hold the key."""
        where = f"Odoo at {self.url}"
        started = time.monotonic()
        try:
            answer = getattr(self._proxy(endpoint), method)(*_revealed(params))
        except xmlrpc.client.Fault as fault:
            raise self._fault(fault, what) from None
        except xmlrpc.client.ProtocolError as error:
            self._drop_connections()
            raise _http_status_error(error.errcode, where, what) from None
        except (xmlrpc.client.ResponseError, ExpatError) as error:
            # HTML from a proxy, a login page, a truncated answer.
            self._drop_connections()
            raise CrmUnavailable(
                f"{where} answered {what} with something that is not XML-RPC "
                f"({type(error).__name__}); is odoo.url the Odoo server itself?"
            ) from None
        except OverflowError as error:
            raise CrmError(f"{what}: a number does not fit XML-RPC ({error}).") from None
        except (OSError, http.client.HTTPException) as error:
            self._drop_connections()
            raise _network_error(error, where, self.timeout) from None
        except Exception as error:  # anything else: in words, without the frames below
            self._drop_connections()
            raise CrmError(
                f"{where} failed on {what}: {type(error).__name__}: {self._key.scrub(str(error))}"
            ) from None
        finally:
            log.debug("odoo %s took %.3f s", what, time.monotonic() - started)
        return answer

    def _fault(self, fault: xmlrpc.client.Fault, what: str) -> CrmError:
        where = f"Odoo at {self.url}"
        text = self._key.scrub(str(fault.faultString))
        code = fault.faultCode
        if code == 3 or text.strip() == "AccessDenied":
            self._uid = None  # the next call logs in again (a new key may be configured)
            return CrmError(
                f"{KEY_REJECTED}: Odoo at {self.url} refused user {self.user!r} on {what}. "
                "Ask an Odoo administrator for a new key for the daemon's technical user."
            )
        if code == 4:
            hint = f" {GROUP_HINT}" if what.startswith(f"{API_MODEL}.") else ""
            return CrmError(
                f"{where} denied {what} to user {self.user!r}: {_last_line(text)}{hint}"
            )
        if code == 2:
            if "doesn't exist" in text and API_MODEL in text:
                return _addon_missing(where, self.db)
            return error_from_refusal(text, where=where)
        # 1: an application error, with its traceback; keep only the exception line.
        if "does not exist on the model" in text and API_MODEL in text:
            return _method_missing(where, what)
        if re.search(r'database "[^"]*" does not exist', text):
            return CrmError(f"{where} has no database {self.db!r}: check odoo.db.")
        for prefix, _kind in _REFUSALS:
            if prefix in text:
                return error_from_refusal(text, where=where)
        if _CONCURRENCY.search(text):
            return error_from_refusal(text, where=where)
        return CrmError(f"{where} failed on {what}: {_last_line(text)}")


def _revealed(params: tuple[Any, ...]) -> tuple[Any, ...]:
    return tuple(p.reveal() if isinstance(p, _Secret) else p for p in params)


def _last_line(text: str) -> str:
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return lines[-1] if lines else text.strip()


class AddonMethodMissing(CrmError):
    """The addon on the server has no such method: it is older than this daemon."""


def _method_missing(where: str, what: str) -> AddonMethodMissing:
    return AddonMethodMissing(
        f"{where}: the addon {ADDON} has no {what.rpartition('.')[2]}(); it is older than this "
        "daemon: upgrade the addon."
    )


def _addon_missing(where: str, db: str) -> CrmError:
    return CrmError(
        f"{where} has no model {API_MODEL} in database {db!r}: install (or upgrade) the addon "
        f"{ADDON} there."
    )


def _http_status_error(status: int, where: str, what: str) -> CrmError:
    if status == 413:
        return CrmError(
            f"{where} refused {what}: the request is larger than Odoo accepts (HTTP 413); lower "
            "sync.page_size."
        )
    if status >= 500 or status in (408, 429):
        return CrmUnavailable(f"{where} answered HTTP {status} to {what}")
    if status == 404:
        return CrmError(
            f"{where} answered HTTP 404 to {what}: check odoo.url and odoo.protocol "
            "(xmlrpc for Odoo 17/18, json2 for Odoo 19 and later)."
        )
    return CrmError(f"{where} answered HTTP {status} to {what}.")


def _network_error(error: BaseException, where: str, timeout: float) -> CrmUnavailable:
    if isinstance(error, TimeoutError | socket.timeout | requests.Timeout):
        return CrmUnavailable(f"{where} did not answer within {timeout:g} s")
    if isinstance(error, ssl.SSLCertVerificationError | requests.exceptions.SSLError):
        reason = getattr(error, "verify_message", "") or "certificate not trusted"
        return CrmUnavailable(
            f"{where} has a TLS certificate the daemon does not trust ({reason}); give the "
            "CRM's CA bundle to the daemon"
        )
    reason = _reason(error)
    return CrmUnavailable(f"{where} cannot be reached ({reason})")


def _reason(error: BaseException) -> str:
    """A short, key-free reason for a network failure."""
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, ConnectionRefusedError):
            return "connection refused"
        if isinstance(current, socket.gaierror):
            return "unknown host"
        if isinstance(current, TimeoutError | socket.timeout):
            return "timed out"
        if isinstance(current, ConnectionResetError):
            return "connection reset"
        current = current.__cause__ or current.__context__ or _inner(current)
    if isinstance(error, OSError) and error.strerror:
        return error.strerror.lower()
    return type(error).__name__


def _inner(error: BaseException) -> BaseException | None:
    """requests wraps urllib3 errors in args, not in __cause__."""
    for arg in getattr(error, "args", ()):
        if isinstance(arg, BaseException):
            return arg
        reason = getattr(arg, "reason", None)
        if isinstance(reason, BaseException):
            return reason
    return None


# --- JSON-2 (Odoo 19+) ----------------------------------------------------------------------


class Json2Transport(OdooTransport):
    """Odoo 19+ external API: ``POST {url}/json/2/{model}/{method}`` with a bearer API key.

    Each request is its own transaction in Odoo, and each gateway method is one request.
    """

    def __init__(
        self,
        url: str,
        db: str,
        api_key: str,
        *,
        timeout: float = DEFAULT_TIMEOUT,
        ca_bundle: str | None = None,
        session_factory: Callable[[], requests.Session] = requests.Session,
        user_agent: str = "",
    ) -> None:
        self.url = display_url(url)
        self._base = url.rstrip("/")
        self.db = db
        self._key = _Secret(api_key)
        self.timeout = timeout
        self.ca_bundle = ca_bundle or None
        self._session_factory = session_factory
        self._user_agent = user_agent or _user_agent()
        self._local = threading.local()

    def _session(self) -> requests.Session:
        local = self._local
        if getattr(local, "pid", None) != os.getpid() or getattr(local, "session", None) is None:
            local.pid = os.getpid()
            local.session = self._session_factory()
        return local.session

    def close(self) -> None:
        session = getattr(self._local, "session", None)
        if session is not None:
            session.close()
            self._local.session = None

    def call(self, method: str, payload: dict[str, Any]) -> Any:
        return self.request(API_MODEL, method, {"payload": payload})

    def request(self, model: str, method: str, arguments: dict[str, Any]) -> Any:
        """One JSON-2 call of ``model.method(**arguments)`` (no ids: model-level methods)."""
        where = f"Odoo at {self.url}"
        what = f"{model}.{method}"
        headers = {
            "X-Odoo-Database": self.db,
            "Content-Type": "application/json; charset=utf-8",
            "User-Agent": self._user_agent,
        }
        started = time.monotonic()
        try:
            response = self._session().post(
                f"{self._base}/json/2/{model}/{method}",
                data=json.dumps(arguments, ensure_ascii=False).encode("utf-8"),
                headers=headers,
                auth=_Bearer(self._key),
                timeout=self.timeout,
                verify=self.ca_bundle or True,
                allow_redirects=False,
            )
        except requests.RequestException as error:
            raise _network_error(error, where, self.timeout) from None
        except Exception as error:  # in words, without the frames below (they hold the key)
            raise CrmError(
                f"{where} failed on {what}: {type(error).__name__}: {self._key.scrub(str(error))}"
            ) from None
        finally:
            log.debug("odoo %s took %.3f s", what, time.monotonic() - started)
        if response.status_code == 200:
            try:
                return response.json()
            except ValueError:
                raise CrmUnavailable(
                    f"{where} answered {what} with something that is not JSON; is odoo.url the "
                    "Odoo server itself?"
                ) from None
        raise self._refusal(response, what)

    def _refusal(self, response: requests.Response, what: str) -> CrmError:
        where = f"Odoo at {self.url}"
        status = response.status_code
        name, message = _json2_error(response)
        message = self._key.scrub(message)
        if status == 401 or name.endswith("AccessDenied"):
            return CrmError(
                f"{KEY_REJECTED}: Odoo at {self.url} (database {self.db!r}) answered 401 to "
                f"{what}. Ask an Odoo administrator for a new key for the daemon's technical "
                "user and set odoo.api_key."
            )
        if status == 403 or name.endswith("AccessError"):
            return CrmError(
                f"{where} denied {what} to the daemon's technical user: {message} {GROUP_HINT}"
            )
        if status == 404 and API_MODEL in message and "does not exist" in message:
            if "model" in message and "method" not in message.lower():
                return _addon_missing(where, self.db)
            return _method_missing(where, what)
        if status >= 500 or status in (408, 429):
            detail = f": {message}" if message and name else ""
            return CrmUnavailable(f"{where} answered HTTP {status} to {what}{detail}")
        if status in (400, 409, 422) and message:
            return error_from_refusal(message, where=where)
        return _http_status_error(status, where, what)


class _Bearer(AuthBase):
    """Sets ``Authorization: bearer <key>`` on the prepared request only, so no frame of ours
    holds the header."""

    def __init__(self, key: _Secret) -> None:
        self._key = key

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        request.headers["Authorization"] = f"bearer {self._key.reveal()}"
        return request


def _json2_error(response: requests.Response) -> tuple[str, str]:
    """(exception name, message) of a JSON-2 error body: an object (Odoo 19.0) or a string."""
    try:
        body = response.json()
    except ValueError:
        return "", ""
    if isinstance(body, dict):
        return str(body.get("name") or ""), str(body.get("message") or "")
    if isinstance(body, str):
        return "", body
    return "", ""


def _user_agent() -> str:
    from m365sync import __version__

    return f"m365sync/{__version__}"


# --- reading answers ------------------------------------------------------------------------


def read_answer(kind: Any, data: Any) -> Any:
    """The wire answer of a call -> the Python value of type ``kind`` (Odoo writes False
    where a value is absent)."""
    return from_wire(kind, data, false_is_absent=True)


# --- the gateway ----------------------------------------------------------------------------


class OdooGateway(CrmGateway):
    """`CrmGateway` on Odoo through the addon's ``m365.daemon.api``; one RPC per method."""

    def __init__(self, transport: OdooTransport) -> None:
        self.transport = transport

    @classmethod
    def from_config(
        cls,
        config: OdooConfig,
        *,
        ca_bundle: str | None = None,
        timeout: float = DEFAULT_TIMEOUT,
    ) -> OdooGateway:
        """The gateway ``odoo.protocol`` asks for (``xmlrpc`` or ``json2``)."""
        if config.protocol == "json2":
            transport: OdooTransport = Json2Transport(
                config.url, config.db, config.api_key, timeout=timeout, ca_bundle=ca_bundle
            )
        elif config.protocol == "xmlrpc":
            transport = XmlRpcTransport(
                config.url,
                config.db,
                config.user,
                config.api_key,
                timeout=timeout,
                ca_bundle=ca_bundle,
            )
        else:
            raise CrmError(f"odoo.protocol must be 'xmlrpc' or 'json2', not {config.protocol!r}.")
        return cls(transport)

    def __repr__(self) -> str:
        return f"OdooGateway({self.transport!r})"

    def _call(self, method: str, **arguments: Any) -> Any:
        return self.transport.call(method, {k: to_wire(v) for k, v in arguments.items()})

    # --- accounts ---

    def upsert_account(self, spec: AccountSpec) -> Account:
        return read_answer(Account, self._call("upsert_account", spec=spec))

    def get_account(self, account_id: int) -> Account:
        return read_answer(Account, self._call("get_account", account_id=account_id))

    def list_accounts(self) -> list[Account]:
        return read_answer(list[Account], self._call("list_accounts"))

    def set_account_status(
        self,
        account_id: int,
        status: AccountStatus,
        detail: str = "",
        *,
        until: datetime | None = None,
        synced_at: datetime | None = None,
    ) -> None:
        self._call(
            "set_account_status",
            account_id=account_id,
            status=status,
            detail=detail,
            until=until,
            synced_at=synced_at,
        )

    def store_token_cache(
        self, account_id: int, sealed_token_cache: str, *, replaces: str | None = None
    ) -> bool:
        return bool(
            self._call(
                "store_token_cache",
                account_id=account_id,
                sealed_token_cache=sealed_token_cache,
                replaces=replaces,
            )
        )

    # --- leases ---

    def lease_accounts(
        self, holder: str, *, limit: int, ttl_seconds: float, now: datetime | None = None
    ) -> list[Lease]:
        answer = self._call(
            "lease_accounts", holder=holder, limit=limit, ttl_seconds=ttl_seconds, now=now
        )
        return read_answer(list[Lease], answer)

    def renew_lease(
        self, lease: Lease, *, ttl_seconds: float, now: datetime | None = None
    ) -> Lease:
        answer = self._call("renew_lease", lease=lease, ttl_seconds=ttl_seconds, now=now)
        return read_answer(Lease, answer)

    def release_lease(self, lease: Lease) -> None:
        self._call("release_lease", lease=lease)

    # --- partners ---

    def find_partners_by_emails(self, emails: Iterable[str]) -> dict[str, Partner]:
        answer = self._call("find_partners_by_emails", emails=list(emails))
        return read_answer(dict[str, Partner], answer)

    def find_companies_by_domains(self, domains: Iterable[str]) -> dict[str, Partner]:
        answer = self._call("find_companies_by_domains", domains=list(domains))
        return read_answer(dict[str, Partner], answer)

    def get_partners(self, partner_ids: Iterable[int]) -> dict[int, Partner]:
        answer = self._call("get_partners", partner_ids=list(partner_ids))
        return read_answer(dict[int, Partner], answer)

    def create_partners(self, drafts: list[PartnerDraft]) -> list[Partner]:
        return read_answer(list[Partner], self._call("create_partners", drafts=list(drafts)))

    # --- mail ---

    def get_cursor(self, account_id: int, folder_id: str) -> Cursor | None:
        answer = self._call("get_cursor", account_id=account_id, folder_id=folder_id)
        return read_answer(Cursor | None, answer)

    def store_mail_page(self, page: PageWrite, *, lease: Lease | None = None) -> PageResult:
        return read_answer(PageResult, self._call("store_mail_page", page=page, lease=lease))

    def reset_folder(self, account_id: int, folder_id: str) -> None:
        self._call("reset_folder", account_id=account_id, folder_id=folder_id)

    def unlisted_in_round(self, account_id: int, folder_id: str) -> list[str]:
        answer = self._call("unlisted_in_round", account_id=account_id, folder_id=folder_id)
        return read_answer(list[str], answer)

    def store_mail_folders(
        self, account_id: int, folders: list[MailFolder], synced: frozenset[str]
    ) -> None:
        self._call(
            "store_mail_folders", account_id=account_id, folders=folders, synced=sorted(synced)
        )

    def list_mail_folders(self, account_id: int) -> list[KnownFolder]:
        return read_answer(
            list[KnownFolder], self._call("list_mail_folders", account_id=account_id)
        )

    def record_sync_run(self, run: SyncRun) -> None:
        self._call("record_sync_run", run=run)

    def last_sync_run(self, account_id: int) -> SyncRun | None:
        return read_answer(SyncRun | None, self._call("last_sync_run", account_id=account_id))

    # --- reading back ---

    def count_messages(self, account_id: int | None = None) -> int:
        return int(self._call("count_messages", account_id=account_id) or 0)

    def message_ids_for_account(self, account_id: int) -> dict[str, str | None]:
        answer = self._call("message_ids_for_account", account_id=account_id)
        return read_answer(dict[str, str | None], answer)

    def threads_for_partner(self, partner_id: int) -> list[ThreadSummary]:
        answer = self._call("threads_for_partner", partner_id=partner_id)
        return read_answer(list[ThreadSummary], answer)

    def mail_counts_by_partner(self) -> list[tuple[Partner, int, int]]:
        rows = self._call("mail_counts_by_partner") or []
        return [
            (read_answer(Partner, partner), int(threads), int(messages))
            for partner, threads, messages in rows
        ]

    # --- connecting from the CRM ---

    def publish_daemon_info(self, info: dict[str, object]) -> None:
        self._call("publish_daemon_info", info=info)

    def pending_connects(self) -> list[PendingConnect]:
        return read_answer(list[PendingConnect], self._call("pending_connects"))

    def finish_connect(
        self, connect_id: int, *, account_id: int | None = None, error: str | None = None
    ) -> None:
        self._call("finish_connect", connect_id=connect_id, account_id=account_id, error=error)

    # --- claims: which replica answers a pending request ---

    def claim_connect(self, connect_id: int, holder: str, *, ttl_seconds: float = 120.0) -> bool:
        return self._claim(
            "claim_connect", connect_id=connect_id, holder=holder, ttl_seconds=ttl_seconds
        )

    def claim_free_busy(self, request_id: int, holder: str, *, ttl_seconds: float = 60.0) -> bool:
        return self._claim(
            "claim_free_busy", request_id=request_id, holder=holder, ttl_seconds=ttl_seconds
        )

    def _claim(self, method: str, **arguments: Any) -> bool:
        return bool(self._call(method, **arguments))

    # --- calendar ---

    def store_event_page(self, page: EventPageWrite, *, lease: Lease | None = None) -> PageResult:
        wire = to_wire(page)
        today = datetime.now(UTC).date()
        for written, stored in zip(wire["upserts"], page.upserts, strict=True):
            written.update(odoo_recurrence_of(stored.event))
            # The Odoo fields the item decides (`sync.event_mapping`): the addon writes them.
            values = event_mapping.odoo_values(stored, today=today)
            written["odoo_values"] = to_wire(values)
            written["odoo_kept_values"] = event_mapping.odoo_kept_values(values)
            # Its people (`sync.attendees`): states, companies, kept lines, the organizer.
            people = odoo_people_values(stored, owner=page.owner_address)
            written["odoo_people_values"] = to_wire(people)
        answer = self.transport.call("store_event_page", {"page": wire, "lease": to_wire(lease)})
        return read_answer(PageResult, answer)

    def event_bindings(self, account_id: int, graph_ids: Iterable[str]) -> dict[str, EventBinding]:
        answer = self._call(
            "event_bindings", account_id=account_id, graph_ids=list(dict.fromkeys(graph_ids))
        )
        return read_answer(dict[str, EventBinding], answer)

    def bound_event_ids(self, account_id: int) -> list[str]:
        return read_answer(list[str], self._call("bound_event_ids", account_id=account_id))

    def unconfirmed_series_ids(self, account_id: int) -> list[str]:
        return read_answer(list[str], self._call("unconfirmed_series_ids", account_id=account_id))

    def unconfirmed_occurrences(
        self, account_id: int, start: datetime, end: datetime, *, limit: int
    ) -> list[UnconfirmedOccurrences]:
        answer = self._call(
            "unconfirmed_occurrences", account_id=account_id, start=start, end=end, limit=limit
        )
        return read_answer(list[UnconfirmedOccurrences], answer)

    def remove_cancelled_occurrences(
        self, account_id: int, removals: Sequence[OccurrenceRemoval], *, lease: Lease | None = None
    ) -> int:
        answer = self._call(
            "remove_cancelled_occurrences",
            account_id=account_id,
            removals=list(removals),
            lease=lease,
        )
        return read_answer(int, answer)

    def last_event_id(self) -> int:
        return read_answer(int, self._call("last_event_id"))

    def meeting_candidates(
        self,
        account_id: int,
        ical_uids: Iterable[str],
        series_master_ids: Iterable[str],
        crm_event_ids: Iterable[int] = (),
    ) -> list[MeetingCandidate]:
        answer = self._call(
            "meeting_candidates",
            account_id=account_id,
            ical_uids=sorted(set(ical_uids)),
            series_master_ids=sorted(set(series_master_ids)),
            crm_event_ids=sorted(set(crm_event_ids)),
        )
        return read_answer(list[MeetingCandidate], answer)

    def event_changes_to_push(self, account_id: int) -> list[CrmEventChange]:
        changes = []
        for item in self._call("event_changes_to_push", account_id=account_id) or []:
            change = change_from_odoo(item)
            if change is not None:
                changes.append(change)
        return changes

    def mark_event_pushed(
        self,
        account_id: int,
        crm_event_id: int,
        *,
        graph_id: str,
        change_key: str | None,
        version: int,
        ical_uid: str | None = None,
        online_meeting_url: str | None = None,
        unbind: bool = False,
        shape_pushed: bool = False,
    ) -> bool:
        return bool(
            self._call(
                "mark_event_pushed",
                account_id=account_id,
                crm_event_id=crm_event_id,
                graph_id=graph_id,
                change_key=change_key,
                version=version,
                ical_uid=ical_uid,
                online_meeting_url=online_meeting_url,
                unbind=unbind,
                shape_pushed=shape_pushed,
            )
        )

    def upcoming_events_for_partner(
        self, partner_id: int, *, since: datetime, limit: int = 20
    ) -> list[EventSummary]:
        answer = self._call(
            "upcoming_events_for_partner", partner_id=partner_id, since=since, limit=limit
        )
        return read_answer(list[EventSummary], answer)

    # --- outbox ---

    def outgoing_mail(self, account_id: int, *, limit: int = 20) -> list[OutgoingMail]:
        answer = self._call("outgoing_mail", account_id=account_id, limit=limit)
        return read_answer(list[OutgoingMail], answer)

    def update_outgoing(
        self,
        mail_id: int,
        state: OutboxState,
        *,
        graph_id: str | None = None,
        internet_message_id: str | None = None,
        conversation_id: str | None = None,
        error: str | None = None,
        send_started_at: datetime | None = None,
    ) -> None:
        self._call(
            "update_outgoing",
            mail_id=mail_id,
            state=state,
            graph_id=graph_id,
            internet_message_id=internet_message_id,
            conversation_id=conversation_id,
            error=error,
            send_started_at=send_started_at,
        )

    def claim_outgoing(self, mail_id: int, started: datetime) -> bool:
        return bool(self._call("claim_outgoing", mail_id=mail_id, started=started))

    # --- free/busy for Schedule Meeting ---

    def pending_free_busy(self) -> list[FreeBusyRequest]:
        return read_answer(list[FreeBusyRequest], self._call("pending_free_busy"))

    def store_free_busy(
        self, request_id: int, results: Sequence[object], *, error: str | None = None
    ) -> None:
        self._call("store_free_busy", request_id=request_id, results=list(results), error=error)

    # --- settings the CRM's administrators set ---

    def crm_settings(self) -> CrmSettings:
        return read_answer(CrmSettings, self._call("crm_settings"))

    # --- push: Graph change notifications ---

    def request_sync(self, account_id: int, at: datetime) -> None:
        self._call("request_sync", account_id=account_id, at=at)

    def subscriptions(self, account_id: int) -> list[Subscription]:
        return read_answer(list[Subscription], self._call("subscriptions", account_id=account_id))

    def save_subscription(self, subscription: Subscription, *, lease: Lease | None = None) -> None:
        self._call("save_subscription", subscription=subscription, lease=lease)

    def drop_subscription(self, account_id: int, kind: SubscriptionKind) -> None:
        self._call("drop_subscription", account_id=account_id, kind=kind)

    def subscriptions_by_graph_id(self, graph_ids: Iterable[str]) -> dict[str, Subscription]:
        wanted = list(dict.fromkeys(g for g in graph_ids if g))
        answer = self._call("subscriptions_by_graph_id", graph_ids=wanted)
        return read_answer(dict[str, Subscription], answer)

    def record_notifications(
        self, notifications: Sequence[ReceivedNotification], at: datetime
    ) -> list[int]:
        answer = self._call("record_notifications", notifications=list(notifications), at=at)
        return sorted({int(account_id) for account_id in answer or []})

    # --- the command line's CRM actions: Odoo's users act in its forms ---

    def queue_mail(
        self,
        account_id: int,
        *,
        to: Sequence[EmailAddress],
        subject: str,
        body_html: str,
        cc: Sequence[EmailAddress] = (),
        attachments: Sequence[OutgoingAttachment] = (),
        reply_to_graph_id: str | None = None,
    ) -> int:
        raise CrmHasForms(_USE_THE_FORMS)

    def create_meeting(
        self, account_id: int, event: CalendarEvent, attendees: Sequence[EventLink]
    ) -> int:
        raise CrmHasForms(_USE_THE_FORMS)

    def busy_times(self, account_id: int, start: datetime, end: datetime) -> list[EventSummary]:
        raise CrmHasForms(_USE_THE_FORMS)

    def set_folder_choice(
        self, account_id: int, choice: FolderChoice | None, folders: Iterable[str] = ()
    ) -> None:
        raise CrmHasForms(_CHOOSE_IN_THE_ACCOUNT)

    def close(self) -> None:
        self.transport.close()


_USE_THE_FORMS = (
    "`send` and `meet` work on the embedded store; in Odoo use the wizards (Compose Email, "
    "Schedule Meeting), which act under the user's own rights."
)
_CHOOSE_IN_THE_ACCOUNT = (
    "In Odoo the folder choice is the account's: open the account in Settings > Microsoft 365 "
    "Accounts and tick its folders."
)


# --- recurrence: Graph's patternedRecurrence <-> Odoo's calendar.recurrence --------------------


def odoo_recurrence_of(event: CalendarEvent) -> dict[str, Any]:
    """What a stored event carries for Odoo beside Graph's recurrence: ``odoo_recurrence``, the
    values of Odoo's ``calendar.recurrence`` for a series master (None for other events and for
    patterns Odoo cannot hold), and ``odoo_recurrence_note``, the sentence saying why not."""
    if event.event_type is not EventType.SERIES_MASTER or event.recurrence is None:
        return {"odoo_recurrence": None, "odoo_recurrence_note": None}
    try:
        values = odoo_recurrence.to_odoo(event.recurrence, tz=_series_zone(event))
    except recurrences.Unrepresentable as error:
        return {"odoo_recurrence": None, "odoo_recurrence_note": str(error)}
    except (ValueError, UnknownTimeZone) as error:  # a pattern Graph should not have sent
        log.warning("series %s: its recurrence is not understood: %s", event.graph_id, error)
        return {"odoo_recurrence": None, "odoo_recurrence_note": f"Not understood: {error}"}
    return {"odoo_recurrence": values, "odoo_recurrence_note": None}


def _series_zone(event: CalendarEvent) -> str | None:
    """The IANA zone a series repeats in: its recurrenceTimeZone, else the event's own zone
    (Graph gives events in UTC here, so that is the last resort)."""
    for name in (event.recurrence.time_zone if event.recurrence else "", event.time_zone):
        if name:
            with contextlib.suppress(UnknownTimeZone):
                return zone(name).key
    return None


def change_from_odoo(item: dict[str, Any]) -> CrmEventChange | None:
    """One ``event_changes_to_push`` item -> the change. The event's type, times, zone,
    sensitivity and show-as come from its stored Odoo fields (``odoo_event``) through
    `sync.event_mapping`, which also says which Odoo events are not pushed (an occurrence Odoo
    expanded: left out, Outlook makes its own); its organizer, attendees and the owner's own
    answer from its stored people (``odoo_people``) through `sync.attendees`. A series made
    in Odoo comes as
    ``odoo_recurrence`` (Odoo's field values), turned into Graph's recurrence here. A series
    Outlook cannot repeat the same way is left out (it stays pending) with a warning naming
    it; its deletion still goes."""
    item = dict(item)
    values = item.pop("odoo_recurrence", None) or None
    if "odoo_event" not in item or "odoo_people" not in item:
        raise AddonMethodMissing(
            "the addon's event_changes_to_push() does not give the stored fields the daemon maps "
            f"(odoo_event, odoo_people); it is older than this daemon: upgrade the addon {ADDON}."
        )
    odoo = read_answer(event_mapping.OdooEvent, item.pop("odoo_event"))
    people = push_people_of_odoo(read_answer(OdooPeople, item.pop("odoo_people")))
    if event_mapping.push_shape(odoo) is event_mapping.PushShape.SKIP:
        return None
    item["event"] = {
        **item["event"],
        **to_wire(event_mapping.outlook_fields(odoo)),
        "organizer": to_wire(people.organizer),
        "attendees": to_wire(people.attendees),
    }
    item["attendee_addresses"] = list(people.addresses)
    item["my_response"] = people.my_response.value
    change = read_answer(CrmEventChange, item)
    event = change.event
    if not values or event.event_type is not EventType.SERIES_MASTER or event.recurrence:
        return change
    try:
        recurrence = odoo_recurrence.from_odoo(
            values, _first_day(event, values), week_start=str(values.get("week_start") or "sunday")
        )
    except (recurrences.Unrepresentable, ValueError, UnknownTimeZone) as error:
        if change.deleted:
            return change
        log.warning(
            "CRM event %s (%r) is not pushed: Outlook cannot repeat it as Odoo does: %s",
            change.crm_event_id,
            event.subject,
            error,
        )
        return None
    event = dataclasses.replace(event, recurrence=recurrence)
    return dataclasses.replace(change, event=event)


def _first_day(event: CalendarEvent, values: dict[str, Any]) -> Any:
    """The date of a series' first event, in the series' zone (all-day: its date)."""
    if event.is_all_day and event.start_date is not None:
        return event.start_date
    if event.start is None:
        raise ValueError("a series without a start")
    name = values.get("event_tz") or event.time_zone or "UTC"
    try:
        where = zone(name)
    except UnknownTimeZone:
        where = zone("UTC")
    return event.start.astimezone(where).date()
