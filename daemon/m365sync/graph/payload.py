"""Reading Graph's JSON the same way for every resource (messages, events, folders).

A field of the wrong type makes the item unreadable, never the page: the readers raise the
resource's own error (``bad``: `mail.BadItem`, `calendar.BadEvent`), which its page parser turns
into a `domain.RejectedItem`. A paging link that is not a usable string makes the whole page
unusable (`errors.MalformedResponse`): its cursor cannot be stored.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any, Protocol
from urllib.parse import quote, urlencode

from m365sync.errors import MalformedResponse


def opt_str(item: Mapping[str, Any], key: str, bad: type[ValueError]) -> str | None:
    value = item.get(key)
    if value is None or isinstance(value, str):
        return value
    raise bad(f"{key} is a {type(value).__name__}, not a string")


def opt_bool(item: Mapping[str, Any], key: str, bad: type[ValueError]) -> bool:
    value = item.get(key)
    if value is None:
        return False
    if isinstance(value, bool):
        return value
    raise bad(f"{key} is a {type(value).__name__}, not a boolean")


def page_link(payload: Mapping[str, Any], key: str) -> str | None:
    """``@odata.nextLink`` / ``@odata.deltaLink``: absent, or a non-empty string."""
    value = payload.get(key)
    if value is None or (isinstance(value, str) and value):
        return value
    raise MalformedResponse(f"{key} is not a usable link")


def odata_query(params: Mapping[str, str], *, safe: str = "$,") -> str:
    """Percent-encode with %20, not '+': OData readers do not all take '+' for a space."""
    return urlencode(params, quote_via=quote, safe=safe)


class PagingClient(Protocol):
    """What a reader needs of ``client.GraphClient``."""

    def get_json(
        self,
        url_or_path: str,
        *,
        params: Mapping[str, str] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> dict[str, Any]: ...

    def iter_pages(
        self,
        url_or_path: str,
        *,
        params: Mapping[str, str] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> Iterator[dict[str, Any]]: ...
