"""`make demo`'s job on a small mailbox: every step runs and says what it did."""

from __future__ import annotations

import re

from rich.console import Console

from m365sync.demo import run_demo


def test_the_demo_runs_every_step(tmp_path):
    console = Console(record=True, width=200, force_terminal=False)
    assert run_demo(console, size=300, workdir=tmp_path / "demo") == 0
    text = console.export_text()
    assert "Connected MeganB@contoso.com through the OAuth code flow with PKCE" in text
    assert "Changes in Outlook, then an incremental sync" in text
    assert "validated by Graph): push notifications on (2 of 2)" in text
    pushed = re.search(r"message was in the CRM (\d+) ms after it arrived in Outlook", text)
    assert pushed and int(pushed[1]) < 5000
    assert re.search(r"calendar until \d\d-\d\d \d\d:\d\d, mail until", text)
