"""Shared fixtures: a running seeded emulator and HTTPS sessions that trust its CA.

REQUESTS_CA_BUNDLE, when exported, overrides ``Session.verify``; `EmulatorSession` therefore
passes ``verify=<emulator CA>`` on every request.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from m365sync.emulator.identity import DEFAULT_SCOPES
from m365sync.emulator.mailbox import Mailbox
from m365sync.emulator.server import Emulator, EmulatorSession


@pytest.fixture
def emulator(tmp_path: Path) -> Iterator[Emulator]:
    """A seeded emulator on a free loopback port, stopped after the test."""
    with Emulator(Mailbox.seeded(), state_dir=tmp_path / "emulator") as emu:
        yield emu


@pytest.fixture
def http(emulator: Emulator) -> Iterator[EmulatorSession]:
    """An anonymous session; relative URLs go to ``emulator.base_url``."""
    with EmulatorSession(emulator.ca_path, emulator.base_url) as session:
        yield session


@pytest.fixture
def graph(emulator: Emulator) -> Iterator[EmulatorSession]:
    """A session holding a Graph access token with the daemon's scopes; relative URLs go to
    ``emulator.graph_url`` (``graph.get("/me")``)."""
    with EmulatorSession(emulator.ca_path, emulator.graph_url) as session:
        token = emulator.identity.mint_access_token(DEFAULT_SCOPES)
        session.headers["Authorization"] = f"Bearer {token}"
        yield session
