"""The gateway contract against a live Odoo with the addon ``crm_microsoft365`` installed.

Runs against the session's ``odoo_live`` (tests/odoo/plugin.py): a private Odoo made for the
run from ``ODOO_SRC``, or the one named by ``ODOO_URL``, ``ODOO_DB``, ``ODOO_USER`` and
``ODOO_PASSWORD`` (an API key); without either it skips, with the reason (in CI it fails).
``ODOO_USER`` is the daemon's technical user (in the group *Sync daemon (technical)*, e.g.
the addon's ``m365sync``). Partners are seeded the way a person makes them, with a plain
XML-RPC ``create`` on ``res.partner``, as ``ODOO_ADMIN_USER`` / ``ODOO_ADMIN_PASSWORD`` when set
(the technical user may not create contacts itself), else as ``ODOO_USER``. ``ODOO_PROTOCOL``
(xmlrpc | json2) picks the protocol.

The database may be shared: every test makes its own accounts and partners with unique
addresses, and the accounts this run made are deleted at the end (``ODOO_KEEP_TEST_DATA=1``
keeps them), so runs do not pile up.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from datetime import timedelta

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from m365sync.config import OdooConfig
from m365sync.crm.gateway import CrmGateway
from m365sync.crm.odoo import OdooGateway, XmlRpcTransport
from m365sync.domain import Partner, Recurrence, Sensitivity
from m365sync.errors import CrmError

from .gateway_contract import GatewayContract

# The served Odoo (the run's private one, or ODOO_URL...): it sets the ODOO_* variables read here.
pytestmark = [pytest.mark.odoo, pytest.mark.usefixtures("odoo_live")]


def odoo_config() -> OdooConfig:
    return OdooConfig(
        url=os.environ["ODOO_URL"],
        db=os.environ["ODOO_DB"],
        user=os.environ["ODOO_USER"],
        api_key=os.environ["ODOO_PASSWORD"],
        protocol=os.environ.get("ODOO_PROTOCOL", "xmlrpc"),
    )


def admin_rpc() -> XmlRpcTransport:
    """Plain XML-RPC as a person with the rights to make contacts (see the module docstring)."""
    return XmlRpcTransport(
        os.environ["ODOO_URL"],
        os.environ["ODOO_DB"],
        os.environ.get("ODOO_ADMIN_USER") or os.environ["ODOO_USER"],
        os.environ.get("ODOO_ADMIN_PASSWORD") or os.environ["ODOO_PASSWORD"],
        timeout=60,
    )


@pytest.fixture(scope="module")
def admin(odoo_live) -> Iterator[XmlRpcTransport]:
    rpc = admin_rpc()
    yield rpc
    rpc.close()


@pytest.fixture(scope="module")
def live_gateway(admin: XmlRpcTransport) -> Iterator[OdooGateway]:
    gateway = OdooGateway.from_config(odoo_config())
    first = gateway.list_accounts()  # fails here, in words, if the key, group or addon is wrong
    before = max((a.id for a in first), default=0)
    yield gateway
    gateway.close()
    if os.environ.get("ODOO_KEEP_TEST_DATA"):
        return
    made = admin.execute_kw("m365.account", "search", [[("id", ">", before)]])
    events = _events_of(admin, made) if made else []
    if made:
        admin.execute_kw("m365.account", "unlink", [made])
    if events:  # their bindings went with the accounts: now they are plain events
        admin.execute_kw("calendar.event", "unlink", [events])


def _events_of(admin: XmlRpcTransport, account_ids: list[int]) -> list[int]:
    """The calendar events the run's accounts own or hold (none before the calendar part)."""
    domain = [
        "|",
        ("m365_owner_account_id", "in", account_ids),
        ("m365_binding_ids.account_id", "in", account_ids),
    ]
    try:
        return admin.execute_kw(
            "calendar.event", "search", [domain], {"context": {"active_test": False}}
        )
    except CrmError:
        return []


class TestOdooContract(GatewayContract):
    @pytest.fixture
    def gateway(self, live_gateway: OdooGateway) -> CrmGateway:
        return live_gateway

    @pytest.fixture
    def other_gateway(self) -> Iterator[OdooGateway]:
        """A second worker: its own connection to the same Odoo."""
        gateway = OdooGateway.from_config(odoo_config())
        yield gateway
        gateway.close()

    def seed_partner(
        self,
        gateway: CrmGateway,
        name: str,
        email: str | None = None,
        *,
        is_company: bool = False,
        parent_id: int | None = None,
        website: str | None = None,
    ) -> Partner:
        values = {
            "name": name,
            "email": email or False,
            "is_company": is_company,
            "parent_id": parent_id or False,
            "website": website or False,
        }
        partner_id = admin_rpc_cached().execute_kw("res.partner", "create", [values])
        return Partner(partner_id, name, email, is_company, parent_id, website)

    def folder_skips(self, gateway, account, folder):
        import json

        (row,) = admin_rpc_cached().execute_kw(
            "m365.account.folder",
            "search_read",
            [[("account_id", "=", account.id), ("folder_id", "=", folder)]],
            {"fields": ["skipped"]},
        )
        return json.loads(row["skipped"] or "{}")

    def crm_pause(self, gateway, account):
        admin_rpc_cached().execute_kw("m365.account", "action_pause", [[account.id]])

    def crm_resume(self, gateway, account):
        admin_rpc_cached().execute_kw("m365.account", "action_resume", [[account.id]])

    # Its own @given function: Hypothesis refuses one run by several classes (the embedded
    # store's suite runs the base class's).
    @settings(deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
    @given(data=st.data())
    def test_any_interleaving_with_replays_equals_each_page_once(
        self, gateway: CrmGateway, data: st.DataObject
    ) -> None:
        prop = GatewayContract.test_any_interleaving_with_replays_equals_each_page_once
        prop.hypothesis.inner_test(self, gateway, data)


_ADMIN: list[XmlRpcTransport] = []


def admin_rpc_cached() -> XmlRpcTransport:
    """One seeding connection for the module (seed_partner is not a fixture)."""
    if not _ADMIN:
        _ADMIN.append(admin_rpc())
    return _ADMIN[0]


# --- calendar (staged contract) -------------------------------------------------------------

from tests.contract.calendar_contract import CalendarContract  # noqa: E402


def odoo_datetime(value) -> str:
    """Odoo's RPC form of a datetime: naive UTC, ``YYYY-MM-DD HH:MM:SS``."""
    from datetime import UTC

    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S")


# CalendarEvent fields a CRM user edits -> calendar.event fields.
_EVENT_FIELDS = {
    "subject": ("name", str),
    "start": ("start", odoo_datetime),
    "end": ("stop", odoo_datetime),
    "location": ("location", str),
    "body_html": ("description", str),
}


class TestOdooCalendar(CalendarContract):
    """The calendar contract on a live Odoo whose addon has the calendar. The CRM user's own
    actions are plain XML-RPC on ``calendar.event`` as a salesperson's client makes them
    (create with attendees, write, unlink), never the daemon's API."""

    @pytest.fixture
    def gateway(self, live_gateway: OdooGateway) -> CrmGateway:
        return live_gateway

    def seed_partner(self, gateway, name, email=None, *, is_company=False, parent_id=None):
        return TestOdooContract.seed_partner(
            self, gateway, name, email, is_company=is_company, parent_id=parent_id
        )

    def crm_create(self, gateway, account, item, partner_ids) -> int:
        values = {
            "name": item.subject or "",
            "start": odoo_datetime(item.start),
            "stop": odoo_datetime(item.end),
            "partner_ids": [(6, 0, list(partner_ids))],
            "m365_owner_account_id": account.id,
        }
        if item.sensitivity is not Sensitivity.NORMAL:
            values["privacy"] = "private"
        if item.recurrence is not None:
            # The contract's CRM series: daily, a number of occurrences (Odoo's own fields).
            assert item.recurrence.pattern_type == "daily"
            values.update(
                recurrency=True, rrule_type="daily", interval=item.recurrence.interval,
                end_type="count", count=item.recurrence.number_of_occurrences, event_tz="UTC",
            )  # fmt: skip
        return admin_rpc_cached().execute_kw("calendar.event", "create", [values])

    def crm_update(self, gateway, event_id, **changes) -> None:
        values = {}
        for name, value in changes.items():
            field, convert = _EVENT_FIELDS[name]
            values[field] = convert(value) if value is not None else False
        admin_rpc_cached().execute_kw("calendar.event", "write", [[event_id], values])

    def crm_delete(self, gateway, event_id) -> None:
        admin_rpc_cached().execute_kw("calendar.event", "unlink", [[event_id]])

    def crm_expand(self, gateway, event_id, count) -> None:
        """Odoo expanded the series into its own events when it was made."""

    def crm_occurrences(self, gateway, event_id) -> list[int]:
        """The events Odoo expanded the series into (its recurrence's, the hidden master
        the addon makes once the series is in Outlook left out)."""
        rpc = admin_rpc_cached()
        (row,) = rpc.execute_kw(
            "calendar.event", "read", [[event_id]], {"fields": ["recurrence_id"]}
        )
        if not row["recurrence_id"]:
            return []
        series = ("recurrence_id", "=", row["recurrence_id"][0])
        return rpc.execute_kw(
            "calendar.event", "search", [[series, ("m365_is_series_master", "=", False)]],
            {"order": "id"},
        )  # fmt: skip


# --- push (staged contract) -----------------------------------------------------------------

from tests.contract.push_contract import PushContract  # noqa: E402


class TestOdooPush(PushContract):
    """Subscriptions and sync requests on a live Odoo whose addon has push."""

    @pytest.fixture
    def gateway(self, live_gateway: OdooGateway) -> CrmGateway:
        return live_gateway


# --- outbox (the claim) ---------------------------------------------------------------------

from tests.contract.outbox_contract import OutboxContract  # noqa: E402


class TestOdooOutbox(OutboxContract):
    """The claim on a live Odoo: the addon's row lock and Odoo's serializable transaction.
    The mail is queued as a person does it, with a plain XML-RPC ``create`` on
    ``m365.outbox`` as the account's owner."""

    @pytest.fixture
    def gateway(self, live_gateway: OdooGateway) -> CrmGateway:
        return live_gateway

    @pytest.fixture
    def other_gateway(self) -> Iterator[OdooGateway]:
        """A second worker: its own connection to the same Odoo."""
        gateway = OdooGateway.from_config(odoo_config())
        yield gateway
        gateway.close()

    def account_owner(self) -> str:
        return os.environ.get("ODOO_ADMIN_USER") or os.environ["ODOO_USER"]

    def crm_queue(self, gateway, account, subject):
        return admin_rpc_cached().execute_kw(
            "m365.outbox",
            "create",
            [
                {
                    "account_id": account.id,
                    "email_to": '"Dana" <dana@fabrikam.example>',
                    "subject": subject,
                    "body_html": f"<p>{subject}</p>",
                }
            ],
        )


# --- the state machines, against the real addon -------------------------------------------

from tests.contract.calendar_machine import (  # noqa: E402
    CalendarSyncMachine,
    CrmActions,
    SeriesRef,
)
from tests.contract.machine_common import machine_for, run_regressions  # noqa: E402
from tests.contract.mail_machine import MailSyncMachine  # noqa: E402


def _machine_partner(gateway: CrmGateway, name: str, email: str) -> Partner:
    return TestOdooContract.seed_partner(None, gateway, name, email)


def _write_event(event_id: int, values: dict) -> None:
    admin_rpc_cached().execute_kw("calendar.event", "write", [[event_id], values])


def _odoo_create(gateway: CrmGateway, account, item, partner_ids: list[int]) -> int:
    """A salesperson's new meeting, as Odoo's form saves it: timed in the user's zone
    (``event_tz``), or all-day (Odoo's last day inclusive), or recurring (Odoo's own
    recurrence fields; Odoo makes every occurrence)."""
    values = {
        "name": item.subject or "",
        "partner_ids": [(6, 0, list(partner_ids))],
        "m365_owner_account_id": account.id,
        "event_tz": item.time_zone,
    }
    if item.is_all_day:
        last = item.end_date - timedelta(days=1)
        values.update(
            allday=True,
            start_date=item.start_date.isoformat(),
            stop_date=last.isoformat(),
            start=f"{item.start_date} 08:00:00",
            stop=f"{last} 18:00:00",
        )
    else:
        values.update(start=odoo_datetime(item.start), stop=odoo_datetime(item.end))
    if item.sensitivity is not Sensitivity.NORMAL:
        values["privacy"] = "private"
    if item.recurrence is not None:
        values.update(_odoo_pattern(item.recurrence))
    return admin_rpc_cached().execute_kw("calendar.event", "create", [values])


_ODOO_DAYS = {
    "monday": "mon",
    "tuesday": "tue",
    "wednesday": "wed",
    "thursday": "thu",
    "friday": "fri",
    "saturday": "sat",
    "sunday": "sun",
}


def _odoo_pattern(recurrence: Recurrence) -> dict:
    values = {
        "recurrency": True,
        "rrule_type": recurrence.pattern_type,
        "interval": recurrence.interval,
        "end_type": "count",
        "count": recurrence.number_of_occurrences,
    }
    values.update(
        {day: day_name in recurrence.days_of_week for day_name, day in _ODOO_DAYS.items()}
    )
    return values


def _odoo_read(gateway: CrmGateway, event_ids: list[int]) -> dict[int, tuple[bool, bool]]:
    """What a user sees of the events in Odoo: private (or "Only internal users"), free."""
    rows = admin_rpc_cached().execute_kw(
        "calendar.event",
        "read",
        [event_ids, ["privacy", "show_as"]],
        {"context": {"active_test": False}},
    )
    return {
        row["id"]: (row["privacy"] in ("private", "confidential"), row["show_as"] == "free")
        for row in rows
    }


def _any_occurrence(series: SeriesRef) -> int:
    """The occurrence a user opens to edit the whole series ("all events")."""
    assert series.occurrences, "a series with an occurrence to open"
    return series.occurrences[0]


def _odoo_edit_occurrence(gateway: CrmGateway, event_id: int, changes: dict) -> None:
    values = {"recurrence_update": "self_only"}
    for name, value in changes.items():
        field, convert = _EVENT_FIELDS[name]
        values[field] = convert(value)
    _write_event(event_id, values)


def _on_odoo(machine: type, examples: int, steps: int, **bound: object) -> type:
    """Few examples: every step is RPCs to a real Odoo (about a minute a machine)."""
    return machine_for(
        machine,
        lambda: OdooGateway.from_config(odoo_config()),
        _machine_partner,
        close_gateway=lambda gateway: gateway.close(),
        max_examples=examples,
        steps=steps,
        **bound,
    )


TestOdooMailSyncMachine = _on_odoo(MailSyncMachine, 12, 25)
TestOdooCalendarSyncMachine = _on_odoo(
    CalendarSyncMachine,
    5,
    20,
    crm=CrmActions(
        create=_odoo_create,
        rename=lambda gateway, event_id, subject: _write_event(event_id, {"name": subject}),
        move=lambda gateway, event_id, start, end: _write_event(
            event_id, {"start": odoo_datetime(start), "stop": odoo_datetime(end)}
        ),
        set_private=lambda gateway, event_id, private: _write_event(
            event_id, {"privacy": "private" if private else "public"}
        ),
        delete=lambda gateway, event_id: admin_rpc_cached().execute_kw(
            "calendar.event", "unlink", [[event_id]]
        ),
        read=_odoo_read,
        create_series=_odoo_create,
        edit_occurrence=_odoo_edit_occurrence,
        # Odoo's "delete this event" of a recurring one (action_mass_deletion "self_only"
        # is this unlink; called over RPC it answers None, which XML-RPC cannot carry).
        delete_occurrence=lambda gateway, event_id: admin_rpc_cached().execute_kw(
            "calendar.event", "unlink", [[event_id]]
        ),
        rename_series=lambda gateway, series, subject: _write_event(
            _any_occurrence(series), {"name": subject, "recurrence_update": "all_events"}
        ),
        reshape_series=lambda gateway, series, recurrence, start: _write_event(
            _any_occurrence(series),
            {**_odoo_pattern(recurrence), "recurrence_update": "all_events"},
        ),
        delete_series=lambda gateway, series: admin_rpc_cached().execute_kw(
            "calendar.event", "action_mass_deletion", [[_any_occurrence(series)], "all_events"]
        ),
    ),
)


def test_what_the_calendar_machine_found() -> None:
    """Its failing examples and a seldom path, as steps (`CalendarSyncMachine.regressions`)."""
    assert run_regressions(TestOdooCalendarSyncMachine) == 6


# --- two accounts storing the same new mail at the same moment ------------------------------


def _race_rounds() -> int:
    return int(os.environ.get("THREAD_RACE_ROUNDS", "12"))


def _at_once(gateways: list[OdooGateway], pages: list) -> list[str]:
    """Each page stored by its own gateway (its own connection), released together; what
    failed, in words."""
    import threading

    barrier = threading.Barrier(len(pages))
    failures: list[str] = []

    def store(gateway: OdooGateway, written) -> None:
        barrier.wait()
        try:
            gateway.store_mail_page(written)
        except CrmError as error:
            failures.append(f"account {written.account_id}: {error}")

    workers = [
        threading.Thread(target=store, args=pair) for pair in zip(gateways, pages, strict=True)
    ]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=120)
    return failures


@pytest.fixture
def two_connections(live_gateway: OdooGateway) -> Iterator[tuple[list, list[OdooGateway]]]:
    """Two accounts, and a gateway (its own XML-RPC connection) for each, as two workers."""
    from .gateway_contract import spec

    accounts = [live_gateway.upsert_account(spec()) for _ in range(2)]
    gateways = [OdooGateway.from_config(odoo_config()) for _ in range(2)]
    yield accounts, gateways
    for gateway in gateways:
        gateway.close()


def test_two_accounts_storing_one_new_conversation_at_once_make_one_thread(
    two_connections, admin: XmlRpcTransport
) -> None:
    """Issue #17: two accounts' cycles store the same new conversation in parallel
    transactions (two ``store_mail_page`` RPCs). Neither snapshot sees the thread the other
    is creating; the later insert used to fail on ``conversation_unique`` ("A conversation
    is stored as one thread."), losing that account's page for the cycle. Both must succeed,
    and the conversation be one thread holding both messages, its stored summary what the
    model computes from them (the earlier message's subject, the later one's date)."""
    from datetime import timedelta

    from .gateway_contract import INBOX, T0, message, page, unique

    accounts, gateways = two_connections
    senders = ("alice@example.com", "bob@example.com")
    failures: list[str] = []
    rounds = _race_rounds()
    for _ in range(rounds):
        conversation = unique("conv-race-")
        pages = [
            page(
                accounts[side],
                INBOX,
                [
                    message(
                        unique("g"),
                        conversation=conversation,
                        sender=senders[side],
                        to=(senders[1 - side],),
                        subject=f"Re: {conversation}" if side else conversation,
                        at=T0 + timedelta(hours=side),
                    )
                ],
            )
            for side in (0, 1)
        ]
        failed = _at_once(gateways, pages)
        failures += failed
        threads = admin.execute_kw(
            "m365.mail.thread",
            "search_read",
            [[("conversation_id", "=", conversation)]],
            {"fields": ["subject", "message_count", "participants", "last_message_at"]},
        )
        assert len(threads) == 1, (conversation, threads)
        if not failed:
            (thread,) = threads
            assert thread["message_count"] == 2
            assert thread["participants"].split() == sorted(senders)
            assert thread["subject"] == conversation
            assert thread["last_message_at"] == odoo_datetime(T0 + timedelta(hours=1))
    assert not failures, f"{len(failures)} of {2 * rounds} pages failed: {failures[:3]}"


def test_two_accounts_storing_one_new_mail_at_once_make_one_message(
    two_connections, admin: XmlRpcTransport
) -> None:
    """Issue #17: a mail between two connected colleagues reaches both mailboxes, and both
    cycles store it at the same moment, in a conversation already stored. Neither snapshot
    sees the message the other is inserting; the later insert used to fail on the dedupe key
    (``m365_mail_message_dedupe_uniq``). Both must succeed: one message, linked to both."""
    from .gateway_contract import INBOX, SENT, message, page, unique

    accounts, gateways = two_connections
    failures: list[str] = []
    rounds = _race_rounds()
    for _ in range(rounds):
        conversation = unique("conv-race-")
        gateways[0].store_mail_page(
            page(accounts[0], INBOX, [message(unique("g"), conversation=conversation)])
        )
        imid = f"<{unique('reply')}@example.com>"
        pages = [
            page(
                accounts[side],
                (SENT, INBOX)[side],
                [
                    message(
                        unique("g"),
                        imid,
                        folder=(SENT, INBOX)[side],
                        conversation=conversation,
                        sender="alice@example.com",
                        to=("bob@example.com",),
                        subject=f"Re: {conversation}",
                    )
                ],
            )
            for side in (0, 1)
        ]
        failed = _at_once(gateways, pages)
        failures += failed
        found = admin.execute_kw(
            "m365.mail.message",
            "search_read",
            [[("internet_message_id", "=", imid)]],
            {"fields": ["link_ids", "conversation_id"]},
        )
        assert len(found) == 1, (imid, found)
        if not failed:
            assert len(found[0]["link_ids"]) == 2 and found[0]["conversation_id"] == conversation
    assert not failures, f"{len(failures)} of {2 * rounds} pages failed: {failures[:3]}"
