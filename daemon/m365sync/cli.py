"""The `m365sync` command line. Every failure ends in one sentence, never a traceback."""

from __future__ import annotations

import argparse
import logging
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from rich.console import Console
from rich.logging import RichHandler
from rich.markup import escape

from m365sync import __version__
from m365sync.config import Config, load_config
from m365sync.domain import AutoCreate, Privacy
from m365sync.errors import M365SyncError

console = Console()
err_console = Console(stderr=True)
log = logging.getLogger("m365sync")


def _setup_logging(verbose: int) -> None:
    level = logging.WARNING - 10 * min(verbose, 2)
    logging.basicConfig(
        level=level,
        format="%(message)s",
        handlers=[RichHandler(console=err_console, show_path=False, rich_tracebacks=False)],
    )
    # msal and urllib3 log request URLs (with codes or tokens in them) at DEBUG: keep them quiet.
    # urllib3 also warns of each connection retry; what finally failed is told in one sentence,
    # so its retries are shown only with -v.
    logging.getLogger("msal").setLevel(logging.WARNING)
    logging.getLogger("urllib3").setLevel(logging.WARNING if verbose else logging.ERROR)


def _config(args: argparse.Namespace, *, need_microsoft: bool = True) -> Config:
    return load_config(args.config).validate(need_microsoft=need_microsoft)


def cmd_check_config(args: argparse.Namespace) -> int:
    from m365sync.service.checks import check_config

    return check_config(_config(args, need_microsoft=False), console)


def cmd_connect(args: argparse.Namespace) -> int:
    from m365sync.service.connect import connect_account
    from m365sync.service.runtime import Runtime

    runtime = Runtime.build(_config(args))
    try:
        account = connect_account(
            runtime,
            owner=args.owner or "",
            privacy=Privacy(args.privacy) if args.privacy else None,
            auto_create=AutoCreate(args.auto_create) if args.auto_create else None,
            browser=args.browser,
        )
    finally:
        runtime.close()
    console.print(
        f"[bold green]Connected[/] {account.address} (account {account.id}): "
        f"{account.status_detail or account.status.value}"
    )
    return 0


def cmd_sync(args: argparse.Namespace) -> int:
    from m365sync.service.crm_connect import publish_daemon_info, redeem_pending_connects
    from m365sync.service.free_busy import answer_free_busy
    from m365sync.service.outbox_cycle import send_all_outboxes
    from m365sync.service.runtime import Runtime
    from m365sync.ui import sync_all_with_progress

    config = _config(args)
    runtime = Runtime.build(config)
    try:
        # Accounts connected from the CRM's web page arrive as sealed codes: redeem them first.
        publish_daemon_info(runtime)
        redeem_pending_connects(runtime)
        if args.once:
            return sync_all_with_progress(runtime, console, account_ids=args.account)
        import schedule

        interval = config.sync.mail_interval_seconds
        schedule.every(interval).seconds.do(
            sync_all_with_progress, runtime, console, account_ids=args.account
        )
        schedule.every(5).seconds.do(redeem_pending_connects, runtime)
        schedule.every(5).seconds.do(answer_free_busy, runtime)
        schedule.every(config.sync.outbox_interval_seconds).seconds.do(send_all_outboxes, runtime)
        schedule.every(10).minutes.do(publish_daemon_info, runtime)
        sync_all_with_progress(runtime, console, account_ids=args.account)
        console.print(f"Next mail cycle every {interval} s; Ctrl+C stops.")
        while True:
            schedule.run_pending()
            time.sleep(1)
    except KeyboardInterrupt:
        return 130
    finally:
        runtime.close()


def cmd_run(args: argparse.Namespace) -> int:
    from m365sync.service.daemon import ServiceOptions, run_service, use_json_logs
    from m365sync.service.runtime import Runtime

    if args.log_json:
        use_json_logs()
    logging.getLogger("m365sync").setLevel(logging.INFO if args.verbose < 2 else logging.DEBUG)
    config = _config(args)
    options = ServiceOptions.from_config(
        config.service,
        workers=args.workers,
        health_port=args.health_port,
        lease_ttl_seconds=args.lease_ttl,
    )
    return run_service(Runtime.build(config), options)


def cmd_status(args: argparse.Namespace) -> int:
    from m365sync.service.runtime import open_gateway
    from m365sync.sync.staleness import stale_after
    from m365sync.ui import accounts_table

    config = _config(args, need_microsoft=False)
    gateway = open_gateway(config)
    try:
        interval = gateway.crm_settings().sync_interval_seconds or config.sync.mail_interval_seconds
        gap = max(interval, config.notifications.safety_poll_seconds)
        console.print(
            accounts_table(gateway.list_accounts(), gateway, stale_threshold=stale_after(gap))
        )
    finally:
        gateway.close()
    return 0


def cmd_folders(args: argparse.Namespace) -> int:
    from m365sync.service.folders_cmd import folders_command
    from m365sync.service.runtime import Runtime

    runtime = Runtime.build(_config(args))
    try:
        return folders_command(
            runtime,
            console,
            account_id=args.account,
            choose=args.choose,
            folders=tuple(args.folder or ()),
        )
    finally:
        runtime.close()


def cmd_keys(args: argparse.Namespace) -> int:
    from m365sync.service.keys import keys_command

    return keys_command(_config(args, need_microsoft=False), args.action, console)


def cmd_emulator(args: argparse.Namespace) -> int:
    from m365sync.service.emulator_cmd import run_emulator

    return run_emulator(args, console)


def cmd_send(args: argparse.Namespace) -> int:
    from m365sync.service.actions import queue_and_send
    from m365sync.service.runtime import Runtime

    runtime = Runtime.build(_config(args))
    try:
        mail_id, _ = queue_and_send(
            runtime,
            account_id=args.account,
            to=args.to,
            cc=args.cc or [],
            subject=args.subject,
            body_html=args.body,
            attach=args.attach or [],
            reply_to=args.reply_to,
        )
        item = runtime.gateway.outbox_item(mail_id)  # type: ignore[attr-defined]
    finally:
        runtime.close()
    style = {"sent": "green", "failed": "red"}.get(item.state.value, "yellow")
    console.print(f"Outbox {mail_id}: [{style}]{item.state.value}[/] {item.error or ''}".rstrip())
    if item.internet_message_id:
        console.print(f"  internetMessageId {item.internet_message_id}")
    return 0 if item.state.value == "sent" else 1


def cmd_meet(args: argparse.Namespace) -> int:
    from rich.table import Table

    from m365sync.service.actions import day_availability, meeting_time, schedule_meeting
    from m365sync.service.runtime import Runtime

    local, zone = meeting_time(args.start, args.minutes, args.time_zone)
    runtime = Runtime.build(_config(args))
    try:
        midnight = local.replace(hour=0, minute=0, second=0, microsecond=0)
        own, others = day_availability(
            runtime, account_id=args.account, attendees=args.attendee, day=midnight
        )
        table = Table(title=f"Busy on {midnight:%A %Y-%m-%d} ({args.time_zone})")
        for column in ("Who", "From", "To", "What"):
            table.add_column(column)
        for meeting in own:
            if meeting.start and meeting.end:
                table.add_row(
                    "you",
                    f"{meeting.start.astimezone(zone):%H:%M}",
                    f"{meeting.end.astimezone(zone):%H:%M}",
                    meeting.subject,
                )
            else:
                table.add_row("you", "all day", "", meeting.subject)
        for person in others:
            if person.error:
                table.add_row(person.address, "-", "-", f"[dim]{person.error}[/]")
            for slot in person.slots:
                table.add_row(
                    person.address,
                    f"{slot.start.astimezone(zone):%H:%M}",
                    f"{slot.end.astimezone(zone):%H:%M}",
                    slot.status,
                )
        console.print(table)
        event_id, run = schedule_meeting(
            runtime,
            account_id=args.account,
            attendees=args.attendee,
            subject=args.subject,
            start=local,
            minutes=args.minutes,
            time_zone=args.time_zone,
            location=args.location,
            description=args.description,
            online=args.online,
        )
    finally:
        runtime.close()
    pushed = run.calendar.get("pushed", 0)
    console.print(
        f"Meeting {event_id}: "
        + ("[green]in Outlook, invitations sent by Outlook[/]" if pushed else "[red]not pushed[/]")
    )
    return 0 if pushed else 1


def cmd_demo(args: argparse.Namespace) -> int:
    from m365sync.demo import run_demo

    return run_demo(console, size=args.size, workdir=args.workdir)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="m365sync",
        description="Sync Microsoft 365 mail and calendars with Odoo CRM or the embedded store.",
    )
    parser.add_argument("--version", action="version", version=f"m365sync {__version__}")
    parser.add_argument(
        "-c", "--config", help="TOML configuration file (default: $M365SYNC_CONFIG)"
    )
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more log lines")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def add(name: str, handler: Callable[[argparse.Namespace], int], text: str):
        sub = commands.add_parser(name, help=text, description=text)
        sub.set_defaults(handler=handler)
        return sub

    add("check-config", cmd_check_config, "validate the configuration and reach every endpoint")
    connect = add(
        "connect", cmd_connect, "connect a Microsoft 365 mailbox (OAuth code flow + PKCE)"
    )
    connect.add_argument("--owner", help="CRM user who owns the account")
    connect.add_argument(
        "--privacy",
        choices=[p.value for p in Privacy],
        help="what the CRM may keep of this mailbox's mail (default: sync.privacy)",
    )
    connect.add_argument(
        "--auto-create",
        choices=[a.value for a in AutoCreate],
        help="create missing contacts from sent, or sent and received, mail "
        "(default: sync.auto_create)",
    )
    connect.add_argument(
        "--browser",
        choices=("auto", "open", "print", "follow"),
        default="auto",
        help="open a browser, print the URL, or follow the redirect itself (emulator)",
    )
    sync = add("sync", cmd_sync, "import mail now (--once) or on the configured interval")
    sync.add_argument("--once", action="store_true", help="one cycle, then exit")
    sync.add_argument("--account", type=int, action="append", help="only this account id")
    run = add("run", cmd_run, "run as a service: leases, workers, health and metrics")
    run.add_argument("--log-json", action="store_true", help="one JSON object per log line")
    run.add_argument("--workers", type=int, help="accounts synced at once (default 8)")
    run.add_argument("--health-port", type=int, help="loopback port of /healthz and /metrics")
    run.add_argument("--lease-ttl", type=float, help="seconds a lease lasts unrenewed")
    add("status", cmd_status, "show the connected accounts and their state")
    folders = add(
        "folders", cmd_folders, "list an account's mail folders (ids, counts, which are synced)"
    )
    folders.add_argument("--account", type=int, help="account id (when several are connected)")
    folders.add_argument(
        "--choose",
        choices=("inbox_sent", "all", "chosen", "config"),
        help="store the account's folder choice (embedded store; config = follow the config)",
    )
    folders.add_argument(
        "--folder",
        action="append",
        help="with --choose chosen: a well-known name, a path (Inbox/Key accounts) or an id",
    )
    keys = add("keys", cmd_keys, "list, create or rotate the daemon's sealing keys")
    keys.add_argument(
        "action", choices=("list", "rotate", "reseal", "public"), nargs="?", default="list"
    )
    send = add("send", cmd_send, "send a mail through a connected account (embedded store)")
    send.add_argument("--account", type=int, help="account id (when several are connected)")
    send.add_argument("--to", action="append", required=True, help="recipient (repeatable)")
    send.add_argument("--cc", action="append", help="copy recipient (repeatable)")
    send.add_argument("--subject", required=True)
    send.add_argument("--body", required=True, help="HTML body")
    send.add_argument("--attach", type=Path, action="append", help="file to attach")
    send.add_argument("--reply-to", help="Graph id of the message to reply to (its thread)")
    meet = add("meet", cmd_meet, "schedule a meeting in the account's Outlook calendar")
    meet.add_argument("--account", type=int, help="account id (when several are connected)")
    meet.add_argument("--attendee", action="append", required=True, help="(repeatable)")
    meet.add_argument("--subject", required=True)
    meet.add_argument("--start", required=True, help="local start, e.g. 2026-12-01T10:00")
    meet.add_argument("--minutes", type=int, default=30)
    meet.add_argument("--time-zone", default="UTC", help="IANA zone of --start")
    meet.add_argument("--location")
    meet.add_argument("--description", help="HTML or text for the invitation")
    meet.add_argument("--online", action="store_true", help="add an online meeting (Teams)")
    emulator = add("emulator", cmd_emulator, "run the Microsoft identity + Graph emulator")
    emulator.add_argument("--host", default="127.0.0.1", help="address to listen on")
    emulator.add_argument("--port", type=int, default=8443)
    emulator.add_argument("--size", type=int, default=500, help="seeded messages (10-100000)")
    emulator.add_argument("--seed", type=int, default=1)
    emulator.add_argument("--mailbox", type=Path, help="load the mailbox from a Graph-shaped JSON")
    emulator.add_argument("--state-dir", type=Path, default=Path(".emulator"))
    emulator.add_argument("--write-config", type=Path, help="write a daemon config for it here")
    from m365sync.service.emulator_cmd import add_emulator_arguments

    add_emulator_arguments(emulator)
    demo = add("demo", cmd_demo, "offline demo: emulator, connect, full and incremental sync")
    demo.add_argument("--size", type=int, default=5000, help="seeded messages")
    demo.add_argument("--workdir", type=Path, default=Path(".demo"))
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    _setup_logging(args.verbose)
    try:
        return args.handler(args)
    except M365SyncError as error:
        # The sentence may quote what the user typed: print it as text, never as markup.
        err_console.print(f"[bold red]Error:[/] {escape(str(error))}")
        return 2


if __name__ == "__main__":
    sys.exit(main())
