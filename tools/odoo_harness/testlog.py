"""Reading Odoo's test log: which test classes ran, what failed, which tours succeeded.

Odoo reports its tests only through its log (``Starting TestX.test_y ...``, ``FAIL: ...`` and
``ERROR: ...`` records with their tracebacks, ``skipped ...``, the browser's ``tour succeeded``
and a closing ``N failed, M error(s) of K tests``). This turns a log into per-class results
that a pytest test can assert on, with Odoo's own failing lines as the message.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

RECORD = re.compile(
    r"^(?P<when>\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}) (?P<pid>\d+) (?P<level>[A-Z_]+) "
    r"(?P<db>\S+) (?P<logger>[\w.]+): (?P<message>.*)$"
)
STARTING = re.compile(r"^Starting (?P<cls>[\w.]+)\.(?P<method>\w+) \.\.\.\s*$")
FAILED = re.compile(r"^(?P<kind>FAIL|ERROR): (?:Subtest )?(?P<cls>[\w.]+)\.(?P<method>\w+)")
CLASS_ERROR = re.compile(r"^(?:FAIL|ERROR): (?:setUpClass|tearDownClass) \([\w.]+\.(?P<cls>\w+)\)")
SKIPPED = re.compile(r"^skipped (?:Subtest )?(?P<cls>[\w.]+)\.(?P<method>\w+) : (?P<reason>.*)")
SUMMARY = re.compile(r"(?P<failed>\d+) failed, (?P<errors>\d+) error\(s\) of (?P<total>\d+) tests")
TOUR_OK = "tour succeeded"


@dataclass
class Record:
    level: str
    logger: str
    message: str

    @property
    def text(self) -> str:
        return f"{self.level} {self.logger}: {self.message}"


@dataclass
class ClassResult:
    """What Odoo's log says about one test class."""

    started: list[str] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    tours: int = 0


@dataclass
class TestLog:
    """The parsed log of one Odoo test run."""

    classes: dict[str, ClassResult] = field(default_factory=dict)
    #: ERROR/CRITICAL records that no test class can be blamed for (install, registry, ...).
    stray_errors: list[str] = field(default_factory=list)
    summary: tuple[int, int, int] | None = None  # failed, errors, total
    last_started: str | None = None

    def result(self, cls: str) -> ClassResult:
        return self.classes.setdefault(cls, ClassResult())

    @property
    def tests_run(self) -> int:
        return sum(len(c.started) for c in self.classes.values())

    @property
    def tours(self) -> int:
        return sum(c.tours for c in self.classes.values())


def records(text: str) -> list[Record]:
    """Log records, each with its continuation lines (tracebacks) folded into its message."""
    found: list[Record] = []
    for line in text.splitlines():
        match = RECORD.match(line)
        if match:
            found.append(Record(match["level"], match["logger"], match["message"]))
        elif found:
            found[-1].message += "\n" + line
    return found


def parse_test_log(text: str, modules: str | tuple[str, ...]) -> TestLog:
    """Per-class results of the tests of ``modules`` (addon names) in an Odoo log, keyed
    ``addon.TestClass``."""
    log = TestLog()
    prefixes = tuple(
        f"odoo.addons.{m}." for m in ((modules,) if isinstance(modules, str) else modules)
    )
    current: str | None = None
    for record in records(text):
        first = record.message.split("\n", 1)[0]
        ours = record.logger.startswith(prefixes)
        addon = record.logger.split(".")[2] if ours else ""
        if ours and (started := STARTING.match(first)):
            current = f"{addon}.{started['cls'].split('.')[0]}"
            log.result(current).started.append(started["method"])
            log.last_started = f"{current}.{started['method']}"
            continue
        if ours and (skipped := SKIPPED.match(first)):
            cls = f"{addon}.{skipped['cls'].split('.')[0]}"
            log.result(cls).skipped.append(f"{skipped['method']}: {skipped['reason']}")
            continue
        if ours and TOUR_OK in first and current:
            log.result(current).tours += 1
            continue
        if summary := SUMMARY.search(first):
            log.summary = (int(summary["failed"]), int(summary["errors"]), int(summary["total"]))
            current = None
            continue
        if record.level not in ("ERROR", "CRITICAL"):
            continue
        blamed = FAILED.match(first) or CLASS_ERROR.match(first)
        if blamed and ours:
            log.result(f"{addon}.{blamed['cls'].split('.')[0]}").failures.append(record.text)
        elif current is not None and (ours or _during_tests(record)):
            log.result(current).failures.append(record.text)
        else:
            log.stray_errors.append(record.text)
    return log


def _during_tests(record: Record) -> bool:
    """An error logged by Odoo itself (http, the ORM, the browser) while a test of ours ran."""
    return not record.logger.startswith("odoo.addons.") or ".tests." in record.logger
