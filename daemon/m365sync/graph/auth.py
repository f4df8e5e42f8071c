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

Why ``instance_discovery=False`` off Microsoft hosts: msal otherwise asks
``login.microsoftonline.com/common/discovery/instance`` about any authority it does not know,
which a national cloud proxy or our emulator cannot answer.
"""

from __future__ import annotations

import logging
import threading
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
from m365sync.graph.transport import tls_untrusted

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

    def __repr__(self) -> str:  # never show the secret
        return f"TokenBroker(client_id={self.client_id!r}, authority={self.authority!r})"

    def new_app(
        self, cache: msal.SerializableTokenCache | None = None
    ) -> msal.ConfidentialClientApplication:
        """An msal application bound to ``cache``; it fetches the authority's metadata once."""
        try:
            return msal.ConfidentialClientApplication(
                self.client_id,
                client_credential=self._secret,
                authority=self.authority,
                validate_authority=self._validate_authority,
                instance_discovery=self._instance_discovery,
                http_client=self._session,
                token_cache=cache,
            )
        except requests.exceptions.SSLError as exc:
            raise _untrusted(self.authority) from exc
        except (*_TRANSPORT_FAILURES, ValueError) as exc:
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
    if isinstance(exc, requests.exceptions.SSLError):
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
        self._lock = threading.Lock()

    def access_token(self, force_refresh: bool = False) -> str:
        with self._lock:
            try:
                result = self._acquire(force_refresh)
            finally:
                self._persist()
        if "access_token" in result:
            return str(result["access_token"])
        raise error_from_msal(result)

    def _acquire(self, force_refresh: bool) -> Mapping[str, Any]:
        if self._app is None:
            self._app = self._broker.new_app(self._cache)
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
