"""Configuration: a TOML file, then environment overrides, then validation in one sentence.

Every endpoint is configurable (authority host, tenant, Graph base URL, CA bundle, redirect
URI): that is what national clouds need, and what lets the same daemon run against the
emulator. Environment variables override the file as ``M365SYNC_<SECTION>__<KEY>``
(e.g. ``M365SYNC_MICROSOFT__CLIENT_ID``); lists are comma-separated.
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass, field, fields, replace
from datetime import date
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import platformdirs

from m365sync.domain import AutoCreate, FolderChoice, Privacy
from m365sync.errors import ConfigError

ENV_PREFIX = "M365SYNC_"
CONFIG_ENV = "M365SYNC_CONFIG"
DEFAULT_SCOPES = ("User.Read", "Mail.Read", "Mail.Send", "Calendars.ReadWrite")
# msal adds these itself and refuses them when passed explicitly.
RESERVED_SCOPES = frozenset({"openid", "profile", "offline_access"})
MICROSOFT_AUTHORITY_HOSTS = frozenset(
    {
        "login.microsoftonline.com",
        "login.microsoftonline.us",
        "login.chinacloudapi.cn",
        "login.partner.microsoftonline.cn",
        "login.microsoftonline.de",
    }
)


def default_data_dir() -> Path:
    return Path(platformdirs.user_data_dir("m365sync", appauthor=False))


@dataclass(frozen=True, slots=True)
class MicrosoftConfig:
    client_id: str = ""
    client_secret: str = field(default="", repr=False)  # never printed, never logged
    # A file holding the secret (e.g. a systemd credential) wins over client_secret.
    client_secret_file: str = ""
    client_secret_expires: date | None = None
    tenant: str = "common"
    authority_host: str = "https://login.microsoftonline.com"
    graph_base_url: str = "https://graph.microsoft.com/v1.0"
    redirect_uri: str = "http://localhost:8400/"
    scopes: tuple[str, ...] = DEFAULT_SCOPES
    ca_bundle: str = ""
    timeout_seconds: float = 60.0

    @property
    def authority(self) -> str:
        return f"{self.authority_host.rstrip('/')}/{self.tenant}"

    @property
    def is_microsoft_cloud(self) -> bool:
        return (urlsplit(self.authority_host).hostname or "") in MICROSOFT_AUTHORITY_HOSTS

    def secret(self) -> str:
        """The client secret, read from ``client_secret_file`` when one is configured."""
        if self.client_secret_file:
            try:
                return Path(self.client_secret_file).read_text(encoding="utf-8").strip()
            except OSError as exc:
                raise ConfigError(
                    f"Cannot read microsoft.client_secret_file {self.client_secret_file!r}: "
                    f"{exc.strerror}."
                ) from exc
        return self.client_secret


@dataclass(frozen=True, slots=True)
class StoreConfig:
    backend: str = "sqlite"  # sqlite | odoo
    path: str = ""  # sqlite file; default under the user's data directory

    def sqlite_path(self) -> Path:
        return Path(self.path).expanduser() if self.path else default_data_dir() / "store.sqlite3"


@dataclass(frozen=True, slots=True)
class OdooConfig:
    url: str = ""
    db: str = ""
    user: str = ""
    api_key: str = field(default="", repr=False)  # never printed, never logged
    # A file holding the key (a docker or systemd secret) wins over api_key.
    api_key_file: str = ""
    protocol: str = "xmlrpc"  # xmlrpc (Odoo 17/18) | json2 (Odoo 19+)
    ca_bundle: str = ""  # a PEM to trust for the CRM's HTTPS (default: the system store)
    timeout_seconds: float = 120.0

    def key(self) -> str:
        """The API key, read from ``api_key_file`` when one is configured."""
        if self.api_key_file:
            try:
                return Path(self.api_key_file).read_text(encoding="utf-8").strip()
            except OSError as exc:
                raise ConfigError(
                    f"Cannot read odoo.api_key_file {self.api_key_file!r}: {exc.strerror}."
                ) from exc
        return self.api_key


@dataclass(frozen=True, slots=True)
class SyncConfig:
    # Which mail folders an account without a choice of its own syncs: inbox_sent (Inbox
    # and Sent Items), all (every mail folder but Deleted Items, Junk Email, Drafts, Outbox,
    # Conversation History and search folders) or chosen (``mail_folders``). Left empty, it
    # is chosen when ``mail_folders`` differs from the default, else inbox_sent.
    mail_folder_choice: str = ""
    # Well-known names (inbox), display paths (Inbox/Key accounts) or folder ids.
    mail_folders: tuple[str, ...] = ("inbox", "sentitems")
    include_child_folders: bool = False
    initial_window_days: int = 90  # 0 = everything
    # Prefer: odata.maxpagesize of delta rounds. 500 from measurement (bench/first_sync.py,
    # 10,000 messages, 300 ms per request + 2 ms per item): 100: 58 s, 250: 43 s, 500: 35 s,
    # 1000: 35 s with twice the memory per page; Graph may send fewer, the reader follows.
    page_size: int = 500
    mail_interval_seconds: int = 300
    # How often queued mail (Compose Email) is looked for, apart from the mail cycle.
    outbox_interval_seconds: int = 5
    own_domains: tuple[str, ...] = ()
    blocklist: tuple[str, ...] = ()
    # Defaults for newly connected accounts (each account keeps its own afterwards).
    privacy: str = "everything"  # everything | subject | metadata
    auto_create: str = "none"  # none | sent | sent_and_received
    # Match anna+news@x.com to the contact anna@x.com (plus-tags are kept by default).
    ignore_plus_tags: bool = False
    # Two-way calendar sync with the default Outlook calendar, over this window.
    calendar: bool = True
    calendar_days_back: int = 365
    calendar_days_ahead: int = 730

    def folder_choice(self) -> FolderChoice:
        """The folder choice of accounts that have none of their own."""
        if self.mail_folder_choice:
            return FolderChoice(self.mail_folder_choice)
        if self.mail_folders == ("inbox", "sentitems"):
            return FolderChoice.INBOX_SENT
        return FolderChoice.CHOSEN


@dataclass(frozen=True, slots=True)
class NotificationsConfig:
    """Graph change notifications (push): a new message or meeting reaches the CRM within
    seconds instead of at the next poll. Used when a notification URL is known: ``url`` here,
    else the one the CRM's settings publish (Odoo: ``<web.base.url>/m365/notifications``).
    While an account's subscriptions are healthy it is polled only every
    ``safety_poll_seconds`` (notifications can be lost); when they lapse it is polled at the
    normal interval again."""

    enabled: bool = True
    url: str = ""  # public https:// URL Graph posts to (the CRM's, or this daemon's endpoint)
    lifecycle_url: str = ""  # default: url (Graph allows the same endpoint for both)
    # The daemon's own endpoint, for the embedded store (put a TLS proxy in front): -1 = off.
    listen_host: str = "127.0.0.1"
    listen_port: int = -1
    safety_poll_seconds: int = 1800


@dataclass(frozen=True, slots=True)
class ServiceConfig:
    """`m365sync run` (flags of the same names win). ``holder`` names this replica in the
    leases; default host:pid."""

    holder: str = ""
    workers: int = 8
    tick_seconds: float = 5.0
    lease_ttl_seconds: float = 60.0
    lease_batch: int = 100
    health_host: str = "127.0.0.1"
    health_port: int = 9464  # 0: any free port; negative: no health server
    connect_interval_seconds: float = 5.0
    free_busy_interval_seconds: float = 5.0
    info_interval_seconds: float = 600.0


@dataclass(frozen=True, slots=True)
class KeysConfig:
    path: str = ""  # JWKS of the daemon's private keys; default under the data directory

    def keyring_path(self) -> Path:
        return Path(self.path).expanduser() if self.path else default_data_dir() / "keys.jwks"


@dataclass(frozen=True, slots=True)
class Config:
    microsoft: MicrosoftConfig = field(default_factory=MicrosoftConfig)
    store: StoreConfig = field(default_factory=StoreConfig)
    odoo: OdooConfig = field(default_factory=OdooConfig)
    sync: SyncConfig = field(default_factory=SyncConfig)
    keys: KeysConfig = field(default_factory=KeysConfig)
    notifications: NotificationsConfig = field(default_factory=NotificationsConfig)
    service: ServiceConfig = field(default_factory=ServiceConfig)
    source: str = "defaults"

    def validate(self, *, need_microsoft: bool = True) -> Config:
        """Raise `ConfigError` with one sentence naming the first thing that is wrong."""
        ms = self.microsoft
        if need_microsoft:
            if not ms.client_id:
                raise ConfigError(
                    "microsoft.client_id is empty: set it to the Application (client) ID of "
                    "your Azure app registration."
                )
            if not ms.secret():
                raise ConfigError(
                    "No client secret: set microsoft.client_secret or microsoft.client_secret_file."
                )
        for name in ("authority_host", "graph_base_url"):
            url = getattr(ms, name)
            parts = urlsplit(url)
            if parts.scheme != "https" or not parts.hostname:
                raise ConfigError(
                    f"microsoft.{name} must be an https:// URL (msal and Graph refuse plain "
                    f"HTTP), not {url!r}."
                )
        if urlsplit(ms.redirect_uri).scheme not in ("http", "https"):
            raise ConfigError(f"microsoft.redirect_uri is not a URL: {ms.redirect_uri!r}.")
        reserved = RESERVED_SCOPES.intersection(s.lower() for s in ms.scopes)
        if reserved:
            raise ConfigError(
                f"microsoft.scopes must not list {', '.join(sorted(reserved))}: they are always "
                "requested."
            )
        if ms.ca_bundle and not Path(ms.ca_bundle).is_file():
            raise ConfigError(f"microsoft.ca_bundle {ms.ca_bundle!r} is not a readable file.")
        if self.store.backend not in ("sqlite", "odoo"):
            raise ConfigError(
                f"store.backend must be 'sqlite' or 'odoo', not {self.store.backend!r}."
            )
        if self.store.backend == "sqlite":
            self._validate_store_path()
        if self.store.backend == "odoo":
            missing = [k for k in ("url", "db", "user") if not getattr(self.odoo, k)]
            if not self.odoo.key():
                missing.append("api_key (or odoo.api_key_file)")
            if missing:
                raise ConfigError(f"store.backend is 'odoo' but odoo.{missing[0]} is empty.")
            if self.odoo.protocol not in ("xmlrpc", "json2"):
                raise ConfigError(
                    f"odoo.protocol must be 'xmlrpc' or 'json2', not {self.odoo.protocol!r}."
                )
        if self.sync.initial_window_days < 0:
            raise ConfigError("sync.initial_window_days must be 0 (everything) or more.")
        if not 1 <= self.sync.page_size <= 1000:
            raise ConfigError("sync.page_size must be between 1 and 1000.")
        for key, allowed in (("privacy", Privacy), ("auto_create", AutoCreate)):
            value = getattr(self.sync, key)
            if value not in {v.value for v in allowed}:
                raise ConfigError(
                    f"sync.{key} must be one of {', '.join(v.value for v in allowed)}, "
                    f"not {value!r}."
                )
        if self.sync.calendar_days_back < 0 or self.sync.calendar_days_ahead < 1:
            raise ConfigError("sync.calendar_days_back must be 0 or more and days_ahead 1 or more.")
        if self.sync.calendar_days_back + self.sync.calendar_days_ahead > 1790:
            raise ConfigError(
                "sync.calendar_days_back + sync.calendar_days_ahead must stay under 1790 days: "
                "Microsoft Graph refuses calendar windows over 1825 days (five years)."
            )
        for key in ("mail_interval_seconds", "outbox_interval_seconds"):
            if getattr(self.sync, key) < 1:
                raise ConfigError(
                    f"sync.{key} must be 1 second or more, not {getattr(self.sync, key)}: "
                    "it is the pause between two cycles."
                )
        choices = [c.value for c in FolderChoice]
        if self.sync.mail_folder_choice and self.sync.mail_folder_choice not in choices:
            raise ConfigError(
                f"sync.mail_folder_choice is {self.sync.mail_folder_choice!r}: use one of "
                f"{', '.join(choices)}."
            )
        if self.sync.folder_choice() is FolderChoice.CHOSEN and not self.sync.mail_folders:
            raise ConfigError("sync.mail_folders is empty: list at least one folder, e.g. inbox.")
        self._validate_notifications()
        return self

    def _validate_store_path(self) -> None:
        """A configured store file must be in a folder that exists: a missing folder is
        usually a typo, and creating it would put the CRM's data somewhere nobody looks.
        Only the default location (the user's data directory) is created when needed."""
        if not self.store.path:
            return
        path = self.store.sqlite_path()
        if path.is_dir():
            raise ConfigError(
                f"store.path {self.store.path!r} is a folder: name the store file in it, "
                f"e.g. {str(path / 'store.sqlite3')!r}."
            )
        folder = path.parent
        if folder.exists() and not folder.is_dir():
            raise ConfigError(
                f"store.path {self.store.path!r} is under {str(folder)!r}, which is a file, "
                "not a folder: correct the path."
            )
        if not folder.is_dir():
            raise ConfigError(
                f"store.path {self.store.path!r} is in a folder that does not exist "
                f"({str(folder)!r}): correct the path, or create the folder if it is the right one."
            )

    def _validate_notifications(self) -> None:
        push = self.notifications
        for name in ("url", "lifecycle_url"):
            url = getattr(push, name)
            if not url:
                continue
            parts = urlsplit(url)
            if not parts.hostname or parts.scheme not in ("http", "https"):
                raise ConfigError(f"notifications.{name} is not a URL: {url!r}.")
            if parts.scheme != "https" and self.microsoft.is_microsoft_cloud:
                raise ConfigError(
                    f"notifications.{name} must be an https:// URL: Microsoft Graph posts "
                    f"notifications only over HTTPS, not to {url!r}."
                )
        if push.safety_poll_seconds < self.sync.mail_interval_seconds:
            raise ConfigError(
                "notifications.safety_poll_seconds must be at least sync.mail_interval_seconds: "
                "it is the slower poll used while notifications arrive."
            )
        if push.listen_port > 65535:
            raise ConfigError(f"notifications.listen_port {push.listen_port} is not a port.")


_SECTIONS = {
    "microsoft": MicrosoftConfig,
    "store": StoreConfig,
    "odoo": OdooConfig,
    "sync": SyncConfig,
    "keys": KeysConfig,
    "notifications": NotificationsConfig,
    "service": ServiceConfig,
}


def _coerce(section: str, key: str, value: Any, target: Any) -> Any:
    """Turn a TOML or environment value into the field's type, or say which key is wrong."""
    where = f"{section}.{key}"
    try:
        if isinstance(target, bool):
            if isinstance(value, bool):
                return value
            text = str(value).strip().lower()
            if text in ("1", "true", "yes", "on"):
                return True
            if text in ("0", "false", "no", "off"):
                return False
            raise ValueError(value)
        if isinstance(target, tuple):
            if isinstance(value, str):
                return tuple(part.strip() for part in value.split(",") if part.strip())
            return tuple(str(v) for v in value)
        if isinstance(target, int):
            return int(value)
        if isinstance(target, float):
            return float(value)
        if key == "client_secret_expires":
            if value in ("", None):
                return None
            return value if isinstance(value, date) else date.fromisoformat(str(value))
        return str(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{where} has an invalid value {value!r}.") from None


def _apply(base: Any, section: str, values: dict[str, Any]) -> Any:
    known = {f.name: f for f in fields(base)}
    changes = {}
    for key, value in values.items():
        if key not in known:
            raise ConfigError(
                f"Unknown setting {section}.{key} (known: {', '.join(sorted(known))})."
            )
        changes[key] = _coerce(section, key, value, getattr(base, key))
    return replace(base, **changes)


def load_config(path: str | Path | None = None, environ: dict[str, str] | None = None) -> Config:
    """Read the TOML file (``path``, else $M365SYNC_CONFIG, else none), then the environment."""
    environ = dict(os.environ if environ is None else environ)
    path = path or environ.get(CONFIG_ENV) or None
    data: dict[str, Any] = {}
    source = "defaults"
    if path:
        try:
            with open(path, "rb") as handle:
                data = tomllib.load(handle)
        except FileNotFoundError:
            raise ConfigError(f"Configuration file {str(path)!r} does not exist.") from None
        except OSError as exc:
            raise ConfigError(
                f"Cannot read configuration file {str(path)!r}: {exc.strerror}."
            ) from None
        except UnicodeDecodeError:
            raise ConfigError(
                f"Configuration file {str(path)!r} is not UTF-8 text (a binary file?): give "
                "the TOML configuration file, saved as UTF-8."
            ) from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(
                f"Configuration file {str(path)!r} is not valid TOML: {exc}."
            ) from None
        source = str(path)
    unknown = set(data) - set(_SECTIONS)
    if unknown:
        raise ConfigError(
            f"Unknown section [{sorted(unknown)[0]}] in {source} "
            f"(known: {', '.join(sorted(_SECTIONS))})."
        )
    sections: dict[str, Any] = {}
    for name, cls in _SECTIONS.items():
        section = data.get(name, {})
        if not isinstance(section, dict):
            raise ConfigError(f"[{name}] in {source} must be a table.")
        overrides = {
            key[len(f"{ENV_PREFIX}{name.upper()}__") :].lower(): value
            for key, value in environ.items()
            if key.startswith(f"{ENV_PREFIX}{name.upper()}__")
        }
        sections[name] = _apply(_apply(cls(), name, section), name, overrides)
    return Config(**sections, source=source)
