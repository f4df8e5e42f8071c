"""A first sync into a real Odoo over XML-RPC and into the embedded store, in the same run.

Needs a served Odoo with the addon (``PYTHONPATH=tools python -m odoo_harness --port 8095
--db m365_bench`` prints the daemon user's API key). One emulator process (no latency model:
this measures the CRM side) is seeded with a fresh mailbox (new Message-IDs, so every run
creates its messages); both CRMs first get the mailbox's contacts and companies (70% of the
contacts, as in the demo; Odoo's through the administrator's XML-RPC, only those it lacks).
Printed per CRM: wall time of a full mail cycle (calendar off), messages stored, stored
messages/s, and where the time went: the time inside each gateway method (the CRM's side and
the wire) against the rest (Graph, parsing, planning).

Usage: python bench/odoo_sync.py --url http://127.0.0.1:8095 --db m365_bench --key KEY
       [--size 3000] [--admin admin:admin]
"""

from __future__ import annotations

import argparse
import random
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

from m365sync.config import load_config
from m365sync.crm.odoo import XmlRpcTransport
from m365sync.crm.sqlite import SqliteGateway
from m365sync.demo import seed_crm
from m365sync.emulator import seed
from m365sync.emulator.mailbox import Mailbox
from m365sync.service.account_sync import sync_account_mail
from m365sync.service.connect import connect_account
from m365sync.service.runtime import Runtime, open_gateway
from mail_sync import free_port


class TimedGateway:
    """Seconds and calls per public gateway method."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.seconds: Counter[str] = Counter()
        self.calls: Counter[str] = Counter()

    def __getattr__(self, name: str) -> Any:
        target = getattr(self.inner, name)
        if not callable(target) or name.startswith("_"):
            return target

        def timed(*args: Any, **kwargs: Any) -> Any:
            started = time.perf_counter()
            try:
                return target(*args, **kwargs)
            finally:
                self.seconds[name] += time.perf_counter() - started
                self.calls[name] += 1

        return timed


def start_emulator(size: int, mailbox_seed: int, workdir: Path) -> tuple[subprocess.Popen, Path]:
    config = workdir / "m365sync.toml"
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "m365sync",
            "emulator",
            "--port",
            str(free_port()),
            "--size",
            str(size),
            "--seed",
            str(mailbox_seed),
            "--state-dir",
            str(workdir),
            "--write-config",
            str(config),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 180
    while not config.exists():
        if process.poll() is not None or time.monotonic() > deadline:
            raise SystemExit("the emulator did not start")
        time.sleep(0.2)
    time.sleep(0.2)
    return process, config


def seed_odoo(admin: XmlRpcTransport, mailbox: Mailbox, share: float = 0.7) -> None:
    """The same contacts and companies seed_crm gives the embedded store, created in bulk."""
    people = seed.crm_contacts(mailbox)
    wanted = {p["email"].lower() for p in people} | {
        f"info@{p['company_domain']}" for p in people if p.get("company")
    }
    known = {
        (r["email"] or "").lower(): r["id"]
        for r in admin.execute_kw(
            "res.partner", "search_read", [[("email", "in", sorted(wanted))]], {"fields": ["email"]}
        )
    }
    companies: dict[str, int] = {}
    for person in people:
        domain = person.get("company_domain")
        if person.get("company") and domain and domain not in companies:
            email = f"info@{domain}"
            companies[domain] = known.get(email) or admin.execute_kw(
                "res.partner",
                "create",
                [
                    {
                        "name": person["company"],
                        "email": email,
                        "is_company": True,
                        "website": f"https://www.{domain}",
                    }
                ],
            )
    contacts = []
    for index, person in enumerate(people):
        if (index * 7919) % 100 < share * 100 and person["email"].lower() not in known:
            contacts.append(
                {
                    "name": person["name"],
                    "email": person["email"],
                    "parent_id": companies.get(person.get("company_domain") or ""),
                }
            )
    if contacts:
        admin.execute_kw("res.partner", "create", [contacts])


def cycle(config_path: Path, text: str, environ: dict[str, str], store: Any) -> dict[str, Any]:
    config_path.write_text(text)
    config = load_config(config_path, environ=environ).validate()
    gateway = TimedGateway(store if store is not None else open_gateway(config))
    runtime = Runtime.build(config, gateway)  # type: ignore[arg-type]
    try:
        account = connect_account(runtime, browser="follow")
        gateway.seconds.clear()
        gateway.calls.clear()
        started = time.perf_counter()
        run = sync_account_mail(runtime, gateway.get_account(account.id))
        seconds = time.perf_counter() - started
        if run.error:
            raise SystemExit(f"the cycle failed: {run.error}")
    finally:
        runtime.close()
    return {
        "seconds": seconds,
        "stored": run.imported,
        "pages": run.pages,
        "crm_seconds": dict(gateway.seconds),
        "crm_calls": dict(gateway.calls),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--url", required=True)
    parser.add_argument("--db", required=True)
    parser.add_argument("--key", required=True, help="the daemon user's API key")
    parser.add_argument("--user", default="m365sync")
    parser.add_argument("--admin", default="admin:admin")
    parser.add_argument("--size", type=int, default=3000)
    args = parser.parse_args()
    mailbox_seed = random.randrange(10**6)
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        process, config_path = start_emulator(args.size, mailbox_seed, workdir)
        try:
            mailbox = Mailbox.seeded(size=args.size, seed=mailbox_seed)
            base = config_path.read_text() + "initial_window_days = 0\ncalendar = false\n"
            base = base.replace(
                'redirect_uri = "http://localhost:8400/"',
                f'redirect_uri = "http://localhost:{free_port()}/"',
            )
            sqlite = SqliteGateway(workdir / "bench.sqlite3")
            seed_crm(sqlite, mailbox, share=0.7)
            rows = {"embedded store": cycle(workdir / "a.toml", base, {}, sqlite)}
            login, password = args.admin.split(":", 1)
            seed_odoo(XmlRpcTransport(args.url, args.db, login, password, timeout=120), mailbox)
            odoo = base.replace('backend = "sqlite"', 'backend = "odoo"') + (
                f'\n[odoo]\nurl = "{args.url}"\ndb = "{args.db}"\nuser = "{args.user}"\n'
            )
            rows["Odoo (XML-RPC)"] = cycle(
                workdir / "b.toml", odoo, {"M365SYNC_ODOO__API_KEY": args.key}, None
            )
        finally:
            process.terminate()
            process.wait(timeout=30)
    print(f"First mail sync of {args.size:,} messages (no latency model), same run")
    print(
        f"{'CRM':<16} {'wall s':>7} {'stored':>7} {'msg/s':>7} {'pages':>6} {'in CRM s':>8}  "
        "CRM time by method (calls)"
    )
    for name, row in rows.items():
        crm = sum(row["crm_seconds"].values())
        detail = ", ".join(
            f"{m} {s:.2f}s ({row['crm_calls'][m]})"
            for m, s in sorted(row["crm_seconds"].items(), key=lambda kv: -kv[1])[:4]
        )
        print(
            f"{name:<16} {row['seconds']:>7.1f} {row['stored']:>7} "
            f"{row['stored'] / row['seconds']:>7.0f} {row['pages']:>6} {crm:>8.1f}  {detail}"
        )


if __name__ == "__main__":
    main()
