"""The gateway contract against a live Odoo with the addon ``crm_microsoft365`` installed.

Runs when ``ODOO_URL``, ``ODOO_DB``, ``ODOO_USER`` and ``ODOO_PASSWORD`` (an API key) are set;
otherwise the module is skipped, with the reason. ``ODOO_USER`` is the daemon's technical user
(in the group *Sync daemon (technical)*, e.g. the addon's ``m365sync``). Partners are seeded the
way a person makes them, with a plain XML-RPC ``create`` on ``res.partner``, as
``ODOO_ADMIN_USER`` / ``ODOO_ADMIN_PASSWORD`` when set (the technical user may not create
contacts itself), else as ``ODOO_USER``. ``ODOO_PROTOCOL`` (xmlrpc | json2) picks the protocol.

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
from m365sync.domain import Partner

from .gateway_contract import GatewayContract

ODOO_ENV = ("ODOO_URL", "ODOO_DB", "ODOO_USER", "ODOO_PASSWORD")
SKIP_REASON = "no Odoo configured (set ODOO_URL, ODOO_DB, ODOO_USER, ODOO_PASSWORD)"

if not all(os.environ.get(name) for name in ODOO_ENV):
    pytest.skip(SKIP_REASON, allow_module_level=True)

pytestmark = pytest.mark.odoo


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
def admin() -> Iterator[XmlRpcTransport]:
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
    if made:
        admin.execute_kw("m365.account", "unlink", [made])


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
