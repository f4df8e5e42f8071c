"""The emulator, a daemon configured against it, and a live Odoo as the CRM.

Everything is the product's own code path: a written configuration with
``[store] backend = "odoo"``, `Runtime.build`, msal and requests over TLS with the emulator's
CA, and the Odoo adapter over XML-RPC (or JSON-2, ``ODOO_PROTOCOL``). The live Odoo is the
session's ``odoo_live`` (tests/odoo/plugin.py): a private Odoo made for the run from
``ODOO_SRC``, or the one named by ``ODOO_URL``, ``ODOO_DB``, ``ODOO_USER`` (the daemon's
technical user) and ``ODOO_PASSWORD`` (its API key); ``ODOO_ADMIN_USER`` /
``ODOO_ADMIN_PASSWORD`` seed contacts and read back what the daemon stored, as a person would.
The API key never enters the written configuration file: it is given as the environment
override ``M365SYNC_ODOO__API_KEY``.

Each stack gets a mailbox with a fresh random seed (new tenant, user id and Message-IDs), so
runs on a shared database never meet each other's mail; contacts are reused by address, and
the account a stack made is deleted afterwards (``ODOO_KEEP_TEST_DATA=1`` keeps it).
"""

from __future__ import annotations

import contextlib
import os
import secrets
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from m365sync.config import Config, load_config
from m365sync.crm.odoo import OdooGateway, XmlRpcTransport
from m365sync.emulator.mailbox import Mailbox
from m365sync.emulator.server import Emulator
from m365sync.errors import CrmError
from m365sync.service.emulator_cmd import emulator_config_toml
from m365sync.service.runtime import Runtime
from tests.ports import free_port


@pytest.fixture(autouse=True)
def _served_odoo(odoo_live) -> None:
    """Every e2e test runs against the served Odoo (the run's private one, or ODOO_URL...),
    which sets the ODOO_* variables read here; without one it skips (fails in CI)."""


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "/e2e/" in str(item.path):
            item.add_marker(pytest.mark.odoo)


def _q(value: object) -> str:
    return '"' + str(value).replace("\\", "\\\\").replace('"', '\\"') + '"'


def admin_rpc() -> XmlRpcTransport:
    return XmlRpcTransport(
        os.environ["ODOO_URL"],
        os.environ["ODOO_DB"],
        os.environ.get("ODOO_ADMIN_USER") or os.environ["ODOO_USER"],
        os.environ.get("ODOO_ADMIN_PASSWORD") or os.environ["ODOO_PASSWORD"],
        timeout=60,
    )


def odoo_environ() -> dict[str, str]:
    """The environment the daemon reads its API key from (never the config file)."""
    return {"M365SYNC_ODOO__API_KEY": os.environ["ODOO_PASSWORD"]}


def write_config(
    tmp_path: Path,
    emulator: Emulator,
    *,
    odoo_url: str,
    name: str = "m365sync.toml",
    calendar: bool = False,
    sync_extra: str = "",
    extra: str = "",
) -> Path:
    """The emulator's daemon configuration, with Odoo as the store (mail only unless
    ``calendar``); ``sync_extra`` goes into [sync], ``extra`` (more sections) at the end."""
    text = emulator_config_toml(
        emulator,
        store_path=tmp_path / "unused.sqlite3",
        keys_path=tmp_path / "keys.jwks",
        redirect_uri=f"http://localhost:{free_port()}/",
    )
    assert '[store]\nbackend = "sqlite"' in text
    text = text.replace('[store]\nbackend = "sqlite"', '[store]\nbackend = "odoo"')
    # Still in [sync].
    text += f"page_size = 25\ninitial_window_days = 0\ncalendar = {str(calendar).lower()}\n"
    text += sync_extra
    text += "\n".join(
        [
            "",
            "[odoo]",
            f"url = {_q(odoo_url)}",
            f"db = {_q(os.environ['ODOO_DB'])}",
            f"user = {_q(os.environ['ODOO_USER'])}",
            f"protocol = {_q(os.environ.get('ODOO_PROTOCOL', 'xmlrpc'))}",
            "",
        ]
    )
    text += extra
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    path.chmod(0o600)
    return path


def load(path: Path) -> Config:
    return load_config(path, environ=odoo_environ()).validate()


@dataclass
class OdooStack:
    emulator: Emulator
    mailbox: Mailbox
    config_path: Path
    config: Config
    runtime: Runtime
    admin: XmlRpcTransport
    account_ids: list[int] = field(default_factory=list)

    @property
    def gateway(self) -> OdooGateway:
        gateway = self.runtime.gateway
        assert isinstance(gateway, OdooGateway)
        return gateway

    event_ids: list[int] = field(default_factory=list)
    user_ids: list[int] = field(default_factory=list)

    def read(
        self, model: str, domain: list[Any], fields: list[str], *, archived: bool = False
    ) -> list[dict[str, Any]]:
        """What a person sees in Odoo (the admin's plain XML-RPC, not the daemon's API)."""
        options: dict[str, Any] = {"fields": fields}
        if archived:
            options["context"] = {"active_test": False}
        return self.admin.execute_kw(model, "search_read", [domain], options)

    def clean_up(self) -> None:
        """Delete what this stack made in the shared database: its accounts' events, the
        accounts (bindings, outbox and mail go with them), its users."""
        if self.account_ids:
            with contextlib.suppress(CrmError):  # an addon without the calendar
                self.event_ids += self.admin.execute_kw(
                    "calendar.event",
                    "search",
                    [
                        [
                            "|",
                            ("m365_owner_account_id", "in", self.account_ids),
                            ("m365_binding_ids.account_id", "in", self.account_ids),
                        ]
                    ],
                    {"context": {"active_test": False}},
                )
            self.admin.execute_kw("m365.account", "unlink", [self.account_ids])
        events = sorted(set(self.event_ids))
        if events:
            found = self.admin.execute_kw(
                "calendar.event",
                "search",
                [[("id", "in", events)]],
                {"context": {"active_test": False}},
            )
            if found:
                self.admin.execute_kw("calendar.event", "unlink", [found])
        if self.user_ids:
            self.admin.execute_kw("res.users", "write", [self.user_ids, {"active": False}])


@contextlib.contextmanager
def odoo_stack_for(
    tmp_path: Path,
    mailbox: Mailbox,
    *,
    calendar: bool = False,
    emulator_options: dict[str, Any] | None = None,
    **config_extra: str,
) -> Iterator[OdooStack]:
    """An emulator serving ``mailbox``, a daemon configured against it with Odoo as the store
    (``config_extra``: `write_config`'s ``sync_extra`` and ``extra``); the accounts (and, with
    the calendar, their events) are deleted afterwards."""
    emulator = Emulator(mailbox, state_dir=tmp_path / "emulator", **(emulator_options or {}))
    emulator.start()
    admin = admin_rpc()
    path = write_config(
        tmp_path, emulator, odoo_url=os.environ["ODOO_URL"], calendar=calendar, **config_extra
    )
    config = load(path)
    runtime = Runtime.build(config)
    stack = OdooStack(emulator, mailbox, path, config, runtime, admin)
    try:
        yield stack
    finally:
        runtime.close()
        emulator.stop()
        if not os.environ.get("ODOO_KEEP_TEST_DATA"):
            stack.clean_up()
        admin.close()


@pytest.fixture
def odoo_stack(tmp_path: Path) -> Iterator[OdooStack]:
    with odoo_stack_for(tmp_path, Mailbox.seeded(size=80, seed=secrets.randbelow(10**9))) as stack:
        yield stack
