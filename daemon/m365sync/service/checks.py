"""`m365sync check-config`: is the configuration usable, and is every endpoint reachable?

Each check ends in one line a person can act on; none prints a traceback or a secret.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from datetime import UTC, date, datetime

import requests
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from m365sync.config import Config
from m365sync.errors import M365SyncError
from m365sync.graph.transport import certificate_refused, make_session, tls_untrusted
from m365sync.sealing import Keyring
from m365sync.service.runtime import USER_AGENT, open_gateway

SECRET_WARNING_DAYS = 30


def secret_expiry_note(expires: date | None, today: date | None = None) -> tuple[bool, str]:
    """(ok, words) about the client secret's expiry date, warning a month ahead."""
    if expires is None:
        return True, "expiry date not configured (set microsoft.client_secret_expires to be warned)"
    today = today or datetime.now(UTC).date()
    days = (expires - today).days
    if days < 0:
        return False, f"expired on {expires}: create a new secret in the Azure app registration"
    if days <= SECRET_WARNING_DAYS:
        return False, f"expires in {days} day(s), on {expires}: renew it now"
    return True, f"valid until {expires} ({days} days)"


def _reach(session: requests.Session, url: str, expect: Callable[[requests.Response], bool]) -> str:
    try:
        answer = session.get(url, timeout=15)
    except requests.RequestException as exc:
        if isinstance(exc, requests.exceptions.SSLError) and certificate_refused(exc):
            raise M365SyncError(tls_untrusted(url)) from None
        raise M365SyncError(f"cannot reach {url}: {type(exc).__name__}") from None
    if not expect(answer):
        raise M365SyncError(f"{url} answered {answer.status_code}, not what Microsoft answers")
    return f"{url} answered {answer.status_code}"


def check_notification_url(config: Config, session: requests.Session) -> tuple[bool, str]:
    """Graph's own validation request against the notification URL (from this host: Graph
    comes from the internet, so a firewall may still differ)."""
    push = config.notifications
    url = push.url
    if push.enabled and not url:
        gateway = open_gateway(config)
        try:
            url = gateway.crm_settings().notification_url
        finally:
            gateway.close()
    if not push.enabled or not url:
        return True, "off (no notification URL): accounts are polled at the sync interval"
    token = f"m365sync check {secrets.token_hex(8)}"
    try:
        answer = session.post(
            url,
            params={"validationToken": token},
            headers={"Content-Type": "text/plain"},
            timeout=10,
        )
    except requests.RequestException as exc:
        return False, f"cannot reach {url}: {type(exc).__name__}; Graph could not either"
    if answer.status_code != 200 or answer.text != token:
        return False, (
            f"{url} answered {answer.status_code} without echoing the validation token: "
            "Graph would refuse the subscription"
        )
    return True, f"{url} echoes Graph's validation token"


def check_config(config: Config, console: Console) -> int:
    ms = config.microsoft
    checks: list[tuple[str, Callable[[], tuple[bool, str] | str]]] = []
    session = make_session(ms.ca_bundle or None, user_agent=USER_AGENT)

    def config_ok() -> tuple[bool, str]:
        config.validate(need_microsoft=True)
        return True, f"read from {config.source}"

    checks.append(("configuration", config_ok))
    checks.append(("client secret", lambda: secret_expiry_note(ms.client_secret_expires)))
    checks.append(
        (
            "identity platform",
            lambda: _reach(
                session,
                f"{ms.authority}/v2.0/.well-known/openid-configuration",
                lambda r: r.ok and "token_endpoint" in r.text,
            ),
        )
    )
    checks.append(
        (
            "Microsoft Graph",
            # Unauthenticated, Graph answers 401 with its own error shape: proof enough.
            lambda: _reach(
                session, f"{ms.graph_base_url}/me", lambda r: r.status_code in (200, 401)
            ),
        )
    )

    def store_ok() -> str:
        gateway = open_gateway(config)
        try:
            return f"{config.store.backend}: {len(gateway.list_accounts())} account(s)"
        finally:
            gateway.close()

    checks.append(("CRM store", store_ok))

    def push_ok() -> tuple[bool, str]:
        # The endpoint is the CRM's (or a proxy's), not Microsoft's: the system's trust store.
        with make_session(None, user_agent=USER_AGENT) as plain:
            return check_notification_url(config, plain)

    checks.append(("push notifications", push_ok))
    checks.append(
        (
            "sealing keys",
            lambda: (
                f"{len(Keyring.load_or_create(config.keys.keyring_path()).public_jwks()['keys'])}"
                f" key(s) in {config.keys.keyring_path()}"
            ),
        )
    )
    table = Table(title="m365sync check-config", title_justify="left")
    table.add_column("Check")
    table.add_column("Result")
    table.add_column("Details", overflow="fold")
    failures = 0
    for name, check in checks:
        try:
            outcome = check()
            ok, words = outcome if isinstance(outcome, tuple) else (True, outcome)
        except M365SyncError as error:
            ok, words = False, str(error)
        failures += not ok
        table.add_row(name, "[green]ok[/]" if ok else "[red]problem[/]", escape(words))
    session.close()
    console.print(table)
    return 0 if failures == 0 else 2
