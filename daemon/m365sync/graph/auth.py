"""msal, wrapped: connect an account, then hand out access tokens for it.

Why msal: it implements the authorization code flow with PKCE (S256), state and nonce, keeps
refresh tokens in a serialisable cache and rotates them; we only decide what its answers mean.
Every msal error dict becomes one of our typed errors with words (invariant 5: a revoked or
expired grant turns into "needs reconnect", not a crash loop).

Why one msal application per account (and per connect), not one per (authority, client id)
with caches swapped in: msal binds the cache at construction — the refresh-token update and
removal hooks (``on_updating_rt=self.token_cache.update_rt`` in ``_build_client``) point at
the cache object given then — so swapping ``app.token_cache`` would write rotated refresh
tokens into the wrong account's cache. ``AccountTokens`` builds its application once and
reuses it for every token it hands out.

Why ``AccountTokens`` looks in msal's cache itself before asking msal: msal files an access
token under the scopes the token response names (``TokenCache.add`` keys it by the response's
``scope``; msal's PR #856 pins this) and finds it again only when every requested scope is
literally among them (``TokenCache._is_matching``: a subset test on the strings). The identity
platform may answer the granted Graph scopes resource-qualified
(``https://graph.microsoft.com/Mail.Read``; Microsoft's v2-oauth2-auth-code-flow samples show
that form), which never equals the ``Mail.Read`` we ask for: every call then missed the cache
and refreshed (rotating, re-sealing and storing the refresh token each time). A bare scope means
Microsoft Graph, so ``scope_key`` compares them without the Graph resource and case-insensitively,
and a cached token is reused until five minutes before it expires (msal's own margin).

Why ``instance_discovery=False`` off Microsoft hosts: msal otherwise asks
``login.microsoftonline.com/common/discovery/instance`` about any authority it does not know,
which a national cloud proxy or our emulator cannot answer.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import msal
import requests

from m365sync.errors import (
    BadClientCredentials,
    GraphError,
    IdentityUnavailable,
    InsufficientPermissions,
    MalformedResponse,
    NeedsReconnect,
)
from m365sync.graph.transport import certificate_refused, tls_untrusted

log = logging.getLogger("m365sync.auth")

_CHECK_AUTHORITY = "check microsoft.authority_host and that this host can reach it"

MICROSOFT_AUTHORITY_HOSTS = frozenset(
    {
        "login.microsoftonline.com",
        "login.microsoftonline.us",
        "login.chinacloudapi.cn",
        "login.partner.microsoftonline.cn",
        "login.microsoftonline.de",
    }
)

#: msal adds these itself and raises ValueError when a caller passes them.
RESERVED_SCOPES = frozenset({"openid", "profile", "offline_access"})

_RECONNECT_ERRORS = frozenset(
    {"invalid_grant", "interaction_required", "login_required", "consent_required"}
)
#: The AADSTS answers to ``invalid_grant`` that mean the user's grant itself is gone (revoked,
#: expired, consent or MFA needed): only these make an account "needs reconnect". Another
#: code (a request Microsoft finds malformed, as a misconfigured authority or tenant gives)
#: is a configuration failure: the grant is kept and retried once the setting is fixed.
GRANT_GONE_CODES = frozenset(
    {
        50173,
        700082,
        70008,
        70000,
        65001,
        50076,
        50078,
        50079,
        50132,
        50133,
        70043,
        700084,
        50034,
        50057,
        50055,
    }
)
#: The resource prefixes of Microsoft Graph (global and national clouds, and its application
#: id): a scope without one names Graph, so ``https://graph.microsoft.com/Mail.Read`` and
#: ``Mail.Read`` are one permission.
GRAPH_RESOURCE_PREFIXES = (
    "https://graph.microsoft.com/",
    "https://graph.microsoft.us/",
    "https://dod-graph.microsoft.us/",
    "https://microsoftgraph.chinacloudapi.cn/",
    "https://graph.microsoft.de/",
    "00000003-0000-0000-c000-000000000000/",
)
#: An access token with less than this left is refreshed (msal's own margin).
REFRESH_MARGIN_SECONDS = 300
_CLIENT_ERRORS = frozenset({"invalid_client"})
_TRANSIENT_ERRORS = frozenset({"temporarily_unavailable", "server_error"})
#: What may fail below msal's error dicts: the network, a 5xx (MsalServiceError), a non-JSON
#: answer (ValueError from json.loads).
_TRANSPORT_FAILURES = (requests.RequestException, msal.exceptions.MsalServiceError)


@dataclass(frozen=True, slots=True)
class ConnectedIdentity:
    """Who just connected, and their msal cache (to be sealed before it is stored anywhere)."""

    address: str
    display_name: str
    tenant_id: str
    object_id: str
    token_cache: str = field(repr=False)


def scope_key(scope: str) -> str:
    """A Graph scope as the identity platform compares it: without the Graph resource prefix,
    case-insensitive (``https://graph.microsoft.com/Mail.Read`` -> ``mail.read``)."""
    lowered = scope.strip().lower()
    for prefix in GRAPH_RESOURCE_PREFIXES:
        if lowered.startswith(prefix):
            return lowered[len(prefix) :]
    return lowered


class CountingHttpClient:
    """msal's ``http_client`` for one account: the shared session, counting the POSTs msal
    sends (token requests: redemptions and refreshes) for the cycle's figures."""

    def __init__(self, session: requests.Session) -> None:
        self._session = session
        self._lock = threading.Lock()
        self.token_requests = 0

    def post(self, url: str, **kwargs: Any) -> requests.Response:
        with self._lock:
            self.token_requests += 1
        return self._session.post(url, **kwargs)

    def get(self, url: str, **kwargs: Any) -> requests.Response:
        return self._session.get(url, **kwargs)

    def close(self) -> None:
        """The session is shared: closing is its owner's business."""


# --- error mapping --------------------------------------------------------------------------


def error_code(result: Mapping[str, Any]) -> str:
    """``invalid_grant/AADSTS50173``: the OAuth error and the first AADSTS code, if any."""
    error = str(result.get("error") or "unknown_error")
    codes = result.get("error_codes")
    if isinstance(codes, list) and codes and isinstance(codes[0], int):
        return f"{error}/AADSTS{codes[0]}"
    return error


def _first_line(result: Mapping[str, Any]) -> str:
    """The AADSTS sentence without the trace and correlation ids that follow it."""
    description = result.get("error_description")
    if not isinstance(description, str):
        return ""
    return description.strip().splitlines()[0][:300] if description.strip() else ""


def error_from_msal(result: Mapping[str, Any]) -> GraphError:
    """Map an msal/identity-platform error dict to a typed error with words."""
    error = str(result.get("error") or "").lower()
    code = error_code(result)
    detail = _first_line(result)
    said = f" ({detail})" if detail else ""
    codes = result.get("error_codes")
    first = codes[0] if isinstance(codes, list) and codes and isinstance(codes[0], int) else None
    if error == "invalid_grant" and first is not None and first not in GRANT_GONE_CODES:
        return GraphError(
            f"Microsoft refused the stored sign-in with {code}{said}, an answer that does not "
            "mean the sign-in is gone: check the authority host and tenant in the daemon's "
            "configuration (and Odoo's Settings > Microsoft 365). The sign-in is kept.",
            code=code,
        )
    if error in _RECONNECT_ERRORS:
        return NeedsReconnect(f"Microsoft refused the stored sign-in: {code}{said}", code=code)
    if error in _CLIENT_ERRORS:
        return BadClientCredentials(
            f"Microsoft rejected the app's client credentials: {code}{said}", code=code
        )
    if error == "invalid_scope":
        return InsufficientPermissions(
            f"Microsoft refused the requested permissions: {code}{said}", code=code
        )
    if error in _TRANSIENT_ERRORS:
        return IdentityUnavailable(
            f"the Microsoft identity platform failed for now: {code}{said}", code=code
        )
    return GraphError(f"the Microsoft identity platform refused: {code}{said}", code=code)


def error_from_authorization_response(response: Mapping[str, Any]) -> GraphError:
    """The error the authorization endpoint sent back to the redirect URI, in words."""
    error = str(response.get("error") or "").lower()
    description = response.get("error_description")
    said = f" ({str(description).splitlines()[0][:300]})" if description else ""
    if error == "access_denied":
        return NeedsReconnect(
            "The sign-in was cancelled or the permissions were declined: connect again and "
            f"accept the requested permissions{said}.",
            code="access_denied",
        )
    if error == "consent_required":
        return InsufficientPermissions(
            "Consent for this app is missing: the user (or a tenant administrator, if the "
            f"tenant requires admin consent) must grant it, then connect again{said}.",
            code="consent_required",
        )
    return error_from_msal(response)


# --- the broker ---------------------------------------------------------------------------


class TokenBroker:
    """The app registration as msal sees it: starts and finishes connects, builds msal apps."""

    def __init__(
        self,
        client_id: str,
        client_secret: str,
        authority: str,
        scopes: Sequence[str],
        *,
        session: requests.Session,
        validate_authority: bool = True,
    ) -> None:
        self.client_id = client_id
        self._secret = client_secret
        self.authority = authority.rstrip("/")
        self.scopes = [s for s in scopes if s.lower() not in RESERVED_SCOPES]
        self._session = session
        host = (urlsplit(self.authority).hostname or "").lower()
        self.microsoft_host = host in MICROSOFT_AUTHORITY_HOSTS
        self._validate_authority = validate_authority and self.microsoft_host
        self._instance_discovery = None if self.microsoft_host else False
        self._flow_app: msal.ConfidentialClientApplication | None = None
        self._lock = threading.Lock()

    @property
    def session(self) -> requests.Session:
        return self._session

    def __repr__(self) -> str:  # never show the secret
        return f"TokenBroker(client_id={self.client_id!r}, authority={self.authority!r})"

    def new_app(
        self,
        cache: msal.SerializableTokenCache | None = None,
        *,
        http_client: Any | None = None,
    ) -> msal.ConfidentialClientApplication:
        """An msal application bound to ``cache``; it fetches the authority's metadata once.
        ``http_client`` (default: the broker's session) carries msal's requests."""
        try:
            return msal.ConfidentialClientApplication(
                self.client_id,
                client_credential=self._secret,
                authority=self.authority,
                validate_authority=self._validate_authority,
                instance_discovery=self._instance_discovery,
                http_client=http_client or self._session,
                token_cache=cache,
            )
        except (*_TRANSPORT_FAILURES, ValueError) as exc:
            if isinstance(exc, requests.exceptions.SSLError) and certificate_refused(exc):
                raise _untrusted(self.authority) from exc
            raise IdentityUnavailable(
                "cannot read the Microsoft identity platform's configuration at "
                f"{self.authority} ({type(exc).__name__}): {_CHECK_AUTHORITY}",
                code="authority_unreachable",
            ) from exc

    def start_auth_code_flow(self, redirect_uri: str, **options: Any) -> dict[str, Any]:
        """msal's flow dict (state, PKCE S256 verifier, nonce, ``auth_uri`` for the browser).

        Keep it server-side (sealed) until the redirect comes back; ``options`` pass through
        (``login_hint``, ``prompt``, ``domain_hint``).
        """
        with self._lock:
            if self._flow_app is None:
                self._flow_app = self.new_app()
            app = self._flow_app
        return app.initiate_auth_code_flow(self.scopes, redirect_uri=redirect_uri, **options)

    def finish_auth_code_flow(
        self, flow: Mapping[str, Any], auth_response: Mapping[str, Any]
    ) -> ConnectedIdentity:
        """Redeem the redirect's query parameters against the flow started earlier."""
        if auth_response.get("error"):
            if auth_response.get("state") != flow.get("state"):
                raise _state_mismatch()
            raise error_from_authorization_response(auth_response)
        cache = msal.SerializableTokenCache()
        app = self.new_app(cache)
        try:
            result = app.acquire_token_by_auth_code_flow(dict(flow), dict(auth_response))
        except ValueError as exc:
            raise _state_mismatch() from exc
        except RuntimeError as exc:  # nonce mismatch (msal raises RuntimeError subclasses)
            raise NeedsReconnect(
                "The sign-in answer does not belong to this sign-in (nonce mismatch): "
                "start connecting again.",
                code="nonce_mismatch",
            ) from exc
        except _TRANSPORT_FAILURES as exc:
            raise _unreachable(exc, self.authority) from exc
        return _identity(result, cache)

    def redeem_code(
        self, code: str, *, code_verifier: str, redirect_uri: str, nonce: str | None = None
    ) -> ConnectedIdentity:
        """Redeem a code whose flow someone else started (the Odoo addon, which seals the code
        and its PKCE verifier to our key); ``redirect_uri`` must be the one used to obtain it.
        """
        cache = msal.SerializableTokenCache()
        app = self.new_app(cache)
        try:
            result = app.acquire_token_by_authorization_code(
                code,
                self.scopes,
                redirect_uri=redirect_uri,
                nonce=nonce,
                data={"code_verifier": code_verifier},
            )
        except ValueError as exc:  # a non-JSON answer from the token endpoint
            raise _unreachable(exc, self.authority) from exc
        except RuntimeError as exc:
            raise NeedsReconnect(
                "The sign-in answer does not belong to this sign-in (nonce mismatch): "
                "start connecting again.",
                code="nonce_mismatch",
            ) from exc
        except _TRANSPORT_FAILURES as exc:
            raise _unreachable(exc, self.authority) from exc
        return _identity(result, cache)


def _state_mismatch() -> NeedsReconnect:
    return NeedsReconnect(
        "The sign-in answer does not belong to this sign-in (state mismatch, or it was used "
        "already): start connecting again.",
        code="state_mismatch",
    )


def _unreachable(exc: BaseException, authority: str) -> IdentityUnavailable:
    if isinstance(exc, requests.exceptions.SSLError) and certificate_refused(exc):
        return _untrusted(authority)
    return IdentityUnavailable(
        f"the Microsoft identity platform at {authority} could not be reached or failed "
        f"({type(exc).__name__}): {_CHECK_AUTHORITY}",
        code="identity_unreachable",
    )


def _untrusted(authority: str) -> IdentityUnavailable:
    """The configured CA bundle does not vouch for the authority: said as check-config says
    it (the setting to fix), and waited out like any unreachable authority meanwhile."""
    return IdentityUnavailable(tls_untrusted(authority), code="tls_verification_failed")


def _identity(result: Mapping[str, Any], cache: msal.SerializableTokenCache) -> ConnectedIdentity:
    if "error" in result:
        raise error_from_msal(result)
    if "access_token" not in result:
        raise MalformedResponse("the token endpoint answered without an access token")
    claims = result.get("id_token_claims") or {}
    address = claims.get("preferred_username") or claims.get("email") or claims.get("upn")
    if not address:
        raise MalformedResponse("the ID token names no user (no preferred_username or email)")
    return ConnectedIdentity(
        address=str(address),
        display_name=str(claims.get("name") or ""),
        tenant_id=str(claims.get("tid") or ""),
        object_id=str(claims.get("oid") or ""),
        token_cache=cache.serialize(),
    )


# --- tokens for one account -----------------------------------------------------------------


class AccountTokens:
    """Access tokens for one connected account; refresh-token rotation goes to ``on_change``.

    ``on_change`` receives the serialised cache whenever msal changed it (a refreshed access
    token, a rotated refresh token, a removed one); the caller seals and stores it. One lock
    per account: four concurrent Graph requests must not refresh (and rotate) four times.
    """

    def __init__(
        self,
        broker: TokenBroker,
        serialized_cache: str,
        on_change: Callable[[str], None],
    ) -> None:
        self._broker = broker
        self._cache = msal.SerializableTokenCache()
        if serialized_cache:
            self._cache.deserialize(serialized_cache)
        self._on_change = on_change
        self._app: msal.ConfidentialClientApplication | None = None
        self._http = CountingHttpClient(broker.session)
        self._lock = threading.Lock()

    @property
    def token_requests(self) -> int:
        """Requests this account sent to the token endpoint so far (refreshes, mostly)."""
        return self._http.token_requests

    def access_token(self, force_refresh: bool = False) -> str:
        with self._lock:
            try:
                cached = None if force_refresh else self._cached_token()
                if cached is not None:
                    return cached
                result = self._acquire(force_refresh)
            finally:
                self._persist()
        if "access_token" in result:
            return str(result["access_token"])
        raise error_from_msal(result)

    def _cached_token(self, now: float | None = None) -> str | None:
        """A cached access token for our scopes, whatever form the response named them in,
        with more than `REFRESH_MARGIN_SECONDS` left (and not past msal's ``refresh_on``);
        None leaves the decision (refresh, or the reason there is none) to msal."""
        accounts = list(self._cache.search(msal.TokenCache.CredentialType.ACCOUNT))
        if len(accounts) != 1:
            return None
        wanted = {scope_key(s) for s in self._broker.scopes}
        now = time.time() if now is None else now
        best: tuple[float, str] | None = None
        for entry in self._cache.search(
            msal.TokenCache.CredentialType.ACCESS_TOKEN,
            query={
                "client_id": self._broker.client_id,
                "home_account_id": accounts[0].get("home_account_id"),
            },
        ):
            if "key_id" in entry or "ext_cache_key" in entry:
                continue  # bound to a key or a path: not a plain bearer token for us
            granted = {scope_key(s) for s in str(entry.get("target", "")).split()}
            left = int(entry.get("expires_on", 0)) - now
            if not wanted <= granted or left < REFRESH_MARGIN_SECONDS:
                continue
            if "refresh_on" in entry and int(entry["refresh_on"]) < now:
                continue
            if best is None or left > best[0]:
                best = (left, str(entry["secret"]))
        return best[1] if best else None

    def _acquire(self, force_refresh: bool) -> Mapping[str, Any]:
        if self._app is None:
            self._app = self._broker.new_app(self._cache, http_client=self._http)
        try:
            accounts = self._app.get_accounts()
            if not accounts:
                raise NeedsReconnect(
                    "No signed-in account in the stored sign-in: reconnect it.", code="no_account"
                )
            if len(accounts) > 1:
                raise NeedsReconnect(
                    f"The stored sign-in holds {len(accounts)} accounts, expected one: "
                    "reconnect it.",
                    code="ambiguous_account",
                )
            result = self._app.acquire_token_silent_with_error(
                self._broker.scopes, account=accounts[0], force_refresh=force_refresh
            )
        except (*_TRANSPORT_FAILURES, ValueError) as exc:
            raise _unreachable(exc, self._broker.authority) from exc
        if result is None:
            raise NeedsReconnect(
                "The stored sign-in has no refresh token for these permissions: reconnect it.",
                code="no_refresh_token",
            )
        return result

    def _persist(self) -> None:
        if not self._cache.has_state_changed:
            return
        blob = self._cache.serialize()  # resets has_state_changed
        try:
            self._on_change(blob)
        except BaseException:
            self._cache.has_state_changed = True  # try again after the next token
            raise
