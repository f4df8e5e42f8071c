"""The emulator, a daemon configured against it, and a live Odoo as the CRM.

Everything is the product's own code path: a written configuration with
``[store] backend = "odoo"``, `Runtime.build`, msal and requests over TLS with the emulator's
CA, and the Odoo adapter over XML-RPC (or JSON-2, ``ODOO_PROTOCOL``). The live Odoo comes from
``ODOO_URL``, ``ODOO_DB``, ``ODOO_USER`` (the daemon's technical user) and ``ODOO_PASSWORD`` (its
API key); ``ODOO_ADMIN_USER`` / ``ODOO_ADMIN_PASSWORD`` (default: the same) seed contacts and
read back what the daemon stored, as a person would. The API key never enters the written
configuration file: it is given as the environment override ``M365SYNC_ODOO__API_KEY``.

Each stack gets a mailbox with a fresh random seed (new tenant, user id and Message-IDs), so
runs on a shared database never meet each other's mail; contacts are reused by address, and
the account a stack made is deleted afterwards (``ODOO_KEEP_TEST_DATA=1`` keeps it).
"""

from __future__ import annotations

import os
import secrets
import socket
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from m365sync.config import Config, load_config
from m365sync.crm.odoo import OdooGateway, XmlRpcTransport
from m365sync.emulator.mailbox import Mailbox
from m365sync.emulator.server import Emulator
from m365sync.service.emulator_cmd import emulator_config_toml
from m365sync.service.runtime import Runtime

ODOO_ENV = ("ODOO_URL", "ODOO_DB", "ODOO_USER", "ODOO_PASSWORD")
SKIP_REASON = "no Odoo configured (set ODOO_URL, ODOO_DB, ODOO_USER, ODOO_PASSWORD)"


def odoo_configured() -> bool:
    return all(os.environ.get(name) for name in ODOO_ENV)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


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
    tmp_path: Path, emulator: Emulator, *, odoo_url: str, name: str = "m365sync.toml"
) -> Path:
    """The emulator's daemon configuration, with Odoo as the store."""
    text = emulator_config_toml(
        emulator,
        store_path=tmp_path / "unused.sqlite3",
        keys_path=tmp_path / "keys.jwks",
        redirect_uri=f"http://localhost:{free_port()}/",
    )
    assert '[store]\nbackend = "sqlite"' in text
    text = text.replace('[store]\nbackend = "sqlite"', '[store]\nbackend = "odoo"')
    # Still in [sync]. Mail only: the calendar's Odoo side is not part of this suite.
    text += "page_size = 25\ninitial_window_days = 0\ncalendar = false\n"
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

    def read(self, model: str, domain: list[Any], fields: list[str]) -> list[dict[str, Any]]:
        """What a person sees in Odoo (the admin's plain XML-RPC, not the daemon's API)."""
        return self.admin.execute_kw(model, "search_read", [domain], {"fields": fields})


@pytest.fixture
def odoo_stack(tmp_path: Path) -> Iterator[OdooStack]:
    if not odoo_configured():
        pytest.skip(SKIP_REASON)
    mailbox = Mailbox.seeded(size=80, seed=secrets.randbelow(10**9))
    emulator = Emulator(mailbox, state_dir=tmp_path / "emulator").start()
    admin = admin_rpc()
    path = write_config(tmp_path, emulator, odoo_url=os.environ["ODOO_URL"])
    config = load(path)
    runtime = Runtime.build(config)
    stack = OdooStack(emulator, mailbox, path, config, runtime, admin)
    try:
        yield stack
    finally:
        runtime.close()
        emulator.stop()
        if stack.account_ids and not os.environ.get("ODOO_KEEP_TEST_DATA"):
            admin.execute_kw("m365.account", "unlink", [stack.account_ids])
        admin.close()
