"""Connect Microsoft Account, clicked in Odoo: the addon's OAuth controller sends the browser
to the emulator's authorize endpoint, the emulator answers with an auto-submitting form that
posts the code to the addon's callback (``response_mode=form_post``, as Microsoft does: the
cross-site POST carries no Odoo cookie), the callback seals the code to the daemon's published
key and sends the browser on to a GET with the state only, where its session is matched, and
the daemon's ``redeem_pending_connects`` turns it into an account owned by the user who
clicked. The code is in no URL, so not in Odoo's access log (read when Odoo is this run's own).

The browser is a `requests.Session` that signs in on Odoo's login page as an ordinary user and
carries Odoo's session cookie, as a browser does. The addon's settings (client id, authority
host, and web.base.url, which makes the redirect URI) point at the emulator and at ``ODOO_URL``
for the test and are restored afterwards, as is the daemon info the test's daemon published.
"""

from __future__ import annotations

import html
import os
import re
import secrets
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import parse_qs, urljoin, urlsplit

import pytest
import requests

from m365sync.domain import AccountStatus
from m365sync.emulator.mailbox import Mailbox
from m365sync.service.crm_connect import publish_daemon_info, redeem_pending_connects
from tests.odoo.plugin import served_log

from .conftest import OdooStack, odoo_stack_for
from .test_calendar_outbox_to_odoo import odoo_user

pytestmark = [pytest.mark.odoo, pytest.mark.slow]

REDIRECT_PATH = "/auth/microsoft-apis/get-access-token"
SETTINGS = (
    "web.base.url",
    "crm_microsoft365.client_id",
    "crm_microsoft365.authority_host",
    "crm_microsoft365.tenant",
    "crm_microsoft365.daemon_info",
    "crm_microsoft365.daemon_last_seen",
)


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[OdooStack]:
    mailbox = Mailbox.seeded(size=10, seed=secrets.randbelow(10**9))
    with odoo_stack_for(tmp_path, mailbox) as built:
        yield built


def get_param(stack: OdooStack, key: str):
    return stack.admin.execute_kw("ir.config_parameter", "get_param", [key])


def set_param(stack: OdooStack, key: str, value) -> None:
    stack.admin.execute_kw("ir.config_parameter", "set_param", [key, value])


@pytest.fixture
def odoo_on_the_emulator(stack: OdooStack) -> Iterator[str]:
    """The addon's settings pointed at the emulator, web.base.url at ``ODOO_URL``, and Odoo's
    redirect URI registered with the emulator's app. Yields the base URL the browser uses."""
    saved = {key: get_param(stack, key) for key in SETTINGS}
    try:
        set_param(stack, "crm_microsoft365.client_id", stack.emulator.client_id)
        set_param(stack, "crm_microsoft365.authority_host", stack.emulator.base_url)
        set_param(stack, "crm_microsoft365.tenant", "organizations")
        # The redirect URI is web.base.url's: make it the Odoo this test talks to.
        base = os.environ["ODOO_URL"].rstrip("/")
        set_param(stack, "web.base.url", base)
        stack.emulator.identity.add_redirect_uris([base + REDIRECT_PATH])
        yield base
    finally:
        for key, value in saved.items():
            set_param(stack, key, value or False)


def auto_submitted_form(page: str) -> tuple[str, dict[str, str]]:
    """The action and hidden fields of a form_post answer page (what the browser submits)."""
    action = re.search(r'<form[^>]*action="([^"]*)"', page)
    assert action, "the answer page has no form"
    fields = re.findall(r'<input type="hidden" name="([^"]*)" value="([^"]*)"', page)
    return html.unescape(action.group(1)), {html.unescape(k): html.unescape(v) for k, v in fields}


def sign_in(base: str, login: str, password: str) -> requests.Session:
    """Odoo's login form, as a browser fills it in."""
    browser = requests.Session()
    page = browser.get(f"{base}/web/login", params={"db": os.environ["ODOO_DB"]}, timeout=30)
    page.raise_for_status()
    csrf = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
    assert csrf, "Odoo's login page has no CSRF token"
    answer = browser.post(
        f"{base}/web/login",
        data={"login": login, "password": password, "csrf_token": csrf.group(1), "redirect": ""},
        allow_redirects=False,
        timeout=30,
    )
    assert answer.status_code in (302, 303), f"login refused ({answer.status_code})"
    return browser


def connect_request_through_the_callback(stack: OdooStack) -> int:
    """A pending connect request of the administrator, made the one way Odoo makes one:
    Connect Microsoft Account, then Microsoft's form_post answer with a made-up code (nobody
    redeems it), then the browser's GET. The daemon's key cannot create one itself."""
    base = os.environ["ODOO_URL"].rstrip("/")
    login = os.environ.get("ODOO_ADMIN_USER") or "admin"
    saved = {key: get_param(stack, key) for key in SETTINGS}
    try:
        set_param(stack, "crm_microsoft365.client_id", stack.emulator.client_id)
        publish_daemon_info(stack.runtime)
        browser = sign_in(base, login, os.environ.get("ODOO_ADMIN_PASSWORD") or "admin")
        start = browser.get(f"{base}/m365/connect", allow_redirects=False, timeout=30)
        assert start.status_code in (302, 303), start.text[:500]
        state = parse_qs(urlsplit(start.headers["Location"]).query)["state"][0]
        answer = requests.post(
            base + REDIRECT_PATH,
            data={"code": "never-redeemed", "state": state},
            allow_redirects=False,
            timeout=30,
        )
        assert answer.status_code == 303, answer.text[:500]
        landed = browser.get(urljoin(base, answer.headers["Location"]), timeout=30)
        assert landed.status_code == 200, landed.text[:500]
    finally:
        for key, value in saved.items():
            set_param(stack, key, value or False)
    (admin_id,) = stack.admin.execute_kw("res.users", "search", [[("login", "=", login)]])
    return stack.admin.execute_kw(
        "m365.connect.request",
        "search",
        [[("user_id", "=", admin_id), ("state", "=", "pending")]],
        {"order": "id desc", "limit": 1},
    )[0]


def test_connect_through_the_addons_oauth_controller(stack: OdooStack, odoo_on_the_emulator):
    base = odoo_on_the_emulator
    publish_daemon_info(stack.runtime)  # the key the callback seals codes to
    user_id, login, password = odoo_user(stack)
    browser = sign_in(base, login, password)

    # Connect Microsoft Account: the controller redirects to the emulator's authorize URL.
    start = browser.get(f"{base}/m365/connect", allow_redirects=False, timeout=30)
    assert start.status_code in (302, 303), start.text[:500]
    authorize = start.headers["Location"]
    assert authorize.startswith(f"{stack.emulator.base_url}/organizations/oauth2/v2.0/authorize")
    asked = parse_qs(urlsplit(authorize).query)
    assert asked["client_id"] == [stack.emulator.client_id]
    assert asked["redirect_uri"] == [base + REDIRECT_PATH]
    assert asked["code_challenge_method"] == ["S256"]
    assert asked["response_mode"] == ["form_post"]

    # The identity platform (the emulator) lets the user consent and answers, as Microsoft
    # does with form_post, with a page whose form posts the code to Odoo's redirect URI.
    consent = requests.get(
        authorize, allow_redirects=False, timeout=30, verify=str(stack.emulator.ca_path)
    )
    assert consent.status_code == 200, consent.text[:500]
    action, posted = auto_submitted_form(consent.text)
    assert action == base + REDIRECT_PATH
    code = posted["code"]
    assert code and posted["state"] == asked["state"][0]

    # The form's POST is cross-site: the browser sends it without Odoo's SameSite=Lax cookie.
    answer = requests.post(action, data=posted, allow_redirects=False, timeout=30)
    assert answer.status_code == 303, answer.text[:500]
    assert "Set-Cookie" not in answer.headers  # the user's own session cookie stays
    callback = answer.headers["Location"]
    assert code not in callback and parse_qs(urlsplit(callback).query) == {"state": asked["state"]}

    # The GET it is sent on to carries the session: the code, sealed, becomes the request.
    landed = browser.get(urljoin(base, callback), allow_redirects=False, timeout=30)
    assert landed.status_code == 200, landed.text[:500]
    assert "Microsoft 365 Accounts" in landed.text
    fields = ["state", "account_id", "error"]
    log = served_log()
    if log is not None:  # this run's own Odoo: its access log has the callback, not the code
        assert f"POST {REDIRECT_PATH}" in log and f"GET {REDIRECT_PATH}?state=" in log
        assert code not in log
    (request,) = stack.read("m365.connect.request", [("user_id", "=", user_id)], fields)
    assert request["state"] == "pending"
    # The sealed code is for the daemon's group only: read it as the daemon does.
    gateway = stack.runtime.gateway
    (pending,) = [p for p in gateway.pending_connects() if p.owner == login]
    assert pending.sealed.count(".") == 4  # a JWE
    assert asked["code_challenge"][0] not in pending.sealed

    # The daemon redeems it (only this test's request: the database is shared).
    everyone = gateway.pending_connects
    gateway.pending_connects = lambda: [p for p in everyone() if p.owner == login]
    try:
        assert redeem_pending_connects(stack.runtime) == 1
    finally:
        del gateway.pending_connects
    (request,) = stack.read("m365.connect.request", [("user_id", "=", user_id)], fields)
    assert request["state"] == "done" and not request["error"]
    assert not [p for p in gateway.pending_connects() if p.owner == login]  # sealed code gone
    account_id = request["account_id"][0]
    stack.account_ids.append(account_id)
    account = gateway.get_account(account_id)
    assert account.owner == login
    assert account.address == stack.mailbox.user["mail"]
    assert account.status is AccountStatus.CONNECTED and account.sealed_token_cache
    (row,) = stack.read("m365.account", [("id", "=", account_id)], ["user_id"])
    assert row["user_id"][0] == user_id
