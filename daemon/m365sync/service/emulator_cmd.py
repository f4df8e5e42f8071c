"""`m365sync emulator`: serve the emulator until Ctrl+C, and write a daemon config for it.

Change notifications: ``--allow-http-notifications`` lets plain-http notification URLs on
loopback through (Graph itself takes https only) and ``--notification-ca`` is the CA bundle
https notification URLs are verified against. `add_emulator_arguments` adds both options to
the ``emulator`` sub-command's parser, with the latency model's ``--latency-ms`` and
``--per-item-ms`` (emulator/latency.py); until the CLI calls it, the environment variable
``M365SYNC_EMULATOR_ALLOW_HTTP_NOTIFICATIONS=1`` does the same as the flag.
"""

from __future__ import annotations

import argparse
import os
import signal
import threading
from pathlib import Path

from rich.console import Console

from m365sync.emulator.latency import LatencyModel
from m365sync.emulator.mailbox import Mailbox
from m365sync.emulator.seed import SEED_MAX_SIZE, MailboxFileError
from m365sync.emulator.server import Emulator
from m365sync.errors import InputError


def emulator_config_toml(
    emulator: Emulator, *, store_path: Path, keys_path: Path, redirect_uri: str
) -> str:
    """A daemon configuration that points every endpoint at this emulator."""

    def q(value: object) -> str:
        return '"' + str(value).replace("\\", "\\\\").replace('"', '\\"') + '"'

    return "\n".join(
        [
            "# Written by `m365sync emulator`: every endpoint points at the local emulator.",
            "[microsoft]",
            f"client_id = {q(emulator.client_id)}",
            f"client_secret = {q(emulator.client_secret)}",
            f"tenant = {q(emulator.tenant_id)}",
            f"authority_host = {q(emulator.base_url)}",
            f"graph_base_url = {q(emulator.graph_url)}",
            f"redirect_uri = {q(redirect_uri)}",
            f"ca_bundle = {q(emulator.ca_path)}",
            "",
            "[store]",
            'backend = "sqlite"',
            f"path = {q(store_path)}",
            "",
            "[keys]",
            f"path = {q(keys_path)}",
            "",
            "[sync]",
            "own_domains = " + "[" + ", ".join(q(d) for d in emulator.mailbox.own_domains) + "]",
            "",
        ]
    )


def add_emulator_arguments(parser: argparse.ArgumentParser) -> None:
    """The change-notification options of ``m365sync emulator``."""
    parser.add_argument(
        "--allow-http-notifications",
        action="store_true",
        help="accept http:// notification URLs on loopback (Graph requires https)",
    )
    parser.add_argument(
        "--notification-ca",
        type=Path,
        help="CA bundle to verify https notification URLs (default: the system's)",
    )
    parser.add_argument(
        "--latency-ms",
        type=float,
        default=0.0,
        help="hold each Graph answer this long, as real Graph's round trip (default 0)",
    )
    parser.add_argument(
        "--per-item-ms",
        type=float,
        default=0.0,
        help="and this long more per item it returns (messages of a page...; default 0)",
    )


def load_mailbox(args: argparse.Namespace) -> Mailbox:
    if args.mailbox:
        try:
            return Mailbox.from_json(args.mailbox)
        except MailboxFileError as error:  # the emulator's words, the CLI's error class
            raise InputError(str(error)) from None
    if not 0 <= args.size <= SEED_MAX_SIZE:
        raise InputError(
            f"--size {args.size} is out of range: give a number of messages between 0 and "
            f"{SEED_MAX_SIZE:,}."
        )
    return Mailbox.seeded(size=args.size, seed=args.seed)


def run_emulator(args: argparse.Namespace, console: Console) -> int:
    state_dir = args.state_dir.resolve()
    state_dir.mkdir(parents=True, exist_ok=True)
    with console.status("Building the mailbox..."):
        mailbox = load_mailbox(args)
    emulator = Emulator(
        mailbox,
        state_dir=state_dir,
        host=args.host,
        port=args.port,
        allow_http_notifications=bool(getattr(args, "allow_http_notifications", False))
        or os.environ.get("M365SYNC_EMULATOR_ALLOW_HTTP_NOTIFICATIONS") == "1",
        notification_ca=getattr(args, "notification_ca", None),
        latency=LatencyModel(
            getattr(args, "latency_ms", 0.0) or 0.0, getattr(args, "per_item_ms", 0.0) or 0.0
        ),
    )
    emulator.start()
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        console.print(f"[bold]Emulator[/] for {mailbox.user['mail']} at {emulator.base_url}")
        console.print(f"  authority      {emulator.authority}")
        console.print(f"  Graph          {emulator.graph_url}")
        console.print(f"  CA certificate {emulator.ca_path}")
        console.print(f"  client id      {emulator.client_id}")
        console.print(
            f"  messages       {sum(len(mailbox.messages_in(f['id'])) for f in mailbox.folders())}"
        )
        if args.write_config:
            args.write_config.write_text(
                emulator_config_toml(
                    emulator,
                    store_path=state_dir / "store.sqlite3",
                    keys_path=state_dir / "keys.jwks",
                    redirect_uri="http://localhost:8400/",
                ),
                encoding="utf-8",
            )
            args.write_config.chmod(0o600)
            written = args.write_config
            console.print(f"  daemon config  {written} (use: m365sync -c {written} connect)")
        console.print("Ctrl+C stops it.")
        stop.wait()
    except KeyboardInterrupt:
        pass
    finally:
        emulator.stop()
    return 0
