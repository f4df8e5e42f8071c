"""Graph change-notification subscriptions and their webhook delivery, as Outlook does them.

What is modelled (docs = microsoftgraph/microsoft-graph-docs-contrib; the commit is the version
that was read):

* ``POST /v1.0/subscriptions`` -- docs `api-reference/v1.0/api/subscription-post-subscriptions.md`
  @ 028e5429: 201 with the subscription; "Creating a subscription requires read scope to the
  resource" (message: Mail.ReadBasic, Mail.Read; event: Calendars.Read -- a ReadWrite scope
  includes the read one here). Resources: ``me/messages``, ``me/mailFolders('{id|name}')/messages``
  (also ``mailfolders/{id}``), ``me/events``, and the same under ``users/{id|upn}`` ("Any path
  starting with me can also be used with users/{id}"), case-insensitive, leading slash optional.
* ``GET /v1.0/subscriptions`` (list), ``GET``/``PATCH``/``DELETE /v1.0/subscriptions/{id}`` --
  docs `api-reference/v1.0/api/subscription-update.md` @ 01784a99 (PATCH renews, 200 with the
  subscription), `concepts/change-notifications-delivery-webhooks.md` @ 01c641ac (DELETE: 204).
  A subscription past its expiry is gone: 404 ``ResourceNotFound`` "The object was not found."
  (the body Graph answers for a removed subscription, msgraph-sdk-php#221).
* Properties and limits -- docs `api-reference/v1.0/resources/subscription.md` @ 00181c0b and
  `concepts/includes/change-notifications-subscription-lifetime.md` @ 0be37c47: changeType is a
  comma-separated list of created, updated, deleted; clientState at most 128 characters;
  notificationUrl and lifecycleNotificationUrl "must make use of the HTTPS protocol"
  (``InvalidRequest`` "NotificationUrl scheme='http' is not supported.",
  microsoft-graph-docs#2751); Outlook message/event: at most 4230 minutes (``ExtensionError``
  "Subscription expiration can only be 4230 minutes in the future.", microsoft-graph-docs#2988);
  an expiry less than 45 minutes away is set to 45 minutes (the zh-cn subscription page).
  PATCH takes ``expirationDateTime`` only here (Graph also takes notificationUrl);
  lifecycleNotificationUrl "can't" be added by PATCH (docs
  `concepts/change-notifications-lifecycle-events.md` @ 15f91f36).
* Endpoint validation -- docs `concepts/includes/change-notifications-delivery-notificationurl-
  validation.md` @ 0d928665: POST ``{url}?validationToken={token}`` (the URL's own query
  parameters kept), ``Content-Type: text/plain; charset=utf-8``; the endpoint must answer within
  10 seconds with 200 and the URL-decoded token as its body, else no subscription and a 400. The
  bodies are the ones Graph is seen answering (``ValidationError``; older tenants said
  ``InvalidRequest``): "Subscription validation request failed. HTTP status code is
  'BadRequest'. Notification endpoint must respond with 200 OK to validation request.",
  "Subscription validation request failed. Response must exactly match validationToken query
  parameter." and "Subscription validation request timed out.". The lifecycle URL is validated
  too when it differs from the notification URL. The content type of the answer is not checked.
* Delivery -- docs `concepts/change-notifications-delivery-webhooks.md` @ 01c641ac: POST
  ``{"value": [...]}`` to the notificationUrl (its query kept), each item with subscriptionId,
  subscriptionExpirationDateTime, changeType, clientState, resource, resourceData
  (``@odata.type`` ``#Microsoft.Graph.Message``/``#Microsoft.Graph.Event``, ``@odata.id``,
  ``@odata.etag``, ``id``) and tenantId (docs `api-reference/v1.0/resources/changenotification.md`).
  ``resource`` and ``@odata.id`` are ``Users/{object id}/Messages/{id}``, the form the docs'
  example uses for ``@odata.id`` and Microsoft's webhook samples describe for resource (the
  docs' example writes resource as ``users/{user}@{tenant}/messages/{id}``). "If
  Microsoft Graph doesn't receive a 2xx class code within 3 seconds, it tries to resend the
  change notification multiple times, for up to 4 hours" and then discards it: here the retries
  are short (`RETRY_DELAYS`, then the batch is dropped and counted).
* Lifecycle notifications -- docs `concepts/change-notifications-lifecycle-events.md` @
  15f91f36: to the lifecycleNotificationUrl only (none without one), ``{"value": [{
  subscriptionId, subscriptionExpirationDateTime, tenantId, clientState, lifecycleEvent}]}``
  with lifecycleEvent subscriptionRemoved, missed or reauthorizationRequired. The emulator sends
  them when told (control API); subscriptionRemoved also deletes the subscription.

How changes are found: every `poll_interval` the deliverer reads the mailbox's per-folder change
log (see mailbox.py) past each subscription's watermark and compares the calendar's events
(singles and series masters, by changeKey) with the last snapshot. What changed since the last
delivery goes in one POST per subscription, one item per resource, its changeType inferred:
in a folder subscription an item that entered the folder is ``created``, one that left it
(moved or deleted) ``deleted``, any other change ``updated``; for ``me/messages`` a move is an
``updated`` (the id survives: the emulator's ids are immutable) and only a hard delete is
``deleted``. An item created and removed between two polls is not reported. A deleted item's
resourceData has no ``@odata.etag``. Changes of one occurrence of a series are changes of its
master (as Exchange stores them). Not modelled: resource data in notifications (encryption),
``$filter`` in resources, throttling of slow endpoints, reauthorization (`/reauthorize`), other
resources (contacts, ...), and the 1000-subscriptions-per-mailbox limit.
"""

from __future__ import annotations

import base64
import copy
import http
import ipaddress
import json
import logging
import re
import secrets
import threading
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote, urlsplit, urlunsplit

import requests
from werkzeug.wrappers import Request, Response

from m365sync.emulator.delta import parse_instant
from m365sync.emulator.wire import graph_error, json_response

log = logging.getLogger(__name__)

MAX_MINUTES = 4230
MIN_MINUTES = 45
CHANGE_TYPES = ("created", "updated", "deleted")
LIFECYCLE_EVENTS = ("subscriptionRemoved", "reauthorizationRequired", "missed")
MAX_CLIENT_STATE = 128
VALIDATION_TIMEOUT = 10.0
DELIVERY_TIMEOUT = 3.0
RETRY_DELAYS: tuple[float, ...] = (0.5, 1.0, 2.0, 4.0)
"""Waits before the 2nd, 3rd, ... try of a failed delivery; after the last the batch is dropped."""
POLL_INTERVAL = 0.05
LOG_LIMIT = 10_000

MAIL_SCOPES = frozenset(["mail.readbasic", "mail.read", "mail.readwrite"])
CALENDAR_SCOPES = frozenset(["calendars.read", "calendars.readwrite"])
PROPERTIES = frozenset(
    [
        "changetype",
        "notificationurl",
        "lifecyclenotificationurl",
        "resource",
        "expirationdatetime",
        "clientstate",
        "latestsupportedtlsversion",
        "includeresourcedata",
        "encryptioncertificate",
        "encryptioncertificateid",
        "notificationurlappid",
        "notificationqueryoptions",
        "@odata.type",
    ]
)

_FOLDER_KEY = re.compile(r"^mailfolders\('([^']*)'\)$", re.IGNORECASE)


class SubscriptionError(Exception):
    """An error answer of the subscriptions API, in Graph's shape."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


def _not_found() -> SubscriptionError:
    return SubscriptionError(404, "ResourceNotFound", "The object was not found.")


def _bad(message: str, code: str = "InvalidRequest") -> SubscriptionError:
    return SubscriptionError(400, code, message)


def format_time(moment: datetime) -> str:
    """Graph's DateTimeOffset in UTC with seven fractional digits."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f") + "0Z"


def app_id_of(authorization_header: str | None) -> str | None:
    """The ``appid`` claim of a bearer token the server already accepted (unverified read)."""
    token = (authorization_header or "").partition(" ")[2].strip()
    parts = token.split(".")
    if len(parts) != 3:
        return None
    try:
        payload = parts[1] + "=" * (-len(parts[1]) % 4)
        claims = json.loads(base64.urlsafe_b64decode(payload))
    except (ValueError, TypeError):
        return None
    value = claims.get("appid") if isinstance(claims, dict) else None
    return str(value) if value else None


# --------------------------------------------------------------------------- model


@dataclass
class Subscription:
    """One subscription and what the deliverer knows about it."""

    id: str
    resource: str  # as the client gave it
    kind: str  # "messages" | "events"
    folder_id: str | None  # None: every folder (me/messages)
    change_types: tuple[str, ...]
    notification_url: str
    lifecycle_url: str | None
    client_state: str | None
    expires_at: datetime
    application_id: str
    creator_id: str
    tls_version: str = "v1_2"
    created_at: float = field(default_factory=time.time)
    state: str = "active"  # active | deleted | expired | removed
    # deliverer state
    watermark: int = 0
    events_seen: dict[str, str] = field(default_factory=dict)
    events_sequence: int = -1
    # counters
    delivered: int = 0  # notifications (items) a receiver accepted
    failed: int = 0  # POSTs that got no 2xx in time
    dropped: int = 0  # notifications given up after the last retry
    lost: int = 0  # notifications lost while deliveries were paused

    def alive(self, now: datetime | None = None) -> bool:
        return self.state == "active" and self.expires_at > (now or datetime.now(UTC))

    def resource_json(self) -> dict[str, Any]:
        """The subscription resource (docs `resources/subscription.md` JSON representation)."""
        return {
            "id": self.id,
            "resource": self.resource,
            "applicationId": self.application_id,
            "changeType": ",".join(self.change_types),
            "clientState": self.client_state,
            "notificationUrl": self.notification_url,
            "notificationQueryOptions": None,
            "lifecycleNotificationUrl": self.lifecycle_url,
            "expirationDateTime": format_time(self.expires_at),
            "creatorId": self.creator_id,
            "includeResourceData": False,
            "latestSupportedTlsVersion": self.tls_version,
            "encryptionCertificate": None,
            "encryptionCertificateId": None,
            "notificationUrlAppId": None,
        }

    def describe(self) -> dict[str, Any]:
        """The control API's view: the resource plus state and counters."""
        return {
            **self.resource_json(),
            "state": self.state,
            "delivered": self.delivered,
            "failed": self.failed,
            "dropped": self.dropped,
            "lost": self.lost,
        }


@dataclass
class _Delivery:
    subscription_id: str
    url: str
    items: list[dict[str, Any]]
    kind: str  # "change" | "lifecycle"
    seen_at: float  # monotonic time the change was seen (latency is measured from here)
    due: float
    attempt: int = 1


# --------------------------------------------------------------------------- the service


class Subscriptions:
    """The subscriptions of one mailbox and a deliverer thread (`start`/`stop`).

    Thread-safe: Graph requests, the control API, tests and the deliverer share it.
    """

    def __init__(
        self,
        mailbox: Any,
        *,
        allow_http: bool = False,
        ca: str | None = None,
        validation_timeout: float = VALIDATION_TIMEOUT,
        delivery_timeout: float = DELIVERY_TIMEOUT,
        retry_delays: Iterable[float] = RETRY_DELAYS,
        poll_interval: float = POLL_INTERVAL,
    ) -> None:
        self.mailbox = mailbox
        self.allow_http = allow_http
        self.verify: str | bool = str(ca) if ca else True
        self.validation_timeout = validation_timeout
        self.delivery_timeout = delivery_timeout
        self.retry_delays = tuple(float(d) for d in retry_delays)
        self.poll_interval = poll_interval
        self.paused = False
        self._lock = threading.RLock()
        self._subs: dict[str, Subscription] = {}
        self._queue: list[_Delivery] = []
        self._log: list[dict[str, Any]] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._wake = threading.Event()

    # --- lifecycle of the deliverer -----------------------------------------------------------

    def start(self) -> None:
        if self._thread is not None:
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="emulator-deliverer", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    # --- the Graph operations -----------------------------------------------------------------

    def create(
        self, body: Any, *, scopes: frozenset[str], application_id: str, creator_id: str
    ) -> Subscription:
        """Validate a creation payload and both endpoints; store and return the subscription."""
        if not isinstance(body, dict):
            raise _bad(
                "Could not process subscription creation payload. Are all property names "
                "spelled and camelCased properly?"
            )
        given = {str(k).lower(): v for k, v in body.items()}
        unknown = [k for k in body if str(k).lower() not in PROPERTIES]
        if unknown:
            raise _bad(
                "Could not process subscription creation payload. Are all property names "
                "spelled and camelCased properly?"
            )
        for name in ("changeType", "notificationUrl", "resource", "expirationDateTime"):
            if not given.get(name.lower()):
                raise _bad(f"{name} is a required property for subscription creation")
        kind, folder_id = self._resource(str(given["resource"]))
        self._authorize(kind, scopes)
        change_types = _change_types(given["changetype"])
        client_state = given.get("clientstate")
        if client_state is not None:
            client_state = str(client_state)
            if len(client_state) > MAX_CLIENT_STATE:
                raise _bad(
                    f"clientState is {len(client_state)} characters long; the maximum is "
                    f"{MAX_CLIENT_STATE}."
                )
        if given.get("includeresourcedata"):
            raise _bad("The emulator does not send resource data (includeResourceData).")
        notification_url = self._url(str(given["notificationurl"]), "NotificationUrl")
        lifecycle_url = given.get("lifecyclenotificationurl")
        if lifecycle_url:
            lifecycle_url = self._url(str(lifecycle_url), "LifecycleNotificationUrl")
        expires_at = _expiry(given["expirationdatetime"])
        tls = str(given.get("latestsupportedtlsversion") or "v1_2")
        if tls not in ("v1_0", "v1_1", "v1_2", "v1_3"):
            raise _bad(f"'{tls}' is not a valid latestSupportedTlsVersion.")
        sub_id = str(uuid.uuid4())
        self.validate_endpoint(notification_url, sub_id)
        if lifecycle_url and lifecycle_url != notification_url:
            self.validate_endpoint(lifecycle_url, sub_id)
        sub = Subscription(
            id=sub_id,
            resource=str(given["resource"]),
            kind=kind,
            folder_id=folder_id,
            change_types=change_types,
            notification_url=notification_url,
            lifecycle_url=lifecycle_url or None,
            client_state=client_state,
            expires_at=expires_at,
            application_id=application_id,
            creator_id=creator_id,
            tls_version=tls,
        )
        with self.mailbox.lock:
            # Changes from now on: the watermark and the calendar snapshot are taken at once.
            sub.watermark = self.mailbox.sequence
            if kind == "events":
                sub.events_sequence, sub.events_seen = self._event_keys()
        with self._lock:
            self._subs[sub.id] = sub
        return sub

    def active(self) -> list[Subscription]:
        """The subscriptions Graph lists: not deleted and not expired."""
        self._reap()
        with self._lock:
            return [s for s in self._subs.values() if s.state == "active"]

    def get(self, sub_id: str) -> Subscription:
        """An active subscription; `SubscriptionError` 404 otherwise."""
        self._reap()
        with self._lock:
            sub = self._subs.get(sub_id)
            if sub is None or sub.state != "active":
                raise _not_found()
            return sub

    def renew(self, sub_id: str, body: Any, *, scopes: frozenset[str]) -> Subscription:
        """PATCH: a new expirationDateTime (same limits as at creation)."""
        sub = self.get(sub_id)
        self._authorize(sub.kind, scopes)
        if not isinstance(body, dict) or not body.get("expirationDateTime"):
            raise _bad(
                "Subscription must contain either the 'expirationDateTime' or 'notificationUrl' "
                "property and its value."
            )
        others = [k for k in body if k != "expirationDateTime"]
        if any(k.lower() == "lifecyclenotificationurl" for k in others):
            raise _bad(
                "lifecycleNotificationUrl cannot be added to an existing subscription; delete "
                "it and create a new one."
            )
        if others:
            raise _bad(f"The emulator renews subscriptions only; it cannot change {others}.")
        expires_at = _expiry(body["expirationDateTime"])
        with self._lock:
            if sub.state != "active":
                raise _not_found()
            sub.expires_at = expires_at
            return sub

    def delete(self, sub_id: str) -> None:
        sub = self.get(sub_id)
        with self._lock:
            sub.state = "deleted"

    # --- steering (control API, tests) -----------------------------------------------------

    def all(self) -> list[Subscription]:
        """Every subscription ever created, with its state (the control API's list)."""
        self._reap()
        with self._lock:
            return list(self._subs.values())

    def find(self, sub_id: str) -> Subscription:
        """A subscription in any state; KeyError if there never was one."""
        with self._lock:
            if sub_id not in self._subs:
                raise KeyError(f"no subscription {sub_id!r}")
            return self._subs[sub_id]

    def expire(self, sub_id: str) -> None:
        """Let a subscription lapse now, silently (nobody renewed it)."""
        sub = self.find(sub_id)
        with self._lock:
            if sub.state == "active":
                sub.expires_at = datetime.now(UTC) - timedelta(milliseconds=1)
        self._reap()

    def lifecycle(self, sub_id: str, event: str) -> dict[str, Any] | None:
        """Send a lifecycle notification to the subscription's lifecycleNotificationUrl (none
        if it has none) and return it; ``subscriptionRemoved`` also removes the subscription.
        KeyError if no such active subscription, ValueError for an unknown event."""
        if event not in LIFECYCLE_EVENTS:
            raise ValueError(f"'event' must be one of {list(LIFECYCLE_EVENTS)}")
        self._reap()
        sub = self.find(sub_id)
        with self._lock:
            if sub.state != "active":
                raise KeyError(f"subscription {sub_id!r} is {sub.state}")
            if event == "subscriptionRemoved":
                sub.state = "removed"
            if not sub.lifecycle_url:
                return None
            item = {
                "subscriptionId": sub.id,
                "subscriptionExpirationDateTime": format_time(sub.expires_at),
                "tenantId": self.tenant_id,
                "clientState": sub.client_state,
                "lifecycleEvent": event,
            }
            now = time.monotonic()
            self._queue.append(
                _Delivery(sub.id, sub.lifecycle_url, [item], "lifecycle", seen_at=now, due=now)
            )
        self._wake.set()
        return copy.deepcopy(item)

    def pause(self, paused: bool = True) -> bool:
        """While paused, change notifications are lost (counted as ``lost``); lifecycle
        notifications still go out."""
        with self._lock:
            self.paused = bool(paused)
            return self.paused

    def notifications(self) -> list[dict[str, Any]]:
        """The delivery log, oldest first: at, kind (validation, change, lifecycle),
        subscriptionId, url, attempt, status (None without an answer), error, items,
        latencyMs (from the change being seen to the answer), durationMs (the POST)."""
        with self._lock:
            return copy.deepcopy(self._log)

    def clear_notifications(self) -> None:
        with self._lock:
            self._log.clear()

    @property
    def tenant_id(self) -> str:
        return str(self.mailbox.tenant_id)

    @property
    def user_id(self) -> str:
        return str(self.mailbox.user["id"])

    # --- validation ----------------------------------------------------------------------------

    def validate_endpoint(self, url: str, sub_id: str | None = None) -> None:
        """The validation handshake; `SubscriptionError` 400 if the endpoint fails it."""
        token = (
            "Validation: Testing client application reachability for subscription Request-Id: "
            + str(uuid.uuid4())
        )
        target = _with_query(url, "validationToken", token)
        started = time.monotonic()
        status: int | None = None
        error: str | None = None
        try:
            answer = requests.post(
                target,
                data=b"",
                headers={"Content-Type": "text/plain; charset=utf-8"},
                timeout=self.validation_timeout,
                verify=self.verify,
                allow_redirects=False,
            )
            status = answer.status_code
        except requests.Timeout:
            error = "timeout"
            raise _bad("Subscription validation request timed out.", "ValidationError") from None
        except requests.RequestException as exc:
            error = type(exc).__name__
            raise _bad(
                "Subscription validation request failed. Notification endpoint must respond "
                "with 200 OK to validation request.",
                "ValidationError",
            ) from None
        finally:
            self._record("validation", sub_id, url, 1, status, error, 0, started, started)
        if status != 200:
            reason = _status_name(status)
            raise _bad(
                f"Subscription validation request failed. HTTP status code is '{reason}'. "
                "Notification endpoint must respond with 200 OK to validation request.",
                "ValidationError",
            )
        if answer.content.decode("utf-8", "replace") != token:
            raise _bad(
                "Subscription validation request failed. Response must exactly match "
                "validationToken query parameter.",
                "ValidationError",
            )

    # --- helpers of the operations -------------------------------------------------------------

    def _resource(self, resource: str) -> tuple[str, str | None]:
        """(kind, folder id or None) for a supported resource; 400 otherwise."""
        parts = [p for p in resource.strip().split("/") if p]
        lowered = [p.lower() for p in parts]
        unsupported = _bad(f"The resource '{resource}' is not supported by the emulator.")
        if not parts:
            raise unsupported
        if lowered[0] == "me":
            rest, lowered_rest = parts[1:], lowered[1:]
        elif lowered[0] == "users" and len(parts) > 1:
            user = self.mailbox.user
            known = {str(user.get(k) or "").lower() for k in ("id", "userPrincipalName", "mail")}
            who = lowered[1].strip("'")
            if who.startswith("users('"):
                who = who[len("users('") :]
            if who not in known:
                raise SubscriptionError(
                    404, "ErrorInvalidUser", f"The requested user '{parts[1]}' is invalid."
                )
            rest, lowered_rest = parts[2:], lowered[2:]
        else:
            match = re.match(r"^users\('([^']*)'\)$", lowered[0])
            if match is None:
                raise unsupported
            return self._resource("/".join(["users", match.group(1), *parts[1:]]))
        if lowered_rest == ["messages"]:
            return "messages", None
        if lowered_rest == ["events"]:
            return "events", None
        folder_ref: str | None = None
        if len(rest) == 2 and lowered_rest[1] == "messages":
            match = _FOLDER_KEY.match(rest[0])
            if match:
                folder_ref = match.group(1)
        elif len(rest) == 3 and lowered_rest[0] == "mailfolders" and lowered_rest[2] == "messages":
            folder_ref = rest[1]
        if folder_ref is None:
            raise unsupported
        folder = self.mailbox.resolve_folder(folder_ref)
        if folder is None:
            raise SubscriptionError(
                404, "ErrorItemNotFound", "The specified object was not found in the store."
            )
        return "messages", str(folder["id"])

    @staticmethod
    def _authorize(kind: str, scopes: frozenset[str]) -> None:
        granted = {s.rsplit("/", 1)[-1].lower() for s in scopes}
        needed = MAIL_SCOPES if kind == "messages" else CALENDAR_SCOPES
        if not granted & needed:
            raise SubscriptionError(
                403,
                "ExtensionError",
                "Operation: Create; Exception: [Status Code: Forbidden; Reason: Access is "
                "denied. Check credentials and try again.]",
            )

    def _url(self, url: str, name: str) -> str:
        parts = urlsplit(url.strip())
        if parts.scheme.lower() not in ("https", "http") or not parts.hostname:
            raise _bad(f"Invalid {name[0].lower() + name[1:]}='{url}'.")
        if parts.scheme.lower() == "http" and not (
            self.allow_http and _is_loopback(parts.hostname)
        ):
            raise _bad(f"{name} scheme='http' is not supported.")
        return url.strip()

    # --- the deliverer -------------------------------------------------------------------------

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.tick()
            except Exception:  # never let the deliverer die
                log.exception("emulator: the notification deliverer failed")
            self._wake.wait(self.poll_interval)
            self._wake.clear()

    def tick(self) -> None:
        """One pass: reap expired subscriptions, turn new changes into deliveries, send what
        is due (each POST on its own thread, so a slow receiver delays nobody else)."""
        self._reap()
        with self._lock:
            subs = [s for s in self._subs.values() if s.state == "active"]
        now = time.monotonic()
        for sub in subs:
            items = self._changes(sub)
            if not items:
                continue
            with self._lock:
                if sub.state != "active":
                    continue
                if self.paused:
                    sub.lost += len(items)
                    self._record(
                        "change",
                        sub.id,
                        sub.notification_url,
                        1,
                        None,
                        "lost (paused)",
                        len(items),
                        now,
                        now,
                    )
                    continue
                self._queue.append(
                    _Delivery(sub.id, sub.notification_url, items, "change", seen_at=now, due=now)
                )
        with self._lock:
            due = [d for d in self._queue if d.due <= now]
            self._queue = [d for d in self._queue if d.due > now]
        for delivery in due:
            threading.Thread(
                target=self._send, args=(delivery,), name="emulator-notify", daemon=True
            ).start()

    def _send(self, delivery: _Delivery) -> None:
        with self._lock:
            sub = self._subs.get(delivery.subscription_id)
            if delivery.kind == "change" and (sub is None or not sub.alive()):
                return  # the subscription is gone: so are its pending notifications
        started = time.monotonic()
        status: int | None = None
        error: str | None = None
        try:
            answer = requests.post(
                delivery.url,
                data=json.dumps({"value": delivery.items}).encode("utf-8"),
                headers={"Content-Type": "application/json; charset=utf-8"},
                timeout=self.delivery_timeout,
                verify=self.verify,
                allow_redirects=False,
            )
            status = answer.status_code
            if not 200 <= status < 300:
                error = f"HTTP {status}"
        except requests.Timeout:
            error = "timeout"
        except requests.RequestException as exc:
            error = type(exc).__name__
        ok = error is None
        with self._lock:
            self._record(
                delivery.kind,
                delivery.subscription_id,
                delivery.url,
                delivery.attempt,
                status,
                error,
                len(delivery.items),
                delivery.seen_at,
                started,
            )
            if sub is None:
                return
            if ok:
                if delivery.kind == "change":
                    sub.delivered += len(delivery.items)
                return
            sub.failed += 1
            if delivery.attempt <= len(self.retry_delays):
                delivery.due = time.monotonic() + self.retry_delays[delivery.attempt - 1]
                delivery.attempt += 1
                self._queue.append(delivery)
            else:
                sub.dropped += len(delivery.items)

    def _record(
        self,
        kind: str,
        sub_id: str | None,
        url: str,
        attempt: int,
        status: int | None,
        error: str | None,
        items: int,
        seen_at: float,
        started: float,
    ) -> None:
        end = time.monotonic()
        entry = {
            "at": format_time(datetime.now(UTC)),
            "kind": kind,
            "subscriptionId": sub_id,
            "url": url,
            "attempt": attempt,
            "status": status,
            "error": error,
            "items": items,
            "latencyMs": round((end - seen_at) * 1000, 1),
            "durationMs": round((end - started) * 1000, 1),
        }
        with self._lock:
            self._log.append(entry)
            if len(self._log) > LOG_LIMIT:
                del self._log[: len(self._log) - LOG_LIMIT]

    def _reap(self) -> None:
        now = datetime.now(UTC)
        with self._lock:
            for sub in self._subs.values():
                if sub.state == "active" and sub.expires_at <= now:
                    sub.state = "expired"

    # --- finding changes -----------------------------------------------------------------------

    def _changes(self, sub: Subscription) -> list[dict[str, Any]]:
        """The notification items for what changed since the last call (deliverer thread)."""
        found = self._message_changes(sub) if sub.kind == "messages" else self._event_changes(sub)
        expiry = format_time(sub.expires_at)
        items = []
        for change_type, item_id, change_key in found:
            if change_type not in sub.change_types:
                continue
            noun = "Messages" if sub.kind == "messages" else "Events"
            path = f"Users/{self.user_id}/{noun}/{item_id}"
            data: dict[str, Any] = {
                "@odata.type": f"#Microsoft.Graph.{noun[:-1]}",
                "@odata.id": path,
            }
            if change_key and change_type != "deleted":
                data["@odata.etag"] = f'W/"{change_key}"'
            data["id"] = item_id
            items.append(
                {
                    "subscriptionId": sub.id,
                    "subscriptionExpirationDateTime": expiry,
                    "changeType": change_type,
                    "resource": path,
                    "resourceData": data,
                    "clientState": sub.client_state,
                    "tenantId": self.tenant_id,
                }
            )
        return items

    def _message_changes(self, sub: Subscription) -> list[tuple[str, str, str | None]]:
        """(changeType, id, changeKey) from the mailbox's change log past the watermark.

        Reads the per-folder logs (``Mailbox._log``: id -> (sequence of its latest change,
        sequence at which its current or last stay in the folder began)) under the lock.
        """
        mailbox = self.mailbox
        with mailbox.lock:
            sequence = mailbox.sequence
            watermark = sub.watermark
            if sequence <= watermark:
                return []
            sub.watermark = sequence
            logs: dict[str, dict[str, tuple[int, int]]] = mailbox._log
            members: dict[str, dict[str, None]] = mailbox._members
            folders = [sub.folder_id] if sub.folder_id else list(logs)
            # id -> [latest sequence, existed at the watermark, in scope now]
            seen: dict[str, list[Any]] = {}
            for fid in folders:
                for mid, (seq, entered) in reversed(list(logs.get(fid, {}).items())):
                    if seq <= watermark:
                        break
                    entry = seen.setdefault(mid, [0, False, False])
                    entry[0] = max(entry[0], seq)
                    entry[1] = entry[1] or entered <= watermark
                    entry[2] = entry[2] or mid in members.get(fid, {})
            out: list[tuple[int, str, str, str | None]] = []
            for mid, (seq, existed, present) in seen.items():
                if present:
                    change = "updated" if existed else "created"
                elif existed:
                    change = "deleted"
                else:
                    continue  # came and went between two polls
                key = None
                if change != "deleted":
                    try:
                        key = mailbox.view(mid).get("changeKey") or None
                    except KeyError:
                        key = None
                out.append((seq, change, mid, key))
        out.sort()
        return [(change, mid, key) for _, change, mid, key in out]

    def _event_keys(self) -> tuple[int, dict[str, str]]:
        calendar = self.mailbox.calendar
        with calendar.lock:
            return calendar.sequence, {
                str(e["id"]): str(e.get("changeKey") or "") for e in calendar.events()
            }

    def _event_changes(self, sub: Subscription) -> list[tuple[str, str, str | None]]:
        """(changeType, id, changeKey) by comparing the calendar's events with the snapshot."""
        calendar = self.mailbox.calendar
        with calendar.lock:
            if calendar.sequence == sub.events_sequence:
                return []
            sequence, now = self._event_keys()
            before, sub.events_seen, sub.events_sequence = sub.events_seen, now, sequence
        out: list[tuple[str, str, str | None]] = []
        for eid, key in now.items():
            if eid not in before:
                out.append(("created", eid, key or None))
            elif before[eid] != key:
                out.append(("updated", eid, key or None))
        out += [("deleted", eid, None) for eid in before if eid not in now]
        return out


# --------------------------------------------------------------------------- Graph routing


def handles(path: str) -> bool:
    """Whether a request path is under ``/v1.0/subscriptions``."""
    lowered = path.lower().rstrip("/")
    return lowered == "/v1.0/subscriptions" or lowered.startswith("/v1.0/subscriptions/")


def handle(
    request: Request,
    service: Subscriptions,
    *,
    scopes: frozenset[str],
    application_id: str,
    public_base: str,
) -> Response:
    """Answer ``/v1.0/subscriptions[/{id}]`` (the server checked the token and faults)."""
    try:
        return _route(request, service, scopes, application_id, public_base.rstrip("/"))
    except SubscriptionError as error:
        return graph_error(error.status, error.code, error.message, request=request)


def _route(
    request: Request,
    service: Subscriptions,
    scopes: frozenset[str],
    application_id: str,
    base: str,
) -> Response:
    parts = [p for p in request.path.split("/") if p][2:]  # after "v1.0", "subscriptions"
    method = request.method
    context = f"{base}/v1.0/$metadata#subscriptions"
    if not parts:
        if method == "GET":
            return json_response(
                {"@odata.context": context, "value": [s.resource_json() for s in service.active()]}
            )
        if method == "POST":
            sub = service.create(
                _json(request),
                scopes=scopes,
                application_id=application_id,
                creator_id=service.user_id,
            )
            return json_response(
                {"@odata.context": context + "/$entity", **sub.resource_json()}, 201
            )
        raise _not_allowed(method)
    if len(parts) != 1:
        raise _bad(f"Resource not found for the segment '{parts[1]}'.", "BadRequest")
    sub_id = parts[0]
    if method == "GET":
        sub = service.get(sub_id)
        return json_response({"@odata.context": context + "/$entity", **sub.resource_json()})
    if method == "PATCH":
        sub = service.renew(sub_id, _json(request), scopes=scopes)
        return json_response({"@odata.context": context + "/$entity", **sub.resource_json()})
    if method == "DELETE":
        service.delete(sub_id)
        return Response(status=204)
    raise _not_allowed(method)


def _json(request: Request) -> Any:
    try:
        return json.loads(request.get_data(as_text=True) or "null")
    except ValueError:
        raise _bad("Unable to read JSON request payload.", "BadRequest") from None


def _not_allowed(method: str) -> SubscriptionError:
    return SubscriptionError(
        405, "Request_BadRequest", f"The HTTP method '{method}' is not allowed."
    )


# --------------------------------------------------------------------------- small helpers


def _change_types(value: Any) -> tuple[str, ...]:
    names = [n.strip() for n in str(value).split(",")]
    if not names or any(n.lower() not in CHANGE_TYPES for n in names):
        raise _bad(
            f"'{value}' is not a valid changeType; use a comma-separated list of created, "
            "updated, deleted."
        )
    return tuple(dict.fromkeys(n.lower() for n in names))


def _expiry(value: Any, *, now: datetime | None = None) -> datetime:
    """expirationDateTime within Outlook's limits: past or > 4230 minutes ahead is a 400; less
    than 45 minutes ahead becomes 45 minutes ahead."""
    now = now or datetime.now(UTC)
    try:
        moment = parse_instant(str(value))
    except ValueError:
        raise _bad(f"'{value}' is not a valid expirationDateTime.") from None
    if moment <= now:
        raise _bad("Subscription expiration must be in the future.")
    if moment - now > timedelta(minutes=MAX_MINUTES):
        raise _bad(
            f"Subscription expiration can only be {MAX_MINUTES} minutes in the future.",
            "ExtensionError",
        )
    return max(moment, now + timedelta(minutes=MIN_MINUTES))


def _with_query(url: str, name: str, value: str) -> str:
    """The URL with one more query parameter; its own query is kept byte for byte."""
    parts = urlsplit(url)
    extra = f"{name}={quote(value, safe='')}"
    query = f"{parts.query}&{extra}" if parts.query else extra
    return urlunsplit(parts._replace(query=query))


def _status_name(status: int | None) -> str:
    """.NET's HttpStatusCode name, as Graph writes it ('BadRequest', 'NotFound')."""
    try:
        return http.HTTPStatus(status or 0).phrase.replace(" ", "").replace("-", "")
    except ValueError:
        return str(status)


def _is_loopback(host: str) -> bool:
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def new_client_state() -> str:
    """A random clientState (tests, demos)."""
    return secrets.token_urlsafe(32)


__all__ = [
    "Subscription",
    "SubscriptionError",
    "Subscriptions",
    "app_id_of",
    "handle",
    "handles",
]
