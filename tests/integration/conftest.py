"""An emulator over real HTTPS, a daemon configured against it, and the embedded store.

Everything here is the product's own code path: `Runtime.build` from a written configuration,
msal and requests over TLS with the emulator's CA, the SQLite gateway on a temp file.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from m365sync.config import Config, load_config
from m365sync.crm.sqlite import SqliteGateway
from m365sync.demo import seed_crm
from m365sync.emulator.mailbox import Mailbox
from m365sync.emulator.server import Emulator
from m365sync.service.emulator_cmd import emulator_config_toml
from m365sync.service.runtime import Runtime
from tests.ports import free_port


@dataclass
class Stack:
    emulator: Emulator
    config_path: Path
    config: Config
    gateway: SqliteGateway
    runtime: Runtime

    def new_runtime(self) -> Runtime:
        """A second process's view: fresh session, broker and token caches, same store file."""
        return Runtime.build(self.config, SqliteGateway(self.config.store.sqlite_path()))


def build_stack(
    tmp_path: Path,
    mailbox: Mailbox,
    *,
    page_size: int = 50,
    window: int = 0,
    sync_extra: str = "",
    store_path: Path | None = None,
    keys_path: Path | None = None,
    seed_partners: bool = True,
    emulator_options: dict | None = None,
    extra_config: str = "",
) -> Stack:
    """An emulator for ``mailbox`` and a daemon configured against it. Two stacks may share
    one store and keyring (``store_path``, ``keys_path``): two mailboxes, one CRM."""
    tmp_path.mkdir(parents=True, exist_ok=True)
    emulator = Emulator(mailbox, state_dir=tmp_path / "emulator", **(emulator_options or {}))
    emulator.start()
    config_path = tmp_path / "m365sync.toml"
    text = emulator_config_toml(
        emulator,
        store_path=store_path or tmp_path / "store.sqlite3",
        keys_path=keys_path or tmp_path / "keys.jwks",
        redirect_uri=f"http://localhost:{free_port()}/",
    )
    text += f"page_size = {page_size}\ninitial_window_days = {window}\n{sync_extra}"
    text += f"\n{extra_config}"
    config_path.write_text(text, encoding="utf-8")
    config = load_config(config_path, environ={}).validate()
    gateway = SqliteGateway(config.store.sqlite_path())
    if seed_partners:
        seed_crm(gateway, mailbox, share=1.0)
    return Stack(emulator, config_path, config, gateway, Runtime.build(config, gateway))


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[Stack]:
    built = build_stack(tmp_path, Mailbox.seeded(size=300, seed=3))
    try:
        yield built
    finally:
        built.runtime.close()
        built.emulator.stop()
