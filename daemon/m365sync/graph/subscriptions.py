"""Graph change-notification subscriptions: create, renew, delete (docs `api/subscription-post-
subscriptions.md`, `api/subscription-update.md`, `api/subscription-delete.md`,
`concepts/webhooks-lifecycle.md`; limits in ../shared/GRAPH-FACTS.md §1).

Facts this module keeps:

* An Outlook message or event subscription lives at most 4,230 minutes; we ask for a little
  less so clock skew never makes Graph refuse the request, and renew with PATCH long before.
* Creation is answered only after Graph validated the notification URL (and the lifecycle
  URL): an endpoint that does not echo the validation token in time makes it fail with 400.
* A subscription Graph removed (or that expired) answers 404 on PATCH and DELETE.
* The lifecycle URL cannot be added later by PATCH, so we always give it at creation.
"""

from __future__ import annotations

import contextlib
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from m365sync.domain import SubscriptionKind
from m365sync.errors import MalformedResponse, NotFound
from m365sync.graph.client import GraphClient

MAX_LIFETIME = timedelta(minutes=4230)
# Asked for: the maximum less a margin for the clocks of the daemon and Graph.
LIFETIME = MAX_LIFETIME - timedelta(minutes=30)
CHANGE_TYPES = "created,updated,deleted"
RESOURCES = {
    SubscriptionKind.MAIL: "me/messages",  # every folder: one subscription per mailbox
    SubscriptionKind.CALENDAR: "me/events",
}


@dataclass(frozen=True, slots=True)
class GraphSubscription:
    """What Graph answered about a subscription."""

    id: str
    resource: str
    expires_at: datetime


def new_client_state() -> str:
    """The secret Graph repeats in every notification of the subscription (max 128 chars)."""
    return secrets.token_urlsafe(48)  # 64 characters


def _expiry(value: object) -> datetime:
    if not isinstance(value, str) or not value:
        raise MalformedResponse("a subscription without expirationDateTime")
    try:
        parsed = datetime.fromisoformat(value)  # 3.11 reads 'Z' and seven fractional digits
    except ValueError as error:
        raise MalformedResponse(f"a subscription expirationDateTime {value!r}") from error
    return (parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)).astimezone(UTC)


def _read(answer: dict, resource: str) -> GraphSubscription:
    graph_id = answer.get("id")
    if not isinstance(graph_id, str) or not graph_id:
        raise MalformedResponse("a subscription without id")
    return GraphSubscription(
        graph_id, str(answer.get("resource") or resource), _expiry(answer.get("expirationDateTime"))
    )


def _when(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.0000000Z")


class SubscriptionClient:
    """The three calls, over an account's `GraphClient` (retries, typed errors)."""

    def __init__(self, client: GraphClient) -> None:
        self.client = client

    def create(
        self,
        kind: SubscriptionKind,
        *,
        notification_url: str,
        lifecycle_url: str,
        client_state: str,
        expires_at: datetime,
    ) -> GraphSubscription:
        resource = RESOURCES[kind]
        body = {
            "changeType": CHANGE_TYPES,
            "notificationUrl": notification_url,
            "lifecycleNotificationUrl": lifecycle_url or notification_url,
            "resource": resource,
            "expirationDateTime": _when(expires_at),
            "clientState": client_state,
        }
        # Not idempotent: a retried create after a lost answer makes a second subscription.
        # Duplicates only cost notifications; the first one lapses unrenewed.
        return _read(self.client.post_json("/subscriptions", body), resource)

    def renew(self, graph_id: str, expires_at: datetime) -> GraphSubscription:
        """Raises `NotFound` when Graph no longer has it (expired or removed)."""
        answer = self.client.patch_json(
            f"/subscriptions/{graph_id}",
            {"expirationDateTime": _when(expires_at)},
            idempotent=True,
        )
        return _read(answer, "")

    def delete(self, graph_id: str) -> None:
        """Gone already is fine: the aim is that Graph stops posting."""
        with contextlib.suppress(NotFound):
            self.client.delete(f"/subscriptions/{graph_id}")
