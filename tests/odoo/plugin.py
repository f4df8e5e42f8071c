"""A real Odoo 18 for the test session: the private stack, built once and shared.

With ``ODOO_SRC`` pointing at an Odoo 18 tree (``.ci/run`` points it at ``../shared/odoo18``),
the first test that needs Odoo builds Odoo's venv (reused while its lock is unchanged), starts
a PostgreSQL cluster of the run's own, and makes the databases the tests ask for; everything
is stopped and removed when the session ends, on failure and Ctrl-C too. With ``ODOO_URL``,
``ODOO_DB``, ``ODOO_USER`` and ``ODOO_PASSWORD`` set instead, the live suites use that Odoo
(a contributor's own, or staging) and the install tests skip.

Without either, the Odoo parts skip with one line saying how to enable them. With ``CI`` set
and ``../shared/odoo18`` beside the clone, nothing about Odoo may skip: a skip of a test marked
``odoo`` is reported as a failure.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import shutil
import tempfile
import time
import xmlrpc.client
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from odoo_harness import OdooRun, OdooTree, PgCluster, ensure_venv, find_odoo_src
from odoo_harness.server import CRM_MODULES, MODULE, OdooError

REPO = Path(__file__).resolve().parents[2]
SHARED_ODOO = REPO.parent / "shared" / "odoo18"
LIVE_ENV = ("ODOO_URL", "ODOO_DB", "ODOO_USER", "ODOO_PASSWORD")
HOW_TO = (
    "no Odoo configured: set ODOO_SRC=/path/to/odoo-18 (a source tree with odoo-bin) to run "
    "the addon's Odoo tests and the live suites in a private Odoo"
)
ADMIN = ("admin", "admin")  # a fresh database's administrator (--without-demo)
CRM_TEMPLATE = "m365_tpl_crm"


def odoo_required() -> bool:
    """CI with the shared Odoo tree beside the clone: Odoo must run, never skip."""
    return bool(os.environ.get("CI")) and SHARED_ODOO.is_dir()


def live_configured() -> bool:
    return all(os.environ.get(name) for name in LIVE_ENV)


@dataclass
class LiveOdoo:
    """A served Odoo with the addon: where the daemon and a person's client connect."""

    url: str
    db: str
    user: str  # the daemon's technical user
    api_key: str
    admin_user: str
    admin_password: str
    private: bool  # ours (made for this run) or the contributor's own

    def environ(self) -> dict[str, str]:
        return {
            "ODOO_URL": self.url,
            "ODOO_DB": self.db,
            "ODOO_USER": self.user,
            "ODOO_PASSWORD": self.api_key,
            "ODOO_ADMIN_USER": self.admin_user,
            "ODOO_ADMIN_PASSWORD": self.admin_password,
        }


class OdooStack:
    """The session's private Odoo: venv, cluster, data folder; databases made on demand."""

    def __init__(self, src: Path) -> None:
        self.src = src
        self.tree: OdooTree | None = None
        self.pg: PgCluster | None = None
        self.data_dir: Path | None = None
        self.databases: set[str] = set()
        self.results: dict[str, OdooRun] = {}  # the addon's test runs, for the summary
        self.timings: dict[str, float] = {}  # seconds each part took, for the summary
        self.live: LiveOdoo | None = None

    def start(self) -> OdooTree:
        if self.tree is None:
            with self.timed("Odoo's venv"):
                python = ensure_venv(self.src, REPO / ".venv-odoo")
            with self.timed("PostgreSQL cluster"):
                self.pg = PgCluster().start()
            self.data_dir = Path(tempfile.mkdtemp(prefix="m365-odoo-data-"))
            self.tree = OdooTree(self.src, python, self.pg, self.data_dir)
        return self.tree

    @contextlib.contextmanager
    def timed(self, part: str) -> Iterator[None]:
        started = time.monotonic()
        try:
            yield
        finally:
            self.timings[part] = self.timings.get(part, 0.0) + time.monotonic() - started

    def template(self, name: str, modules: tuple[str, ...]) -> str:
        """A fresh database with ``modules`` made once, to copy from."""
        tree = self.start()
        if name not in self.databases:
            with self.timed(f"fresh database {name}"):
                tree.install(name, modules, timeout=900).check(f"installing {', '.join(modules)}")
            self.databases.add(name)
        return name

    def stop(self) -> None:
        if self.tree is not None:
            self.tree.stop_serving()
        if self.pg is not None:
            self.pg.stop()
        if self.data_dir is not None:
            shutil.rmtree(self.data_dir, ignore_errors=True)
        self.tree = self.pg = self.data_dir = None
        self.databases.clear()  # results, timings and live stay for the summary


_STACK: OdooStack | None = None


def _stack() -> OdooStack:
    global _STACK
    if _STACK is None:
        src = find_odoo_src()
        if src is None:
            raise LookupError(HOW_TO)
        _STACK = OdooStack(src)
        atexit.register(_STACK.stop)  # Ctrl-C and crashes too, not only a clean finish
    return _STACK


def _unavailable(reason: str) -> None:
    if odoo_required():
        pytest.fail(f"Odoo is required in CI ({SHARED_ODOO} exists) but {reason}", pytrace=False)
    pytest.skip(reason)


# --- pytest hooks --------------------------------------------------------------------------


def pytest_configure(config: pytest.Config) -> None:
    if odoo_required() and not os.environ.get("ODOO_SRC"):
        os.environ["ODOO_SRC"] = str(SHARED_ODOO)


def pytest_report_header(config: pytest.Config) -> str:
    if live_configured():
        url, db = os.environ["ODOO_URL"], os.environ["ODOO_DB"]
        return f"odoo: the live suites use {url} (database {db}); ODOO_SRC is not used"
    try:
        src = find_odoo_src()
    except OdooError as error:
        return f"odoo: {error}"
    if src is None:
        return f"odoo: {HOW_TO}"
    return f"odoo: a private Odoo from ODOO_SRC={src} (PostgreSQL cluster of this run's own)"


def pytest_sessionfinish(session: pytest.Session) -> None:
    if _STACK is not None:
        _STACK.stop()


def pytest_terminal_summary(terminalreporter) -> None:
    """What ran in Odoo: the addon's suites (tests, tours, Odoo's verdict), the parts' times."""
    if _STACK is None or not (_STACK.results or _STACK.timings):
        return
    write = terminalreporter.write_line
    terminalreporter.section("real Odoo 18")
    for db, run in _STACK.results.items():
        log = run.tests()
        verdict = "no summary"
        if log.summary:
            verdict = "{} failed, {} error(s) of {} tests".format(*log.summary)
        write(
            f"{db}: {log.tests_run} Odoo tests in {len(log.classes)} classes, "
            f"{log.tours} browser tours succeeded; Odoo says {verdict} ({run.seconds:.0f} s)"
        )
    if _STACK.live:
        write(f"live contract and e2e suites ran against {_STACK.live.url} ({_STACK.live.db})")
    write("times: " + ", ".join(f"{part} {secs:.0f} s" for part, secs in _STACK.timings.items()))


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo):
    outcome = yield
    report = outcome.get_result()
    if report.skipped and odoo_required() and item.get_closest_marker("odoo"):
        reason = report.longrepr[-1] if isinstance(report.longrepr, tuple) else report.longrepr
        report.outcome = "failed"
        report.longrepr = f"an Odoo test skipped in CI, where Odoo is required: {reason}"


# --- fixtures ------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def private_odoo() -> OdooStack:
    """The private Odoo stack (``ODOO_SRC``); skips, or fails in CI, without one."""
    try:
        stack = _stack()
        stack.start()
    except LookupError as missing:
        _unavailable(str(missing))
    except Exception as error:  # the venv, the cluster: say which, in CI as a failure
        if odoo_required():
            raise
        _unavailable(f"the private Odoo could not start: {error}")
    return stack


@pytest.fixture(scope="session")
def odoo_live() -> Iterator[LiveOdoo]:
    """A served Odoo with the addon for the live contract and e2e suites.

    The contributor's own when ``ODOO_URL``... are set; else a private one made for this run
    (a CRM database with ``microsoft_calendar`` and the addon). The ``ODOO_*`` variables are
    set for the session either way, as the suites read them. At the end, any record the suites
    left behind fails the session's last test (nothing is deleted here: a contributor's own
    database is only reported on)."""
    if live_configured():
        live = LiveOdoo(
            os.environ["ODOO_URL"],
            os.environ["ODOO_DB"],
            os.environ["ODOO_USER"],
            os.environ["ODOO_PASSWORD"],
            os.environ.get("ODOO_ADMIN_USER") or os.environ["ODOO_USER"],
            os.environ.get("ODOO_ADMIN_PASSWORD") or os.environ["ODOO_PASSWORD"],
            private=False,
        )
    else:
        try:
            stack = _stack()
        except LookupError as missing:
            _unavailable(str(missing))
        live = serve_addon_db(stack, "m365_live")
        os.environ.update(live.environ())
    baseline = last_ids(live)
    yield live
    sweep(live, baseline)
    left = leftovers(live, baseline)
    assert not left, "the live suites left records behind: " + "; ".join(
        f"{model} {ids}" for model, ids in left.items()
    )


#: What the live suites create, in the order they are removed: accounts first (their mail,
#: bindings, outbox and subscriptions go with them), the heartbeats the daemon published,
#: then events, users and the contacts last (users, events and mail refer to them).
TRACKED_MODELS = (
    "m365.account",
    "m365.mail.message",
    "m365.mail.thread",
    "m365.outbox",
    "m365.connect.request",
    "m365.daemon.heartbeat",
    "m365.partner.claim",
    "calendar.event",
    "calendar.recurrence",
    "res.users",
    "res.partner",
)


def _call(live: LiveOdoo, login: str, secret: str, model: str, method: str, *args, **kw):
    common = xmlrpc.client.ServerProxy(f"{live.url}/xmlrpc/2/common")
    uid = common.authenticate(live.db, login, secret, {})
    models = xmlrpc.client.ServerProxy(f"{live.url}/xmlrpc/2/object", allow_none=True)
    return models.execute_kw(live.db, uid, secret, model, method, list(args), kw)


def _as_owner(live: LiveOdoo, model: str, method: str, *args, **kw):
    """As the administrator (the daemon's key reaches the daemon API only)."""
    return _call(live, live.admin_user, live.admin_password, model, method, *args, **kw)


def _made_since(live: LiveOdoo, model: str, last: int) -> list[int]:
    domain = [("id", ">", last)]
    return _as_owner(live, model, "search", domain, context={"active_test": False})


def last_ids(live: LiveOdoo) -> dict[str, int]:
    """The highest id of each tracked model before the live suites ran."""
    found = {}
    for model in TRACKED_MODELS:
        rows = _as_owner(
            live, model, "search", [], limit=1, order="id desc", context={"active_test": False}
        )
        found[model] = rows[0] if rows else 0
    return found


def sweep(live: LiveOdoo, baseline: dict[str, int]) -> None:
    """Delete what the run made, model by model: only records newer than the run's start and
    created by the run's own users (the administrator it seeds with, the daemon's user), so
    a contributor's database keeps what other people made meanwhile."""
    creators = set(
        _as_owner(live, "res.users", "search", [("login", "in", [live.admin_user, live.user])])
    )
    creators.update(_made_since(live, "res.users", baseline["res.users"]))  # users it made
    for model in TRACKED_MODELS:
        domain = [("id", ">", baseline[model]), ("create_uid", "in", sorted(creators))]
        ids = _as_owner(live, model, "search", domain, context={"active_test": False})
        if ids:
            _as_owner(live, model, "unlink", ids)


def leftovers(live: LiveOdoo, baseline: dict[str, int]) -> dict[str, list[int]]:
    """Records of tracked models made since `last_ids` that still exist."""
    left = {}
    for model, last in baseline.items():
        if ids := _made_since(live, model, last):
            left[model] = ids
    return left


def served_log() -> str | None:
    """What the served Odoo wrote so far (its access log included: one line per request, with
    the URL) when it is this run's private one; None for a contributor's own Odoo."""
    if _STACK is None or _STACK.live is None or not _STACK.live.private or _STACK.tree is None:
        return None
    return _STACK.tree.served_log(_STACK.live.db)


def serve_addon_db(stack: OdooStack, db: str) -> LiveOdoo:
    """``db``: a copy of the CRM template with the addon installed, served, with an API key
    for the daemon's technical user."""
    tree = stack.start()
    template = stack.template(CRM_TEMPLATE, CRM_MODULES)
    with stack.timed(f"served database {db}"):
        tree.copy_db(template, db)
        stack.databases.add(db)
        tree.install(db, [MODULE], timeout=600).check(f"installing {MODULE} in {db}")
        key = tree.daemon_api_key(db)
        url = tree.serve(db)
    stack.live = LiveOdoo(url, db, "m365sync", key, *ADMIN, private=True)
    return stack.live
