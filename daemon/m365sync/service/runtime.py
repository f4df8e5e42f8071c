"""The composition root: builds the gateway, keyring, HTTP session and msal broker from config.

Nothing else constructs these, so every command and test wires the parts the same way.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace

import requests

from m365sync import __version__
from m365sync.config import Config
from m365sync.crm.gateway import CrmGateway
from m365sync.domain import Account, CrmSettings, SyncRun
from m365sync.errors import ConfigError, CrmError
from m365sync.graph.auth import AccountTokens, TokenBroker
from m365sync.graph.client import GraphClient
from m365sync.graph.mail import MailDeltaReader
from m365sync.graph.transport import make_session
from m365sync.sealing import Keyring

log = logging.getLogger(__name__)

SETTINGS_TTL_SECONDS = 60.0  # how stale the CRM's settings may be (an admin's change waits)

TOKEN_CACHE_PURPOSE = "msal-token-cache"  # noqa: S105 - a label, not a secret
USER_AGENT = f"m365sync/{__version__}"


def open_gateway(config: Config) -> CrmGateway:
    if config.store.backend == "sqlite":
        from m365sync.crm.sqlite import SqliteGateway

        return SqliteGateway(config.store.sqlite_path())
    if config.store.backend == "odoo":
        from m365sync.crm.odoo import OdooGateway

        # The CRM's own CA bundle (odoo.ca_bundle), else the system's trust store. The
        # Microsoft bundle is not used: it often trusts only the emulator.
        return OdooGateway.from_config(
            replace(config.odoo, api_key=config.odoo.key(), api_key_file=""),
            ca_bundle=config.odoo.ca_bundle or None,
            timeout=config.odoo.timeout_seconds,
        )
    raise ConfigError(
        f"store.backend {config.store.backend!r} is not available in this version; use 'sqlite'."
    )


@dataclass
class Runtime:
    """Long-lived parts shared by all accounts of one process."""

    config: Config
    gateway: CrmGateway
    keyring: Keyring
    session: requests.Session
    broker: TokenBroker
    # This process's name in claims and leases (the service sets its replica's holder).
    holder: str = field(default_factory=lambda: f"{socket.gethostname()}:{os.getpid()}")
    _tokens: dict[int, AccountTokens] = field(default_factory=dict)
    _graphs: dict[int, GraphClient] = field(default_factory=dict)
    _settings: CrmSettings | None = None
    _settings_read: float = float("-inf")
    _settings_lock: threading.Lock = field(default_factory=threading.Lock)

    @classmethod
    def build(cls, config: Config, gateway: CrmGateway | None = None) -> Runtime:
        ms = config.microsoft
        session = make_session(ms.ca_bundle or None, user_agent=USER_AGENT)
        broker = TokenBroker(
            ms.client_id,
            ms.secret(),
            ms.authority,
            list(ms.scopes),
            session=session,
            validate_authority=ms.is_microsoft_cloud,
        )
        return cls(
            config=config,
            gateway=gateway or open_gateway(config),
            keyring=Keyring.load_or_create(config.keys.keyring_path()),
            session=session,
            broker=broker,
        )

    def tokens_for(self, account: Account) -> AccountTokens:
        """The account's token source; a rotated refresh token is sealed and stored at once."""
        if account.id not in self._tokens:
            if not account.sealed_token_cache:
                from m365sync.errors import NeedsReconnect

                raise NeedsReconnect("the account has no stored sign-in", code="no_token_cache")
            cache = self.keyring.open(
                account.sealed_token_cache, purpose=TOKEN_CACHE_PURPOSE
            ).decode("utf-8")

            stored = [account.sealed_token_cache]  # what this process's tokens came from

            def store(serialized: str, account_id: int = account.id) -> None:
                sealed = self.keyring.seal(serialized.encode("utf-8"), purpose=TOKEN_CACHE_PURPOSE)
                if self.gateway.store_token_cache(account_id, sealed, replaces=stored[0]):
                    stored[0] = sealed
                    return
                # The sign-in was renewed meanwhile (a reconnect): it wins; the next token
                # comes from it, this process's older grant is dropped.
                log.info("account %s: its sign-in was renewed elsewhere; using that", account_id)
                self.forget_tokens(account_id)

            self._tokens[account.id] = AccountTokens(self.broker, cache, store)
        return self._tokens[account.id]

    def request_counts(self, account_id: int) -> tuple[int, int]:
        """(Graph requests, token requests) this process sent for the account so far."""
        graph = self._graphs.get(account_id)
        tokens = self._tokens.get(account_id)
        return (
            graph.requests_sent if graph is not None else 0,
            tokens.token_requests if tokens is not None else 0,
        )

    def request_counter(self, account_id: int, run: SyncRun) -> Callable[[], None]:
        """A call that writes the requests sent for the account since now into ``run``
        (``graph_requests``, ``token_requests``): the cycle's figures."""
        graph_before, token_before = self.request_counts(account_id)

        def count() -> None:
            graph, token = self.request_counts(account_id)
            # A client forgotten mid-cycle (needs reconnect) restarts its count: never < 0.
            run.graph_requests = max(0, graph - graph_before)
            run.token_requests = max(0, token - token_before)

        return count

    def graph_for(self, account: Account) -> GraphClient:
        """One client per mailbox in this process, so its cap of four concurrent requests
        (Outlook's per-mailbox limit) holds across the cycle, the outbox and free/busy."""
        client = self._graphs.get(account.id)
        tokens = self.tokens_for(account)
        if client is None or client.token_provider is not tokens:
            client = GraphClient(
                self.session,
                self.config.microsoft.graph_base_url,
                tokens,
                timeout=self.config.microsoft.timeout_seconds,
            )
            self._graphs[account.id] = client
        return client

    def mail_reader_for(
        self, account: Account, graph: GraphClient | None = None
    ) -> MailDeltaReader:
        return MailDeltaReader(
            graph or self.graph_for(account), page_size=self.config.sync.page_size
        )

    def crm_settings(self) -> CrmSettings:
        """The CRM's settings, read at most once a minute; a CRM that cannot answer leaves
        the last ones known (or none) in force."""
        with self._settings_lock:
            if time.monotonic() - self._settings_read < SETTINGS_TTL_SECONDS:
                return self._settings or CrmSettings()
            self._settings_read = time.monotonic()
            try:
                self._settings = self.gateway.crm_settings()
            except CrmError as error:
                log.warning("the CRM's settings could not be read (%s); keeping the last", error)
            return self._settings or CrmSettings()

    def mail_interval_seconds(self) -> int:
        """The CRM's sync interval when its administrators set one, else the configuration's."""
        return self.crm_settings().sync_interval_seconds or self.config.sync.mail_interval_seconds

    def blocklist(self) -> tuple[str, ...]:
        """The configuration's blocklist and the CRM's, together."""
        extra = [e for e in self.crm_settings().blocklist if e not in self.config.sync.blocklist]
        return (*self.config.sync.blocklist, *extra)

    def forget_tokens(self, account_id: int) -> None:
        self._tokens.pop(account_id, None)
        self._graphs.pop(account_id, None)

    def close(self) -> None:
        self.session.close()
        self.gateway.close()
