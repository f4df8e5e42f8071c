import logging
from datetime import timedelta

from odoo.tests import tagged
from odoo.tools import SQL

from .common import GlueCase, utc_now

_logger = logging.getLogger(__name__)

KANBAN_SPEC = {
    "name": {},
    "partner_id": {"fields": {"display_name": {}}},
    "expected_revenue": {},
    "stage_id": {"fields": {"display_name": {}}},
    "user_id": {"fields": {"display_name": {}}},
    "priority": {},
    "m365_last_email_at": {},
    "m365_next_meeting_at": {},
}


@tagged("post_install", "-at_install")
class TestPipeline(GlueCase):
    def setUp(self):
        super().setUp()
        now = utc_now()
        self.cold = self.opportunity("Cold deal", self.dora, user_id=self.sales.id)
        self.warm = self.opportunity("Warm deal", self.ann, user_id=self.sales.id)
        self.silent = self.opportunity("Silent deal", self.zed, user_id=self.sales.id)
        self.mail([self.dora], subject="Old news", at=now - timedelta(days=20))
        self.recent = self.mail([self.ann], subject="Fresh news", at=now - timedelta(days=1))
        self.meeting = self.env["calendar.event"].create(
            {
                "name": "Demo",
                "start": now + timedelta(days=2),
                "stop": now + timedelta(days=2, hours=1),
                "opportunity_id": self.cold.id,
            }
        )
        self.Lead = self.env["crm.lead"].with_user(self.sales)
        self.mine = [("id", "in", (self.cold | self.warm | self.silent).ids)]

    def test_last_email_and_next_meeting_per_opportunity(self):
        warm, cold, silent = (self.warm | self.cold | self.silent).with_user(self.sales)
        self.assertEqual(warm.m365_last_email_at, self.recent.last_message_at)
        self.assertFalse(warm.m365_next_meeting_at)
        self.assertEqual(cold.m365_next_meeting_at, self.meeting.start)
        self.assertEqual((silent.m365_last_email_at, silent.m365_next_meeting_at), (False, False))
        # A meeting that has taken place is no longer the next one; it is the last contact.
        self.meeting.write({"start": utc_now() - timedelta(days=3), "stop": utc_now() - timedelta(days=3, hours=-1)})
        cold.invalidate_recordset()
        self.assertFalse(cold.m365_next_meeting_at)
        self.assertEqual(cold.m365_last_contact_at, self.meeting.start)

    def test_sortable_and_filterable(self):
        described = self.Lead.fields_get(["m365_last_email_at", "m365_next_meeting_at"], ["sortable", "searchable"])
        self.assertTrue(all(d["sortable"] and d["searchable"] for d in described.values()), described)
        by_email = self.Lead.search(self.mine, order="m365_last_email_at desc nulls last, id")
        self.assertEqual(by_email.mapped("name"), ["Warm deal", "Cold deal", "Silent deal"])
        by_meeting = self.Lead.search(self.mine, order="m365_next_meeting_at asc nulls last, id")
        self.assertEqual(by_meeting[0], self.cold)
        self.assertEqual(self.Lead.search([*self.mine, ("m365_next_meeting_at", "!=", False)]), self.cold)
        # The pipeline's filter "No contact in 14 days", as its view defines it.
        view = self.env.ref("crm_microsoft365_crm.crm_lead_view_search")
        self.assertIn('name="m365_no_contact_14d"', view.arch_db)
        fortnight = (utc_now() - timedelta(days=14)).strftime("%Y-%m-%d")
        cold_domain = ["|", ("m365_last_contact_at", "=", False), ("m365_last_contact_at", "<", fortnight)]
        self.assertEqual(self.Lead.search(self.mine + cold_domain), self.cold | self.silent)
        self.assertEqual(self.Lead.search([*self.mine, ("m365_last_email_at", ">=", fortnight)]), self.warm)
        # Grouping by month works as for a stored date.
        groups = self.Lead.read_group(self.mine, ["id:count"], ["m365_last_email_at:month"])
        self.assertEqual(sum(g["m365_last_email_at_count"] for g in groups), 3)

    def clone_leads(self, count):
        """``count`` opportunities of the salesperson, spread over the test's customers, made
        in one INSERT (the ORM would take minutes for 2,000)."""
        self.env.flush_all()
        columns = [
            c
            for (c,) in self.env.execute_query(
                SQL(
                    "SELECT column_name FROM information_schema.columns WHERE table_name = 'crm_lead' "
                    "AND column_name NOT IN ('id', 'name', 'partner_id', 'email_from', 'email_normalized')"
                )
            )
        ]
        partners = [self.ann.id, self.carl.id, self.dora.id, self.zed.id, self.acme.id]
        cols = SQL(", ").join(SQL.identifier(c) for c in columns)
        rows = self.env.execute_query(
            SQL(
                "INSERT INTO crm_lead (name, partner_id, %s) "
                "SELECT 'Pipeline deal ' || g, (%s::int[])[1 + mod(g, %s)], %s FROM crm_lead, generate_series(1, %s) g "
                "WHERE crm_lead.id = %s RETURNING id",
                cols,
                partners,
                len(partners),
                cols,
                count,
                self.warm.id,
            )
        )
        self.env.invalidate_all()
        return [r for (r,) in rows]

    def queries_to_render(self, ids):
        self.env.invalidate_all()
        before = self.env.cr.sql_log_count
        result = self.Lead.web_search_read([("id", "in", ids)], KANBAN_SPEC)
        self.assertEqual(result["length"], len(ids))
        return self.env.cr.sql_log_count - before, result["records"]

    def test_a_pipeline_of_2000_renders_in_a_bounded_number_of_queries(self):
        ids = self.clone_leads(2000)
        self.mail([self.carl], subject="Carl replies")
        small, _records = self.queries_to_render(ids[:20])
        large, records = self.queries_to_render(ids)
        # Every card has its values (Ann, Carl and Acme's deals share Acme's mail).
        with_mail = [r for r in records if r["m365_last_email_at"]]
        self.assertEqual(len(with_mail), 2000 * 4 // 5)
        _logger.info("kanban data of 20 opportunities: %s queries; of 2,000: %s", small, large)
        self.assertLessEqual(large, small, f"2,000 cards took {large} queries, 20 took {small}")
        self.assertLessEqual(large, 25)
