"""Keeps an account's Graph subscriptions alive, as the last step of its cycle (under its lease).

Decisions come from `sync.notifications.next_step`; this module makes the Graph calls and
stores the outcome. Push is an accelerator, never a dependency: a subscription that cannot be
created or renewed is reported in words on the account (the status line) and the account is
polled at the normal interval until the next cycle manages to make one.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta

from m365sync.config import Config
from m365sync.crm.gateway import CrmGateway
from m365sync.domain import (
    Account,
    CrmSettings,
    Lease,
    Subscription,
    SubscriptionKind,
    SubscriptionState,
)
from m365sync.errors import (
    BadClientCredentials,
    CrmError,
    GraphError,
    InsufficientPermissions,
    M365SyncError,
    NeedsReconnect,
    NotFound,
    advice_for,
)
from m365sync.graph.client import GraphClient
from m365sync.graph.subscriptions import LIFETIME, SubscriptionClient, new_client_state
from m365sync.sync.notifications import Step, client_state_hash, is_live, next_step

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class PushTarget:
    """Where Graph should post, and what to watch."""

    url: str
    lifecycle_url: str
    kinds: tuple[SubscriptionKind, ...]


def push_target(config: Config, settings: CrmSettings, *, calendar: bool) -> PushTarget | None:
    """The daemon's own ``notifications.url`` wins over the CRM's published endpoint; None
    when push is off or no endpoint is known."""
    push = config.notifications
    url = push.url or settings.notification_url
    if not push.enabled or not url:
        return None
    kinds = (
        (SubscriptionKind.MAIL, SubscriptionKind.CALENDAR) if calendar else (SubscriptionKind.MAIL,)
    )
    return PushTarget(url, push.lifecycle_url or url, kinds)


@dataclass(slots=True)
class PushReport:
    live: int = 0
    wanted: int = 0
    problems: list[str] = field(default_factory=list)

    def sentence(self) -> str:
        if not self.wanted:
            return ""
        if not self.problems:
            return f"push notifications on ({self.live} of {self.wanted})"
        return (
            f"push notifications {'partly ' if self.live else ''}unavailable "
            f"({'; '.join(self.problems)}); polling at the normal interval"
        )


def keep_subscriptions(
    gateway: CrmGateway,
    graph: GraphClient,
    account: Account,
    target: PushTarget | None,
    *,
    lease: Lease | None = None,
    now: datetime | None = None,
    lifetime: timedelta = LIFETIME,
) -> PushReport:
    """Create, renew or drop the account's subscriptions so they match ``target``."""
    now = now or datetime.now(UTC)
    client = SubscriptionClient(graph)
    stored = {s.kind: s for s in gateway.subscriptions(account.id)}
    wanted = target.kinds if target else ()
    report = PushReport(wanted=len(wanted))
    for kind in wanted:
        assert target is not None
        current = stored.pop(kind, None)
        try:
            kept = _keep_one(gateway, client, account, kind, current, target, lease, now, lifetime)
        except CrmError:  # LeaseLost included: the cycle's own handling applies
            raise
        except M365SyncError as error:
            words = _words(error, target)
            report.problems.append(f"{kind.value}: {words}")
            log.warning("account %s: %s subscription: %s", account.id, kind.value, words)
            _mark_lapsed(gateway, current, words, now, lease)
            continue
        if kept is not None and is_live(kept, now):
            report.live += 1
    _drop(gateway, client, account, stored.values())
    return report


def _keep_one(
    gateway: CrmGateway,
    client: SubscriptionClient,
    account: Account,
    kind: SubscriptionKind,
    current: Subscription | None,
    target: PushTarget,
    lease: Lease | None,
    now: datetime,
    lifetime: timedelta,
) -> Subscription | None:
    moved = bool(current and current.notification_url and current.notification_url != target.url)
    step = next_step(current, now, lifetime=lifetime, notification_url_changed=moved)
    if step is Step.KEEP:
        return current
    if step is Step.RENEW and current is not None:
        try:
            answer = client.renew(current.graph_id, now + lifetime)
        except NotFound:
            log.info(
                "account %s: %s subscription gone in Graph, making a new one",
                account.id,
                kind.value,
            )
        else:
            renewed = replace(
                current, expires_at=answer.expires_at, state=SubscriptionState.ACTIVE, detail=""
            )
            gateway.save_subscription(renewed, lease=lease)
            return renewed
    if current is not None and current.state is not SubscriptionState.REMOVED:
        client.delete(current.graph_id)  # so the old one never posts beside the new one
    secret = new_client_state()
    made = client.create(
        kind,
        notification_url=target.url,
        lifecycle_url=target.lifecycle_url,
        client_state=secret,
        expires_at=now + lifetime,
    )
    created = Subscription(
        account_id=account.id,
        kind=kind,
        graph_id=made.id,
        resource=made.resource,
        expires_at=made.expires_at,
        client_state_hash=client_state_hash(secret),
        state=SubscriptionState.ACTIVE,
        notification_url=target.url,
    )
    gateway.save_subscription(created, lease=lease)
    log.info(
        "account %s: %s subscription %s until %s",
        account.id,
        kind.value,
        "made" if current is None else "remade",
        made.expires_at.isoformat(),
    )
    return created


def _words(error: M365SyncError, target: PushTarget) -> str:
    """Graph refuses a subscription with 400 when the endpoint failed its validation
    request: say which URL, since that is what the administrator must fix."""
    status = getattr(error, "status", None)
    if status == 400 and "validat" in str(error).lower():
        return (
            f"Microsoft Graph could not validate the notification URL {target.url}: it must be "
            "reachable from the internet over HTTPS and echo Graph's validation token"
        )
    if isinstance(error, GraphError) and not isinstance(
        error, NeedsReconnect | InsufficientPermissions | BadClientCredentials
    ):
        return (
            f"Microsoft Graph did not take the subscription ({status} {error.code}); "
            "the next cycle tries again"
        )
    return advice_for(error).sentence


def _mark_lapsed(
    gateway: CrmGateway,
    current: Subscription | None,
    words: str,
    now: datetime,
    lease: Lease | None,
) -> None:
    """A subscription we could not keep is shown as lapsed once it can no longer deliver;
    one that still runs until its expiry stays active (the next cycle tries again)."""
    if current is None or (is_live(current, now) and current.state is SubscriptionState.ACTIVE):
        return
    current.state = SubscriptionState.LAPSED
    current.detail = words[:500]
    gateway.save_subscription(current, lease=lease)


def _drop(
    gateway: CrmGateway,
    client: SubscriptionClient,
    account: Account,
    unwanted: Iterable[Subscription],
) -> None:
    """Subscriptions no longer wanted (push or the calendar turned off): Graph stops posting."""
    for subscription in unwanted:
        try:
            client.delete(subscription.graph_id)
        except M365SyncError as error:  # it lapses by itself within three days
            log.info("account %s: could not delete subscription: %s", account.id, error)
        gateway.drop_subscription(account.id, subscription.kind)
