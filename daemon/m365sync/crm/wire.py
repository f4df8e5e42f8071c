"""The JSON shapes the daemon and a remote CRM (the Odoo addon) exchange.

A remote gateway cannot send dataclasses: every value crosses as JSON. The rule is simple so
the addon can follow it without importing this package: a dataclass becomes an object with
its field names as keys; enums become their value; datetimes become ISO-8601 strings in UTC
with an offset (``2026-11-25T12:00:00+00:00``); dates become ``YYYY-MM-DD``; tuples become
lists; dict keys stay strings (integer keys are sent as strings and read back as integers);
bytes (an outgoing attachment's content) become standard base64 text (RFC 4648, with padding).
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import enum
import types
import typing
from datetime import UTC, date, datetime
from typing import Any, TypeVar

T = TypeVar("T")


def to_wire(value: Any) -> Any:
    """Dataclasses, enums, dates and containers -> JSON-compatible values."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: to_wire(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, datetime):
        aware = value if value.tzinfo else value.replace(tzinfo=UTC)
        return aware.astimezone(UTC).isoformat()
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, bytes | bytearray | memoryview):
        return base64.b64encode(bytes(value)).decode("ascii")
    if isinstance(value, dict):
        return {str(k): to_wire(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [to_wire(v) for v in value]
    return value


def from_wire(cls: type[T], data: Any, *, false_is_absent: bool = False) -> T:
    """The inverse of `to_wire` for a dataclass type (missing optional fields take defaults).

    ``false_is_absent``: the sender writes False where a value is absent (Odoo's ORM does,
    and XML-RPC cannot carry None); it is read as None, or as the type's empty value (``""``,
    ``0``, an empty list), wherever the type is not ``bool``.
    """
    return _read(cls, data, false_is_absent)  # type: ignore[return-value]


def _read(kind: Any, data: Any, false_is_absent: bool = False) -> Any:
    if data is False and false_is_absent and kind is not bool and kind is not Any:
        data = _absent(kind)
    if data is None:
        return None
    origin = typing.get_origin(kind)
    args = typing.get_args(kind)
    if origin in (typing.Union, types.UnionType):
        options = [a for a in args if a is not type(None)]
        return _read(options[0], data, false_is_absent) if len(options) == 1 else data
    if dataclasses.is_dataclass(kind):
        hints = typing.get_type_hints(kind)
        known = {f.name for f in dataclasses.fields(kind)}
        return kind(
            **{k: _read(hints[k], v, false_is_absent) for k, v in data.items() if k in known}
        )
    if origin is tuple:
        inner = args[0] if args else Any
        return tuple(_read(inner, v, false_is_absent) for v in data)
    if origin is list:
        return [_read(args[0] if args else Any, v, false_is_absent) for v in data]
    if origin is dict:
        key_type, value_type = args if args else (Any, Any)
        return {_read(key_type, k): _read(value_type, v, false_is_absent) for k, v in data.items()}
    if isinstance(kind, type):
        if issubclass(kind, enum.Enum):
            return kind(data)
        if kind is datetime:
            parsed = datetime.fromisoformat(data)
            return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
        if kind is date:
            return date.fromisoformat(data)
        if kind is int:
            return int(data)
        if kind is bytes:
            return _bytes(data)
    return data


def _absent(kind: Any) -> Any:
    """What an absent value of ``kind`` is: None where the type allows it, else the type's
    empty value; False stays where the type has none (reading it then fails, as it should)."""
    origin = typing.get_origin(kind)
    if origin in (typing.Union, types.UnionType) and type(None) in typing.get_args(kind):
        return None
    if kind in (str, bytes, int, float):
        return kind()
    if origin in (tuple, list):
        return []
    if origin is dict:
        return {}
    return False


def _bytes(data: Any) -> bytes:
    """Base64 text (as `to_wire` writes it; line breaks allowed) -> bytes; bytes pass through,
    and so does XML-RPC's ``Binary``."""
    if isinstance(data, bytes | bytearray):
        return bytes(data)
    if hasattr(data, "data") and isinstance(data.data, bytes):  # xmlrpc.client.Binary
        return data.data
    try:
        return base64.b64decode("".join(str(data).split()), validate=True)
    except binascii.Error as error:
        raise ValueError(f"not base64: {error}") from None
