"""The addon in a real Odoo 18: installed on fresh databases, its own Odoo tests (browser tours
included) run in a CRM database and in a bare one, and an upgrade in place of a database that
holds synced data.

Odoo runs its tests itself and reports them only in its log; each of the addon's test classes
is one pytest test here, failing with Odoo's own failing lines. A test that makes no progress
for `TEST_TIMEOUT` seconds stops the run and is named: a hang fails fast instead of holding CI.
"""

from __future__ import annotations

import json

import pytest

from odoo_harness import OdooRun
from odoo_harness.server import BARE_MODULES, CRM_MODULES, MODULE, ensure_chromium

from .addon_suite import OdooTestClass, installable_in, odoo_test_classes
from .plugin import CRM_TEMPLATE, OdooStack
from .upgrade_data import COUNT, FILL

pytestmark = [pytest.mark.odoo, pytest.mark.slow]

CLASSES = odoo_test_classes()
TEST_TIMEOUT = 180  # seconds one Odoo test may run (a tour takes ~20 s on two cores)
RUN_TIMEOUT = 1800


def run_addon_tests(stack: OdooStack, db: str, template: str, modules: tuple[str, ...]) -> OdooRun:
    """The addon installed with its tests enabled in ``db``, a copy of a fresh database with
    ``modules`` (made once as ``template``)."""
    if ensure_chromium() is None:
        pytest.fail("chromium is needed for the addon's browser tours and could not be installed")
    tree = stack.start()
    tree.copy_db(stack.template(template, modules), db)
    stack.databases.add(db)
    with stack.timed(f"addon tests in {db}"):
        run = tree.test(db, test_timeout=TEST_TIMEOUT, timeout=RUN_TIMEOUT)
    stack.results[db] = run
    return run


@pytest.fixture(scope="module")
def crm_run(private_odoo: OdooStack) -> OdooRun:
    return run_addon_tests(private_odoo, "m365_tests_crm", CRM_TEMPLATE, CRM_MODULES)


def explain(run: OdooRun) -> str:
    if run.hung_in:
        return (
            f"Odoo's test run hung in {run.hung_in} (no progress for {TEST_TIMEOUT} s) "
            "and was stopped"
        )
    if run.timed_out:
        return f"Odoo's test run took more than {RUN_TIMEOUT} s and was stopped"
    return ""


def check_class(run: OdooRun, cls: OdooTestClass) -> None:
    log = run.tests()
    result = log.classes.get(cls.key)
    if result is None or not result.started:
        pytest.fail(f"{cls} did not run. {explain(run)}\n{run.tail(5)}", pytrace=False)
    problems = []
    if missing := sorted(set(cls.tests) - set(result.started)):
        problems.append(f"did not run: {', '.join(missing)}. {explain(run)}")
    problems += [f"skipped {skip}" for skip in result.skipped]
    problems += result.failures
    if result.tours < cls.tours:
        problems.append(f"{cls.tours} tour(s) started, {result.tours} succeeded")
    if problems:
        pytest.fail(f"{cls} in Odoo:\n" + "\n".join(problems), pytrace=False)


def test_the_addon_suite_runs_to_its_end_in_a_crm_database(crm_run: OdooRun) -> None:
    """Every test ran and Odoo's own summary agrees: nothing hung, nothing left out."""
    assert not explain(crm_run), explain(crm_run)
    log = crm_run.tests()
    expected = sum(len(c.tests) for c in installable_in(CLASSES, CRM_MODULES))
    assert log.summary is not None, f"Odoo printed no test summary:\n{crm_run.tail()}"
    assert log.summary == (0, 0, expected), f"Odoo: {log.summary} (failed, errors, of)"
    assert not log.stray_errors, "\n".join(log.stray_errors)
    assert crm_run.returncode == 0, crm_run.tail()


@pytest.mark.parametrize("cls", installable_in(CLASSES, CRM_MODULES), ids=str)
def test_odoo_class_in_a_crm_database(crm_run: OdooRun, cls: OdooTestClass) -> None:
    check_class(crm_run, cls)


def test_the_addon_installs_and_passes_in_a_bare_database(private_odoo: OdooStack) -> None:
    """contacts, calendar and mail only (no CRM app, no microsoft_calendar): the same suite."""
    run = run_addon_tests(private_odoo, "m365_tests_bare", "m365_tpl_bare", BARE_MODULES)
    failures = []
    expected = installable_in(CLASSES, BARE_MODULES)
    for cls in expected:
        try:
            check_class(run, cls)
        except pytest.fail.Exception as failed:
            failures.append(str(failed))
    assert not failures, "\n".join(failures)
    assert run.tests().summary == (0, 0, sum(len(c.tests) for c in expected)), run.tail()


def counts(stack: OdooStack, db: str, script: str) -> dict[str, int]:
    run = stack.start().shell(db, script)
    for line in run.log.splitlines():
        if line.startswith("M365-COUNTS="):
            return json.loads(line.split("=", 1)[1])
    pytest.fail(f"the shell script printed no counts:\n{run.tail()}", pytrace=False)


def test_an_upgrade_in_place_keeps_synced_mail_meetings_and_outbox(private_odoo: OdooStack) -> None:
    """``-u crm_microsoft365`` on a CRM database holding a synced mailbox, meetings and
    outbox rows: no error or warning of ours, and every record is still there; from a version
    before 18.0.0.4.0 the daemon's technical user loses the internal user's groups."""
    tree = private_odoo.start()
    db = "m365_tests_upgrade"
    with private_odoo.timed("upgrade in place"):
        upgrade_in_place(private_odoo, tree, db)


def upgrade_in_place(private_odoo: OdooStack, tree, db: str) -> None:
    tree.copy_db(private_odoo.template(CRM_TEMPLATE, CRM_MODULES), db)
    private_odoo.databases.add(db)
    tree.install(db, [MODULE], timeout=600).check(f"installing {MODULE}")
    before = counts(private_odoo, db, FILL)
    assert before["m365.mail.message"] == 12 and before["threads on Ann"] == 3, before
    assert before["m365.event.binding"] == 2 and before["m365.outbox"] == 2, before
    upgrade = tree.run(db, "-u", MODULE, "--stop-after-init", timeout=600)
    upgrade.check(f"upgrading {MODULE} in place")
    ours = [w for w in upgrade.warnings() if MODULE in w or "m365" in w]
    assert not ours, "\n".join(ours)
    after = counts(private_odoo, db, COUNT)
    group_user, daemon_group = "base.group_user", "crm_microsoft365.group_m365_daemon"
    assert group_user in before.pop("daemon user's groups")  # as versions before 18.0.0.4.0
    # The upgrade step leaves the daemon's technical user in its own group only.
    assert after.pop("daemon user's groups") == [daemon_group]
    assert after == before
