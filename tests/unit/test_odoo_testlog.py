"""Reading Odoo's test log (tools/odoo_harness/testlog.py) on log text as Odoo 18 writes it:
the per-class verdicts the real-Odoo suite asserts on must not depend on a running Odoo."""

from __future__ import annotations

from odoo_harness.testlog import parse_test_log

T = "2026-12-05 21:10:35,531 8970"
END = " "  # Odoo ends its "Starting ..." lines with a space
OURS = "odoo.addons.crm_microsoft365.tests"
LOG = f"""\
{T} INFO db odoo.modules.loading: loading 42 modules...
{T} INFO db {OURS}.test_leases: Starting TestLeases.test_a ...{END}
{T} INFO db {OURS}.test_leases: Starting TestLeases.test_b ...{END}
{T} INFO db {OURS}.test_leases: ========================================
{T} ERROR db {OURS}.test_leases: FAIL: TestLeases.test_b
Traceback (most recent call last):
  File "test_leases.py", line 9, in test_b
AssertionError: 1 != 2
{T} INFO db {OURS}.test_wizards: Starting TestComposeTour.test_tour ...{END}
{T} INFO db {OURS}.test_wizards.browser: tour succeeded
{T} INFO db {OURS}.test_wizards: Starting TestComposeTour.test_other ...{END}
{T} INFO db {OURS}.test_wizards: skipped TestComposeTour.test_other : Chrome executable not found
{T} ERROR db odoo.http: Exception during request handling.
{T} INFO db odoo.addons.crm_microsoft365_crm.tests.test_lead: Starting TestLead.test_x ...{END}
{T} INFO db odoo.addons.crm.tests.test_crm_lead: Starting TestCRMLead.test_y ...{END}
{T} ERROR db odoo.tests.result: 1 failed, 1 error(s) of 5 tests when loading database 'db'
{T} ERROR db odoo.modules.registry: Failed to load registry
"""


def test_classes_are_keyed_by_addon_with_their_started_tests() -> None:
    log = parse_test_log(LOG, ("crm_microsoft365", "crm_microsoft365_crm"))
    assert log.classes["crm_microsoft365.TestLeases"].started == ["test_a", "test_b"]
    assert log.classes["crm_microsoft365_crm.TestLead"].started == ["test_x"]
    assert "crm.TestCRMLead" not in log.classes  # Odoo's own tests are not ours
    assert log.tests_run == 5


def test_a_failure_keeps_odoos_traceback_on_its_class() -> None:
    failures = parse_test_log(LOG, "crm_microsoft365").classes["crm_microsoft365.TestLeases"]
    assert len(failures.failures) == 1
    assert "FAIL: TestLeases.test_b" in failures.failures[0]
    assert "AssertionError: 1 != 2" in failures.failures[0]


def test_tours_skips_and_errors_during_a_test_belong_to_it() -> None:
    tour = parse_test_log(LOG, "crm_microsoft365").classes["crm_microsoft365.TestComposeTour"]
    assert tour.tours == 1
    assert tour.skipped == ["test_other: Chrome executable not found"]
    assert any("odoo.http" in failure for failure in tour.failures)


def test_the_summary_and_errors_after_it() -> None:
    log = parse_test_log(LOG, "crm_microsoft365")
    assert log.summary == (1, 1, 5)
    assert log.stray_errors == ["ERROR odoo.modules.registry: Failed to load registry"]
    assert log.last_started == "crm_microsoft365.TestComposeTour.test_other"
