"""Graph change notifications, without I/O: reading a POST, checking it, and deciding what to
do with an account's subscriptions.

Why each rule (docs `concepts/change-notifications-delivery-webhooks.md`,
`concepts/webhooks-lifecycle.md`, `api/resources/changenotification.md`):

* A notification says only *that* something changed; the delta cycle it triggers finds *what*.
  So a notification never carries data into the CRM and a lost one costs only latency (the
  safety poll finds the change).
* ``clientState`` is the only proof a POST came from Graph for our subscription. The stored
  hash is compared in constant time; a notification failing it is dropped and counted.
* ``subscriptionRemoved`` means Graph dropped the subscription: make a new one.
  ``reauthorizationRequired``: renew it (a PATCH). ``missed``: notifications were lost; run a
  cycle. Every lifecycle event also asks for a cycle.
"""

from __future__ import annotations

import enum
import hashlib
import hmac
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta

from m365sync.domain import ReceivedNotification, Subscription, SubscriptionState

LIFECYCLE_EVENTS = frozenset({"subscriptionremoved", "reauthorizationrequired", "missed"})
CHANGE_TYPES = frozenset({"created", "updated", "deleted"})

# What a lifecycle event does to the subscription it names; a change or ``missed`` leaves the
# state as it is (the cycle it asks for is what matters). The addon's notification endpoint
# applies the same table (``m365_subscription.LIFECYCLE_STATES``: it cannot import the daemon),
# and the push contract pins both stores to it.
_LIFECYCLE_STATE = {
    "subscriptionremoved": SubscriptionState.REMOVED,
    "reauthorizationrequired": SubscriptionState.REAUTHORIZE,
}


def client_state_hash(client_state: str) -> str:
    """What the CRM stores in place of the secret."""
    return hashlib.sha256(client_state.encode("utf-8")).hexdigest()


@dataclass(frozen=True, slots=True)
class Posted:
    """One item of a notification POST, before it is checked."""

    notification: ReceivedNotification
    client_state: str


class MalformedNotification(ValueError):
    """The POST is not a Graph notification collection; answered 400 (retrying cannot help)."""


def read_post(body: bytes) -> list[Posted]:
    """The items of ``{"value": [...]}``. Items without a subscription id or with neither a
    change type nor a lifecycle event we know are skipped: Graph may add kinds later."""
    try:
        data = json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise MalformedNotification(f"not JSON: {error}") from None
    items = data.get("value") if isinstance(data, dict) else None
    if not isinstance(items, list):
        raise MalformedNotification("no 'value' list")
    found = []
    for item in items:
        if not isinstance(item, dict):
            continue
        subscription_id = item.get("subscriptionId")
        if not isinstance(subscription_id, str) or not subscription_id:
            continue
        change = item.get("changeType")
        lifecycle = item.get("lifecycleEvent")
        change = change if isinstance(change, str) and change.lower() in CHANGE_TYPES else None
        if not (isinstance(lifecycle, str) and lifecycle.lower() in LIFECYCLE_EVENTS):
            lifecycle = None
        if change is None and lifecycle is None:
            continue
        resource = item.get("resource")
        state = item.get("clientState")
        found.append(
            Posted(
                ReceivedNotification(
                    subscription_id,
                    change_type=change,
                    lifecycle_event=lifecycle,
                    resource=resource if isinstance(resource, str) else "",
                ),
                state if isinstance(state, str) else "",
            )
        )
    return found


def check(
    posted: Iterable[Posted], stored: Mapping[str, Subscription]
) -> tuple[list[ReceivedNotification], int]:
    """The notifications whose clientState matches their stored subscription, and how many
    were refused (unknown subscription or wrong clientState)."""
    accepted: list[ReceivedNotification] = []
    refused = 0
    for item in posted:
        subscription = stored.get(item.notification.subscription_id)
        if subscription is None or not hmac.compare_digest(
            client_state_hash(item.client_state), subscription.client_state_hash
        ):
            refused += 1
            continue
        accepted.append(item.notification)
    return accepted, refused


# --- what to do with a subscription ---------------------------------------------------------


class Step(enum.StrEnum):
    KEEP = "keep"
    RENEW = "renew"
    CREATE = "create"


def state_after(notification: ReceivedNotification) -> SubscriptionState | None:
    """The state a notification gives its subscription (``subscriptionRemoved`` -> removed,
    ``reauthorizationRequired`` -> reauthorize), or None to keep the state it has."""
    return _LIFECYCLE_STATE.get((notification.lifecycle_event or "").lower())


def next_step(
    subscription: Subscription | None,
    now: datetime,
    *,
    lifetime: timedelta,
    notification_url_changed: bool = False,
) -> Step:
    """Renew when less than half the lifetime is left (so one failed attempt still leaves
    time for the next), or when Graph asked; create anew when there is none, Graph removed it,
    it lapsed, or the endpoint moved (a subscription's URL cannot be changed)."""
    if subscription is None or notification_url_changed:
        return Step.CREATE
    if subscription.state in (SubscriptionState.REMOVED, SubscriptionState.LAPSED):
        return Step.CREATE
    if subscription.expires_at <= now:
        return Step.CREATE
    if subscription.state is SubscriptionState.REAUTHORIZE:
        return Step.RENEW
    if subscription.expires_at - now < lifetime / 2:
        return Step.RENEW
    return Step.KEEP


def is_live(subscription: Subscription, now: datetime) -> bool:
    """Graph is delivering: active (or only asking for renewal) and not past its expiry."""
    return subscription.expires_at > now and subscription.state in (
        SubscriptionState.ACTIVE,
        SubscriptionState.REAUTHORIZE,
    )


def poll_interval(
    subscriptions: Iterable[Subscription],
    wanted: int,
    now: datetime,
    *,
    normal: timedelta,
    with_push: timedelta,
) -> timedelta:
    """The slower safety poll only while every wanted subscription is live; any lapse and the
    account is polled at the normal interval again."""
    live = [s for s in subscriptions if is_live(s, now)]
    return with_push if wanted and len(live) >= wanted else normal


def renewal_due(
    subscriptions: Iterable[Subscription], now: datetime, *, lifetime: timedelta
) -> bool:
    """Whether a cycle should run now for the subscriptions' sake alone."""
    return any(next_step(s, now, lifetime=lifetime) is not Step.KEEP for s in subscriptions)
