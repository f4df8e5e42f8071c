"""Fault injection and the request log: how tests make Graph misbehave, and watch the client.

The failures are the ones GRAPH-FACTS.md says a sync engine meets in production: 429 with a
decimal ``Retry-After`` (``TooManyRequests`` or ``ApplicationThrottled`` for the mailbox
concurrency limit), 503 ``UnknownError`` and 504 mid-round, 410 ``SyncStateNotFound`` with the
real bare body (no innerError), HTML error pages where JSON was expected, slow answers, and a
TCP connection closed without any answer. Each rule matches a path regex (``re.search`` on the
request path, e.g. ``/v1.0/me/mailFolders/[^/]+/messages/delta``), optionally a method and a
``query`` regex on the (URL-decoded) query string -- ``query=r"[$](delta|skip)token="`` makes a
410 hit only requests that carry a cursor -- and applies ``times`` times (``None``: forever).
The first matching rule with uses left wins.

The server consults the plan for identity and Graph requests (after authentication for Graph),
never for the control API. The request log never records Authorization headers or bodies.
"""

from __future__ import annotations

import re
import threading
import time
from dataclasses import asdict, dataclass, field
from typing import Any
from urllib.parse import unquote

from werkzeug.wrappers import Request, Response

from m365sync.emulator.wire import graph_error

DEFAULTS: dict[str, dict[str, Any]] = {
    "throttle": {"retry_after": "2.128", "code": "TooManyRequests"},
    "unavailable": {"retry_after": None, "code": "UnknownError"},
    "gateway_timeout": {},
    "drop_connection": {},
    # The request takes effect (a /send sends), then the connection closes without an answer.
    "send_then_drop": {},
    "slow": {"seconds": 1.0},
    "gone": {"generation": 7},
    "html_error": {"status": 500},
    # Any Graph error by status and code, e.g. 404 MailboxNotEnabledForRESTAPI.
    "error": {"status": 400, "code": "BadRequest", "message": ""},
}
"""Each kind's parameters and their defaults (the control API sends them by name)."""

KINDS = frozenset(DEFAULTS)


DROP_AFTER = "m365sync.emulator.drop_after"
"""WSGI environ key: answer the request normally, then drop the connection (send_then_drop)."""


class DropConnection(Exception):
    """Raised by a fault: the server closes the TCP connection without an HTTP answer."""


@dataclass
class FaultRule:
    """One rule: what to match, what to do, how many more times."""

    kind: str
    path: str
    method: str | None = None
    times: int | None = 1
    params: dict[str, Any] = field(default_factory=dict)
    hits: int = 0
    query: str | None = None

    def matches(self, method: str, path: str, query: str = "") -> bool:
        if self.times is not None and self.hits >= self.times:
            return False
        if self.method and self.method.upper() != method.upper():
            return False
        if self.query is not None and re.search(self.query, query) is None:
            return False
        return re.search(self.path, path) is not None

    def describe(self) -> dict[str, Any]:
        """A JSON-able view (control API)."""
        return asdict(self)


class FaultPlan:
    """The rules in force; thread-safe because the server is threaded."""

    def __init__(self, identity: Any = None) -> None:
        self.identity = identity
        self._lock = threading.Lock()
        self._rules: list[FaultRule] = []

    # --- adding rules ------------------------------------------------------------------------

    def add(
        self,
        kind: str,
        path: str,
        *,
        method: str | None = None,
        times: int | None = 1,
        query: str | None = None,
        **params: Any,
    ) -> FaultRule:
        """Add a rule of any kind (the control API's entry point)."""
        if kind not in KINDS:
            raise ValueError(f"unknown fault kind {kind!r}; one of {sorted(KINDS)}")
        unknown = set(params) - set(DEFAULTS[kind])
        if unknown:
            raise TypeError(f"fault {kind!r} takes no {sorted(unknown)}")
        re.compile(path)  # fail now, not on the next request
        if query is not None:
            re.compile(query)
        rule = FaultRule(kind, path, method, times, {**DEFAULTS[kind], **params}, query=query)
        with self._lock:
            self._rules.append(rule)
        return rule

    def throttle(
        self,
        path: str,
        times: int | None = 1,
        retry_after: str | None = "2.128",
        code: str = "TooManyRequests",
        *,
        method: str | None = None,
    ) -> FaultRule:
        """429 with ``Retry-After`` (decimal seconds, as Graph documents) and a bare body.

        ``code="ApplicationThrottled"`` gives the mailbox-concurrency variant.
        """
        return self.add(
            "throttle", path, method=method, times=times, retry_after=retry_after, code=code
        )

    def unavailable(
        self,
        path: str,
        times: int | None = 1,
        retry_after: str | None = None,
        code: str = "UnknownError",
        *,
        method: str | None = None,
    ) -> FaultRule:
        """503 (``UnknownError`` as Outlook sends it, or ``ServiceUnavailable``)."""
        return self.add(
            "unavailable", path, method=method, times=times, retry_after=retry_after, code=code
        )

    def gateway_timeout(
        self, path: str, times: int | None = 1, *, method: str | None = None
    ) -> FaultRule:
        """504 Gateway Timeout, as seen on calendarView delta over endless series."""
        return self.add("gateway_timeout", path, method=method, times=times)

    def drop_connection(
        self, path: str, times: int | None = 1, *, method: str | None = None
    ) -> FaultRule:
        """Close the TCP connection without answering (the client sees a ConnectionError)."""
        return self.add("drop_connection", path, method=method, times=times)

    def send_then_drop(
        self, path: str, times: int | None = 1, *, method: str | None = None
    ) -> FaultRule:
        """Carry the request out (a ``/send`` sends), then close the connection without its
        answer: the client cannot tell whether it took effect ("the daemon died between Graph
        and the CRM")."""
        return self.add("send_then_drop", path, method=method, times=times)

    def slow(
        self, path: str, seconds: float, times: int | None = 1, *, method: str | None = None
    ) -> FaultRule:
        """Wait ``seconds`` and then answer normally (client timeouts, concurrency)."""
        return self.add("slow", path, method=method, times=times, seconds=float(seconds))

    def gone(
        self,
        path: str,
        times: int | None = 1,
        *,
        method: str | None = None,
        generation: int = 7,
        query: str | None = None,
    ) -> FaultRule:
        """410 ``SyncStateNotFound`` with the real, innerError-less body."""
        return self.add(
            "gone", path, method=method, times=times, query=query, generation=generation
        )

    def html_error(
        self, path: str, status: int = 500, times: int | None = 1, *, method: str | None = None
    ) -> FaultRule:
        """An HTML page where JSON was expected (a proxy or front door answering)."""
        return self.add("html_error", path, method=method, times=times, status=int(status))

    def error(
        self,
        path: str,
        status: int,
        code: str,
        message: str = "",
        times: int | None = 1,
        *,
        method: str | None = None,
    ) -> FaultRule:
        """Any Graph error in Graph's shape: permanent mailbox states, odd codes."""
        return self.add(
            "error",
            path,
            method=method,
            times=times,
            status=int(status),
            code=code,
            message=message,
        )

    def expired_token(self) -> int:
        """Every access token issued so far is expired now (Graph answers 401)."""
        if self.identity is None:
            raise RuntimeError("this FaultPlan has no identity to expire tokens of")
        return int(self.identity.expire_access_tokens())

    def clear(self) -> None:
        """Forget every rule."""
        with self._lock:
            self._rules.clear()

    @property
    def rules(self) -> list[FaultRule]:
        with self._lock:
            return list(self._rules)

    # --- applying rules -----------------------------------------------------------------------

    def take(self, method: str, path: str, query: str = "") -> FaultRule | None:
        """Atomically consume one use of the first matching rule, if any."""
        with self._lock:
            for rule in self._rules:
                if rule.matches(method, path, query):
                    rule.hits += 1
                    return rule
        return None

    def respond(self, request: Request) -> Response | None:
        """The faulty answer for this request, or None to answer normally.

        Raises `DropConnection` when the connection must be closed without an answer.
        """
        query = unquote(request.query_string.decode("latin-1"))
        rule = self.take(request.method, request.path, query)
        if rule is None:
            return None
        request.environ["m365sync.emulator.fault"] = rule.kind
        return render(rule, request)


def render(rule: FaultRule, request: Request) -> Response | None:
    """Turn a rule into its response (None after a delay for ``slow``)."""
    p = rule.params
    if rule.kind == "slow":
        time.sleep(float(p["seconds"]))
        return None
    if rule.kind == "drop_connection":
        raise DropConnection(request.path)
    if rule.kind == "send_then_drop":
        request.environ[DROP_AFTER] = True
        return None
    if rule.kind == "throttle":
        headers = {"Retry-After": str(p["retry_after"])} if p.get("retry_after") else None
        message = (
            "Application is over its MailboxConcurrency limit."
            if p["code"] == "ApplicationThrottled"
            else "Please retry again later."
        )
        return graph_error(429, p["code"], message, inner_error=False, headers=headers)
    if rule.kind == "unavailable":
        headers = {"Retry-After": str(p["retry_after"])} if p.get("retry_after") else None
        return graph_error(
            503,
            p["code"],
            "Service is unavailable, please try again later.",
            inner_error=False,
            headers=headers,
        )
    if rule.kind == "gateway_timeout":
        return graph_error(
            504,
            "UnknownError",
            "The gateway did not receive a response in time.",
            request=request,
        )
    if rule.kind == "gone":
        generation = int(p.get("generation", 7))
        return graph_error(
            410,
            "SyncStateNotFound",
            f"The sync state generation is not found; generation={generation};"
            f"[highest={generation + 1}][hasFullState=true].",
            inner_error=False,
        )
    if rule.kind == "html_error":
        status = int(p.get("status", 500))
        page = (
            "<!DOCTYPE html><html><head><title>Service unavailable</title></head><body>"
            f"<h2>{status} - The service is temporarily unavailable.</h2>"
            "<p>Please try again later.</p></body></html>"
        )
        return Response(page, status=status, content_type="text/html")
    if rule.kind == "error":
        return graph_error(int(p["status"]), p["code"], p["message"] or p["code"], request=request)
    raise ValueError(f"unknown fault kind {rule.kind!r}")


# --- request log ------------------------------------------------------------------------------


@dataclass(frozen=True)
class RequestRecord:
    """One request as the emulator saw it. Never holds Authorization headers or bodies."""

    method: str
    path: str
    query: str
    status: int | None  # None: the connection was dropped without an answer
    prefer: str | None
    fault: str | None = None
    at: float = 0.0
    duration: float = 0.0
    in_batch: bool = False  # one request of a $batch (the envelope has its own record)

    def describe(self) -> dict[str, Any]:
        return asdict(self)


class RequestLog:
    """Thread-safe, bounded list of `RequestRecord` (oldest forgotten first)."""

    def __init__(self, limit: int = 100_000) -> None:
        self._lock = threading.Lock()
        self._records: list[RequestRecord] = []
        self.limit = limit

    def append(self, record: RequestRecord) -> None:
        with self._lock:
            self._records.append(record)
            if len(self._records) > self.limit:
                del self._records[: len(self._records) - self.limit]

    def records(self) -> list[RequestRecord]:
        with self._lock:
            return list(self._records)

    def clear(self) -> None:
        with self._lock:
            self._records.clear()
