"""Graph JSON batching for GETs: up to 20 requests per HTTP call, throttled ones retried alone.

Facts this relies on (docs = microsoftgraph/microsoft-graph-docs-contrib):

- ``POST /v1.0/$batch`` with ``{"requests": [{"id", "method", "url", "headers"?}]}``; ``url`` is
  relative to the version root (``/me/...``); "Microsoft Graph supports batching up to 20
  requests"; ``id`` must be unique in the batch, otherwise the batch fails with 400
  (docs `concepts/json-batching.md` @ 028b8e35, ms.date 2025-02-21).
- The answer is ``{"responses": [{"id", "status", "headers", "body"}]}``, possibly in another
  order than the requests (correlate by ``id``). "If the batch request is parseable, the status
  code is 200"; a 200 "doesn't indicate that the individual requests inside the batch
  succeeded" -- each sub-response carries its own status (same page).
- "Requests in a batch are evaluated individually against the applicable throttling limits and
  if any request exceeds the limits, it fails with a status of 429" (same page). Retry each
  failed request "using the value provided in the retry-after response header from the JSON
  content"; "You may retry all the failed requests in a new batch after the longest retry-after
  value"; SDKs do not retry throttled requests of a batch (docs `concepts/throttling.md`
  @ 28dd02d3, section "Throttling and batching"). That older page also says "The batch itself
  fails with a status code of 424"; the current json-batching page says 424 is what a request
  gets when a request it ``dependsOn`` failed, and that a parseable batch answers 200. We send
  no ``dependsOn``, so 424 does not arise; an envelope that is not 2xx raises like any call.
- Headers are per sub-request: ``Prefer: IdType="ImmutableId"`` must be inside each one.
- Outlook runs at most 4 requests of a batch in parallel, irrespective of the mailbox (a
  Microsoft answer on Q&A 1660054; the MailboxConcurrency limit is 4 per app and mailbox), and
  every sub-request counts against the 10,000 requests per 10 minutes. So a batch saves round
  trips, not quota, and one mailbox sends one batch at a time (this function is sequential).

Only GETs are batched here: they are safe to resend, so the envelope is POSTed with
``idempotent=True`` (the client may retry a 429/5xx on the whole batch).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Mapping
from typing import Any

import requests
from requests.structures import CaseInsensitiveDict

from m365sync.errors import (
    GraphError,
    MailboxUnavailable,
    MalformedResponse,
    Throttled,
    Transient,
)
from m365sync.graph.client import (
    RETRY_STATUSES,
    GraphClient,
    parse_retry_after,
    path_of,
    response_error,
)

log = logging.getLogger("m365sync.graph.batch")

#: "Microsoft Graph supports batching up to 20 requests into the JSON object."
MAX_BATCH = 20

Result = dict[str, Any] | GraphError


def batch_get(
    client: GraphClient,
    paths: list[str],
    *,
    headers: Mapping[str, str] | None = None,
    budget_seconds: float = 120.0,
    max_rounds: int = 8,
    backoff_base: float = 1.0,
    backoff_cap: float = 60.0,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.time,
) -> dict[str, Result]:
    """GET every path through ``/$batch``; a dict from each path to its JSON body or its error.

    ``paths`` are relative to the version root (``/me/messages/{id}/attachments?...``);
    duplicates are fetched once. ``headers`` go on every sub-request. Sub-requests answered
    429/502/503/504 are sent again -- only those, in a new batch -- after the longest
    ``Retry-After`` among them (decimal seconds or an HTTP date; exponential backoff when
    none is given), until ``budget_seconds`` of waiting or ``max_rounds`` batches are spent;
    then they end as ``Throttled`` (429) or ``Transient``. Other failures map to the typed
    errors of ``client.error_for``. Raises only when the batch call itself fails.
    """
    unique = list(dict.fromkeys(paths))
    results: dict[str, Result] = {}
    for start in range(0, len(unique), MAX_BATCH):
        chunk = unique[start : start + MAX_BATCH]
        results.update(
            _run_chunk(
                client,
                chunk,
                headers or {},
                budget_seconds=budget_seconds,
                max_rounds=max_rounds,
                backoff_base=backoff_base,
                backoff_cap=backoff_cap,
                sleep=sleep,
                clock=clock,
            )
        )
    return results


def _run_chunk(
    client: GraphClient,
    chunk: list[str],
    headers: Mapping[str, str],
    *,
    budget_seconds: float,
    max_rounds: int,
    backoff_base: float,
    backoff_cap: float,
    sleep: Callable[[float], None],
    clock: Callable[[], float],
) -> dict[str, Result]:
    results: dict[str, Result] = {}
    pending = list(chunk)
    waited = 0.0
    rounds = 0
    while pending:
        rounds += 1
        answers = _post(client, pending, headers, now=clock())
        retry: list[str] = []
        waits: list[float] = []
        for path in pending:
            status, outcome, wait = answers[path]
            if status in RETRY_STATUSES and not isinstance(outcome, MailboxUnavailable):
                retry.append(path)
                if wait is not None:
                    waits.append(wait)
            results[path] = outcome
        if not retry:
            break
        wait = max(waits) if waits else min(backoff_cap, backoff_base * 2 ** (rounds - 1))
        if rounds >= max_rounds or waited + wait > budget_seconds:
            for path in retry:
                results[path] = _give_up(results[path], wait, rounds, waited)
            log.warning(
                "graph batch: %d of %d requests still failing after %d batches and %.1fs of "
                "waiting; giving up on them for now",
                len(retry),
                len(chunk),
                rounds,
                waited,
            )
            break
        log.warning(
            "graph batch: %d of %d requests throttled or unavailable (batch %d), "
            "retrying them in %.3fs",
            len(retry),
            len(pending),
            rounds,
            wait,
        )
        sleep(wait)
        waited += wait
        pending = retry
    return results


def _post(
    client: GraphClient, paths: list[str], headers: Mapping[str, str], *, now: float
) -> dict[str, tuple[int, Result, float | None]]:
    """One ``POST /$batch``: each path -> (status, body or error, Retry-After seconds)."""
    entries = [
        {
            "id": str(number),
            "method": "GET",
            "url": path,
            **({"headers": dict(headers)} if headers else {}),
        }
        for number, path in enumerate(paths, start=1)
    ]
    payload = client.post_json("/$batch", {"requests": entries}, idempotent=True)
    responses = payload.get("responses")
    if not isinstance(responses, list):
        raise MalformedResponse("a $batch answer without a responses list")
    by_id: dict[str, Any] = {}
    for item in responses:
        if isinstance(item, dict) and item.get("id") is not None:
            by_id[str(item["id"]).lower()] = item  # ids are not case-sensitive
    out: dict[str, tuple[int, Result, float | None]] = {}
    for number, path in enumerate(paths, start=1):
        item = by_id.get(str(number))
        if item is None:
            out[path] = (
                0,
                MalformedResponse(f"$batch answered no response for {path_of(path)}"),
                None,
            )
            continue
        out[path] = _sub_result(item, path, now=now)
    return out


def _sub_result(
    item: Mapping[str, Any], path: str, *, now: float
) -> tuple[int, Result, float | None]:
    status = item.get("status")
    if not isinstance(status, int) or isinstance(status, bool):
        return 0, MalformedResponse(f"$batch response for {path_of(path)} has no status"), None
    response = _as_response(status, item.get("headers"), item.get("body"))
    if 200 <= status < 300:
        body = item.get("body")
        if isinstance(body, dict):
            return status, body, None
        return (
            status,
            MalformedResponse(
                f"$batch response for {path_of(path)} is {status} without a JSON object",
                status=status,
            ),
            None,
        )
    log.debug("graph batch GET %s -> %s", path_of(path), status)
    retry_after = parse_retry_after(response.headers.get("Retry-After"), now=now)
    return status, response_error(response, now=now), retry_after


def _as_response(status: int, headers: Any, body: Any) -> requests.Response:
    """A sub-response as a ``requests.Response``, so the client's own readers
    (``response_error``: error body, code, request id, ``Retry-After``) map it unchanged."""
    response = requests.Response()
    response.status_code = status
    if isinstance(headers, Mapping):
        response.headers = CaseInsensitiveDict(
            {str(k): str(v) for k, v in headers.items() if v is not None}
        )
    if isinstance(body, str):  # a non-JSON body comes as a string (or base64)
        response._content = body.encode("utf-8")
    else:
        response._content = b"" if body is None else json.dumps(body).encode("utf-8")
    return response


def _give_up(error: Result, wait: float, rounds: int, waited: float) -> GraphError:
    assert isinstance(error, GraphError)
    text = f"{error} (gave up after {rounds} batches and {waited:.1f}s of waiting)"
    kw: dict[str, Any] = {
        "status": error.status,
        "code": error.code,
        "request_id": error.request_id,
    }
    if error.status == 429:
        return Throttled(text, retry_after=wait, **kw)
    return Transient(text, **kw)
