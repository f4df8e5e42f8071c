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

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from m365sync.config import OdooConfig
from m365sync.crm.gateway import CrmGateway
from m365sync.crm.odoo import OdooGateway, XmlRpcTransport
from m365sync.domain import Partner, Sensitivity
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

from tests.contract.calendar_machine import CalendarSyncMachine, CrmActions  # noqa: E402
from tests.contract.machine_common import machine_for, run_regressions  # noqa: E402
from tests.contract.mail_machine import MailSyncMachine  # noqa: E402


def _machine_partner(gateway: CrmGateway, name: str, email: str) -> Partner:
    return TestOdooContract.seed_partner(None, gateway, name, email)


def _write_event(event_id: int, values: dict) -> None:
    admin_rpc_cached().execute_kw("calendar.event", "write", [[event_id], values])


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
        create=lambda gateway, account, item, partner_ids: TestOdooCalendar.crm_create(
            None, gateway, account, item, partner_ids
        ),
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
    ),
)


def test_what_the_calendar_machine_found() -> None:
    """Its failing examples and a seldom path, as steps (`CalendarSyncMachine.regressions`)."""
    assert run_regressions(TestOdooCalendarSyncMachine) == 3
