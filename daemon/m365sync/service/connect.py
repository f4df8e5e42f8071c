"""Connecting a mailbox from the command line: the authorization code flow with PKCE.

msal builds the request (PKCE S256 and ``state``); a one-shot loopback HTTP server receives the
answer. We ask for ``response_mode=form_post`` (RFC 9700 section 4.3.1): the browser POSTs the
code to the loopback server, so it never sits in a URL, a browser history or a proxy log.

Against real Microsoft 365 the user's browser does the consent; against the emulator (or any
authority that consents by itself) this process submits the form as a browser would, so
`make demo` connects through the very same code path.
"""

from __future__ import annotations

import logging
import threading
import webbrowser
from collections.abc import Callable
from dataclasses import dataclass
from html.parser import HTMLParser
from http.server import BaseHTTPRequestHandler, HTTPServer
from urllib.parse import parse_qs, urlsplit

from m365sync.crm.gateway import AccountSpec
from m365sync.domain import Account, AccountStatus, AutoCreate, Privacy
from m365sync.errors import GraphError, M365SyncError
from m365sync.graph.auth import ConnectedIdentity
from m365sync.service.runtime import TOKEN_CACHE_PURPOSE, Runtime

log = logging.getLogger(__name__)

_PAGE = (
    "<!doctype html><html><head><meta charset='utf-8'><title>m365sync</title></head>"
    "<body style='font-family:sans-serif'><h2>{title}</h2><p>{text}</p></body></html>"
)


@dataclass
class _Capture:
    params: dict[str, str] | None = None


class _LoopbackServer(HTTPServer):
    capture: _Capture


class _Handler(BaseHTTPRequestHandler):
    server: _LoopbackServer

    def do_POST(self) -> None:
        length = min(int(self.headers.get("Content-Length") or 0), 64 * 1024)
        form = parse_qs(self.rfile.read(length).decode("utf-8", "replace"))
        self._answer({key: values[0] for key, values in form.items()})

    def do_GET(self) -> None:
        """A query-mode answer (or a stray request, answered 404)."""
        query = parse_qs(urlsplit(self.path).query)
        self._answer({key: values[0] for key, values in query.items()})

    def _answer(self, params: dict[str, str]) -> None:
        if "code" not in params and "error" not in params:
            self.send_response(404)
            self.end_headers()
            return
        self.server.capture.params = params
        ok = "code" in params
        body = _PAGE.format(
            title="Microsoft account connected" if ok else "Microsoft sign-in did not complete",
            text="You can close this window."
            if ok
            else f"{params.get('error')}: {params.get('error_description', '')}",
        ).encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        """Quiet: the redirect carries the authorization code, which must not be logged."""


def _wait_for_redirect(redirect_uri: str, timeout: float) -> tuple[_LoopbackServer, _Capture]:
    parts = urlsplit(redirect_uri)
    if parts.scheme != "http" or parts.hostname not in ("localhost", "127.0.0.1"):
        raise GraphError(
            f"`m365sync connect` needs a loopback redirect URI (http://localhost:PORT/), "
            f"not {redirect_uri!r}; accounts behind a web redirect are connected from Odoo."
        )
    server = _LoopbackServer(("127.0.0.1", parts.port or 80), _Handler)
    server.capture = _Capture()
    server.timeout = timeout
    return server, server.capture


def connect_account(
    runtime: Runtime,
    *,
    owner: str = "",
    privacy: Privacy | None = None,
    auto_create: AutoCreate | None = None,
    browser: str = "auto",
    announce: Callable[[str], None] = print,
    timeout: float = 300.0,
) -> Account:
    """Run the code flow, store the account with its sealed token cache, return it (connected).

    ``browser``: ``open`` launches the system browser, ``print`` only prints the URL,
    ``follow`` makes this process act as the browser (for authorities that consent by
    themselves, such as the emulator); ``auto`` follows for non-Microsoft authorities.
    ``privacy`` and ``auto_create`` default to the account's current settings when it is
    reconnected, else to the configuration's defaults.
    """
    ms = runtime.config.microsoft
    if browser == "auto":
        browser = "open" if ms.is_microsoft_cloud else "follow"
    server, capture = _wait_for_redirect(ms.redirect_uri, timeout)
    try:
        flow = runtime.broker.start_auth_code_flow(ms.redirect_uri, response_mode="form_post")
        serve = threading.Thread(target=server.handle_request, daemon=True)
        serve.start()
        if browser == "follow":
            _follow_as_browser(runtime, flow["auth_uri"])
        else:
            announce(f"Open this address to sign in to Microsoft 365:\n{flow['auth_uri']}")
            if browser == "open":
                webbrowser.open(flow["auth_uri"])
        serve.join(timeout)
    finally:
        server.server_close()
    if capture.params is None:
        raise GraphError("No answer from the Microsoft sign-in page before the time-out.")
    identity = runtime.broker.finish_auth_code_flow(flow, capture.params)
    return store_identity(runtime, identity, owner=owner, privacy=privacy, auto_create=auto_create)


def store_identity(
    runtime: Runtime,
    identity: ConnectedIdentity,
    *,
    owner: str = "",
    privacy: Privacy | None = None,
    auto_create: AutoCreate | None = None,
) -> Account:
    """Seal the new token cache, store the account (keeping a reconnected account's own
    settings), and check at once that it can read the mailbox."""
    sealed = runtime.keyring.seal(identity.token_cache.encode("utf-8"), purpose=TOKEN_CACHE_PURPOSE)
    existing = next(
        (
            a
            for a in runtime.gateway.list_accounts()
            if (a.tenant_id, a.object_id) == (identity.tenant_id, identity.object_id)
        ),
        None,
    )
    defaults = runtime.config.sync
    account = runtime.gateway.upsert_account(
        AccountSpec(
            address=identity.address,
            display_name=identity.display_name,
            tenant_id=identity.tenant_id,
            object_id=identity.object_id,
            owner=owner or (existing.owner if existing else ""),
            sealed_token_cache=sealed,
            privacy=privacy or (existing.privacy if existing else Privacy(defaults.privacy)),
            auto_create=auto_create
            or (existing.auto_create if existing else AutoCreate(defaults.auto_create)),
            own_domains=existing.own_domains if existing else (),
        )
    )
    runtime.forget_tokens(account.id)
    _verify(runtime, account)
    return runtime.gateway.get_account(account.id)


class _AutoPostForm(HTMLParser):
    """Reads the self-submitting form Microsoft answers with in ``form_post`` mode."""

    def __init__(self) -> None:
        super().__init__()
        self.action: str | None = None
        self.fields: dict[str, str] = {}

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = {key: value or "" for key, value in attrs}
        if tag == "form" and self.action is None:
            self.action = values.get("action")
        elif tag == "input" and values.get("type") == "hidden" and "name" in values:
            self.fields[values["name"]] = values.get("value", "")


def _follow_as_browser(runtime: Runtime, auth_uri: str) -> None:
    """Do what a browser does: open the authorize URL, then submit its form (or follow its
    redirect) to the loopback server."""
    answer = runtime.session.get(auth_uri, allow_redirects=False, timeout=30)
    location = answer.headers.get("Location")
    if answer.status_code in (301, 302, 303) and location:
        runtime.session.get(location, timeout=30)
        return
    form = _AutoPostForm()
    if answer.status_code == 200:
        form.feed(answer.text)
    if not form.action or not form.fields:
        raise GraphError(
            f"The sign-in page answered {answer.status_code} without sending the browser back "
            "(wrong client id or redirect URI in the app registration?).",
            status=answer.status_code,
        )
    runtime.session.post(form.action, data=form.fields, timeout=30)


def _verify(runtime: Runtime, account: Account) -> None:
    """Read /me with the new tokens so a connect that cannot read mail says so at once."""
    try:
        me = runtime.graph_for(account).get_json("/me", params={"$select": "displayName,mail"})
    except M365SyncError as error:
        from m365sync.errors import advice_for

        advice = advice_for(error)
        runtime.gateway.set_account_status(account.id, advice.status, advice.sentence)
        return
    detail = f"Connected as {me.get('displayName') or account.address}."
    runtime.gateway.set_account_status(account.id, AccountStatus.CONNECTED, detail)
