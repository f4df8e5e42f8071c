"""``make odoo``: the tests' private Odoo, for a person to click through.

Starts a PostgreSQL cluster of its own, makes a CRM database (contacts, calendar, mail, crm,
microsoft_calendar) with the addon, gives the daemon's technical user an API key, serves it on
loopback and prints the URL, the administrator's login and the key. Ctrl-C stops Odoo and
removes the cluster and the data folder (nothing is left behind).
"""

from __future__ import annotations

import argparse
import shutil
import signal
import sys
import tempfile
import time
from pathlib import Path

from .postgres import PgCluster, PostgresError
from .server import CRM_MODULES, MODULE, REPO, OdooError, OdooTree, find_odoo_src
from .venv import VenvError, ensure_venv


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="make odoo", description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, default=8069, help="HTTP port on 127.0.0.1")
    parser.add_argument("--db", default="m365_demo", help="database name")
    args = parser.parse_args(argv)
    try:
        src = find_odoo_src()
    except OdooError as error:
        print(error, file=sys.stderr)
        return 2
    if src is None:
        print(
            "Set ODOO_SRC to an Odoo 18 source tree (e.g. ODOO_SRC=../shared/odoo18).",
            file=sys.stderr,
        )
        return 2
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    pg = tree = None
    data = Path(tempfile.mkdtemp(prefix="m365-odoo-data-"))
    try:
        print(f"Odoo's environment from {src} ...", flush=True)
        python = ensure_venv(src, REPO / ".venv-odoo")
        pg = PgCluster().start()
        tree = OdooTree(src, python, pg, data)
        print(f"Installing {', '.join((*CRM_MODULES, MODULE))} in {args.db} ...", flush=True)
        tree.install(args.db, (*CRM_MODULES, MODULE), timeout=900).check("installing")
        key = tree.daemon_api_key(args.db)
        url = tree.serve(args.db, args.port)
        print(
            f"\nOdoo is at {url}  (database {args.db})\n"
            f"  administrator:   login admin, password admin\n"
            f"  daemon user:     m365sync, API key {key}\n"
            f'  daemon settings: [odoo] url = "{url}", db = "{args.db}", user = "m365sync",\n'
            f"                   and M365SYNC_ODOO__API_KEY={key}\n"
            f"  Odoo's log:      {data / f'serve-{args.db}.log'}\n"
            "Ctrl-C stops Odoo and removes its database and files.",
            flush=True,
        )
        while tree.served[args.db].poll() is None:
            time.sleep(1)
        print(f"Odoo exited {tree.served[args.db].returncode}; see its log above.", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 0
    except (OdooError, PostgresError, VenvError) as error:
        print(error, file=sys.stderr)
        return 1
    finally:
        if tree is not None:
            tree.stop_serving()
        if pg is not None:
            pg.stop()
        shutil.rmtree(data, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
