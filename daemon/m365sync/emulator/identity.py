"""The Microsoft identity platform v2.0, as real msal sees it: discovery, authorize, token.

Why an emulator and not mocks: the daemon talks to Entra through msal, and msal is what must be
proven — its discovery, its PKCE auth-code flow, its token cache and refresh-token rotation.
So this speaks the wire protocol (GRAPH-FACTS section 8): the same endpoints, the same error
bodies (``error``, ``error_description`` with "AADSTSnnnn: ...\\r\\nTrace ID ...", ``error_codes``,
``timestamp``, ``trace_id``, ``correlation_id``, ``error_uri``, ``suberror``), the same 302
redirects and HTML error pages.

Behaviour that follows reality on purpose:

- A refresh returns a NEW refresh token (rotation) but the old one is NOT revoked by its use;
  Entra documents that refresh tokens "aren't revoked when used". Only `revoke_grants` (a
  password reset, an admin revoking sessions) or `expire_refresh_tokens` (90 days inactive)
  invalidates them, with AADSTS50173 and AADSTS700082 respectively.
- Revoking grants does not invalidate access tokens already issued: they live until they expire
  (`expire_access_tokens` simulates that moment).
- Authorization codes live about ten minutes and redeem once (AADSTS54005 on reuse, 70008 when
  expired).
- The token response's ``scope`` names the granted Graph scopes short (``Mail.Read``) by default,
  or resource-qualified (``https://graph.microsoft.com/Mail.Read``) with
  ``scope_form="qualified"``: Microsoft's own token-response samples show both forms
  (v2-oauth2-auth-code-flow), and msal files the access token under the form it is answered
  (``TokenCache.add`` keys it by the response's scope), so a client must cope with either.

Deliberate strictness beyond Entra: PKCE with ``S256`` is required on every authorize request
(Entra requires it only for SPAs), because the daemon must always use it.
"""

from __future__ import annotations

import base64
import hashlib
import html
import json
import secrets
import threading
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode, urlsplit

from jwcrypto import jwk, jwt
from werkzeug.wrappers import Request, Response

from m365sync.emulator.wire import graph_error

DEMO_CLIENT_ID = "00000000-0000-4000-8000-00000000d3a0"
"""The app registration every emulator starts with (a GUID like a real application id)."""

DEMO_CLIENT_SECRET = "emu~DemoSecret.NotForProduction-0000000000"  # noqa: S105 - public demo value
"""Its client secret. Public on purpose: the emulator is for demos and tests only."""

DEMO_APP_NAME = "m365sync (emulator)"

DEMO_REDIRECT_URIS: tuple[str, ...] = (
    "http://localhost",
    "https://localhost/auth/microsoft-apis/get-access-token",
)
"""Registered redirect URIs; ``http://localhost`` matches any port, as Entra does for loopback."""

GRAPH_APP_ID = "00000003-0000-0000-c000-000000000000"
GRAPH_RESOURCE = "https://graph.microsoft.com/"

SCOPE_FORMS = ("short", "qualified")
"""How the token response names the granted Graph scopes: ``Mail.Read`` or
``https://graph.microsoft.com/Mail.Read`` (OIDC scopes stay short in both)."""

GRAPH_SCOPES: tuple[str, ...] = (
    "User.Read",
    "User.ReadBasic.All",
    "Mail.Read",
    "Mail.ReadBasic",
    "Mail.ReadWrite",
    "Mail.Send",
    "Calendars.Read",
    "Calendars.ReadWrite",
    "Calendars.Read.Shared",
    "Calendars.ReadWrite.Shared",
    "MailboxSettings.Read",
    "MailboxSettings.ReadWrite",
    "Contacts.Read",
    "Contacts.ReadWrite",
    "People.Read",
)
"""Delegated Graph permissions the emulator knows; their casing is canonical in tokens."""

OIDC_SCOPES: tuple[str, ...] = ("openid", "profile", "email", "offline_access")

DEFAULT_SCOPES: frozenset[str] = frozenset(
    {"User.Read", "Mail.Read", "Mail.Send", "Calendars.ReadWrite"}
)
"""What the daemon asks for (DESIGN.md) and what `mint_access_token` grants by default."""

GRAPH_WWW_AUTHENTICATE = (
    'Bearer realm="", '
    'authorization_uri="https://login.microsoftonline.com/common/oauth2/authorize", '
    f'client_id="{GRAPH_APP_ID}"'
)

# fmt: off
_CLAIMS_SUPPORTED = (
    "sub", "iss", "cloud_instance_name", "cloud_instance_host_name", "cloud_graph_host_name",
    "msgraph_host", "aud", "exp", "iat", "auth_time", "acr", "nonce", "preferred_username",
    "name", "tid", "ver", "at_hash", "c_hash", "email",
)
# fmt: on

TENANT_ALIASES = frozenset({"common", "organizations", "consumers"})

_IDX14100 = (
    "IDX14100: JWT is not well formed, there are no dots (.).\n"
    "The token needs to be in JWS or JWE Compact Serialization Format. (JWS): "
    "'EncodedHeader.EndcodedPayload.EncodedSignature'. (JWE): 'EncodedProtectedHeader."
    "EncodedEncryptedKey.EncodedInitializationVector.EncodedCiphertext.EncodedAuthenticationTag'."
)


def b64url(data: bytes) -> str:
    """Base64url without padding (RFC 7636 and JWT)."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def pkce_challenge(verifier: str) -> str:
    """The S256 code challenge for a verifier: base64url(sha256(verifier))."""
    return b64url(hashlib.sha256(verifier.encode("ascii")).digest())


@dataclass
class App:
    """An app registration: id, secret and redirect URIs."""

    client_id: str
    secret: str
    redirect_uris: tuple[str, ...]
    name: str = DEMO_APP_NAME
    secret_expired: bool = False


@dataclass
class Grant:
    """One consent of the user to one app; refresh tokens point at it."""

    client_id: str
    scopes: tuple[str, ...]  # Graph scopes, canonical casing, request order
    oidc: tuple[str, ...]  # openid / profile / email / offline_access as requested
    revoked: bool = False
    issued: float = field(default_factory=time.time)


@dataclass
class _Code:
    grant: Grant
    redirect_uri: str
    challenge: str
    nonce: str | None
    expires_at: float
    used: bool = False


@dataclass
class _RefreshToken:
    grant: Grant
    expired: bool = False
    issued: float = field(default_factory=time.time)


@dataclass
class _AccessToken:
    client_id: str
    scopes: frozenset[str]
    expires_at: float


@dataclass(frozen=True)
class _Consent:
    """A one-shot instruction for the next authorize request (see `deny_next_consent`)."""

    error: str
    description: str
    subcode: str | None


class AadError(Exception):
    """An identity-platform error, rendered as Microsoft's JSON error body."""

    def __init__(
        self,
        error: str,
        code: int,
        text: str,
        *,
        status: int = 400,
        suberror: str | None = None,
    ) -> None:
        super().__init__(f"AADSTS{code}: {text}")
        self.error, self.code, self.text = error, code, text
        self.status, self.suberror = status, suberror


def _timestamp() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%SZ")


class Identity:
    """Entra ID for one tenant with one user (the mailbox's), plus registered apps.

    Thread-safe: the HTTPS server is threaded, and tests steer it from their own thread.
    ``base_url`` is set by the server once it knows its port.
    """

    def __init__(
        self,
        mailbox: Any,
        *,
        access_token_lifetime: int = 3599,
        code_lifetime: int = 600,
        base_url: str = "https://127.0.0.1",
        scope_form: str = "short",
    ) -> None:
        self.mailbox = mailbox
        self.access_token_lifetime = access_token_lifetime
        self.code_lifetime = code_lifetime
        self.base_url = base_url
        self.kid = b64url(secrets.token_bytes(20))
        self.key = jwk.JWK.generate(kty="RSA", size=2048, kid=self.kid)
        self._lock = threading.RLock()
        self.scope_form = "short"
        self.answer_scopes_as(scope_form)
        self._apps: dict[str, App] = {}
        self._codes: dict[str, _Code] = {}
        self._refresh: dict[str, _RefreshToken] = {}
        self._access: dict[str, _AccessToken] = {}
        self._consent_limit: frozenset[str] | None = None
        self._consented: dict[str, tuple[str, ...]] = {}  # client id -> Graph scopes consented
        self._next_consent: _Consent | None = None
        self.register_app(DEMO_CLIENT_ID, DEMO_CLIENT_SECRET, DEMO_REDIRECT_URIS)

    # --- who --------------------------------------------------------------------------------

    @property
    def tenant_id(self) -> str:
        return str(self.mailbox.tenant_id)

    @property
    def user(self) -> dict[str, Any]:
        return dict(self.mailbox.user)

    @property
    def oid(self) -> str:
        return str(self.mailbox.user["id"])

    # --- steering (tests, control API) ---------------------------------------------------------

    def register_app(
        self,
        client_id: str,
        secret: str,
        redirect_uris: Iterable[str],
        *,
        name: str = DEMO_APP_NAME,
    ) -> None:
        """Register (or replace) an app registration."""
        with self._lock:
            self._apps[client_id] = App(client_id, secret, tuple(redirect_uris), name)

    def add_redirect_uris(
        self, redirect_uris: Iterable[str], client_id: str = DEMO_CLIENT_ID
    ) -> None:
        """Add redirect URIs to a registered app (e.g. the Odoo callback of a demo)."""
        with self._lock:
            app = self._apps[client_id]
            app.redirect_uris = app.redirect_uris + tuple(
                uri for uri in redirect_uris if uri not in app.redirect_uris
            )

    def expire_client_secret(self, client_id: str = DEMO_CLIENT_ID) -> None:
        """The app's secret lapses: token requests get invalid_client AADSTS7000222."""
        with self._lock:
            self._apps[client_id].secret_expired = True

    def deny_next_consent(
        self,
        error: str = "access_denied",
        description: str = "AADSTS65004: User declined to consent to access the app.",
        subcode: str | None = "cancel",
    ) -> None:
        """The next authorize request redirects back with this error instead of a code."""
        with self._lock:
            self._next_consent = _Consent(error, description, subcode)

    def answer_scopes_as(self, form: str) -> None:
        """Name the granted Graph scopes in token responses ``short`` or ``qualified``."""
        if form not in SCOPE_FORMS:
            raise ValueError(f"scope form must be one of {', '.join(SCOPE_FORMS)}, not {form!r}")
        with self._lock:
            self.scope_form = form

    def grant_only(self, scopes: Iterable[str] | None) -> None:
        """The user consents to at most these Graph scopes (None: to all asked).

        Consent already given is cut down to them too (an admin removing permissions), so
        the next refresh already returns the smaller set.
        """
        with self._lock:
            self._consent_limit = (
                None if scopes is None else frozenset(_canonical(s) or s for s in scopes)
            )
            limit = self._consent_limit
            for client_id, consented in self._consented.items():
                self._consented[client_id] = tuple(
                    s for s in consented if limit is None or s in limit
                )

    def revoke_grants(self) -> int:
        """Revoke every grant (password reset, admin revoke): refresh -> AADSTS50173.

        Access tokens already issued stay valid until they expire, as in reality.
        Returns how many grants were revoked.
        """
        with self._lock:
            grants = {id(rt.grant): rt.grant for rt in self._refresh.values()}
            grants.update({id(c.grant): c.grant for c in self._codes.values()})
            for grant in grants.values():
                grant.revoked = True
            return len(grants)

    def expire_refresh_tokens(self) -> int:
        """Every refresh token issued so far expires from inactivity: AADSTS700082."""
        with self._lock:
            for token in self._refresh.values():
                token.expired = True
            return len(self._refresh)

    def expire_access_tokens(self) -> int:
        """Every access token issued so far is expired: Graph answers 401 for them."""
        with self._lock:
            past = time.time() - 1
            for token in self._access.values():
                token.expires_at = min(token.expires_at, past)
            return len(self._access)

    def mint_access_token(
        self,
        scopes: Iterable[str] = DEFAULT_SCOPES,
        *,
        client_id: str = DEMO_CLIENT_ID,
        lifetime: int | None = None,
    ) -> str:
        """An access token for the user without the OAuth dance (tests, demos, control API)."""
        canonical = tuple(_canonical(s) or s for s in scopes)
        return self._issue_access_token(client_id, canonical, lifetime)

    # --- Graph side ----------------------------------------------------------------------------

    def authenticate(
        self, authorization_header: str | None
    ) -> tuple[dict[str, Any], frozenset[str]] | None:
        """(user, granted Graph scopes) for a valid ``Bearer`` header, else None."""
        token = _bearer(authorization_header)
        if not token:
            return None
        with self._lock:
            record = self._access.get(token)
            if record is None or record.expires_at <= time.time():
                return None
            return self.user, record.scopes

    def unauthorized(
        self, authorization_header: str | None, request: Request | None = None
    ) -> Response:
        """Graph's 401 for a header `authenticate` refused, with Graph's message for the case."""
        token = _bearer(authorization_header)
        if not token:
            message = "Access token is empty."
        elif token.count(".") != 2:
            message = _IDX14100
        else:
            message = "Access token has expired or is not yet valid."
        return graph_error(
            401,
            "InvalidAuthenticationToken",
            message,
            request=request,
            headers={"WWW-Authenticate": GRAPH_WWW_AUTHENTICATE},
        )

    # --- HTTP ------------------------------------------------------------------------------

    def handles(self, path: str) -> bool:
        """Whether a request path belongs to the identity platform."""
        parts = path.strip("/").split("/")
        if parts == ["error"]:
            return True
        if len(parts) < 3:
            return False
        rest = "/".join(parts[1:])
        return rest in {
            "v2.0/.well-known/openid-configuration",
            "discovery/v2.0/keys",
            "oauth2/v2.0/authorize",
            "oauth2/v2.0/token",
        }

    def handle(self, request: Request) -> Response:
        """Answer one identity request (`handles` was true for its path)."""
        parts = request.path.strip("/").split("/")
        if parts == ["error"]:
            return _html_page(
                200, "Error details", f"AADSTS{html.escape(request.args.get('code', ''))}"
            )
        tenant, rest = parts[0], "/".join(parts[1:])
        if not self._known_tenant(tenant):
            return self._aad_response(
                request,
                AadError(
                    "invalid_tenant",
                    90002,
                    f"Tenant '{tenant}' not found. Check to make sure you have the correct "
                    "tenant ID and are signing into the correct cloud.",
                ),
            )
        if rest.endswith("openid-configuration"):
            return _json(self.openid_configuration(tenant))
        if rest.endswith("keys"):
            return _json(self.jwks())
        if rest.endswith("authorize"):
            if request.method not in {"GET", "POST"}:
                return _html_page(405, "Method not allowed", "Use GET.")
            return self._authorize(request)
        if request.method != "POST":
            return self._aad_response(
                request,
                AadError("invalid_request", 900561, "The endpoint only accepts POST requests."),
            )
        try:
            return _json(
                self._token(request), headers={"Cache-Control": "no-store", "Pragma": "no-cache"}
            )
        except AadError as error:
            return self._aad_response(request, error)

    def openid_configuration(self, tenant: str) -> dict[str, Any]:
        """The discovery document; for common/organizations the issuer says ``{tenantid}``."""
        base = f"{self.base_url}/{tenant}"
        issuer_tenant = "{tenantid}" if tenant in TENANT_ALIASES else self.tenant_id
        host = urlsplit(self.base_url).netloc
        return {
            "token_endpoint": f"{base}/oauth2/v2.0/token",
            "token_endpoint_auth_methods_supported": [
                "client_secret_post",
                "private_key_jwt",
                "client_secret_basic",
            ],
            "jwks_uri": f"{base}/discovery/v2.0/keys",
            "response_modes_supported": ["query", "fragment", "form_post"],
            "subject_types_supported": ["pairwise"],
            "id_token_signing_alg_values_supported": ["RS256"],
            "response_types_supported": ["code", "id_token", "code id_token", "id_token token"],
            "scopes_supported": ["openid", "profile", "email", "offline_access"],
            "issuer": f"{self.base_url}/{issuer_tenant}/v2.0",
            "request_uri_parameter_supported": False,
            "userinfo_endpoint": "https://graph.microsoft.com/oidc/userinfo",  # as Entra says
            "authorization_endpoint": f"{base}/oauth2/v2.0/authorize",
            "device_authorization_endpoint": f"{base}/oauth2/v2.0/devicecode",
            "http_logout_supported": True,
            "frontchannel_logout_supported": True,
            "end_session_endpoint": f"{base}/oauth2/v2.0/logout",
            "claims_supported": list(_CLAIMS_SUPPORTED),
            "kerberos_endpoint": f"{base}/kerberos",
            "tenant_region_scope": "EU",
            "cloud_instance_name": "microsoftonline.com",
            "cloud_graph_host_name": "graph.windows.net",
            "msgraph_host": host,
            "rbac_url": "https://pas.windows.net",
        }

    def jwks(self) -> dict[str, Any]:
        """The public signing keys (one RS256 key, generated at start)."""
        public = self.key.export_public(as_dict=True)
        public.update(
            {"use": "sig", "alg": "RS256", "issuer": f"{self.base_url}/{self.tenant_id}/v2.0"}
        )
        return {"keys": [public]}

    # --- authorize -----------------------------------------------------------------------------

    def _authorize(self, request: Request) -> Response:
        args = request.values
        client_id = args.get("client_id", "")
        with self._lock:
            app = self._apps.get(client_id)
        if app is None:
            return _html_page(
                400,
                "Sign in",
                f"AADSTS700016: Application with identifier '{client_id}' was not found in the "
                f"directory '{self.tenant_id}'. This can happen if the application has not been "
                "installed by the administrator of the tenant or consented to by any user in the "
                "tenant. You may have sent your authentication request to the wrong tenant.",
            )
        redirect_uri = args.get("redirect_uri", "")
        if not any(_redirect_matches(registered, redirect_uri) for registered in app.redirect_uris):
            return _html_page(
                400,
                "Sign in",
                f"AADSTS50011: The redirect URI '{redirect_uri}' specified in the request does "
                f"not match the redirect URIs configured for the application '{client_id}'. "
                "Make sure the redirect URI sent in the request matches one added to your "
                "application in the Azure portal.",
            )
        state = args.get("state")
        response_mode = args.get("response_mode", "query")
        try:
            params = self._consent(args, app)
        except AadError as error:
            params = {
                "error": error.error,
                "error_description": f"AADSTS{error.code}: {error.text}",
                "error_uri": f"{self.base_url}/error?code={error.code}",
            }
            if error.suberror:
                params["error_subcode"] = error.suberror
        if state is not None:
            params["state"] = state
        return _redirect(redirect_uri, params, response_mode)

    def _consent(self, args: Any, app: App) -> dict[str, str]:
        """Validate an authorize request and let the user consent; the redirect's parameters."""
        if args.get("response_type") != "code":
            raise AadError(
                "unsupported_response_type",
                700054,
                f"response_type '{args.get('response_type', '')}' is not enabled for the "
                "application.",
            )
        scope = args.get("scope", "")
        if not scope.strip():
            raise AadError(
                "invalid_request",
                900144,
                "The request body must contain the following parameter: 'scope'.",
            )
        graph, oidc = _parse_scopes(scope)
        challenge = args.get("code_challenge")
        method = args.get("code_challenge_method", "plain" if challenge else None)
        if not challenge:
            raise AadError(
                "invalid_request",
                9002325,
                "Proof Key for Code Exchange is required for cross-origin authorization code "
                "redemption.",
            )
        if method != "S256":
            raise AadError(
                "invalid_request",
                9002325,
                "Proof Key for Code Exchange is required with code_challenge_method 'S256'; "
                f"'{method}' is not accepted by this emulator.",
            )
        if len(challenge) != 43:
            raise AadError("invalid_request", 501491, "Invalid size of Code_Challenge parameter.")
        with self._lock:
            denial, self._next_consent = self._next_consent, None
            limit = self._consent_limit
        if denial is not None:
            params = {"error": denial.error, "error_description": denial.description}
            if denial.subcode:
                params["error_subcode"] = denial.subcode
            return params
        if not graph:
            graph = ("User.Read",)  # Entra adds User.Read when only OIDC scopes are asked
        with self._lock:
            # Consent is cumulative per user and app; tokens carry every consented scope.
            before = self._consented.get(app.client_id, ())
            granted = before + tuple(
                s for s in graph if (limit is None or s in limit) and s not in before
            )
            self._consented[app.client_id] = granted
        grant = Grant(app.client_id, granted, oidc)
        code = "1.A" + b64url(secrets.token_bytes(96))
        with self._lock:
            self._codes[code] = _Code(
                grant,
                args.get("redirect_uri", ""),
                challenge,
                args.get("nonce"),
                time.time() + self.code_lifetime,
            )
        params = {"code": code, "session_state": str(uuid.uuid4())}
        if args.get("client_info") == "1":
            params["client_info"] = self._client_info()
        return params

    # --- token -----------------------------------------------------------------------------

    def _token(self, request: Request) -> dict[str, Any]:
        form = request.form
        app = self._authenticate_client(request)
        grant_type = form.get("grant_type")
        if not grant_type:
            raise AadError(
                "invalid_request",
                900144,
                "The request body must contain the following parameter: 'grant_type'.",
            )
        if grant_type == "authorization_code":
            grant, nonce = self._redeem_code(form, app)
            graph_scopes = grant.scopes
        elif grant_type == "refresh_token":
            grant, graph_scopes = self._redeem_refresh_token(form, app)
            nonce = None
        else:
            raise AadError(
                "unsupported_grant_type",
                70003,
                f"The app requested an unsupported grant type '{grant_type}'.",
            )
        access_token = self._issue_access_token(app.client_id, graph_scopes, None)
        lifetime = self.access_token_lifetime
        prefix = GRAPH_RESOURCE if self.scope_form == "qualified" else ""
        shown = [prefix + s for s in graph_scopes]
        shown += [s for s in ("profile", "openid", "email") if s in grant.oidc]
        body: dict[str, Any] = {
            "token_type": "Bearer",
            "scope": " ".join(shown),
            "expires_in": lifetime,
            "ext_expires_in": lifetime,
            "access_token": access_token,
        }
        if "offline_access" in grant.oidc:
            refresh = "1.A" + b64url(secrets.token_bytes(160))
            with self._lock:
                self._refresh[refresh] = _RefreshToken(grant)
            body["refresh_token"] = refresh
        if "openid" in grant.oidc:
            body["id_token"] = self._id_token(app.client_id, grant, nonce)
        if form.get("client_info") == "1":
            body["client_info"] = self._client_info()
        return body

    def _authenticate_client(self, request: Request) -> App:
        form = request.form
        client_id, secret = form.get("client_id"), form.get("client_secret")
        if request.authorization and request.authorization.type == "basic":
            client_id = client_id or request.authorization.username
            secret = secret or request.authorization.password
        with self._lock:
            app = self._apps.get(client_id or "")
        if app is None:
            raise AadError(
                "unauthorized_client",
                700016,
                f"Application with identifier '{client_id}' was not found in the directory "
                f"'{self.tenant_id}'. This can happen if the application has not been installed "
                "by the administrator of the tenant or consented to by any user in the tenant. "
                "You may have sent your authentication request to the wrong tenant.",
            )
        if not secret:
            raise AadError(
                "invalid_client",
                7000218,
                "The request body must contain the following parameter: 'client_assertion' or "
                "'client_secret'.",
                status=401,
            )
        if app.secret_expired:
            raise AadError(
                "invalid_client",
                7000222,
                f"The provided client secret keys for app '{app.client_id}' are expired. Visit "
                "the Azure portal to create new keys for your app: "
                "https://aka.ms/NewClientSecret, or consider using certificate credentials for "
                "added security: https://aka.ms/certCreds.",
                status=401,
            )
        if not secrets.compare_digest(secret.encode(), app.secret.encode()):
            raise AadError(
                "invalid_client",
                7000215,
                "Invalid client secret provided. Ensure the secret being sent in the request is "
                "the client secret value, not the client secret ID, for a secret added to app "
                f"'{app.client_id}'.",
                status=401,
            )
        return app

    def _redeem_code(self, form: Any, app: App) -> tuple[Grant, str | None]:
        code = form.get("code", "")
        with self._lock:
            record = self._codes.get(code)
            if record is None or record.grant.client_id != app.client_id:
                raise AadError(
                    "invalid_grant", 9002313, "Invalid request. Request is malformed or invalid."
                )
            if record.used:
                raise AadError(
                    "invalid_grant",
                    54005,
                    "OAuth2 Authorization code was already redeemed, please retry with a new "
                    "valid code or use an existing refresh token.",
                )
            if record.expires_at <= time.time():
                raise AadError(
                    "invalid_grant",
                    70008,
                    "The provided authorization code or refresh token has expired due to "
                    "inactivity. Send a new interactive authorization request for this user and "
                    "resource.",
                )
            if form.get("redirect_uri", "") != record.redirect_uri:
                raise AadError(
                    "invalid_grant",
                    50011,
                    f"The redirect URI '{form.get('redirect_uri', '')}' specified in the request "
                    "does not match the redirect URI used to obtain the authorization code.",
                )
            verifier = form.get("code_verifier", "")
            if not verifier or pkce_challenge(verifier) != record.challenge:
                raise AadError(
                    "invalid_grant",
                    501481,
                    "The Code_Verifier does not match the code_challenge supplied in the "
                    "authorization request.",
                )
            if record.grant.revoked:
                raise _revoked()
            record.used = True
            return record.grant, record.nonce

    def _redeem_refresh_token(self, form: Any, app: App) -> tuple[Grant, tuple[str, ...]]:
        token = form.get("refresh_token", "")
        with self._lock:
            record = self._refresh.get(token)
            if record is None or record.grant.client_id != app.client_id:
                raise AadError(
                    "invalid_grant", 9002313, "Invalid request. Request is malformed or invalid."
                )
            grant = record.grant
            if grant.revoked:
                raise _revoked()
            if record.expired:
                issued = datetime.fromtimestamp(record.issued, UTC).strftime("%m/%d/%Y %H:%M:%S")
                raise AadError(
                    "invalid_grant",
                    700082,
                    "The refresh token has expired due to inactivity. The token was issued on "
                    f"{issued} and was inactive for 90.00:00:00.",
                )
        asked, _ = _parse_scopes(form.get("scope", ""))
        with self._lock:
            consented = self._consented.get(app.client_id, ())
        missing = [s for s in asked if s not in consented]
        if missing:
            raise AadError(
                "invalid_grant",
                65001,
                f"The user or administrator has not consented to use the application with ID "
                f"'{app.client_id}' named '{app.name}'. Send an interactive authorization request "
                "for this user and resource.",
                suberror="consent_required",
            )
        # Entra answers with every scope consented for the resource, not only those asked.
        return grant, consented

    # --- token material --------------------------------------------------------------------

    def _issue_access_token(
        self, client_id: str, scopes: tuple[str, ...], lifetime: int | None
    ) -> str:
        now = int(time.time())
        expires_at = now + (self.access_token_lifetime if lifetime is None else lifetime)
        user = self.user
        claims = {
            "aud": GRAPH_APP_ID,
            "iss": f"{self.base_url}/{self.tenant_id}/",
            "iat": now,
            "nbf": now,
            "exp": expires_at,
            "appid": client_id,
            "oid": self.oid,
            "tid": self.tenant_id,
            "upn": user.get("userPrincipalName"),
            "name": user.get("displayName"),
            "scp": " ".join(scopes),
            "uti": b64url(secrets.token_bytes(16)),
            "ver": "1.0",
        }
        token = self._sign(claims)
        with self._lock:
            self._access[token] = _AccessToken(client_id, frozenset(scopes), float(expires_at))
        return token

    def _id_token(self, client_id: str, grant: Grant, nonce: str | None) -> str:
        now = int(time.time())
        user = self.user
        claims: dict[str, Any] = {
            "aud": client_id,
            "iss": f"{self.base_url}/{self.tenant_id}/v2.0",
            "iat": now,
            "nbf": now,
            "exp": now + 3600,
            "name": user.get("displayName"),
            "oid": self.oid,
            "preferred_username": user.get("userPrincipalName"),
            # Entra's sub is pairwise: stable per user and app, useless across apps.
            "sub": b64url(hashlib.sha256(f"{client_id}:{self.oid}".encode()).digest()),
            "tid": self.tenant_id,
            "ver": "2.0",
        }
        if "email" in grant.oidc and user.get("mail"):
            claims["email"] = user["mail"]
        if nonce:
            claims["nonce"] = nonce
        return self._sign(claims)

    def _sign(self, claims: dict[str, Any]) -> str:
        token = jwt.JWT(header={"alg": "RS256", "typ": "JWT", "kid": self.kid}, claims=claims)
        token.make_signed_token(self.key)
        return token.serialize()

    def _client_info(self) -> str:
        return b64url(json.dumps({"uid": self.oid, "utid": self.tenant_id}).encode())

    def _known_tenant(self, tenant: str) -> bool:
        if tenant.lower() in TENANT_ALIASES or tenant.lower() == self.tenant_id.lower():
            return True
        mail = str(self.user.get("userPrincipalName") or self.user.get("mail") or "")
        return "@" in mail and tenant.lower() == mail.rsplit("@", 1)[1].lower()

    def _aad_response(self, request: Request, error: AadError) -> Response:
        timestamp = _timestamp()
        trace_id = str(uuid.uuid4())
        correlation_id = request.headers.get("client-request-id") or str(uuid.uuid4())
        body: dict[str, Any] = {
            "error": error.error,
            "error_description": f"AADSTS{error.code}: {error.text}\r\nTrace ID: {trace_id}\r\n"
            f"Correlation ID: {correlation_id}\r\nTimestamp: {timestamp}",
            "error_codes": [error.code],
            "timestamp": timestamp,
            "trace_id": trace_id,
            "correlation_id": correlation_id,
            "error_uri": f"{self.base_url}/error?code={error.code}",
        }
        if error.suberror:
            body["suberror"] = error.suberror
        return _json(
            body, status=error.status, headers={"Cache-Control": "no-store", "Pragma": "no-cache"}
        )


# --- helpers ----------------------------------------------------------------------------------


def _revoked() -> AadError:
    return AadError(
        "invalid_grant",
        50173,
        "The provided grant has expired due to it being revoked, a fresh auth token is needed. "
        "The user might have changed or reset their password. The grant was issued on "
        f"'{datetime.now(UTC).isoformat(timespec='microseconds')}' and the TokensValidFrom date "
        f"(before which tokens are not valid) for this user is "
        f"'{datetime.now(UTC).isoformat(timespec='seconds')}'.",
    )


_CANONICAL = {s.lower(): s for s in GRAPH_SCOPES}


def _canonical(scope: str) -> str | None:
    """A Graph scope in canonical casing, accepting the resource-qualified forms; else None."""
    name = scope
    for prefix in (GRAPH_RESOURCE, "https://graph.microsoft.com/", f"{GRAPH_APP_ID}/"):
        if name.lower().startswith(prefix):
            name = name[len(prefix) :]
            break
    return _CANONICAL.get(name.lower())


def _parse_scopes(scope: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """Split a scope parameter into (Graph scopes, OIDC scopes); unknown ones are invalid_scope."""
    graph: list[str] = []
    oidc: list[str] = []
    for raw in scope.split():
        if raw.lower() in OIDC_SCOPES:
            if raw.lower() not in oidc:
                oidc.append(raw.lower())
        elif raw.lower().endswith("/.default") or raw.lower() == ".default":
            graph.extend(s for s in sorted(DEFAULT_SCOPES) if s not in graph)
        elif (name := _canonical(raw)) is not None:
            if name not in graph:
                graph.append(name)
        else:
            raise AadError(
                "invalid_scope",
                70011,
                f"The provided request must include a 'scope' input parameter. The provided "
                f"value for the input parameter 'scope' is not valid. The scope {raw} is not "
                "valid.",
            )
    return tuple(graph), tuple(oidc)


def _redirect_matches(registered: str, asked: str) -> bool:
    """Exact match, except that loopback http URIs match on any port (Entra's rule)."""
    if registered == asked:
        return True
    reg, got = urlsplit(registered), urlsplit(asked)
    loopback = {"localhost", "127.0.0.1"}
    try:
        got.port  # noqa: B018 - raises ValueError for a malformed port
    except ValueError:
        return False
    return (
        reg.scheme == got.scheme == "http"
        and reg.hostname in loopback
        and reg.hostname == got.hostname
        and (reg.path or "/") == (got.path or "/")
        and reg.query == got.query
    )


def _bearer(header: str | None) -> str | None:
    if not header:
        return None
    scheme, _, token = header.strip().partition(" ")
    if scheme.lower() != "bearer":
        return None
    return token.strip() or None


def _json(payload: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    response = Response(
        json.dumps(payload), status=status, content_type="application/json; charset=utf-8"
    )
    response.headers["x-ms-request-id"] = str(uuid.uuid4())
    for name, value in (headers or {}).items():
        response.headers[name] = value
    return response


def _redirect(uri: str, params: dict[str, str], response_mode: str) -> Response:
    if response_mode == "form_post":
        inputs = "".join(
            f'<input type="hidden" name="{html.escape(k)}" value="{html.escape(v)}"/>'
            for k, v in params.items()
        )
        page = (
            "<html><head><title>Working...</title></head><body>"
            f'<form method="POST" name="hiddenform" action="{html.escape(uri)}">{inputs}'
            "<noscript><p>Script is disabled. Click Submit to continue.</p>"
            '<input type="submit" value="Submit"/></noscript></form>'
            "<script>document.forms[0].submit();</script></body></html>"
        )
        return Response(page, status=200, content_type="text/html; charset=utf-8")
    separator = "#" if response_mode == "fragment" else ("&" if "?" in uri else "?")
    response = Response("", status=302)
    response.headers["Location"] = f"{uri}{separator}{urlencode(params)}"
    return response


def _html_page(status: int, title: str, message: str) -> Response:
    page = (
        f"<!DOCTYPE html><html><head><title>{html.escape(title)}</title></head><body>"
        f'<h1>{html.escape(title)}</h1><p id="error">{html.escape(message)}</p>'
        f"<p>Trace ID: {uuid.uuid4()}<br/>Correlation ID: {uuid.uuid4()}<br/>"
        f"Timestamp: {_timestamp()}</p></body></html>"
    )
    return Response(page, status=status, content_type="text/html; charset=utf-8")
