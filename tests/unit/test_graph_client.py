"""GraphClient behaviour over `responses`, and the transport's forced TLS trust."""

from __future__ import annotations

import logging
import threading
import time
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path

import pytest
import requests
import responses
from requests.adapters import BaseAdapter
from responses import matchers

from m365sync.errors import GraphError, MalformedResponse, NeedsReconnect, Throttled, Transient
from m365sync.graph.client import GraphClient, parse_retry_after
from m365sync.graph.transport import connection_retry, make_session

BASE = "https://graph.example.test/v1.0"
NOW = 1_750_000_000.0


class Tokens:
    def __init__(self) -> None:
        self.calls: list[bool] = []

    def access_token(self, force_refresh: bool = False) -> str:
        self.calls.append(force_refresh)
        return "fresh-token" if force_refresh else "cached-token"


class Sleeper:
    def __init__(self) -> None:
        self.waits: list[float] = []

    def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)


def client(tokens=None, sleep=None, **kw) -> GraphClient:
    return GraphClient(
        make_session(None, user_agent="m365sync-test"),
        BASE,
        tokens or Tokens(),
        sleep=sleep or Sleeper(),
        clock=lambda: NOW,
        jitter=lambda: 0.5,
        **kw,
    )


def throttle(status=429, retry_after="2.128", code="TooManyRequests"):
    headers = {"Retry-After": retry_after} if retry_after is not None else {}
    return responses.Response(
        responses.GET,
        f"{BASE}/me/messages",
        status=status,
        json={"error": {"code": code, "message": ""}},
        headers=headers,
    )


# --- Retry-After --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("2.128", 2.128),
        ("0", 0.0),
        (" 17 ", 17.0),
        ("-3", 0.0),
        ("", None),
        (None, None),
        ("soon", None),
        ("nan", None),
        ("inf", None),
    ],
)
def test_parse_retry_after_seconds(value, expected):
    assert parse_retry_after(value, now=NOW) == expected


def test_parse_retry_after_http_date():
    when = datetime.fromtimestamp(NOW, UTC) + timedelta(seconds=30)
    assert parse_retry_after(format_datetime(when, usegmt=True), now=NOW) == 30.0
    past = datetime.fromtimestamp(NOW, UTC) - timedelta(seconds=30)
    assert parse_retry_after(format_datetime(past, usegmt=True), now=NOW) == 0.0


# --- paths, links, headers ----------------------------------------------------------------


@responses.activate
def test_relative_paths_join_base_and_bearer_is_sent():
    responses.get(
        f"{BASE}/me/mailFolders",
        json={"value": []},
        match=[matchers.header_matcher({"Authorization": "Bearer cached-token"})],
    )
    assert client().get_json("/me/mailFolders") == {"value": []}
    assert client().get_json("me/mailFolders") == {"value": []}


@responses.activate
def test_absolute_links_are_used_verbatim():
    link = f"{BASE}/me/mailFolders('AAMk%3D')/messages/delta?$skiptoken=abc%2Bdef&x=1"
    responses.get(link, json={"value": []})
    client().get_json(link)
    assert responses.calls[0].request.url == link


def test_links_to_another_host_are_refused():
    with pytest.raises(MalformedResponse, match="another host"):
        client().get_json("https://evil.example.test/v1.0/me/messages")


@responses.activate
def test_iter_pages_follows_next_links_with_headers_and_params_only_once():
    first = f"{BASE}/me/mailFolders/inbox/messages/delta"
    second = f"{BASE}/me/mailFolders('inbox')/messages/delta?$skiptoken=P2"
    final = f"{BASE}/me/mailFolders('inbox')/messages/delta?$deltatoken=D3"
    responses.get(first, json={"value": [1], "@odata.nextLink": second})
    responses.get(second, json={"value": [], "@odata.nextLink": final})
    responses.get(final, json={"value": [2], "@odata.deltaLink": final})
    pages = list(
        client().iter_pages(first, params={"$select": "id"}, headers={"Prefer": "odata.x=1"})
    )
    assert [p["value"] for p in pages] == [[1], [], [2]]
    assert "%24select=id" in responses.calls[0].request.url
    assert responses.calls[1].request.url == second
    assert responses.calls[2].request.url == final
    assert all(c.request.headers["Prefer"] == "odata.x=1" for c in responses.calls)


# --- throttling ---------------------------------------------------------------------------


@responses.activate
def test_429_waits_the_decimal_retry_after_then_succeeds():
    sleep = Sleeper()
    responses.add(throttle())
    responses.add(throttle(status=503, retry_after="1", code="UnknownError"))
    responses.get(f"{BASE}/me/messages", json={"value": []})
    assert client(sleep=sleep).get_json("/me/messages") == {"value": []}
    assert sleep.waits == [2.128, 1.0]
    assert len(responses.calls) == 3


@responses.activate
def test_backoff_with_jitter_when_retry_after_is_absent():
    sleep = Sleeper()
    for _ in range(3):
        responses.add(throttle(status=504, retry_after=None, code="GatewayTimeout"))
    responses.get(f"{BASE}/me/messages", json={"value": []})
    client(sleep=sleep).get_json("/me/messages")
    # ceiling 1, 2, 4 with jitter fixed at 0.5: ceiling * 0.75
    assert sleep.waits == [0.75, 1.5, 3.0]


@responses.activate
def test_throttled_past_the_budget_raises_with_retry_after_instead_of_sleeping():
    sleep = Sleeper()
    responses.add(throttle(retry_after="30"))
    responses.add(throttle(retry_after="30"))
    responses.add(throttle(retry_after="30"))
    with pytest.raises(Throttled) as info:
        client(sleep=sleep, retry_budget_seconds=65).get_json("/me/messages")
    assert sleep.waits == [30.0, 30.0]
    assert info.value.retry_after == 30.0
    assert info.value.status == 429
    assert info.value.code == "TooManyRequests"


@responses.activate
def test_huge_retry_after_raises_at_once():
    sleep = Sleeper()
    responses.add(throttle(retry_after="3600"))
    with pytest.raises(Throttled) as info:
        client(sleep=sleep).get_json("/me/messages")
    assert sleep.waits == []
    assert info.value.retry_after == 3600.0


@responses.activate
def test_persistent_503_becomes_transient_after_max_attempts():
    sleep = Sleeper()
    for _ in range(3):
        responses.add(throttle(status=503, retry_after="1", code="UnknownError"))
    with pytest.raises(Transient) as info:
        client(sleep=sleep, max_attempts=3).get_json("/me/messages")
    assert len(responses.calls) == 3
    assert info.value.status == 503


@responses.activate
def test_post_is_not_retried_on_429_or_5xx():
    sleep = Sleeper()
    responses.post(
        f"{BASE}/me/messages",
        status=429,
        json={"error": {"code": "ApplicationThrottled", "message": "MailboxConcurrency"}},
        headers={"Retry-After": "4.5"},
    )
    with pytest.raises(Throttled) as info:
        client(sleep=sleep).post_json("/me/messages", {"subject": "x"})
    assert info.value.retry_after == 4.5
    assert sleep.waits == []
    assert len(responses.calls) == 1

    responses.post(f"{BASE}/me/events", status=429, body="")
    with pytest.raises(Throttled) as info:
        client(sleep=sleep).post_json("/me/events", {})
    assert info.value.retry_after == 0.75  # our first backoff step when Graph names none

    responses.post(f"{BASE}/me/sendMail", status=504, body="")
    with pytest.raises(Transient):
        client(sleep=sleep).post_json("/me/sendMail", {})
    assert len(responses.calls) == 3


@responses.activate
def test_idempotent_post_and_patch_are_retried():
    sleep = Sleeper()
    responses.post(f"{BASE}/me/events", status=503, headers={"Retry-After": "1"})
    responses.post(f"{BASE}/me/events", status=201, json={"id": "E1"})
    assert client(sleep=sleep).post_json("/me/events", {}, idempotent=True) == {"id": "E1"}
    responses.patch(f"{BASE}/me/events/E1", status=429, headers={"Retry-After": "1"})
    responses.patch(f"{BASE}/me/events/E1", status=200, json={"id": "E1"})
    assert client(sleep=sleep).patch_json("/me/events/E1", {}, idempotent=True)["id"] == "E1"
    assert sleep.waits == [1.0, 1.0]


@responses.activate
def test_post_202_without_body_and_delete_204():
    responses.post(f"{BASE}/me/messages/M1/send", status=202, body="")
    responses.delete(f"{BASE}/me/events/E1", status=204)
    assert client().post_json("/me/messages/M1/send") == {}
    assert client().delete("/me/events/E1") is None


def test_concurrency_is_capped_per_client():
    """Eight threads, one client: never more than four requests in flight."""
    in_flight = 0
    peak = 0
    lock = threading.Lock()

    class SlowAdapter(BaseAdapter):
        def send(self, request, **kwargs):
            nonlocal in_flight, peak
            with lock:
                in_flight += 1
                peak = max(peak, in_flight)
            time.sleep(0.05)
            with lock:
                in_flight -= 1
            response = requests.Response()
            response.status_code = 200
            response._content = b'{"ok": true}'
            response.headers["Content-Type"] = "application/json"
            response.url = request.url
            response.request = request
            return response

        def close(self):
            pass

    session = make_session(None, user_agent="t")
    session.mount("https://", SlowAdapter())
    graph = GraphClient(session, BASE, Tokens())
    threads = [threading.Thread(target=graph.get_json, args=("/me/messages",)) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert peak == 4


# --- auth ---------------------------------------------------------------------------------


@responses.activate
def test_401_forces_one_token_refresh_then_succeeds():
    tokens = Tokens()
    responses.get(
        f"{BASE}/me",
        status=401,
        json={"error": {"code": "InvalidAuthenticationToken", "message": "expired"}},
        match=[matchers.header_matcher({"Authorization": "Bearer cached-token"})],
    )
    responses.get(
        f"{BASE}/me",
        json={"id": "me"},
        match=[matchers.header_matcher({"Authorization": "Bearer fresh-token"})],
    )
    assert client(tokens).get_json("/me") == {"id": "me"}
    assert tokens.calls == [False, True]


@responses.activate
def test_401_twice_needs_reconnect():
    tokens = Tokens()
    responses.get(
        f"{BASE}/me",
        status=401,
        json={"error": {"code": "InvalidAuthenticationToken", "message": ""}},
    )
    with pytest.raises(NeedsReconnect) as info:
        client(tokens).get_json("/me")
    assert tokens.calls == [False, True]
    assert info.value.code == "InvalidAuthenticationToken"
    assert len(responses.calls) == 2


# --- garbled answers and connections ------------------------------------------------------


@responses.activate
def test_html_200_is_malformed():
    responses.get(
        f"{BASE}/me/messages", body="<html><body>Gateway</body></html>", content_type="text/html"
    )
    with pytest.raises(MalformedResponse, match="not JSON"):
        client().get_json("/me/messages")


@responses.activate
def test_json_array_200_is_malformed():
    responses.get(f"{BASE}/me/messages", json=[1, 2])
    with pytest.raises(MalformedResponse):
        client().get_json("/me/messages")


@responses.activate
def test_connection_error_becomes_transient():
    responses.get(f"{BASE}/me", body=requests.ConnectionError("reset by peer"))
    with pytest.raises(Transient) as info:
        client().get_json("/me")
    assert info.value.code == "connection_failed"


# --- logs ---------------------------------------------------------------------------------


@responses.activate
def test_logs_show_path_status_attempt_and_never_tokens_queries_or_bodies(caplog):
    link = f"{BASE}/me/mailFolders/inbox/messages/delta?$deltatoken=SECRET-DELTA-TOKEN"
    responses.get(
        link,
        status=429,
        json={"error": {"code": "TooManyRequests", "message": "BODY-TEXT"}},
        headers={"Retry-After": "1"},
    )
    responses.get(link, json={"value": [{"subject": "PRIVATE-SUBJECT"}]})
    with caplog.at_level(logging.DEBUG, logger="m365sync.graph"):
        client().get_json(link)
    text = caplog.text
    assert "/me/mailFolders/inbox/messages/delta" in text
    assert "429" in text
    assert "attempt 1" in text
    for secret in ("SECRET-DELTA-TOKEN", "cached-token", "BODY-TEXT", "PRIVATE-SUBJECT"):
        assert secret not in text


# --- transport ----------------------------------------------------------------------------


class RecordingAdapter(BaseAdapter):
    """Stands where HTTPAdapter stands and records what requests hands it."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[dict] = []

    def send(self, request, **kwargs):
        self.seen.append(kwargs)
        response = requests.Response()
        response.status_code = 200
        response._content = b"{}"
        response.url = request.url
        response.request = request
        return response

    def close(self):
        pass


def test_client_timeout_reaches_the_adapter():
    session = make_session(None, user_agent="t")
    adapter = RecordingAdapter()
    session.mount("https://", adapter)
    GraphClient(session, BASE, Tokens(), timeout=7.5).get_json("/me")
    GraphClient(session, BASE, Tokens()).get_json("/me")
    assert [seen["timeout"] for seen in adapter.seen] == [7.5, (10.0, 100.0)]


def test_ca_bundle_wins_over_requests_ca_bundle_env(monkeypatch):
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", "/env/bundle-that-must-not-win.pem")
    monkeypatch.setenv("CURL_CA_BUNDLE", "/env/curl-bundle.pem")
    session = make_session("/etc/m365sync/emulator-ca.pem", user_agent="m365sync/test")
    adapter = RecordingAdapter()
    session.mount("https://", adapter)
    # the shapes msal uses (oauth2cli http_client interface), and the GraphClient's
    session.get("https://login.example.test/x", params={"a": "b"}, headers={"h": "v"})
    session.post("https://login.example.test/t", params=None, data={"k": "v"}, headers={})
    session.request("GET", "https://graph.example.test/v1.0/me", verify=False)
    assert [seen["verify"] for seen in adapter.seen] == ["/etc/m365sync/emulator-ca.pem"] * 3
    assert all(seen["timeout"] is not None for seen in adapter.seen)
    session.close()


def test_without_ca_bundle_the_default_trust_applies(monkeypatch):
    monkeypatch.delenv("REQUESTS_CA_BUNDLE", raising=False)
    monkeypatch.delenv("CURL_CA_BUNDLE", raising=False)
    session = make_session(None, user_agent="m365sync/test")
    adapter = RecordingAdapter()
    session.mount("https://", adapter)
    session.get("https://graph.example.test/v1.0/me")
    assert adapter.seen[0]["verify"] is True
    assert session.headers["User-Agent"] == "m365sync/test"


def test_adapter_retries_connections_only():
    retry = make_session(None, user_agent="t").get_adapter("https://x.test").max_retries
    assert not retry.status_forcelist
    assert retry.respect_retry_after_header is False
    assert retry.is_retry("GET", 429, has_retry_after=True) is False
    assert retry.is_retry("GET", 503, has_retry_after=True) is False
    assert "POST" not in retry.allowed_methods
    assert connection_retry().read == 2


@pytest.fixture
def tls_server(tmp_path):
    """A loopback HTTPS server whose certificate only a private CA vouches for."""
    import http.server
    import ssl

    import trustme

    ca = trustme.CA()
    cert = ca.issue_cert("localhost")
    ca_path = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_path))

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            body = b'{"id": "me"}'
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("localhost", 0), Handler)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    cert.configure_cert(context)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"https://localhost:{server.server_address[1]}/v1.0", str(ca_path)
    server.shutdown()
    server.server_close()


def test_private_ca_is_trusted_despite_the_environment(tls_server, monkeypatch, tmp_path):
    base, ca_path = tls_server
    system = tmp_path / "system.pem"
    system.write_bytes(Path(requests.certs.where()).read_bytes())
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(system))
    graph = GraphClient(make_session(ca_path, user_agent="t"), base, Tokens())
    assert graph.get_json("/me") == {"id": "me"}
    untrusting = GraphClient(make_session(None, user_agent="t"), base, Tokens())
    with pytest.raises(GraphError) as info:
        untrusting.get_json("/me")
    assert info.value.code == "tls_verification_failed"


def test_a_handshake_cut_short_is_a_connection_failure_not_an_untrusted_certificate(tmp_path):
    """requests raises SSLError both when our trust refuses a certificate and when the server
    (or a proxy in between) hangs up mid-handshake (SSLEOFError); only the first is fixed by
    microsoft.ca_bundle. The soak saw the second reported as "TLS verification failed ... set
    microsoft.ca_bundle to the CA that signed it"."""
    import socket

    import trustme

    ca = trustme.CA()
    ca_path = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_path))
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)

    def hang_up() -> None:
        while True:
            try:
                peer, _ = listener.accept()
            except OSError:
                return
            with peer:
                peer.recv(65536)  # the whole ClientHello, then a clean close: no answer

    threading.Thread(target=hang_up, daemon=True).start()
    base = f"https://127.0.0.1:{listener.getsockname()[1]}/v1.0"
    graph = GraphClient(make_session(str(ca_path), user_agent="t"), base, Tokens())
    try:
        with pytest.raises(Transient) as info:
            graph.get_json("/me")
    finally:
        listener.close()
    assert info.value.code == "connection_failed"
    assert "ca_bundle" not in str(info.value)
