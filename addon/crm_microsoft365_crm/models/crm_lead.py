"""Outlook mail and meetings on the opportunity.

Which threads belong to an opportunity is defined once, in SQL (``_m365_thread_ids_sql``): the
threads matched to its customer (the contact and its company; the daemon matches a company's
mail by its work domain, so a company's threads hold that domain's mail and its contacts'),
to the contact whose address is the opportunity's email and that contact's company, to its
other contacts, the threads linked to it by hand, and those sent from it (its outbox rows).
Only threads a connected account still holds count (the addon's record rule on threads).

The pipeline's last email / next meeting / last contact are that SQL as expressions over the
lead's row: computed for a whole page of records in one query, and, through ``_field_to_sql``,
sortable, groupable and searchable like stored columns, without going stale (a meeting in the
past is no longer the next one).
"""

from odoo.addons.crm_microsoft365.wizards.m365_compose_wizard import UNUSABLE
from odoo.exceptions import UserError
from odoo.tools import SQL

from odoo import api, fields, models

ACTIVITY_FIELDS = ("m365_last_email_at", "m365_next_meeting_at", "m365_last_contact_at")
SEARCH_OPERATORS = ("=", "!=", "<", "<=", ">", ">=")


class CrmLead(models.Model):
    _inherit = "crm.lead"

    m365_contact_ids = fields.Many2many(
        "res.partner",
        "crm_lead_m365_contact_rel",
        "lead_id",
        "partner_id",
        string="Other Contacts",
        help="More people of this deal: their Outlook mail shows in the Emails tab too.",
    )
    m365_linked_thread_ids = fields.Many2many(
        "m365.mail.thread",
        "crm_lead_m365_thread_rel",
        "lead_id",
        "thread_id",
        string="Linked Emails",
        help="Outlook threads linked to this opportunity by hand (Create or Link to Opportunity from a thread).",
    )
    m365_thread_ids = fields.Many2many(
        "m365.mail.thread",
        string="Emails",
        compute="_compute_m365_threads",
        help="Outlook threads of this opportunity's customer and contacts, and those linked to "
        "it or sent from it, newest first.",
    )
    m365_thread_count = fields.Integer(string="Email Thread Count", compute="_compute_m365_threads")
    m365_message_count = fields.Integer(string="Email Count", compute="_compute_m365_threads")
    m365_last_email_at = fields.Datetime(
        string="Last Email",
        compute="_compute_m365_activity",
        search="_search_m365_last_email_at",
        help="The newest Outlook message of this opportunity's threads.",
    )
    m365_next_meeting_at = fields.Datetime(
        string="Next Meeting",
        compute="_compute_m365_activity",
        search="_search_m365_next_meeting_at",
        help="The start of the next meeting linked to this opportunity.",
    )
    m365_last_contact_at = fields.Datetime(
        string="Last Contact",
        compute="_compute_m365_activity",
        search="_search_m365_last_contact_at",
        help="The last email or the last meeting held, whichever is newer.",
    )
    m365_meeting_count = fields.Integer(string="Meeting Count", compute="_compute_m365_meeting_count")
    m365_upcoming_meeting_count = fields.Integer(string="Upcoming Meeting Count", compute="_compute_m365_meeting_count")

    # --- the one definition, in SQL -----------------------------------------------------------

    @api.model
    def _m365_thread_ids_sql(self, alias):
        """The ids of the threads of the lead in row ``alias`` (a set: each thread once)."""
        lead = SQL.identifier(alias, "id")
        return SQL(
            """
            SELECT tp.thread_id FROM m365_mail_thread_partner_rel tp
             WHERE tp.partner_id IN (
                    SELECT UNNEST(ARRAY[p.id, p.commercial_partner_id]) FROM res_partner p
                     WHERE p.id = %(partner)s
                        OR (%(email)s IS NOT NULL AND p.m365_email_normalized = %(email)s)
                    UNION
                    SELECT c.partner_id FROM crm_lead_m365_contact_rel c WHERE c.lead_id = %(lead)s)
            UNION
            SELECT lt.thread_id FROM crm_lead_m365_thread_rel lt WHERE lt.lead_id = %(lead)s
            UNION
            SELECT t.id FROM m365_outbox o JOIN m365_mail_thread t ON t.conversation_id = o.conversation_id
             WHERE o.m365_lead_id = %(lead)s
            UNION
            SELECT o.reply_thread_id FROM m365_outbox o
             WHERE o.m365_lead_id = %(lead)s AND o.reply_thread_id IS NOT NULL
            """,
            partner=SQL.identifier(alias, "partner_id"),
            email=SQL.identifier(alias, "email_normalized"),
            lead=lead,
        )

    @api.model
    def _m365_activity_sql(self, alias, fname):
        """``fname`` of the lead in row ``alias`` as an SQL expression."""
        now = fields.Datetime.now()
        last_email = SQL(
            """(SELECT MAX(t.last_message_at) FROM m365_mail_thread t
                 WHERE t.id IN (%(threads)s)
                   AND EXISTS (SELECT 1 FROM m365_mail_message m
                                 JOIN m365_mail_message_link k ON k.message_id = m.id
                                WHERE m.thread_id = t.id))""",
            threads=self._m365_thread_ids_sql(alias),
        )
        if fname == "m365_last_email_at":
            expression = last_email
        elif fname == "m365_next_meeting_at":
            expression = SQL(
                "(SELECT MIN(e.start) FROM calendar_event e WHERE e.opportunity_id = %s "
                "AND e.active AND e.start >= %s)",
                SQL.identifier(alias, "id"),
                now,
            )
        elif fname == "m365_last_contact_at":
            expression = SQL(
                "GREATEST(%s, (SELECT MAX(e.start) FROM calendar_event e WHERE e.opportunity_id = %s "
                "AND e.active AND e.start < %s))",
                last_email,
                SQL.identifier(alias, "id"),
                now,
            )
        else:
            raise ValueError(f"Invalid field {fname!r} on model {self._name!r}")
        return self._m365_flushed(expression)

    def _m365_flushed(self, query):
        """``query`` with what it reads written to the database before it runs."""
        flushed = [SQL(to_flush=field) for field in self._m365_fields_read()]
        return SQL("%s" * (len(flushed) + 1), query, *flushed)

    def _m365_fields_read(self):
        env = self.env
        names = {
            "crm.lead": ("partner_id", "email_normalized", "m365_contact_ids", "m365_linked_thread_ids"),
            "res.partner": ("commercial_partner_id", "m365_email_normalized"),
            "m365.mail.thread": ("last_message_at", "partner_ids", "conversation_id"),
            "m365.mail.message": ("thread_id",),
            "m365.mail.message.link": ("message_id",),
            "m365.outbox": ("conversation_id", "reply_thread_id", "m365_lead_id"),
            "calendar.event": ("start", "opportunity_id", "active"),
        }
        return [env[model]._fields[name] for model, fnames in names.items() for name in fnames]

    def _field_to_sql(self, alias, fname, query=None, flush=True):
        if fname in ACTIVITY_FIELDS:
            return self._m365_activity_sql(alias, fname)
        return super()._field_to_sql(alias, fname, query, flush)

    # --- computes -----------------------------------------------------------------------------

    @staticmethod
    def _m365_real_id(lead):
        return lead.id if isinstance(lead.id, int) else lead._origin.id

    def _compute_m365_activity(self):
        # Every record of the page still to compute, in one query (the ORM would ask for
        # batches of 1000: a pipeline of any size costs one query).
        field = self._fields["m365_last_email_at"]
        leads = self
        if all(isinstance(i, int) for i in self._ids):
            missing = self.env.cache.get_missing_ids(self.browse(self._prefetch_ids), field)
            leads |= self.browse([i for i in missing if isinstance(i, int)])
        ids = [i for i in {self._m365_real_id(lead) for lead in leads} if i]
        values = {}
        if ids:
            rows = self.env.execute_query(
                SQL(
                    "SELECT l.id, %s, %s, %s FROM crm_lead l WHERE l.id = ANY(%s)",
                    *(self._m365_activity_sql("l", name) for name in ACTIVITY_FIELDS),
                    ids,
                )
            )
            values = {row[0]: row[1:] for row in rows}
        empty = (False, False, False)
        for lead in self:
            row = values.get(self._m365_real_id(lead), empty)
            for name, value in zip(ACTIVITY_FIELDS, row, strict=True):
                lead[name] = value or False
        others = (leads - self).filtered(lambda lead: isinstance(lead.id, int))
        if others:
            for index, name in enumerate(ACTIVITY_FIELDS):
                self.env.cache.update(
                    others,
                    self._fields[name],
                    [values.get(lead.id, empty)[index] or False for lead in others],
                )

    @api.depends("partner_id", "email_from", "m365_contact_ids", "m365_linked_thread_ids")
    def _compute_m365_threads(self):
        Thread = self.env["m365.mail.thread"]
        ids = [i for i in {self._m365_real_id(lead) for lead in self} if i]
        per_lead = {}
        if ids:
            rows = self.env.execute_query(
                SQL(
                    "SELECT l.id, ARRAY(%s) FROM crm_lead l WHERE l.id = ANY(%s)",
                    self._m365_flushed(self._m365_thread_ids_sql("l")),
                    ids,
                )
            )
            per_lead = {lead_id: set(thread_ids) for lead_id, thread_ids in rows}
        # A form not saved yet shows the threads linked on it (Create Opportunity from a thread).
        for lead in self:
            linked = set(lead.m365_linked_thread_ids._origin.ids)
            if linked:
                key = self._m365_real_id(lead) or lead.id
                per_lead[key] = per_lead.get(key, set()) | linked
        # Visible ones only (the addon's record rules), in the threads' order: newest first.
        wanted_ids = set().union(*per_lead.values()) if per_lead else set()
        threads = Thread.search([("id", "in", list(wanted_ids))]) if wanted_ids else Thread
        for lead in self:
            wanted = per_lead.get(self._m365_real_id(lead) or lead.id, set())
            mine = threads.filtered(lambda t, w=wanted: t.id in w)
            lead.m365_thread_ids = mine
            lead.m365_thread_count = len(mine)
            lead.m365_message_count = sum(mine.mapped("message_count"))

    @api.depends("calendar_event_ids", "calendar_event_ids.start")
    def _compute_m365_meeting_count(self):
        now = fields.Datetime.now()
        for lead in self:
            meetings = lead.calendar_event_ids
            lead.m365_meeting_count = len(meetings)
            lead.m365_upcoming_meeting_count = len(meetings.filtered(lambda e: e.start and e.start >= now))

    # --- search -------------------------------------------------------------------------------

    def _m365_search(self, fname, operator, value):
        if operator not in SEARCH_OPERATORS:
            raise UserError(self.env._("Unsupported operator %(operator)s.", operator=operator))
        query = self.sudo().with_context(active_test=False)._search([])
        expression = self._m365_activity_sql(query.table, fname)
        if value is False or value is None:
            if operator not in ("=", "!="):
                return [(0, "=", 1)]
            condition = SQL("%s IS NULL" if operator == "=" else "%s IS NOT NULL", expression)
        else:
            moment = fields.Datetime.to_datetime(value)
            condition = SQL("%s %s %s", expression, SQL(operator), moment)
            if operator == "!=":
                condition = SQL("(%s OR %s IS NULL)", condition, expression)
        query.add_where(condition)
        return [("id", "in", query)]

    def _search_m365_last_email_at(self, operator, value):
        return self._m365_search("m365_last_email_at", operator, value)

    def _search_m365_next_meeting_at(self, operator, value):
        return self._m365_search("m365_next_meeting_at", operator, value)

    def _search_m365_last_contact_at(self, operator, value):
        return self._m365_search("m365_last_contact_at", operator, value)

    # --- actions ------------------------------------------------------------------------------

    def _m365_contact(self):
        """The person to write to or meet: the customer, else the contact with the lead's
        address."""
        self.ensure_one()
        if self.partner_id:
            return self.partner_id
        if self.email_normalized:
            return self.env["res.partner"].search(
                [("m365_email_normalized", "=", self.email_normalized)], order="is_company, id", limit=1
            )
        return self.env["res.partner"]

    def _m365_has_usable_account(self):
        accounts = self.env["m365.account"].search([("user_id", "=", self.env.user.id)])
        return bool(accounts.filtered(lambda a: a.status not in UNUSABLE))

    def action_m365_open_threads(self):
        self.ensure_one()
        return {
            "type": "ir.actions.act_window",
            "name": self.env._("Emails of %(lead)s", lead=self.display_name),
            "res_model": "m365.mail.thread",
            "view_mode": "list,form",
            "domain": [("id", "in", self.m365_thread_ids.ids)],
            "context": {"create": False},
        }

    def action_m365_compose(self):
        self.ensure_one()
        contact = self._m365_contact()
        context = {
            "default_partner_id": contact.id or False,
            "default_m365_lead_id": self.id,
            "default_subject": self.name,
        }
        if self.email_from and (not contact.email or contact.email_normalized != self.email_normalized):
            context["default_email_to"] = self.email_from
        action = self.env["ir.actions.act_window"]._for_xml_id("crm_microsoft365.m365_compose_wizard_action")
        action["context"] = context
        return action

    def action_m365_schedule_meeting(self):
        self.ensure_one()
        contact = self._m365_contact()
        action = self.env["ir.actions.act_window"]._for_xml_id("crm_microsoft365.m365_schedule_wizard_action")
        action["context"] = {
            "default_partner_id": contact.id or False,
            "default_opportunity_id": self.id if self.type == "opportunity" else False,
            "default_subject": self.name,
        }
        return action

    def action_schedule_meeting(self, smart_calendar=True):
        """Odoo's meeting button on the form (``m365_schedule`` in its context) opens Schedule
        Meeting for a user with a usable Microsoft 365 account, Odoo's calendar otherwise."""
        if self.env.context.get("m365_schedule") and len(self) == 1 and self._m365_has_usable_account():
            return self.action_m365_schedule_meeting()
        return super().action_schedule_meeting(smart_calendar=smart_calendar)
