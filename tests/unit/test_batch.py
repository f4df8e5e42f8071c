"""batch_get over `responses`: splitting, sub-response mapping, retries of throttled ones only."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import pytest
import responses

from m365sync.errors import (
    InsufficientPermissions,
    MalformedResponse,
    NotFound,
    Throttled,
    Transient,
)
from m365sync.graph.batch import MAX_BATCH, batch_get
from m365sync.graph.client import GraphClient
from m365sync.graph.transport import make_session

BASE = "https://graph.example.test/v1.0"
BATCH = f"{BASE}/$batch"
NOW = 1_750_000_000.0


class Tokens:
    def access_token(self, force_refresh: bool = False) -> str:
        return "token"


class Sleeper:
    def __init__(self) -> None:
        self.waits: list[float] = []

    def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)


def client() -> GraphClient:
    return GraphClient(
        make_session(None, user_agent="m365sync-test"),
        BASE,
        Tokens(),
        sleep=Sleeper(),
        clock=lambda: NOW,
        jitter=lambda: 0.5,
    )


def ok(request: dict, body: dict | None = None) -> dict:
    return {
        "id": request["id"],
        "status": 200,
        "headers": {"Content-Type": "application/json"},
        "body": body if body is not None else {"value": [{"url": request["url"]}]},
    }


def failed(request: dict, status: int, code: str, retry_after: str | None = None) -> dict:
    headers = {"Content-Type": "application/json"}
    if retry_after is not None:
        headers["Retry-After"] = retry_after
    return {
        "id": request["id"],
        "status": status,
        "headers": headers,
        "body": {"error": {"code": code, "message": "m"}},
    }


class Graph:
    """A fake $batch endpoint: ``answer(request, round) -> sub-response`` per sub-request."""

    def __init__(self, answer, *, reverse: bool = True) -> None:
        self.answer = answer
        self.reverse = reverse
        self.batches: list[list[dict]] = []
        self.headers: list[dict] = []

    def __call__(self, request):
        payload = json.loads(request.body)
        self.batches.append(payload["requests"])
        self.headers.append(dict(request.headers))
        out = [self.answer(r, len(self.batches)) for r in payload["requests"]]
        if self.reverse:  # "Individual responses might appear in a different order"
            out.reverse()
        return 200, {"Content-Type": "application/json"}, json.dumps({"responses": out})


def serve(graph: Graph) -> None:
    responses.add_callback(responses.POST, BATCH, callback=graph)


def paths(n: int) -> list[str]:
    return [f"/me/messages/m{i}/attachments?$select=name" for i in range(n)]


@responses.activate
def test_splits_into_batches_of_twenty_and_maps_back_by_id() -> None:
    graph = Graph(lambda r, _: ok(r))
    serve(graph)
    wanted = paths(45)
    result = batch_get(client(), wanted + wanted[:3], headers={"Prefer": 'IdType="ImmutableId"'})
    assert [len(b) for b in graph.batches] == [MAX_BATCH, MAX_BATCH, 5]
    assert set(result) == set(wanted)
    assert all(result[p] == {"value": [{"url": p}]} for p in wanted)
    for batch in graph.batches:
        assert len({r["id"] for r in batch}) == len(batch)
        assert all(r["method"] == "GET" for r in batch)
        assert all(r["headers"] == {"Prefer": 'IdType="ImmutableId"'} for r in batch)
    assert all("Prefer" not in h for h in graph.headers)  # headers go per sub-request


@responses.activate
def test_no_paths_no_request() -> None:
    assert batch_get(client(), []) == {}
    assert len(responses.calls) == 0


@responses.activate
def test_sub_responses_map_to_typed_errors() -> None:
    codes = {
        "/a": (404, "ErrorItemNotFound"),
        "/b": (403, "ErrorAccessDenied"),
        "/c": (400, "ErrorInvalidIdMalformed"),
    }

    def answer(request, _):
        if request["url"] in codes:
            return failed(request, *codes[request["url"]])
        if request["url"] == "/d":
            return {"id": request["id"], "status": 200, "headers": {}, "body": "not json"}
        return ok(request)

    serve(Graph(answer))
    result = batch_get(client(), ["/a", "/b", "/c", "/d", "/e"])
    assert isinstance(result["/a"], NotFound) and result["/a"].code == "ErrorItemNotFound"
    assert isinstance(result["/b"], InsufficientPermissions)
    assert type(result["/c"]).__name__ == "GraphError" and result["/c"].status == 400
    assert isinstance(result["/d"], MalformedResponse)
    assert result["/e"] == {"value": [{"url": "/e"}]}


@responses.activate
def test_only_throttled_requests_are_retried_after_the_longest_retry_after() -> None:
    throttled = {"/m1": "2.128", "/m2": "0.5"}

    def answer(request, round_):
        if round_ == 1 and request["url"] in throttled:
            return failed(request, 429, "ApplicationThrottled", throttled[request["url"]])
        if round_ == 1 and request["url"] == "/m3":
            return failed(request, 503, "UnknownError")
        return ok(request)

    graph = Graph(answer)
    serve(graph)
    sleeper = Sleeper()
    result = batch_get(client(), ["/m0", "/m1", "/m2", "/m3"], sleep=sleeper, clock=lambda: NOW)
    assert [sorted(r["url"] for r in batch) for batch in graph.batches] == [
        ["/m0", "/m1", "/m2", "/m3"],
        ["/m1", "/m2", "/m3"],
    ]
    assert sleeper.waits == [2.128]
    assert all(result[p] == {"value": [{"url": p}]} for p in ["/m0", "/m1", "/m2", "/m3"])


@responses.activate
def test_retry_after_as_an_http_date_and_backoff_without_one() -> None:
    when = format_datetime(datetime.fromtimestamp(NOW, UTC) + timedelta(seconds=7), usegmt=True)

    def answer(request, round_):
        if round_ == 1:
            return failed(request, 429, "TooManyRequests", when)
        if round_ == 2:
            return failed(request, 504, "UnknownError")
        return ok(request)

    serve(Graph(answer))
    sleeper = Sleeper()
    result = batch_get(client(), ["/x"], sleep=sleeper, clock=lambda: NOW, backoff_base=1.0)
    assert sleeper.waits == [7.0, 2.0]  # the date; then 1.0 * 2 ** (2 - 1)
    assert result["/x"] == {"value": [{"url": "/x"}]}


@responses.activate
def test_budget_exhausted_ends_as_throttled_with_retry_after() -> None:
    def answer(request, _):
        if request["url"] == "/slow":
            return failed(request, 429, "TooManyRequests", "30")
        if request["url"] == "/down":
            return failed(request, 503, "UnknownError", "1")
        return ok(request)

    graph = Graph(answer)
    serve(graph)
    sleeper = Sleeper()
    result = batch_get(client(), ["/ok", "/slow", "/down"], sleep=sleeper, budget_seconds=45)
    assert sleeper.waits == [30.0]  # a second wait of 30 s would pass the 45 s budget
    assert len(graph.batches) == 2
    assert isinstance(result["/slow"], Throttled) and result["/slow"].retry_after == 30.0
    assert "gave up after 2 batches" in str(result["/slow"])
    assert isinstance(result["/down"], Transient) and result["/down"].status == 503
    assert result["/ok"] == {"value": [{"url": "/ok"}]}


@responses.activate
def test_max_rounds_bounds_the_batches() -> None:
    graph = Graph(lambda r, _: failed(r, 429, "TooManyRequests", "0.01"))
    serve(graph)
    result = batch_get(client(), ["/x"], sleep=Sleeper(), max_rounds=3)
    assert len(graph.batches) == 3 and isinstance(result["/x"], Throttled)


@responses.activate
def test_a_missing_sub_response_is_malformed_and_a_bad_envelope_raises() -> None:
    serve(Graph(lambda r, _: ok(r) if r["url"] == "/a" else {"status": 200}))
    result = batch_get(client(), ["/a", "/b"])
    assert isinstance(result["/b"], MalformedResponse)
    responses.replace(responses.POST, BATCH, json={"value": []})
    with pytest.raises(MalformedResponse):
        batch_get(client(), ["/a"])


@responses.activate
def test_the_envelope_is_idempotent_and_retried_by_the_client() -> None:
    responses.add(
        responses.POST,
        BATCH,
        status=429,
        headers={"Retry-After": "1"},
        json={"error": {"code": "TooManyRequests", "message": ""}},
    )
    serve(Graph(lambda r, _: ok(r)))
    assert batch_get(client(), ["/a"]) == {"/a": {"value": [{"url": "/a"}]}}
    assert len(responses.calls) == 2


@responses.activate
def test_a_bad_request_envelope_raises() -> None:
    responses.add(
        responses.POST,
        BATCH,
        status=400,
        json={"error": {"code": "BadRequest", "message": "Invalid batch payload format."}},
    )
    with pytest.raises(Exception) as caught:
        batch_get(client(), ["/a"])
    assert getattr(caught.value, "status", None) == 400
