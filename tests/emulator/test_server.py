"""The HTTPS server: TLS with its own CA, routing, lifecycle and the control API."""

from __future__ import annotations

import socket
import threading
from pathlib import Path

import pytest
import requests
from werkzeug.test import EnvironBuilder
from werkzeug.wrappers import Request

from m365sync.emulator import control
from m365sync.emulator.identity import DEMO_CLIENT_ID, DEMO_CLIENT_SECRET
from m365sync.emulator.mailbox import Mailbox
from m365sync.emulator.server import CA_FILENAME, Emulator, EmulatorSession

MESSAGE = {
    "subject": "Quote for 40 seats",
    "from": {"emailAddress": {"name": "Ada", "address": "ada@fabrikam.example"}},
    "toRecipients": [{"emailAddress": {"address": "MeganB@contoso.com"}}],
    "body": {"contentType": "text", "content": "Hello"},
}


# --- TLS and lifecycle ---------------------------------------------------------------------------


def test_ca_is_written_and_trusted_for_ip_and_localhost(emulator):
    assert emulator.ca_path == emulator.state_dir / CA_FILENAME
    pem = emulator.ca_path.read_text()
    assert pem.startswith("-----BEGIN CERTIFICATE-----")
    assert "PRIVATE KEY" not in pem
    assert not [p for p in emulator.state_dir.iterdir() if p.name != CA_FILENAME]
    path = f"/{emulator.tenant_id}/v2.0/.well-known/openid-configuration"
    assert requests.get(emulator.base_url + path, verify=str(emulator.ca_path), timeout=10).ok
    localhost = emulator.base_url.replace("127.0.0.1", "localhost")
    assert requests.get(localhost + path, verify=str(emulator.ca_path), timeout=10).ok


def test_clients_without_the_ca_refuse_the_certificate(emulator):
    import certifi

    with pytest.raises(requests.exceptions.SSLError):
        requests.get(emulator.base_url + "/v1.0/me", verify=certifi.where(), timeout=10)


def test_public_properties(emulator):
    assert emulator.base_url == f"https://127.0.0.1:{emulator.port}"
    assert emulator.port > 0
    assert emulator.tenant_id == emulator.mailbox.tenant_id
    assert emulator.authority == f"{emulator.base_url}/{emulator.tenant_id}"
    assert emulator.graph_url == f"{emulator.base_url}/v1.0"
    assert emulator.client_id == DEMO_CLIENT_ID
    assert emulator.client_secret == DEMO_CLIENT_SECRET
    assert emulator.identity.base_url == emulator.base_url


def test_stop_releases_the_port_and_wait_returns(tmp_path: Path):
    emulator = Emulator(Mailbox(), state_dir=tmp_path).start()
    port = emulator.port
    waiter = threading.Thread(target=emulator.wait)
    waiter.start()
    emulator.stop()
    waiter.join(timeout=5)
    assert not waiter.is_alive()
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
    emulator.stop()  # idempotent


def test_public_host_is_in_the_certificate_and_base_url(tmp_path: Path):
    with Emulator(Mailbox(), state_dir=tmp_path, public_host="localhost") as emulator:
        assert emulator.base_url == f"https://localhost:{emulator.port}"
        with EmulatorSession(emulator.ca_path, emulator.base_url) as http:
            config = http.get(f"/{emulator.tenant_id}/v2.0/.well-known/openid-configuration")
            assert config.json()["issuer"].startswith("https://localhost:")


def test_redirect_uris_parameter_registers_them(tmp_path: Path):
    callback = "https://crm.example/microsoft365/callback"
    with Emulator(Mailbox(), state_dir=tmp_path, redirect_uris=[callback]) as emulator:
        assert callback in emulator.identity._apps[DEMO_CLIENT_ID].redirect_uris


# --- routing ----------------------------------------------------------------------------------


def test_unknown_path_is_a_graph_shaped_404(http):
    response = http.get("/nowhere/at/all")
    assert response.status_code == 404
    error = response.json()["error"]
    assert error["code"] == "NotFound"
    assert set(error["innerError"]) == {"date", "request-id", "client-request-id"}


def test_graph_paths_answer_through_graph_api(graph, emulator):
    me = graph.get("/me")
    assert me.status_code == 200
    assert me.json()["id"] == emulator.mailbox.user["id"]


def test_a_crash_is_a_graph_shaped_500(emulator, http, monkeypatch):
    def explode(request):
        raise RuntimeError("boom")

    monkeypatch.setattr(emulator.identity, "handle", explode)
    response = http.get(f"/{emulator.tenant_id}/v2.0/.well-known/openid-configuration")
    assert response.status_code == 500
    assert response.json()["error"]["code"] == "InternalServerError"
    assert "boom" not in response.text


# --- control API ----------------------------------------------------------------------------------


def test_control_info(http, emulator):
    info = http.get("/_emulator/info").json()
    assert info["authority"] == emulator.authority
    assert info["graph_url"] == emulator.graph_url
    assert info["client_id"] == DEMO_CLIENT_ID
    assert info["ca_path"] == str(emulator.ca_path)
    assert info["user"]["id"] == emulator.mailbox.user["id"]
    assert "client_secret" not in info


def test_control_message_lifecycle(http, emulator):
    created = http.post("/_emulator/mailbox/messages", json={"folder": "inbox", "message": MESSAGE})
    assert created.status_code == 201
    message = created.json()
    assert message["subject"] == MESSAGE["subject"]
    assert emulator.mailbox.get_message(message["id"])["subject"] == MESSAGE["subject"]

    patched = http.patch(f"/_emulator/mailbox/messages/{message['id']}", json={"isRead": True})
    assert patched.status_code == 200
    assert emulator.mailbox.get_message(message["id"])["isRead"] is True

    moved = http.post(
        f"/_emulator/mailbox/messages/{message['id']}/move", json={"folder": "archive"}
    )
    assert moved.status_code == 200
    assert message["id"] in [m["id"] for m in emulator.mailbox.messages_in("archive")]

    assert http.delete(f"/_emulator/mailbox/messages/{message['id']}").status_code == 204
    with pytest.raises(KeyError):
        emulator.mailbox.get_message(message["id"])
    missing = http.delete(f"/_emulator/mailbox/messages/{message['id']}")
    assert missing.status_code == 404


def test_control_raw_message(http, emulator):
    created = http.post(
        "/_emulator/mailbox/messages", json={"folder": "inbox", "raw": {"subject": None}}
    )
    assert created.status_code == 201
    assert emulator.mailbox.get_message(created.json()["id"])["subject"] is None


def test_control_bad_requests(http):
    assert http.post("/_emulator/mailbox/messages", data="not json").status_code == 400
    assert http.post("/_emulator/mailbox/messages", json={"folder": "inbox"}).status_code == 400
    assert http.post("/_emulator/faults", json={"kind": "explode", "path": "x"}).status_code == 400
    bad_option = {"kind": "gone", "path": "x", "retry_after": "1"}
    assert http.post("/_emulator/faults", json=bad_option).status_code == 400
    assert http.get("/_emulator/nope").status_code == 404


def test_control_faults(http, graph, emulator):
    added = http.post(
        "/_emulator/faults",
        json={"kind": "throttle", "path": "^/v1.0/me$", "times": 2, "retry_after": "0.5"},
    )
    assert added.status_code == 201
    assert added.json()["kind"] == "throttle"
    assert [graph.get("/me").status_code for _ in range(3)] == [429, 429, 200]
    assert http.get("/_emulator/faults").json()["value"][0]["hits"] == 2
    assert http.delete("/_emulator/faults").status_code == 204
    assert emulator.faults.rules == []


def test_control_fault_expired_token(http, graph):
    assert http.post("/_emulator/faults", json={"kind": "expired_token"}).status_code == 201
    assert graph.get("/me").status_code == 401


def test_control_identity(http, emulator):
    access = http.post("/_emulator/identity/access-token", json={"scopes": ["User.Read"]})
    token = access.json()["access_token"]
    assert emulator.identity.authenticate(f"Bearer {token}")[1] == {"User.Read"}
    assert http.post("/_emulator/identity/expire-tokens").json()["expired"] >= 1
    assert emulator.identity.authenticate(f"Bearer {token}") is None
    assert "revoked" in http.post("/_emulator/identity/revoke").json()
    assert "expired" in http.post("/_emulator/identity/expire-refresh-tokens").json()
    assert http.post("/_emulator/identity/grant-only", json={"scopes": ["User.Read"]}).ok
    assert emulator.identity._consent_limit == {"User.Read"}
    assert http.post("/_emulator/identity/deny-next-consent", json={}).status_code == 204
    assert emulator.identity._next_consent is not None
    assert http.post("/_emulator/identity/expire-client-secret", json={}).status_code == 204


def test_control_sync_states_drop(http):
    response = http.post("/_emulator/sync-states/drop")
    assert response.status_code == 200
    assert isinstance(response.json()["dropped"], int)


def test_control_request_log_excludes_control_calls(http, emulator):
    http.get(f"/{emulator.tenant_id}/v2.0/.well-known/openid-configuration")
    http.get("/_emulator/info")
    records = http.get("/_emulator/requests").json()["value"]
    assert [r["path"] for r in records] == [
        f"/{emulator.tenant_id}/v2.0/.well-known/openid-configuration"
    ]
    assert records[0]["status"] == 200
    assert http.delete("/_emulator/requests").status_code == 204
    assert emulator.requests == []


@pytest.mark.parametrize(
    ("address", "allowed"),
    [("127.0.0.1", True), ("::1", True), ("10.0.0.5", False), ("192.168.1.2", False)],
)
def test_control_answers_loopback_only(emulator, address, allowed):
    environ = EnvironBuilder(path="/_emulator/info", environ_base={"REMOTE_ADDR": address})
    response = control.handle(Request(environ.get_environ()), emulator)
    assert (response.status_code == 200) is allowed
    if not allowed:
        assert response.status_code == 403
