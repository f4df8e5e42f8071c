"""The reliability soak's person meets Odoo's "another writer changed the same records first;
retry" as a person does: by saving again (issue #17, seed 904967430).

A save by the salesperson (or a read of the final comparison) racing the daemon's write of
the same records can end in PostgreSQL's serialization failure after Odoo's own retries; Odoo
keeps nothing of that call and says to retry. The soak counted the whole run as wrong; a
person retries, so the soak's own calls do, and only a Conflict that outlasts a few tries
(or any other error) stops the run.
"""

from __future__ import annotations

from typing import Any

import pytest

from m365sync.errors import Conflict, CrmError
from tests.reliability.harness import as_a_person
from tests.reliability.odoo_crm import PersonTransport

BUSY = "Odoo at http://127.0.0.1:1: another writer changed the same records first; retry."


class Odoo:
    """An `XmlRpcTransport` stand-in whose first ``busy`` calls meet a Conflict."""

    def __init__(self, busy: int, error: Exception | None = None) -> None:
        self.busy = busy
        self.error = error or Conflict(BUSY)
        self.calls: list[tuple[Any, ...]] = []
        self.closed = False

    def execute_kw(self, model: str, method: str, args: list[Any], kwargs: Any = None) -> Any:
        self.calls.append((model, method, args, kwargs))
        if len(self.calls) <= self.busy:
            raise self.error
        return 42

    def close(self) -> None:
        self.closed = True


def test_a_save_that_meets_a_conflict_is_saved_again() -> None:
    odoo = Odoo(busy=2)
    person = PersonTransport(odoo, pause=0)
    values = [[7], {"name": "E3 renamed"}]
    assert person.execute_kw("calendar.event", "write", values) == 42
    assert odoo.calls == [("calendar.event", "write", values, None)] * 3
    person.close()
    assert odoo.closed


def test_a_conflict_that_outlasts_the_tries_stops_the_run() -> None:
    odoo = Odoo(busy=10)
    with pytest.raises(Conflict):
        PersonTransport(odoo, pause=0).execute_kw("m365.outbox", "create", [{}])
    assert len(odoo.calls) == 4


def test_other_refusals_are_not_retried() -> None:
    odoo = Odoo(busy=10, error=CrmError("Odoo refused the call: no such field"))
    with pytest.raises(CrmError, match="no such field"):
        PersonTransport(odoo, pause=0).execute_kw("calendar.event", "write", [[1], {}])
    assert len(odoo.calls) == 1


def test_a_person_waits_a_little_longer_each_time() -> None:
    waits: list[float] = []
    answers = iter([Conflict(BUSY), Conflict(BUSY), "connected"])

    def sign_in() -> str:
        answer = next(answers)
        if isinstance(answer, Exception):
            raise answer
        return answer

    assert as_a_person(sign_in, pause=0.25, sleep=waits.append) == "connected"
    assert waits == [0.25, 0.5]
