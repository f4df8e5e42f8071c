"""The OAuth 2.0 authorization-code flow (PKCE + state), Odoo's half of it.

Odoo builds the authorization request and receives the code; it never redeems it. The code
and the PKCE verifier are sealed (JWE) to the daemon's published public key and stored as an
``m365.connect.request``; the daemon, the only holder of the client secret, redeems them. So
Odoo holds neither the client secret nor any token, and a database dump reveals no grant.

Microsoft answers with ``response_mode=form_post`` so the code is never in a URL, hence never
in Odoo's (or a proxy's) access log nor the browser's history. That POST is cross-site and
Odoo's session cookie is SameSite=Lax, so it arrives without the user's session: it seals the
code at once, keeps it for minutes keyed by a hash of ``state`` (m365.oauth.callback), saves no
session (its answer must not replace the user's cookie) and answers 303 to a GET of the same
route carrying only the state. That GET has the session: the pending sign-in is matched as
before (state compared in constant time, as bytes) and the sealed code becomes the user's
connect request.
"""

import base64
import hashlib
import hmac
import json
import logging
import secrets
import time
from urllib.parse import urlencode

from odoo.http import request

from odoo import http

from ..models.m365_oauth_callback import LIFETIME
from ..models.m365_tools import json_loads
from ..models.res_config_settings import DAEMON_INFO_KEY, DEFAULT_AUTHORITY, REDIRECT_PATH

_logger = logging.getLogger(__name__)

SCOPES = "openid profile email offline_access User.Read Mail.Read Mail.Send Calendars.ReadWrite"
SESSION_KEY = "m365_oauth"
# A pending sign-in older than this is void (Microsoft's own sign-in page lapses sooner).
PENDING_SECONDS = int(LIFETIME.total_seconds())
# Microsoft's authorization codes are about 1-2 KB; anything far longer is not one.
MAX_CODE = 8192
MAX_DESCRIPTION = 2000
PURPOSE = "authorization-code"
ALG = "ECDH-ES+A256KW"
ENC = "A256GCM"

# What the user reads for each error the identity platform sends back (error, or an AADSTS
# code inside error_description), and what to do about it.
ERROR_ADVICE = {
    "access_denied": (
        "Consent refused",
        "You (or your organisation) declined the permissions Odoo asked for. Try again and "
        "accept them; if your organisation requires an administrator's approval, ask your "
        "Microsoft 365 administrator to grant consent for the app in Microsoft Entra admin "
        "center (Enterprise applications > Permissions > Grant admin consent).",
    ),
    "consent_required": (
        "Administrator approval needed",
        "Your organisation lets only administrators consent to this app. Ask your Microsoft "
        "365 administrator to grant admin consent for it, then connect again.",
    ),
    "interaction_required": (
        "Sign-in needs your attention",
        "Microsoft needs you to complete sign-in (for example multi-factor authentication). "
        "Connect again and follow Microsoft's prompts.",
    ),
    "invalid_client": (
        "Bad client credentials",
        "Microsoft does not recognise the app's client id or secret. An administrator should "
        "check the Application (client) ID in Settings > Microsoft 365 and the client secret "
        "in the daemon's configuration (it may have expired).",
    ),
    "unauthorized_client": (
        "App not allowed",
        "The app registration is not allowed to use this flow or these accounts. An "
        "administrator should check its supported account types and platform (Web).",
    ),
    "invalid_request": (
        "Request refused",
        "Microsoft refused the sign-in request. Most often the redirect URI does not match the "
        "app registration: an administrator should add exactly the Redirect URI shown in "
        "Settings > Microsoft 365 to the app's Web redirect URIs.",
    ),
    "invalid_scope": (
        "Missing permissions",
        "The app registration lacks a permission Odoo needs (User.Read, Mail.Read, Mail.Send, "
        "Calendars.ReadWrite, offline_access). An administrator should add them under API "
        "permissions and grant consent.",
    ),
    "temporarily_unavailable": (
        "Microsoft is busy",
        "Microsoft's sign-in service is temporarily unavailable. Try again in a few minutes.",
    ),
    "server_error": (
        "Microsoft sign-in failed",
        "Microsoft's sign-in service had an error. Try again in a few minutes.",
    ),
}
AADSTS_ADVICE = {
    "AADSTS50011": "invalid_request",  # redirect URI mismatch
    "AADSTS65001": "consent_required",  # consent not granted
    "AADSTS90094": "consent_required",  # admin consent required
    "AADSTS65004": "access_denied",  # user declined consent
    "AADSTS700016": "invalid_client",  # app not found in the directory
    "AADSTS7000215": "invalid_client",  # invalid client secret
    "AADSTS650053": "invalid_scope",  # scope not on the app
}


def _b64url(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def pkce_pair():
    """A PKCE verifier (43+ chars of base64url) and its S256 challenge."""
    verifier = _b64url(secrets.token_bytes(48))
    challenge = _b64url(hashlib.sha256(verifier.encode("ascii")).digest())
    return verifier, challenge


def newest_public_jwk(jwks):
    """The newest key of the daemon's JWKS: the daemon publishes them oldest first."""
    keys = [k for k in (jwks or {}).get("keys", []) if k.get("kid")]
    return keys[-1] if keys else None


def seal_to_public_jwk(public_jwk, plaintext, purpose=PURPOSE):
    """The same JWE as m365sync.sealing.seal_to_public_jwk: compact, ECDH-ES+A256KW /
    A256GCM, protected header {alg, enc, kid, purpose}; needs the public key only."""
    from jwcrypto import jwe, jwk
    from jwcrypto.common import json_encode

    key = jwk.JWK(**public_jwk)
    if key.has_private:
        key = jwk.JWK(**key.export_public(as_dict=True))
    header = {"alg": ALG, "enc": ENC, "kid": public_jwk["kid"], "purpose": purpose}
    token = jwe.JWE(plaintext, protected=json_encode(header))
    token.allowed_algs = [ALG, ENC]
    token.add_recipient(key)
    return token.serialize(compact=True)


def pkce_verifier_for(state, secret):
    """The PKCE verifier of a sign-in, derived from its ``state`` with the database secret, so
    the session holds only the state (an abandoned session keeps no verifier) and Microsoft's
    sessionless POST can seal the code with its verifier."""
    message = f"m365-pkce:{state}".encode()
    digest = hmac.new(secret.encode(), message, hashlib.sha256).digest()
    return _b64url(digest + hashlib.sha256(digest).digest()[:16])  # 64 chars of base64url


def _ascii_token(value):
    """``state`` as bytes for a constant-time comparison, or None when it cannot be ours."""
    if not isinstance(value, str) or not value or len(value) > 512:
        return None
    try:
        return value.encode("ascii")
    except UnicodeEncodeError:
        return None


class M365OAuthController(http.Controller):
    @staticmethod
    def _internal_only():
        """Only internal users connect a mailbox: its mail is shared with the CRM's users."""
        return request.env.user._is_internal()

    def _refused(self):
        return self._page(
            request.env._("Only internal users can connect a mailbox"),
            request.env._(
                "Connecting a Microsoft 365 mailbox is open to internal users only: the mail it "
                "brings is shared with the CRM's users."
            ),
            status=403,
        )

    @staticmethod
    def _verifier(state):
        secret = request.env["ir.config_parameter"].sudo().get_param("database.secret") or ""
        return pkce_verifier_for(state, secret)

    def _settings(self):
        params = request.env["ir.config_parameter"].sudo()
        return {
            "client_id": params.get_param("crm_microsoft365.client_id") or "",
            "tenant": params.get_param("crm_microsoft365.tenant") or "organizations",
            "authority": (
                params.get_param("crm_microsoft365.authority_host") or DEFAULT_AUTHORITY
            ).rstrip("/"),
            "redirect_uri": (params.get_param("web.base.url") or "").rstrip("/") + REDIRECT_PATH,
            "daemon": json_loads(params.get_param(DAEMON_INFO_KEY)),
        }

    def _page(self, title, message, level="danger", status=200, next_url=None, retry=True, detail=None):
        """The result page, in Odoo's sign-in layout: a title, what happened and what to do,
        Microsoft's own words apart (``detail``), the way back to the accounts (automatic after
        a success) and, after a failure the user can retry, Try again first."""
        internal = request.env.user._is_internal()
        back = next_url or ("/odoo/action-crm_microsoft365.m365_account_action" if internal else "/odoo")
        label = request.env._("Back to Microsoft 365 Accounts") if internal else request.env._("Back to Odoo")
        html = request.env["ir.qweb"]._render(
            "crm_microsoft365.m365_connect_page",
            {
                "title": title,
                "message": message,
                "detail": detail,
                "level": level,
                "next_url": back,
                "back_label": label,
                "refresh": bool(next_url),
                "retry": retry and internal,
            },
        )
        return request.make_response(
            html, headers=[("Content-Type", "text/html; charset=utf-8")], status=status
        )

    @http.route("/m365/connect", type="http", auth="user", methods=["GET"])
    def connect(self, **kwargs):
        if not self._internal_only():
            return self._refused()
        settings = self._settings()
        if not settings["client_id"]:
            return self._page(
                request.env._("Microsoft 365 is not configured"),
                request.env._(
                    "An administrator must enter the Azure app's Application (client) ID in "
                    "Settings > Microsoft 365 first."
                ),
            )
        if not newest_public_jwk(settings["daemon"].get("jwks")):
            return self._daemon_missing()
        state = secrets.token_urlsafe(32)
        verifier = self._verifier(state)
        challenge = _b64url(hashlib.sha256(verifier.encode("ascii")).digest())
        # One pending authorization per session: a newer Connect click replaces an older one.
        # Only the state and its time are kept: the verifier is derived again at the callback.
        request.session[SESSION_KEY] = {"state": state, "at": int(time.time())}
        query = {
            "client_id": settings["client_id"],
            "response_type": "code",
            "redirect_uri": settings["redirect_uri"],
            # form_post: the code comes in a POST body, never in a logged URL (callback_post).
            "response_mode": "form_post",
            "scope": SCOPES,
            "state": state,
            "code_challenge": challenge,
            "code_challenge_method": "S256",
            "prompt": "select_account",
        }
        url = f"{settings['authority']}/{settings['tenant']}/oauth2/v2.0/authorize?{urlencode(query)}"
        return request.redirect(url, local=False)

    @http.route(
        REDIRECT_PATH, type="http", auth="public", methods=["POST"], csrf=False, save_session=False
    )
    def callback_post(self, state=None, code=None, error=None, error_description=None, **kwargs):
        """Microsoft's form_post answer: cross-site, so without the user's session (and no
        session is saved: a new cookie here would sign the user out). The code is sealed for
        the daemon and kept server-side under a hash of the state, never logged; the browser
        goes on to a GET of this route with the state only."""
        given = _ascii_token(state)
        if not given or len(code or "") > MAX_CODE:
            return self._invalid_answer()
        values = {
            "error": (error or "")[:200] or False,
            "error_description": (error_description or "")[:MAX_DESCRIPTION] or False,
        }
        if code and not error:
            public_jwk = newest_public_jwk(self._settings()["daemon"].get("jwks"))
            if public_jwk:
                payload = {
                    "code": code,
                    "code_verifier": self._verifier(state),
                    "redirect_uri": self._settings()["redirect_uri"],
                }
                values["sealed"] = seal_to_public_jwk(public_jwk, json.dumps(payload).encode(), PURPOSE)
        if not request.env["m365.oauth.callback"]._keep(given, values):
            return self._page(
                request.env._("Too many sign-ins in progress"),
                request.env._("Odoo is holding too many unfinished sign-ins. Try again in a few minutes."),
                status=429,
            )
        return request.redirect(f"{REDIRECT_PATH}?{urlencode({'state': state})}", code=303)

    def _invalid_answer(self):
        return self._page(
            request.env._("This sign-in link is not valid any more"),
            request.env._(
                "The answer from Microsoft does not belong to a sign-in started from this "
                "browser session (it was used already, or the session changed). Start "
                "again with Connect Microsoft Account."
            ),
            status=400,
        )

    @http.route(REDIRECT_PATH, type="http", auth="user", methods=["GET"])
    def callback(self, state=None, error=None, error_description=None, **kwargs):
        """The browser, with its session, after callback_post: match the pending sign-in, then
        hand the sealed code to the daemon as this user's connect request. A code in the query
        (response_mode=query) is ignored: codes are accepted from the POST body only."""
        if not self._internal_only():
            request.session.pop(SESSION_KEY, None)
            given = _ascii_token(state)
            if given:
                request.env["m365.oauth.callback"]._take(given)
            return self._refused()
        pending = request.session.get(SESSION_KEY) or {}
        expected = _ascii_token(pending.get("state"))
        given = _ascii_token(state)
        fresh = time.time() - (pending.get("at") or 0) < PENDING_SECONDS
        if not expected or not given or not hmac.compare_digest(expected, given):
            # Not this session's sign-in: a junk or forged answer leaves the pending one alone.
            return self._invalid_answer()
        request.session.pop(SESSION_KEY, None)  # one use, whatever the outcome
        answer = request.env["m365.oauth.callback"]._take(given) or {}
        if not fresh:
            return self._page(
                request.env._("This sign-in took too long"),
                request.env._("The sign-in was started too long ago. Start again with Connect Microsoft Account."),
                status=400,
            )
        error = answer.get("error") or error
        if error:
            return self._error_page(error, answer.get("error_description") or error_description or "")
        if not answer.get("sealed"):
            if answer and not newest_public_jwk(self._settings()["daemon"].get("jwks")):
                return self._daemon_missing()
            return self._page(
                request.env._("No authorization received"),
                request.env._("Microsoft sent no authorization code. Start again with Connect Microsoft Account."),
                status=400,
            )
        # sudo: the sealed field is readable by the daemon's group only, and users do not
        # create connect requests through RPC; the owner is the signed-in user.
        request.env["m365.connect.request"].sudo().create(
            {"user_id": request.env.uid, "sealed": answer["sealed"]}
        )
        _logger.info("Microsoft 365 connect request stored for user %s", request.env.uid)
        action = request.env.ref("crm_microsoft365.m365_account_action")
        return self._page(
            request.env._("Connecting your mailbox…"),
            request.env._(
                "Microsoft accepted the sign-in. The sync daemon completes the connection "
                "within seconds; your account then appears in Microsoft 365 Accounts."
            ),
            level="success",
            next_url=f"/odoo/action-{action.id}",
        )

    def _daemon_missing(self):
        return self._page(
            request.env._("The sync daemon is not running"),
            request.env._(
                "The m365sync daemon has never reported to Odoo, so there is no key to hand "
                "your authorization to safely. An administrator should configure and start the "
                "daemon (it publishes its key at start), then you can connect."
            ),
            status=503,
        )

    def _error_page(self, error, description):
        key = error
        for code, mapped in AADSTS_ADVICE.items():
            if code in description:
                key = mapped
                break
        title, advice = ERROR_ADVICE.get(
            key,
            (
                request.env._("Microsoft refused the sign-in"),
                request.env._("Microsoft answered %(error)s. Try again, or ask your administrator.", error=error),
            ),
        )
        detail = description.split("\r\n")[0][:300] if description else error
        return self._page(title, advice, status=400, detail=detail)
