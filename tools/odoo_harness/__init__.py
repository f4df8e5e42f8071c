"""A private Odoo 18 for the project's tests and for a person to click through.

Nothing here imports the daemon: it only needs an Odoo source tree (``ODOO_SRC``), Python 3.11
and PostgreSQL's server binaries. It builds Odoo's own virtual environment from the tree's
lock, starts a PostgreSQL cluster of its own in a temporary folder (never the system cluster,
never a user's database), installs the addon on fresh databases, runs the addon's Odoo tests
with a watchdog and parses their log, and serves a database over HTTP.

`python -m odoo_harness` (what `make odoo` runs) starts the same stack for a person.
"""

from .postgres import PgCluster
from .server import OdooRun, OdooTree, find_odoo_src
from .testlog import TestLog, parse_test_log
from .venv import ensure_venv

__all__ = [
    "OdooRun",
    "OdooTree",
    "PgCluster",
    "TestLog",
    "ensure_venv",
    "find_odoo_src",
    "parse_test_log",
]
