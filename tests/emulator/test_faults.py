"""Fault injection over real HTTPS: each fault as the client sees it, then normal service."""

from __future__ import annotations

import re
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from m365sync.emulator.faults import FaultPlan

ME = "/v1.0/me"


def discovery(emulator) -> str:
    return f"/{emulator.tenant_id}/v2.0/.well-known/openid-configuration"


def test_throttle_429_with_decimal_retry_after_and_bare_body(emulator, graph):
    emulator.faults.throttle(r"^/v1\.0/me$", times=2)
    for _ in range(2):
        response = graph.get("/me")
        assert response.status_code == 429
        assert response.headers["Retry-After"] == "2.128"
        assert response.json() == {
            "error": {"code": "TooManyRequests", "message": "Please retry again later."}
        }
    assert graph.get("/me").status_code == 200


def test_application_throttled_variant(emulator, graph):
    emulator.faults.throttle(ME, code="ApplicationThrottled", retry_after="1")
    response = graph.get("/me")
    assert response.status_code == 429
    assert response.headers["Retry-After"] == "1"
    assert response.json()["error"] == {
        "code": "ApplicationThrottled",
        "message": "Application is over its MailboxConcurrency limit.",
    }


def test_throttle_without_retry_after(emulator, graph):
    emulator.faults.throttle(ME, retry_after=None)
    response = graph.get("/me")
    assert response.status_code == 429
    assert "Retry-After" not in response.headers


def test_method_filter(emulator, http):
    emulator.faults.throttle("/oauth2/v2.0/token", method="POST")
    assert http.get(discovery(emulator)).status_code == 200  # path differs
    assert http.get(f"/{emulator.tenant_id}/oauth2/v2.0/token").status_code != 429  # GET
    assert http.post(f"/{emulator.tenant_id}/oauth2/v2.0/token").status_code == 429


@pytest.mark.parametrize("code", ["UnknownError", "ServiceUnavailable"])
def test_unavailable_503(emulator, graph, code):
    emulator.faults.unavailable(ME, code=code, retry_after="3")
    response = graph.get("/me")
    assert response.status_code == 503
    assert response.headers["Retry-After"] == "3"
    assert response.json()["error"]["code"] == code
    assert "innerError" not in response.json()["error"]


def test_unavailable_without_retry_after(emulator, graph):
    emulator.faults.unavailable(ME)
    response = graph.get("/me")
    assert response.status_code == 503
    assert "Retry-After" not in response.headers


def test_gateway_timeout_504(emulator, graph):
    emulator.faults.gateway_timeout(ME)
    response = graph.get("/me")
    assert response.status_code == 504
    assert response.json()["error"]["code"] == "UnknownError"


def test_gone_410_sync_state_not_found(emulator, graph):
    emulator.faults.gone(r"/delta")
    response = graph.get("/me/mailFolders/inbox/messages/delta")
    assert response.status_code == 410
    error = response.json()["error"]
    assert error["code"] == "SyncStateNotFound"
    assert error["message"].startswith("The sync state generation is not found; generation=7;")
    assert "[highest=8]" in error["message"]
    assert "innerError" not in error


def test_a_fault_can_aim_at_requests_carrying_a_cursor(emulator, graph):
    emulator.faults.gone(r"/delta", query=r"\$(delta|skip)token=", times=None)
    first = graph.get("/me/mailFolders/inbox/messages/delta")
    assert first.status_code == 200  # no cursor yet: answered
    link = first.json().get("@odata.nextLink") or first.json()["@odata.deltaLink"]
    assert graph.get(link).status_code == 410  # the cursor's request: gone
    assert emulator.faults.rules[0].hits == 1


def test_html_error_page(emulator, graph):
    emulator.faults.html_error(ME, status=502)
    response = graph.get("/me")
    assert response.status_code == 502
    assert response.headers["Content-Type"].startswith("text/html")
    assert response.text.lstrip().startswith("<!DOCTYPE html>")
    with pytest.raises(ValueError):
        response.json()


def test_drop_connection_closes_without_an_answer(emulator, graph):
    emulator.faults.drop_connection(ME)
    with pytest.raises(requests.ConnectionError):
        graph.get("/me", timeout=5)
    # the same session recovers on a fresh connection
    assert graph.get("/me", timeout=5).status_code == 200
    dropped, answered = emulator.requests[-2:]
    assert dropped.status is None and dropped.fault == "drop_connection"
    assert answered.status == 200 and answered.fault is None


def test_drop_connection_on_the_token_endpoint(emulator, http):
    emulator.faults.drop_connection("/oauth2/v2.0/token", times=None)
    for _ in range(2):
        with pytest.raises(requests.ConnectionError):
            http.post(f"/{emulator.tenant_id}/oauth2/v2.0/token", data={"a": "b"}, timeout=5)


def test_slow_then_normal(emulator, http):
    emulator.faults.slow("openid-configuration", seconds=0.6)
    started = time.monotonic()
    assert http.get(discovery(emulator)).status_code == 200
    assert time.monotonic() - started >= 0.6
    started = time.monotonic()
    http.get(discovery(emulator))
    assert time.monotonic() - started < 0.5


def test_slow_trips_a_client_timeout(emulator, http):
    emulator.faults.slow("openid-configuration", seconds=1.0)
    with pytest.raises(requests.Timeout):
        http.get(discovery(emulator), timeout=0.3)


def test_forever_until_cleared(emulator, http):
    emulator.faults.unavailable("openid-configuration", times=None)
    assert [http.get(discovery(emulator)).status_code for _ in range(4)] == [503] * 4
    emulator.faults.clear()
    assert http.get(discovery(emulator)).status_code == 200


def test_first_matching_rule_wins_then_the_next(emulator, http):
    emulator.faults.throttle("openid-configuration")
    emulator.faults.unavailable("openid-configuration")
    statuses = [http.get(discovery(emulator)).status_code for _ in range(3)]
    assert statuses == [429, 503, 200]


def test_graph_checks_the_token_before_faults(emulator, http):
    emulator.faults.throttle(ME)
    assert http.get(ME).status_code == 401  # no token: 401, the fault is not used up
    assert emulator.faults.rules[0].hits == 0


def test_expired_token_convenience(emulator, graph):
    assert emulator.faults.expired_token() >= 1
    response = graph.get("/me")
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "InvalidAuthenticationToken"


def test_concurrent_requests_consume_a_rule_exactly_times_times(emulator, http):
    emulator.faults.throttle("openid-configuration", times=5)
    url = discovery(emulator)
    with ThreadPoolExecutor(max_workers=8) as pool:
        statuses = list(pool.map(lambda _: http.get(url).status_code, range(20)))
    assert statuses.count(429) == 5
    assert statuses.count(200) == 15


def test_bad_rules_fail_when_added():
    plan = FaultPlan()
    with pytest.raises(ValueError, match="unknown fault kind"):
        plan.add("explode", "/x")
    with pytest.raises(re.error):
        plan.throttle("(unclosed")
    with pytest.raises(RuntimeError):
        plan.expired_token()


def test_request_log_records_what_tests_need_and_no_secrets(emulator, graph):
    token = graph.headers["Authorization"]
    graph.get(
        "/me/mailFolders/inbox/messages/delta",
        params={"$select": "subject"},
        headers={"Prefer": 'odata.maxpagesize=50, IdType="ImmutableId"'},
    )
    record = emulator.requests[-1]
    assert record.method == "GET"
    assert record.path == "/v1.0/me/mailFolders/inbox/messages/delta"
    assert record.query == "%24select=subject"
    assert record.prefer == 'odata.maxpagesize=50, IdType="ImmutableId"'
    assert record.status is not None
    assert token.split()[1] not in repr(emulator.requests)
    assert "Authorization" not in repr(record.describe())
