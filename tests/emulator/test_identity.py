"""The emulated identity platform over real HTTPS: by hand with requests, and with real msal."""

from __future__ import annotations

import base64
import json
import re
import secrets
import time
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import msal
import pytest
from jwcrypto import jwk, jwt

from m365sync.emulator.identity import (
    DEFAULT_SCOPES,
    DEMO_CLIENT_ID,
    DEMO_CLIENT_SECRET,
    GRAPH_WWW_AUTHENTICATE,
    pkce_challenge,
)
from m365sync.emulator.mailbox import Mailbox
from m365sync.emulator.server import Emulator, EmulatorSession

SCOPE = "openid profile email offline_access User.Read Mail.Read Mail.Send Calendars.ReadWrite"


def _query(location: str) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(urlsplit(location).query).items()}


def _b64json(part: str) -> dict[str, Any]:
    return json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))


def authorize(http: EmulatorSession, emulator: Emulator, **overrides: str) -> Any:
    params = {
        "client_id": DEMO_CLIENT_ID,
        "response_type": "code",
        "redirect_uri": "http://localhost:8069/",
        "scope": SCOPE,
        "state": "st-123",
        "nonce": "n-456",
        "code_challenge": pkce_challenge("v" * 50),
        "code_challenge_method": "S256",
    }
    params.update(overrides)
    params = {k: v for k, v in params.items() if v is not None}
    return http.get(
        f"/{emulator.tenant_id}/oauth2/v2.0/authorize", params=params, allow_redirects=False
    )


def get_code(http: EmulatorSession, emulator: Emulator, **overrides: str) -> str:
    response = authorize(http, emulator, **overrides)
    assert response.status_code == 302, response.text
    return _query(response.headers["Location"])["code"]


def token(http: EmulatorSession, emulator: Emulator, tenant: str | None = None, **form: str):
    data = {"client_id": DEMO_CLIENT_ID, "client_secret": DEMO_CLIENT_SECRET, **form}
    data = {k: v for k, v in data.items() if v is not None}
    return http.post(f"/{tenant or emulator.tenant_id}/oauth2/v2.0/token", data=data)


def redeem(http: EmulatorSession, emulator: Emulator, code: str, **form: str):
    fields = {
        "grant_type": "authorization_code",
        "code": code,
        "redirect_uri": "http://localhost:8069/",
        "code_verifier": "v" * 50,
        "client_info": "1",
        **form,
    }
    return token(http, emulator, **fields)


def assert_aad_error(response: Any, status: int, error: str, code: int) -> dict[str, Any]:
    """Microsoft's token-endpoint error shape, field by field."""
    assert response.status_code == status, response.text
    body = response.json()
    assert body["error"] == error
    assert body["error_codes"] == [code]
    assert re.fullmatch(
        rf"AADSTS{code}: .+\r\nTrace ID: [0-9a-f-]{{36}}\r\nCorrelation ID: [0-9a-f-]{{36}}"
        r"\r\nTimestamp: \d{4}-\d\d-\d\d \d\d:\d\d:\d\dZ",
        body["error_description"],
        flags=re.S,
    )
    assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\dZ", body["timestamp"])
    assert body["trace_id"] and body["correlation_id"]
    assert body["error_uri"].endswith(f"/error?code={code}")
    return body


# --- discovery ------------------------------------------------------------------------------


def test_openid_configuration_for_the_tenant(http, emulator):
    config = http.get(f"/{emulator.tenant_id}/v2.0/.well-known/openid-configuration").json()
    assert config["issuer"] == f"{emulator.authority}/v2.0"
    assert config["authorization_endpoint"] == f"{emulator.authority}/oauth2/v2.0/authorize"
    assert config["token_endpoint"] == f"{emulator.authority}/oauth2/v2.0/token"
    assert config["jwks_uri"] == f"{emulator.authority}/discovery/v2.0/keys"
    assert "code" in config["response_types_supported"]
    assert config["id_token_signing_alg_values_supported"] == ["RS256"]
    assert {"openid", "offline_access"} <= set(config["scopes_supported"])
    assert config["subject_types_supported"] == ["pairwise"]


@pytest.mark.parametrize("alias", ["common", "organizations", "consumers"])
def test_openid_configuration_for_aliases_says_tenantid_literally(http, emulator, alias):
    config = http.get(f"/{alias}/v2.0/.well-known/openid-configuration").json()
    assert config["issuer"] == emulator.base_url + "/{tenantid}/v2.0"
    assert config["token_endpoint"] == f"{emulator.base_url}/{alias}/oauth2/v2.0/token"


def test_unknown_tenant_is_invalid_tenant(http):
    response = http.get("/not-a-tenant/v2.0/.well-known/openid-configuration")
    assert_aad_error(response, 400, "invalid_tenant", 90002)


def test_id_token_verifies_against_published_jwks(http, emulator):
    body = redeem(http, emulator, get_code(http, emulator)).json()
    keys = jwk.JWKSet.from_json(http.get(f"/{emulator.tenant_id}/discovery/v2.0/keys").text)
    verified = jwt.JWT(jwt=body["id_token"], key=keys, algs=["RS256"])
    claims = json.loads(verified.claims)
    assert claims["aud"] == DEMO_CLIENT_ID
    assert claims["iss"] == f"{emulator.authority}/v2.0"
    assert claims["nonce"] == "n-456"
    assert claims["ver"] == "2.0"
    assert claims["tid"] == emulator.tenant_id
    assert claims["oid"] == emulator.mailbox.user["id"]
    assert claims["preferred_username"] == emulator.mailbox.user["userPrincipalName"]
    assert claims["name"] == emulator.mailbox.user["displayName"]
    assert claims["email"] == emulator.mailbox.user["mail"]
    assert claims["nbf"] <= claims["iat"] < claims["exp"]
    assert claims["sub"]


# --- authorize ------------------------------------------------------------------------------


def test_authorize_redirects_with_code_state_and_session_state(http, emulator):
    response = authorize(http, emulator, client_info="1")
    assert response.status_code == 302
    location = response.headers["Location"]
    assert location.startswith("http://localhost:8069/?")
    query = _query(location)
    assert query["state"] == "st-123"
    assert query["code"] and query["session_state"]
    assert _b64json(query["client_info"]) == {
        "uid": emulator.mailbox.user["id"],
        "utid": emulator.tenant_id,
    }


def test_unknown_client_gets_an_html_page_not_a_redirect(http, emulator):
    response = authorize(http, emulator, client_id="11111111-1111-1111-1111-111111111111")
    assert response.status_code == 400
    assert "Location" not in response.headers
    assert response.headers["Content-Type"].startswith("text/html")
    assert "AADSTS700016" in response.text


@pytest.mark.parametrize(
    "redirect_uri",
    [
        "https://evil.example/callback",
        "http://localhost:8069/other",  # loopback ignores the port, never the path
        "https://localhost:8443/auth/microsoft-apis/get-access-token",  # https: exact only
        "http://127.0.0.1:8069/",  # a different loopback host than the registered one
    ],
)
def test_unregistered_redirect_uri_gets_an_html_page(http, emulator, redirect_uri):
    response = authorize(http, emulator, redirect_uri=redirect_uri)
    assert response.status_code == 400
    assert "Location" not in response.headers
    assert "AADSTS50011" in response.text


@pytest.mark.parametrize(
    "redirect_uri",
    [
        "http://localhost",
        "http://localhost:1234",
        "http://localhost:8069/",
        "https://localhost/auth/microsoft-apis/get-access-token",
    ],
)
def test_registered_redirect_uris(http, emulator, redirect_uri):
    response = authorize(http, emulator, redirect_uri=redirect_uri)
    assert response.status_code == 302
    assert response.headers["Location"].startswith(redirect_uri)


def test_registered_app_for_tests(http, emulator):
    emulator.identity.register_app("app-2", "s3cret", ["https://crm.example/cb"])
    response = authorize(http, emulator, client_id="app-2", redirect_uri="https://crm.example/cb")
    code = _query(response.headers["Location"])["code"]
    ok = token(
        http,
        emulator,
        client_id="app-2",
        client_secret="s3cret",
        grant_type="authorization_code",
        code=code,
        redirect_uri="https://crm.example/cb",
        code_verifier="v" * 50,
    )
    assert ok.status_code == 200


@pytest.mark.parametrize(
    ("overrides", "error", "code"),
    [
        ({"code_challenge": None, "code_challenge_method": None}, "invalid_request", "9002325"),
        ({"code_challenge_method": "plain"}, "invalid_request", "9002325"),
        ({"code_challenge": "short"}, "invalid_request", "501491"),
        ({"response_type": "token"}, "unsupported_response_type", "700054"),
        ({"scope": "openid Mail.Explode"}, "invalid_scope", "70011"),
    ],
)
def test_bad_authorize_requests_redirect_with_an_error(http, emulator, overrides, error, code):
    response = authorize(http, emulator, **overrides)
    assert response.status_code == 302
    query = _query(response.headers["Location"])
    assert query["error"] == error
    assert query["error_description"].startswith(f"AADSTS{code}:")
    assert query["state"] == "st-123"
    assert "code" not in query


def test_deny_next_consent_applies_once(http, emulator):
    emulator.identity.deny_next_consent()
    query = _query(authorize(http, emulator).headers["Location"])
    assert query["error"] == "access_denied"
    assert query["error_description"].startswith("AADSTS65004: User declined to consent")
    assert query["state"] == "st-123"
    assert "code" in _query(authorize(http, emulator).headers["Location"])


def test_form_post_response_mode(http, emulator):
    response = authorize(http, emulator, response_mode="form_post")
    assert response.status_code == 200
    assert 'action="http://localhost:8069/"' in response.text
    assert 'name="code"' in response.text and 'value="st-123"' in response.text


# --- token: authorization code ---------------------------------------------------------------


def test_code_redemption_returns_microsofts_fields(http, emulator):
    body = redeem(http, emulator, get_code(http, emulator)).json()
    assert body["token_type"] == "Bearer"
    assert body["scope"] == "User.Read Mail.Read Mail.Send Calendars.ReadWrite profile openid email"
    assert body["expires_in"] == 3599
    assert body["ext_expires_in"] == 3599
    assert body["access_token"].count(".") == 2
    assert body["refresh_token"]
    assert body["id_token"].count(".") == 2
    assert _b64json(body["client_info"]) == {
        "uid": emulator.mailbox.user["id"],
        "utid": emulator.tenant_id,
    }
    user, scopes = emulator.identity.authenticate(f"Bearer {body['access_token']}")
    assert user["id"] == emulator.mailbox.user["id"]
    assert scopes == {"User.Read", "Mail.Read", "Mail.Send", "Calendars.ReadWrite"}


def test_redemption_through_common_authority(http, emulator):
    code = get_code(http, emulator)
    assert token(
        http,
        emulator,
        tenant="common",
        grant_type="authorization_code",
        code=code,
        redirect_uri="http://localhost:8069/",
        code_verifier="v" * 50,
    ).ok


def test_no_refresh_token_without_offline_access_and_no_id_token_without_openid(http, emulator):
    code = get_code(http, emulator, scope="Mail.Read")
    body = redeem(http, emulator, code).json()
    assert "refresh_token" not in body
    assert "id_token" not in body
    assert body["scope"] == "Mail.Read"


def test_code_is_single_use(http, emulator):
    code = get_code(http, emulator)
    assert redeem(http, emulator, code).status_code == 200
    assert_aad_error(redeem(http, emulator, code), 400, "invalid_grant", 54005)


def test_expired_code(http, emulator):
    emulator.identity.code_lifetime = 0
    code = get_code(http, emulator)
    assert_aad_error(redeem(http, emulator, code), 400, "invalid_grant", 70008)


def test_pkce_verifier_must_match(http, emulator):
    code = get_code(http, emulator)
    assert_aad_error(
        redeem(http, emulator, code, code_verifier="w" * 50), 400, "invalid_grant", 501481
    )
    # a failed redemption does not burn the code
    assert redeem(http, emulator, code).status_code == 200


def test_redirect_uri_must_match_the_authorize_request(http, emulator):
    code = get_code(http, emulator)
    response = redeem(http, emulator, code, redirect_uri="http://localhost:9999/")
    assert_aad_error(response, 400, "invalid_grant", 50011)


def test_wrong_client_secret_is_401_invalid_client(http, emulator):
    code = get_code(http, emulator)
    response = redeem(http, emulator, code, client_secret="wrong")
    body = assert_aad_error(response, 401, "invalid_client", 7000215)
    assert "client secret value, not the client secret ID" in body["error_description"]


def test_expired_client_secret(http, emulator):
    emulator.identity.expire_client_secret()
    response = redeem(http, emulator, get_code(http, emulator))
    assert_aad_error(response, 401, "invalid_client", 7000222)


def test_unsupported_grant_type(http, emulator):
    response = token(http, emulator, grant_type="password", username="x", password="y")
    assert_aad_error(response, 400, "unsupported_grant_type", 70003)


def test_client_secret_basic_is_accepted(http, emulator):
    code = get_code(http, emulator)
    response = http.post(
        f"/{emulator.tenant_id}/oauth2/v2.0/token",
        auth=(DEMO_CLIENT_ID, DEMO_CLIENT_SECRET),
        data={
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": "http://localhost:8069/",
            "code_verifier": "v" * 50,
        },
    )
    assert response.status_code == 200


# --- token: refresh ----------------------------------------------------------------------------


def _refresh(http, emulator, refresh_token: str, scope: str = SCOPE):
    return token(
        http, emulator, grant_type="refresh_token", refresh_token=refresh_token, scope=scope
    )


def test_refresh_rotates_and_the_old_token_still_works(http, emulator):
    first = redeem(http, emulator, get_code(http, emulator)).json()["refresh_token"]
    second = _refresh(http, emulator, first).json()
    assert second["refresh_token"] != first
    assert second["access_token"]
    # Entra: refresh tokens "aren't revoked when used"
    third = _refresh(http, emulator, first)
    assert third.status_code == 200
    assert third.json()["refresh_token"] not in {first, second["refresh_token"]}


def test_refresh_answers_with_every_consented_scope(http, emulator):
    first = redeem(http, emulator, get_code(http, emulator)).json()["refresh_token"]
    body = _refresh(http, emulator, first, scope="Mail.Read offline_access").json()
    assert body["scope"].split()[:4] == [
        "User.Read",
        "Mail.Read",
        "Mail.Send",
        "Calendars.ReadWrite",
    ]


def test_refresh_for_an_unconsented_scope_needs_consent(http, emulator):
    first = redeem(http, emulator, get_code(http, emulator)).json()["refresh_token"]
    response = _refresh(http, emulator, first, scope="Contacts.Read offline_access")
    body = assert_aad_error(response, 400, "invalid_grant", 65001)
    assert body["suberror"] == "consent_required"


def test_revoked_grants(http, emulator):
    first = redeem(http, emulator, get_code(http, emulator)).json()
    assert emulator.identity.revoke_grants() == 1
    body = assert_aad_error(
        _refresh(http, emulator, first["refresh_token"]), 400, "invalid_grant", 50173
    )
    assert "revoked" in body["error_description"]
    # access tokens already issued live on until they expire, as in reality
    assert emulator.identity.authenticate(f"Bearer {first['access_token']}") is not None


def test_refresh_token_expired_from_inactivity(http, emulator):
    first = redeem(http, emulator, get_code(http, emulator)).json()["refresh_token"]
    emulator.identity.expire_refresh_tokens()
    assert_aad_error(_refresh(http, emulator, first), 400, "invalid_grant", 700082)


def test_unknown_refresh_token(http, emulator):
    assert_aad_error(_refresh(http, emulator, "1.Anope"), 400, "invalid_grant", 9002313)


def test_grant_only_limits_scopes(http, emulator):
    emulator.identity.grant_only({"User.Read"})
    body = redeem(http, emulator, get_code(http, emulator)).json()
    assert body["scope"] == "User.Read profile openid email"
    _, scopes = emulator.identity.authenticate(f"Bearer {body['access_token']}")
    assert scopes == {"User.Read"}


def test_grant_only_also_cuts_existing_consent(http, emulator):
    first = redeem(http, emulator, get_code(http, emulator)).json()["refresh_token"]
    emulator.identity.grant_only({"User.Read", "Mail.Read"})
    body = _refresh(http, emulator, first, scope="User.Read offline_access").json()
    assert body["scope"].split()[:2] == ["User.Read", "Mail.Read"]
    assert "Mail.Send" not in body["scope"]


# --- access tokens at Graph ------------------------------------------------------------------


def test_short_lived_tokens(tmp_path: Path):
    with Emulator(Mailbox(), state_dir=tmp_path, access_token_lifetime=5) as emulator:
        with EmulatorSession(emulator.ca_path, emulator.base_url) as http:
            body = redeem(http, emulator, get_code(http, emulator)).json()
        assert body["expires_in"] == 5
        assert emulator.identity.authenticate(f"Bearer {body['access_token']}")


def test_access_tokens_really_expire(emulator):
    # exp is whole seconds (floor(now) + lifetime): 2 s is always still valid right away.
    short = emulator.identity.mint_access_token(lifetime=2)
    assert emulator.identity.authenticate(f"Bearer {short}") is not None
    time.sleep(2.1)
    assert emulator.identity.authenticate(f"Bearer {short}") is None


@pytest.mark.parametrize(
    ("header", "message"),
    [
        (None, "Access token is empty."),
        ("Bearer garbage", "IDX14100: JWT is not well formed"),
        ("Bearer a.b.c", "Access token has expired or is not yet valid."),
    ],
)
def test_graph_401_shapes(http, header, message):
    headers = {"Authorization": header} if header else {}
    response = http.get("/v1.0/me", headers=headers)
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"] == GRAPH_WWW_AUTHENTICATE
    error = response.json()["error"]
    assert error["code"] == "InvalidAuthenticationToken"
    assert error["message"].startswith(message)
    assert set(error["innerError"]) == {"date", "request-id", "client-request-id"}


def test_expire_access_tokens_makes_graph_answer_401(http, emulator):
    access = redeem(http, emulator, get_code(http, emulator)).json()["access_token"]
    assert emulator.identity.expire_access_tokens() >= 1
    response = http.get("/v1.0/me", headers={"Authorization": f"Bearer {access}"})
    assert response.status_code == 401
    assert response.json()["error"]["message"] == "Access token has expired or is not yet valid."


def test_mint_access_token_default_scopes(emulator):
    access = emulator.identity.mint_access_token()
    assert emulator.identity.authenticate(f"bearer {access}")[1] == DEFAULT_SCOPES


# --- real msal ----------------------------------------------------------------------------------


MSAL_REDIRECT = "http://localhost:8069/microsoft365/callback"


def _msal_app(emulator: Emulator, session: EmulatorSession, authority: str | None = None):
    emulator.identity.add_redirect_uris([MSAL_REDIRECT])  # as a demo registers Odoo's callback
    return msal.ConfidentialClientApplication(
        emulator.client_id,
        client_credential=emulator.client_secret,
        authority=authority or emulator.authority,
        instance_discovery=False,
        http_client=session,
        token_cache=msal.SerializableTokenCache(),
    )


def _msal_connect(emulator: Emulator, session: EmulatorSession, app: Any) -> dict[str, Any]:
    flow = app.initiate_auth_code_flow(
        ["User.Read", "Mail.Read", "Mail.Send", "Calendars.ReadWrite"],
        redirect_uri=MSAL_REDIRECT,
        state=secrets.token_urlsafe(16),
    )
    response = session.get(flow["auth_uri"], allow_redirects=False)
    assert response.status_code == 302
    return app.acquire_token_by_auth_code_flow(flow, _query(response.headers["Location"]))


def _cached_refresh_tokens(app: Any) -> list[str]:
    cache = json.loads(app.token_cache.serialize())
    return [entry["secret"] for entry in cache.get("RefreshToken", {}).values()]


@pytest.mark.filterwarnings("ignore:response_mode='form_post' is recommended")
def test_real_msal_full_lifecycle(emulator):
    with EmulatorSession(emulator.ca_path) as session:
        app = _msal_app(emulator, session)
        result = _msal_connect(emulator, session, app)
        assert "access_token" in result, result
        assert set(result["scope"].split()) >= {"Mail.Read", "Mail.Send", "User.Read"}
        assert result["id_token_claims"]["oid"] == emulator.mailbox.user["id"]
        assert emulator.identity.authenticate(f"Bearer {result['access_token']}") is not None

        [account] = app.get_accounts()
        assert account["home_account_id"] == f"{emulator.mailbox.user['id']}.{emulator.tenant_id}"
        assert account["username"] == emulator.mailbox.user["userPrincipalName"]
        before = _cached_refresh_tokens(app)

        silent = app.acquire_token_silent_with_error(["Mail.Read"], account, force_refresh=True)
        assert silent and "access_token" in silent, silent
        assert silent["access_token"] != result["access_token"]
        after = _cached_refresh_tokens(app)
        assert len(after) == 1 and after != before  # rotation visible in the cache

        emulator.identity.revoke_grants()
        failed = app.acquire_token_silent_with_error(["Mail.Read"], account, force_refresh=True)
        assert failed["error"] == "invalid_grant"
        assert 50173 in failed["error_codes"]


@pytest.mark.filterwarnings("ignore:response_mode='form_post' is recommended")
def test_real_msal_with_common_authority(emulator):
    with EmulatorSession(emulator.ca_path) as session:
        app = _msal_app(emulator, session, authority=f"{emulator.base_url}/common")
        result = _msal_connect(emulator, session, app)
        assert "access_token" in result, result
        assert result["id_token_claims"]["tid"] == emulator.tenant_id


@pytest.mark.filterwarnings("ignore:response_mode='form_post' is recommended")
def test_real_msal_sees_insufficient_permissions_and_denied_consent(emulator):
    with EmulatorSession(emulator.ca_path) as session:
        emulator.identity.grant_only({"User.Read"})
        result = _msal_connect(emulator, session, _msal_app(emulator, session))
        assert "access_token" in result
        assert "Mail.Read" not in result["scope"].split()

        emulator.identity.deny_next_consent()
        app = _msal_app(emulator, session)
        denied = _msal_connect(emulator, session, app)
        assert denied["error"] == "access_denied"
        assert "AADSTS65004" in denied["error_description"]


@pytest.mark.filterwarnings("ignore:response_mode='form_post' is recommended")
def test_real_msal_with_a_wrong_secret(emulator):
    with EmulatorSession(emulator.ca_path) as session:
        emulator.identity.add_redirect_uris([MSAL_REDIRECT])
        app = msal.ConfidentialClientApplication(
            emulator.client_id,
            client_credential="wrong",
            authority=emulator.authority,
            instance_discovery=False,
            http_client=session,
        )
        result = _msal_connect(emulator, session, app)
        assert result["error"] == "invalid_client"
        assert 7000215 in result["error_codes"]
