"""msal wrapper: connect, silent tokens, cache persistence, and every error mapped with words.

The identity platform is faked with `responses` on a non-Microsoft authority (so msal does no
instance discovery): its openid-configuration and token endpoint.
"""

from __future__ import annotations

import base64
import json
import time
from urllib.parse import parse_qs

import pytest
import requests
import responses

from m365sync.errors import (
    BadClientCredentials,
    GraphError,
    IdentityUnavailable,
    InsufficientPermissions,
    NeedsReconnect,
    Transient,
)
from m365sync.graph.auth import (
    AccountTokens,
    TokenBroker,
    error_code,
    error_from_authorization_response,
    error_from_msal,
)
from m365sync.graph.transport import make_session

AUTHORITY = "https://login.emulator.test/common"
TOKEN_URL = "https://login.emulator.test/common/oauth2/v2.0/token"
CONFIG_URL = "https://login.emulator.test/common/v2.0/.well-known/openid-configuration"
CLIENT_ID = "11111111-2222-3333-4444-555555555555"
TID = "72f988bf-86f1-41af-91ab-2d7cd011db47"
OID = "00000000-0000-0000-66f3-3332eca7ea81"
REDIRECT = "https://crm.example.test/microsoft365/callback"


def b64(data: dict) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


def id_token(nonce: str | None = None) -> str:
    claims = {
        "iss": f"https://login.emulator.test/{TID}/v2.0",
        "aud": CLIENT_ID,
        "exp": int(time.time()) + 3600,
        "iat": int(time.time()),
        "sub": "subject",
        "tid": TID,
        "oid": OID,
        "preferred_username": "MeganB@contoso.com",
        "name": "Megan Bowen",
    }
    if nonce:
        claims["nonce"] = nonce
    return f"{b64({'alg': 'none', 'typ': 'JWT'})}.{b64(claims)}."


def token_success(nonce: str | None = None, access: str = "at-1", refresh: str = "rt-1") -> dict:
    return {
        "token_type": "Bearer",
        "scope": "Mail.Read User.Read",
        "expires_in": 3599,
        "ext_expires_in": 3599,
        "access_token": access,
        "refresh_token": refresh,
        "id_token": id_token(nonce),
        "client_info": b64({"uid": OID, "utid": TID}),
    }


def aad_error(error: str, code: int, suberror: str | None = None) -> dict:
    body = {
        "error": error,
        "error_description": f"AADSTS{code}: Something happened.\r\nTrace ID: t\r\n"
        "Correlation ID: c\r\nTimestamp: 2024-05-01 10:00:00Z",
        "error_codes": [code],
        "timestamp": "2024-05-01 10:00:00Z",
        "trace_id": "t",
        "correlation_id": "c",
        "error_uri": f"https://login.microsoftonline.com/error?code={code}",
    }
    if suberror:
        body["suberror"] = suberror
    return body


@pytest.fixture
def idp():
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        mock.get(
            CONFIG_URL,
            json={
                "issuer": "https://login.emulator.test/{tenantid}/v2.0",
                "authorization_endpoint": "https://login.emulator.test/common/oauth2/v2.0/authorize",
                "token_endpoint": TOKEN_URL,
            },
        )
        yield mock


def broker(scopes=("User.Read", "Mail.Read", "offline_access", "openid", "profile")):
    return TokenBroker(
        CLIENT_ID,
        "client-secret-value",
        AUTHORITY,
        list(scopes),
        session=make_session(None, user_agent="t"),
        validate_authority=True,
    )


def connect(idp, **token_overrides) -> tuple[TokenBroker, str]:
    """Run a whole connect against the fake IdP; returns the broker and the cache."""
    b = broker()
    flow = b.start_auth_code_flow(REDIRECT)
    idp.post(TOKEN_URL, json=token_success(nonce=_nonce_hash(flow["nonce"]), **token_overrides))
    identity = b.finish_auth_code_flow(flow, {"code": "auth-code", "state": flow["state"]})
    return b, identity.token_cache


def _nonce_hash(nonce: str) -> str:
    import hashlib

    return hashlib.sha256(nonce.encode("ascii")).hexdigest()


# --- the broker ---------------------------------------------------------------------------


def test_reserved_scopes_are_left_to_msal():
    assert broker().scopes == ["User.Read", "Mail.Read"]


def test_instance_discovery_only_for_microsoft_hosts():
    assert broker().microsoft_host is False
    cloud = TokenBroker(
        CLIENT_ID,
        "s",
        "https://login.microsoftonline.us/contoso.onmicrosoft.com",
        ["User.Read"],
        session=make_session(None, user_agent="t"),
    )
    assert cloud.microsoft_host is True


def test_repr_hides_the_secret():
    assert "client-secret-value" not in repr(broker())


def test_start_flow_uses_pkce_s256_and_state(idp):
    flow = broker().start_auth_code_flow(REDIRECT)
    assert flow["state"] and flow["code_verifier"] and flow["nonce"]
    query = parse_qs(flow["auth_uri"].split("?", 1)[1])
    assert query["code_challenge_method"] == ["S256"]
    assert query["state"] == [flow["state"]]
    assert query["redirect_uri"] == [REDIRECT]
    assert set(query["scope"][0].split()) >= {"User.Read", "Mail.Read", "offline_access"}
    assert not any("login.microsoftonline.com" in c.request.url for c in idp.calls)


def test_finish_flow_returns_the_identity_and_cache(idp):
    b, cache = connect(idp)
    token_call = next(c for c in idp.calls if c.request.url == TOKEN_URL)
    form = parse_qs(token_call.request.body)
    assert form["grant_type"] == ["authorization_code"]
    assert form["code"] == ["auth-code"]
    assert form["code_verifier"]
    assert "rt-1" in cache
    flow = b.start_auth_code_flow(REDIRECT)
    identity = None
    idp.post(TOKEN_URL, json=token_success(nonce=_nonce_hash(flow["nonce"])))
    identity = b.finish_auth_code_flow(flow, {"code": "c2", "state": flow["state"]})
    assert identity.address == "MeganB@contoso.com"
    assert identity.display_name == "Megan Bowen"
    assert identity.tenant_id == TID
    assert identity.object_id == OID
    assert "rt-1" not in repr(identity)


@pytest.mark.parametrize(
    ("error", "expected", "words"),
    [
        ("access_denied", NeedsReconnect, "declined"),
        ("consent_required", InsufficientPermissions, "Consent"),
        ("server_error", IdentityUnavailable, "identity platform failed for now"),
        ("invalid_request", GraphError, "refused"),
    ],
)
def test_authorization_errors_come_back_in_words(idp, error, expected, words):
    b = broker()
    flow = b.start_auth_code_flow(REDIRECT)
    response = {
        "error": error,
        "error_description": "AADSTS65004: User declined.",
        "state": flow["state"],
    }
    with pytest.raises(expected, match=words) as info:
        b.finish_auth_code_flow(flow, response)
    assert type(info.value) is expected


def test_state_mismatch_is_refused(idp):
    b = broker()
    flow = b.start_auth_code_flow(REDIRECT)
    with pytest.raises(NeedsReconnect, match="state mismatch"):
        b.finish_auth_code_flow(flow, {"code": "c", "state": "forged"})
    with pytest.raises(NeedsReconnect, match="state mismatch"):
        b.finish_auth_code_flow(flow, {"error": "access_denied", "state": "forged"})


def test_nonce_mismatch_is_refused(idp):
    b = broker()
    flow = b.start_auth_code_flow(REDIRECT)
    idp.post(TOKEN_URL, json=token_success(nonce="someone-elses"))
    with pytest.raises(NeedsReconnect, match="nonce"):
        b.finish_auth_code_flow(flow, {"code": "c", "state": flow["state"]})


@pytest.mark.parametrize(
    ("status", "body", "expected", "code"),
    [
        (400, aad_error("invalid_grant", 70000), NeedsReconnect, "invalid_grant/AADSTS70000"),
        (
            401,
            aad_error("invalid_client", 7000215),
            BadClientCredentials,
            "invalid_client/AADSTS7000215",
        ),
        (
            400,
            aad_error("invalid_scope", 70011),
            InsufficientPermissions,
            "invalid_scope/AADSTS70011",
        ),
    ],
)
def test_code_redemption_errors(idp, status, body, expected, code):
    b = broker()
    flow = b.start_auth_code_flow(REDIRECT)
    idp.post(TOKEN_URL, status=status, json=body)
    with pytest.raises(expected) as info:
        b.finish_auth_code_flow(flow, {"code": "c", "state": flow["state"]})
    assert info.value.code == code


def test_token_endpoint_down_is_transient(idp):
    b = broker()
    flow = b.start_auth_code_flow(REDIRECT)
    idp.post(TOKEN_URL, status=503, body="<html>down</html>", content_type="text/html")
    with pytest.raises(Transient):
        b.finish_auth_code_flow(flow, {"code": "c", "state": flow["state"]})


def test_unreachable_authority_is_transient():
    with responses.RequestsMock() as mock:
        mock.get(CONFIG_URL, status=404, body="not here")
        with pytest.raises(Transient, match="authority"):
            broker().start_auth_code_flow(REDIRECT)


def test_redeem_code_sealed_by_the_addon(idp):
    idp.post(TOKEN_URL, json=token_success(nonce="n-1"))
    identity = broker().redeem_code(
        "code-from-odoo", code_verifier="v" * 43, redirect_uri=REDIRECT, nonce="n-1"
    )
    assert identity.address == "MeganB@contoso.com"
    form = parse_qs(next(c for c in idp.calls if c.request.url == TOKEN_URL).request.body)
    assert form["code_verifier"] == ["v" * 43]
    assert form["redirect_uri"] == [REDIRECT]


# --- AccountTokens ------------------------------------------------------------------------


def test_cached_token_then_refresh_with_rotation_persisted(idp):
    b, cache = connect(idp)
    saved: list[str] = []
    tokens = AccountTokens(b, cache, saved.append)
    assert tokens.access_token() == "at-1"
    assert saved == []  # nothing changed: no write
    idp.post(TOKEN_URL, json=token_success(access="at-2", refresh="rt-2"))
    assert tokens.access_token(force_refresh=True) == "at-2"
    assert len(saved) == 1 and "rt-2" in saved[0] and "rt-1" not in saved[0]
    refresh_call = [c for c in idp.calls if c.request.url == TOKEN_URL][-1]
    assert parse_qs(refresh_call.request.body)["refresh_token"] == ["rt-1"]


@pytest.mark.parametrize(
    ("body", "code"),
    [
        (aad_error("invalid_grant", 50173), "invalid_grant/AADSTS50173"),
        (aad_error("invalid_grant", 700082), "invalid_grant/AADSTS700082"),
        (aad_error("invalid_grant", 70008), "invalid_grant/AADSTS70008"),
        (aad_error("invalid_grant", 65001, "consent_required"), "invalid_grant/AADSTS65001"),
        (aad_error("interaction_required", 50076), "interaction_required/AADSTS50076"),
    ],
)
def test_revoked_or_expired_grants_need_reconnect(idp, body, code):
    b, cache = connect(idp)
    idp.post(TOKEN_URL, status=400, json=body)
    tokens = AccountTokens(b, cache, lambda blob: None)
    with pytest.raises(NeedsReconnect) as info:
        tokens.access_token(force_refresh=True)
    assert info.value.code == code
    assert "Trace ID" not in str(info.value)


def test_expired_client_secret_is_bad_client_credentials(idp):
    b, cache = connect(idp)
    idp.post(TOKEN_URL, status=401, json=aad_error("invalid_client", 7000215))
    with pytest.raises(BadClientCredentials) as info:
        AccountTokens(b, cache, lambda blob: None).access_token(force_refresh=True)
    assert info.value.code == "invalid_client/AADSTS7000215"


def test_identity_platform_5xx_or_network_is_transient(idp):
    b, cache = connect(idp)
    idp.post(TOKEN_URL, status=500, body="oops")
    with pytest.raises(Transient):
        AccountTokens(b, cache, lambda blob: None).access_token(force_refresh=True)
    b2, cache2 = connect(idp)
    idp.replace(responses.POST, TOKEN_URL, body=requests.ConnectionError("reset"))
    with pytest.raises(Transient):
        AccountTokens(b2, cache2, lambda blob: None).access_token(force_refresh=True)


def test_empty_cache_needs_reconnect(idp):
    with pytest.raises(NeedsReconnect) as info:
        AccountTokens(broker(), "", lambda blob: None).access_token()
    assert info.value.code == "no_account"


def test_cache_without_refresh_token_needs_reconnect(idp):
    b, cache = connect(idp)
    data = json.loads(cache)
    data["RefreshToken"] = {}
    with pytest.raises(NeedsReconnect) as info:
        AccountTokens(b, json.dumps(data), lambda blob: None).access_token(force_refresh=True)
    assert info.value.code == "no_refresh_token"


def test_failed_persist_is_retried_on_the_next_token(idp):
    b, cache = connect(idp)
    idp.post(TOKEN_URL, json=token_success(access="at-2", refresh="rt-2"))
    attempts: list[str] = []

    def flaky(blob: str) -> None:
        attempts.append(blob)
        if len(attempts) == 1:
            raise OSError("store down")

    tokens = AccountTokens(b, cache, flaky)
    with pytest.raises(OSError):
        tokens.access_token(force_refresh=True)
    assert tokens.access_token() == "at-2"
    assert len(attempts) == 2 and "rt-2" in attempts[1]


# --- pure mapping -------------------------------------------------------------------------


def test_error_code_format():
    assert error_code({"error": "invalid_grant", "error_codes": [50173]}) == (
        "invalid_grant/AADSTS50173"
    )
    assert error_code({"error": "invalid_grant"}) == "invalid_grant"
    assert error_code({}) == "unknown_error"


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        ("invalid_grant", NeedsReconnect),
        ("INVALID_GRANT", NeedsReconnect),
        ("invalid_client", BadClientCredentials),
        ("temporarily_unavailable", IdentityUnavailable),  # a Transient, named for what failed
        ("unauthorized_client", GraphError),
        ("", GraphError),
    ],
)
def test_error_from_msal(error, expected):
    assert type(error_from_msal({"error": error})) is expected


def test_authorization_response_mapping_is_pure():
    assert isinstance(error_from_authorization_response({"error": "access_denied"}), NeedsReconnect)
