"""A first sync into a real Odoo over XML-RPC and into the embedded store, in the same run.

Needs a served Odoo with the addon: either ``--odoo-src`` (an Odoo 18 tree: a private
PostgreSQL cluster and Odoo are started, the addon installed, and all removed afterwards, as
``make bench`` does with ODOO_SRC), or ``--url/--db/--key`` of one already served
(``PYTHONPATH=tools python -m odoo_harness --port 8095 --db m365_bench`` prints the daemon
user's API key). One emulator process (no latency model:
this measures the CRM side) is seeded with a fresh mailbox (new Message-IDs, so every run
creates its messages); both CRMs first get the mailbox's contacts and companies (70% of the
contacts, as in the demo; Odoo's through the administrator's XML-RPC, only those it lacks).
Printed per CRM: wall time of a full mail cycle (calendar off), messages stored, stored
messages/s over the whole cycle, messages/s into the CRM (stored messages / seconds inside
``store_mail_page``, the wire included), and where the time went: the time inside each gateway
method against the rest (Graph, parsing, planning).

Usage: python bench/odoo_sync.py --odoo-src ../odoo18 [--size 3000]
       python bench/odoo_sync.py --url http://127.0.0.1:8095 --db m365_bench --key KEY
       [--size 3000] [--admin admin:admin]
"""

from __future__ import annotations

import argparse
import contextlib
import random
import shutil
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
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
from mail_sync import free_port, start_emulator


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


@contextlib.contextmanager
def private_odoo(src: Path, db: str = "m365_bench") -> Iterator[tuple[str, str]]:
    """(URL, daemon API key) of a private Odoo with the addon, removed afterwards."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tools"))
    from odoo_harness.postgres import PgCluster
    from odoo_harness.server import CRM_MODULES, MODULE, REPO, OdooTree
    from odoo_harness.venv import ensure_venv

    data = Path(tempfile.mkdtemp(prefix="m365-bench-odoo-"))
    pg = PgCluster().start()
    tree = None
    try:
        tree = OdooTree(src, ensure_venv(src, REPO / ".venv-odoo"), pg, data)
        tree.install(db, (*CRM_MODULES, MODULE), timeout=1800).check("installing")
        key = tree.daemon_api_key(db)
        yield tree.serve(db), key
    finally:
        if tree is not None:
            tree.stop_serving()
        pg.stop()
        shutil.rmtree(data, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--odoo-src", type=Path, help="an Odoo 18 tree: run a private Odoo")
    parser.add_argument("--url")
    parser.add_argument("--db", default="m365_bench")
    parser.add_argument("--key", help="the daemon user's API key")
    parser.add_argument("--user", default="m365sync")
    parser.add_argument("--admin", default="admin:admin")
    parser.add_argument("--size", type=int, default=3000)
    args = parser.parse_args()
    if args.odoo_src:
        print(f"Installing the addon in a private Odoo from {args.odoo_src} ...", flush=True)
        with private_odoo(args.odoo_src, args.db) as (args.url, args.key):
            measure(args)
    elif args.url and args.key:
        measure(args)
    else:
        parser.error("give --odoo-src, or --url and --key of a served Odoo")


def measure(args: argparse.Namespace) -> None:
    mailbox_seed = random.randrange(10**6)
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        process, config_path = start_emulator(args.size, workdir, mailbox_seed)
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
        f"{'CRM':<16} {'wall s':>7} {'stored':>7} {'msg/s':>7} {'pages':>6} {'in CRM s':>8} "
        f"{'page write s':>12} {'CRM msg/s':>9}  CRM time by method (calls)"
    )
    for name, row in rows.items():
        crm = sum(row["crm_seconds"].values())
        detail = ", ".join(
            f"{m} {s:.2f}s ({row['crm_calls'][m]})"
            for m, s in sorted(row["crm_seconds"].items(), key=lambda kv: -kv[1])[:4]
        )
        write = row["crm_seconds"].get("store_mail_page", 0.0)
        print(
            f"{name:<16} {row['seconds']:>7.1f} {row['stored']:>7} "
            f"{row['stored'] / row['seconds']:>7.0f} {row['pages']:>6} {crm:>8.1f} "
            f"{write:>12.2f} {row['stored'] / write if write else 0:>9.0f}  {detail}"
        )


if __name__ == "__main__":
    main()
