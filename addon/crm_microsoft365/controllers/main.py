"""The OAuth 2.0 authorization-code flow (PKCE + state), Odoo's half of it.

Odoo builds the authorization request and receives the code; it never redeems it. The code
and the PKCE verifier are sealed (JWE) to the daemon's published public key and stored as an
``m365.connect.request``; the daemon, the only holder of the client secret, redeems them. So
Odoo holds neither the client secret nor any token, and a database dump reveals no grant.
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

from ..models.m365_tools import json_loads
from ..models.res_config_settings import DAEMON_INFO_KEY, DEFAULT_AUTHORITY, REDIRECT_PATH

_logger = logging.getLogger(__name__)

SCOPES = "openid profile email offline_access User.Read Mail.Read Mail.Send Calendars.ReadWrite"
SESSION_KEY = "m365_oauth"
# A pending sign-in older than this is void (Microsoft's own sign-in page lapses sooner).
PENDING_SECONDS = 15 * 60
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


def pkce_verifier_for(state, uid, secret):
    """The PKCE verifier of a sign-in, derived from its ``state`` with the database secret, so
    the session holds only the state: an abandoned session keeps no verifier."""
    message = f"m365-pkce:{uid}:{state}".encode()
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
        return pkce_verifier_for(state, request.env.uid, secret)

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

    def _page(self, title, message, level="danger", status=200, next_url=None):
        html = request.env["ir.qweb"]._render(
            "crm_microsoft365.m365_connect_page",
            {
                "title": title,
                "message": message,
                "level": level,
                "next_url": next_url or "/odoo/action-crm_microsoft365.m365_account_action",
                "refresh": bool(next_url),
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
            # response_mode=query, not form_post: Odoo's session cookie is SameSite=Lax, so a
            # cross-site POST from login.microsoftonline.com would arrive without the session
            # and the state could not be checked against it. A top-level GET redirect carries
            # the cookie.
            "response_mode": "query",
            "scope": SCOPES,
            "state": state,
            "code_challenge": challenge,
            "code_challenge_method": "S256",
            "prompt": "select_account",
        }
        url = f"{settings['authority']}/{settings['tenant']}/oauth2/v2.0/authorize?{urlencode(query)}"
        return request.redirect(url, local=False)

    @http.route(REDIRECT_PATH, type="http", auth="user", methods=["GET"])
    def callback(self, state=None, code=None, error=None, error_description=None, **kwargs):
        if not self._internal_only():
            request.session.pop(SESSION_KEY, None)
            return self._refused()
        pending = request.session.get(SESSION_KEY) or {}
        expected = _ascii_token(pending.get("state"))
        given = _ascii_token(state)
        fresh = time.time() - (pending.get("at") or 0) < PENDING_SECONDS
        if not expected or not given or not hmac.compare_digest(expected, given):
            # Not this session's sign-in: a junk or forged answer leaves the pending one alone.
            return self._page(
                request.env._("This sign-in link is not valid any more"),
                request.env._(
                    "The answer from Microsoft does not belong to a sign-in started from this "
                    "browser session (it was used already, or the session changed). Start "
                    "again with Connect Microsoft Account."
                ),
                status=400,
            )
        request.session.pop(SESSION_KEY, None)  # one use, whatever the outcome
        if not fresh:
            return self._page(
                request.env._("This sign-in took too long"),
                request.env._("The sign-in was started too long ago. Start again with Connect Microsoft Account."),
                status=400,
            )
        if error:
            return self._error_page(error, error_description or "")
        if not code:
            return self._page(
                request.env._("No authorization received"),
                request.env._("Microsoft sent no authorization code. Start again with Connect Microsoft Account."),
                status=400,
            )
        settings = self._settings()
        public_jwk = newest_public_jwk(settings["daemon"].get("jwks"))
        if not public_jwk:
            return self._daemon_missing()
        payload = json.dumps(
            {
                "code": code,
                "code_verifier": self._verifier(state),
                "redirect_uri": settings["redirect_uri"],
            }
        ).encode()
        sealed = seal_to_public_jwk(public_jwk, payload, PURPOSE)
        # sudo: the sealed field is readable by the daemon's group only, and users do not
        # create connect requests through RPC; the owner is the signed-in user.
        request.env["m365.connect.request"].sudo().create(
            {"user_id": request.env.uid, "sealed": sealed}
        )
        _logger.info("Microsoft 365 connect request stored for user %s", request.env.uid)
        action = request.env.ref("crm_microsoft365.m365_account_action")
        return self._page(
            request.env._("Connecting…"),
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
        return self._page(title, f"{advice} ({detail})", status=400)
