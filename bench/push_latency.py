"""Time from a new message in Outlook (the emulator) to the CRM, with and without push.

Both runs use the real service (`m365sync run`'s `Service`, in a thread) against the embedded
store and the HTTPS emulator, one connected mailbox:

- push: Graph change notifications to the daemon's own endpoint (the emulator posts to it over
  loopback HTTP), polling only once an hour;
- poll: no notifications, polling every POLL seconds.

Messages arrive at random moments; for each, the time until it is stored is printed, then the
median and the worst. Polling's latency is spread over the whole interval: with the default
300-second interval expect about 150 s on average and 300 s at worst.

Usage: python bench/push_latency.py [MESSAGES] [POLL]   (default: 8 10)
"""

from __future__ import annotations

import random
import socket
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

from m365sync.config import load_config
from m365sync.crm.sqlite import SqliteGateway
from m365sync.emulator.mailbox import Mailbox
from m365sync.emulator.server import Emulator
from m365sync.service.connect import connect_account
from m365sync.service.daemon import Service, ServiceOptions
from m365sync.service.emulator_cmd import emulator_config_toml
from m365sync.service.runtime import Runtime

SENDER = "nora.quist@fabrikam.example"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def measure(workdir: Path, *, push: bool, messages: int, poll: int) -> list[float]:
    emulator = Emulator(
        Mailbox.seeded(size=50, seed=5),
        state_dir=workdir / "emulator",
        allow_http_notifications=True,
    ).start()
    port = free_port()
    text = emulator_config_toml(
        emulator,
        store_path=workdir / "store.sqlite3",
        keys_path=workdir / "keys.jwks",
        redirect_uri=f"http://localhost:{free_port()}/",
    )
    interval = 3600 if push else poll
    text += f"mail_interval_seconds = {interval}\n\n[notifications]\n"
    if push:
        text += (
            f'url = "http://127.0.0.1:{port}/"\nlisten_port = {port}\nsafety_poll_seconds = 3600\n'
        )
    else:
        text += "enabled = false\n"
    path = workdir / "m365sync.toml"
    path.write_text(text, encoding="utf-8")
    config = load_config(path, environ={}).validate()
    gateway = SqliteGateway(config.store.sqlite_path())
    partner = gateway.add_partner("Nora Quist", email=SENDER)
    runtime = Runtime.build(config, gateway)
    connect_account(runtime, browser="follow")
    service = Service(runtime, ServiceOptions(holder="bench:1", tick_seconds=0.5, health_port=-1))
    thread = threading.Thread(target=service.run, daemon=True)
    thread.start()
    latencies = []
    try:
        deadline = time.monotonic() + 60
        while not gateway.last_sync_run(1) and time.monotonic() < deadline:
            time.sleep(0.1)
        if push:
            while len(gateway.subscriptions(1)) < 2 and time.monotonic() < deadline:
                time.sleep(0.1)
        rng = random.Random(7)
        for number in range(messages):
            time.sleep(rng.uniform(0, poll if not push else 1.0))
            subject = f"Latency probe {number}"
            emulator.mailbox.add_message(
                "inbox",
                {
                    "subject": subject,
                    "from": {"emailAddress": {"address": SENDER, "name": "Nora Quist"}},
                    "toRecipients": [{"emailAddress": {"address": emulator.mailbox.user["mail"]}}],
                    "body": {"contentType": "text", "content": "probe"},
                },
            )
            started = time.monotonic()
            while subject not in {t.subject for t in gateway.threads_for_partner(partner.id)}:
                if time.monotonic() - started > interval + 60:
                    raise SystemExit(f"{subject} never arrived")
                time.sleep(0.02)
            latencies.append(time.monotonic() - started)
            print(f"  {'push' if push else 'poll'} message {number}: {latencies[-1]:.2f} s")
    finally:
        service.stop()
        thread.join(timeout=30)
        runtime.close()
        emulator.stop()
    return latencies


def main() -> None:
    messages = int(sys.argv[1]) if len(sys.argv) > 1 else 8
    poll = int(sys.argv[2]) if len(sys.argv) > 2 else 10
    results = {}
    for push in (True, False):
        with tempfile.TemporaryDirectory() as tmp:
            results[push] = measure(Path(tmp), push=push, messages=messages, poll=poll)
    print()
    print(f"{'mode':<28}{'median':>10}{'worst':>10}")
    for push, label in ((True, "push (poll hourly)"), (False, f"poll every {poll} s")):
        values = results[push]
        print(f"{label:<28}{statistics.median(values):>9.2f}s{max(values):>9.2f}s")


if __name__ == "__main__":
    main()
