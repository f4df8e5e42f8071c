"""The reliability soak's person meets Odoo's "another writer changed the same records first;
retry" as a person does: by saving again (issue #17, seed 904967430).

A save by the salesperson (or a read of the final comparison) racing the daemon's write of
the same records can end in PostgreSQL's serialization failure after Odoo's own retries; Odoo
keeps nothing of that call and says to retry. The soak counted the whole run as wrong; a
person retries, so the soak's own calls do, and only a Conflict that outlasts a few tries
(or any other error) stops the run.
"""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest

from m365sync.emulator.mailbox import Mailbox
from m365sync.errors import Conflict, CrmError
from m365sync.graph.send import OUTBOX_HEADER, OUTBOX_PREFIX
from m365sync.service.outbox_cycle import UNCONFIRMED
from tests.reliability.harness import Soak, as_a_person
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


class Outbox:
    """The CRM side the person reads and acts on: failed mails and their words."""

    def __init__(self, failed: dict[int, str]) -> None:
        self.failed = failed
        self.retried: list[int] = []

    def outbox(self) -> dict[int, Any]:
        state = SimpleNamespace(value="failed")
        return {i: SimpleNamespace(state=state, error=e) for i, e in self.failed.items()}

    def retry_mail(self, mail_id: int) -> None:
        self.retried.append(mail_id)


def test_a_person_retries_an_unconfirmed_mail_only_if_its_copy_is_nowhere() -> None:
    """The words say where to look (the mailbox, wherever it was filed, and Recover Deleted
    Items): a copy found in any of those went; one found nowhere, or a refused mail, is retried."""
    mailbox = Mailbox()
    for mail_id, folder in [(1, "sentitems"), (2, "archive"), (3, "deleteditems")]:
        mailbox.add_message(folder, _copy_of(mail_id))
    mailbox.add_message("recoverableitemsdeletions", _copy_of(4))
    crm = Outbox({i: UNCONFIRMED for i in (1, 2, 3, 4, 5, 7)} | {6: "Not sent: bad address."})
    person = SimpleNamespace(mailbox=mailbox, crm=crm, purged_outbox={7})  # 7: deleted for good
    Soak._retry_failed_mail(person)  # type: ignore[arg-type]
    assert crm.retried == [5, 6]


def _copy_of(mail_id: int) -> dict[str, Any]:
    header = {"name": OUTBOX_HEADER, "value": f"{OUTBOX_PREFIX}{mail_id}"}
    return {"subject": f"mail {mail_id}", "internetMessageHeaders": [header]}
