"""The one HTTP seam: a requests Session used for Graph and handed to msal as ``http_client``.

Why a Session subclass that sets ``verify`` on every request: requests lets the environment
(``REQUESTS_CA_BUNDLE`` / ``CURL_CA_BUNDLE``) override ``Session.verify`` whenever the
per-request ``verify`` is None or True (``Session.merge_environment_settings``). A configured CA
bundle (national cloud, our TLS emulator) must win, including for msal's own requests, which
call ``.get``/``.post`` without ``verify`` and without ``timeout``.
"""

from __future__ import annotations

import ssl
from typing import Any

import requests
from requests.adapters import HTTPAdapter
from urllib3.util import Retry

#: (connect, read) seconds. msal passes no timeout at all, so a default is mandatory.
DEFAULT_TIMEOUT: tuple[float, float] = (10.0, 100.0)


def certificate_refused(error: BaseException) -> bool:
    """Whether a TLS failure is our trust refusing the server's certificate, as opposed to the
    handshake being cut (a dropped connection, a proxy hanging up, a reset): requests raises
    ``SSLError`` for both, and only the first is fixed by ``microsoft.ca_bundle``; the second is
    a connection failure like any other, retried by the next cycle. (The reliability soak's
    dropped connections were reported as "TLS verification failed ... set
    microsoft.ca_bundle".)"""
    seen: set[int] = set()
    pending: list[BaseException] = [error]
    while pending:
        current = pending.pop()
        if id(current) in seen:
            continue
        seen.add(id(current))
        if isinstance(current, ssl.SSLCertVerificationError):
            return True
        pending += [e for e in (current.__cause__, current.__context__) if e is not None]
        pending += [a for a in current.args if isinstance(a, BaseException)]
        reason = getattr(current, "reason", None)  # urllib3's MaxRetryError
        if isinstance(reason, BaseException):
            pending.append(reason)
    return "certificate verify failed" in str(error).lower()


def tls_untrusted(url: str) -> str:
    """The one sentence for a server whose certificate the configured trust does not accept
    (check-config, connect and the sync cycles all say it the same way)."""
    return f"TLS verification failed for {url}: set microsoft.ca_bundle to the CA that signed it."


def connection_retry() -> Retry:
    """Retries for failures below HTTP only; statuses are the GraphClient's business.

    ``status_forcelist`` stays empty and ``respect_retry_after_header`` False on purpose:
    urllib3's ``Retry.parse_retry_after`` accepts only integers or HTTP dates and raises
    ``InvalidHeader`` on Graph's documented decimal ``Retry-After: 2.128``; and only the
    GraphClient knows whether a POST may be resent. Connect errors are retried for every
    method (nothing was sent yet); read errors only for idempotent methods (urllib3's
    ``allowed_methods`` default: GET, HEAD, PUT, DELETE, OPTIONS, TRACE).
    """
    return Retry(
        total=3,
        connect=3,
        read=2,
        status=0,
        other=0,
        allowed_methods=Retry.DEFAULT_ALLOWED_METHODS,
        status_forcelist=(),
        backoff_factor=0.5,
        backoff_max=8.0,
        respect_retry_after_header=False,
        raise_on_status=False,
        raise_on_redirect=False,
    )


class GraphSession(requests.Session):
    """A Session whose TLS trust and timeout cannot be overridden by the environment."""

    def __init__(
        self,
        ca_bundle: str | None,
        *,
        user_agent: str,
        timeout: tuple[float, float] = DEFAULT_TIMEOUT,
        pool_connections: int = 8,
        pool_maxsize: int = 32,
    ) -> None:
        super().__init__()
        self.forced_verify: str | bool = ca_bundle if ca_bundle else True
        self.verify = self.forced_verify
        self.default_timeout = timeout
        self.headers["User-Agent"] = user_agent
        adapter = HTTPAdapter(
            pool_connections=pool_connections,
            pool_maxsize=pool_maxsize,
            max_retries=connection_retry(),
        )
        self.mount("https://", adapter)
        self.mount("http://", adapter)

    def request(  # type: ignore[override]
        self, method: str | bytes, url: str | bytes, *args: Any, **kwargs: Any
    ) -> requests.Response:
        if len(args) > 6:  # params, data, headers, cookies, files, auth; timeout comes next
            raise TypeError("pass timeout, verify and later arguments by keyword")
        kwargs["verify"] = self.forced_verify
        if kwargs.get("timeout") is None:
            kwargs["timeout"] = self.default_timeout
        return super().request(method, url, *args, **kwargs)


def make_session(
    ca_bundle: str | None,
    *,
    user_agent: str,
    pool_connections: int = 8,
    pool_maxsize: int = 32,
) -> GraphSession:
    """A session for Graph and msal. ``ca_bundle`` None means the system's default trust.

    ``pool_maxsize`` bounds open connections per host; with 4 requests in flight per
    mailbox, 32 serves eight busy mailboxes sharing one session without churn.
    """
    return GraphSession(
        ca_bundle,
        user_agent=user_agent,
        pool_connections=pool_connections,
        pool_maxsize=pool_maxsize,
    )
