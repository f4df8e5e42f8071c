"""Builders shared by the glue's tests: a salesperson with a connected account, mail stored
through the daemon's RPC exactly as the daemon sends it."""

from datetime import datetime, timedelta, timezone

from odoo.addons.crm_microsoft365.tests.common import INBOX, unique, wire_message, wire_page, wire_spec, wire_stored
from odoo.tests.common import TransactionCase, new_test_user

SALES = "base.group_user,sales_team.group_sale_salesman"


def utc_now():
    return datetime.now(timezone.utc).replace(microsecond=0, tzinfo=None)


def iso(moment):
    return moment.replace(tzinfo=timezone.utc).isoformat()


class GlueCase(TransactionCase):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.daemon_user = new_test_user(
            cls.env, login="m365-crm-daemon", groups="base.group_user,crm_microsoft365.group_m365_daemon"
        )
        cls.sales = new_test_user(cls.env, login="m365-crm-sales", groups=SALES, email="sam@contoso.example")
        cls.api = cls.env["m365.daemon.api"].with_user(cls.daemon_user)
        spec = wire_spec(owner="m365-crm-sales", address="sam@contoso.example")
        cls.account = cls.env["m365.account"].browse(cls.api.upsert_account({"spec": spec})["id"])
        Partner = cls.env["res.partner"]
        cls.acme = Partner.create({"name": "Acme Corp", "is_company": True, "website": "https://acme.example"})
        cls.ann = Partner.create({"name": "Ann Acme", "email": "ann@acme.example", "parent_id": cls.acme.id})
        cls.carl = Partner.create({"name": "Carl Acme", "email": "carl@acme.example", "parent_id": cls.acme.id})
        cls.dora = Partner.create({"name": "Dora Freelance", "email": "dora@free.example"})
        cls.zed = Partner.create({"name": "Zed Other", "email": "zed@other.example"})

    def mail(self, to, *, subject="Quarterly figures", at=None, conversation=None, sender="sam@contoso.example"):
        """One message from ``sender`` to the partners ``to``, stored as the daemon would; its
        thread."""
        at = at or utc_now() - timedelta(days=1)
        addresses = tuple(p.email for p in to)
        msg = wire_message(
            unique("g"),
            to=addresses,
            subject=subject,
            at=iso(at),
            sender=sender,
            conversation=conversation or unique("conv-"),
        )
        partners = {p.email.casefold(): p for p in to}
        self.api.store_mail_page({"page": wire_page(self.account.id, INBOX, [wire_stored(msg, partners)])})
        return self.env["m365.mail.thread"].search([("conversation_id", "=", msg["conversation_id"])])

    def opportunity(self, name, partner=None, **values):
        values = {"name": name, "type": "opportunity", "partner_id": partner.id if partner else False, **values}
        values.setdefault("user_id", self.sales.id)  # the salesperson's own deal
        return self.env["crm.lead"].create(values)
