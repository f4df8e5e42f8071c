"""The Graph HTTP client: one per mailbox, retries at the edge, typed errors out.

Why here and not deeper (STYLE habit 12): only this layer knows whether a request may be sent
twice. GET and DELETE are retried on 429/502/503/504; POST and PATCH only when the caller
says the request is idempotent (a create whose 504 hid a success must not be sent again).
``Retry-After`` is read as decimal seconds (Graph documents ``2.128``) or an HTTP date, and the
total wait of one call is capped: past the budget the call raises ``Throttled``/``Transient``
so the scheduler, not a sleeping thread, decides when to come back.

Why a semaphore: Outlook allows 4 concurrent requests per app and mailbox; a fifth gets
429 ApplicationThrottled "MailboxConcurrency", which only wastes the request budget.

Errors are mapped by HTTP status and ``error.code`` compared case-insensitively (Outlook sends
PascalCase ``SyncStateNotFound``, the docs camelCase ``syncStateNotFound``), never by message.
Logs carry method, path (no query: delta tokens are long), status, attempt and wait; never
headers, tokens or bodies.
"""

from __future__ import annotations

import email.utils
import logging
import math
import random
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from typing import Any, Protocol
from urllib.parse import urlsplit

import requests

from m365sync.errors import (
    GraphError,
    InsufficientPermissions,
    MailboxUnavailable,
    MalformedResponse,
    NeedsReconnect,
    NotFound,
    PreconditionFailed,
    SyncStateGone,
    Throttled,
    Transient,
)
from m365sync.graph.transport import certificate_refused, tls_untrusted

log = logging.getLogger("m365sync.graph")

#: Statuses worth another attempt of an idempotent request.
RETRY_STATUSES = frozenset({429, 502, 503, 504})

#: Codes (lower case) meaning "this mailbox cannot be read over REST at all".
MAILBOX_UNAVAILABLE_CODES = frozenset(
    {
        "mailboxnotenabledforrestapi",
        "restapinotenabledforcomponentsharedmailbox",
        "errorinvalidlicense",
        "errornonexistentmailbox",
        "errororganizationaccessblocked",
    }
)

#: 403 codes (lower case) meaning "the token works, but may not do this".
ACCESS_DENIED_CODES = frozenset(
    {"erroraccessdenied", "accessdenied", "authorization_requestdenied"}
)

_MAX_MESSAGE = 300


class TokenProvider(Protocol):
    """Anything that hands out a bearer token for one mailbox (``auth.AccountTokens``)."""

    def access_token(self, force_refresh: bool = False) -> str: ...


# --- pure helpers ---------------------------------------------------------------------------


def parse_retry_after(value: str | None, *, now: float) -> float | None:
    """Seconds to wait from a ``Retry-After`` value, or None when absent or unreadable.

    Accepts decimal seconds (``2.128``, what Graph documents; urllib3 rejects it) and HTTP
    dates (RFC 9110). ``now`` is the wall clock in epoch seconds, for the date form.
    """
    if value is None:
        return None
    text = value.strip()
    if not text:
        return None
    try:
        seconds = float(text)
    except ValueError:
        seconds = None
    if seconds is not None:
        return max(seconds, 0.0) if math.isfinite(seconds) else None
    try:
        when = email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    if when is None or when.tzinfo is None:
        return None
    return max(when.timestamp() - now, 0.0)


def error_details(response: requests.Response) -> tuple[str | None, str, str | None]:
    """``(code, message, request_id)`` from any error body: JSON, empty, HTML or garbage.

    Never raises: innerError may be absent, message empty, the body an HTML error page.
    """
    code: str | None = None
    message = ""
    request_id = response.headers.get("request-id")
    try:
        payload = response.json()
    except ValueError:
        payload = None
    error = payload.get("error") if isinstance(payload, dict) else None
    if isinstance(error, dict):
        raw_code = error.get("code")
        code = raw_code if isinstance(raw_code, str) and raw_code else None
        raw_message = error.get("message")
        message = raw_message if isinstance(raw_message, str) else ""
        inner = error.get("innerError") or error.get("innererror")
        if request_id is None and isinstance(inner, dict):
            inner_id = inner.get("request-id")
            request_id = inner_id if isinstance(inner_id, str) else None
    elif isinstance(error, str):  # OAuth-style {"error": "invalid_token", ...}
        code = error
    if len(message) > _MAX_MESSAGE:
        message = message[:_MAX_MESSAGE] + "..."
    return code, message, request_id


def error_for(
    status: int,
    code: str | None,
    message: str,
    *,
    request_id: str | None = None,
    retry_after: float | None = None,
) -> GraphError:
    """The typed error for an HTTP status and Graph error code (compared case-insensitively)."""
    key = (code or "").lower()
    text = f"HTTP {status} {code or 'no error code'}" + (f": {message}" if message else "")
    kw: dict[str, Any] = {"status": status, "code": code, "request_id": request_id}
    if status == 410:
        return SyncStateGone(text, **kw)
    if key in MAILBOX_UNAVAILABLE_CODES:
        return MailboxUnavailable(text, **kw)
    if status == 401:
        return NeedsReconnect(text, **kw)
    if status == 403 and key in ACCESS_DENIED_CODES:
        return InsufficientPermissions(text, **kw)
    if status == 404:
        return NotFound(text, **kw)
    if status == 412:
        return PreconditionFailed(text, **kw)
    if status == 429:
        return Throttled(text, retry_after=retry_after if retry_after is not None else 0.0, **kw)
    if status >= 500:
        return Transient(text, **kw)
    return GraphError(text, **kw)


def response_error(response: requests.Response, *, now: float) -> GraphError:
    code, message, request_id = error_details(response)
    retry_after = parse_retry_after(response.headers.get("Retry-After"), now=now)
    return error_for(
        response.status_code, code, message, request_id=request_id, retry_after=retry_after
    )


def path_of(url: str) -> str:
    """What logs may show of a URL: its path, never its query (delta tokens, filters)."""
    return urlsplit(url).path


# --- the client -----------------------------------------------------------------------------


class GraphClient:
    """Graph requests for one mailbox: auth header, concurrency cap, retries, typed errors."""

    def __init__(
        self,
        session: requests.Session,
        base_url: str,
        token_provider: TokenProvider,
        *,
        max_concurrency: int = 4,
        retry_budget_seconds: float = 120.0,
        max_attempts: int = 8,
        backoff_base: float = 1.0,
        backoff_cap: float = 60.0,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.time,
        jitter: Callable[[], float] = random.random,
        timeout: float | tuple[float, float] | None = None,
    ) -> None:
        self._session = session
        self._timeout = timeout  # None: the session's default (transport.DEFAULT_TIMEOUT)
        self._base = base_url.rstrip("/")
        base = urlsplit(self._base)
        self._origin = (base.scheme.lower(), base.hostname, _port(base))
        self._tokens = token_provider
        self._slots = threading.BoundedSemaphore(max_concurrency)
        self._count_lock = threading.Lock()
        self.requests_sent = 0  # HTTP requests sent to Graph (the cycle's figures)
        self._budget = retry_budget_seconds
        self._max_attempts = max_attempts
        self._backoff_base = backoff_base
        self._backoff_cap = backoff_cap
        self._sleep = sleep
        self._clock = clock
        self._jitter = jitter

    # --- public verbs -------------------------------------------------------------------

    def get_json(
        self,
        url_or_path: str,
        *,
        params: Mapping[str, str] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> dict[str, Any]:
        response = self.request("GET", url_or_path, params=params, headers=headers)
        payload = _json_body(response, allow_empty=False)
        assert payload is not None
        return payload

    def post_json(
        self,
        url_or_path: str,
        body: Any | None = None,
        *,
        headers: Mapping[str, str] | None = None,
        idempotent: bool = False,
    ) -> dict[str, Any]:
        """POST; ``{}`` for 202/204 without a body (sendMail, send). Retried only if idempotent."""
        response = self.request(
            "POST", url_or_path, json_body=body, headers=headers, idempotent=idempotent
        )
        return _json_body(response, allow_empty=True) or {}

    def patch_json(
        self,
        url_or_path: str,
        body: Any,
        *,
        headers: Mapping[str, str] | None = None,
        idempotent: bool = False,
    ) -> dict[str, Any]:
        response = self.request(
            "PATCH", url_or_path, json_body=body, headers=headers, idempotent=idempotent
        )
        return _json_body(response, allow_empty=True) or {}

    def delete(self, url_or_path: str, *, headers: Mapping[str, str] | None = None) -> None:
        self.request("DELETE", url_or_path, headers=headers)

    def iter_pages(
        self,
        url_or_path: str,
        *,
        params: Mapping[str, str] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> Iterator[dict[str, Any]]:
        """Yield each page, following ``@odata.nextLink`` verbatim (query options only once).

        The last page carries ``@odata.deltaLink`` or no link at all. Headers are sent on
        every request, because Prefer values apply only to the request that carries them.
        """
        page = self.get_json(url_or_path, params=params, headers=headers)
        while True:
            yield page
            next_link = page.get("@odata.nextLink")
            if not next_link:
                return
            if not isinstance(next_link, str):
                raise MalformedResponse("@odata.nextLink is not a string")
            page = self.get_json(next_link, headers=headers)

    # --- the one request loop -----------------------------------------------------------

    def request(
        self,
        method: str,
        url_or_path: str,
        *,
        params: Mapping[str, str] | None = None,
        headers: Mapping[str, str] | None = None,
        json_body: Any | None = None,
        idempotent: bool | None = None,
    ) -> requests.Response:
        """Send with retries; return a 2xx response or raise a typed ``GraphError``."""
        url = self.url_for(url_or_path)
        retryable = method in ("GET", "HEAD", "DELETE", "PUT") if idempotent is None else idempotent
        waited = 0.0
        refreshed = False
        attempt = 0
        while True:
            attempt += 1
            response = self._send_once(method, url, params, headers, json_body, refreshed)
            status = response.status_code
            log.debug("graph %s %s -> %s (attempt %d)", method, path_of(url), status, attempt)
            if 200 <= status < 300:
                return response
            if status == 401 and not refreshed:
                refreshed = True  # the next _send_once forces a token refresh, once
                log.info("graph %s %s -> 401, refreshing the token once", method, path_of(url))
                continue
            error = response_error(response, now=self._clock())
            if not (retryable and status in RETRY_STATUSES) or isinstance(
                error, MailboxUnavailable
            ):
                raise self._final(error, status, self._wait_for(response, attempt))
            wait = self._wait_for(response, attempt)
            if attempt >= self._max_attempts or waited + wait > self._budget:
                raise self._give_up(error, status, wait, attempt, waited)
            log.warning(
                "graph %s %s -> %s (attempt %d), retrying in %.3fs",
                method,
                path_of(url),
                status,
                attempt,
                wait,
            )
            self._sleep(wait)
            waited += wait

    @property
    def token_provider(self) -> TokenProvider:
        return self._tokens

    def url_for(self, url_or_path: str) -> str:
        """Absolute links (nextLink, deltaLink) verbatim; paths joined to the base URL.

        An absolute link on another origin is refused: following it would hand the mailbox's
        bearer token to a host we were never configured to trust.
        """
        if url_or_path.lower().startswith(("https://", "http://")):
            parts = urlsplit(url_or_path)
            if (parts.scheme.lower(), parts.hostname, _port(parts)) != self._origin:
                raise MalformedResponse(
                    f"refusing to follow a link to another host ({parts.hostname})"
                )
            return url_or_path
        return f"{self._base}/{url_or_path.lstrip('/')}"

    # --- internals ----------------------------------------------------------------------

    def _send_once(
        self,
        method: str,
        url: str,
        params: Mapping[str, str] | None,
        headers: Mapping[str, str] | None,
        json_body: Any | None,
        force_refresh: bool,
    ) -> requests.Response:
        token = self._tokens.access_token(force_refresh=force_refresh)
        with self._count_lock:
            self.requests_sent += 1
        merged = {**(headers or {})}
        merged["Authorization"] = f"Bearer {token}"
        merged.setdefault("client-request-id", str(uuid.uuid4()))
        try:
            with self._slots:
                return self._session.request(
                    method,
                    url,
                    params=dict(params) if params else None,
                    headers=merged,
                    json=json_body,
                    timeout=self._timeout,
                )
        except requests.RequestException as exc:
            if isinstance(exc, requests.exceptions.SSLError) and certificate_refused(exc):
                parts = urlsplit(url)
                raise GraphError(
                    tls_untrusted(f"{parts.scheme}://{parts.netloc}"),
                    code="tls_verification_failed",
                ) from exc
            raise Transient(
                f"{method} {path_of(url)} failed before an HTTP answer: {type(exc).__name__}",
                code="connection_failed",
            ) from exc

    def _wait_for(self, response: requests.Response, attempt: int) -> float:
        asked = parse_retry_after(response.headers.get("Retry-After"), now=self._clock())
        if asked is not None:
            return asked
        ceiling = min(self._backoff_cap, self._backoff_base * 2 ** (attempt - 1))
        return ceiling / 2 + self._jitter() * ceiling / 2

    def _final(self, error: GraphError, status: int, wait: float) -> GraphError:
        if isinstance(error, Throttled) and not error.retry_after:
            error.retry_after = wait  # no Retry-After: tell the scheduler our backoff instead
        if status == 401:
            return NeedsReconnect(
                f"Graph still refuses the token after a refresh ({error})",
                status=error.status,
                code=error.code or "InvalidAuthenticationToken",
                request_id=error.request_id,
            )
        return error

    def _give_up(
        self, error: GraphError, status: int, wait: float, attempt: int, waited: float
    ) -> GraphError:
        text = f"{error} (gave up after {attempt} attempts and {waited:.1f}s of waiting)"
        kw: dict[str, Any] = {"status": status, "code": error.code, "request_id": error.request_id}
        if status == 429:
            return Throttled(text, retry_after=wait, **kw)
        return Transient(text, **kw)


def _port(parts: Any) -> int | None:
    try:
        port = parts.port
    except ValueError:
        return None
    if port is not None:
        return port
    return {"https": 443, "http": 80}.get(parts.scheme.lower())


def _json_body(response: requests.Response, *, allow_empty: bool) -> dict[str, Any] | None:
    """The JSON object of a 2xx answer; an HTML page or broken JSON is MalformedResponse."""
    if allow_empty and (response.status_code == 204 or not response.content.strip()):
        return None
    try:
        payload = response.json()
    except ValueError as exc:
        kind = response.headers.get("Content-Type", "no content type").split(";")[0]
        raise MalformedResponse(
            f"Graph answered {response.status_code} with something that is not JSON ({kind})",
            status=response.status_code,
            request_id=response.headers.get("request-id"),
        ) from exc
    if not isinstance(payload, dict):
        raise MalformedResponse(
            f"Graph answered {response.status_code} with JSON that is not an object",
            status=response.status_code,
        )
    return payload
